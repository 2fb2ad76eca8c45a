//! `regsweep policy check` through the binary: valid files exit 0 with a summary, broken ones
//! exit 2 with `FILE:LINE:COL`, what was wrong and what was expected. No registry is involved.

use std::path::Path;

use crate::common::{Cli, Run};

/// `regsweep ARGS` run in `dir`, where the policy files are.
fn regsweep(args: &[&str], dir: &Path) -> Run {
    Cli::new(args).current_dir(dir).run()
}

const VALID: &str = r#"
rules:
  - repos: "app/**"
    keep:
      - tags: ["latest", "stable"]
      - semver: ">=2.0.0"
        newest: 5
        order: semver
      - digests-file: deployed.txt
    delete:
      - tags: "pr-*"
      - older-than: 90d
        time: label:org.opencontainers.image.created
        time-fallback: created
  - repos: "**"
    keep:
      - newest: 10
protect:
  min-tags: 1
"#;

const DEPLOYED: &str = "# what runs in production\n\
    sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
    registry.example.com/app/web@sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824  # canary\n";

#[test]
fn a_valid_policy_is_summarised() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), VALID).unwrap();
    std::fs::write(dir.path().join("deployed.txt"), DEPLOYED).unwrap();
    let out = regsweep(&["policy", "check", "policy.yaml"], dir.path());
    let stdout = &out.stdout;
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(stdout.starts_with("policy.yaml: valid, 2 rules\n"), "{stdout}");
    for line in [
        "rules[0] (repos: app/**)",
        "  keep    tags: latest, stable",
        "  keep    semver >=2.0.0 and newest 5 by semver",
        "  keep    digests-file deployed.txt (2 listed)",
        "  delete  tags: pr-*",
        "  delete  older-than 90d (time: label:org.opencontainers.image.created, then created)",
        "  order time, time created, min-tags 1, never deletes every tag",
        "rules[1] (repos: **)",
        "  keep    newest 10 by time (time: created)",
        "  delete  every tag not kept",
    ] {
        assert!(stdout.lines().any(|l| l == line), "missing {line:?} in\n{stdout}");
    }
}

#[test]
fn json_summary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), VALID).unwrap();
    std::fs::write(dir.path().join("deployed.txt"), DEPLOYED).unwrap();
    let out = regsweep(&["--json", "policy", "check", "policy.yaml"], dir.path());
    assert_eq!(out.code, 0, "{out:#?}");
    let json = out.json();
    assert_eq!(json["rules"][0]["rule"], "rules[0] (repos: app/**)");
    assert_eq!(json["rules"][0]["protect"]["min-tags"], 1);
    assert_eq!(json["rules"][1]["delete"], serde_json::Value::Null);
}

/// Each broken file, with the `FILE:LINE:COL` prefix and a part of the message expected on stderr.
#[test]
fn broken_policies_exit_2_with_line_and_column() {
    let cases = [
        (
            "rules:\n  - repos: \"app/**\"\n    keep:\n      - tag: latest\n",
            "bad.yaml:4:9: unknown key `tag`",
        ),
        (
            "rules:\n  - repos: \"**\"\n    delete:\n      - older-than: 30x\n",
            "bad.yaml:4:21: `30x` is not a duration",
        ),
        (
            "rules:\n  - repos: \"**\"\n    delete:\n      - semver: \"=>2\"\n",
            "bad.yaml:4:17: bad version range",
        ),
        (
            "rules:\n  - repos: \"**\"\n    keep:\n      - tags-regex: \"(x\"\n",
            "bad.yaml:4:21: bad regex `(x`",
        ),
        ("rules: [\n", "bad.yaml:1:8: invalid YAML: unclosed bracket"),
        (
            "rules:\n  - repos: \"**\"\n    keep: [{digests-file: missing.txt}]\n",
            "cannot read digests-file",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (yaml, expected) in cases {
        std::fs::write(dir.path().join("bad.yaml"), yaml).unwrap();
        let out = regsweep(&["policy", "check", "bad.yaml"], dir.path());
        let stderr = &out.stderr;
        assert_eq!(out.code, 2, "{yaml:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{yaml:?}: expected {expected:?} in {stderr}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_bad_digests_file_names_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    std::fs::write(
        dir.path().join("conf/policy.yaml"),
        "rules:\n  - repos: \"**\"\n    keep: [{digests-file: deployed.txt}]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("conf/deployed.txt"), "# ok\n\nnot-a-digest\n").unwrap();
    let out = regsweep(&["policy", "check", "conf/policy.yaml"], dir.path());
    let stderr = &out.stderr;
    assert_eq!(out.code, 2, "{stderr}");
    let expected = format!(
        "{}:3:1: `not-a-digest` is not a digest",
        Path::new("conf").join("deployed.txt").display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn a_missing_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = regsweep(&["policy", "check", "nope.yaml"], dir.path());
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("cannot read policy file nope.yaml"));
}

/// A file with several mistakes: all of them, in source order, each with `FILE:LINE:COL`, under
/// a count; with `--json` the error document lists them one by one.
#[test]
fn every_mistake_in_a_file_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "rules:\n  - repos: \"**\"\n    keep:\n      - tag: latest\n    delete:\n      - older-than: 30x\n      - semver: \"=>2\"\n",
    )
    .unwrap();
    let out = regsweep(&["policy", "check", "p.yaml"], dir.path());
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stdout.is_empty(), "{out:#?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{out:#?}");
    assert_eq!(lines[0], "error: 3 errors in p.yaml:");
    for (line, start) in lines[1..].iter().zip([
        "  p.yaml:4:9: unknown key `tag`",
        "  p.yaml:6:21: `30x` is not a duration",
        "  p.yaml:7:17: bad version range `=>2`",
    ]) {
        assert!(line.starts_with(start), "{line:?} should start with {start:?}");
    }

    let out = regsweep(&["--json", "policy", "check", "p.yaml"], dir.path());
    assert_eq!(out.code, 2, "{out:#?}");
    let error = &out.json()["error"];
    assert_eq!(error["code"], "usage");
    let places: Vec<(String, u64, u64)> = error["errors"]
        .as_array()
        .expect("the error document lists the errors")
        .iter()
        .map(|e| {
            (
                e["file"].as_str().unwrap().to_owned(),
                e["line"].as_u64().unwrap(),
                e["column"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        places,
        [
            ("p.yaml".into(), 4, 9),
            ("p.yaml".into(), 6, 21),
            ("p.yaml".into(), 7, 17)
        ]
    );
    assert_eq!(error["errors"][1]["problem"], "`30x` is not a duration");
    assert!(
        error["errors"][1]["expected"]
            .as_str()
            .unwrap()
            .starts_with("a duration such as 30d"),
        "{error:#}"
    );
}

/// `plan` and `apply` load a policy before they contact the registry and report every mistake
/// in it the same way.
#[test]
fn plan_and_apply_report_every_mistake_of_their_policy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "rules:\n  - repos: \"**\"\n    keep: [{newest: 0}]\n    delete: [{older-than: 3x}]\n",
    )
    .unwrap();
    // Nothing listens on port 9 of loopback: the policy is checked before any connection.
    for command in ["plan", "apply"] {
        let out = regsweep(&[command, "--policy", "p.yaml", "127.0.0.1:9"], dir.path());
        assert_eq!(out.code, 2, "{out:#?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(
            lines,
            [
                "error: 2 errors in p.yaml:",
                "  p.yaml:3:21: `newest` is 0; expected a whole number (1 or more)",
                "  p.yaml:4:27: `3x` is not a duration; expected a duration such as 30d, 2w, 36h or 1d12h (units up to weeks)",
            ],
            "{command}: {out:#?}"
        );
        // With --json, the error document lists each mistake.
        let out = regsweep(
            &[command, "--json", "--policy", "p.yaml", "127.0.0.1:9"],
            dir.path(),
        );
        assert_eq!(out.code, 2, "{out:#?}");
        let document: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
        let lines: Vec<u64> = document["error"]["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{command}: no errors list: {document:#}"))
            .iter()
            .map(|e| e["line"].as_u64().unwrap())
            .collect();
        assert_eq!(lines, [3, 4], "{command}: {document:#}");
    }
}
