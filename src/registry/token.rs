//! Bearer tokens (distribution's `spec/auth/token.md` and `oauth.md`): fetching them from the
//! realm a registry names, caching them by realm, service and scope, and renewing them before
//! they expire.
//!
//! Tokens are fetched with `GET realm?service=…&scope=…` (HTTP basic credentials when there are
//! any, anonymous otherwise) or, when an identity token is held, with the OAuth2 `POST` form and
//! `grant_type=refresh_token`. Each cache key has its own async mutex, so many concurrent
//! requests that need the same scope wait for one fetch instead of all fetching at once. What the
//! server granted is read from the token itself (the JWT's `access` claim) or from the OAuth2
//! response's `scope`, so a refused request can name the permission that is missing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use super::auth::{Credentials, Scope, Secret, base64_decode, scope_list};
use super::error::{Advice, parse_error_body};
use super::http::{self, AttemptError, Repeat, RetryPolicy, describe_reqwest_error};

/// Lifetime assumed when the token server does not say (token.md: "defaults to 60 seconds").
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// A token is renewed when less than this much (or a quarter of its lifetime, if less) is left,
/// so a request never leaves with a token that expires on the way.
const MAX_RENEW_MARGIN: Duration = Duration::from_secs(30);
/// Largest token response read (JWTs with many scopes run to a few KiB).
const MAX_TOKEN_RESPONSE: usize = 1024 * 1024;
/// `client_id` sent with OAuth2 requests (required by oauth.md).
const CLIENT_ID: &str = concat!("regsweep/", env!("CARGO_PKG_VERSION"));

/// Where tokens for a registry come from: a challenge's `realm` and `service`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BearerRealm {
    pub realm: Url,
    pub service: Option<String>,
}

impl BearerRealm {
    /// Builds the realm from a `Bearer` challenge. The realm must be an absolute http(s) URL
    /// without user info (a URL with a password in it would be sent on by any HTTP client).
    pub fn from_challenge(realm: Option<&str>, service: Option<&str>) -> Result<Self, TokenError> {
        let text = realm.ok_or_else(|| TokenError::BadRealm {
            realm: String::new(),
            reason: "the Bearer challenge has no realm".to_owned(),
        })?;
        let shown: String = text.chars().take(200).collect();
        let bad = |reason: &str| TokenError::BadRealm {
            realm: shown.clone(),
            reason: format!("realm `{shown}`: {reason}"),
        };
        let url = Url::parse(text).map_err(|e| bad(&format!("not an absolute URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("only http:// and https:// token realms are supported"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            // Name the realm without what may be a password.
            let mut shown = url.clone();
            let _ = shown.set_username("");
            let _ = shown.set_password(None);
            return Err(TokenError::BadRealm {
                realm: shown.to_string(),
                reason: format!(
                    "realm `{shown}`: the URL holds user information, which is never sent anywhere"
                ),
            });
        }
        if url.host_str().is_none() {
            return Err(bad("the realm URL has no host"));
        }
        Ok(Self {
            realm: url,
            service: service.filter(|s| !s.is_empty()).map(str::to_owned),
        })
    }
}

impl std::fmt::Display for BearerRealm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.realm.as_str())?;
        if let Some(service) = &self.service {
            write!(f, " (service `{service}`)")?;
        }
        Ok(())
    }
}

/// A bearer token with what is known about it.
#[derive(Debug, Clone)]
pub struct Token {
    pub value: Secret,
    /// When the token expires (local clock).
    pub expires_at: Instant,
    /// When to fetch a new one instead of using this one.
    pub renew_at: Instant,
    /// What the server granted, when the token or the response says (a JWT's `access` claim, an
    /// OAuth2 response's `scope`); `None` for opaque tokens.
    pub granted: Option<Vec<Scope>>,
}

impl Token {
    fn fresh(&self, now: Instant) -> bool {
        now < self.renew_at
    }
}

/// Why no token could be obtained. Messages name the token server and what to do, never a
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the registry's bearer challenge is unusable: {reason}")]
    BadRealm { realm: String, reason: String },
    #[error(
        "refusing to send credentials to the token server {realm} over plain HTTP (the registry is {registry}); \
         use HTTPS, or allow insecure authentication if this network is trusted"
    )]
    InsecureRealm { realm: String, registry: String },
    #[error("the token server {realm} rejected {who} ({status}{detail}){advice}")]
    Rejected {
        realm: String,
        who: String,
        status: u16,
        detail: String,
        advice: &'static str,
    },
    #[error("the token server {realm} refused {who} access to `{scope}` ({status}{detail})")]
    Denied {
        realm: String,
        who: String,
        scope: String,
        status: u16,
        detail: String,
    },
    #[error("the token server {realm} answered {status}{detail}{}", retried(*.attempts))]
    Status {
        realm: String,
        status: u16,
        detail: String,
        attempts: u32,
    },
    #[error("cannot reach the token server {realm}: {cause}")]
    Connect { realm: String, cause: String },
    #[error("the token server {realm} sent an unusable response: {reason}")]
    Malformed { realm: String, reason: String },
}

impl TokenError {
    /// What the user can do about it, beyond the message.
    pub fn advice(&self) -> Option<Advice> {
        match self {
            TokenError::InsecureRealm { .. } => Some(Advice::AllowInsecureAuth),
            TokenError::Rejected { who, .. } if who == ANONYMOUS => Some(Advice::LogIn),
            _ => None,
        }
    }
}

/// How an anonymous requester is named in messages.
pub(super) const ANONYMOUS: &str = "anonymous access";

fn retried(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Token>>>;

/// Cached tokens kept at most (about): one per repository scope, so a scan of 20,000
/// repositories would otherwise hold 20,000 tokens (a JWT is 1-2 KB) long after it needs them.
const SLOTS_KEPT: usize = 256;

/// Makes room in a full token cache: slots nobody is using (only the cache holds them) whose
/// token is missing or due for renewal go first; if that is not enough, the unused ones due
/// soonest, until half the cache is free. A slot in use is never dropped, so concurrent
/// requests for one scope still share one fetch.
fn evict(slots: &mut HashMap<(BearerRealm, String), Slot>, now: Instant) {
    let unused_renewal = |slot: &Slot| -> Option<Option<Instant>> {
        if Arc::strong_count(slot) > 1 {
            return None;
        }
        let token = slot.try_lock().ok()?;
        Some(token.as_ref().filter(|t| t.fresh(now)).map(|t| t.renew_at))
    };
    slots.retain(|_, slot| !matches!(unused_renewal(slot), Some(None)));
    if slots.len() < SLOTS_KEPT {
        return;
    }
    let mut unused: Vec<((BearerRealm, String), Instant)> = slots
        .iter()
        .filter_map(|(key, slot)| Some((key.clone(), unused_renewal(slot)??)))
        .collect();
    unused.sort_by_key(|(_, renew_at)| *renew_at);
    let excess = slots.len().saturating_sub(SLOTS_KEPT / 2);
    for (key, _) in unused.into_iter().take(excess) {
        slots.remove(&key);
    }
}

/// Fetches and caches bearer tokens for one registry client.
pub struct TokenClient {
    http: reqwest::Client,
    retry: RetryPolicy,
    /// Cache slots by (realm, service, sorted scope list).
    slots: Mutex<HashMap<(BearerRealm, String), Slot>>,
    /// The identity token in use; a server may hand out a new one with each refresh.
    refresh_token: Mutex<Option<Secret>>,
}

impl TokenClient {
    pub fn new(http: reqwest::Client, retry: RetryPolicy, credentials: Option<&Credentials>) -> Self {
        Self {
            http,
            retry,
            slots: Mutex::new(HashMap::new()),
            refresh_token: Mutex::new(
                credentials
                    .filter(|c| c.is_identity_token())
                    .map(|c| c.password.clone()),
            ),
        }
    }

    fn slot(&self, realm: &BearerRealm, scopes: &[Scope]) -> Slot {
        let key = (realm.clone(), cache_key(scopes));
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() >= SLOTS_KEPT && !slots.contains_key(&key) {
            evict(&mut slots, Instant::now());
        }
        slots.entry(key).or_default().clone()
    }

    /// A token for `scopes` from `realm`: the cached one while it is fresh, else a new one.
    /// `credentials` are sent to the token server (the caller has checked that they may be).
    pub async fn token(
        &self,
        realm: &BearerRealm,
        scopes: &[Scope],
        credentials: Option<&Credentials>,
    ) -> Result<Token, TokenError> {
        let slot = self.slot(realm, scopes);
        // Holding the slot's lock while fetching makes concurrent requests for the same scope
        // wait for this fetch rather than start their own.
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref()
            && token.fresh(Instant::now())
        {
            return Ok(token.clone());
        }
        let token = self.fetch(realm, scopes, credentials).await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Drops the cached token for `scopes` if it is still `used` (the registry refused it), so
    /// the next [`TokenClient::token`] fetches a new one. A token another request has already
    /// replaced is left alone.
    pub async fn invalidate(&self, realm: &BearerRealm, scopes: &[Scope], used: &Secret) {
        let slot = self.slot(realm, scopes);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|t| t.value == *used) {
            *cached = None;
        }
    }

    async fn fetch(
        &self,
        realm: &BearerRealm,
        scopes: &[Scope],
        credentials: Option<&Credentials>,
    ) -> Result<Token, TokenError> {
        let refresh_token = credentials.filter(|c| c.is_identity_token()).and_then(|_| {
            self.refresh_token
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        });
        let started = Instant::now();
        let (status, body) = match &refresh_token {
            Some(refresh) => self.post_refresh(realm, scopes, refresh).await?,
            None => self.get(realm, scopes, credentials).await?,
        };
        let who = match credentials {
            Some(c) => c.describe(),
            None => ANONYMOUS.to_owned(),
        };
        let realm_text = realm.realm.to_string();
        if !status.is_success() {
            let detail = error_detail(&body);
            return Err(match status {
                StatusCode::UNAUTHORIZED => TokenError::Rejected {
                    realm: realm_text,
                    who,
                    status: status.as_u16(),
                    detail,
                    advice: match credentials {
                        None => {
                            "; this registry needs credentials: log in with `docker login` or `podman login`"
                        }
                        Some(c) if c.is_identity_token() => {
                            "; the identity token has probably expired or been revoked: log in again"
                        }
                        Some(_) => "; check the username and password",
                    },
                },
                StatusCode::FORBIDDEN => TokenError::Denied {
                    realm: realm_text,
                    who,
                    scope: scope_list(scopes),
                    status: status.as_u16(),
                    detail,
                },
                _ => TokenError::Status {
                    realm: realm_text,
                    status: status.as_u16(),
                    detail,
                    attempts: 1,
                },
            });
        }
        let token =
            parse_token_response(&body, Instant::now(), jiff::Timestamp::now()).map_err(|reason| {
                TokenError::Malformed {
                    realm: realm_text.clone(),
                    reason,
                }
            })?;
        if let Some(rotated) = token.refresh_token {
            *self.refresh_token.lock().unwrap_or_else(|e| e.into_inner()) = Some(rotated);
        }
        let granted = token
            .token
            .granted
            .as_ref()
            .map_or_else(|| "unknown (opaque token)".to_owned(), |g| scope_list(g));
        tracing::debug!(
            realm = %realm.realm,
            scope = %scope_list(scopes),
            granted = %granted,
            expires_in_ms = token.token.expires_at.saturating_duration_since(Instant::now()).as_millis() as u64,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "obtained a bearer token"
        );
        Ok(token.token)
    }

    /// `GET realm?service=…&scope=…[&account=…]` with basic credentials when there are any.
    async fn get(
        &self,
        realm: &BearerRealm,
        scopes: &[Scope],
        credentials: Option<&Credentials>,
    ) -> Result<(StatusCode, Vec<u8>), TokenError> {
        let mut url = realm.realm.clone();
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &realm.service {
                query.append_pair("service", service);
            }
            for scope in scopes {
                query.append_pair("scope", &scope.to_string());
            }
            if let Some(c) = credentials {
                query.append_pair("account", &c.username);
            }
        }
        self.send(realm, || {
            let builder = self
                .http
                .request(Method::GET, url.clone())
                .header(ACCEPT, "application/json");
            match credentials {
                // reqwest marks the header sensitive: it is never logged, and dropped on a
                // redirect to another host.
                Some(c) => builder.basic_auth(&c.username, Some(c.password.expose())),
                None => builder,
            }
        })
        .await
    }

    /// The OAuth2 form: `POST realm` with `grant_type=refresh_token`.
    async fn post_refresh(
        &self,
        realm: &BearerRealm,
        scopes: &[Scope],
        refresh_token: &Secret,
    ) -> Result<(StatusCode, Vec<u8>), TokenError> {
        // reqwest's `form` needs a crate feature; `Url`'s query serializer is the same
        // application/x-www-form-urlencoded encoding.
        let mut form = Url::parse("http://form.invalid/").expect("a valid constant URL");
        {
            let mut pairs = form.query_pairs_mut();
            pairs
                .append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", refresh_token.expose())
                .append_pair("client_id", CLIENT_ID);
            if let Some(service) = &realm.service {
                pairs.append_pair("service", service);
            }
            if !scopes.is_empty() {
                pairs.append_pair("scope", &scope_list(scopes));
            }
        }
        let body = form.query().unwrap_or_default().to_owned();
        self.send(realm, || {
            self.http
                .request(Method::POST, realm.realm.clone())
                .header(ACCEPT, "application/json")
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body.clone())
        })
        .await
    }

    /// Sends a token request, retrying like registry requests. Asking for a token twice is
    /// harmless, so every transient failure is retried.
    async fn send(
        &self,
        realm: &BearerRealm,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Vec<u8>), TokenError> {
        let realm_text = realm.realm.to_string();
        let outcome = http::with_retries(
            &self.retry,
            self.retry.max_attempts,
            Repeat::Safe,
            &realm_text,
            || http::exchange(build(), MAX_TOKEN_RESPONSE),
        )
        .await;
        let attempts = outcome.attempts;
        match outcome.result {
            Ok(exchange) if http::is_transient_status(exchange.status) => Err(TokenError::Status {
                realm: realm_text,
                status: exchange.status.as_u16(),
                detail: error_detail(&exchange.body),
                attempts,
            }),
            Ok(exchange) => Ok((exchange.status, exchange.body)),
            Err(AttemptError::TooLarge) => Err(TokenError::Malformed {
                realm: realm_text,
                reason: format!("the response is over {MAX_TOKEN_RESPONSE} bytes"),
            }),
            Err(AttemptError::Transport(err)) => {
                let cause = describe_reqwest_error(&err);
                Err(TokenError::Connect {
                    realm: realm_text,
                    cause: if attempts > 1 {
                        format!("{cause} (after {attempts} attempts)")
                    } else {
                        cause
                    },
                })
            }
        }
    }
}

/// The cache key part for a scope list: order-independent.
fn cache_key(scopes: &[Scope]) -> String {
    let mut parts: Vec<String> = scopes.iter().map(ToString::to_string).collect();
    parts.sort();
    parts.join(" ")
}

/// What a token server said in an error response, shortened, as ` : message` or nothing.
fn error_detail(body: &[u8]) -> String {
    // Token servers answer in the registry error format, as `{"details": "..."}` (docker_auth,
    // Docker Hub) or in plain text.
    #[derive(Deserialize)]
    struct Details {
        details: Option<String>,
        error: Option<String>,
        error_description: Option<String>,
    }
    let mut parts: Vec<String> = parse_error_body(body).iter().map(ToString::to_string).collect();
    if parts.is_empty()
        && let Ok(d) = serde_json::from_slice::<Details>(body)
    {
        parts.extend(d.details);
        parts.extend(d.error);
        parts.extend(d.error_description);
    }
    let text: String = parts.join("; ").chars().take(300).collect();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// A parsed token response.
#[derive(Debug)]
pub struct TokenResponse {
    pub token: Token,
    /// A new identity token, when the server rotates it.
    pub refresh_token: Option<Secret>,
}

/// Parses a token response (token.md and oauth.md): `token` and/or `access_token` (the OAuth2
/// name is preferred when both are present, as distribution's client does; they should be
/// equal), `expires_in` (default 60 s), `issued_at` (RFC 3339; the token's age is subtracted
/// from its lifetime), `refresh_token`, `scope`. Error messages never contain the token.
pub fn parse_token_response(
    body: &[u8],
    now: Instant,
    wall_now: jiff::Timestamp,
) -> Result<TokenResponse, String> {
    #[derive(Deserialize)]
    struct Raw {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<serde_json::Value>,
        issued_at: Option<String>,
        refresh_token: Option<String>,
        scope: Option<String>,
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| {
        // serde's messages can quote the offending value; report only where and what kind.
        format!(
            "malformed JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    let value = raw
        .access_token
        .filter(|t| !t.is_empty())
        .or(raw.token.filter(|t| !t.is_empty()))
        .ok_or("the response holds neither `token` nor `access_token`")?;
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the token holds whitespace or control characters".to_owned());
    }
    let lifetime = match &raw.expires_in {
        None | Some(serde_json::Value::Null) => DEFAULT_LIFETIME,
        Some(v) => {
            let seconds = v
                .as_f64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or("`expires_in` is not a number")?;
            if seconds.is_finite() && seconds > 0.0 {
                // Servers should not issue tokens for less than 60 s, but some do (and the test
                // server does, to exercise renewal): honour what the server says.
                Duration::from_secs_f64(seconds.min(365.0 * 86_400.0))
            } else {
                DEFAULT_LIFETIME
            }
        }
    };
    let age = raw
        .issued_at
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|issued| wall_now.duration_since(issued))
        .and_then(|d| Duration::try_from(d).ok())
        // An age beyond the lifetime means the clocks disagree, not that the token is stale:
        // then the time of receipt counts.
        .filter(|age| *age < lifetime)
        .unwrap_or(Duration::ZERO);
    let remaining = lifetime - age;
    let margin = (lifetime / 4).min(MAX_RENEW_MARGIN);
    let expires_at = now + remaining;
    let renew_at = expires_at.checked_sub(margin).unwrap_or(now).max(now);
    let granted = jwt_access(&value).or_else(|| raw.scope.as_deref().and_then(|s| Scope::parse_list(s).ok()));
    Ok(TokenResponse {
        token: Token {
            value: Secret::new(value),
            expires_at,
            renew_at,
            granted,
        },
        refresh_token: raw.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
    })
}

/// The `access` claim of a JWT (distribution's token format), without checking the signature:
/// it only serves to explain a refusal. `None` when the token is not a JWT or has no such claim.
pub fn jwt_access(token: &str) -> Option<Vec<Scope>> {
    #[derive(Deserialize)]
    struct Claims {
        access: Option<Vec<Access>>,
    }
    #[derive(Deserialize)]
    struct Access {
        #[serde(rename = "type")]
        resource_type: String,
        name: String,
        #[serde(default)]
        actions: Vec<String>,
    }
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let claims: Claims = serde_json::from_slice(&base64_decode(payload)?).ok()?;
    Some(
        claims
            .access?
            .into_iter()
            .map(|a| Scope {
                resource_type: a.resource_type,
                name: a.name,
                actions: a.actions,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_cache_stays_bounded_and_keeps_what_is_in_use() {
        let client = TokenClient::new(reqwest::Client::new(), RetryPolicy::default(), None);
        let realm = BearerRealm::from_challenge(Some("https://auth.example.com/token"), None).unwrap();
        let in_use = client.slot(&realm, &[Scope::repository("kept", &["pull"])]);
        for i in 0..5 * SLOTS_KEPT {
            let slot = client.slot(&realm, &[Scope::repository(&format!("repo{i}"), &["pull"])]);
            // Some hold a fresh token, as after a fetch.
            if i % 2 == 0 {
                let now = Instant::now();
                *slot.try_lock().unwrap() = Some(Token {
                    value: Secret::new(format!("t{i}")),
                    expires_at: now + Duration::from_secs(300),
                    renew_at: now + Duration::from_secs(240 + i as u64),
                    granted: None,
                });
            }
        }
        let slots = client.slots.lock().unwrap();
        assert!(slots.len() <= SLOTS_KEPT, "{} cached", slots.len());
        assert!(
            slots.values().any(|s| Arc::ptr_eq(s, &in_use)),
            "a slot in use was dropped"
        );
    }

    fn b64url(data: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
    }

    fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.c2ln",
            b64url(br#"{"alg":"ES256","typ":"JWT"}"#),
            b64url(claims.as_bytes())
        )
    }

    #[test]
    fn reads_token_or_access_token_and_lifetimes() {
        let now = Instant::now();
        let wall: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let r = parse_token_response(br#"{"token":"abc","expires_in":300}"#, now, wall).unwrap();
        assert_eq!(r.token.value.expose(), "abc");
        assert_eq!(r.token.expires_at - now, Duration::from_secs(300));
        assert_eq!(r.token.renew_at - now, Duration::from_secs(270));
        assert!(r.token.granted.is_none());

        let r = parse_token_response(br#"{"access_token":"x","token":"y"}"#, now, wall).unwrap();
        assert_eq!(r.token.value.expose(), "x");
        assert_eq!(r.token.expires_at - now, DEFAULT_LIFETIME);

        // Short lifetimes are honoured, renewed a quarter before the end.
        let r = parse_token_response(br#"{"token":"t","expires_in":2}"#, now, wall).unwrap();
        assert_eq!(r.token.expires_at - now, Duration::from_secs(2));
        assert_eq!(r.token.renew_at - now, Duration::from_millis(1500));

        // issued_at 100 s ago: 200 s remain.
        let r = parse_token_response(
            br#"{"token":"t","expires_in":300,"issued_at":"2025-12-31T23:58:20Z"}"#,
            now,
            wall,
        )
        .unwrap();
        assert_eq!(r.token.expires_at - now, Duration::from_secs(200));
        // issued_at far in the past or the future (clock skew): counted from receipt.
        for issued in ["2020-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "garbage"] {
            let body = format!(r#"{{"token":"t","expires_in":300,"issued_at":"{issued}"}}"#);
            let r = parse_token_response(body.as_bytes(), now, wall).unwrap();
            assert_eq!(r.token.expires_at - now, Duration::from_secs(300), "{issued}");
        }
        // Zero, negative or null expires_in: the default.
        for e in ["0", "-5", "null", "\"120\""] {
            let body = format!(r#"{{"token":"t","expires_in":{e}}}"#);
            let r = parse_token_response(body.as_bytes(), now, wall).unwrap();
            let want = if e == "\"120\"" { 120 } else { 60 };
            assert_eq!(r.token.expires_at - now, Duration::from_secs(want), "{e}");
        }
        let r = parse_token_response(
            br#"{"access_token":"a","scope":"repository:team/app:pull","refresh_token":"r2"}"#,
            now,
            wall,
        )
        .unwrap();
        assert_eq!(r.refresh_token.unwrap().expose(), "r2");
        assert_eq!(
            r.token.granted.unwrap(),
            [Scope::repository("team/app", &["pull"])]
        );
    }

    #[test]
    fn bad_responses_are_errors_without_the_token() {
        let now = Instant::now();
        let wall = jiff::Timestamp::now();
        for (body, want) in [
            (&b"{}"[..], "neither"),
            (br#"{"token":""}"#, "neither"),
            (br#"{"token":"secret-canary"#, "malformed JSON"),
            (br#"{"token":"secret-canary","expires_in":"soon"}"#, "expires_in"),
            (br#"{"token":42}"#, "malformed JSON"),
            (br#"{"token":"a b"}"#, "whitespace"),
            (b"<html>", "malformed JSON"),
        ] {
            let err = parse_token_response(body, now, wall).unwrap_err();
            assert!(err.contains(want), "{err}");
            assert!(!err.contains("secret-canary"), "{err}");
        }
    }

    #[test]
    fn decodes_jwt_access_claims() {
        let token = jwt(
            r#"{"iss":"x","access":[{"type":"repository","name":"team/app","actions":["pull","push"]},{"type":"registry","name":"catalog","actions":["*"]}]}"#,
        );
        let granted = jwt_access(&token).unwrap();
        assert_eq!(
            granted,
            [Scope::repository("team/app", &["pull", "push"]), Scope::catalog()]
        );
        let r = parse_token_response(
            format!(r#"{{"token":"{token}"}}"#).as_bytes(),
            Instant::now(),
            jiff::Timestamp::now(),
        )
        .unwrap();
        assert_eq!(r.token.granted.unwrap().len(), 2);
        // An empty grant is known and empty; no claim, or not a JWT, is unknown.
        assert_eq!(jwt_access(&jwt(r#"{"access":[]}"#)), Some(vec![]));
        assert_eq!(jwt_access(&jwt(r#"{"sub":"x"}"#)), None);
        assert_eq!(jwt_access("opaque-token"), None);
        assert_eq!(jwt_access("a.!!!.c"), None);
        assert_eq!(jwt_access("a.b.c.d"), None);
    }

    #[test]
    fn realms_are_checked() {
        let r = BearerRealm::from_challenge(Some("https://auth.example.com/token?x=1"), Some("reg")).unwrap();
        assert_eq!(r.service.as_deref(), Some("reg"));
        assert_eq!(
            r.to_string(),
            "https://auth.example.com/token?x=1 (service `reg`)"
        );
        for bad in [
            None,
            Some("/token"),
            Some("ftp://auth.example.com/token"),
            Some("https://user:pw@auth.example.com/token"),
            Some("not a url"),
        ] {
            let err = BearerRealm::from_challenge(bad, Some("s")).unwrap_err();
            assert!(matches!(err, TokenError::BadRealm { .. }), "{bad:?}");
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
    }

    #[test]
    fn cache_keys_ignore_scope_order() {
        let a = [Scope::repository("a", &["pull"]), Scope::catalog()];
        let b = [Scope::catalog(), Scope::repository("a", &["pull"])];
        assert_eq!(cache_key(&a), cache_key(&b));
        assert_ne!(cache_key(&a[..1]), cache_key(&a));
    }

    #[test]
    fn error_details_are_short_and_readable() {
        assert_eq!(
            error_detail(br#"{"errors":[{"code":"DENIED","message":"no"}]}"#),
            ": DENIED: no"
        );
        assert_eq!(
            error_detail(br#"{"details":"incorrect username or password"}"#),
            ": incorrect username or password"
        );
        assert_eq!(error_detail(b""), "");
        assert!(error_detail("x".repeat(1000).as_bytes()).len() < 310);
    }
}
