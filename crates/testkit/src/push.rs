//! An independent registry client for fixtures: pushes blobs, manifests, indexes, aliases,
//! signatures and referrers through the plain HTTP API v2, and reads them back for checks.
//!
//! It shares no code with regsweep on purpose: a test that pushes with the code under test cannot
//! catch a bug both sides agree on. It follows no redirects on its own and sends credentials only
//! to the registry's own origin.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, LINK, LOCATION,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use crate::image::{
    self, BlobRef, BuiltImage, COSIGN_SIGNATURE_ANNOTATION, Descriptor, EMPTY_JSON_DIGEST, Format, ImageSpec,
    ManifestDoc, Platform, media, sha256_digest,
};

/// A manifest pushed by the harness, with everything needed to check it later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedImage {
    pub repo: String,
    /// The tag it was pushed under; `None` when pushed by digest (untagged).
    pub tag: Option<String>,
    pub digest: String,
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub config: BlobRef,
    pub layers: Vec<BlobRef>,
    /// Bytes of config + layers (not the manifest itself).
    pub size: u64,
}

impl PushedImage {
    /// Descriptor of the manifest (for an index entry or a referrer's `subject`).
    pub fn descriptor(&self) -> BlobRef {
        BlobRef {
            digest: self.digest.clone(),
            size: self.manifest.len() as u64,
            media_type: self.media_type.clone(),
        }
    }

    /// `repo@sha256:…`
    pub fn reference(&self) -> String {
        format!("{}@{}", self.repo, self.digest)
    }

    /// Config and layers.
    pub fn blobs(&self) -> impl Iterator<Item = &BlobRef> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }
}

/// An OCI index or Docker manifest list pushed by the harness, with its (untagged) children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedIndex {
    pub repo: String,
    pub tag: Option<String>,
    pub digest: String,
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub children: Vec<PushedImage>,
}

impl PushedIndex {
    pub fn descriptor(&self) -> BlobRef {
        BlobRef {
            digest: self.digest.clone(),
            size: self.manifest.len() as u64,
            media_type: self.media_type.clone(),
        }
    }

    pub fn reference(&self) -> String {
        format!("{}@{}", self.repo, self.digest)
    }
}

/// Cheap to clone (one shared connection pool).
#[derive(Clone)]
pub struct Pusher {
    http: reqwest::Client,
    base: Url,
    auth: Option<(String, String)>,
    /// Set for `auth: token` registries: the credentials go to the token server, and requests
    /// carry bearer tokens.
    token: Option<Arc<BearerState>>,
}

/// Where bearer tokens come from, and the ones already fetched, by scope.
struct BearerState {
    realm: Url,
    service: String,
    cache: Mutex<HashMap<String, (String, Instant)>>,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("Pusher")
            .field("base", &self.base.as_str())
            .field("user", &self.auth.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl Pusher {
    /// Anonymous client for `base_url` (`http://127.0.0.1:5000`); https uses the system roots.
    pub fn new(base_url: &str) -> Result<Self> {
        Self::connect(base_url, None, None)
    }

    /// Client with optional basic-auth credentials and an optional PEM CA that then becomes the
    /// only trusted root.
    pub fn connect(base_url: &str, creds: Option<(&str, &str)>, ca_pem: Option<&[u8]>) -> Result<Self> {
        Self::connect_trusting(base_url, creds, ca_pem, false)
    }

    /// Like [`Pusher::connect`]; `any_certificate` skips certificate verification, for a
    /// registry whose self-signed certificate is its own CA (which rustls refuses as a server
    /// certificate, see regsweep's `--ca-file`).
    pub(crate) fn connect_trusting(
        base_url: &str,
        creds: Option<(&str, &str)>,
        ca_pem: Option<&[u8]>,
        any_certificate: bool,
    ) -> Result<Self> {
        let mut base = Url::parse(base_url).with_context(|| format!("invalid URL {base_url}"))?;
        ensure!(
            matches!(base.scheme(), "http" | "https"),
            "registry URL must be http:// or https://, got {base_url}"
        );
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("regsweep-testkit/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120));
        if any_certificate {
            b = b.tls_danger_accept_invalid_certs(true);
        } else if let Some(pem) = ca_pem {
            let cert = reqwest::Certificate::from_pem(pem).context("invalid CA PEM")?;
            b = b.tls_certs_only([cert]);
        }
        Ok(Pusher {
            http: b.build().context("building the HTTP client")?,
            base,
            auth: creds.map(|(u, p)| (u.to_string(), p.to_string())),
            token: None,
        })
    }

    /// Use bearer tokens from `realm` (token.md's GET flow, with this pusher's credentials as
    /// basic auth to the token server) instead of sending the credentials to the registry. The
    /// scope is derived from each request's path (every action on the repository), or taken from
    /// the registry's challenge when that asks for more.
    pub fn with_token_auth(mut self, realm: &str, service: &str) -> Result<Self> {
        self.token = Some(Arc::new(BearerState {
            realm: Url::parse(realm).with_context(|| format!("invalid token realm {realm}"))?,
            service: service.to_owned(),
            cache: Mutex::new(HashMap::new()),
        }));
        Ok(self)
    }

    /// The registry URL, with a trailing `/`.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// `127.0.0.1:PORT` (host and port of the registry).
    pub fn host(&self) -> String {
        let host = self.base.host_str().unwrap_or_default();
        match self.base.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        }
    }

    // ---- blobs ----------------------------------------------------------------------------------

    /// Push a blob unless the repo already has it (HEAD first). Returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Result<String> {
        let digest = sha256_digest(data);
        if self.blob_exists(repo, &digest).await? {
            return Ok(digest);
        }
        self.upload_blob(repo, data).await
    }

    /// Upload without checking first: `POST /blobs/uploads/` then a monolithic `PUT ?digest=`.
    /// Re-uploading an existing blob is harmless; this saves the HEAD for content known to be new.
    pub async fn upload_blob(&self, repo: &str, data: &[u8]) -> Result<String> {
        let digest = sha256_digest(data);
        let url = self.url(&format!("v2/{repo}/blobs/uploads/"))?;
        let resp = self.send(self.req(Method::POST, url)).await?;
        let resp = expect(resp, &[StatusCode::ACCEPTED], "starting blob upload").await?;
        let mut put = self.location(&resp)?;
        put.query_pairs_mut().append_pair("digest", &digest);
        let resp = self
            .send(
                self.req(Method::PUT, put)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, data.len())
                    .body(data.to_vec()),
            )
            .await?;
        let resp = expect(resp, &[StatusCode::CREATED], "completing blob upload").await?;
        check_digest_header(resp.headers(), &digest, "blob upload")?;
        Ok(digest)
    }

    /// Cross-repo mount `POST ?mount=<digest>&from=<from>`. `true` when mounted (201); `false` when
    /// the registry declined (202: it opened an upload session instead, which is cancelled here).
    pub async fn mount_blob(&self, repo: &str, digest: &str, from: &str) -> Result<bool> {
        let mut url = self.url(&format!("v2/{repo}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", from);
        let resp = self.send(self.req(Method::POST, url)).await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                let session = self.location(&resp)?;
                // Leave no half-open upload behind (it would sit in `_uploads/` forever).
                let _ = self.send(self.req(Method::DELETE, session)).await;
                Ok(false)
            }
            _ => Err(error_from(resp, &format!("mounting {digest} from {from}")).await),
        }
    }

    /// Make sure `repo` has `blob`: HEAD, else mount from `from` (if given), else upload.
    pub async fn ensure_blob(&self, repo: &str, blob: &image::Blob, from: Option<&str>) -> Result<()> {
        if self.blob_exists(repo, &blob.digest).await? {
            return Ok(());
        }
        if let Some(from) = from
            && from != repo
            && self.mount_blob(repo, &blob.digest, from).await?
        {
            return Ok(());
        }
        self.upload_blob(repo, &blob.data).await.map(|_| ())
    }

    pub async fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let resp = self.send(self.req(Method::HEAD, url)).await?;
        match resp.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(error_from(resp, &format!("HEAD blob {repo}@{digest}")).await),
        }
    }

    /// Fetch a blob and check its digest. Follows one redirect (object-storage backends), without
    /// credentials.
    pub async fn get_blob(&self, repo: &str, digest: &str) -> Result<Vec<u8>> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let mut resp = self.send(self.req(Method::GET, url.clone())).await?;
        if resp.status().is_redirection() {
            let target = resolve_location(&url, resp.headers())?;
            resp = self
                .http
                .get(target)
                .send()
                .await
                .context("following blob redirect")?;
        }
        let resp = expect(resp, &[StatusCode::OK], &format!("GET blob {repo}@{digest}")).await?;
        let body = resp.bytes().await?.to_vec();
        let got = sha256_digest(&body);
        ensure!(got == digest, "blob {repo}@{digest} has content {got}");
        Ok(body)
    }

    /// `DELETE /v2/<repo>/blobs/<digest>`; returns the status (202, 404, 405…).
    pub async fn delete_blob(&self, repo: &str, digest: &str) -> Result<StatusCode> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        Ok(self.send(self.req(Method::DELETE, url)).await?.status())
    }

    // ---- manifests ------------------------------------------------------------------------------

    /// PUT a manifest under a tag or digest. Checks 201 and that `Docker-Content-Digest` (when
    /// sent) and a digest reference equal the sha256 of `body`. Returns the digest.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<String> {
        let digest = sha256_digest(body);
        if is_digest(reference) {
            ensure!(
                reference == digest,
                "PUT {repo}@{reference}: body has digest {digest}"
            );
        }
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let resp = self
            .send(
                self.req(Method::PUT, url)
                    .header(CONTENT_TYPE, media_type)
                    .body(body.to_vec()),
            )
            .await?;
        let what = format!("PUT manifest {repo}:{reference} ({media_type})");
        let resp = expect(resp, &[StatusCode::CREATED], &what).await?;
        check_digest_header(resp.headers(), &digest, &what)?;
        Ok(digest)
    }

    /// GET a manifest with all four manifest types in `Accept`. Returns (body, content type,
    /// sha256 of the body); fails if the body does not match a digest reference or the
    /// `Docker-Content-Digest` header.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<(Vec<u8>, String, String)> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let resp = self
            .send(self.req(Method::GET, url).header(ACCEPT, media::ACCEPT_ALL))
            .await?;
        let what = format!("GET manifest {repo}:{reference}");
        let resp = expect(resp, &[StatusCode::OK], &what).await?;
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?.to_vec();
        let digest = sha256_digest(&body);
        if is_digest(reference) {
            ensure!(reference == digest, "{what}: body has digest {digest}");
        }
        check_digest_header(&headers, &digest, &what)?;
        Ok((body, content_type, digest))
    }

    /// HEAD with all four `Accept` types: 200 => true, 404 => false, anything else => error.
    pub async fn manifest_exists(&self, repo: &str, reference: &str) -> Result<bool> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let resp = self
            .send(self.req(Method::HEAD, url).header(ACCEPT, media::ACCEPT_ALL))
            .await?;
        match resp.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(error_from(resp, &format!("HEAD manifest {repo}:{reference}")).await),
        }
    }

    /// `DELETE /v2/<repo>/manifests/<digest>`; returns the status (202, 404, 405…) without
    /// judging it, so tests can assert on refusals.
    pub async fn delete_manifest(&self, repo: &str, digest: &str) -> Result<StatusCode> {
        let url = self.url(&format!("v2/{repo}/manifests/{digest}"))?;
        Ok(self.send(self.req(Method::DELETE, url)).await?.status())
    }

    /// Same as [`delete_manifest`](Self::delete_manifest) but also returns the body (error JSON).
    pub async fn delete_manifest_verbose(&self, repo: &str, reference: &str) -> Result<(StatusCode, String)> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let resp = self.send(self.req(Method::DELETE, url)).await?;
        let status = resp.status();
        Ok((status, resp.text().await.unwrap_or_default()))
    }

    /// Point `tag` at the existing manifest `digest` (an alias): GET the exact bytes, PUT them.
    pub async fn tag(&self, repo: &str, digest: &str, tag: &str) -> Result<()> {
        let (body, content_type, _) = self.get_manifest(repo, digest).await?;
        self.put_manifest(repo, tag, &content_type, &body).await?;
        Ok(())
    }

    // ---- images ---------------------------------------------------------------------------------

    /// Push the image described by `spec`: blobs, then the manifest under `tag` (or by digest when
    /// `tag` is `None`). Generated blobs are uploaded without a HEAD; `shared_layers` are ensured
    /// (HEAD, mount from `spec.mount_from`, upload).
    pub async fn push_image(&self, repo: &str, tag: Option<&str>, spec: &ImageSpec) -> Result<PushedImage> {
        let built = spec.build();
        for blob in &spec.shared_layers {
            self.ensure_blob(repo, blob, spec.mount_from.as_deref())
                .await
                .with_context(|| format!("shared layer {} into {repo}", blob.digest))?;
        }
        self.push_built(repo, tag, &built).await
    }

    /// Push a prebuilt image whose shared layers the repo already has.
    pub async fn push_built(&self, repo: &str, tag: Option<&str>, built: &BuiltImage) -> Result<PushedImage> {
        self.upload_blob(repo, &built.config_blob.data)
            .await
            .with_context(|| format!("config blob into {repo}"))?;
        for layer in &built.own_layers {
            self.upload_blob(repo, &layer.data)
                .await
                .with_context(|| format!("layer blob into {repo}"))?;
        }
        let reference = tag.unwrap_or(&built.digest);
        self.put_manifest(repo, reference, &built.media_type, &built.manifest)
            .await?;
        Ok(PushedImage {
            repo: repo.to_string(),
            tag: tag.map(str::to_string),
            digest: built.digest.clone(),
            manifest: built.manifest.clone(),
            media_type: built.media_type.clone(),
            size: built.config.size + built.layers.iter().map(|l| l.size).sum::<u64>(),
            config: built.config.clone(),
            layers: built.layers.clone(),
        })
    }

    /// Multi-platform image: one child per `(os, arch)` (`arch` may be `arm64/v8`), pushed by
    /// digest (untagged, as buildx does), then an OCI index / Docker manifest list.
    pub async fn push_index(
        &self,
        repo: &str,
        tag: Option<&str>,
        format: Format,
        platforms: &[(&str, &str)],
        seed: u64,
    ) -> Result<PushedIndex> {
        let template = ImageSpec::seeded(seed).format(format);
        self.push_index_from(repo, tag, &template, platforms).await
    }

    /// Like [`push_index`](Self::push_index), with children derived from `template` (format,
    /// created, labels, layers…); child `i` gets platform `platforms[i]` and seed
    /// `mix(template.seed, i + 1)`.
    pub async fn push_index_from(
        &self,
        repo: &str,
        tag: Option<&str>,
        template: &ImageSpec,
        platforms: &[(&str, &str)],
    ) -> Result<PushedIndex> {
        for blob in &template.shared_layers {
            self.ensure_blob(repo, blob, template.mount_from.as_deref())
                .await?;
        }
        self.push_index_prepared(repo, tag, template, platforms).await
    }

    /// [`push_index_from`](Self::push_index_from) for a repo that already has the shared layers.
    pub(crate) async fn push_index_prepared(
        &self,
        repo: &str,
        tag: Option<&str>,
        template: &ImageSpec,
        platforms: &[(&str, &str)],
    ) -> Result<PushedIndex> {
        ensure!(!platforms.is_empty(), "an index needs at least one platform");
        let mut children = Vec::with_capacity(platforms.len());
        let mut entries = Vec::with_capacity(platforms.len());
        for (i, (os, arch)) in platforms.iter().enumerate() {
            let mut spec = template.clone().platform(os, arch);
            spec.seed = image::mix(template.seed, i as u64 + 1);
            let built = spec.build();
            let child = self.push_built(repo, None, &built).await?;
            entries.push((
                child.descriptor(),
                Platform {
                    architecture: spec.architecture.clone(),
                    os: spec.os.clone(),
                    variant: spec.variant.clone(),
                },
            ));
            children.push(child);
        }
        let annotations = template
            .created
            .as_ref()
            .map(|c| BTreeMap::from([("org.opencontainers.image.created".to_string(), c.clone())]));
        let body = image::build_index(template.format, &entries, annotations);
        let media_type = template.format.index_type().to_string();
        let digest = sha256_digest(&body);
        self.put_manifest(repo, tag.unwrap_or(&digest), &media_type, &body)
            .await?;
        Ok(PushedIndex {
            repo: repo.to_string(),
            tag: tag.map(str::to_string),
            digest,
            manifest: body,
            media_type,
            children,
        })
    }

    /// A cosign-style signature for `subject_digest`: tag `sha256-<hex>.sig`, OCI manifest, one
    /// `simplesigning` layer carrying the `dev.cosignproject.cosign/signature` annotation.
    pub async fn push_cosign_signature(
        &self,
        repo: &str,
        subject_digest: &str,
        seed: u64,
    ) -> Result<PushedImage> {
        let hex = subject_digest
            .strip_prefix("sha256:")
            .ok_or_else(|| anyhow!("cosign tags need a sha256 digest, got {subject_digest}"))?;
        let tag = format!("sha256-{hex}.sig");
        let payload = serde_json::to_vec(&serde_json::json!({
            "critical": {
                "identity": {"docker-reference": format!("{}/{repo}", self.host())},
                "image": {"docker-manifest-digest": subject_digest},
                "type": "cosign container image signature",
            },
            "optional": {"regsweep-testkit-seed": seed},
        }))?;
        let payload_ref = BlobRef {
            digest: sha256_digest(&payload),
            size: payload.len() as u64,
            media_type: media::COSIGN_SIMPLESIGNING.into(),
        };
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "", "os": "", "config": {},
            "created": "0001-01-01T00:00:00Z",
            "rootfs": {"type": "layers", "diff_ids": [payload_ref.digest]},
        }))?;
        let config_ref = BlobRef {
            digest: sha256_digest(&config),
            size: config.len() as u64,
            media_type: media::OCI_CONFIG.into(),
        };
        // Not a real signature: 64 deterministic bytes, base64 like cosign's.
        let signature = base64(&image::Blob::random(image::mix(seed, 0x5167), 64).data);
        let layer = Descriptor {
            annotations: Some(BTreeMap::from([(
                COSIGN_SIGNATURE_ANNOTATION.to_string(),
                signature,
            )])),
            ..Descriptor::of(&payload_ref)
        };
        let doc = ManifestDoc {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            config: Some(Descriptor::of(&config_ref)),
            layers: Some(vec![layer]),
            ..Default::default()
        };
        self.upload_blob(repo, &config).await?;
        self.upload_blob(repo, &payload).await?;
        self.push_doc(repo, Some(&tag), &doc, config_ref, vec![payload_ref])
            .await
    }

    /// An OCI 1.1 artifact whose `subject` is `subject` (e.g. `image.descriptor()`), with
    /// `artifactType`, the empty config `{}`, and one layer of type `artifact_type`. Pushed by
    /// digest (untagged), as `oras attach` / cosign in OCI 1.1 mode do. distribution 2.8 keeps it
    /// but has no referrers API and ignores `subject`.
    pub async fn push_referrer(
        &self,
        repo: &str,
        subject: &BlobRef,
        artifact_type: &str,
        seed: u64,
    ) -> Result<PushedImage> {
        let payload = serde_json::to_vec(&serde_json::json!({
            "artifactType": artifact_type,
            "subject": subject.digest,
            "regsweep-testkit-seed": seed,
        }))?;
        let payload_ref = BlobRef {
            digest: sha256_digest(&payload),
            size: payload.len() as u64,
            media_type: artifact_type.to_string(),
        };
        let empty = BlobRef {
            digest: EMPTY_JSON_DIGEST.into(),
            size: 2,
            media_type: media::OCI_EMPTY.into(),
        };
        let doc = ManifestDoc {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            artifact_type: Some(artifact_type.to_string()),
            config: Some(Descriptor {
                data: Some("e30=".into()),
                ..Descriptor::of(&empty)
            }),
            layers: Some(vec![Descriptor::of(&payload_ref)]),
            subject: Some(Descriptor::of(subject)),
            // No `created` annotation: the same inputs must give the same digest.
            ..Default::default()
        };
        self.upload_blob(repo, b"{}").await?;
        self.upload_blob(repo, &payload).await?;
        self.push_doc(repo, None, &doc, empty, vec![payload_ref]).await
    }

    /// The OCI referrers *fallback tag* for `subject_digest` (`sha256-<hex>`): an index listing
    /// `referrers`, as clients maintain it on registries without the referrers API.
    pub async fn push_referrers_fallback(
        &self,
        repo: &str,
        subject_digest: &str,
        referrers: &[&PushedImage],
    ) -> Result<PushedIndex> {
        let hex = subject_digest
            .strip_prefix("sha256:")
            .ok_or_else(|| anyhow!("fallback tags need a sha256 digest, got {subject_digest}"))?;
        let tag = format!("sha256-{hex}");
        let mut manifests = Vec::new();
        for r in referrers {
            let doc = ManifestDoc::parse(&r.manifest)?;
            manifests.push(Descriptor {
                artifact_type: doc.artifact_type.clone(),
                annotations: doc.annotations.clone(),
                ..Descriptor::of(&r.descriptor())
            });
        }
        let doc = ManifestDoc {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.into()),
            manifests: Some(manifests),
            ..Default::default()
        };
        let body = doc.to_bytes();
        let digest = self.put_manifest(repo, &tag, media::OCI_INDEX, &body).await?;
        Ok(PushedIndex {
            repo: repo.to_string(),
            tag: Some(tag),
            digest,
            manifest: body,
            media_type: media::OCI_INDEX.into(),
            children: referrers.iter().map(|r| (*r).clone()).collect(),
        })
    }

    async fn push_doc(
        &self,
        repo: &str,
        tag: Option<&str>,
        doc: &ManifestDoc,
        config: BlobRef,
        layers: Vec<BlobRef>,
    ) -> Result<PushedImage> {
        let body = doc.to_bytes();
        let digest = sha256_digest(&body);
        let media_type = doc.media_type.clone().unwrap_or_default();
        self.put_manifest(repo, tag.unwrap_or(&digest), &media_type, &body)
            .await?;
        Ok(PushedImage {
            repo: repo.to_string(),
            tag: tag.map(str::to_string),
            digest,
            manifest: body,
            media_type,
            size: config.size + layers.iter().map(|l| l.size).sum::<u64>(),
            config,
            layers,
        })
    }

    // ---- listing --------------------------------------------------------------------------------

    /// All tags of `repo` (follows `Link`; distribution 2.8 never pages and may answer `null`).
    /// Order as the registry returns it (2.8: directory order, unsorted).
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Page {
            tags: Option<Vec<String>>,
        }
        let mut out = Vec::new();
        for page in self.pages(&format!("v2/{repo}/tags/list")).await? {
            let p: Page =
                serde_json::from_slice(&page).with_context(|| format!("parsing tags/list of {repo}"))?;
            out.extend(p.tags.unwrap_or_default());
        }
        Ok(out)
    }

    /// All repositories in `_catalog`, following `Link: <…>; rel="next"` (pages of 100).
    pub async fn catalog(&self) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Page {
            repositories: Option<Vec<String>>,
        }
        let mut out = Vec::new();
        for page in self.pages("v2/_catalog").await? {
            let p: Page = serde_json::from_slice(&page).context("parsing _catalog")?;
            out.extend(p.repositories.unwrap_or_default());
        }
        Ok(out)
    }

    async fn pages(&self, first: &str) -> Result<Vec<Vec<u8>>> {
        let mut url = self.url(first)?;
        let mut pages = Vec::new();
        let mut seen = HashSet::new();
        loop {
            ensure!(seen.insert(url.to_string()), "pagination loop at {url}");
            let resp = self.send(self.req(Method::GET, url.clone())).await?;
            let resp = expect(resp, &[StatusCode::OK], &format!("GET {}", url.path())).await?;
            let next = next_link(resp.headers())
                .map(|l| url.join(&l).context("bad Link header"))
                .transpose()?;
            pages.push(resp.bytes().await?.to_vec());
            match next {
                Some(n) => {
                    self.check_origin(&n)?;
                    url = n;
                }
                None => return Ok(pages),
            }
        }
    }

    // ---- verification ---------------------------------------------------------------------------

    /// Check that `repo:reference` pulls completely: the manifest, recursively every child
    /// manifest of an index (by digest, size and media type as listed), and every config/layer
    /// blob (fetched and hashed; size checked). The error lists everything missing or wrong.
    pub async fn verify_pullable(&self, repo: &str, reference: &str) -> Result<()> {
        let mut problems = Vec::new();
        let mut checked = HashSet::new();
        let mut stack: Vec<(String, Option<Descriptor>)> = vec![(reference.to_string(), None)];
        while let Some((r, expected)) = stack.pop() {
            if !checked.insert(r.clone()) {
                continue;
            }
            let (body, content_type, digest) = match self.get_manifest(repo, &r).await {
                Ok(m) => m,
                Err(e) => {
                    problems.push(format!("manifest {repo}:{r}: {e:#}"));
                    continue;
                }
            };
            if let Some(exp) = &expected {
                if exp.size != body.len() as u64 {
                    problems.push(format!(
                        "manifest {repo}@{digest}: size {} but index says {}",
                        body.len(),
                        exp.size
                    ));
                }
                if exp.media_type != content_type {
                    problems.push(format!(
                        "manifest {repo}@{digest}: served as {content_type} but index says {}",
                        exp.media_type
                    ));
                }
            }
            let doc = match ManifestDoc::parse(&body) {
                Ok(d) => d,
                Err(e) => {
                    problems.push(format!("manifest {repo}@{digest}: {e}"));
                    continue;
                }
            };
            for child in doc.manifests.iter().flatten() {
                stack.push((child.digest.clone(), Some(child.clone())));
            }
            for (kind, blob) in doc
                .config
                .iter()
                .map(|c| ("config", c))
                .chain(doc.layers.iter().flatten().map(|l| ("layer", l)))
            {
                if !checked.insert(blob.digest.clone()) {
                    continue;
                }
                match self.get_blob(repo, &blob.digest).await {
                    Ok(data) if data.len() as u64 == blob.size => {}
                    Ok(data) => problems.push(format!(
                        "{kind} {repo}@{} of manifest {digest}: {} bytes, descriptor says {}",
                        blob.digest,
                        data.len(),
                        blob.size
                    )),
                    Err(e) => problems.push(format!(
                        "{kind} {} of manifest {repo}@{digest}: {e:#}",
                        blob.digest
                    )),
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("{repo}:{reference} is not pullable:\n  {}", problems.join("\n  "))
        }
    }

    // ---- plumbing -------------------------------------------------------------------------------

    /// One short GET without credentials, for readiness probes.
    pub(crate) async fn probe(&self, url: &str) -> reqwest::Result<Response> {
        self.http.get(url).timeout(Duration::from_secs(2)).send().await
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(path)
            .with_context(|| format!("bad registry path {path}"))
    }

    fn req(&self, method: Method, url: Url) -> RequestBuilder {
        let rb = self.http.request(method, url);
        match &self.auth {
            Some((u, p)) if self.token.is_none() => rb.basic_auth(u, Some(p)),
            _ => rb,
        }
    }

    async fn send(&self, rb: RequestBuilder) -> Result<Response> {
        let mut req = rb.build().context("building request")?;
        let what = format!("{} {}", req.method(), req.url().path());
        self.check_origin(req.url())?;
        let Some(bearer) = &self.token else {
            return self
                .http
                .execute(req)
                .await
                .with_context(|| format!("{what}: request to {} failed", self.host()));
        };
        if let Some(scope) = scope_for(req.method(), req.url()) {
            let token = self.bearer_token(bearer, &scope).await?;
            req.headers_mut().insert(AUTHORIZATION, bearer_header(&token)?);
        }
        let retry = req.try_clone();
        let resp = self
            .http
            .execute(req)
            .await
            .with_context(|| format!("{what}: request to {} failed", self.host()))?;
        // The registry may want a scope the path did not suggest; its challenge names it.
        let wanted = (resp.status() == StatusCode::UNAUTHORIZED)
            .then(|| challenge_scope(resp.headers()))
            .flatten();
        match (wanted, retry) {
            (Some(scope), Some(mut again)) => {
                let token = self.bearer_token(bearer, &scope).await?;
                again.headers_mut().insert(AUTHORIZATION, bearer_header(&token)?);
                self.http
                    .execute(again)
                    .await
                    .with_context(|| format!("{what}: request to {} failed", self.host()))
            }
            _ => Ok(resp),
        }
    }

    /// A token for `scope` (space-separated scopes), cached for half its lifetime.
    async fn bearer_token(&self, bearer: &BearerState, scope: &str) -> Result<String> {
        if let Some((token, until)) = bearer.cache.lock().unwrap_or_else(|e| e.into_inner()).get(scope)
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let mut url = bearer.realm.clone();
        url.query_pairs_mut().append_pair("service", &bearer.service);
        for one in scope.split(' ') {
            url.query_pairs_mut().append_pair("scope", one);
        }
        let mut rb = self.http.get(url);
        if let Some((u, p)) = &self.auth {
            rb = rb.basic_auth(u, Some(p));
        }
        let resp = rb.send().await.context("requesting a token")?;
        let resp = expect(resp, &[StatusCode::OK], &format!("token for {scope}")).await?;
        let body: serde_json::Value =
            serde_json::from_slice(&resp.bytes().await?).context("token response is not JSON")?;
        let token = body["token"]
            .as_str()
            .or_else(|| body["access_token"].as_str())
            .ok_or_else(|| anyhow!("token response for {scope} has no token"))?
            .to_owned();
        let lifetime = body["expires_in"].as_u64().unwrap_or(60);
        let until = Instant::now() + Duration::from_millis(lifetime * 500);
        bearer
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(scope.to_owned(), (token.clone(), until));
        Ok(token)
    }

    /// Credentials go only to the registry's own scheme/host/port.
    fn check_origin(&self, url: &Url) -> Result<()> {
        ensure!(
            url.origin() == self.base.origin(),
            "refusing to follow {url}: not the registry's origin {}",
            self.base.origin().ascii_serialization()
        );
        Ok(())
    }

    fn location(&self, resp: &Response) -> Result<Url> {
        let url = resolve_location(resp.url(), resp.headers())?;
        self.check_origin(&url)?;
        Ok(url)
    }
}

fn bearer_header(token: &str) -> Result<HeaderValue> {
    let mut value =
        HeaderValue::from_str(&format!("Bearer {token}")).context("token is not a header value")?;
    value.set_sensitive(true);
    Ok(value)
}

/// The scope a request needs, from its path: every action on the repository (the harness's
/// user may do anything), plus `pull` on the source of a cross-repository mount.
fn scope_for(method: &Method, url: &Url) -> Option<String> {
    let path = url.path().strip_prefix("/v2/")?;
    if path == "_catalog" {
        return Some("registry:catalog:*".to_owned());
    }
    let end = ["/blobs/", "/manifests/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|marker| path.rfind(marker))
        .min()?;
    let mut scope = format!("repository:{}:pull,push,delete", &path[..end]);
    if *method == Method::POST
        && let Some((_, from)) = url.query_pairs().find(|(k, _)| k == "from")
    {
        scope.push_str(&format!(" repository:{from}:pull"));
    }
    Some(scope)
}

/// The `scope` of a `Bearer` challenge, if any.
fn challenge_scope(headers: &HeaderMap) -> Option<String> {
    let header = headers.get(WWW_AUTHENTICATE)?.to_str().ok()?;
    let start = header.find("scope=\"")? + "scope=\"".len();
    let len = header[start..].find('"')?;
    Some(header[start..start + len].to_owned())
}

fn resolve_location(request_url: &Url, headers: &HeaderMap) -> Result<Url> {
    let loc = headers
        .get(LOCATION)
        .ok_or_else(|| anyhow!("response has no Location header"))?
        .to_str()
        .context("non-ASCII Location header")?;
    request_url
        .join(loc)
        .with_context(|| format!("bad Location {loc}"))
}

/// Target of `Link: <…>; rel="next"`, if any.
pub(crate) fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|part| {
            let (target, params) = part.trim().split_once(';')?;
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            params
                .split(';')
                .any(|p| {
                    let p = p.trim().replace(' ', "");
                    p == "rel=\"next\"" || p == "rel=next"
                })
                .then(|| target.to_string())
        })
}

fn is_digest(reference: &str) -> bool {
    reference.contains(':')
}

fn check_digest_header(headers: &HeaderMap, expected: &str, what: &str) -> Result<()> {
    match headers.get("Docker-Content-Digest").and_then(|v| v.to_str().ok()) {
        Some(d) if d == expected => Ok(()),
        Some(d) => bail!("{what}: Docker-Content-Digest {d}, expected {expected}"),
        // Optional in the OCI spec; distribution always sends it.
        None => Ok(()),
    }
}

async fn expect(resp: Response, ok: &[StatusCode], what: &str) -> Result<Response> {
    if ok.contains(&resp.status()) {
        Ok(resp)
    } else {
        Err(error_from(resp, what).await)
    }
}

/// An error naming the operation, the status and (the start of) the body.
async fn error_from(resp: Response, what: &str) -> anyhow::Error {
    let status = resp.status();
    let mut body = resp.text().await.unwrap_or_default();
    if body.len() > 600 {
        let mut cut = 600;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
        body.push('…');
    }
    anyhow!("{what}: HTTP {status}: {}", body.trim())
}

fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn link_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            HeaderValue::from_static("</v2/_catalog?last=a%2Fb&n=100>; rel=\"next\""),
        );
        assert_eq!(next_link(&h).as_deref(), Some("/v2/_catalog?last=a%2Fb&n=100"));
        h.insert(LINK, HeaderValue::from_static("<http://x/y>; rel=\"prev\""));
        assert_eq!(next_link(&h), None);
    }

    #[test]
    fn scopes_from_paths_and_challenges() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            scope_for(&Method::GET, &url("http://r/v2/team/app/manifests/v1")).as_deref(),
            Some("repository:team/app:pull,push,delete")
        );
        assert_eq!(
            scope_for(
                &Method::POST,
                &url("http://r/v2/a/blobs/uploads/?mount=sha256:x&from=b/c")
            )
            .as_deref(),
            Some("repository:a:pull,push,delete repository:b/c:pull")
        );
        assert_eq!(
            scope_for(&Method::GET, &url("http://r/v2/_catalog?n=5")).as_deref(),
            Some("registry:catalog:*")
        );
        assert_eq!(scope_for(&Method::GET, &url("http://r/v2/")), None);
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(
                r#"Bearer realm="http://t/token",service="s",scope="repository:a:pull""#,
            ),
        );
        assert_eq!(challenge_scope(&h).as_deref(), Some("repository:a:pull"));
    }

    #[test]
    fn base64_matches_reference() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"{}"), "e30=");
    }

    #[test]
    fn origin_check_refuses_other_hosts() {
        let p = Pusher::connect("http://127.0.0.1:5000", Some(("u", "p")), None).unwrap();
        assert!(
            p.check_origin(&Url::parse("http://127.0.0.1:5000/v2/x").unwrap())
                .is_ok()
        );
        assert!(
            p.check_origin(&Url::parse("http://evil:5000/v2/x").unwrap())
                .is_err()
        );
        assert!(
            p.check_origin(&Url::parse("https://127.0.0.1:5000/v2/x").unwrap())
                .is_err()
        );
        assert!(!format!("{p:?}").contains("\"p\""));
    }
}
