//! The capability probe behind `regsweep probe`: what a registry allows and what regsweep will
//! use there (scheme, authentication, catalog, deletes, tag deletion, referrers, read-only).
//!
//! Every check is chosen to change nothing: a DELETE of a digest that cannot exist, a PUT of a
//! manifest under a digest that its body does not hash to (every registry must refuse it, a
//! read-only one refuses the method itself), a referrers query for a random digest. Only the
//! tag-deletion check writes, through the untag probe `apply` uses: two throw-away tags on a placeholder
//! image, removed again, and only when deletes work.
//!
//! distribution answers a manifest DELETE with 405 in two situations, told apart here:
//! `storage.delete.enabled: false` gives a JSON error `UNSUPPORTED` from the delete handler,
//! while read-only mode (`storage.maintenance.readonly.enabled`) has no DELETE or PUT route at
//! all, so the router answers 405 in plain text, and the manifest PUT gets 405 too.

use serde::Serialize;

use crate::digest::Digest;
use crate::manifest::media_type;
use crate::reference::{RegistryAddr, Repository};
use crate::registry::auth::{Challenge, parse_challenges};
use crate::registry::delete::{self, UntagMethod, ensure_deletes_allowed};
use crate::registry::{Client, ClientOptions, RegistryError, build_http_with};

/// Catalog page sizes tried, largest first; the first one the registry accepts is reported.
/// distribution's limit is `catalog.maxentries` (1000 by default).
const PAGE_SIZES: [usize; 4] = [10_000, 1_000, 100, 10];

/// What the probe found. `None` means the probe could not tell; `notes` say why.
#[derive(Debug, Clone, Serialize)]
pub struct Capabilities {
    pub registry: String,
    /// `https` or `http`: the scheme regsweep reached the registry with.
    pub scheme: String,
    pub auth: AuthKind,
    /// Whether `/v2/_catalog` lists repositories (with the credentials given).
    pub catalog: Option<bool>,
    pub repositories: Option<usize>,
    /// The largest catalog page size (`n`) the registry accepted, of 10000, 1000, 100 and 10.
    pub catalog_page_limit: Option<usize>,
    /// The repository the write checks ran in.
    pub probe_repository: Option<String>,
    pub deletes_enabled: Option<bool>,
    /// Whether OCI `DELETE /v2/<name>/manifests/<tag>` removes one tag and spares the others on
    /// the same digest (then regsweep uses it).
    pub delete_by_tag: Option<bool>,
    /// How regsweep removes a single tag here.
    pub untag_method: Option<UntagMethod>,
    /// Whether the OCI referrers API answers; without it regsweep reads `sha256-<hex>` tags.
    pub referrers_api: Option<bool>,
    pub read_only: Option<bool>,
    pub notes: Vec<String>,
}

/// The authentication the registry asks for on `/v2/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AuthKind {
    /// `/v2/` answered without credentials.
    None,
    Basic {
        realm: Option<String>,
    },
    Bearer {
        realm: String,
        service: Option<String>,
    },
    /// A 401 with no challenge regsweep knows.
    Other {
        challenge: String,
    },
    Unknown {
        reason: String,
    },
}

impl AuthKind {
    /// From the status and `WWW-Authenticate` values of an anonymous `GET /v2/`.
    pub fn from_answer(status: u16, www_authenticate: &[String]) -> Self {
        if status != 401 {
            return if (200..300).contains(&status) {
                AuthKind::None
            } else {
                AuthKind::Unknown {
                    reason: format!("GET /v2/ without credentials answered {status}"),
                }
            };
        }
        let challenges: Vec<Challenge> = www_authenticate
            .iter()
            .filter_map(|v| parse_challenges(v).ok())
            .flatten()
            .collect();
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer")
            && let Some(realm) = bearer.param("realm")
        {
            return AuthKind::Bearer {
                realm: realm.to_owned(),
                service: bearer.param("service").map(str::to_owned),
            };
        }
        if let Some(basic) = challenges.iter().find(|c| c.scheme == "basic") {
            return AuthKind::Basic {
                realm: basic.param("realm").map(str::to_owned),
            };
        }
        AuthKind::Other {
            challenge: www_authenticate.join(", "),
        }
    }
}

/// What a DELETE of a digest that cannot exist tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteAnswer {
    /// 404 (or 202): the delete handler ran.
    Enabled,
    /// 405 with `UNSUPPORTED`: `storage.delete.enabled` is false.
    Disabled,
    /// 405 from the router, without a registry error code: no DELETE route (read-only mode).
    NoRoute,
    Unknown(String),
}

impl DeleteAnswer {
    pub fn classify(result: &Result<(), RegistryError>) -> Self {
        match result {
            Ok(()) => DeleteAnswer::Enabled,
            Err(RegistryError::MethodNotAllowed { errors, .. }) => {
                if errors.iter().any(|e| e.code == "UNSUPPORTED") {
                    DeleteAnswer::Disabled
                } else if errors.iter().all(|e| e.code.is_empty()) {
                    DeleteAnswer::NoRoute
                } else {
                    DeleteAnswer::Unknown(format!("405 with {errors:?}"))
                }
            }
            Err(err) => DeleteAnswer::Unknown(err.to_string()),
        }
    }
}

/// Whether the refused manifest PUT shows a read-only registry: `Some(true)` when the method
/// itself is refused (405, or a 503 that says read-only, as Harbor does), `Some(false)` when
/// the registry looked at the manifest and rejected its content (4xx).
pub fn read_only_from_put(result: &Result<Digest, RegistryError>) -> (Option<bool>, Option<String>) {
    match result {
        Err(RegistryError::MethodNotAllowed { .. }) => (Some(true), None),
        Err(RegistryError::Status { status, errors, .. }) => {
            let says_read_only = errors.iter().any(|e| {
                let text = e.message.to_ascii_lowercase();
                text.contains("read only") || text.contains("read-only") || text.contains("readonly")
            });
            if says_read_only {
                (Some(true), None)
            } else if status.is_client_error() {
                (Some(false), None)
            } else {
                (None, Some(format!("the write check got {status}")))
            }
        }
        Err(RegistryError::NotFound { .. }) => (Some(false), None),
        Err(RegistryError::Denied { .. } | RegistryError::Unauthorized { .. }) => (
            None,
            Some("the credentials may not push, so read-only mode cannot be checked".into()),
        ),
        Err(err) => (None, Some(format!("the write check failed: {err}"))),
        Ok(digest) => (
            Some(false),
            Some(format!(
                "the registry accepted a manifest whose digest did not match ({digest}); it checks less than the spec asks"
            )),
        ),
    }
}

/// Probes `registry` with `options` (credentials included). `repository` is where the checks
/// that need one run; without it the first repository of the catalog is used.
pub async fn probe(
    registry: &RegistryAddr,
    options: &ClientOptions,
    repository: Option<&Repository>,
) -> Result<Capabilities, RegistryError> {
    let client = Client::connect(registry, options.clone()).await?;
    let mut caps = Capabilities {
        registry: registry.host().to_owned(),
        scheme: client.base_url().scheme().to_owned(),
        auth: auth_kind(&client, options).await,
        catalog: None,
        repositories: None,
        catalog_page_limit: None,
        probe_repository: None,
        deletes_enabled: None,
        delete_by_tag: None,
        untag_method: None,
        referrers_api: None,
        read_only: None,
        notes: Vec::new(),
    };
    let catalog = probe_catalog(registry, options, &mut caps).await;
    let repo = repository
        .cloned()
        .or_else(|| catalog.and_then(|repos| repos.into_iter().min()));
    caps.probe_repository = repo.as_ref().map(Repository::to_string);
    let Some(repo) = repo else {
        caps.notes.push(
            "no repository to run the delete, read-only and referrers checks in: name one as REGISTRY/REPO"
                .into(),
        );
        return Ok(caps);
    };
    match client.tags(&repo).await {
        Ok(_) => {}
        Err(err) if err.is_not_found() => {
            caps.notes.push(format!(
                "repository `{repo}` does not exist; the checks need an existing one"
            ));
            return Ok(caps);
        }
        Err(err) => caps
            .notes
            .push(format!("cannot list the tags of `{repo}`: {err}")),
    }
    probe_referrers(&client, &repo, &mut caps).await;
    probe_writes(&client, &repo, &mut caps).await;
    Ok(caps)
}

/// Anonymous `GET /v2/`, to see which authentication the registry asks for. The connected
/// client learns it too but keeps it private; this request carries no credentials.
async fn auth_kind(client: &Client, options: &ClientOptions) -> AuthKind {
    let unknown = |reason: String| AuthKind::Unknown { reason };
    // The connection's TLS settings and timeouts, without redirects: the answer must be the
    // registry's own.
    let http = match build_http_with(options, reqwest::redirect::Policy::none()) {
        Ok(http) => http,
        Err(err) => return unknown(err.to_string()),
    };
    let url = match client.base_url().join("v2/") {
        Ok(url) => url,
        Err(err) => return unknown(err.to_string()),
    };
    match http.get(url).send().await {
        Ok(response) => {
            let challenges: Vec<String> = response
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect();
            AuthKind::from_answer(response.status().as_u16(), &challenges)
        }
        Err(err) => unknown(format!("GET /v2/ failed: {err}")),
    }
}

/// Lists the catalog with decreasing page sizes until the registry accepts one; returns the
/// repositories when it could list them.
async fn probe_catalog(
    registry: &RegistryAddr,
    options: &ClientOptions,
    caps: &mut Capabilities,
) -> Option<Vec<Repository>> {
    for size in PAGE_SIZES {
        let paged = ClientOptions {
            catalog_page_size: Some(size),
            ..options.clone()
        };
        let result = match Client::connect(registry, paged).await {
            Ok(client) => client.catalog().await,
            Err(err) => Err(err),
        };
        match result {
            Ok(repos) => {
                caps.catalog = Some(true);
                caps.catalog_page_limit = Some(size);
                caps.repositories = Some(repos.len());
                return Some(repos);
            }
            // distribution: 400 PAGINATION_NUMBER_INVALID when n is over catalog.maxentries.
            Err(RegistryError::Status { status, .. }) if status.as_u16() == 400 => continue,
            Err(err @ (RegistryError::NotFound { .. } | RegistryError::MethodNotAllowed { .. })) => {
                caps.catalog = Some(false);
                caps.notes.push(format!("no catalog: {err}"));
                return None;
            }
            Err(err @ (RegistryError::Denied { .. } | RegistryError::Unauthorized { .. })) => {
                caps.catalog = Some(false);
                caps.notes
                    .push(format!("the catalog is not open to these credentials: {err}"));
                return None;
            }
            Err(err) => {
                caps.notes.push(format!("cannot list the catalog: {err}"));
                return None;
            }
        }
    }
    caps.notes
        .push(format!("the catalog refused every page size of {PAGE_SIZES:?}"));
    None
}

async fn probe_referrers(client: &Client, repo: &Repository, caps: &mut Capabilities) {
    // The spec forbids a 404 from a registry with the API for any digest in an existing
    // repository, so a random one is enough.
    let nothing = Digest::sha256(format!("regsweep-probe-{}", fastrand::u64(..)).as_bytes());
    match client.referrers(repo, &nothing).await {
        Ok(found) => caps.referrers_api = Some(found.is_some()),
        Err(err) => caps.notes.push(format!("referrers check failed: {err}")),
    }
}

async fn probe_writes(client: &Client, repo: &Repository, caps: &mut Capabilities) {
    let delete = DeleteAnswer::classify(&ensure_deletes_allowed(client, repo).await);
    // A manifest PUT by a digest its body does not hash to: refused by content on a writable
    // registry (400), refused by method on a read-only one (405). Nothing is stored either way.
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","probe":"{}"}}"#,
        media_type::OCI_MANIFEST,
        fastrand::u64(..)
    );
    let wrong = Digest::sha256(format!("not {body}").as_bytes());
    let put = client
        .put_manifest(repo, &wrong, media_type::OCI_MANIFEST, body.into_bytes())
        .await;
    let (read_only, note) = read_only_from_put(&put);
    caps.read_only = read_only;
    caps.notes.extend(note);
    match delete {
        DeleteAnswer::Enabled => caps.deletes_enabled = Some(true),
        DeleteAnswer::Disabled => caps.deletes_enabled = Some(false),
        DeleteAnswer::NoRoute if read_only == Some(true) => caps.notes.push(
            "read-only: nothing can be deleted now; whether deletes are enabled behind it is not visible"
                .into(),
        ),
        DeleteAnswer::NoRoute => caps.deletes_enabled = Some(false),
        DeleteAnswer::Unknown(why) => caps.notes.push(format!("delete check: {why}")),
    }
    if caps.deletes_enabled != Some(true) {
        return;
    }
    match delete::probe(client, repo).await {
        Ok(method) => {
            caps.untag_method = Some(method);
            caps.delete_by_tag = Some(method == UntagMethod::DeleteByTag);
        }
        Err(err) => caps.notes.push(format!("tag deletion check failed: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::*;
    use crate::registry::{ApiError, RequestInfo};

    fn request() -> RequestInfo {
        RequestInfo {
            method: "DELETE".into(),
            url: "http://127.0.0.1:5000/v2/a/manifests/sha256:00".into(),
        }
    }

    fn error(code: &str, message: &str) -> ApiError {
        ApiError {
            code: code.into(),
            message: message.into(),
            detail: None,
        }
    }

    fn not_allowed(errors: Vec<ApiError>) -> RegistryError {
        RegistryError::MethodNotAllowed {
            request: request(),
            errors,
            hint: String::new(),
        }
    }

    fn status(code: u16, errors: Vec<ApiError>) -> RegistryError {
        RegistryError::Status {
            request: request(),
            status: StatusCode::from_u16(code).unwrap(),
            errors,
            attempts: 1,
        }
    }

    #[test]
    fn auth_kind_from_challenges() {
        assert_eq!(AuthKind::from_answer(200, &[]), AuthKind::None);
        assert_eq!(
            AuthKind::from_answer(401, &[r#"Basic realm="Registry Realm""#.into()]),
            AuthKind::Basic {
                realm: Some("Registry Realm".into())
            }
        );
        assert_eq!(
            AuthKind::from_answer(
                401,
                &[r#"Bearer realm="https://auth.example/token",service="reg""#.into()]
            ),
            AuthKind::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("reg".into())
            }
        );
        // Bearer wins when both are offered, as the client does.
        assert!(matches!(
            AuthKind::from_answer(
                401,
                &["Basic realm=x".into(), r#"Bearer realm="https://a/t""#.into()]
            ),
            AuthKind::Bearer { .. }
        ));
        assert!(matches!(
            AuthKind::from_answer(401, &["Negotiate".into()]),
            AuthKind::Other { .. }
        ));
        assert!(matches!(
            AuthKind::from_answer(500, &[]),
            AuthKind::Unknown { .. }
        ));
    }

    #[test]
    fn delete_answers_tell_disabled_from_no_route() {
        assert_eq!(DeleteAnswer::classify(&Ok(())), DeleteAnswer::Enabled);
        let disabled = not_allowed(vec![error("UNSUPPORTED", "The operation is unsupported.")]);
        assert_eq!(DeleteAnswer::classify(&Err(disabled)), DeleteAnswer::Disabled);
        // The router's plain-text answer becomes an error without a code.
        let no_route = not_allowed(vec![error("", "Method Not Allowed")]);
        assert_eq!(DeleteAnswer::classify(&Err(no_route)), DeleteAnswer::NoRoute);
        assert_eq!(
            DeleteAnswer::classify(&Err(not_allowed(vec![]))),
            DeleteAnswer::NoRoute
        );
        assert!(matches!(
            DeleteAnswer::classify(&Err(status(500, vec![]))),
            DeleteAnswer::Unknown(_)
        ));
    }

    #[test]
    fn read_only_from_the_refused_put() {
        assert_eq!(read_only_from_put(&Err(not_allowed(vec![]))).0, Some(true));
        let invalid = status(
            400,
            vec![error("DIGEST_INVALID", "provided digest did not match")],
        );
        assert_eq!(read_only_from_put(&Err(invalid)).0, Some(false));
        let harbor = status(503, vec![error("", "The system is in read only mode.")]);
        assert_eq!(read_only_from_put(&Err(harbor)).0, Some(true));
        let (unknown, note) = read_only_from_put(&Err(status(502, vec![])));
        assert_eq!(unknown, None);
        assert!(note.unwrap().contains("502"));
        let denied = RegistryError::Denied {
            request: request(),
            errors: vec![],
        };
        let (unknown, note) = read_only_from_put(&Err(denied));
        assert_eq!(unknown, None);
        assert!(note.unwrap().contains("push"));
    }
}
