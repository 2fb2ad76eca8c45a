//! Retention against the real registry: `rm`, `plan`, `apply`, `restore`, and the safety
//! invariants (kept tags still resolve to the same digest and pull completely, also after the
//! registry's own garbage collection; aliases survive; signatures follow their subject;
//! changes between plan and apply are skipped).

mod common;

use std::collections::BTreeMap;

use common::{regsweep, regsweep_with};
use regsweep_testkit::{Format, ImageSpec, Pusher, RegistryOptions, TestRegistry};

async fn registry() -> TestRegistry {
    TestRegistry::start(RegistryOptions::default())
        .await
        .expect("registry starts")
}

/// Tag → digest as the registry reports it now.
async fn tag_map(p: &Pusher, repo: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for tag in p.tags(repo).await.unwrap() {
        let (_, _, digest) = p.get_manifest(repo, &tag).await.unwrap();
        out.insert(tag, digest);
    }
    out
}

/// Runs distribution's own garbage collection (registry stopped), then starts it again.
async fn registry_gc(reg: &mut TestRegistry) {
    reg.stop().await.unwrap();
    let out = reg.garbage_collect(false, false).await.unwrap();
    assert!(
        out.status.success(),
        "garbage-collect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    reg.start_again().await.unwrap();
}

#[tokio::test]
async fn rm_removes_only_the_named_tag_even_when_the_digest_is_shared() {
    let reg = registry().await;
    let p = reg.client();
    let image = p
        .push_image("app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    p.tag("app", &image.digest, "latest").await.unwrap();
    let other = p
        .push_image("app", Some("v0"), &ImageSpec::seeded(2))
        .await
        .unwrap();

    let run = regsweep(&["rm", &format!("{}/app:v1", reg.host())]);
    run.assert_ok();
    assert!(run.stdout.contains("untagged app:v1"), "{}", run.stdout);
    assert!(
        run.stdout.contains("placeholder"),
        "distribution 2.8 cannot delete tags: {}",
        run.stdout
    );

    let tags = tag_map(&p, "app").await;
    assert_eq!(
        tags.keys().collect::<Vec<_>>(),
        vec!["latest", "v0"],
        "no placeholder or probe tag is left"
    );
    assert_eq!(tags["latest"], image.digest);
    assert_eq!(tags["v0"], other.digest);
    p.verify_pullable("app", "latest").await.unwrap();

    // The last tag of a digest: the manifest goes, with the tag.
    let run = regsweep(&["rm", &format!("{}/app:v0", reg.host())]);
    run.assert_ok();
    assert!(
        run.stdout.contains(&format!("deleted app@{}", other.digest)),
        "{}",
        run.stdout
    );
    assert!(!p.manifest_exists("app", &other.digest).await.unwrap());
    assert!(p.manifest_exists("app", "latest").await.unwrap());

    let run = regsweep(&["rm", &format!("{}/app:nope", reg.host())]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("tag `nope` not found"), "{}", run.stderr);
}

#[tokio::test]
async fn rm_by_digest_takes_its_tags_and_signatures_and_refuses_index_children() {
    let reg = registry().await;
    let p = reg.client();
    let image = p
        .push_image("app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    p.tag("app", &image.digest, "v1-alias").await.unwrap();
    let sig = p.push_cosign_signature("app", &image.digest, 3).await.unwrap();
    let index = p
        .push_index(
            "app",
            Some("multi"),
            Format::Oci,
            &[("linux", "amd64"), ("linux", "arm64")],
            4,
        )
        .await
        .unwrap();

    // A child of a tagged index is refused...
    let child = &index.children[0].digest;
    let run = regsweep(&["rm", &format!("{}/app@{child}", reg.host())]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("needed by kept content") && run.stderr.contains("--force"),
        "{}",
        run.stderr
    );
    p.verify_pullable("app", "multi").await.unwrap();

    // ...a dry run changes nothing...
    let run = regsweep(&["rm", "--dry-run", &format!("{}/app@{}", reg.host(), image.digest)]);
    run.assert_ok();
    assert!(p.manifest_exists("app", "v1").await.unwrap());

    // ...and a tagged digest goes with every tag on it and its signature.
    let run = regsweep(&["rm", &format!("{}/app@{}", reg.host(), image.digest)]);
    run.assert_ok();
    assert!(run.stdout.contains("tags: v1, v1-alias"), "{}", run.stdout);
    let tags = tag_map(&p, "app").await;
    assert_eq!(tags.keys().collect::<Vec<_>>(), vec!["multi"]);
    assert!(
        !p.manifest_exists("app", &sig.digest).await.unwrap(),
        "the signature followed its subject"
    );

    // --force deletes even a needed child.
    let run = regsweep(&["rm", "--force", &format!("{}/app@{child}", reg.host())]);
    run.assert_ok();
    assert!(!p.manifest_exists("app", child).await.unwrap());
}

#[tokio::test]
async fn apply_keeps_what_it_must_and_everything_still_pulls_after_registry_gc() {
    let mut reg = registry().await;
    let p = reg.client();
    // Versions v1.0.0 … v1.4.0 and v2.0.0 … v2.2.0; `latest` aliases v2.2.0; v1.4.0 is also
    // tagged `stable`; a multi-arch index below 2.0.0 shares a child with one above; signatures.
    let mut digests = BTreeMap::new();
    for (i, version) in [
        "v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0", "v1.4.0", "v2.0.0", "v2.1.0",
    ]
    .iter()
    .enumerate()
    {
        let image = p
            .push_image("app", Some(version), &ImageSpec::seeded(10 + i as u64))
            .await
            .unwrap();
        digests.insert(version.to_string(), image.digest);
    }
    let new_index = p
        .push_index(
            "app",
            Some("v2.2.0"),
            Format::Oci,
            &[("linux", "amd64"), ("linux", "arm64")],
            30,
        )
        .await
        .unwrap();
    p.tag("app", &new_index.digest, "latest").await.unwrap();
    p.tag("app", &digests["v1.4.0"], "stable").await.unwrap();
    let old_sig = p
        .push_cosign_signature("app", &digests["v1.0.0"], 40)
        .await
        .unwrap();
    let new_sig = p
        .push_cosign_signature("app", &new_index.digest, 41)
        .await
        .unwrap();
    let sbom = p
        .push_referrer("app", &new_index.descriptor(), "application/spdx+json", 42)
        .await
        .unwrap();
    let before = tag_map(&p, "app").await;

    let plan_file = reg.dir().join("plan.json");
    let host = reg.host();
    let run = regsweep(&[
        "plan",
        "--delete-semver",
        "<2.0.0",
        "--keep-tags",
        "stable",
        "-o",
        plan_file.to_str().unwrap(),
        &host,
    ]);
    run.assert_ok();
    assert!(
        run.stdout.contains("untag"),
        "v1.4.0 shares its digest with `stable`: {}",
        run.stdout
    );
    // Planning changed nothing.
    assert_eq!(tag_map(&p, "app").await, before);

    // Not on a terminal and no --yes: refused.
    let run = regsweep(&["apply", plan_file.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("--yes"));
    assert_eq!(tag_map(&p, "app").await, before);

    let run = regsweep(&["--json", "apply", "--yes", plan_file.to_str().unwrap()]);
    run.assert_ok();
    let report = run.json();
    assert_eq!(report["failed"].as_array().unwrap().len(), 0, "{report}");

    let after = tag_map(&p, "app").await;
    let kept = ["latest", "stable", "v2.0.0", "v2.1.0", "v2.2.0"];
    let new_sig_tag = format!("sha256-{}.sig", &new_index.digest[7..]);
    let mut expected: Vec<&str> = kept.to_vec();
    expected.push(&new_sig_tag);
    expected.sort();
    assert_eq!(after.keys().map(String::as_str).collect::<Vec<_>>(), expected);
    for tag in &expected {
        assert_eq!(
            after[*tag], before[*tag],
            "{tag} still resolves to the same digest"
        );
    }
    assert!(
        !p.manifest_exists("app", &old_sig.digest).await.unwrap(),
        "the old signature followed its subject"
    );
    assert!(p.manifest_exists("app", &new_sig.digest).await.unwrap());
    assert!(
        p.manifest_exists("app", &sbom.digest).await.unwrap(),
        "the kept index's SBOM referrer survives"
    );
    for version in ["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"] {
        assert!(
            !p.manifest_exists("app", &digests[version]).await.unwrap(),
            "{version} deleted"
        );
    }

    // Everything kept pulls completely, before and after distribution's garbage collection,
    // and skopeo agrees.
    registry_gc(&mut reg).await;
    let p = reg.client();
    for tag in &expected {
        p.verify_pullable("app", tag)
            .await
            .unwrap_or_else(|e| panic!("{tag}: {e:#}"));
    }
    let dest = tempfile::tempdir().unwrap();
    reg.skopeo_copy_all_to_dir("app", "latest", &dest.path().join("latest"))
        .await
        .unwrap();
}

#[tokio::test]
async fn tags_moved_between_plan_and_apply_are_skipped() {
    let reg = registry().await;
    let p = reg.client();
    let old = p
        .push_image("app", Some("pr-1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    let other = p
        .push_image("app", Some("pr-2"), &ImageSpec::seeded(2))
        .await
        .unwrap();
    let third = p
        .push_image("app", Some("pr-3"), &ImageSpec::seeded(3))
        .await
        .unwrap();
    p.push_image("app", Some("main"), &ImageSpec::seeded(4))
        .await
        .unwrap();
    let old_sig = p.push_cosign_signature("app", &old.digest, 6).await.unwrap();
    let plan_file = reg.dir().join("plan.json");
    regsweep(&[
        "plan",
        "--delete-tags",
        "pr-*",
        "-o",
        plan_file.to_str().unwrap(),
        &reg.host(),
    ])
    .assert_ok();

    // Meanwhile CI re-tags the kept `main` onto an image planned for deletion, and re-pushes
    // `pr-3` with new content.
    p.tag("app", &old.digest, "main").await.unwrap();
    let rebuilt = p
        .push_image("app", Some("pr-3"), &ImageSpec::seeded(5))
        .await
        .unwrap();

    let run = regsweep(&["--json", "apply", "--yes", plan_file.to_str().unwrap()]);
    run.assert_ok();
    let report = run.json();
    let skipped = report["skipped"].as_array().unwrap();
    assert_eq!(
        skipped.len(),
        3,
        "pr-1's image, its signature, and pr-3: {report}"
    );
    assert!(
        skipped
            .iter()
            .all(|s| s["detail"].as_str().unwrap().contains("changed since planning")),
        "{report}"
    );
    assert!(skipped.iter().any(|s| s["target"] == "pr-3"), "{report}");
    let tags = tag_map(&p, "app").await;
    assert_eq!(
        tags["main"], old.digest,
        "the kept tag still resolves where it now points"
    );
    assert!(
        p.manifest_exists("app", &old_sig.digest).await.unwrap(),
        "its signature stays with it"
    );
    assert_eq!(tags["pr-3"], rebuilt.digest, "the re-pushed tag was not deleted");
    assert!(
        !p.manifest_exists("app", &other.digest).await.unwrap(),
        "the unchanged part of the plan ran"
    );
    assert!(
        !p.manifest_exists("app", &third.digest).await.unwrap(),
        "pr-3's old image was deleted"
    );
    p.verify_pullable("app", "main").await.unwrap();
}

#[tokio::test]
async fn apply_with_policy_file_numeric_tags_and_backup_restore() {
    let reg = registry().await;
    let p = reg.client();
    let mut digests = BTreeMap::new();
    for (i, tag) in ["948", "949", "950", "951", "1002", "latest", "dev"]
        .iter()
        .enumerate()
    {
        let image = p
            .push_image("tools/cli", Some(tag), &ImageSpec::seeded(100 + i as u64))
            .await
            .unwrap();
        digests.insert(tag.to_string(), image.digest);
    }
    let policy = reg.dir().join("policy.yaml");
    std::fs::write(
        &policy,
        "rules:\n  - repos: \"tools/**\"\n    keep:\n      - tags: [latest]\n      - semver: \">=950\"\n",
    )
    .unwrap();
    let backup = reg.dir().join("backup");
    let run = regsweep(&[
        "--json",
        "apply",
        "--yes",
        "--policy",
        policy.to_str().unwrap(),
        "--backup",
        backup.to_str().unwrap(),
        &format!("{}/tools/cli", reg.host()),
    ]);
    run.assert_ok();
    let tags = tag_map(&p, "tools/cli").await;
    assert_eq!(
        tags.keys().collect::<Vec<_>>(),
        vec!["1002", "950", "951", "latest"]
    );

    let run = regsweep(&["restore", backup.to_str().unwrap(), &reg.host()]);
    run.assert_ok();
    let tags = tag_map(&p, "tools/cli").await;
    assert_eq!(tags.len(), 7, "{tags:?}");
    for (tag, digest) in &digests {
        assert_eq!(&tags[tag], digest, "{tag} restored to the same digest");
        p.verify_pullable("tools/cli", tag).await.unwrap();
    }
}

#[tokio::test]
async fn deletes_disabled_is_explained_and_nothing_changes() {
    let reg = TestRegistry::start(RegistryOptions::default().delete_disabled())
        .await
        .unwrap();
    let p = reg.client();
    let image = p
        .push_image("app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    p.tag("app", &image.digest, "v1-alias").await.unwrap();
    let run = regsweep_with(&["rm", &format!("{}/app:v1", reg.host())], &[], None);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("storage.delete.enabled"), "{}", run.stderr);
    let tags = tag_map(&p, "app").await;
    assert_eq!(
        tags.keys().collect::<Vec<_>>(),
        vec!["v1", "v1-alias"],
        "no probe tags left behind"
    );
}
