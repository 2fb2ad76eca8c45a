//! Snapshot tests of the human output of the main commands, against the real registry with the
//! testkit's sample content (`regsweep_testkit::sample`: repositories with versions, aliases, a
//! multi-arch index, a cosign signature and an SBOM referrer).
//!
//! What varies between runs is redacted before the comparison: digests (the sample's creation
//! times are relative to now, so every digest changes), the registry's port, temporary paths and
//! times. Each replacement has the width of what it replaces, so tables keep their alignment.
//! The snapshots are `tests/it/snapshots/*.snap`; see `main.rs` for how to review a change.

use std::path::Path;

use regsweep_testkit::{Blob, ImageSpec, RegistryOptions, TestRegistry, sample};

use crate::common::{Run, regsweep};

/// The run as one text: exit code, stdout, stderr.
fn transcript(run: &Run) -> String {
    format!(
        "exit code: {}\n----- stdout -----\n{}----- stderr -----\n{}",
        run.code, run.stdout, run.stderr
    )
}

/// Compares `run` with the snapshot `name` after redacting what varies between runs, and the
/// given paths (most specific first) as `[name]`.
#[track_caller]
fn assert_output(name: &str, run: &Run, paths: &[(&Path, &str)]) {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    for (path, label) in paths {
        settings.add_filter(&regex::escape(&path.display().to_string()), format!("[{label}]"));
    }
    for (pattern, replacement) in [
        (r"sha256:[0-9a-f]{64}", "sha256:[digest]"),
        (r"sha256-[0-9a-f]{64}", "sha256-[digest]"),
        // Digests in storage paths (`revisions/sha256/<hex>`).
        (r"\b[0-9a-f]{64}\b", "[hex digest]"),
        // The short digests of tables (12 hex digits).
        (r"\b[0-9a-f]{12}\b", "[short-dgst]"),
        (r"127\.0\.0\.1:\d+", "[registry]"),
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", "YYYY-MM-DDTHH:MM:SSZ"),
        // Elapsed times (`in 0.02 s`).
        (r"\b\d+\.\d+ s\b", "[elapsed]"),
    ] {
        settings.add_filter(pattern, replacement);
    }
    settings.bind(|| insta::assert_snapshot!(name, transcript(run)));
}

/// A registry with deletes enabled and the sample content.
async fn sample_registry() -> TestRegistry {
    let reg = TestRegistry::start(RegistryOptions::default())
        .await
        .expect("registry starts");
    sample(&reg.client()).await.expect("the sample content is pushed");
    reg
}

#[tokio::test]
async fn read_only_commands() {
    let reg = sample_registry().await;
    let host = reg.host();
    assert_output("repos", &regsweep(&["repos", &host]), &[]);
    // The cosign signature of v2.3.1 (also tagged latest) is folded under its image.
    assert_output(
        "tags_long",
        &regsweep(&["tags", "--long", &format!("{host}/team/web/frontend")]),
        &[],
    );
    assert_output("du", &regsweep(&["du", &host]), &[]);
    assert_output(
        "inspect_index",
        &regsweep(&["inspect", &format!("{host}/team/api:v2.0.0")]),
        &[],
    );
    assert_output("probe", &regsweep(&["probe", &host]), &[]);
}

#[tokio::test]
async fn plan_and_apply() {
    let reg = sample_registry().await;
    let host = reg.host();
    let dir = tempfile::tempdir().unwrap();
    let plan_file = dir.path().join("plan.json");
    let plan_path = plan_file.to_str().unwrap();
    let policy = [
        "--keep-newest",
        "2",
        "--keep-tags",
        "latest",
        "--keep-tags",
        "stable",
        "--repos",
        "team/**",
    ];
    let mut plan = vec!["plan", "-o", plan_path];
    plan.extend(policy);
    plan.push(&host);
    assert_output("plan", &regsweep(&plan), &[(dir.path(), "dir")]);
    assert_output(
        "apply",
        &regsweep(&["apply", "--yes", plan_path]),
        &[(dir.path(), "dir")],
    );
    // Applied again, everything in the plan is already done. Not a snapshot: the skipped
    // manifests are listed in digest order, which changes with every run.
    let again = regsweep(&["apply", "--yes", plan_path]);
    again.assert_ok();
    assert!(
        again.stdout.lines().last().is_some_and(|l| l
            .starts_with("Deleted 0 manifests (0 tags), untagged 0 tags; 10 skipped, 0 refused, 0 failed.")),
        "{again:#?}"
    );
}

#[tokio::test]
async fn rm_errors() {
    let reg = sample_registry().await;
    let host = reg.host();
    assert_output(
        "rm_unknown_tag",
        &regsweep(&["rm", &format!("{host}/team/api:v9")]),
        &[],
    );
    assert_output(
        "rm_unknown_repository",
        &regsweep(&["rm", &format!("{host}/nowhere/repo:v1")]),
        &[],
    );

    let disabled = TestRegistry::start(RegistryOptions::default().delete_disabled())
        .await
        .unwrap();
    disabled
        .client()
        .push_image("app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    let run = regsweep(&["rm", &format!("{}/app:v1", disabled.host())]);
    assert_output("rm_deletes_disabled", &run, &[]);
    // The 405 is explained once: no part of the error line is said twice.
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {run:#?}"));
    assert_eq!(line.matches("deletes are disabled").count(), 1, "{line}");
    // As a word: the registry's port may contain the digits too.
    assert_eq!(line.matches(" 405 ").count(), 1, "{line}");
    let parts: Vec<&str> = line.split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(!parts[i + 1..].contains(part), "{part:?} repeated in {line}");
    }
}

#[test]
fn policy_check_with_several_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("retention.yaml"),
        "\
rules:
  - repos: \"app/**\"
    keep:
      - tag: latest
      - newest: five
    delete:
      - older-than: 30x
        time: created
      - semver: \"=>2\"
  - repos: \"[x\"
    kepp: []
",
    )
    .unwrap();
    let run = crate::common::Cli::new(&["policy", "check", "retention.yaml"])
        .current_dir(dir.path())
        .run();
    assert_output("policy_check_mistakes", &run, &[]);
}

#[tokio::test]
async fn gc_dry_run_on_a_stopped_registry() {
    let mut reg = TestRegistry::start(RegistryOptions::default()).await.unwrap();
    let p = reg.client();
    p.push_image("app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    let v2 = p
        .push_image("app", Some("v2"), &ImageSpec::seeded(2))
        .await
        .unwrap();
    for seed in 0..3 {
        p.upload_blob("app", &Blob::random(100 + seed, 64).data)
            .await
            .unwrap();
    }
    // v2's manifest deleted through the API: its own layers and config become garbage.
    p.delete_manifest("app", &v2.digest).await.unwrap();
    reg.stop().await.unwrap();
    let paths = [
        (reg.config_path(), "config"),
        (reg.storage_root(), "storage"),
        (reg.dir(), "registry-dir"),
    ];
    let config = reg.config_path().to_str().unwrap();
    assert_output(
        "gc_dry_run",
        &regsweep(&["gc", "--dry-run", "--grace", "0", config]),
        &paths,
    );
}
