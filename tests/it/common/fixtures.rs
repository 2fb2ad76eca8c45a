//! The realistic registry content the gc tests (filesystem, S3, Azure) push and check.

use std::collections::BTreeSet;

use regsweep_testkit::{Blob, Format, ImageSpec, PushedImage, PushedIndex, Pusher};

/// Everything pushed by [`push_fixtures`], for the assertions.
pub struct Fixtures {
    pub v1: PushedImage,
    pub superseded: PushedImage,
    pub deleted: PushedImage,
    pub multi: PushedIndex,
    pub list: PushedIndex,
    pub signed_referrer: PushedImage,
    pub orphan_referrer: PushedImage,
    pub orphan_upload: String,
    pub shared_layer: String,
    /// Every tag that must pull completely afterwards, as (repository, tag).
    pub tags: Vec<(String, String)>,
}

/// A registry's worth of realistic content, then API deletes:
/// - `app`: v1 with an alias (`stable`), a cosign signature tag and an OCI 1.1 referrer
///   (`subject` = v1, untagged); v2 pushed twice (the first build is superseded, untagged); `old`
///   deleted through the API together with an untagged referrer of it; an orphan upload;
/// - `multi`: a tagged OCI index (children pushed by digest), with a referrers fallback tag;
/// - `dlist`: a tagged Docker manifest list;
/// - `team` and `team/sub/app`: nested names, sharing a base layer with `app` (mounted).
pub async fn push_fixtures(p: &Pusher) -> Fixtures {
    let base = Blob::random(77, 2048);
    let with_base = |seed: u64| {
        let mut spec = ImageSpec::seeded(seed);
        spec.shared_layers = vec![base.clone()];
        spec
    };
    let v1 = p.push_image("app", Some("v1"), &with_base(1)).await.unwrap();
    p.tag("app", &v1.digest, "stable").await.unwrap();
    p.push_cosign_signature("app", &v1.digest, 5).await.unwrap();
    let signed_referrer = p
        .push_referrer("app", &v1.descriptor(), "application/vnd.example.sbom", 6)
        .await
        .unwrap();
    let superseded = p.push_image("app", Some("v2"), &with_base(2)).await.unwrap();
    p.push_image("app", Some("v2"), &with_base(3)).await.unwrap();
    let deleted = p.push_image("app", Some("old"), &with_base(4)).await.unwrap();
    let orphan_referrer = p
        .push_referrer("app", &deleted.descriptor(), "application/vnd.example.sbom", 7)
        .await
        .unwrap();
    assert_eq!(
        p.delete_manifest("app", &deleted.digest).await.unwrap().as_u16(),
        202
    );
    let orphan_upload = p.upload_blob("app", &Blob::random(99, 3000).data).await.unwrap();

    let multi = p
        .push_index(
            "multi",
            Some("latest"),
            Format::Oci,
            &[("linux", "amd64"), ("linux", "arm64/v8")],
            10,
        )
        .await
        .unwrap();
    let multi_sig = p
        .push_referrer(
            "multi",
            &multi.descriptor(),
            "application/vnd.example.signature",
            11,
        )
        .await
        .unwrap();
    p.push_referrers_fallback("multi", &multi.digest, &[&multi_sig])
        .await
        .unwrap();
    let list = p
        .push_index(
            "dlist",
            Some("v1"),
            Format::Docker,
            &[("linux", "amd64"), ("linux", "s390x")],
            20,
        )
        .await
        .unwrap();

    let mut nested = with_base(30).format(Format::Oci);
    nested.mount_from = Some("app".into());
    p.push_image("team/sub/app", Some("v1"), &nested).await.unwrap();
    p.push_image("team", Some("v1"), &ImageSpec::seeded(31))
        .await
        .unwrap();

    let mut tags = Vec::new();
    for repo in p.catalog().await.unwrap() {
        for tag in p.tags(&repo).await.unwrap() {
            tags.push((repo.clone(), tag));
        }
    }
    assert_eq!(tags.len(), 9, "{tags:?}");
    Fixtures {
        v1,
        superseded,
        deleted,
        multi,
        list,
        signed_referrer,
        orphan_referrer,
        orphan_upload,
        shared_layer: base.digest.clone(),
        tags,
    }
}

/// Every tag of the fixtures, and the referrer kept with `app:v1`, pulls completely.
pub async fn assert_fixtures_pull(p: &Pusher, f: &Fixtures) {
    for (repo, tag) in &f.tags {
        p.verify_pullable(repo, tag)
            .await
            .unwrap_or_else(|e| panic!("{repo}:{tag} no longer pulls: {e:#}"));
    }
    p.verify_pullable("app", &f.signed_referrer.digest).await.unwrap();
}

impl Fixtures {
    /// Every blob a kept tag needs (manifests, configs, layers; index children with theirs), for
    /// the tags of `app`, `multi` and `dlist`.
    pub fn kept_blobs(&self) -> BTreeSet<String> {
        let mut blobs: BTreeSet<String> = self.v1.blobs().map(|b| b.digest.clone()).collect();
        blobs.insert(self.v1.digest.clone());
        for index in [&self.multi, &self.list] {
            blobs.insert(index.digest.clone());
            for child in &index.children {
                blobs.insert(child.digest.clone());
                blobs.extend(child.blobs().map(|b| b.digest.clone()));
            }
        }
        blobs
    }
}
