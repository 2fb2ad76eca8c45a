//! Retention on the registry's storage (`--storage`): content pushed through the real registry
//! with deletes disabled, the registry stopped, regsweep planning and applying on its folder,
//! the registry started again and every kept tag pulled completely (also with skopeo).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::common::{self, regsweep};
use regsweep_testkit::{
    Format, ImageSpec, MotoServer, PushedImage, PushedIndex, Pusher, RegistryOptions, TestRegistry,
};

/// What [`push`] pushed.
struct Content {
    v1: PushedImage,
    v1_referrer: PushedImage,
    v1_signature: PushedImage,
    v2: PushedImage,
    v0: PushedImage,
    v0_referrer: PushedImage,
    v0_signature: PushedImage,
    old_index: PushedIndex,
    new_index: PushedIndex,
}

/// `app`: v1 (alias `stable`) and v0, each with a cosign signature tag and an untagged OCI 1.1
/// referrer; v2. `multi`: two multi-arch indexes, `1.0` and `2.0` (alias `latest`).
async fn push(p: &Pusher) -> Content {
    let v0 = p
        .push_image("app", Some("v0"), &ImageSpec::seeded(100))
        .await
        .unwrap();
    let v0_signature = p.push_cosign_signature("app", &v0.digest, 101).await.unwrap();
    let v0_referrer = p
        .push_referrer("app", &v0.descriptor(), "application/vnd.example.sbom", 102)
        .await
        .unwrap();
    let v1 = p
        .push_image("app", Some("v1"), &ImageSpec::seeded(110))
        .await
        .unwrap();
    p.tag("app", &v1.digest, "stable").await.unwrap();
    let v1_signature = p.push_cosign_signature("app", &v1.digest, 111).await.unwrap();
    let v1_referrer = p
        .push_referrer("app", &v1.descriptor(), "application/vnd.example.sbom", 112)
        .await
        .unwrap();
    let v2 = p
        .push_image("app", Some("v2"), &ImageSpec::seeded(120))
        .await
        .unwrap();
    let platforms = [("linux", "amd64"), ("linux", "arm64/v8")];
    let old_index = p
        .push_index("multi", Some("1.0"), Format::Oci, &platforms, 130)
        .await
        .unwrap();
    let new_index = p
        .push_index("multi", Some("2.0"), Format::Docker, &platforms, 140)
        .await
        .unwrap();
    p.tag("multi", &new_index.digest, "latest").await.unwrap();
    Content {
        v1,
        v1_referrer,
        v1_signature,
        v2,
        v0,
        v0_referrer,
        v0_signature,
        old_index,
        new_index,
    }
}

const POLICY: &str = "rules:\n  - repos: \"**\"\n    keep:\n      - tags: [v1, stable, \"2.*\", latest]\n";

fn write_policy(dir: &Path) -> PathBuf {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, POLICY).unwrap();
    path
}

async fn tag_names(p: &Pusher, repo: &str) -> BTreeSet<String> {
    p.tags(repo).await.unwrap().into_iter().collect()
}

/// The tags [`POLICY`] leaves on [`push`]'s content: v1 with its alias and signature tag, the
/// newer index with its alias. Returns v1's signature tag.
async fn assert_policy_outcome(p: &Pusher, c: &Content) -> String {
    let v1_sig_tag = format!("sha256-{}.sig", c.v1.digest.strip_prefix("sha256:").unwrap());
    assert_eq!(tag_names(p, "app").await, set(&["v1", "stable", &v1_sig_tag]));
    assert_eq!(tag_names(p, "multi").await, set(&["2.0", "latest"]));
    v1_sig_tag
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn link(root: &Path, repo: &str, tag: &str) -> PathBuf {
    root.join(format!(
        "docker/registry/v2/repositories/{repo}/_manifests/tags/{tag}/current/link"
    ))
}

#[tokio::test]
async fn apply_on_storage_with_deletes_disabled_matches_the_api_and_keeps_everything_kept_pullable() {
    let mut reg = TestRegistry::start(RegistryOptions::default().delete_disabled())
        .await
        .unwrap();
    let p = reg.client();
    let c = push(&p).await;
    let work = tempfile::tempdir().unwrap();
    let policy = write_policy(work.path());
    let policy = policy.to_str().unwrap();
    reg.stop().await.unwrap();
    let root = reg.storage_root().to_owned();
    // The same content for the API path, on a registry that can delete.
    let api_root = work.path().join("api-copy");
    regsweep_testkit::copy_tree(&root, &api_root).unwrap();

    let root_arg = root.to_str().unwrap();
    let plan_file = work.path().join("plan.json");
    let planned = regsweep(&[
        "plan",
        "--storage",
        root_arg,
        "--policy",
        policy,
        "-o",
        plan_file.to_str().unwrap(),
        "--json",
    ]);
    planned.assert_ok();
    let plan = planned.json();
    assert_eq!(plan["source"], "storage", "{plan:#}");
    let deleted_tags: BTreeSet<String> = plan["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            let repo = r["repository"].as_str().unwrap().to_owned();
            r["tags"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["action"] == "delete")
                .map(move |t| format!("{repo}:{}", t["tag"].as_str().unwrap()))
        })
        .collect();
    let v0_sig_tag = format!("sha256-{}.sig", c.v0.digest.strip_prefix("sha256:").unwrap());
    assert_eq!(
        deleted_tags,
        set(&["app:v0", "app:v2", "multi:1.0", &format!("app:{v0_sig_tag}")]),
        "{plan:#}"
    );

    // inspect on storage sees the aliases, the platforms and every referrer, tagged or not.
    let inspected = regsweep(&["inspect", "--storage", root_arg, "app:v1", "--json"]);
    inspected.assert_ok();
    let inspected = inspected.json();
    assert_eq!(
        inspected["tags"],
        serde_json::json!(["stable", "v1"]),
        "{inspected:#}"
    );
    let referrers: BTreeSet<&str> = inspected["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        referrers,
        BTreeSet::from([c.v1_signature.digest.as_str(), c.v1_referrer.digest.as_str()]),
        "{inspected:#}"
    );
    let index = regsweep(&["inspect", "--storage", root_arg, "multi:latest", "--json"]);
    index.assert_ok();
    let index = index.json();
    assert_eq!(index["platforms"].as_array().unwrap().len(), 2, "{index:#}");
    assert_eq!(index["digest"], c.new_index.digest.as_str());
    let missing = regsweep(&["inspect", "--storage", root_arg, "app:nope"]);
    assert_eq!(missing.code, 1, "{missing:#?}");
    assert!(
        missing.stderr.contains("`nope` is not in repository `app`"),
        "{missing:#?}"
    );

    let backup = work.path().join("backup");
    let applied = regsweep(&[
        "apply",
        "--storage",
        root_arg,
        "--yes",
        "--gc",
        "--grace",
        "0",
        "--backup",
        backup.to_str().unwrap(),
        plan_file.to_str().unwrap(),
    ]);
    applied.assert_ok();
    assert!(
        applied
            .stderr
            .contains("not checked that the registry serving this storage is stopped"),
        "{applied:#?}"
    );
    assert!(
        applied.stderr.contains("Restart the registry now"),
        "{applied:#?}"
    );

    reg.start_again().await.unwrap();
    let v1_sig_tag = assert_policy_outcome(&p, &c).await;
    for (repo, reference) in [
        ("app", "v1"),
        ("app", "stable"),
        ("app", v1_sig_tag.as_str()),
        ("app", c.v1_referrer.digest.as_str()),
        ("multi", "2.0"),
        ("multi", "latest"),
    ] {
        p.verify_pullable(repo, reference)
            .await
            .unwrap_or_else(|e| panic!("{repo}:{reference} no longer pulls: {e:#}"));
    }
    for child in &c.new_index.children {
        p.verify_pullable("multi", &child.digest).await.unwrap();
    }
    // What went is gone, with its signature, referrer and platform images.
    for (repo, digest) in [
        ("app", &c.v0.digest),
        ("app", &c.v0_signature.digest),
        ("app", &c.v0_referrer.digest),
        ("app", &c.v2.digest),
        ("multi", &c.old_index.digest),
        ("multi", &c.old_index.children[0].digest),
    ] {
        assert!(
            !p.manifest_exists(repo, digest).await.unwrap(),
            "{repo}@{digest} survived"
        );
    }
    // gc ran: the deleted images' layers left the blob store; the kept ones did not.
    let v2_layer = &c.v2.blobs().last().unwrap().digest;
    assert!(!p.blob_exists("app", v2_layer).await.unwrap(), "gc did not run");
    assert!(
        p.blob_exists("app", &c.v1.blobs().last().unwrap().digest)
            .await
            .unwrap()
    );
    // An independent client agrees.
    let skopeo_tags: BTreeSet<String> = reg.skopeo_list_tags("app").await.unwrap().into_iter().collect();
    assert_eq!(skopeo_tags, set(&["v1", "stable", &v1_sig_tag]));
    reg.stop().await.unwrap();

    // The same policy over the API (deletes enabled, on the copy) leaves the same tags.
    let mut api = TestRegistry::start(RegistryOptions::default().with_storage_root(&api_root))
        .await
        .unwrap();
    let applied = regsweep(&["apply", &api.host(), "--policy", policy, "--yes"]);
    applied.assert_ok();
    assert_eq!(assert_policy_outcome(&api.client(), &c).await, v1_sig_tag);
    api.stop().await.unwrap();

    // The backup puts back what went (tags and manifests; gc removed the layers, so v2's
    // manifest is back but not pullable: restore works until gc runs, as documented).
    let restored = regsweep(&[
        "restore",
        "--storage",
        root_arg,
        backup.to_str().unwrap(),
        "--json",
    ]);
    restored.assert_ok();
    let restored = restored.json();
    assert!(
        restored["restored"].as_array().unwrap().len() >= 4,
        "{restored:#}"
    );
    assert!(link(&root, "app", "v2").is_file());
    assert!(link(&root, "multi", "1.0").is_file());
}

#[tokio::test]
async fn pushed_time_decides_on_storage_and_is_refused_over_the_api() {
    let mut reg = TestRegistry::start(RegistryOptions::default().delete_disabled())
        .await
        .unwrap();
    let p = reg.client();
    for (i, tag) in ["a", "b", "c", "d"].iter().enumerate() {
        p.push_image("svc", Some(tag), &ImageSpec::seeded(200 + i as u64))
            .await
            .unwrap();
    }
    let host = reg.host();
    let over_api = regsweep(&[
        "plan",
        &format!("{host}/svc"),
        "--keep-newer-than",
        "90d",
        "--time-source",
        "pushed",
    ]);
    assert_eq!(over_api.code, 2, "{over_api:#?}");
    assert!(over_api.stderr.contains("needs --storage"), "{over_api:#?}");
    reg.stop().await.unwrap();
    let root = reg.storage_root().to_owned();
    // `a` and `c` were last pushed 100 days ago.
    let long_ago = SystemTime::now() - Duration::from_secs(100 * 24 * 3600);
    for tag in ["a", "c"] {
        std::fs::File::options()
            .write(true)
            .open(link(&root, "svc", tag))
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
    }
    let plan = regsweep(&[
        "plan",
        "--storage",
        root.to_str().unwrap(),
        "--keep-newer-than",
        "90d",
        "--time-source",
        "pushed",
        "svc",
        "--json",
    ]);
    plan.assert_ok();
    let plan = plan.json();
    let tags = plan["repositories"][0]["tags"].as_array().unwrap();
    let deleted: BTreeSet<&str> = tags
        .iter()
        .filter(|t| t["action"] == "delete")
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, BTreeSet::from(["a", "c"]), "{plan:#}");
    let reason = tags.iter().find(|t| t["tag"] == "b").unwrap()["reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("pushed"), "{reason}");
    // `tags --long --storage` shows the push times.
    let listed = regsweep(&[
        "tags",
        "--storage",
        root.to_str().unwrap(),
        "svc",
        "--long",
        "--json",
    ]);
    listed.assert_ok();
    let listed = listed.json();
    let pushed_a = listed["tags"].as_array().unwrap()[0]["pushed"]
        .as_str()
        .unwrap()
        .to_owned();
    let expected_year = jiff::Timestamp::try_from(long_ago)
        .unwrap()
        .strftime("%Y-%m-%d")
        .to_string();
    assert!(pushed_a.starts_with(&expected_year), "{listed:#}");

    // Removing every tag leaves the repository in the catalog, unless asked to remove it.
    let root_arg = root.to_str().unwrap();
    let rm = regsweep(&[
        "rm",
        "--storage",
        root_arg,
        "svc:a",
        "svc:b",
        "svc:c",
        "svc:d",
        "--remove-empty-repositories",
    ]);
    rm.assert_ok();
    assert!(rm.stdout.contains("removed the empty repository svc"), "{rm:#?}");
    let repos = regsweep(&["repos", "--storage", root_arg, "--json"]);
    repos.assert_ok();
    assert_eq!(repos.json()["repositories"], serde_json::json!([]), "{repos:#?}");
    reg.start_again().await.unwrap();
    assert!(p.catalog().await.unwrap().is_empty());
}

#[tokio::test]
async fn storage_changes_are_refused_on_a_writable_registry_and_checked_again_before_each_removal() {
    let mut reg = TestRegistry::start(RegistryOptions::default().delete_disabled())
        .await
        .unwrap();
    let p = reg.client();
    let c = push(&p).await;
    let root = reg.storage_root().to_owned();
    let root_arg = root.to_str().unwrap().to_owned();
    let url = reg.base_url();
    // A plan made over the API, applied on the storage below.
    let work = tempfile::tempdir().unwrap();
    let plan_file = work.path().join("plan.json");
    regsweep(&[
        "plan",
        &format!("{}/app", reg.host()),
        "--keep-tags",
        "v1",
        "-o",
        plan_file.to_str().unwrap(),
    ])
    .assert_ok();

    // Running, deletes disabled but pushes accepted: refused, nothing changed.
    let refused = regsweep(&["rm", "--storage", &root_arg, "--registry-url", &url, "app:v2"]);
    assert_eq!(refused.code, 1, "{refused:#?}");
    assert!(refused.stderr.contains("accepts writes"), "{refused:#?}");
    assert!(
        refused.stderr.contains("deletes are disabled, pushes are not"),
        "{refused:#?}"
    );
    assert!(link(&root, "app", "v2").is_file());
    reg.stop().await.unwrap();

    // Read-only on the same storage: allowed. An alias is only untagged.
    let mut read_only = TestRegistry::start(RegistryOptions::default().read_only().with_storage_root(&root))
        .await
        .unwrap();
    let rm = regsweep(&[
        "rm",
        "--storage",
        &root_arg,
        "--registry-url",
        &read_only.base_url(),
        "app:stable",
    ]);
    rm.assert_ok();
    assert!(rm.stderr.contains("is read-only"), "{rm:#?}");
    assert!(rm.stdout.contains("untagged app:stable"), "{rm:#?}");
    assert!(!link(&root, "app", "stable").exists());
    assert!(link(&root, "app", "v1").is_file());
    read_only.stop().await.unwrap();

    // A tag moved between plan and apply is skipped and left where it now points; `stable`,
    // untagged above, is already gone; the rest of the plan is carried out.
    std::fs::write(link(&root, "app", "v2"), &c.v1.digest).unwrap();
    let applied = regsweep(&[
        "apply",
        "--storage",
        &root_arg,
        "--yes",
        "--json",
        plan_file.to_str().unwrap(),
    ]);
    applied.assert_ok();
    let report = applied.json();
    let skipped: Vec<&str> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["code"].as_str().unwrap())
        .collect();
    assert!(skipped.contains(&"changed-since-planning"), "{report:#}");
    assert!(skipped.contains(&"already-gone"), "{report:#}");
    assert_eq!(
        std::fs::read_to_string(link(&root, "app", "v2")).unwrap(),
        c.v1.digest
    );
    assert!(!link(&root, "app", "v0").exists(), "{report:#}");

    // An unreadable link: that repository plans no deletions, and the run exits 1.
    std::fs::write(link(&root, "multi", "1.0"), "not a digest").unwrap();
    let broken = regsweep(&["plan", "--storage", &root_arg, "--keep-tags", "latest", "--json"]);
    assert_eq!(broken.code, 1, "{broken:#?}");
    let plan = broken.json();
    let multi = plan["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["repository"] == "multi")
        .unwrap();
    assert!(!multi["errors"].as_array().unwrap().is_empty(), "{plan:#}");
    assert!(multi["actions"].as_array().unwrap().is_empty(), "{plan:#}");
}

#[tokio::test]
async fn apply_on_s3_storage_written_by_the_real_registry() {
    let moto = MotoServer::start().await.unwrap();
    moto.create_bucket("reg").await.unwrap();
    let mut reg = TestRegistry::start(
        RegistryOptions::default()
            .with_s3(&moto.endpoint(), "reg", "/reg")
            .delete_disabled(),
    )
    .await
    .unwrap();
    let p = reg.client();
    let c = push(&p).await;
    reg.stop().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let policy = write_policy(work.path());
    let env = common::s3_env(moto.endpoint());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let applied = common::regsweep_with(
        &[
            "apply",
            "--storage",
            "s3://reg/reg",
            "--policy",
            policy.to_str().unwrap(),
            "--yes",
            "--gc",
            "--grace",
            "0",
        ],
        &env,
        None,
    );
    applied.assert_ok();
    assert!(!applied.stderr.contains(common::S3_TEST_SECRET), "{applied:#?}");
    // v0 with its signature and referrer, v2, and the old index with its two children.
    assert!(
        applied.stdout.contains("Deleted 7 manifests (4 tags)"),
        "{applied:#?}"
    );
    assert!(
        applied.stdout.contains("Collecting garbage on s3://reg/reg"),
        "{applied:#?}"
    );
    // Said once, by the collection.
    assert_eq!(
        applied.stderr.matches("Restart the registry").count()
            + applied.stderr.matches("restart the registry").count(),
        1,
        "{applied:#?}"
    );

    reg.start_again().await.unwrap();
    assert_policy_outcome(&p, &c).await;
    for (repo, reference) in [
        ("app", "v1"),
        ("app", c.v1_referrer.digest.as_str()),
        ("multi", "latest"),
    ] {
        p.verify_pullable(repo, reference).await.unwrap();
    }
    assert!(!p.manifest_exists("app", &c.v0_referrer.digest).await.unwrap());
    assert!(!p.manifest_exists("multi", &c.old_index.digest).await.unwrap());
    // gc ran on the bucket: the deleted image's layer is gone from it.
    let layer = c.v2.blobs().last().unwrap().digest.clone();
    let hex = layer.strip_prefix("sha256:").unwrap();
    let keys = moto
        .keys(
            "reg",
            &format!("reg/docker/registry/v2/blobs/sha256/{}/{hex}/", &hex[..2]),
        )
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}
