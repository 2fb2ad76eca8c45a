//! Errors from talking to a registry. Each one carries the request that failed (method and URL,
//! never credentials), the registry's own error codes and messages when it sent any, and a hint
//! that says what to do.

use std::fmt;

use reqwest::StatusCode;
use serde::Deserialize;

use crate::digest::Digest;
use crate::manifest::ManifestError;

/// One entry of the spec's error body `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub detail: Option<serde_json::Value>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code.is_empty(), self.message.is_empty()) {
            (false, false) => write!(f, "{}: {}", self.code, self.message),
            (false, true) => f.write_str(&self.code),
            (true, _) => f.write_str(&self.message),
        }
    }
}

/// The failing request, for error messages: `GET http://host/v2/app/tags/list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub method: String,
    pub url: String,
}

impl fmt::Display for RequestInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.url)
    }
}

/// What a 404 was about, so the message can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    Repository(String),
    Manifest { repository: String, reference: String },
    Blob { repository: String, digest: String },
    Endpoint,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Repository(repo) => write!(f, "repository `{repo}` not found"),
            Missing::Manifest {
                repository,
                reference,
            } => {
                let sep = if reference.contains(':') { "@" } else { ":" };
                write!(f, "manifest `{repository}{sep}{reference}` not found")
            }
            Missing::Blob { repository, digest } => write!(f, "blob `{digest}` not found in `{repository}`"),
            Missing::Endpoint => f.write_str("endpoint not found"),
        }
    }
}

/// Errors from the registry client.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach registry {host} ({request}): {cause}")]
    Connect {
        host: String,
        request: RequestInfo,
        cause: String,
        /// The server's certificate was refused: the server speaks TLS, and trusting it needs
        /// its CA (or skipping verification).
        certificate: bool,
    },
    #[error(
        "{request}: 401 Unauthorized{}: {hint}",
        errors_suffix(.errors)
    )]
    Unauthorized {
        request: RequestInfo,
        errors: Vec<ApiError>,
        hint: String,
    },
    #[error("{request}: 403 Forbidden{}: the credentials lack permission for this operation", errors_suffix(.errors))]
    Denied {
        request: RequestInfo,
        errors: Vec<ApiError>,
    },
    #[error("{request}: {missing}{}", errors_suffix(.errors))]
    NotFound {
        request: RequestInfo,
        missing: Box<Missing>,
        errors: Vec<ApiError>,
    },
    #[error("{request}: 405 Method Not Allowed{}: {hint}", errors_suffix(.errors))]
    MethodNotAllowed {
        request: RequestInfo,
        errors: Vec<ApiError>,
        hint: String,
    },
    #[error("{request}: {status}{}{}", errors_suffix(.errors), retried_suffix(*.attempts))]
    Status {
        request: RequestInfo,
        status: StatusCode,
        errors: Vec<ApiError>,
        attempts: u32,
    },
    #[error(
        "{request}: content digest mismatch: expected {expected}, the body hashes to {actual}; the registry or a proxy altered the content"
    )]
    DigestMismatch {
        request: RequestInfo,
        expected: Digest,
        actual: Digest,
    },
    #[error("{request}: invalid response: {reason}")]
    BadResponse { request: RequestInfo, reason: String },
    #[error("{request}: invalid manifest: {source}")]
    BadManifest {
        request: RequestInfo,
        #[source]
        source: ManifestError,
    },
    #[error("{request}: response body is over the {limit}-byte limit")]
    TooLarge { request: RequestInfo, limit: usize },
    #[error("{0}")]
    Config(String),
}

fn errors_suffix(errors: &[ApiError]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!(" ({})", list.join("; "))
    }
}

fn retried_suffix(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

impl RegistryError {
    /// Whether this is a 404 (of any kind).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound { .. })
    }

    /// Whether the server's TLS certificate was refused.
    pub fn is_certificate_error(&self) -> bool {
        matches!(
            self,
            RegistryError::Connect {
                certificate: true,
                ..
            }
        )
    }

    /// The registry's error codes, if it sent any.
    pub fn api_errors(&self) -> &[ApiError] {
        match self {
            RegistryError::Unauthorized { errors, .. }
            | RegistryError::Denied { errors, .. }
            | RegistryError::NotFound { errors, .. }
            | RegistryError::MethodNotAllowed { errors, .. }
            | RegistryError::Status { errors, .. } => errors,
            _ => &[],
        }
    }
}

/// Parses an error body. Registries may answer with plain text or HTML; then the first line of
/// the text (shortened) becomes the message so the user still sees what the server said.
pub fn parse_error_body(body: &[u8]) -> Vec<ApiError> {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(default)]
        errors: Vec<ApiError>,
    }
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(body)
        && !envelope.errors.is_empty()
    {
        return envelope.errors;
    }
    let text = String::from_utf8_lossy(body);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    if line.is_empty() || line.starts_with('{') || line.starts_with('<') {
        return Vec::new();
    }
    let message: String = line.chars().take(200).collect();
    vec![ApiError {
        code: String::new(),
        message,
        detail: None,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_error_bodies() {
        let body = br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"x"}}]}"#;
        let errors = parse_error_body(body);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "NAME_UNKNOWN: repository name not known to registry"
        );
    }

    #[test]
    fn tolerates_text_and_garbage() {
        assert_eq!(
            parse_error_body(b"Method not allowed\n")[0].message,
            "Method not allowed"
        );
        assert!(parse_error_body(b"").is_empty());
        assert!(parse_error_body(b"{broken json").is_empty());
        assert!(parse_error_body(b"<html><body>oops</body></html>").is_empty());
        assert!(parse_error_body(&[0xff, 0xfe, b'\n']).len() <= 1);
        let long = "x".repeat(1000);
        assert_eq!(parse_error_body(long.as_bytes())[0].message.len(), 200);
    }

    #[test]
    fn messages_name_the_request_and_codes() {
        let err = RegistryError::NotFound {
            request: RequestInfo {
                method: "GET".into(),
                url: "http://r/v2/app/manifests/v1".into(),
            },
            missing: Box::new(Missing::Manifest {
                repository: "app".into(),
                reference: "v1".into(),
            }),
            errors: parse_error_body(
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ),
        };
        assert_eq!(
            err.to_string(),
            "GET http://r/v2/app/manifests/v1: manifest `app:v1` not found (MANIFEST_UNKNOWN: manifest unknown)"
        );
    }
}
