//! A fault-injecting HTTP proxy on `127.0.0.1` in front of a real registry: it forwards each
//! request and, at a configured rate, answers 503 or 429 (with `Retry-After`) instead, resets the
//! connection in the middle of the response, cuts the body short (the declared length is not
//! sent, then the connection closes) or stalls before the body for a bounded time.
//!
//! Deterministic for a seed: whether a request is faulted, and how, depends only on the seed,
//! the request line and how many times that request line was seen before, not on the order in
//! which concurrent requests arrive. It counts what it injected, per kind.
//!
//! 503 and 429 are answered without forwarding (the registry never sees the request, as when a
//! gateway refuses it); the other faults forward first, so the request takes effect and only its
//! answer is lost, which is the hard case for a client that deletes.
//!
//! One request per client connection (`Connection: close`), plain HTTP only, request bodies
//! with `Content-Length` (what regsweep and the harness send).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request or response handled (fixtures are small).
const MAX_MESSAGE: usize = 64 << 20;
/// Upper bound on the time one forwarded exchange with the registry may take.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// The kinds of fault, in the order of [`FaultCounts::by_kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// 503 Service Unavailable, not forwarded.
    ServerError,
    /// 429 Too Many Requests with `Retry-After`, not forwarded.
    TooManyRequests,
    /// Forwarded; the response is sent up to half of its body (or half of its head when it has
    /// no body), then the connection is reset.
    ResetMidBody,
    /// Forwarded; the head promises the whole body, half is sent, then the connection closes.
    TruncatedBody,
    /// Forwarded; the head is sent, then nothing for [`FaultOptions::stall`], then the rest.
    Stall,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::ServerError,
        FaultKind::TooManyRequests,
        FaultKind::ResetMidBody,
        FaultKind::TruncatedBody,
        FaultKind::Stall,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::ServerError => "503",
            FaultKind::TooManyRequests => "429",
            FaultKind::ResetMidBody => "reset",
            FaultKind::TruncatedBody => "truncated",
            FaultKind::Stall => "stall",
        }
    }
}

/// How the proxy misbehaves.
#[derive(Debug, Clone)]
pub struct FaultOptions {
    /// Share of requests faulted, 0.0 to 1.0.
    pub rate: f64,
    pub seed: u64,
    /// The faults to choose from (uniformly).
    pub kinds: Vec<FaultKind>,
    /// How long a stall lasts; keep it short and above the client's timeout to make the
    /// client give up on the attempt.
    pub stall: Duration,
    /// `Retry-After` seconds sent with 429.
    pub retry_after_secs: u32,
    /// Fault only the first this many sightings of each request line (`None`: any sighting),
    /// so that a rate of 1.0 faults each request once and lets its retry through.
    pub only_first: Option<u64>,
}

impl FaultOptions {
    pub fn new(rate: f64, seed: u64) -> Self {
        Self {
            rate,
            seed,
            kinds: FaultKind::ALL.to_vec(),
            stall: Duration::from_millis(1500),
            retry_after_secs: 1,
            only_first: None,
        }
    }

    /// Only these kinds of fault.
    pub fn kinds(mut self, kinds: &[FaultKind]) -> Self {
        self.kinds = kinds.to_vec();
        self
    }

    /// Fault only the first `n` sightings of each request line.
    pub fn only_first(mut self, n: u64) -> Self {
        self.only_first = Some(n);
        self
    }
}

/// What the proxy did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Requests received.
    pub requests: u64,
    /// Faults injected, per kind, in the order of [`FaultKind::ALL`].
    pub by_kind: [u64; 5],
}

impl FaultCounts {
    pub fn faults(&self) -> u64 {
        self.by_kind.iter().sum()
    }

    pub fn of(&self, kind: FaultKind) -> u64 {
        self.by_kind[index(kind)]
    }
}

impl std::fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} requests, {} faults (", self.requests, self.faults())?;
        for (i, kind) in FaultKind::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{} {}", kind.name(), self.by_kind[i])?;
        }
        f.write_str(")")
    }
}

fn index(kind: FaultKind) -> usize {
    FaultKind::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("every kind is in ALL")
}

struct State {
    options: FaultOptions,
    upstream: SocketAddr,
    requests: AtomicU64,
    by_kind: [AtomicU64; 5],
    /// Times each request line was seen, for per-request determinism.
    seen: Mutex<HashMap<String, u64>>,
    /// Faults are injected only while this is set; tests switch it off to read through the
    /// proxy undisturbed.
    enabled: std::sync::atomic::AtomicBool,
}

/// A running proxy; dropping it stops accepting connections.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` (a loopback address).
    pub async fn start(upstream: SocketAddr, options: FaultOptions) -> Result<Self> {
        if !upstream.ip().is_loopback() {
            bail!("the fault proxy forwards to loopback only, not {upstream}");
        }
        if !(0.0..=1.0).contains(&options.rate) || options.kinds.is_empty() {
            bail!("fault rate must be within 0..=1 and at least one kind given");
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fault proxy")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            options,
            upstream,
            requests: AtomicU64::new(0),
            by_kind: Default::default(),
            seen: Mutex::new(HashMap::new()),
            enabled: std::sync::atomic::AtomicBool::new(true),
        });
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = accept_state.clone();
                tokio::spawn(async move {
                    // A failed exchange is what some faults are for; nothing to report.
                    let _ = serve(client, &state).await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// `127.0.0.1:port`, to use as the registry host.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn counts(&self) -> FaultCounts {
        let mut by_kind = [0; 5];
        for (slot, counter) in by_kind.iter_mut().zip(&self.state.by_kind) {
            *slot = counter.load(Ordering::Relaxed);
        }
        FaultCounts {
            requests: self.state.requests.load(Ordering::Relaxed),
            by_kind,
        }
    }

    /// Turns fault injection on or off (requests are forwarded either way).
    pub fn set_enabled(&self, enabled: bool) {
        self.state.enabled.store(enabled, Ordering::Relaxed);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fault for the `occurrence`-th sighting of `request_line`, if any.
fn decide(options: &FaultOptions, request_line: &str, occurrence: u64) -> Option<FaultKind> {
    if options.only_first.is_some_and(|n| occurrence > n) {
        return None;
    }
    // SHA-256 rather than std's hasher, whose output may change between Rust releases.
    let mut hasher = Sha256::new();
    hasher.update(options.seed.to_le_bytes());
    hasher.update(request_line.as_bytes());
    hasher.update(occurrence.to_le_bytes());
    let digest = hasher.finalize();
    let h = u64::from_le_bytes(digest[..8].try_into().expect("a SHA-256 digest has 8 bytes"));
    // The top 53 bits as a uniform fraction; the low bits pick the kind.
    let fraction = (h >> 11) as f64 / (1u64 << 53) as f64;
    (fraction < options.rate).then(|| options.kinds[(h % options.kinds.len() as u64) as usize])
}

async fn serve(mut client: TcpStream, state: &State) -> Result<()> {
    let request = read_request(&mut client).await?;
    state.requests.fetch_add(1, Ordering::Relaxed);
    let line = request.line.clone();
    let occurrence = {
        let mut seen = state.seen.lock().unwrap_or_else(|e| e.into_inner());
        let n = seen.entry(line.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let fault = if state.enabled.load(Ordering::Relaxed) {
        decide(&state.options, &line, occurrence)
    } else {
        None
    };
    if let Some(kind) = fault {
        state.by_kind[index(kind)].fetch_add(1, Ordering::Relaxed);
    }
    match fault {
        Some(FaultKind::ServerError) => {
            let body = r#"{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}"#;
            let head = format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            client.write_all(head.as_bytes()).await?;
            client.write_all(body.as_bytes()).await?;
            client.shutdown().await?;
            return Ok(());
        }
        Some(FaultKind::TooManyRequests) => {
            let head = format!(
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                state.options.retry_after_secs
            );
            client.write_all(head.as_bytes()).await?;
            client.shutdown().await?;
            return Ok(());
        }
        _ => {}
    }
    let response = tokio::time::timeout(UPSTREAM_TIMEOUT, forward(&request.bytes, state.upstream))
        .await
        .context("the registry took too long")??;
    let head_end = find(&response, b"\r\n\r\n").map_or(response.len(), |i| i + 4);
    let (head, body) = response.split_at(head_end);
    // Where a reset or truncation cuts: half of the body, or half of the head when there is no
    // body (HEAD, most DELETEs), so the answer is always incomplete.
    let cut = if body.is_empty() {
        &head[..head.len() / 2]
    } else {
        &response[..head_end + body.len() / 2]
    };
    match fault {
        Some(FaultKind::ResetMidBody) => {
            client.write_all(cut).await?;
            client.flush().await?;
            // SO_LINGER 0: closing sends RST instead of FIN.
            client.set_zero_linger()?;
            drop(client);
        }
        Some(FaultKind::TruncatedBody) => {
            client.write_all(cut).await?;
            client.shutdown().await?;
        }
        Some(FaultKind::Stall) => {
            client.write_all(head).await?;
            client.flush().await?;
            tokio::time::sleep(state.options.stall).await;
            client.write_all(body).await?;
            client.shutdown().await?;
        }
        _ => {
            client.write_all(&response).await?;
            client.shutdown().await?;
        }
    }
    Ok(())
}

/// A request as read from the client, rewritten to close its connection after the answer.
struct ProxiedRequest {
    /// `METHOD target`, for deciding faults.
    line: String,
    bytes: Vec<u8>,
}

async fn read_request(client: &mut TcpStream) -> Result<ProxiedRequest> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_MESSAGE {
            bail!("request head too large");
        }
        let mut chunk = [0u8; 8192];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            bail!("the client closed before sending a request");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut length = 0usize;
    let mut rewritten = format!("{request_line}\r\n");
    for header in lines.filter(|l| !l.is_empty()) {
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().context("bad Content-Length")?;
        }
        if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("chunked request bodies are not supported by the fault proxy");
        }
        if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        rewritten.push_str(header);
        rewritten.push_str("\r\n");
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    if length > MAX_MESSAGE {
        bail!("request body too large");
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; (length - body.len()).min(1 << 16)];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            bail!("the client closed in the middle of the request body");
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let mut bytes = rewritten.into_bytes();
    bytes.extend_from_slice(&body[..length]);
    let mut parts = request_line.split(' ');
    let line = format!(
        "{} {}",
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default()
    );
    Ok(ProxiedRequest { line, bytes })
}

/// Sends the request on a new connection and reads the whole answer (the registry closes the
/// connection after it, as the request asks).
async fn forward(request: &[u8], upstream: SocketAddr) -> Result<Vec<u8>> {
    let mut registry = TcpStream::connect(upstream)
        .await
        .with_context(|| format!("connecting to the registry at {upstream}"))?;
    registry.write_all(request).await?;
    let mut response = Vec::new();
    (&mut registry)
        .take(MAX_MESSAGE as u64 + 1)
        .read_to_end(&mut response)
        .await?;
    if response.len() > MAX_MESSAGE {
        bail!("response too large");
    }
    Ok(response)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_deterministic_and_near_the_rate() {
        let options = FaultOptions::new(0.1, 7);
        let a: Vec<_> = (0..2000)
            .map(|i| decide(&options, &format!("GET /v2/r{}/tags/list", i % 50), i / 50))
            .collect();
        let b: Vec<_> = (0..2000)
            .map(|i| decide(&options, &format!("GET /v2/r{}/tags/list", i % 50), i / 50))
            .collect();
        assert_eq!(a, b);
        let faults = a.iter().filter(|f| f.is_some()).count();
        assert!((120..=280).contains(&faults), "{faults} faults of 2000 at 10%");
        for kind in FaultKind::ALL {
            assert!(a.contains(&Some(kind)), "{kind:?} is chosen sometimes");
        }
        let other = FaultOptions::new(0.1, 8);
        let c: Vec<_> = (0..2000)
            .map(|i| decide(&other, &format!("GET /v2/r{}/tags/list", i % 50), i / 50))
            .collect();
        assert_ne!(a, c, "another seed, other faults");
        assert!(decide(&FaultOptions::new(0.0, 1), "GET /", 1).is_none());
        assert!(decide(&FaultOptions::new(1.0, 1), "GET /", 1).is_some());
        let once = FaultOptions::new(1.0, 1).only_first(1);
        assert!(decide(&once, "GET /", 1).is_some());
        assert!(decide(&once, "GET /", 2).is_none());
    }
}
