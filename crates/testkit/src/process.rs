//! Running distribution's `docker-registry serve` as a child process on a free loopback port.
//!
//! Leaking a registry process is the failure this module exists to prevent, at three levels:
//! `stop()` (SIGTERM, then SIGKILL), `Drop` (SIGKILL + reap), and — for a test binary that panics
//! in a static, aborts or is killed — `PR_SET_PDEATHSIG`, which makes the kernel kill the registry
//! when the thread that forked it dies. Because that signal is tied to the forking *thread*, not the
//! process, children are forked by one dedicated thread that lives as long as the process (a
//! registry started from a short-lived `#[tokio::test]` thread and kept in a static would otherwise
//! be killed when that test ends).

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::config::{self, ConfigInputs, INSTANCE_HEADER, RegistryOptions, TlsFiles};
use crate::push::Pusher;

/// Name of distribution's binary in the Debian package.
pub const REGISTRY_BINARY: &str = "docker-registry";

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const START_ATTEMPTS: usize = 5;

/// A real distribution 2.8 registry on `127.0.0.1:<free port>`, with its own temp directory
/// (config, storage, log, certificates, htpasswd). Dropping it kills the process and removes the
/// directory (a caller-provided `storage_root` is left alone).
pub struct TestRegistry {
    dir: TempDir,
    opts: RegistryOptions,
    binary: PathBuf,
    storage_root: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    tls: Option<TlsFiles>,
    htpasswd_path: Option<PathBuf>,
    instance_id: String,
    port: u16,
    child: Option<Child>,
}

impl std::fmt::Debug for TestRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRegistry")
            .field("base_url", &self.base_url())
            .field("pid", &self.pid())
            .field("dir", &self.dir.path())
            .field("storage_root", &self.storage_root)
            .finish()
    }
}

impl TestRegistry {
    /// Start a registry and wait (up to 20 s) until `GET /v2/` answers 200 or 401 from *this*
    /// process. Retries on a new port if the chosen one was taken meanwhile.
    pub async fn start(opts: RegistryOptions) -> Result<Self> {
        let binary = find_registry_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("regsweep-testkit-")
            .tempdir()
            .context("creating the registry temp dir")?;
        let storage_root = match &opts.storage_root {
            Some(root) => root.clone(),
            None => dir.path().join("storage"),
        };
        std::fs::create_dir_all(&storage_root)
            .with_context(|| format!("creating storage root {}", storage_root.display()))?;
        let tls = if opts.tls {
            Some(config::write_tls_files(
                &dir.path().join("tls"),
                opts.tls_self_signed,
            )?)
        } else {
            None
        };
        anyhow::ensure!(
            opts.htpasswd.is_none() || opts.token_auth.is_none(),
            "a registry has one auth method: htpasswd or token, not both"
        );
        let htpasswd_path = match &opts.htpasswd {
            Some(users) => {
                anyhow::ensure!(!users.is_empty(), "htpasswd option given without users");
                let p = dir.path().join("htpasswd");
                std::fs::write(&p, config::htpasswd_content(users)?)?;
                Some(p)
            }
            None => None,
        };
        let mut reg = TestRegistry {
            config_path: dir.path().join("config.yml"),
            log_path: dir.path().join("registry.log"),
            instance_id: instance_id(),
            dir,
            opts,
            binary,
            storage_root,
            tls,
            htpasswd_path,
            port: 0,
            child: None,
        };
        reg.launch(None).await?;
        Ok(reg)
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, or `https://…` with TLS. No trailing slash.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// The filesystem driver's `rootdirectory` (holds `docker/registry/v2/…` after a first push).
    pub fn storage_root(&self) -> &Path {
        &self.storage_root
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// stdout + stderr of the registry (all runs, appended).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The registry's temp directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.opts
    }

    /// PEM of the CA that signed the server certificate (valid for `127.0.0.1` and `localhost`).
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca_cert.as_path())
    }

    /// Directory with `ca.crt`, as `skopeo --cert-dir` / docker `certs.d` expect.
    pub fn cert_dir(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.cert_dir.as_path())
    }

    /// The first htpasswd user, or the token server's admin user, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        if let Some(token) = &self.opts.token_auth {
            return Some((token.user.0.as_str(), token.user.1.as_str()));
        }
        self.opts
            .htpasswd
            .as_ref()
            .and_then(|u| u.first())
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// PID of the running registry process, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Last `max_bytes` of the registry log, for error messages.
    pub fn log_tail(&self, max_bytes: u64) -> String {
        log_tail(&self.log_path, max_bytes)
    }

    /// A pusher for this registry: basic auth with the first htpasswd user (or bearer tokens for
    /// the token server's admin user), trusting the test CA.
    pub fn client(&self) -> Pusher {
        self.try_client()
            .expect("building the HTTP client for the test registry")
    }

    /// Like [`client`](Self::client), without credentials even if htpasswd is on.
    pub fn anonymous_client(&self) -> Pusher {
        self.build_client(None)
            .expect("building the HTTP client for the test registry")
    }

    fn try_client(&self) -> Result<Pusher> {
        self.build_client(self.credentials())
    }

    fn build_client(&self, creds: Option<(&str, &str)>) -> Result<Pusher> {
        let ca = match &self.tls {
            Some(t) => Some(std::fs::read(&t.ca_cert).context("reading the test CA")?),
            None => None,
        };
        let self_signed = self.tls.as_ref().is_some_and(|t| t.self_signed);
        let pusher = Pusher::connect_trusting(&self.base_url(), creds, ca.as_deref(), self_signed)?;
        Ok(match &self.opts.token_auth {
            Some(token) => pusher.with_token_auth(&token.realm, &token.service)?,
            None => pusher,
        })
    }

    /// SIGTERM the registry, wait up to 10 s, then SIGKILL. Idempotent.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        signal(&child, libc::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        child.kill().ok();
        child.wait().context("reaping the registry after SIGKILL")?;
        Ok(())
    }

    /// Start again with the same config and storage; same port if still free, else a new one
    /// (then [`base_url`](Self::base_url) changes — take a new [`client`](Self::client)).
    pub async fn start_again(&mut self) -> Result<()> {
        self.stop().await?;
        let port = self.port;
        self.launch(Some(port)).await
    }

    /// Run `docker-registry garbage-collect [--dry-run] [--delete-untagged] config.yml` on this
    /// registry's storage. Stop the registry first (distribution's GC assumes nothing writes
    /// meanwhile); this does not check. A non-zero exit is returned, not turned into an error.
    pub async fn garbage_collect(&self, dry_run: bool, delete_untagged: bool) -> Result<Output> {
        let mut std_cmd = Command::new(&self.binary);
        minimal_env_for_s3(&mut std_cmd, &self.opts);
        let mut cmd = tokio::process::Command::from(std_cmd);
        cmd.arg("garbage-collect");
        if dry_run {
            cmd.arg("--dry-run");
        }
        if delete_untagged {
            cmd.arg("--delete-untagged");
        }
        cmd.arg(&self.config_path)
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd.output()
            .await
            .with_context(|| format!("running {} garbage-collect", self.binary.display()))
    }

    /// Spawn and wait for readiness, retrying on a new port when the port was lost to a race.
    async fn launch(&mut self, preferred_port: Option<u16>) -> Result<()> {
        let mut last_err = None;
        for attempt in 0..START_ATTEMPTS {
            let port = match (attempt, preferred_port) {
                (0, Some(p)) if port_is_free(p) => p,
                _ => free_port()?,
            };
            match self.launch_on(port).await {
                Ok(()) => return Ok(()),
                Err(LaunchError::PortTaken(e)) => last_err = Some(e),
                Err(LaunchError::Fatal(e)) => return Err(e),
            }
        }
        Err(last_err
            .unwrap_or_else(|| anyhow!("no attempt made"))
            .context(format!("registry failed to bind a port {START_ATTEMPTS} times")))
    }

    async fn launch_on(&mut self, port: u16) -> Result<(), LaunchError> {
        self.port = port;
        let yaml = config::render_config(&ConfigInputs {
            opts: &self.opts,
            port,
            storage_root: &self.storage_root,
            instance_id: &self.instance_id,
            tls: self.tls.as_ref(),
            htpasswd: self.htpasswd_path.as_deref(),
        });
        std::fs::write(&self.config_path, yaml)
            .context("writing config.yml")
            .map_err(LaunchError::Fatal)?;

        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .context("opening the registry log")
            .map_err(LaunchError::Fatal)?;
        let log_start = log.seek(SeekFrom::End(0)).unwrap_or(0);
        let log_err = log.try_clone().map_err(|e| LaunchError::Fatal(e.into()))?;

        let mut cmd = Command::new(&self.binary);
        minimal_env_for_s3(&mut cmd, &self.opts);
        cmd.arg("serve")
            .arg(&self.config_path)
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = spawn_guarded(cmd)
            .with_context(|| format!("spawning {} serve", self.binary.display()))
            .map_err(LaunchError::Fatal)?;
        self.child = Some(child);

        match self.wait_ready(log_start).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.kill_now();
                let tail = log_tail_from(&self.log_path, log_start, 4096);
                if tail.contains("address already in use") {
                    Err(LaunchError::PortTaken(anyhow!(
                        "port {port} already in use; registry log:\n{tail}"
                    )))
                } else {
                    Err(LaunchError::Fatal(e.context(format!(
                        "docker-registry did not become ready on {}; config {}; log tail:\n{tail}",
                        self.base_url(),
                        self.config_path.display()
                    ))))
                }
            }
        }
    }

    /// Poll `GET /v2/` until our instance header comes back with 200/401, the child exits, or the
    /// deadline passes.
    async fn wait_ready(&mut self, log_start: u64) -> Result<()> {
        let probe = self.build_client(None)?;
        let url = format!("{}/v2/", self.base_url());
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                bail!("registry exited during startup with {status}");
            }
            if let Ok(resp) = probe.probe(&url).await {
                let ours = resp
                    .headers()
                    .get(INSTANCE_HEADER)
                    .is_some_and(|v| v.as_bytes() == self.instance_id.as_bytes());
                let status = resp.status().as_u16();
                if ours && (status == 200 || status == 401) {
                    return Ok(());
                }
                if ours {
                    bail!("GET /v2/ answered {status}");
                }
                // Someone else's server on this port: ours will fail to bind and exit.
            }
            if log_tail_from(&self.log_path, log_start, 4096).contains("address already in use") {
                bail!("address already in use");
            }
            if Instant::now() > deadline {
                bail!("timed out after {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        // No async in Drop: SIGKILL and reap synchronously (takes milliseconds).
        self.kill_now();
    }
}

enum LaunchError {
    PortTaken(anyhow::Error),
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for LaunchError {
    fn from(e: anyhow::Error) -> Self {
        LaunchError::Fatal(e)
    }
}

/// With the `s3` driver the registry gets an explicit, minimal environment: the AWS SDK it
/// embeds reads `AWS_*` variables (with `AWS_CA_BUNDLE` set it panics at start), and the test
/// machine's own AWS settings must not reach the test server.
fn minimal_env_for_s3(cmd: &mut Command, opts: &RegistryOptions) {
    if opts.s3.is_some() {
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
    }
}

/// Locate `docker-registry` on `PATH`, or fail loudly with the install command (never a skip).
pub fn find_registry_binary() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    find_on_path(REGISTRY_BINARY, &path).ok_or_else(|| {
        anyhow!("{REGISTRY_BINARY} not found on PATH: install it with `apt-get install -y docker-registry`")
    })
}

pub(crate) fn find_on_path(name: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::split_paths(path).map(|dir| dir.join(name)).find(|p| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// A port the kernel just handed out for `127.0.0.1`. It is released before the registry binds
/// it, so a race is possible; `launch` detects it and retries.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to pick a free port")?;
    Ok(l.local_addr()?.port())
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn instance_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:016x}",
        crate::image::mix(nanos ^ u64::from(std::process::id()), n)
    )
}

fn signal(child: &Child, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: plain syscall on a pid we spawned and have not reaped yet (so it cannot have
        // been recycled for another process).
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

fn log_tail(path: &Path, max_bytes: u64) -> String {
    log_tail_from(path, 0, max_bytes)
}

/// The last `max_bytes` of `path` after byte offset `start`.
fn log_tail_from(path: &Path, start: u64, max_bytes: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = start.max(len.saturating_sub(max_bytes));
    if f.seek(SeekFrom::Start(from)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok();
    String::from_utf8_lossy(&buf).into_owned()
}

// ---- the spawner thread -------------------------------------------------------------------------

struct SpawnRequest {
    cmd: Command,
    reply: mpsc::Sender<std::io::Result<Child>>,
}

/// Spawn `cmd` from the long-lived spawner thread, in its own process group (a Ctrl-C in a
/// terminal reaches only our process, which then stops the registry itself), with
/// `PR_SET_PDEATHSIG = SIGKILL` on Linux.
pub(crate) fn spawn_guarded(mut cmd: Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt as _;
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs between fork and exec and only calls async-signal-safe
        // functions (prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("parent exited before exec"));
                }
                Ok(())
            });
        }
    }
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("regsweep-testkit-spawner".into())
            .spawn(move || {
                for mut req in rx {
                    let _ = req.reply.send(req.cmd.spawn());
                }
            })
            .expect("starting the spawner thread");
        tx
    });
    let (reply, rx) = mpsc::channel();
    tx.send(SpawnRequest { cmd, reply })
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?
}

/// Copies a directory tree (a registry's storage root, to give several registries the same
/// content without pushing it again).
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_on_path_only_finds_executables() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        let path = std::env::join_paths([dir.path()]).unwrap();
        assert_eq!(find_on_path("tool", &path), None);
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_on_path("tool", &path), Some(exe));
        assert_eq!(find_on_path("docker-registry", &path), None);
    }

    #[test]
    fn instance_ids_differ() {
        assert_ne!(instance_id(), instance_id());
    }
}
