//! The harness against the real `docker-registry` (and `skopeo` as a second client).

use std::path::Path;

use regsweep_testkit::{
    FillSpec, Format, ImageSpec, ManifestDoc, RegistryOptions, StatusCode, TestRegistry, media,
    sha256_digest, skopeo_available,
};

const TWO_PLATFORMS: [(&str, &str); 2] = [("linux", "amd64"), ("linux", "arm64")];

async fn start(opts: RegistryOptions) -> TestRegistry {
    TestRegistry::start(opts).await.expect("start registry")
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn every_fixture_kind_reads_back_as_pushed() {
    let reg = start(RegistryOptions::default()).await;
    let p = reg.client();

    let docker = p
        .push_image("kinds/app", Some("docker"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    let oci = p
        .push_image(
            "kinds/app",
            Some("oci"),
            &ImageSpec::seeded(2).format(Format::Oci),
        )
        .await
        .unwrap();
    let untagged = p
        .push_image("kinds/app", None, &ImageSpec::seeded(3))
        .await
        .unwrap();
    let list = p
        .push_index("kinds/app", Some("list"), Format::Docker, &TWO_PLATFORMS, 4)
        .await
        .unwrap();
    let index = p
        .push_index("kinds/app", Some("index"), Format::Oci, &TWO_PLATFORMS, 5)
        .await
        .unwrap();
    p.tag("kinds/app", &docker.digest, "alias").await.unwrap();
    let sig = p
        .push_cosign_signature("kinds/app", &docker.digest, 6)
        .await
        .unwrap();
    let referrer = p
        .push_referrer("kinds/app", &index.descriptor(), "application/spdx+json", 7)
        .await
        .unwrap();
    let fallback = p
        .push_referrers_fallback("kinds/app", &index.digest, &[&referrer])
        .await
        .unwrap();

    // Every manifest comes back byte-for-byte with its media type, by tag and by digest.
    for (reference, bytes, mt) in [
        ("docker", &docker.manifest, media::DOCKER_MANIFEST),
        ("oci", &oci.manifest, media::OCI_MANIFEST),
        ("list", &list.manifest, media::DOCKER_LIST),
        ("index", &index.manifest, media::OCI_INDEX),
        ("alias", &docker.manifest, media::DOCKER_MANIFEST),
        (sig.tag.as_deref().unwrap(), &sig.manifest, media::OCI_MANIFEST),
        (&referrer.digest, &referrer.manifest, media::OCI_MANIFEST),
        (&untagged.digest, &untagged.manifest, media::DOCKER_MANIFEST),
        (
            fallback.tag.as_deref().unwrap(),
            &fallback.manifest,
            media::OCI_INDEX,
        ),
    ] {
        let (body, content_type, digest) = p.get_manifest("kinds/app", reference).await.unwrap();
        assert_eq!(&body, bytes, "{reference}");
        assert_eq!(content_type, mt, "{reference}");
        assert_eq!(digest, sha256_digest(bytes));
        p.verify_pullable("kinds/app", reference)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    for child in list.children.iter().chain(&index.children) {
        assert!(child.tag.is_none());
        assert!(p.manifest_exists("kinds/app", &child.digest).await.unwrap());
        for b in child.blobs() {
            assert!(p.blob_exists("kinds/app", &b.digest).await.unwrap());
        }
    }
    assert_eq!(list.children[0].media_type, media::DOCKER_MANIFEST);
    assert_eq!(index.children[1].media_type, media::OCI_MANIFEST);

    // Shape of the special manifests.
    let sig_doc = ManifestDoc::parse(&sig.manifest).unwrap();
    let layer = &sig_doc.layers.unwrap()[0];
    assert_eq!(layer.media_type, media::COSIGN_SIMPLESIGNING);
    assert!(
        layer
            .annotations
            .as_ref()
            .unwrap()
            .contains_key("dev.cosignproject.cosign/signature")
    );
    assert_eq!(
        sig.tag.as_deref().unwrap(),
        format!("{}.sig", docker.digest.replace(':', "-"))
    );
    let ref_doc = ManifestDoc::parse(&referrer.manifest).unwrap();
    assert_eq!(ref_doc.subject.unwrap().digest, index.digest);
    assert_eq!(ref_doc.artifact_type.as_deref(), Some("application/spdx+json"));
    assert_eq!(ref_doc.config.unwrap().media_type, media::OCI_EMPTY);
    assert!(referrer.tag.is_none());

    let mut tags = p.tags("kinds/app").await.unwrap();
    tags.sort();
    let mut expected = vec![
        "alias".to_string(),
        "docker".into(),
        "index".into(),
        "list".into(),
        "oci".into(),
        sig.tag.clone().unwrap(),
        fallback.tag.clone().unwrap(),
    ];
    expected.sort();
    assert_eq!(tags, expected);
    assert_eq!(p.catalog().await.unwrap(), vec!["kinds/app".to_string()]);

    // A second, independent client sees the same bytes.
    skopeo_available().unwrap();
    assert_eq!(
        reg.skopeo_inspect_raw("kinds/app", "list").await.unwrap(),
        list.manifest
    );
    assert_eq!(
        reg.skopeo_inspect_raw("kinds/app", "index").await.unwrap(),
        index.manifest
    );
    let mut skopeo_tags = reg.skopeo_list_tags("kinds/app").await.unwrap();
    skopeo_tags.sort();
    assert_eq!(skopeo_tags, expected);
}

#[tokio::test]
async fn skopeo_pulls_every_platform_and_blob() {
    let reg = start(RegistryOptions::default()).await;
    let p = reg.client();
    let index = p
        .push_index("multi", Some("v1"), Format::Oci, &TWO_PLATFORMS, 11)
        .await
        .unwrap();
    let list = p
        .push_index("multi", Some("v2"), Format::Docker, &TWO_PLATFORMS, 12)
        .await
        .unwrap();
    for (tag, pushed) in [("v1", &index), ("v2", &list)] {
        let dest = tempfile::tempdir().unwrap();
        reg.skopeo_copy_all_to_dir("multi", tag, dest.path())
            .await
            .unwrap();
        let files: Vec<String> = std::fs::read_dir(dest.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for child in &pushed.children {
            for b in child.blobs() {
                let hex = b.digest.strip_prefix("sha256:").unwrap();
                assert!(files.iter().any(|f| f == hex), "{tag}: blob {hex} not copied");
            }
        }
    }
}

#[tokio::test]
async fn htpasswd_requires_credentials() {
    let reg = start(RegistryOptions::default().with_htpasswd("alice", "wonderland")).await;
    let anon = reg.anonymous_client();
    let url = format!("{}/v2/", reg.base_url());
    let status = reqwest::get(&url).await.unwrap().status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(anon.catalog().await.is_err());

    let p = reg.client();
    p.push_image("private/app", Some("v1"), &ImageSpec::seeded(21))
        .await
        .unwrap();
    assert_eq!(p.tags("private/app").await.unwrap(), vec!["v1".to_string()]);

    let wrong = regsweep_testkit::Pusher::connect(&reg.base_url(), Some(("alice", "nope")), None).unwrap();
    let err = wrong.tags("private/app").await.unwrap_err();
    assert!(format!("{err:#}").contains("401"), "{err:#}");
    assert!(!format!("{err:#}").contains("nope"));

    assert_eq!(
        reg.skopeo_list_tags("private/app").await.unwrap(),
        vec!["v1".to_string()]
    );
}

/// The token server's JWTs against the real registry: the harness pushes with the admin's
/// tokens, a pull-only user can read but not push, a token signed by an untrusted key is refused,
/// and skopeo (containers/image) completes the same token flow on its own.
#[tokio::test]
async fn token_auth_registry_accepts_the_token_servers_jwts() {
    use regsweep_testkit::{Grant, Pusher, TokenServer, TokenServerOptions, TokenUser, token::ADMIN_USER};
    let tokens = TokenServer::start(TokenServerOptions::default().user(TokenUser::new(
        "reader",
        "pw",
        vec![Grant::repos("tok/*", &["pull"])],
    )))
    .unwrap();
    let reg = start(RegistryOptions::default().with_token_auth(&tokens)).await;

    let resp = reqwest::get(format!("{}/v2/", reg.base_url())).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.starts_with("Bearer ")
            && challenge.contains(&tokens.realm())
            && challenge.contains(tokens.service()),
        "{challenge}"
    );

    let p = reg.client();
    p.push_image("tok/app", Some("v1"), &ImageSpec::seeded(41))
        .await
        .unwrap();
    p.verify_pullable("tok/app", "v1").await.unwrap();
    assert!(!tokens.issued_to(Some(ADMIN_USER)).is_empty());

    let reader = Pusher::connect(&reg.base_url(), Some(("reader", "pw")), None)
        .unwrap()
        .with_token_auth(&tokens.realm(), tokens.service())
        .unwrap();
    assert_eq!(reader.tags("tok/app").await.unwrap(), vec!["v1".to_string()]);
    let err = reader
        .push_image("tok/app", Some("v2"), &ImageSpec::seeded(42))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("401"), "{err:#}");
    assert!(
        tokens
            .issued_to(Some("reader"))
            .iter()
            .all(|t| t.granted.iter().all(|g| g.ends_with(":pull")))
    );

    // A token signed by a key outside rootcertbundle: invalid_token. The same request with a
    // trusted token: 200.
    let http = reqwest::Client::new();
    let fetch = |untrusted: bool| {
        let (http, tokens) = (&http, &tokens);
        async move {
            if untrusted {
                tokens.issue_untrusted(1);
            }
            let url = format!(
                "{}?service={}&scope=repository:tok/app:pull",
                tokens.realm(),
                tokens.service()
            );
            let body = http
                .get(url)
                .basic_auth("reader", Some("pw"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            json["token"].as_str().unwrap().to_owned()
        }
    };
    let tags_url = format!("{}/v2/tok/app/tags/list", reg.base_url());
    let resp = http
        .get(&tags_url)
        .bearer_auth(fetch(true).await)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let resp = http
        .get(&tags_url)
        .bearer_auth(fetch(false).await)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    assert_eq!(
        reg.skopeo_list_tags("tok/app").await.unwrap(),
        vec!["v1".to_string()]
    );
}

#[tokio::test]
async fn tls_registry_is_trusted_only_with_its_ca() {
    let reg = start(RegistryOptions::default().with_tls()).await;
    assert!(reg.base_url().starts_with("https://127.0.0.1:"));
    let ca = reg.ca_cert_path().expect("CA path");
    assert!(std::fs::read_to_string(ca).unwrap().contains("BEGIN CERTIFICATE"));

    let p = reg.client();
    let img = p
        .push_image("secure/app", Some("v1"), &ImageSpec::seeded(31))
        .await
        .unwrap();
    p.verify_pullable("secure/app", "v1").await.unwrap();

    // `localhost` is in the certificate too.
    let pem = std::fs::read(ca).unwrap();
    let by_name =
        regsweep_testkit::Pusher::connect(&format!("https://localhost:{}", reg.port()), None, Some(&pem))
            .unwrap();
    assert!(by_name.manifest_exists("secure/app", &img.digest).await.unwrap());

    // Without the CA the connection is refused.
    let untrusted = regsweep_testkit::Pusher::new(&reg.base_url()).unwrap();
    assert!(untrusted.catalog().await.is_err());

    // skopeo verifies against the same CA (cert dir, tls-verify on).
    assert_eq!(
        reg.skopeo_inspect_raw("secure/app", "v1").await.unwrap(),
        img.manifest
    );
}

#[tokio::test]
async fn read_only_registry_refuses_delete_with_405() {
    let mut writer = start(RegistryOptions::default()).await;
    let img = writer
        .client()
        .push_image("ro/app", Some("v1"), &ImageSpec::seeded(41))
        .await
        .unwrap();
    writer.stop().await.unwrap();

    let ro = start(
        RegistryOptions::default()
            .with_storage_root(writer.storage_root())
            .read_only(),
    )
    .await;
    let p = ro.client();
    p.verify_pullable("ro/app", "v1").await.unwrap();
    let (status, body) = p.delete_manifest_verbose("ro/app", &img.digest).await.unwrap();
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert!(
        p.push_image("ro/app", Some("v2"), &ImageSpec::seeded(42))
            .await
            .is_err()
    );
    assert!(p.manifest_exists("ro/app", &img.digest).await.unwrap());
}

#[tokio::test]
async fn delete_disabled_registry_answers_unsupported() {
    let reg = start(RegistryOptions::default().delete_disabled()).await;
    let p = reg.client();
    let img = p
        .push_image("nodelete/app", Some("v1"), &ImageSpec::seeded(51))
        .await
        .unwrap();
    let (status, body) = p
        .delete_manifest_verbose("nodelete/app", &img.digest)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(body.contains("UNSUPPORTED"), "{body}");
    assert!(p.manifest_exists("nodelete/app", "v1").await.unwrap());
}

#[tokio::test]
async fn delete_then_gc_removes_blobs_and_restart_keeps_the_rest() {
    let mut reg = start(RegistryOptions::default()).await;
    let p = reg.client();
    let keep = p
        .push_image("gc/app", Some("keep"), &ImageSpec::seeded(61))
        .await
        .unwrap();
    let drop = p
        .push_image("gc/app", Some("drop"), &ImageSpec::seeded(62))
        .await
        .unwrap();
    assert_eq!(
        p.delete_manifest("gc/app", &drop.digest).await.unwrap(),
        StatusCode::ACCEPTED
    );
    assert!(!p.manifest_exists("gc/app", "drop").await.unwrap());
    assert_eq!(
        p.delete_manifest("gc/app", &drop.digest).await.unwrap(),
        StatusCode::NOT_FOUND
    );

    let old_pid = reg.pid().unwrap();
    reg.stop().await.unwrap();
    assert!(!process_exists(old_pid), "registry still running after stop");
    assert!(reg.pid().is_none());

    let dry = reg.garbage_collect(true, false).await.unwrap();
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let blob_path = |d: &str| {
        let hex = d.strip_prefix("sha256:").unwrap();
        reg.storage_root()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    };
    assert!(blob_path(&drop.config.digest).exists(), "dry run deleted data");
    let gc = reg.garbage_collect(false, false).await.unwrap();
    assert!(gc.status.success(), "{}", String::from_utf8_lossy(&gc.stderr));
    assert!(!blob_path(&drop.config.digest).exists());
    assert!(blob_path(&keep.config.digest).exists());

    reg.start_again().await.unwrap();
    let p = reg.client();
    p.verify_pullable("gc/app", "keep").await.unwrap();
    assert_eq!(p.tags("gc/app").await.unwrap(), vec!["keep".to_string()]);
    assert!(!p.blob_exists("gc/app", &drop.config.digest).await.unwrap());
}

#[tokio::test]
async fn start_again_keeps_content_and_drop_kills_the_process() {
    let mut reg = start(RegistryOptions::default()).await;
    let img = reg
        .client()
        .push_image("again/app", Some("v1"), &ImageSpec::seeded(71))
        .await
        .unwrap();
    let first_pid = reg.pid().unwrap();
    reg.start_again().await.unwrap();
    assert!(!process_exists(first_pid));
    let second_pid = reg.pid().unwrap();
    assert_ne!(first_pid, second_pid);
    let (body, _, _) = reg.client().get_manifest("again/app", "v1").await.unwrap();
    assert_eq!(body, img.manifest);

    let dir = reg.dir().to_path_buf();
    drop(reg);
    assert!(!process_exists(second_pid), "Drop left the registry running");
    assert!(!dir.exists(), "Drop left the temp dir");
}

#[tokio::test]
async fn two_registries_run_side_by_side() {
    let (a, b) = tokio::join!(
        start(RegistryOptions::default()),
        start(RegistryOptions::default())
    );
    assert_ne!(a.port(), b.port());
    a.client()
        .push_image("only/in-a", Some("v1"), &ImageSpec::seeded(81))
        .await
        .unwrap();
    assert_eq!(b.client().catalog().await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn fill_pages_through_the_catalog_and_counts_match() {
    let reg = start(RegistryOptions::default()).await;
    let p = reg.client();
    let spec = FillSpec {
        repos: 120,
        tags_per_repo: 4,
        multiarch_every: 2,
        alias_every: 3,
        latest: true,
        prefix: "pages/r".into(),
        ..Default::default()
    };
    let report = regsweep_testkit::fill(&p, &spec).await.unwrap();
    // Per repo: 4 tags + 1 alias (tag 2) + latest; tags 1 and 3 are 2-platform indexes.
    assert_eq!(report.tags, 120 * 6);
    assert_eq!(report.indexes, 120 * 2);
    assert_eq!(report.images, 120 * (2 + 2 * 2));
    assert_eq!(report.blobs_mounted, 119 * 2);

    // distribution pages the catalog by 100: this only passes if Link is followed.
    let catalog = p.catalog().await.unwrap();
    assert_eq!(catalog.len(), 120);
    assert_eq!(catalog[0], spec.repo_name(0));
    assert_eq!(catalog[119], spec.repo_name(119));

    let repo = spec.repo_name(7);
    let mut tags = p.tags(&repo).await.unwrap();
    tags.sort();
    assert_eq!(
        tags,
        vec!["latest", "v0.0.0", "v0.1.0", "v0.2.0", "v0.2.0-alias", "v0.3.0"]
    );
    let rec = report
        .tagged
        .iter()
        .find(|t| t.repo == repo && t.tag == "v0.1.0")
        .unwrap();
    assert!(media::is_index(&rec.media_type));
    let (_, _, digest) = p.get_manifest(&repo, "v0.1.0").await.unwrap();
    assert_eq!(digest, rec.digest);
    p.verify_pullable(&repo, "v0.1.0").await.unwrap();
    p.verify_pullable(&repo, "latest").await.unwrap();
}

#[tokio::test]
async fn sample_content_is_complete_and_pullable() {
    let reg = start(RegistryOptions::default()).await;
    let p = reg.client();
    let s = regsweep_testkit::sample(&p).await.unwrap();
    let mut catalog = p.catalog().await.unwrap();
    catalog.sort();
    assert_eq!(
        catalog,
        vec!["legacy/app", "team/api", "team/web/frontend", "tools/cli"]
    );
    for t in &s.tags {
        let (_, content_type, digest) = p.get_manifest(&t.repo, &t.tag).await.unwrap();
        assert_eq!(digest, t.digest, "{}:{}", t.repo, t.tag);
        assert_eq!(content_type, t.media_type, "{}:{}", t.repo, t.tag);
        p.verify_pullable(&t.repo, &t.tag)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    let fe = |tag: &str| {
        s.tags
            .iter()
            .find(|t| t.repo == "team/web/frontend" && t.tag == tag)
            .unwrap()
            .digest
            .clone()
    };
    assert_eq!(fe("latest"), fe("v2.3.1"));
    assert_eq!(s.indexes.len(), 2);
    assert!(s.indexes.iter().any(|i| i.media_type == media::OCI_INDEX));
    assert!(s.indexes.iter().any(|i| i.media_type == media::DOCKER_LIST));
    // The superseded nightly is still there, untagged.
    let old = &s.superseded[0];
    assert!(p.manifest_exists(&old.repo, &old.digest).await.unwrap());
    assert_ne!(old.digest, fe("nightly"));
    // The referrer points at the multi-arch index of team/api.
    let r = ManifestDoc::parse(&s.referrers[0].manifest).unwrap();
    let api_latest = s
        .tags
        .iter()
        .find(|t| t.repo == "team/api" && t.tag == "latest")
        .unwrap();
    assert_eq!(r.subject.unwrap().digest, api_latest.digest);
}

#[tokio::test]
async fn verify_pullable_names_what_is_missing() {
    let reg = start(RegistryOptions::default()).await;
    let p = reg.client();
    let idx = p
        .push_index("broken/app", Some("v1"), Format::Oci, &TWO_PLATFORMS, 91)
        .await
        .unwrap();
    // distribution has no referential integrity: deleting a child leaves the index dangling.
    let child = &idx.children[1];
    assert_eq!(
        p.delete_manifest("broken/app", &child.digest).await.unwrap(),
        StatusCode::ACCEPTED
    );
    let err = format!("{:#}", p.verify_pullable("broken/app", "v1").await.unwrap_err());
    assert!(err.contains(&child.digest), "{err}");
    // And a missing layer link is reported too.
    let layer = &idx.children[0].layers[0].digest;
    assert_eq!(
        p.delete_blob("broken/app", layer).await.unwrap(),
        StatusCode::ACCEPTED
    );
    let err = format!("{:#}", p.verify_pullable("broken/app", "v1").await.unwrap_err());
    assert!(err.contains(layer.as_str()), "{err}");
}

#[tokio::test]
async fn env_and_extra_config_reach_the_registry() {
    let opts = RegistryOptions {
        extra_config: Some("catalog:\n  maxentries: 3\n".into()),
        env: vec![("REGISTRY_STORAGE_DELETE_ENABLED".into(), "false".into())],
        ..Default::default()
    };
    let reg = start(opts).await;
    let p = reg.client();
    let resp = reqwest::get(format!("{}/v2/_catalog?n=5", reg.base_url()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    for i in 0..5 {
        p.push_image(&format!("env/r{i}"), Some("v1"), &ImageSpec::seeded(100 + i))
            .await
            .unwrap();
    }
    // Without `n`, distribution 2.8 pages by min(100, maxentries): Link must be followed.
    assert_eq!(p.catalog().await.unwrap().len(), 5);
    let img = p
        .push_image("env/r0", Some("v2"), &ImageSpec::seeded(200))
        .await
        .unwrap();
    assert_eq!(
        p.delete_manifest("env/r0", &img.digest).await.unwrap(),
        StatusCode::METHOD_NOT_ALLOWED
    );
}
