//! The HTTP layer under the registry client: one keep-alive connection pool per registry, a
//! semaphore that bounds requests in flight, authentication (anonymous, basic, bearer tokens
//! with exactly the scope each request needs), retries with exponential backoff and jitter
//! (honouring `Retry-After`), bounded response bodies, and the mapping from HTTP statuses to
//! [`RegistryError`]s.
//!
//! Credentials go only to the registry's own origin (every URL is built from `base`, `Link`
//! targets are checked in `link.rs`, and reqwest drops `Authorization` on redirects to another
//! host, port or scheme) and to the token realm the registry names, under the rules of
//! [`super::auth::may_send_credentials`]. Basic credentials go over plain HTTP only to loopback, unless
//! insecure auth is allowed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use tokio::sync::Semaphore;

use super::auth::{
    Challenge, Credentials, Scope, may_send_basic, may_send_credentials, merge_scopes, parse_challenges,
    scope_list,
};
use super::error::{Missing, RegistryError, RequestInfo, parse_error_body};
use super::http::{self, AttemptError, Exchange, Repeat, RetryPolicy, describe_reqwest_error};
use super::token::{BearerRealm, Token, TokenClient, TokenError};

/// How requests to this registry are authenticated at the moment. It starts anonymous; the first
/// 401 says which scheme the registry wants, and from then on every request carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AuthMode {
    Anonymous,
    Basic,
    Bearer(Arc<BearerRealm>),
}

/// The authentication one attempt carried.
enum Auth {
    None,
    Basic,
    Bearer {
        realm: Arc<BearerRealm>,
        scopes: Vec<Scope>,
        token: Token,
    },
}

/// What to do after a 401.
enum Reaction {
    /// Send the request again (with what the 401 taught).
    Retry,
    /// Give up with this explanation.
    Fail(String),
    /// Give up with the generic explanation of a 401.
    Report,
}

/// Per-request authentication state across retries.
struct AuthProgress {
    /// The scopes to ask a token for: the request's own, plus what the registry asked for.
    scopes: Vec<Scope>,
    /// The registry answered a bearer request with a basic challenge (Harbor does for some
    /// endpoints): use basic credentials for this request.
    force_basic: bool,
    /// A refused token was already replaced once.
    token_replaced: bool,
    /// 401s reacted to; bounded so two confused servers cannot loop.
    retries: u32,
}

/// At most this many 401s are answered with a new attempt within one request: switch to bearer,
/// widen the scope, replace a refused token.
const MAX_AUTH_RETRIES: u32 = 3;

/// A request to send: everything needed to build it again for a retry.
pub struct Request<'a> {
    pub method: Method,
    pub url: Url,
    pub accept: Option<&'a str>,
    /// Content type and bytes.
    pub body: Option<(String, Vec<u8>)>,
    /// The access this request needs; bearer-token auth asks for exactly this.
    pub scope: Scope,
    /// What a 404 means for this request.
    pub missing: Missing,
    /// Largest body accepted.
    pub max_body: usize,
    /// Whether sending it twice is harmless, which decides what failures are retried.
    pub repeat: Repeat,
}

/// A successful (2xx) response with its body read.
pub struct Response {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub url: Url,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn header_values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> {
        self.headers.get_all(name).iter().filter_map(|v| v.to_str().ok())
    }
}

pub struct Transport {
    http: reqwest::Client,
    pub base: Url,
    host: String,
    limiter: Semaphore,
    retry: RetryPolicy,
    credentials: Option<Credentials>,
    /// Send credentials over plain HTTP to hosts other than loopback (`--allow-insecure-auth`).
    allow_insecure_auth: bool,
    mode: RwLock<AuthMode>,
    tokens: TokenClient,
    /// Scopes the registry asked for beyond a request's own (an `insufficient_scope` challenge
    /// naming more actions, as Quay does for DELETE), keyed by the request's scope, so that later
    /// requests ask for them at once.
    scope_upgrades: Mutex<HashMap<Scope, Vec<Scope>>>,
    /// HTTP requests sent (every attempt counts), for `-v` summaries and benchmarks.
    sent: AtomicU64,
}

impl Transport {
    pub fn new(
        http: reqwest::Client,
        base: Url,
        concurrency: usize,
        retry: RetryPolicy,
        credentials: Option<Credentials>,
        allow_insecure_auth: bool,
    ) -> Self {
        let host = base.host_str().unwrap_or("?").to_owned();
        let host = match base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        let tokens = TokenClient::new(http.clone(), retry, credentials.as_ref());
        Self {
            http,
            base,
            host,
            limiter: Semaphore::new(concurrency.max(1)),
            retry,
            credentials,
            allow_insecure_auth,
            mode: RwLock::new(AuthMode::Anonymous),
            tokens,
            scope_upgrades: Mutex::new(HashMap::new()),
            sent: AtomicU64::new(0),
        }
    }

    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn url(&self, path: &str) -> Url {
        // `path` is built from validated names, tags and digests, which need no escaping.
        self.base.join(path).expect("registry paths are valid URL paths")
    }

    fn mode(&self) -> AuthMode {
        self.mode.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_mode(&self, mode: AuthMode) {
        *self.mode.write().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    /// Whether basic credentials may go to the registry itself: over HTTPS, to loopback, or
    /// when insecure auth was allowed.
    fn may_send_basic(&self) -> bool {
        may_send_basic(&self.base, self.allow_insecure_auth)
    }

    /// Sends a request, retrying transient failures, and returns the 2xx response or the error.
    pub async fn send(&self, req: &Request<'_>) -> Result<Response, RegistryError> {
        self.send_with_attempts(req, self.retry.max_attempts).await
    }

    /// Like [`Transport::send`] with a different bound on attempts (1 = no retries).
    pub async fn send_with_attempts(
        &self,
        req: &Request<'_>,
        max_attempts: u32,
    ) -> Result<Response, RegistryError> {
        let info = RequestInfo {
            method: req.method.to_string(),
            url: req.url.to_string(),
        };
        let mut progress = AuthProgress {
            scopes: self.scopes_for(&req.scope),
            force_basic: false,
            token_replaced: false,
            retries: 0,
        };
        loop {
            let auth =
                self.authorization(req, &progress)
                    .await
                    .map_err(|err| RegistryError::Unauthorized {
                        request: info.clone(),
                        errors: Vec::new(),
                        hint: err.to_string(),
                    })?;
            let started = Instant::now();
            let outcome =
                http::with_retries(&self.retry, max_attempts, req.repeat, &info.to_string(), || {
                    self.attempt(req, &auth)
                })
                .await;
            let attempts = outcome.attempts;
            let exchange = match outcome.result {
                Ok(exchange) => exchange,
                Err(AttemptError::TooLarge) => {
                    return Err(RegistryError::TooLarge {
                        request: info,
                        limit: req.max_body,
                    });
                }
                Err(AttemptError::Transport(err)) => {
                    let cause = describe_reqwest_error(&err);
                    return Err(RegistryError::Connect {
                        host: self.host.clone(),
                        request: info,
                        certificate: http::is_certificate_error(&cause),
                        cause: if attempts > 1 {
                            format!("{cause} (after {attempts} attempts)")
                        } else {
                            cause
                        },
                    });
                }
            };
            let Exchange {
                status,
                headers,
                body,
                url,
            } = exchange;
            tracing::debug!(method = %req.method, url = %req.url, status = status.as_u16(), attempts, elapsed_ms = started.elapsed().as_millis() as u64, "request");
            if status.is_success() {
                return Ok(Response { headers, body, url });
            }
            // Parsed once per response, so a malformed header is warned about once.
            let challenges = if status == StatusCode::UNAUTHORIZED {
                challenges(&headers)
            } else {
                Vec::new()
            };
            if status == StatusCode::UNAUTHORIZED && progress.retries < MAX_AUTH_RETRIES {
                match self.on_unauthorized(req, &challenges, &auth, &mut progress).await {
                    Reaction::Retry => {
                        progress.retries += 1;
                        continue;
                    }
                    Reaction::Fail(hint) => {
                        return Err(RegistryError::Unauthorized {
                            request: info,
                            errors: parse_error_body(&body),
                            hint,
                        });
                    }
                    Reaction::Report => {}
                }
            }
            if status == StatusCode::NOT_FOUND && req.method == Method::DELETE && outcome.earlier_answer_lost
            {
                // An earlier attempt went out and its answer was lost; the 404 of the repeat
                // says the thing is gone, which is what was asked.
                tracing::info!(method = %req.method, url = %req.url, "already gone after an answer was lost: taking the earlier attempt as done");
                return Ok(Response { headers, body, url });
            }
            return Err(self.status_error(
                req,
                info,
                Answer {
                    status,
                    headers: &headers,
                    challenges: &challenges,
                    body: &body,
                },
                attempts,
                &auth,
            ));
        }
    }

    /// The scopes to ask for on behalf of a request with `scope`.
    fn scopes_for(&self, scope: &Scope) -> Vec<Scope> {
        let upgrades = self.scope_upgrades.lock().unwrap_or_else(|e| e.into_inner());
        upgrades
            .get(scope)
            .cloned()
            .unwrap_or_else(|| vec![scope.clone()])
    }

    /// `/v2/` only tells whether the registry is there and which authentication it wants; it is
    /// never worth a token (and a token for the probe's scope may not even be grantable).
    fn is_probe(req: &Request<'_>) -> bool {
        req.url.path() == "/v2/"
    }

    /// The authentication for the next attempt, fetching a bearer token when needed.
    async fn authorization(&self, req: &Request<'_>, progress: &AuthProgress) -> Result<Auth, TokenError> {
        if progress.force_basic {
            return Ok(Auth::Basic);
        }
        match self.mode() {
            AuthMode::Anonymous => Ok(Auth::None),
            AuthMode::Basic => Ok(Auth::Basic),
            AuthMode::Bearer(_) if Self::is_probe(req) => Ok(Auth::None),
            AuthMode::Bearer(realm) => {
                let credentials = match &self.credentials {
                    Some(creds)
                        if may_send_credentials(&self.base, &realm.realm, self.allow_insecure_auth) =>
                    {
                        Some(creds)
                    }
                    Some(_) => {
                        // Falling back to anonymous would hide why access is missing; say it.
                        return Err(TokenError::InsecureRealm {
                            realm: realm.realm.to_string(),
                            registry: self.base.to_string(),
                        });
                    }
                    None => None,
                };
                let token = self.tokens.token(&realm, &progress.scopes, credentials).await?;
                Ok(Auth::Bearer {
                    realm,
                    scopes: progress.scopes.clone(),
                    token,
                })
            }
        }
    }

    async fn attempt(&self, req: &Request<'_>, auth: &Auth) -> Result<Exchange, AttemptError> {
        let _permit = self
            .limiter
            .acquire()
            .await
            .expect("the semaphore is never closed");
        self.sent.fetch_add(1, Ordering::Relaxed);
        let mut builder = self.http.request(req.method.clone(), req.url.clone());
        if let Some(accept) = req.accept {
            builder = builder.header(ACCEPT, accept);
        }
        if let Some((content_type, body)) = &req.body {
            builder = builder
                .header(CONTENT_TYPE, content_type.as_str())
                .body(body.clone());
        }
        match auth {
            Auth::None => {}
            Auth::Basic => {
                if let Some(creds) = &self.credentials {
                    // reqwest marks the header sensitive, so it is never logged, and drops it on
                    // a redirect to another host.
                    builder = builder.basic_auth(&creds.username, Some(creds.password.expose()));
                }
            }
            Auth::Bearer { token, .. } => {
                builder = builder.bearer_auth(token.value.expose());
            }
        }
        http::exchange(builder, req.max_body).await
    }

    /// Reacts to a 401: learns the scheme the registry wants, widens a token's scope when the
    /// registry asks for more, replaces a refused token once, or explains why it gives up.
    async fn on_unauthorized(
        &self,
        req: &Request<'_>,
        challenges: &[Challenge],
        auth: &Auth,
        progress: &mut AuthProgress,
    ) -> Reaction {
        let bearer = challenges.iter().find(|c| c.scheme == "bearer");
        let basic = challenges.iter().any(|c| c.scheme == "basic");
        let have_creds = self.credentials.is_some();
        let basic_usable = basic && self.credentials.as_ref().is_some_and(|c| !c.is_identity_token());
        match auth {
            Auth::None => {
                if let Some(challenge) = bearer {
                    let realm = match BearerRealm::from_challenge(
                        challenge.param("realm"),
                        challenge.param("service"),
                    ) {
                        Ok(realm) => realm,
                        Err(err) => return Reaction::Fail(err.to_string()),
                    };
                    tracing::debug!(host = %self.host, realm = %realm, "registry asks for a bearer token");
                    self.set_mode(AuthMode::Bearer(Arc::new(realm)));
                    // The probe only needed to learn the scheme.
                    return if Self::is_probe(req) {
                        Reaction::Report
                    } else {
                        Reaction::Retry
                    };
                }
                if basic_usable {
                    if !self.may_send_basic() {
                        return Reaction::Fail(self.insecure_basic_hint());
                    }
                    tracing::debug!(host = %self.host, "registry asks for basic authentication");
                    self.set_mode(AuthMode::Basic);
                    return Reaction::Retry;
                }
                Reaction::Report
            }
            Auth::Basic => {
                if let Some(challenge) = bearer
                    && !progress.force_basic
                    && let Ok(realm) =
                        BearerRealm::from_challenge(challenge.param("realm"), challenge.param("service"))
                {
                    // The registry changed its mind (or sits behind a proxy that does tokens).
                    self.set_mode(AuthMode::Bearer(Arc::new(realm)));
                    return Reaction::Retry;
                }
                Reaction::Report
            }
            Auth::Bearer { realm, scopes, token } => {
                let Some(challenge) = bearer else {
                    if basic_usable && !progress.force_basic && self.may_send_basic() {
                        // Harbor answers some endpoints with a basic challenge even to bearer
                        // requests; basic credentials work there.
                        progress.force_basic = true;
                        return Reaction::Retry;
                    }
                    return Reaction::Report;
                };
                if challenge.param("error") == Some("insufficient_scope") {
                    let wanted = challenge
                        .param("scope")
                        .map(|s| {
                            s.split_whitespace()
                                .filter_map(|one| Scope::parse(one).ok())
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default();
                    let mut widened = progress.scopes.clone();
                    if merge_scopes(&mut widened, &wanted) {
                        tracing::debug!(host = %self.host, asked = %scope_list(&progress.scopes), wanted = %scope_list(&widened), "registry wants a wider scope");
                        self.scope_upgrades
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(req.scope.clone(), widened.clone());
                        progress.scopes = widened;
                        return Reaction::Retry;
                    }
                    return Reaction::Fail(self.missing_permission_hint(realm, scopes, token));
                }
                let offered =
                    BearerRealm::from_challenge(challenge.param("realm"), challenge.param("service"));
                if let Ok(offered) = offered
                    && offered != **realm
                {
                    // Tokens now come from elsewhere (the registry was reconfigured).
                    self.set_mode(AuthMode::Bearer(Arc::new(offered)));
                    return Reaction::Retry;
                }
                // The token was refused as such (expired, revoked, signed by a key the registry
                // does not trust): fetch a new one, once.
                self.tokens.invalidate(realm, scopes, &token.value).await;
                if !progress.token_replaced {
                    progress.token_replaced = true;
                    tracing::debug!(host = %self.host, realm = %realm, "registry refused a bearer token, fetching a new one");
                    return Reaction::Retry;
                }
                let error = challenge.param("error").unwrap_or("none");
                Reaction::Fail(format!(
                    "the registry refuses the tokens issued by {realm} (error: {error}) even when new{}; \
                     the registry's token settings (issuer, service, trusted certificates) probably do not \
                     match the token server",
                    if have_creds {
                        ""
                    } else {
                        " (they were requested anonymously)"
                    }
                ))
            }
        }
    }

    /// Explains an `insufficient_scope` refusal: which permission is missing, for whom, and what
    /// the token server did grant.
    fn missing_permission_hint(&self, realm: &BearerRealm, asked: &[Scope], token: &Token) -> String {
        let who = match &self.credentials {
            Some(creds) => creds.describe(),
            None => "anonymous access".to_owned(),
        };
        let advice = if self.credentials.is_none() {
            "; log in with `docker login` or `podman login`, or pass --username with --password-stdin"
        } else {
            "; ask the registry's administrator for this permission"
        };
        match &token.granted {
            Some(granted) => {
                let missing: Vec<String> = asked
                    .iter()
                    .flat_map(|scope| {
                        scope
                            .missing_from(granted)
                            .into_iter()
                            .map(move |action| format!("{}:{}:{action}", scope.resource_type, scope.name))
                    })
                    .collect();
                let granted_text = if granted.is_empty() {
                    "nothing".to_owned()
                } else {
                    format!("only `{}`", scope_list(granted))
                };
                if missing.is_empty() {
                    format!(
                        "the registry says the token lacks permission for `{}`, although the token server \
                         {realm} granted `{}`{advice}",
                        scope_list(asked),
                        scope_list(granted)
                    )
                } else {
                    format!(
                        "{who} lacks permission `{}`: the token server {realm} granted {granted_text}{advice}",
                        missing.join("`, `")
                    )
                }
            }
            None => format!(
                "{who} lacks permission for `{}` (the registry answered insufficient_scope to the token from \
                 {realm}){advice}",
                scope_list(asked)
            ),
        }
    }

    fn insecure_basic_hint(&self) -> String {
        format!(
            "refusing to send credentials over plain HTTP to {}; use HTTPS, or pass --allow-insecure-auth \
             if this network is trusted",
            self.host
        )
    }

    fn status_error(
        &self,
        req: &Request<'_>,
        request: RequestInfo,
        answer: Answer<'_>,
        attempts: u32,
        auth: &Auth,
    ) -> RegistryError {
        let Answer {
            status,
            headers,
            challenges,
            body,
        } = answer;
        let errors = parse_error_body(body);
        match status {
            StatusCode::UNAUTHORIZED => RegistryError::Unauthorized {
                request,
                errors,
                hint: self.unauthorized_hint(challenges, &req.scope, auth),
            },
            StatusCode::FORBIDDEN => RegistryError::Denied { request, errors },
            StatusCode::NOT_FOUND => RegistryError::NotFound {
                request,
                missing: Box::new(refine_missing(&req.missing, &errors)),
                errors,
            },
            StatusCode::METHOD_NOT_ALLOWED => {
                let hint = method_not_allowed_hint(&req.method, headers, &errors);
                RegistryError::MethodNotAllowed {
                    request,
                    errors,
                    hint,
                }
            }
            _ => RegistryError::Status {
                request,
                status,
                errors,
                attempts,
            },
        }
    }

    fn unauthorized_hint(&self, challenges: &[Challenge], scope: &Scope, auth: &Auth) -> String {
        let basic = challenges.iter().any(|c| c.scheme == "basic");
        match (auth, &self.credentials) {
            (Auth::Bearer { realm, .. }, _) => format!(
                "the registry refused the bearer token from {realm} for `{scope}` and offered nothing else"
            ),
            (Auth::Basic, Some(creds)) => format!(
                "the registry rejected the credentials of {}; check the username and password",
                creds.describe()
            ),
            (_, None) if basic || challenges.iter().any(|c| c.scheme == "bearer") => {
                "the registry requires authentication: log in with `docker login` or `podman login`, pass \
                 --username NAME with --password-stdin, or set REGSWEEP_USERNAME and REGSWEEP_PASSWORD"
                    .to_owned()
            }
            (_, Some(creds)) if basic && creds.is_identity_token() => {
                "the registry asks for basic authentication, but the credentials found are an identity token, \
                 which only works with token authentication; pass --username with --password-stdin"
                    .to_owned()
            }
            (_, None) => "the registry requires authentication and names no scheme regsweep knows \
                          (no Basic or Bearer challenge)"
                .to_owned(),
            (_, Some(_)) => {
                "the registry refused the request and offered neither basic nor bearer authentication".to_owned()
            }
        }
    }
}

/// A non-2xx answer, for building its error.
struct Answer<'a> {
    status: StatusCode,
    headers: &'a HeaderMap,
    challenges: &'a [Challenge],
    body: &'a [u8],
}

/// The `WWW-Authenticate` challenges of a response; a malformed header is warned about and
/// skipped.
fn challenges(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| match parse_challenges(v) {
            Ok(c) => Some(c),
            Err(err) => {
                tracing::warn!("{err}");
                None
            }
        })
        .flatten()
        .collect()
}

fn refine_missing(missing: &Missing, errors: &[super::error::ApiError]) -> Missing {
    // distribution answers NAME_UNKNOWN when the whole repository is missing.
    match missing {
        Missing::Manifest { repository, .. } | Missing::Blob { repository, .. }
            if errors.iter().any(|e| e.code == "NAME_UNKNOWN") =>
        {
            Missing::Repository(repository.clone())
        }
        other => other.clone(),
    }
}

fn method_not_allowed_hint(
    method: &Method,
    headers: &HeaderMap,
    errors: &[super::error::ApiError],
) -> String {
    let allow = headers.get("allow").and_then(|v| v.to_str().ok()).unwrap_or("");
    let read_only = !allow.is_empty() && !allow.contains(method.as_str());
    if read_only || errors.is_empty() {
        return format!(
            "the registry does not allow {method} here{}; it is probably in read-only mode \
             (storage.maintenance.readonly.enabled)",
            if allow.is_empty() {
                String::new()
            } else {
                format!(" (it allows {allow})")
            }
        );
    }
    if *method == Method::DELETE {
        "deletes are disabled on this registry: set storage.delete.enabled: true in its config.yml \
         (or REGISTRY_STORAGE_DELETE_ENABLED=true) and restart it"
            .to_owned()
    } else {
        format!("the registry does not support {method} on this endpoint")
    }
}
