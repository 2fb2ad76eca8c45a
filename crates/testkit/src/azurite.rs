//! An Azure Blob Storage server on loopback for object-storage tests: Azurite's blob service
//! (npm `azurite`, binary `azurite-blob`), which stores blobs under a temporary folder. Debian's
//! registry has no `azure` driver, so tests copy a tree the real registry wrote to its filesystem
//! into a container with [`Azurite::upload_tree`] and read it back with [`Azurite::keys`]. These
//! helpers sign their requests themselves (Shared Key with the emulator's well-known account) and
//! share no code with regsweep, which reaches Azurite through `object_store`.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;

use crate::moto::xml_values;
use crate::process::{find_on_path, spawn_guarded};

pub const AZURITE_BINARY: &str = "azurite-blob";
/// The emulator's fixed account and key (public, documented by Microsoft for Azurite).
pub const ACCOUNT: &str = "devstoreaccount1";
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const API_VERSION: &str = "2021-08-06";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const INSTALL: &str = "install it with `npm install -g azurite` (or `npm install azurite` in the repository)";

/// Locates `azurite-blob`: on PATH, else in the repository's `node_modules/.bin` (a local
/// `npm install azurite`), else fails loudly with the install command.
pub fn find_azurite() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = find_on_path(AZURITE_BINARY, &path) {
        return Ok(found);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let local = workspace.join("node_modules/.bin").join(AZURITE_BINARY);
    if local.is_file() {
        return Ok(local);
    }
    Err(anyhow!(
        "{AZURITE_BINARY} not found on PATH nor in node_modules/.bin: {INSTALL}"
    ))
}

/// A running `azurite-blob`; dropping it kills the process and removes its data.
pub struct Azurite {
    child: Option<Child>,
    port: u16,
    http: reqwest::Client,
    _data: tempfile::TempDir,
}

impl std::fmt::Debug for Azurite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Azurite")
            .field("endpoint", &self.endpoint())
            .finish()
    }
}

impl Azurite {
    /// Starts the blob service on a free `127.0.0.1` port and waits until it answers.
    pub async fn start() -> Result<Self> {
        let binary = find_azurite()?;
        let data = tempfile::Builder::new().prefix("regsweep-azurite-").tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut cmd = Command::new(&binary);
        cmd.args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--location",
        ])
        .arg(data.path())
        // Newer clients send API versions this Azurite may not know; relaxed header checks.
        .args(["--skipApiVersionCheck", "--loose", "--silent"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = spawn_guarded(cmd).with_context(|| format!("spawning {}", binary.display()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let mut server = Self {
            child: Some(child),
            port,
            http,
            _data: data,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = &mut server.child
                && let Some(status) = child.try_wait()?
            {
                bail!("{AZURITE_BINARY} exited during startup with {status}: {INSTALL}");
            }
            // Any HTTP answer (an anonymous request is refused) means it listens.
            if server.http.get(server.endpoint()).send().await.is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("{AZURITE_BINARY} did not answer on port {port} within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:PORT`, the emulator's blob endpoint (the account is the first path
    /// segment of every URL).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment that points `object_store` (and so regsweep) at this emulator with its
    /// well-known account.
    pub fn client_env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
            ("AZURITE_BLOB_STORAGE_URL".into(), self.endpoint()),
        ]
    }

    /// Creates a container (object_store cannot).
    pub async fn create_container(&self, container: &str) -> Result<()> {
        let response = self
            .send(
                reqwest::Method::PUT,
                container,
                &[("restype", "container")],
                Vec::new(),
            )
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "creating container {container}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Stores one block blob.
    pub async fn put(&self, container: &str, key: &str, body: Vec<u8>) -> Result<()> {
        let response = self
            .send(reqwest::Method::PUT, &format!("{container}/{key}"), &[], body)
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "PUT {key}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Uploads every file below `dir` as `prefix/<relative path>`; returns how many.
    pub async fn upload_tree(&self, container: &str, prefix: &str, dir: &Path) -> Result<usize> {
        let files = files_below(dir)?;
        for relative in &files {
            let key = if prefix.is_empty() {
                relative.clone()
            } else {
                format!("{prefix}/{relative}")
            };
            self.put(container, &key, std::fs::read(dir.join(relative))?)
                .await?;
        }
        Ok(files.len())
    }

    /// Every blob name under `prefix`, sorted (all pages).
    pub async fn keys(&self, container: &str, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut marker = String::new();
        loop {
            let mut query = vec![("comp", "list"), ("prefix", prefix), ("restype", "container")];
            if !marker.is_empty() {
                query.push(("marker", &marker));
            }
            let response = self
                .send(reqwest::Method::GET, container, &query, Vec::new())
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "listing {container}: {}",
                response.status()
            );
            let text = response.text().await?;
            keys.extend(xml_values(&text, "Name"));
            marker = xml_values(&text, "NextMarker")
                .into_iter()
                .next()
                .unwrap_or_default();
            if marker.is_empty() {
                break;
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// One request signed with the account's Shared Key. `path` is `container[/blob]`; `query`
    /// is sorted by name, as the signature's canonical resource lists it.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<reqwest::Response> {
        let mut url = reqwest::Url::parse(&format!("{}/{ACCOUNT}/{path}", self.endpoint()))?;
        for (name, value) in query {
            url.query_pairs_mut().append_pair(name, value);
        }
        let date = http_date(SystemTime::now());
        let is_blob_put = method == reqwest::Method::PUT && query.is_empty();
        let mut headers = vec![("x-ms-date", date), ("x-ms-version", API_VERSION.to_owned())];
        if is_blob_put {
            headers.push(("x-ms-blob-type", "BlockBlob".to_owned()));
        }
        headers.sort();
        let content_type = if is_blob_put {
            "application/octet-stream"
        } else {
            ""
        };
        // Shared Key string to sign (2015-02-21 and later: an empty body has an empty length).
        let length = if body.is_empty() {
            String::new()
        } else {
            body.len().to_string()
        };
        let mut to_sign = format!("{method}\n\n\n{length}\n\n{content_type}\n\n\n\n\n\n\n");
        for (name, value) in &headers {
            to_sign.push_str(&format!("{name}:{value}\n"));
        }
        to_sign.push_str(&format!("/{ACCOUNT}{}", url.path()));
        for (name, value) in query {
            to_sign.push_str(&format!("\n{name}:{value}"));
        }
        let engine = base64::engine::general_purpose::STANDARD;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &engine.decode(ACCOUNT_KEY)?);
        let signature = engine.encode(ring::hmac::sign(&key, to_sign.as_bytes()).as_ref());
        let mut request = self
            .http
            .request(method, url)
            .header("Authorization", format!("SharedKey {ACCOUNT}:{signature}"));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if !content_type.is_empty() {
            request = request.header("Content-Type", content_type);
        }
        Ok(request.body(body).send().await?)
    }

    /// Stops the server (SIGKILL; its data folder goes with the value).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every file below `dir`, as paths relative to it: the keys a copy of the tree into a bucket or
/// container has.
pub fn files_below(dir: &Path) -> Result<BTreeSet<String>> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) -> Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, base, out)?;
            } else {
                let relative = path.strip_prefix(base)?.to_str().context("non-UTF-8 path")?;
                out.insert(relative.to_owned());
            }
        }
        Ok(())
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// An RFC 1123 date (`Wed, 02 Dec 2026 00:18:45 GMT`), as `x-ms-date` wants it.
fn http_date(at: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    // `YYYY-MM-DDTHH:MM:SSZ`
    let iso = crate::image::rfc3339_utc(secs);
    let month: usize = iso[5..7].parse().unwrap_or(1);
    format!(
        "{}, {} {} {} {} GMT",
        DAYS[secs.div_euclid(86_400).rem_euclid(7) as usize],
        &iso[8..10],
        MONTHS[month - 1],
        &iso[0..4],
        &iso[11..19]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let at = UNIX_EPOCH + Duration::from_secs(1_796_170_725);
        assert_eq!(http_date(at), "Wed, 02 Dec 2026 00:18:45 GMT");
    }
}
