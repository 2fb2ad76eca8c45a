//! The registry HTTP API v2 client.
//!
//! [`Client::connect`] picks the scheme (HTTPS, or plain HTTP when asked or as a fallback for
//! loopback registries, as docker does), checks `/v2/`, and returns a cheap-to-clone handle. The
//! methods cover what listing and cleaning up need: catalog and tag listing across every `Link`
//! page, manifests fetched with all four manifest media types in `Accept` and verified against
//! their digest, config blobs, and the referrers API. Requests to one registry share a bounded
//! pool of keep-alive connections and a limit on requests in flight.

pub mod auth;
pub mod credentials;
pub mod delete;
pub mod error;
mod http;
pub mod link;
mod tls;
mod token;
mod transport;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, Url};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

pub use auth::{Credentials, Scope, Secret};
pub use error::{Advice, ApiError, Missing, RegistryError, RequestInfo};
use http::Repeat;
pub use http::RetryPolicy;
use transport::{Request, Response, Transport};

use crate::digest::Digest;
use crate::manifest::{Descriptor, MAX_MANIFEST_BYTES, Manifest, media_type};
use crate::reference::{Reference, RegistryAddr, Repository, Scheme, Tag};

/// Largest JSON listing (catalog or tags page, referrers index) accepted.
const MAX_LIST_BYTES: usize = 64 * 1024 * 1024;
/// Largest config blob read (image configs are a few KiB; history-heavy ones reach a few MiB).
pub const MAX_CONFIG_BYTES: usize = 16 * 1024 * 1024;
/// Upper bound on pages followed for one listing, against registries that loop.
const MAX_PAGES: usize = 1_000_000;
/// Default timeout of one attempt. Registry answers are small (manifests, listings, configs); a
/// healthy registry sends them well within this even under load.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How to connect to a registry.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Use plain HTTP even for non-loopback hosts.
    pub plain_http: bool,
    /// Skip TLS certificate verification.
    pub insecure: bool,
    /// Extra PEM CA certificates to trust.
    pub ca_files: Vec<PathBuf>,
    pub credentials: Option<Credentials>,
    /// Send credentials over plain HTTP to a registry or token server that is not on loopback.
    pub allow_insecure_auth: bool,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Retries, and the bound on one request with all its attempts (`retry.total`).
    pub retry: RetryPolicy,
    /// Timeout of one attempt, from connecting to the last byte of the body: a stalled
    /// response fails after this long and is retried.
    pub timeout: Duration,
    /// `n` for `_catalog` pages; `None` leaves the page size to the registry (100 for
    /// distribution).
    pub catalog_page_size: Option<usize>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            plain_http: false,
            insecure: false,
            ca_files: Vec::new(),
            credentials: None,
            allow_insecure_auth: false,
            concurrency: 8,
            retry: RetryPolicy::default(),
            timeout: DEFAULT_TIMEOUT,
            catalog_page_size: None,
        }
    }
}

/// A connected registry. Cloning is cheap and clones share the connection pool and the limit on
/// requests in flight.
#[derive(Clone)]
pub struct Client {
    registry: RegistryAddr,
    transport: Arc<Transport>,
    catalog_page_size: Option<usize>,
}

/// A manifest as fetched: verified digest, media type, raw bytes and the parsed form.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub body: Vec<u8>,
    pub manifest: Manifest,
}

/// What a manifest HEAD tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: Digest,
    pub media_type: String,
    pub size: Option<u64>,
}

impl Client {
    /// Connects to a registry: resolves the scheme and checks that `/v2/` answers as a registry.
    pub async fn connect(registry: &RegistryAddr, options: ClientOptions) -> Result<Self, RegistryError> {
        let http = build_http(&options)?;
        let schemes = match (registry.scheme(), options.plain_http) {
            (Some(scheme), _) => vec![scheme],
            (None, true) => vec![Scheme::Http],
            (None, false) if registry.is_loopback() => vec![Scheme::Https, Scheme::Http],
            (None, false) => vec![Scheme::Https],
        };
        let mut last_error = None;
        let count = schemes.len();
        for (i, scheme) in schemes.into_iter().enumerate() {
            // When another scheme remains to try, one attempt is enough to see that this one
            // does not work (a TLS handshake with a plain-HTTP server does not heal by retrying).
            let attempts = if i + 1 < count {
                1
            } else {
                options.retry.max_attempts
            };
            let base = base_url(registry, scheme)?;
            let transport = Transport::new(
                http.clone(),
                base,
                options.concurrency,
                options.retry,
                options.credentials.clone(),
                options.allow_insecure_auth,
            );
            let client = Client {
                registry: registry.clone(),
                transport: Arc::new(transport),
                catalog_page_size: options.catalog_page_size,
            };
            match client.ping(attempts).await {
                Ok(()) => return Ok(client),
                // Only a failure to talk HTTPS at all justifies trying plain HTTP on loopback. A
                // refused certificate means the server does speak HTTPS: plain HTTP would only
                // hide the real cause behind "client sent an HTTP request to an HTTPS server".
                Err(
                    err @ RegistryError::Connect {
                        certificate: false, ..
                    },
                ) => last_error = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last_error.expect("at least one scheme is tried"))
    }

    /// The registry this client talks to.
    pub fn registry(&self) -> &RegistryAddr {
        &self.registry
    }

    /// The base URL in use (`https://host/` or `http://host/`).
    pub fn base_url(&self) -> &Url {
        &self.transport.base
    }

    /// HTTP requests sent so far through this client and its clones (retries included).
    pub fn requests_sent(&self) -> u64 {
        self.transport.requests_sent()
    }

    async fn ping(&self, attempts: u32) -> Result<(), RegistryError> {
        let request = Request {
            method: Method::GET,
            url: self.transport.url("/v2/"),
            accept: None,
            body: None,
            scope: Scope::catalog(),
            missing: Missing::Endpoint,
            max_body: MAX_LIST_BYTES,
            repeat: Repeat::Safe,
        };
        match self.transport.send_with_attempts(&request, attempts).await {
            Ok(_) => Ok(()),
            // Authentication is sorted out per request (the first 401 switches to the scheme the
            // registry asks for), so an unauthenticated ping is not an error yet.
            Err(RegistryError::Unauthorized { .. }) => Ok(()),
            Err(RegistryError::NotFound { request, errors, .. }) => Err(RegistryError::BadResponse {
                request,
                reason: format!(
                    "404 on /v2/: this is not a registry API v2 endpoint{}",
                    errors.first().map(|e| format!(" ({e})")).unwrap_or_default()
                ),
            }),
            Err(err) => Err(err),
        }
    }

    /// Every repository in the catalog, following `Link` pages until there is none. Names that
    /// are not repository names are skipped with a warning.
    pub async fn catalog(&self) -> Result<Vec<Repository>, RegistryError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            repositories: Option<Vec<String>>,
        }
        let mut url = self.transport.url("/v2/_catalog");
        if let Some(n) = self.catalog_page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        let mut all = Vec::new();
        self.paginate(url, Scope::catalog(), Missing::Endpoint, |request, body| {
            let page: Page = parse_json(request, body)?;
            all.extend(page.repositories.unwrap_or_default());
            Ok(())
        })
        .await?;
        Ok(valid_names(all, "repository", Repository::parse))
    }

    /// Every tag of a repository, following `Link` pages. distribution 2.x answers `"tags": null`
    /// for a repository whose tags were all deleted; that is an empty list. Names that are not
    /// tags are skipped with a warning.
    pub async fn tags(&self, repository: &Repository) -> Result<Vec<Tag>, RegistryError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let url = self.transport.url(&format!("/v2/{repository}/tags/list"));
        let mut all = Vec::new();
        self.paginate(
            url,
            Scope::repository(repository.as_str(), &["pull"]),
            Missing::Repository(repository.to_string()),
            |request, body| {
                let page: Page = parse_json(request, body)?;
                all.extend(page.tags.unwrap_or_default());
                Ok(())
            },
        )
        .await?;
        Ok(valid_names(all, "tag", Tag::parse))
    }

    async fn paginate(
        &self,
        first: Url,
        scope: Scope,
        missing: Missing,
        mut on_page: impl FnMut(&RequestInfo, &[u8]) -> Result<(), RegistryError>,
    ) -> Result<(), RegistryError> {
        let mut url = first;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            let request = Request {
                method: Method::GET,
                url: url.clone(),
                accept: Some("application/json"),
                body: None,
                scope: scope.clone(),
                missing: missing.clone(),
                max_body: MAX_LIST_BYTES,
                repeat: Repeat::Safe,
            };
            let response = self.transport.send(&request).await?;
            let info = info(&request);
            on_page(&info, &response.body)?;
            let next = link::next_link(response.header_values("link"))
                .and_then(|next| {
                    next.map(|n| link::resolve_same_origin(&response.url, &n))
                        .transpose()
                })
                .map_err(|e| RegistryError::BadResponse {
                    request: info.clone(),
                    reason: e.to_string(),
                })?;
            match next {
                None => return Ok(()),
                Some(next) => {
                    if !seen.insert(next.to_string()) {
                        return Err(RegistryError::BadResponse {
                            request: info,
                            reason: format!("pagination loops: `{next}` was already visited"),
                        });
                    }
                    url = next;
                }
            }
        }
        Err(RegistryError::BadResponse {
            request: RequestInfo {
                method: "GET".into(),
                url: url.to_string(),
            },
            reason: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// Fetches a manifest by tag or digest with all four manifest media types in `Accept`,
    /// hashes the body and checks it against a digest reference and `Docker-Content-Digest`.
    pub async fn manifest(
        &self,
        repository: &Repository,
        reference: impl Into<Reference<'_>>,
    ) -> Result<FetchedManifest, RegistryError> {
        let reference = reference.into();
        let request = self.manifest_request(Method::GET, repository, reference);
        let response = self.transport.send(&request).await?;
        let info = info(&request);
        let computed = Digest::sha256(&response.body);
        verify_manifest_digest(&info, reference, &response, &computed)?;
        let content_type = response.header("content-type");
        let manifest =
            Manifest::parse(&response.body, content_type).map_err(|source| RegistryError::BadManifest {
                request: info,
                source,
            })?;
        let digest = match reference.digest() {
            // A digest reference in another algorithm was not checked above; keep it as named.
            Some(named) if named.algorithm() != "sha256" => named.clone(),
            _ => computed,
        };
        Ok(FetchedManifest {
            digest,
            media_type: manifest.media_type.clone(),
            body: response.body,
            manifest,
        })
    }

    /// Resolves a tag (or checks a digest) with HEAD. Falls back to GET when the registry does not
    /// send `Docker-Content-Digest` on HEAD, which the spec allows.
    pub async fn manifest_head(
        &self,
        repository: &Repository,
        reference: impl Into<Reference<'_>>,
    ) -> Result<ManifestHead, RegistryError> {
        let reference = reference.into();
        let request = self.manifest_request(Method::HEAD, repository, reference);
        let response = self.transport.send(&request).await?;
        let digest = response
            .header("docker-content-digest")
            .and_then(|d| Digest::parse(d).ok());
        match digest {
            Some(digest) => {
                if let Some(named) = reference.digest()
                    && *named != digest
                {
                    return Err(RegistryError::DigestMismatch {
                        request: info(&request),
                        expected: named.clone(),
                        actual: digest,
                    });
                }
                Ok(ManifestHead {
                    digest,
                    media_type: response
                        .header("content-type")
                        .map(|c| c.split(';').next().unwrap_or(c).trim().to_owned())
                        .unwrap_or_default(),
                    size: response.header("content-length").and_then(|l| l.parse().ok()),
                })
            }
            None => {
                let fetched = self.manifest(repository, reference).await?;
                Ok(ManifestHead {
                    digest: fetched.digest,
                    media_type: fetched.media_type,
                    size: Some(fetched.body.len() as u64),
                })
            }
        }
    }

    fn manifest_request(
        &self,
        method: Method,
        repository: &Repository,
        reference: Reference<'_>,
    ) -> Request<'static> {
        Request {
            method,
            url: self
                .transport
                .url(&format!("/v2/{repository}/manifests/{reference}")),
            accept: Some(media_type::MANIFEST_ACCEPT),
            body: None,
            scope: Scope::repository(repository.as_str(), &["pull"]),
            missing: Missing::Manifest {
                repository: repository.to_string(),
                reference: reference.to_string(),
            },
            max_body: MAX_MANIFEST_BYTES,
            // GET and HEAD read; a manifest PUT of the same bytes stores the same thing again; a
            // repeated DELETE answers 404, which the transport takes as done when the first
            // answer was lost.
            repeat: Repeat::Safe,
        }
    }

    /// Deletes a manifest by digest. On distribution this also removes every tag that points at
    /// the digest; callers decide beforehand whether that is wanted.
    pub async fn delete_manifest(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let mut request = self.manifest_request(Method::DELETE, repository, Reference::Digest(digest));
        request.scope = Scope::repository(repository.as_str(), &["delete"]);
        self.transport.send(&request).await.map(drop)
    }

    /// Deletes a tag without touching its manifest, through the OCI 1.1 `DELETE
    /// /v2/<name>/manifests/<tag>`. Registries that do not support it answer 400 (distribution
    /// 2.x: `DIGEST_INVALID`) or 405; see `delete::UntagMethod` for how regsweep probes this
    /// safely, because some registries delete the whole image with every tag instead.
    pub async fn delete_tag(&self, repository: &Repository, tag: &Tag) -> Result<(), RegistryError> {
        let mut request = self.manifest_request(Method::DELETE, repository, Reference::Tag(tag));
        request.scope = Scope::repository(repository.as_str(), &["delete"]);
        self.transport.send(&request).await.map(drop)
    }

    /// Uploads a small blob in one request pair (POST, then PUT with the digest) and returns its
    /// digest. Used for the placeholder manifests that untag on registries without tag deletion.
    pub async fn upload_blob(
        &self,
        repository: &Repository,
        bytes: Vec<u8>,
    ) -> Result<Digest, RegistryError> {
        // The final PUT is not repeated on its own (it consumes the upload session); when its
        // answer is lost, the whole upload runs once more: storing the same blob twice is
        // harmless.
        match self.upload_blob_once(repository, bytes.clone()).await {
            Err(RegistryError::Connect { .. }) => self.upload_blob_once(repository, bytes).await,
            other => other,
        }
    }

    async fn upload_blob_once(
        &self,
        repository: &Repository,
        bytes: Vec<u8>,
    ) -> Result<Digest, RegistryError> {
        let digest = Digest::sha256(&bytes);
        let scope = Scope::repository(repository.as_str(), &["pull", "push"]);
        let start = Request {
            method: Method::POST,
            url: self.transport.url(&format!("/v2/{repository}/blobs/uploads/")),
            accept: None,
            body: None,
            scope: scope.clone(),
            missing: Missing::Repository(repository.to_string()),
            max_body: MAX_LIST_BYTES,
            // A repeated POST only opens another upload session, which the registry expires.
            repeat: Repeat::Safe,
        };
        let response = self.transport.send(&start).await?;
        let location = response
            .header("location")
            .ok_or_else(|| RegistryError::BadResponse {
                request: info(&start),
                reason: "blob upload started without a Location header".into(),
            })?;
        let mut url =
            link::resolve_same_origin(&response.url, location).map_err(|e| RegistryError::BadResponse {
                request: info(&start),
                reason: format!("upload Location: {e}"),
            })?;
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let finish = Request {
            method: Method::PUT,
            url,
            accept: None,
            body: Some(("application/octet-stream".to_owned(), bytes)),
            scope,
            missing: Missing::Repository(repository.to_string()),
            max_body: MAX_LIST_BYTES,
            // The final PUT consumes the upload session: a repeat after a lost answer would
            // fail with BLOB_UPLOAD_UNKNOWN even when the first one stored the blob.
            repeat: Repeat::OnlyIfUnsent,
        };
        self.transport.send(&finish).await?;
        Ok(digest)
    }

    /// Uploads a manifest under a tag or digest and returns the digest of the uploaded bytes,
    /// after checking it against the registry's `Docker-Content-Digest`.
    pub async fn put_manifest(
        &self,
        repository: &Repository,
        reference: impl Into<Reference<'_>>,
        media_type: &str,
        body: Vec<u8>,
    ) -> Result<Digest, RegistryError> {
        let digest = Digest::sha256(&body);
        let mut request = self.manifest_request(Method::PUT, repository, reference.into());
        request.accept = None;
        request.body = Some((media_type.to_owned(), body));
        request.scope = Scope::repository(repository.as_str(), &["pull", "push"]);
        let response = self.transport.send(&request).await?;
        if let Some(claimed) = response
            .header("docker-content-digest")
            .and_then(|d| Digest::parse(d).ok())
            && claimed.algorithm() == "sha256"
            && claimed != digest
        {
            return Err(RegistryError::DigestMismatch {
                request: info(&request),
                expected: digest,
                actual: claimed,
            });
        }
        Ok(digest)
    }

    /// Downloads a (small) blob such as an image config and verifies its digest.
    pub async fn blob(
        &self,
        repository: &Repository,
        digest: &Digest,
        max_bytes: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        let request = Request {
            method: Method::GET,
            url: self.transport.url(&format!("/v2/{repository}/blobs/{digest}")),
            accept: None,
            body: None,
            scope: Scope::repository(repository.as_str(), &["pull"]),
            missing: Missing::Blob {
                repository: repository.to_string(),
                digest: digest.to_string(),
            },
            max_body: max_bytes,
            repeat: Repeat::Safe,
        };
        let response = self.transport.send(&request).await?;
        if digest.verify(&response.body) == Some(false) {
            return Err(RegistryError::DigestMismatch {
                request: info(&request),
                expected: digest.clone(),
                actual: Digest::sha256(&response.body),
            });
        }
        Ok(response.body)
    }

    /// Manifests that refer to `digest` through their `subject`, from the OCI referrers API.
    /// `Ok(None)` means the registry has no referrers API (it answered 404), in which case the
    /// `sha256-<hex>` fallback tag is where referrers are listed.
    pub async fn referrers(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Option<Vec<Descriptor>>, RegistryError> {
        #[derive(Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<Descriptor>,
        }
        let url = self
            .transport
            .url(&format!("/v2/{repository}/referrers/{digest}"));
        let mut all = Vec::new();
        let result = self
            .paginate(
                url,
                Scope::repository(repository.as_str(), &["pull"]),
                Missing::Endpoint,
                |request, body| {
                    let index: Index = parse_json(request, body)?;
                    all.extend(index.manifests);
                    Ok(())
                },
            )
            .await;
        match result {
            Ok(()) => Ok(Some(all)),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// Parses the names a listing returned, and warns about each one the distribution grammar
/// rejects: they go into URL paths, where a name with `..`, `?`, `#` or `%` would address
/// something else than the entry listed.
fn valid_names<T, E>(names: Vec<String>, what: &str, parse: impl Fn(&str) -> Result<T, E>) -> Vec<T> {
    names
        .into_iter()
        .filter_map(|name| {
            let parsed = parse(&name).ok();
            if parsed.is_none() {
                let shown: String = name.chars().take(200).collect();
                tracing::warn!(
                    "skipping {what} {shown:?} listed by the registry: it is not a valid {what} name"
                );
            }
            parsed
        })
        .collect()
}

fn verify_manifest_digest(
    request: &RequestInfo,
    reference: Reference<'_>,
    response: &Response,
    computed: &Digest,
) -> Result<(), RegistryError> {
    if let Some(named) = reference.digest()
        && named.verify(&response.body) == Some(false)
    {
        return Err(RegistryError::DigestMismatch {
            request: request.clone(),
            expected: named.clone(),
            actual: computed.clone(),
        });
    }
    if let Some(header) = response.header("docker-content-digest") {
        let claimed = Digest::parse(header).map_err(|e| RegistryError::BadResponse {
            request: request.clone(),
            reason: format!("Docker-Content-Digest: {e}"),
        })?;
        if claimed.verify(&response.body) == Some(false) {
            return Err(RegistryError::DigestMismatch {
                request: request.clone(),
                expected: claimed,
                actual: computed.clone(),
            });
        }
    }
    Ok(())
}

fn info(request: &Request<'_>) -> RequestInfo {
    RequestInfo {
        method: request.method.to_string(),
        url: request.url.to_string(),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(
    request: &RequestInfo,
    body: &[u8],
) -> Result<T, RegistryError> {
    serde_json::from_slice(body).map_err(|e| RegistryError::BadResponse {
        request: request.clone(),
        reason: format!("malformed JSON: {e}"),
    })
}

fn base_url(registry: &RegistryAddr, scheme: Scheme) -> Result<Url, RegistryError> {
    let scheme = match scheme {
        Scheme::Https => "https",
        Scheme::Http => "http",
    };
    Url::parse(&format!("{scheme}://{}/", registry.api_host()))
        .map_err(|e| RegistryError::Config(format!("cannot build a URL for registry `{registry}`: {e}")))
}

/// The HTTP client every registry request goes through (TLS settings, timeouts, redirects).
pub fn build_http(options: &ClientOptions) -> Result<reqwest::Client, RegistryError> {
    // Redirects are followed for blob downloads (object storage); reqwest drops the
    // Authorization header whenever a redirect changes host, port or scheme.
    build_http_with(options, reqwest::redirect::Policy::limited(5))
}

/// [`build_http`] with another redirect policy, for checks that must see the registry's own
/// answer (`probe` asks `/v2/` which authentication it wants).
pub fn build_http_with(
    options: &ClientOptions,
    redirect: reqwest::redirect::Policy,
) -> Result<reqwest::Client, RegistryError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("regsweep/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(options.timeout)
        .pool_max_idle_per_host(options.concurrency.max(1))
        .tcp_nodelay(true)
        .redirect(redirect)
        .tls_danger_accept_invalid_certs(options.insecure);
    let mut certs = Vec::new();
    for path in &options.ca_files {
        let pem = std::fs::read(path)
            .map_err(|e| RegistryError::Config(format!("cannot read CA file {}: {e}", path.display())))?;
        let found = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                RegistryError::Config(format!(
                    "CA file {} is not a PEM certificate bundle: {e}",
                    path.display()
                ))
            })?;
        if found.is_empty() {
            return Err(RegistryError::Config(format!(
                "CA file {} holds no PEM certificate",
                path.display()
            )));
        }
        certs.extend(found);
    }
    if !certs.is_empty() && !options.insecure {
        let config = tls::client_config(certs).map_err(RegistryError::Config)?;
        builder = builder.tls_backend_preconfigured(config);
    }
    builder
        .build()
        .map_err(|e| RegistryError::Config(format!("cannot set up the HTTP client: {e}")))
}
