//! `collect` over storage trees written into a temporary folder.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use super::*;
use crate::storage::testtree::{Tree, old};

fn options(dry_run: bool, delete_untagged: bool) -> GcOptions {
    GcOptions {
        dry_run,
        delete_untagged,
        ..GcOptions::default()
    }
}

fn blob_set(report: &Report) -> BTreeSet<Digest> {
    report.blobs.iter().map(|b| b.digest.clone()).collect()
}

/// Every blob each tag needs, following indexes, read back from storage.
fn assert_tags_complete(tree: &Tree) {
    let storage = tree.storage();
    for name in storage.repositories().unwrap().names {
        let repo = storage.read_repository(&name, ReadOptions::default());
        let revisions: BTreeSet<_> = repo.revisions.iter().map(|l| l.digest.clone()).collect();
        let layers: BTreeSet<_> = repo.layers.iter().cloned().collect();
        let mut queue: Vec<Digest> = repo
            .tags
            .iter()
            .filter_map(|t| t.current.clone())
            .map(|l| l.digest)
            .collect();
        while let Some(digest) = queue.pop() {
            assert!(revisions.contains(&digest), "{name}: {digest} not a revision");
            match load_manifest(&storage, &digest) {
                ManifestState::Parsed(facts) => {
                    for blob in &facts.blobs {
                        assert!(
                            storage.stat_blob(blob).unwrap().is_some(),
                            "{name}: blob {blob} gone"
                        );
                        assert!(layers.contains(blob), "{name}: link to {blob} gone");
                    }
                    queue.extend(facts.children);
                }
                other => panic!("{name}: manifest {digest} is {other:?}"),
            }
        }
    }
}

#[test]
fn dry_run_reports_garbage_and_a_sweep_deletes_exactly_that() {
    let tree = Tree::new();
    // `latest` first pointed at the old build, then moved on.
    let superseded = tree.image("app", Some("latest"), "old", 2);
    let kept = tree.image("app", Some("latest"), "kept", 2);
    let orphan = tree.blob(b"orphan upload");
    tree.link_layer("app", &orphan);
    tree.age_all(old());
    let storage = tree.storage();

    // Without --delete-untagged the superseded image and its layers stay.
    let report = collect(&storage, &options(true, false)).unwrap();
    assert_eq!(report.outcome, Outcome::DryRun);
    assert_eq!(blob_set(&report), BTreeSet::from([orphan.clone()]));
    assert_eq!(report.freed_bytes, b"orphan upload".len() as u64);
    assert_eq!(report.layer_links.len(), 1);
    assert!(report.manifests.is_empty());
    assert_eq!(report.stats.repositories, 1);
    assert_eq!(report.stats.manifests, 2);
    assert_eq!(report.stats.blobs, 9);
    assert!(
        tree.exists(&paths::blob_data(&orphan)),
        "a dry run deletes nothing"
    );

    let dry = collect(&storage, &options(true, true)).unwrap();
    assert_eq!(dry.manifests.len(), 1);
    assert_eq!(dry.manifests[0].digest, superseded);
    assert_eq!(dry.manifests[0].tag_history, vec!["latest".to_owned()]);
    // Manifest blob, config, two layers, the orphan.
    assert_eq!(dry.blobs.len(), 5);
    assert!(!blob_set(&dry).contains(&kept));

    let swept = collect(&storage, &options(false, true)).unwrap();
    assert_eq!(swept.outcome, Outcome::Swept);
    assert_eq!(blob_set(&swept), blob_set(&dry));
    assert_eq!(swept.freed_bytes, dry.freed_bytes);
    assert!(swept.failures.is_empty() && swept.skipped.is_empty(), "{swept:?}");
    assert!(!tree.exists(&paths::revision_dir("app", &superseded)));
    assert!(!tree.exists(&paths::tag_history_dir("app", "latest", &superseded)));
    assert!(tree.exists(&paths::tag_history_dir("app", "latest", &kept)));
    assert!(!tree.exists(&paths::blob_dir(&orphan)));
    assert!(!tree.exists(&paths::layer_link_dir("app", &orphan)));
    assert_tags_complete(&tree);

    // Nothing left to collect.
    let again = collect(&storage, &options(false, true)).unwrap();
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn delete_untagged_keeps_every_child_of_tagged_multi_arch_images() {
    let tree = Tree::new();
    let amd64 = tree.image("multi", None, "amd64", 2);
    let arm64 = tree.image("multi", None, "arm64", 2);
    tree.index("multi", Some("latest"), &[&amd64, &arm64]);
    let lost = tree.image("multi", None, "lost", 1);
    tree.age_all(old());
    let storage = tree.storage();

    let report = collect(&storage, &options(false, true)).unwrap();
    assert_eq!(report.outcome, Outcome::Swept);
    assert_eq!(
        report.manifests.iter().map(|m| &m.digest).collect::<Vec<_>>(),
        vec![&lost]
    );
    assert!(tree.exists(&paths::revision_dir("multi", &amd64)));
    assert!(tree.exists(&paths::revision_dir("multi", &arm64)));
    assert_tags_complete(&tree);
}

#[test]
fn grace_period_protects_recent_content() {
    let tree = Tree::new();
    tree.image("app", Some("v1"), "x", 1);
    let fresh = tree.blob(b"uploaded a second ago");
    tree.link_layer("app", &fresh);
    let untagged_now = tree.image("app", None, "in-flight", 1);
    tree.age_all(old());
    // Pushed just now: the blob, its link, and a manifest pushed by digest (an index child
    // whose index is not pushed yet).
    tree.set_mtime(&paths::blob_data(&fresh), SystemTime::now());
    tree.set_mtime(
        &format!("{}/link", paths::layer_link_dir("app", &fresh)),
        SystemTime::now(),
    );
    tree.set_mtime(
        &format!("{}/link", paths::revision_dir("app", &untagged_now)),
        SystemTime::now(),
    );
    let storage = tree.storage();

    let report = collect(&storage, &options(false, true)).unwrap();
    assert!(report.is_empty(), "{report:?}");
    assert_eq!(report.stats.young_kept, 1);
    assert!(tree.exists(&paths::blob_data(&fresh)));

    let no_grace = GcOptions {
        grace: Duration::ZERO,
        ..options(true, true)
    };
    let report = collect(&storage, &no_grace).unwrap();
    assert!(blob_set(&report).contains(&fresh));
    assert_eq!(report.manifests.len(), 1);
}

#[test]
fn corrupt_manifest_refuses_the_sweep_unless_told_otherwise() {
    let tree = Tree::new();
    tree.image("app", Some("v1"), "x", 1);
    let orphan = tree.blob(b"orphan");
    let corrupt = tree.manifest("app", "{ this is not json");
    tree.age_all(old());
    let storage = tree.storage();

    let report = collect(&storage, &options(false, false)).unwrap();
    assert_eq!(report.outcome, Outcome::Refused);
    assert!(report.failed());
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind, ProblemKind::UnreadableManifest);
    assert_eq!(errors[0].digest.as_ref(), Some(&corrupt));
    assert_eq!(errors[0].repository.as_deref(), Some("app"));
    // It says what it would delete, and deleted nothing.
    assert_eq!(blob_set(&report), BTreeSet::from([orphan.clone()]));
    assert!(tree.exists(&paths::blob_data(&orphan)));

    let forced = GcOptions {
        ignore_problems: true,
        ..options(false, true)
    };
    let report = collect(&storage, &forced).unwrap();
    assert_eq!(report.outcome, Outcome::Swept);
    assert!(!tree.exists(&paths::blob_data(&orphan)));
    // What cannot be read is never deleted.
    assert!(tree.exists(&paths::blob_data(&corrupt)));
    assert!(tree.exists(&paths::revision_dir("app", &corrupt)));
}

#[test]
fn manifest_whose_content_does_not_match_its_digest_is_unreadable() {
    let tree = Tree::new();
    let digest = tree.image("app", Some("v1"), "x", 1);
    tree.write(
        &paths::blob_data(&digest),
        br#"{"schemaVersion":2,"manifests":[]}"#,
    );
    tree.age_all(old());
    let report = collect(&tree.storage(), &options(true, false)).unwrap();
    assert_eq!(report.outcome, Outcome::Refused);
    let error = report.errors().next().unwrap();
    assert_eq!(error.kind, ProblemKind::UnreadableManifest);
    assert!(error.message.contains("corrupt"), "{}", error.message);
}

#[test]
fn missing_blobs_refuse_and_dangling_links_are_swept() {
    let tree = Tree::new();
    tree.image("app", Some("v1"), "x", 1);
    let gone = Digest::sha256(b"collected long ago");
    // A link left behind by distribution 2.x after it deleted the blob.
    tree.link_layer("app", &gone);
    tree.age_all(old());
    let storage = tree.storage();

    let report = collect(&storage, &options(false, false)).unwrap();
    assert_eq!(report.outcome, Outcome::Swept, "{:?}", report.problems);
    assert_eq!(report.layer_links.len(), 1);
    assert!(report.layer_links[0].dangling);
    assert!(!tree.exists(&paths::layer_link_dir("app", &gone)));

    // Now a layer a tagged image needs disappears.
    let needed = tree.image("app", Some("v2"), "y", 1);
    tree.age_all(old());
    let layer = match load_manifest(&storage, &needed) {
        ManifestState::Parsed(facts) => facts.blobs[1].clone(),
        other => panic!("{other:?}"),
    };
    std::fs::remove_dir_all(tree.path(&paths::blob_dir(&layer))).unwrap();
    let report = collect(&storage, &options(false, false)).unwrap();
    assert_eq!(report.outcome, Outcome::Refused);
    let error = report.errors().next().unwrap();
    assert_eq!(error.kind, ProblemKind::MissingBlob);
    assert_eq!(error.digest.as_ref(), Some(&layer));

    // And a revision whose manifest blob is missing.
    std::fs::remove_dir_all(tree.path(&paths::blob_dir(&needed))).unwrap();
    let report = collect(&storage, &options(true, false)).unwrap();
    assert!(report.errors().any(|p| p.kind == ProblemKind::MissingManifest));
}

#[test]
fn nested_repositories_and_cross_repository_blobs() {
    let tree = Tree::new();
    // The same base layer content in two repositories (a cross-repository mount).
    tree.image("team", Some("v1"), "shared", 1);
    tree.image("team/sub/app", Some("v1"), "shared", 1);
    // `team/tools` links a blob only `team` uses.
    let only_team = tree.blob(b"{\"config\":\"shared\"}");
    tree.link_layer("team/tools", &only_team);
    tree.mkdir("repositories/team/tools/_manifests/revisions");
    tree.age_all(old());
    let storage = tree.storage();

    let report = collect(&storage, &options(false, true)).unwrap();
    assert_eq!(report.stats.repositories, 3);
    assert!(report.blobs.is_empty(), "{:?}", report.blobs);
    assert_eq!(
        report
            .layer_links
            .iter()
            .map(|l| l.repository.as_str())
            .collect::<Vec<_>>(),
        vec!["team/tools"]
    );
    assert!(tree.exists(&paths::blob_data(&only_team)));
    assert_tags_complete(&tree);
}

#[test]
fn empty_registry_and_empty_folders() {
    let tree = Tree::new();
    let report = collect(&tree.storage(), &options(false, true)).unwrap();
    assert_eq!(report.outcome, Outcome::Swept);
    assert!(report.is_empty() && report.problems.is_empty());
    assert_eq!(report.stats.blobs, 0);

    // Leftovers of API deletes and of an interrupted blob delete.
    let digest = Digest::sha256(b"deleted through the API");
    tree.mkdir("repositories/app/_manifests/tags");
    tree.mkdir(&paths::revision_dir("app", &digest));
    tree.mkdir(&paths::layer_link_dir("app", &digest));
    tree.mkdir(&paths::blob_dir(&digest));
    let orphan = tree.blob(b"lonely");
    tree.age_all(old());
    let report = collect(&tree.storage(), &options(false, false)).unwrap();
    assert_eq!(report.outcome, Outcome::Swept, "{:?}", report.problems);
    let shard = paths::blob_dir(&orphan).rsplit_once('/').unwrap().0.to_owned();
    assert!(report.empty_dirs.contains(&paths::revision_dir("app", &digest)));
    assert!(report.empty_dirs.contains(&paths::layer_link_dir("app", &digest)));
    assert!(report.empty_dirs.contains(&paths::blob_dir(&digest)));
    assert!(report.empty_dirs.contains(&shard), "{:?}", report.empty_dirs);
    assert!(!tree.exists(&shard));
    // The repository itself stays: distribution lists it in the catalog.
    assert!(tree.exists("repositories/app/_manifests"));
}

#[test]
fn content_pushed_during_the_run_is_protected() {
    let tree = Tree::new();
    tree.image("app", Some("v1"), "x", 1);
    let orphan_body = tree.image_body("other", "reused", 1, None);
    tree.age_all(old());
    let started = SystemTime::now() - Duration::from_secs(1);
    // While the run went on, someone pushed a manifest that reuses old, unreferenced blobs.
    let pushed = tree.manifest("other", &orphan_body);
    let storage = tree.storage();
    let protected = sweep::pushed_since(&storage, started).unwrap();
    assert!(protected.contains(&pushed));
    match load_manifest(&storage, &pushed) {
        ManifestState::Parsed(facts) => assert!(facts.blobs.iter().all(|b| protected.contains(b))),
        other => panic!("{other:?}"),
    }
}

/// The sweep's own re-check: a manifest pushed after marking that reuses blobs the mark phase
/// found unreferenced (the push's HEAD found them, so nothing was uploaded and they stay old)
/// keeps them, and the sweep says so; what nothing reuses still goes.
#[test]
fn a_sweep_keeps_the_blobs_of_a_push_that_landed_after_marking() {
    let tree = Tree::new();
    tree.image("app", Some("v1"), "x", 1);
    let reused_body = tree.image_body("other", "reused", 2, None);
    let lonely = tree.blob(b"lonely");
    tree.age_all(old());
    let storage = tree.storage();
    let started = SystemTime::now() - Duration::from_secs(1);
    let marked = collect(&storage, &options(true, false)).unwrap();
    let planned: BTreeSet<Digest> = blob_set(&marked);
    assert!(planned.contains(&lonely), "{planned:?}");

    let pushed = tree.manifest("other", &reused_body);
    let ManifestState::Parsed(facts) = load_manifest(&storage, &pushed) else {
        panic!("the pushed manifest reads back");
    };
    let reused: Vec<&Digest> = facts.blobs.iter().filter(|b| planned.contains(*b)).collect();
    assert_eq!(
        reused.len(),
        3,
        "config and two layers were candidates: {planned:?}"
    );

    let plan = SweepPlan {
        manifests: Vec::new(),
        layer_links: Vec::new(),
        blobs: marked.blobs.clone(),
        uploads: Vec::new(),
        empty_dirs: Vec::new(),
    };
    let result = sweep::sweep(&storage, plan, started, started);
    let deleted: BTreeSet<&Digest> = result.blobs.iter().map(|b| &b.digest).collect();
    assert!(deleted.contains(&lonely), "{deleted:?}");
    for digest in reused {
        assert!(
            !deleted.contains(digest),
            "{digest} was deleted under a fresh push"
        );
        assert!(tree.exists(&paths::blob_data(digest)), "{digest}");
        assert!(
            result.skipped.iter().any(|s| s.path.contains(digest.encoded())),
            "{digest} is reported as skipped: {:?}",
            result.skipped
        );
    }
}

#[test]
fn report_serialises_to_the_documented_json() {
    let tree = Tree::new();
    tree.image("app", Some("v1"), "x", 1);
    tree.blob(b"orphan");
    tree.age_all(old());
    let report = collect(&tree.storage(), &options(true, true)).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "format",
        "storage",
        "dry_run",
        "delete_untagged",
        "grace_seconds",
        "started_at",
        "outcome",
        "stats",
        "freed_bytes",
        "blobs",
        "manifests",
        "layer_links",
        "empty_dirs",
        "skipped",
        "failures",
        "problems",
        "timings",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    assert_eq!(json["outcome"], "dry-run");
    assert_eq!(json["format"], 1);
    assert_eq!(json["blobs"][0]["size"], 6);
    assert!(
        json["blobs"][0]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
}

#[test]
fn runs_on_a_dedicated_thread_pool() {
    let tree = Tree::new();
    tree.image("app", Some("v1"), "x", 3);
    let report = collect(
        &tree.storage(),
        &GcOptions {
            threads: Some(1),
            ..options(true, false)
        },
    )
    .unwrap();
    assert_eq!(report.stats.blobs, 5);
}

#[test]
fn bad_revision_links_are_found_when_verifying_links() {
    let tree = Tree::new();
    let digest = tree.image("app", None, "x", 1);
    tree.write(
        &format!("{}/link", paths::revision_dir("app", &digest)),
        b"sha256:not-hex",
    );
    let orphan = tree.blob(b"orphan");
    tree.age_all(old());
    let storage = tree.storage();

    // Found by its folder, as distribution addresses it: kept, with its blobs.
    let report = collect(&storage, &options(true, false)).unwrap();
    assert_eq!(report.outcome, Outcome::DryRun);
    assert_eq!(blob_set(&report), BTreeSet::from([orphan]));

    let verify = GcOptions {
        verify_links: true,
        ..options(true, false)
    };
    let report = collect(&storage, &verify).unwrap();
    assert_eq!(report.outcome, Outcome::Refused);
    let error = report.errors().next().unwrap();
    assert_eq!(error.kind, ProblemKind::BadLink);
    assert!(error.message.contains("not a digest"), "{}", error.message);
}

#[test]
fn schema1_manifests_keep_their_layers() {
    let tree = Tree::new();
    let layer = tree.blob(b"schema1 layer");
    tree.link_layer("legacy", &layer);
    let body = format!(
        r#"{{"schemaVersion":1,"name":"legacy","tag":"v1","architecture":"amd64",
        "fsLayers":[{{"blobSum":"{layer}"}},{{"blobSum":"{layer}"}}],"history":[],"signatures":[]}}"#
    );
    let manifest = tree.manifest("legacy", &body);
    tree.tag("legacy", "v1", &manifest);
    let orphan = tree.blob(b"orphan");
    tree.age_all(old());

    let report = collect(&tree.storage(), &options(false, true)).unwrap();
    assert_eq!(report.outcome, Outcome::Swept, "{:?}", report.problems);
    assert_eq!(blob_set(&report), BTreeSet::from([orphan]));
    assert!(report.layer_links.is_empty());
    assert!(tree.exists(&paths::blob_data(&layer)));
    assert_tags_complete(&tree);
}

#[test]
fn tags_are_read_where_they_decide_something() {
    let tree = Tree::new();
    tree.image("app", Some("v1"), "x", 1);
    // A tag pointing at a manifest the repository does not have (the registry answers 404).
    let elsewhere = tree.blob(b"{\"schemaVersion\":2,\"manifests\":[]}");
    tree.tag("app", "broken", &elsewhere);
    tree.age_all(old());
    let storage = tree.storage();

    // Without --delete-untagged every revision is a root, so tag targets change nothing and
    // their links are not read: the orphan blob goes, as with distribution.
    let report = collect(&storage, &options(true, false)).unwrap();
    assert_eq!(report.outcome, Outcome::DryRun, "{:?}", report.problems);
    assert_eq!(blob_set(&report), BTreeSet::from([elsewhere.clone()]));

    // Where tags are the roots, or links are verified, the broken tag stops the sweep.
    for options in [
        options(true, true),
        GcOptions {
            verify_links: true,
            ..options(true, false)
        },
    ] {
        let report = collect(&storage, &options).unwrap();
        assert_eq!(report.outcome, Outcome::Refused);
        assert_eq!(report.errors().next().unwrap().kind, ProblemKind::BrokenTag);
        assert!(!blob_set(&report).contains(&elsewhere), "its blob is kept");
    }
}

#[test]
fn tag_links_are_read_only_where_they_can_change_what_is_kept() {
    let names_only = |delete_untagged, verify_links| {
        read_options(&GcOptions {
            delete_untagged,
            verify_links,
            ..GcOptions::default()
        })
        .tag_names_only
    };
    assert!(names_only(false, false));
    assert!(!names_only(true, false), "tags are roots with delete_untagged");
    assert!(!names_only(false, true), "verifying links reads them");
    let read = read_options(&options(false, true));
    assert!(!read.tag_history && !read.link_times);
}

#[test]
fn unneeded_layer_links_are_kept_while_young() {
    let cutoff = SystemTime::now() - Duration::from_secs(3600);
    let (young, aged) = (SystemTime::now(), old());
    for (state, fate) in [
        (LayerLinkState::Link(young), LayerLinkFate::KeepYoung),
        (LayerLinkState::Link(aged), LayerLinkFate::DeleteLink),
        (LayerLinkState::EmptyDir(young), LayerLinkFate::KeepYoungEmptyDir),
        (LayerLinkState::EmptyDir(aged), LayerLinkFate::DeleteEmptyDir),
        (LayerLinkState::Other, LayerLinkFate::LeaveAlone),
    ] {
        assert_eq!(layer_link_fate(&state, cutoff), fate, "{state:?}");
    }
}
