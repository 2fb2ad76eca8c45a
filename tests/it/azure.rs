//! `regsweep gc az://…` on Azure Blob Storage (Azurite, the Azure emulator, on loopback). Debian's
//! registry has no `azure` driver, so the real registry writes to its filesystem, the tree is
//! copied into an Azurite container, and gc there must delete exactly what gc on the filesystem
//! deletes, leaving every tag complete (the filesystem side is checked by pulling every tag from
//! the restarted registry).

use std::collections::BTreeSet;
use std::path::Path;

use regsweep_testkit::azurite::files_below;

use crate::common::Cli;
use crate::common::fixtures::{assert_fixtures_pull, push_fixtures};
use regsweep_testkit::{Azurite, RegistryOptions, TestRegistry};
use serde_json::Value;

const CONTAINER: &str = "registry";
const PREFIX: &str = "reg";
const LAYOUT: &str = "docker/registry/v2";

/// `regsweep gc --json ARGS` with `env`, asserting exit code 0.
#[track_caller]
fn gc_json(args: &[&str], env: &[(String, String)]) -> Value {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // As a process: object_store reads the emulator's URL (AZURITE_BLOB_STORAGE_URL) from the
    // process's environment, not from the one a run is given.
    let run = Cli::new(&[&["gc", "--json"], args].concat())
        .envs(&env)
        .binary()
        .run();
    assert_eq!(run.code, 0, "{run:#?}");
    run.json()
}

/// The values of `field` in each object of a report list.
fn field_set(report: &Value, list: &str, field: &str) -> BTreeSet<String> {
    report[list]
        .as_array()
        .unwrap_or_else(|| panic!("the report has no `{list}` list: {report:#}"))
        .iter()
        .map(|item| format!("{}@{}", item["repository"].as_str().unwrap_or(""), item[field]))
        .collect()
}

/// Every file below the layout folder of a filesystem root, relative to it.
fn files(root: &Path) -> BTreeSet<String> {
    files_below(&root.join(LAYOUT)).expect("the storage tree can be read")
}

/// Every key below the layout prefix in the container, relative to it.
async fn keys(azurite: &Azurite) -> BTreeSet<String> {
    let prefix = format!("{PREFIX}/{LAYOUT}/");
    azurite
        .keys(CONTAINER, &prefix)
        .await
        .unwrap()
        .iter()
        .map(|k| {
            k.strip_prefix(&prefix)
                .expect("listed under the prefix")
                .to_owned()
        })
        .collect()
}

fn blob_key(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    format!("blobs/sha256/{}/{hex}/data", &hex[..2])
}

#[tokio::test]
async fn azure_gc_deletes_exactly_what_filesystem_gc_deletes() {
    let azurite = Azurite::start().await.unwrap();
    azurite.create_container(CONTAINER).await.unwrap();
    let mut reg = TestRegistry::start(RegistryOptions::default()).await.unwrap();
    let fixtures = push_fixtures(&reg.client()).await;
    reg.stop().await.unwrap();
    let root = reg.storage_root().to_owned();
    let uploaded = azurite.upload_tree(CONTAINER, PREFIX, &root).await.unwrap();
    let before = files(&root);
    assert_eq!(uploaded, before.len());
    assert_eq!(
        keys(&azurite).await,
        before,
        "the container holds a copy of the tree"
    );

    let env = azurite.client_env();
    let target = format!("az://{CONTAINER}/{PREFIX}");
    let local = root.to_str().unwrap();
    for mode in [&[][..], &["--delete-untagged"][..]] {
        let dry = gc_json(&[&["--dry-run", "--grace", "0"], mode, &[&target]].concat(), &env);
        assert_eq!(dry["outcome"], "dry-run", "{dry:#}");
        assert_eq!(keys(&azurite).await, files(&root), "a dry run deletes nothing");

        let ours = gc_json(&[&["--grace", "0"], mode, &[&target]].concat(), &env);
        let theirs = gc_json(&[&["--grace", "0"], mode, &[local]].concat(), &[]);
        assert_eq!(ours["outcome"], "swept", "{ours:#}");
        assert_eq!(theirs["outcome"], "swept", "{theirs:#}");
        assert!(ours["failures"].as_array().unwrap().is_empty(), "{ours:#}");
        assert!(
            !ours["blobs"].as_array().unwrap().is_empty(),
            "each mode has garbage to collect: {ours:#}"
        );
        assert_eq!(ours["blobs"], dry["blobs"], "the dry run announced the sweep");
        assert_eq!(ours["blobs"], theirs["blobs"]);
        assert_eq!(ours["freed_bytes"], theirs["freed_bytes"]);
        for (list, field) in [
            ("manifests", "digest"),
            ("layer_links", "digest"),
            ("uploads", "id"),
        ] {
            assert_eq!(
                field_set(&ours, list, field),
                field_set(&theirs, list, field),
                "{list}"
            );
        }
        // Object stores have no folders: beyond the reports, the trees left must be the same.
        let left = keys(&azurite).await;
        assert_eq!(left, files(&root), "Azure and filesystem keep the same keys");
        for digest in &fixtures.kept_blobs() {
            assert!(
                left.contains(&blob_key(digest)),
                "{digest} of a kept tag was deleted"
            );
        }
        // Azure ETags are not MD5s: every link is read, every manifest fetched once.
        let gets = ours["requests"]["gets"]
            .as_u64()
            .expect("object stores report requests");
        let manifests = ours["stats"]["manifests"]
            .as_u64()
            .expect("stats count manifests");
        assert!(manifests > 0 && gets >= manifests, "{ours:#}");
    }
    assert!(keys(&azurite).await.len() < before.len());

    reg.start_again().await.unwrap();
    assert_fixtures_pull(&reg.client(), &fixtures).await;
    reg.stop().await.unwrap();
}
