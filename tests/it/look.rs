//! The read-only commands (`repos`, `tags`, `inspect`, `du`) against the real registry server.

use std::collections::{BTreeSet, HashMap};

use crate::common::{Scenario, regsweep, strings};
use regsweep_testkit::{FillSpec, Format, ImageSpec, RegistryOptions, TestRegistry, fill};

async fn registry() -> TestRegistry {
    TestRegistry::start(RegistryOptions::default())
        .await
        .expect("registry starts")
}

#[tokio::test]
async fn repos_and_tags_follow_every_page() {
    let reg = registry().await;
    let pusher = reg.client();
    // 105 repositories cross the catalog's default page of 100; 130 tags in one repository cross
    // any tags page a registry might use.
    fill(
        &pusher,
        &FillSpec {
            repos: 105,
            tags_per_repo: 1,
            prefix: "many/r".into(),
            ..FillSpec::default()
        },
    )
    .await
    .unwrap();
    let big = fill(
        &pusher,
        &FillSpec {
            repos: 1,
            tags_per_repo: 130,
            prefix: "big/app".into(),
            ..FillSpec::default()
        },
    )
    .await
    .unwrap();

    let run = regsweep(&["--json", "repos", &reg.host()]);
    run.assert_ok();
    let repos = strings(&run.json()["repositories"]);
    assert_eq!(repos.len(), 106, "{repos:?}");
    let mut expected = pusher.catalog().await.unwrap();
    expected.sort();
    assert_eq!(repos, expected);

    let big_repo = &big.tagged[0].repo;
    let run = regsweep(&["--json", "tags", &format!("{}/{big_repo}", reg.host())]);
    run.assert_ok();
    let tags: BTreeSet<String> = strings(&run.json()["tags"]).into_iter().collect();
    let pushed: BTreeSet<String> = big.tagged.iter().map(|t| t.tag.clone()).collect();
    assert_eq!(tags.len(), 130);
    assert_eq!(tags, pushed);
    let skopeo: BTreeSet<String> = reg
        .skopeo_list_tags(big_repo)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(tags, skopeo, "skopeo sees the same tags");

    // Human output: one name per line, sorted.
    let run = regsweep(&["repos", &reg.host()]);
    run.assert_ok();
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), expected);
}

#[tokio::test]
async fn tags_of_a_repository_whose_tags_were_all_deleted_is_empty() {
    let s = Scenario::start(RegistryOptions::default())
        .await
        .image("gone", "v1", 1)
        .await
        .image("kept", "v1", 2)
        .await;
    s.registry()
        .client()
        .delete_manifest("gone", &s.pushed("gone:v1").digest)
        .await
        .unwrap();
    // distribution 2.8 answers `"tags": null` here.
    let run = s.run(&["--json", "tags", "{registry}/gone"]);
    run.assert_ok();
    assert_eq!(run.json()["tags"], serde_json::json!([]));
    s.run(&["tags", "{registry}/gone"])
        .assert_ok()
        .assert_stdout_lines(&[]);
    // The repository stays in the catalog, as distribution keeps it.
    s.run(&["repos", "{registry}"])
        .assert_ok()
        .assert_stdout_lines(&["gone", "kept"]);
}

#[tokio::test]
async fn tags_long_resolves_every_format() {
    let reg = registry().await;
    let p = reg.client();
    let docker = p
        .push_image(
            "app",
            Some("docker"),
            &ImageSpec::seeded(1)
                .format(Format::Docker)
                .created("2026-01-02T03:04:05Z"),
        )
        .await
        .unwrap();
    let oci = p
        .push_image(
            "app",
            Some("oci"),
            &ImageSpec::seeded(2)
                .format(Format::Oci)
                .created("2026-02-03T04:05:06Z"),
        )
        .await
        .unwrap();
    let list = p
        .push_index(
            "app",
            Some("list"),
            Format::Docker,
            &[("linux", "amd64"), ("linux", "arm64/v8")],
            3,
        )
        .await
        .unwrap();
    let index = p
        .push_index(
            "app",
            Some("index"),
            Format::Oci,
            &[("linux", "amd64"), ("linux", "s390x")],
            4,
        )
        .await
        .unwrap();
    p.tag("app", &docker.digest, "alias").await.unwrap();

    let run = regsweep(&["--json", "tags", "--long", &format!("{}/app", reg.host())]);
    run.assert_ok();
    let json = run.json();
    let rows: HashMap<String, serde_json::Value> = json["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["tag"].as_str().unwrap().to_owned(), r.clone()))
        .collect();
    assert_eq!(rows.len(), 5);

    for (tag, image) in [("docker", &docker), ("alias", &docker), ("oci", &oci)] {
        let row = &rows[tag];
        assert_eq!(row["digest"], image.digest, "{tag}");
        assert_eq!(row["media_type"], image.media_type, "{tag}");
        assert_eq!(row["kind"], "image");
        assert_eq!(row["size"], image.size, "{tag}");
        assert_eq!(row["manifest_size"], image.manifest.len(), "{tag}");
    }
    assert_eq!(rows["docker"]["created"], "2026-01-02T03:04:05Z");
    assert_eq!(rows["oci"]["created"], "2026-02-03T04:05:06Z");

    for (tag, idx, platforms) in [
        ("list", &list, vec!["linux/amd64", "linux/arm64/v8"]),
        ("index", &index, vec!["linux/amd64", "linux/s390x"]),
    ] {
        let row = &rows[tag];
        assert_eq!(row["digest"], idx.digest, "{tag}");
        assert_eq!(row["media_type"], idx.media_type, "{tag}");
        assert_eq!(row["kind"], "index");
        let got: Vec<&str> = row["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["platform"].as_str().unwrap())
            .collect();
        assert_eq!(got, platforms, "{tag}");
        let child_digests: Vec<&str> = row["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["digest"].as_str().unwrap())
            .collect();
        let pushed: Vec<&str> = idx.children.iter().map(|c| c.digest.as_str()).collect();
        assert_eq!(child_digests, pushed, "{tag}");
        let size: u64 = idx.children.iter().map(|c| c.size).sum();
        assert_eq!(row["size"], size, "{tag}");
    }

    // Human output has one row per tag with the short digest.
    let run = regsweep(&["tags", "-l", &format!("{}/app", reg.host())]);
    run.assert_ok();
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("list "))
        .expect("a row for `list`");
    assert!(line.contains(&list.digest[7..19]), "{line}");
    assert!(line.contains("linux/amd64,linux/arm64/v8"), "{line}");
}

#[tokio::test]
async fn inspect_shows_aliases_platforms_and_referrers() {
    let reg = registry().await;
    let p = reg.client();
    let index = p
        .push_index(
            "team/web",
            Some("v2"),
            Format::Oci,
            &[("linux", "amd64"), ("linux", "arm64")],
            10,
        )
        .await
        .unwrap();
    p.tag("team/web", &index.digest, "latest").await.unwrap();
    let other = p
        .push_image("team/web", Some("v1"), &ImageSpec::seeded(11))
        .await
        .unwrap();
    let signature = p
        .push_cosign_signature("team/web", &index.digest, 12)
        .await
        .unwrap();
    let sbom = p
        .push_referrer("team/web", &index.descriptor(), "application/spdx+json", 13)
        .await
        .unwrap();
    let fallback = p
        .push_referrers_fallback("team/web", &index.digest, &[&sbom])
        .await
        .unwrap();

    let run = regsweep(&["--json", "inspect", &format!("{}/team/web:latest", reg.host())]);
    run.assert_ok();
    let json = run.json();
    assert_eq!(json["digest"], index.digest);
    assert_eq!(json["kind"], "index");
    assert_eq!(
        strings(&json["tags"]),
        vec!["latest", "v2"],
        "co-tags, not v1 ({})",
        other.digest
    );
    let children: Vec<&str> = json["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        children,
        index
            .children
            .iter()
            .map(|c| c.digest.as_str())
            .collect::<Vec<_>>()
    );

    let referrers = json["referrers"].as_array().unwrap();
    let find = |digest: &str| referrers.iter().find(|r| r["digest"] == digest).cloned();
    let sig = find(&signature.digest).expect("the cosign signature is listed");
    assert_eq!(sig["kind"], "signature");
    assert_eq!(sig["source"], "digest-tag");
    let listed = find(&sbom.digest).expect("the SBOM from the fallback index is listed");
    assert_eq!(listed["kind"], "sbom");
    assert_eq!(listed["source"], "fallback-index");
    let index_row = find(&fallback.digest).expect("the fallback index tag is listed");
    assert_eq!(index_row["kind"], "referrers-index");

    // By digest, the same image.
    let run = regsweep(&[
        "--json",
        "inspect",
        &format!("{}/team/web@{}", reg.host(), index.digest),
    ]);
    run.assert_ok();
    assert_eq!(run.json()["digest"], index.digest);
}

#[tokio::test]
async fn du_counts_shared_layers_once() {
    let reg = registry().await;
    let p = reg.client();
    let base = regsweep_testkit::Blob::random(99, 4096);
    let mut spec_a = ImageSpec::seeded(1);
    spec_a.shared_layers = vec![base.clone()];
    let a1 = p.push_image("a", Some("v1"), &spec_a).await.unwrap();
    let mut spec_b = ImageSpec::seeded(2);
    spec_b.shared_layers = vec![base.clone()];
    spec_b.mount_from = Some("a".into());
    let b1 = p.push_image("b", Some("v1"), &spec_b).await.unwrap();
    let idx = p
        .push_index(
            "b",
            Some("multi"),
            Format::Oci,
            &[("linux", "amd64"), ("linux", "arm64")],
            3,
        )
        .await
        .unwrap();
    p.tag("b", &b1.digest, "alias").await.unwrap();

    // Expected from what was pushed, independently of regsweep's own parsing.
    let mut blobs_a: HashMap<String, u64> = a1.blobs().map(|b| (b.digest.clone(), b.size)).collect();
    blobs_a.insert(a1.digest.clone(), a1.manifest.len() as u64);
    let mut blobs_b: HashMap<String, u64> = b1.blobs().map(|b| (b.digest.clone(), b.size)).collect();
    blobs_b.insert(b1.digest.clone(), b1.manifest.len() as u64);
    blobs_b.insert(idx.digest.clone(), idx.manifest.len() as u64);
    for child in &idx.children {
        blobs_b.extend(child.blobs().map(|b| (b.digest.clone(), b.size)));
        blobs_b.insert(child.digest.clone(), child.manifest.len() as u64);
    }
    let total_a: u64 = blobs_a.values().sum();
    let total_b: u64 = blobs_b.values().sum();
    let shared: u64 = blobs_a
        .iter()
        .filter(|(d, _)| blobs_b.contains_key(*d))
        .map(|(_, s)| s)
        .sum();
    assert!(shared >= 4096, "the base layer is shared");

    let run = regsweep(&["--json", "du", &reg.host()]);
    run.assert_ok();
    let json = run.json();
    let repos = json["repositories"].as_array().unwrap();
    assert_eq!(repos[0]["name"], "a");
    assert_eq!(repos[0]["total_bytes"], total_a);
    assert_eq!(repos[0]["shared_bytes"], shared);
    assert_eq!(repos[0]["unique_bytes"], total_a - shared);
    assert_eq!(repos[1]["name"], "b");
    assert_eq!(repos[1]["tags"], 3);
    assert_eq!(repos[1]["manifests"], 4, "b1, the index and its two children");
    assert_eq!(repos[1]["total_bytes"], total_b);
    assert_eq!(json["total_bytes"], total_a + total_b - shared);
    assert_eq!(json["sum_of_repositories_bytes"], total_a + total_b);

    // One repository only.
    let run = regsweep(&["--json", "du", &format!("{}/b", reg.host())]);
    run.assert_ok();
    let json = run.json();
    assert_eq!(json["repositories"].as_array().unwrap().len(), 1);
    assert_eq!(json["total_bytes"], total_b);

    let run = regsweep(&["du", &reg.host()]);
    run.assert_ok();
    assert!(run.stdout.contains("2 repositories"), "{}", run.stdout);
}

#[tokio::test]
async fn tags_long_folds_signature_tags_under_their_image() {
    let reg = registry().await;
    let p = reg.client();
    let image = p
        .push_image("signed", Some("v1"), &ImageSpec::seeded(51))
        .await
        .unwrap();
    let untagged = p
        .push_image("signed", None, &ImageSpec::seeded(52))
        .await
        .unwrap();
    p.push_cosign_signature("signed", &image.digest, 53)
        .await
        .unwrap();
    p.push_cosign_signature("signed", &untagged.digest, 54)
        .await
        .unwrap();
    let repo = format!("{}/signed", reg.host());

    let run = regsweep(&["tags", "--long", &repo]);
    run.assert_ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    // Tags sort by name: the signature of the untagged image (shortened, its subject is not
    // listed), then v1 with its own signature folded under it.
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    let orphan = format!("sha256-{}….sig ", &untagged.digest[7..19]);
    assert!(lines[1].starts_with(&orphan), "{}", run.stdout);
    assert!(lines[2].starts_with("v1 "), "{}", run.stdout);
    assert_eq!(lines[3], "  ↳ 1 signature", "{}", run.stdout);
    assert!(
        !run.stdout.contains(&image.digest[7..]),
        "no full-length tag: {}",
        run.stdout
    );

    // JSON still lists every tag in full.
    let run = regsweep(&["--json", "tags", "--long", &repo]);
    run.assert_ok();
    let tags: Vec<String> = run.json()["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tags.len(), 3, "{tags:?}");
    assert!(
        tags.contains(&format!("sha256-{}.sig", &image.digest[7..])),
        "{tags:?}"
    );
}

#[tokio::test]
async fn tags_long_shows_a_broken_index_in_its_row_and_a_missing_repository_as_an_error() {
    let reg = registry().await;
    let p = reg.client();
    let index = p
        .push_index(
            "app",
            Some("multi"),
            Format::Oci,
            &[("linux", "amd64"), ("linux", "arm64")],
            61,
        )
        .await
        .unwrap();
    let image = p
        .push_image("app", Some("single"), &ImageSpec::seeded(62))
        .await
        .unwrap();
    // The registry lets a child be deleted under its index: the index's tag cannot be shown
    // whole any more, every other tag still can.
    let child = &index.children[1].digest;
    p.delete_manifest("app", child).await.unwrap();
    let repo = format!("{}/app", reg.host());

    let run = regsweep(&["--json", "tags", "--long", &repo]);
    run.assert_code(1);
    let rows = run.json()["tags"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["tag"], "multi");
    let error = rows[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("index child {child} could not be read: ")),
        "{error}"
    );
    assert!(rows[0].get("digest").is_none(), "{:?}", rows[0]);
    assert_eq!(rows[1]["tag"], "single");
    assert_eq!(rows[1]["digest"], image.digest);
    assert!(rows[1].get("error").is_none(), "{:?}", rows[1]);
    assert!(
        run.stderr.contains("error: 1 of 2 tags could not be resolved"),
        "{}",
        run.stderr
    );

    // A repository that does not exist is an error of its own, not an empty table.
    let run = regsweep(&["tags", "--long", &format!("{}/nothing-here", reg.host())]);
    run.assert_code(1);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("nothing-here"), "{}", run.stderr);
}
