//! The HTTP layer under the registry client: one keep-alive connection pool per registry, a
//! semaphore that bounds requests in flight, authentication, retries with exponential backoff
//! and jitter (honouring `Retry-After`), bounded response bodies, and the mapping from HTTP
//! statuses to [`RegistryError`]s.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use tokio::sync::Semaphore;

use super::auth::{Challenge, Credentials, Scope, parse_challenges};
use super::error::{Missing, RegistryError, RequestInfo, parse_error_body};

/// Retry policy for transient failures (connection errors, 429, 5xx).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Total attempts, including the first.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled for each further attempt.
    pub base_delay: Duration,
    /// Upper bound for one computed delay.
    pub max_delay: Duration,
    /// Upper bound for a server-requested `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (attempts count from 1): exponential with "equal
    /// jitter" (between half and all of the exponential value), so that many clients retrying at
    /// once spread out, but a retry never comes immediately.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16));
        let capped = exp.min(self.max_delay);
        capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// Parses `Retry-After`: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let delta = when.duration_since(now);
    Some(Duration::try_from(delta).unwrap_or(Duration::ZERO))
}

/// How requests to this registry are authenticated at the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthMode {
    Anonymous,
    Basic,
}

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
    mode: RwLock<AuthMode>,
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
    ) -> Self {
        let host = base.host_str().unwrap_or("?").to_owned();
        let host = match base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        Self {
            http,
            base,
            host,
            limiter: Semaphore::new(concurrency.max(1)),
            retry,
            credentials,
            mode: RwLock::new(AuthMode::Anonymous),
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
        *self.mode.read().unwrap_or_else(|e| e.into_inner())
    }

    fn set_mode(&self, mode: AuthMode) {
        *self.mode.write().unwrap_or_else(|e| e.into_inner()) = mode;
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
        let mut attempt = 0;
        let mut auth_retried = false;
        loop {
            attempt += 1;
            let started = Instant::now();
            let outcome = {
                let _permit = self
                    .limiter
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                self.attempt(req).await
            };
            let retry_in = match outcome {
                Ok((status, headers, body, url)) => {
                    tracing::debug!(method = %req.method, url = %req.url, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
                    if status.is_success() {
                        return Ok(Response { headers, body, url });
                    }
                    if status == StatusCode::UNAUTHORIZED && !auth_retried && self.on_unauthorized(&headers) {
                        auth_retried = true;
                        attempt -= 1;
                        continue;
                    }
                    let transient = status == StatusCode::TOO_MANY_REQUESTS
                        || matches!(status.as_u16(), 500 | 502 | 503 | 504);
                    if !transient || attempt >= max_attempts {
                        return Err(self.status_error(req, info, status, &headers, &body, attempt));
                    }
                    let server = headers
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()))
                        .map(|d| d.min(self.retry.max_retry_after));
                    tracing::info!(method = %req.method, url = %req.url, status = status.as_u16(), attempt, "transient error, retrying");
                    server.unwrap_or_else(|| self.retry.backoff(attempt, fastrand::f64()))
                }
                Err(AttemptError::TooLarge) => {
                    return Err(RegistryError::TooLarge {
                        request: info,
                        limit: req.max_body,
                    });
                }
                Err(AttemptError::Transport(err)) => {
                    let cause = describe_reqwest_error(&err);
                    tracing::debug!(method = %req.method, url = %req.url, %cause, "request failed");
                    if attempt >= max_attempts || !(err.is_connect() || err.is_timeout() || err.is_request())
                    {
                        return Err(RegistryError::Connect {
                            host: self.host.clone(),
                            request: info,
                            cause: if attempt > 1 {
                                format!("{cause} (after {attempt} attempts)")
                            } else {
                                cause
                            },
                        });
                    }
                    self.retry.backoff(attempt, fastrand::f64())
                }
            };
            tokio::time::sleep(retry_in).await;
        }
    }

    async fn attempt(
        &self,
        req: &Request<'_>,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>, Url), AttemptError> {
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
        if self.mode() == AuthMode::Basic
            && let Some(creds) = &self.credentials
        {
            // reqwest marks the header sensitive, so it is never logged or kept on redirects.
            builder = builder.basic_auth(&creds.username, Some(creds.password.expose()));
        }
        let mut response = builder.send().await.map_err(AttemptError::Transport)?;
        let status = response.status();
        let url = response.url().clone();
        if response
            .content_length()
            .is_some_and(|len| len > req.max_body as u64)
        {
            return Err(AttemptError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(AttemptError::Transport)? {
            if body.len() + chunk.len() > req.max_body {
                return Err(AttemptError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, response.headers().clone(), body, url))
    }

    /// Reacts to a 401: switches to basic auth when the registry asks for it and credentials are
    /// available. Returns whether the request should be sent again.
    fn on_unauthorized(&self, headers: &HeaderMap) -> bool {
        if self.credentials.is_none() || self.mode() == AuthMode::Basic {
            return false;
        }
        let basic = challenges(headers).iter().any(|c| c.scheme == "basic");
        if basic {
            tracing::debug!(host = %self.host, "registry asks for basic authentication");
            self.set_mode(AuthMode::Basic);
        }
        basic
    }

    fn status_error(
        &self,
        req: &Request<'_>,
        request: RequestInfo,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        attempts: u32,
    ) -> RegistryError {
        let errors = parse_error_body(body);
        match status {
            StatusCode::UNAUTHORIZED => RegistryError::Unauthorized {
                request,
                errors,
                hint: self.unauthorized_hint(headers, &req.scope),
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

    fn unauthorized_hint(&self, headers: &HeaderMap, scope: &Scope) -> String {
        let challenges = challenges(headers);
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            return format!(
                "the registry wants a bearer token from {} for `{}`, which this version of regsweep cannot obtain yet",
                bearer.param("realm").unwrap_or("its token service"),
                scope
            );
        }
        match (&self.credentials, self.mode()) {
            (None, _) => "the registry requires authentication: pass --username NAME with --password-stdin, \
                          or set REGSWEEP_USERNAME and REGSWEEP_PASSWORD"
                .to_owned(),
            (Some(creds), AuthMode::Basic) => format!(
                "the registry rejected the credentials of user `{}`; check the username and password",
                creds.username
            ),
            (Some(_), AuthMode::Anonymous) => {
                "the registry refused the request and did not offer basic authentication".to_owned()
            }
        }
    }
}

enum AttemptError {
    Transport(reqwest::Error),
    TooLarge,
}

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

fn describe_reqwest_error(err: &reqwest::Error) -> String {
    // reqwest's own messages are generic ("error sending request for url …", "client error
    // (Connect)"); the causes under them say what happened ("Connection refused", "invalid peer
    // certificate: UnknownIssuer").
    let mut parts: Vec<String> = Vec::new();
    let mut cause: Option<&dyn std::error::Error> = Some(err);
    while let Some(current) = cause {
        let text = current.to_string();
        let generic = text.starts_with("error sending request") || text.starts_with("client error");
        if !generic && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = current.source();
    }
    if parts.is_empty() {
        parts.push(err.to_string());
    }
    if err.is_timeout() && !parts.iter().any(|p| p.contains("timed out")) {
        parts.push("timed out".to_owned());
    }
    let mut message = parts.join(": ");
    if message.contains("certificate") || message.contains("InvalidCertificate") {
        message.push_str(
            " (pass --ca-file with the CA that signed the registry's certificate, or --insecure to skip verification)",
        );
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(250));
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(125));
        assert_eq!(p.backoff(3, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(30, 1.0), Duration::from_secs(8));
        assert!(p.backoff(2, 0.3) >= Duration::from_millis(250));
    }

    #[test]
    fn retry_after_forms() {
        let now: jiff::Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
