//! The lowest HTTP layer, shared by registry requests (`transport.rs`) and token requests
//! (`token.rs`): one attempt (send, then read a bounded body), which failures are worth another
//! attempt, the one retry loop (exponential backoff with jitter, `Retry-After`, a bound on
//! attempts and on total time), and a readable description of transport errors.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};

/// Retry policy for transient failures: connection errors, timeouts, responses cut short, 429
/// and 5xx.
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
    /// Upper bound for one request with all its attempts and waits: no retry starts when its
    /// wait would end past it. Each attempt is bounded by the client's own timeout.
    pub total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            total: Duration::from_secs(120),
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

/// A response with its whole body read.
pub(super) struct Exchange {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub url: Url,
}

/// Why one attempt produced no complete response.
pub(super) enum AttemptError {
    Transport(reqwest::Error),
    /// The body is over the caller's limit.
    TooLarge,
}

/// Sends one request and reads its body, refusing bodies over `max_body` bytes (announced or
/// actual).
pub(super) async fn exchange(
    builder: reqwest::RequestBuilder,
    max_body: usize,
) -> Result<Exchange, AttemptError> {
    let mut response = builder.send().await.map_err(AttemptError::Transport)?;
    if response.content_length().is_some_and(|len| len > max_body as u64) {
        return Err(AttemptError::TooLarge);
    }
    let status = response.status();
    let url = response.url().clone();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(AttemptError::Transport)? {
        if body.len() + chunk.len() > max_body {
            return Err(AttemptError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Exchange {
        status,
        headers,
        body,
        url,
    })
}

/// Whether a status says "try again later": 429 and the 5xx that gateways and overloaded servers
/// answer.
pub(super) fn is_transient_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// Whether a request may be sent again after a transport failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Repeat {
    /// Repeating has the same effect as sending once (GET, HEAD, a manifest PUT of the same
    /// bytes, a DELETE whose repeat answers 404): retried after any transient failure,
    /// including an answer lost or cut short after the request went out.
    Safe,
    /// Repeating could act twice (a blob upload's final PUT consumes its upload session):
    /// retried only when nothing reached the server (the connection was never made) or the
    /// server answered 429/5xx.
    OnlyIfUnsent,
}

/// What a transport error means for a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TransportFault {
    /// Nothing was sent: no connection could be made (refused, timed out, TLS handshake failed).
    Unsent,
    /// The request may have reached the server but its answer was lost, cut short or too slow:
    /// the connection was reset, closed early, or timed out.
    AnswerLost,
    /// Not a network failure (a malformed URL, a redirect loop, a TLS setup error): retrying
    /// would fail the same way.
    Permanent,
}

/// Classifies a reqwest error.
pub(super) fn transport_fault(err: &reqwest::Error) -> TransportFault {
    if err.is_connect() {
        // A TLS handshake refused by certificate checks also shows as a connect error; it does
        // not heal by retrying.
        if is_certificate_error(&describe_reqwest_error(err)) {
            return TransportFault::Permanent;
        }
        return TransportFault::Unsent;
    }
    if err.is_timeout() || err.is_request() || err.is_body() || err.is_decode() {
        return TransportFault::AnswerLost;
    }
    TransportFault::Permanent
}

/// The result of a request after its retries.
pub(super) struct Outcome {
    pub result: Result<Exchange, AttemptError>,
    /// Attempts made (1 = no retry).
    pub attempts: u32,
    /// An earlier attempt went out and its answer was lost: it may have taken effect.
    pub earlier_answer_lost: bool,
}

/// Runs `attempt` until it yields a response that is not transient, a failure that is not worth
/// repeating, `max_attempts` attempts were made, or the next wait would end past the policy's
/// total bound. `what` names the request in log lines.
pub(super) async fn with_retries<F, Fut>(
    policy: &RetryPolicy,
    max_attempts: u32,
    repeat: Repeat,
    what: &str,
    mut attempt: F,
) -> Outcome
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Exchange, AttemptError>>,
{
    let started = Instant::now();
    let mut attempts = 0;
    let mut earlier_answer_lost = false;
    loop {
        attempts += 1;
        let result = attempt().await;
        let wait = match &result {
            Ok(exchange) if is_transient_status(exchange.status) => {
                let server = exchange
                    .headers
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()))
                    .map(|d| d.min(policy.max_retry_after));
                let wait = server.unwrap_or_else(|| policy.backoff(attempts, fastrand::f64()));
                tracing::info!(
                    request = what,
                    status = exchange.status.as_u16(),
                    attempt = attempts,
                    wait_ms = wait.as_millis() as u64,
                    "transient error, retrying"
                );
                Some(wait)
            }
            Ok(_) | Err(AttemptError::TooLarge) => None,
            Err(AttemptError::Transport(err)) => {
                let fault = transport_fault(err);
                tracing::info!(request = what, cause = %describe_reqwest_error(err), attempt = attempts, ?fault, "request failed");
                let retry = match fault {
                    TransportFault::Unsent => true,
                    TransportFault::AnswerLost => repeat == Repeat::Safe,
                    TransportFault::Permanent => false,
                };
                if retry && fault == TransportFault::AnswerLost && attempts < max_attempts {
                    earlier_answer_lost = true;
                }
                retry.then(|| policy.backoff(attempts, fastrand::f64()))
            }
        };
        let Some(wait) = wait else {
            return Outcome {
                result,
                attempts,
                earlier_answer_lost,
            };
        };
        if attempts >= max_attempts || started.elapsed() + wait > policy.total {
            return Outcome {
                result,
                attempts,
                earlier_answer_lost,
            };
        }
        tokio::time::sleep(wait).await;
    }
}

/// A transport error in words. reqwest's own messages are generic ("error sending request for
/// url …", "client error (Connect)"); the causes under them say what happened ("Connection
/// refused", "invalid peer certificate: UnknownIssuer").
pub(super) fn describe_reqwest_error(err: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause: Option<&dyn std::error::Error> = Some(err);
    while let Some(current) = cause {
        let text = current.to_string();
        let generic = text.starts_with("error sending request")
            || text.starts_with("client error")
            || text.starts_with("error decoding response body")
            || text.starts_with("request or response body error");
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
    parts.join(": ")
}

/// Whether a transport error is about the server's certificate (so the user needs a CA file or
/// to skip verification).
pub(super) fn is_certificate_error(cause: &str) -> bool {
    cause.contains("certificate") || cause.contains("InvalidCertificate")
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

    #[test]
    fn transient_statuses() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_transient_status(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [200, 400, 401, 404, 405, 501] {
            assert!(
                !is_transient_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }
}
