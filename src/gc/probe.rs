//! The read-only check before a collection: is the registry that serves this storage stopped,
//! read-only, or accepting writes?
//!
//! It sends `DELETE /v2/<repo>/blobs/sha256:<64 zeros>`: a read-only distribution has no DELETE
//! route (405, text/plain, `Allow: GET, HEAD`); a writable one looks the blob up (404
//! BLOB_UNKNOWN), or answers 405 UNSUPPORTED in JSON when only deletes are disabled. No blob has
//! that digest, so nothing changes either way. No credentials are sent. The HTTP client is the
//! one every registry command uses, so `--ca-file` and `--insecure` apply.

use crate::registry::{ClientOptions, build_http};

/// What the read-only probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    ReadOnly,
    Stopped,
    Writable(String),
    Unknown(String),
}

impl Probe {
    pub fn describe(&self, url: &str) -> String {
        match self {
            Probe::ReadOnly => format!("registry at {url} is read-only"),
            Probe::Stopped => format!("no registry answers at {url} (stopped)"),
            Probe::Writable(why) => format!("registry at {url} accepts writes ({why})"),
            Probe::Unknown(why) => format!("cannot tell whether the registry at {url} is read-only ({why})"),
        }
    }
}

/// Sends `DELETE /v2/<repo>/blobs/sha256:<64 zeros>`: a read-only distribution has no DELETE
/// route (405, text/plain, `Allow: GET, HEAD`); a writable one looks the blob up (404
/// BLOB_UNKNOWN), or answers 405 UNSUPPORTED in JSON when only deletes are disabled. No blob has
/// that digest, so nothing changes either way. No credentials are sent.
pub fn probe_registry(url: &str, options: &ClientOptions) -> Probe {
    let base = match reqwest::Url::parse(url) {
        Ok(base) if matches!(base.scheme(), "http" | "https") => base,
        _ => return Probe::Unknown(format!("`{url}` is not an http(s) URL")),
    };
    let mut base = base;
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    let probe_url = match base.join(&format!("v2/regsweep-probe/blobs/sha256:{}", "0".repeat(64))) {
        Ok(u) => u,
        Err(err) => return Probe::Unknown(err.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => return Probe::Unknown(format!("cannot start the HTTP client: {err}")),
    };
    let client = match build_http(options) {
        Ok(client) => client,
        Err(err) => return Probe::Unknown(format!("cannot set up the HTTP client: {err}")),
    };
    runtime.block_on(async move {
        let response = match client.delete(probe_url).send().await {
            Ok(response) => response,
            Err(err) if refused(&err) => return Probe::Stopped,
            // A TLS failure is a connect error too, but says nothing about the registry.
            Err(err) => return Probe::Unknown(error_chain(&err)),
        };
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_ascii_uppercase()
        };
        let allow = header("allow");
        let content_type = header("content-type");
        let body = response.text().await.unwrap_or_default();
        classify(status, &allow, &content_type, &body)
    })
}

/// Whether nothing listens at the address (connection refused).
fn refused(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// The error with its causes (the TLS reason sits at the bottom).
fn error_chain(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    text
}

fn classify(status: u16, allow: &str, content_type: &str, body: &str) -> Probe {
    match status {
        405 if body.contains("UNSUPPORTED") => Probe::Writable("deletes are disabled, pushes are not".into()),
        405 if content_type.starts_with("TEXT/PLAIN")
            && allow.contains("GET")
            && !allow.contains("DELETE") =>
        {
            Probe::ReadOnly
        }
        404 | 202 => Probe::Writable(format!("the probe DELETE got {status}")),
        401 | 403 => Probe::Unknown(format!(
            "the registry answered {status}: it needs credentials for the probe"
        )),
        other => Probe::Unknown(format!("unexpected answer {other} to the probe")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_answers() {
        assert_eq!(
            classify(
                405,
                "GET, HEAD",
                "TEXT/PLAIN; CHARSET=UTF-8",
                "Method not allowed"
            ),
            Probe::ReadOnly
        );
        assert!(matches!(
            classify(
                404,
                "",
                "APPLICATION/JSON",
                r#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#
            ),
            Probe::Writable(_)
        ));
        assert!(matches!(
            classify(
                405,
                "",
                "APPLICATION/JSON",
                r#"{"errors":[{"code":"UNSUPPORTED"}]}"#
            ),
            Probe::Writable(_)
        ));
        assert!(matches!(classify(401, "", "", ""), Probe::Unknown(_)));
        assert!(matches!(classify(500, "", "", ""), Probe::Unknown(_)));
    }

    #[test]
    fn probe_of_a_closed_port_means_stopped() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        assert_eq!(
            probe_registry(&format!("http://127.0.0.1:{port}"), &ClientOptions::default()),
            Probe::Stopped
        );
        assert!(matches!(
            probe_registry("ftp://x", &ClientOptions::default()),
            Probe::Unknown(_)
        ));
    }
}
