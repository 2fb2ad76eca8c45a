//! `regsweep policy check` through the binary: valid files exit 0 with a summary, broken ones
//! exit 2 with `FILE:LINE:COL`, what was wrong and what was expected. No registry is involved.

use std::path::Path;
use std::process::{Command, Output};

fn regsweep(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(args)
        .current_dir(dir)
        .env_remove("REGSWEEP_LOG")
        .output()
        .expect("run regsweep")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
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
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
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
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml:?}: {stderr}");
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
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
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
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read policy file nope.yaml"));
}
