//! An S3 server on loopback for object-storage tests: `moto_server` (PyPI `moto[server]`), an
//! in-memory S3 that accepts any credentials and unsigned requests. The real registry writes to
//! it with its `s3` driver (see [`S3Storage`](crate::config::S3Storage)); tests read and write
//! keys through [`MotoServer`]'s plain HTTP helpers, which share no code with regsweep.
//!
//! moto enforces neither the 1,000-key limit of `DeleteObjects` nor bucket policies, and its
//! multipart uploads all carry one constant initiation time; tests that need those behaviours
//! put a proxy in front of it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::process::{find_on_path, spawn_guarded};

pub const MOTO_BINARY: &str = "moto_server";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `moto_server`; dropping it kills the process.
pub struct MotoServer {
    child: Option<Child>,
    port: u16,
    http: reqwest::Client,
}

impl std::fmt::Debug for MotoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotoServer")
            .field("endpoint", &self.endpoint())
            .finish()
    }
}

/// Locates `moto_server`, or fails loudly with the install command.
pub fn find_moto() -> Result<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    find_on_path(MOTO_BINARY, &path).ok_or_else(|| {
        anyhow!("{MOTO_BINARY} not found on PATH: install it with `pip install 'moto[server]'`")
    })
}

impl MotoServer {
    /// Starts `moto_server` on a free `127.0.0.1` port and waits until it answers.
    pub async fn start() -> Result<Self> {
        let binary = find_moto()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut cmd = Command::new(&binary);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Werkzeug logs every request on stderr.
            .stderr(Stdio::null());
        let child = spawn_guarded(cmd).with_context(|| format!("spawning {}", binary.display()))?;
        // moto checks no signature, but answers anonymous object reads 403 (private ACL): any
        // well-formed AWS4 Authorization header makes a request authenticated for it.
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=testkit/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
            ),
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .default_headers(headers)
            .build()?;
        let mut server = Self {
            child: Some(child),
            port,
            http,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = &mut server.child
                && let Some(status) = child.try_wait()?
            {
                bail!("{MOTO_BINARY} exited during startup with {status}");
            }
            if server.http.get(server.endpoint()).send().await.is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("{MOTO_BINARY} did not answer on port {port} within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a bucket with one plain PUT (names need 3 characters at least).
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let response = self
            .http
            .put(format!("{}/{bucket}", self.endpoint()))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "creating bucket {bucket}: {}",
            response.status()
        );
        Ok(())
    }

    /// Stores one object.
    pub async fn put(&self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) -> Result<()> {
        let response = self
            .http
            .put(format!("{}/{bucket}/{key}", self.endpoint()))
            .body(body.into())
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "PUT {key}: {}", response.status());
        Ok(())
    }

    /// Every key under `prefix`, sorted (all pages).
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = reqwest::Url::parse(&format!("{}/{bucket}", self.endpoint()))?;
            url.query_pairs_mut()
                .append_pair("list-type", "2")
                .append_pair("prefix", prefix);
            if let Some(t) = &token {
                url.query_pairs_mut().append_pair("continuation-token", t);
            }
            let text = self
                .http
                .get(url)
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?;
            keys.extend(xml_values(&text, "Key"));
            token = xml_values(&text, "NextContinuationToken").into_iter().next();
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Copies every object under `prefix` from one bucket into another (same keys).
    pub async fn copy_bucket(&self, from: &str, to: &str, prefix: &str) -> Result<usize> {
        let keys = self.keys(from, prefix).await?;
        for key in &keys {
            let body = self
                .http
                .get(format!("{}/{from}/{key}", self.endpoint()))
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            self.put(to, key, body.to_vec()).await?;
        }
        Ok(keys.len())
    }

    /// Stops the server (SIGKILL; it keeps nothing on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The text of every `<tag>…</tag>` element (S3 listings are flat enough for this), with the
/// XML entities S3 escapes in keys decoded.
pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(
            after[..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &after[end + close.len()..];
    }
    out
}

/// Sends `request` (as a [`crate::LoopbackServer`] received it) to `127.0.0.1:port` and returns
/// the answer, for proxies that count, delay or falsify S3 traffic in front of moto. Plain
/// HTTP/1.1, one request per connection.
pub fn forward(port: u16, request: &crate::RecordedRequest) -> Result<crate::CannedResponse> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
    for (name, value) in &request.headers {
        if !matches!(
            name.as_str(),
            "connection" | "content-length" | "transfer-encoding"
        ) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        request.body.len()
    ));
    stream.write_all(head.as_bytes())?;
    stream.write_all(&request.body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers in the upstream answer")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("no status line in the upstream answer")?;
    let mut response = crate::CannedResponse::new(status);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            // The loopback server writes its own framing.
            if !name.eq_ignore_ascii_case("content-length")
                && !name.eq_ignore_ascii_case("connection")
                && !name.eq_ignore_ascii_case("transfer-encoding")
            {
                response = response.header(name, value.trim());
            }
        }
    }
    Ok(response.body(raw[split + 4..].to_vec()))
}
