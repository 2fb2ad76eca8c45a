//! Finding a registry's credentials where `docker login` and `podman login` leave them:
//! podman/containers `auth.json` and docker's `config.json`, with their `auths` entries,
//! `credsStore` and `credHelpers` (the `docker-credential-NAME get` protocol).
//!
//! Order, first match wins (documented in `docs/auth.md`):
//! 1. an explicit auth file (`--authfile`, `REGISTRY_AUTH_FILE`): that file only, as podman does;
//! 2. otherwise `$XDG_RUNTIME_DIR/containers/auth.json`, then
//!    `$XDG_CONFIG_HOME/containers/auth.json` (default `~/.config/containers/auth.json`), then
//!    docker's `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`).
//!
//! Within one file, docker's rules: a `credHelpers` entry for the host, else the `credsStore`
//! helper, else the `auths` entry. (When a helper has nothing for the host, an `auths` entry that
//! holds real credentials is used, where docker would find nothing.) Explicit flags and the
//! `REGSWEEP_*` environment variables come before all of this; that part is the CLI's.
//!
//! The credential-helper protocol is implemented here rather than with the `docker_credential`
//! crate: that crate turns every helper failure into one opaque error (so "helper not installed",
//! "nothing stored for this host" and "the keychain is locked" look alike), runs the helper with
//! no time limit, and gives no control over the server string sent; the protocol itself is one
//! process spawn and a JSON object.

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::environment::Environment;

use super::auth::{Credentials, IDENTITY_TOKEN_USER, base64_decode};

/// How long a credential helper may take (it may unlock a keychain or ask a GPG agent).
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);
/// The key docker uses for Docker Hub in `auths` and with credential helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// What helpers print on stdout when they have nothing for a server (docker-credential-helpers'
/// `credentials.NewErrCredentialsNotFound`).
const NOT_FOUND_MESSAGE: &str = "credentials not found in native keychain";

/// Where to look. [`CredentialSources::from_env`] fills it the way docker and podman do; tests
/// and embedders can point it anywhere.
#[derive(Debug, Clone, Default)]
pub struct CredentialSources {
    /// An explicit auth file (`--authfile`, `REGISTRY_AUTH_FILE`): when set, the only file read.
    pub auth_file: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`, default `$HOME/.config`.
    pub xdg_config_home: Option<PathBuf>,
    /// `$DOCKER_CONFIG`, default `$HOME/.docker`.
    pub docker_config_dir: Option<PathBuf>,
    /// `$PATH`, to find `docker-credential-*` helpers.
    pub path: Option<OsString>,
}

impl CredentialSources {
    /// The standard locations from `env`; `auth_file` overrides `REGISTRY_AUTH_FILE`.
    pub fn from_env(env: &Environment, auth_file: Option<PathBuf>) -> Self {
        let var = |name| env.get_os(name).map(PathBuf::from);
        let home = var("HOME");
        Self {
            auth_file: auth_file.or_else(|| var("REGISTRY_AUTH_FILE")),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            xdg_config_home: var("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config"))),
            docker_config_dir: var("DOCKER_CONFIG").or_else(|| home.as_ref().map(|h| h.join(".docker"))),
            path: env.get_os("PATH"),
        }
    }

    /// The files to read, in order.
    pub fn files(&self) -> Vec<PathBuf> {
        if let Some(file) = &self.auth_file {
            return vec![file.clone()];
        }
        let mut files = Vec::new();
        if let Some(dir) = &self.xdg_runtime_dir {
            files.push(dir.join("containers/auth.json"));
        }
        if let Some(dir) = &self.xdg_config_home {
            files.push(dir.join("containers/auth.json"));
        }
        if let Some(dir) = &self.docker_config_dir {
            files.push(dir.join("config.json"));
        }
        files
    }
}

/// Credentials found, and where (for `-v` logs and error messages; never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub credentials: Credentials,
    pub source: String,
}

/// Why looking up credentials failed. A missing file or a host without an entry is not an
/// error; an unreadable or malformed file, or a helper that fails, is (silently going anonymous
/// would only produce a confusing 401 later).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: String },
    #[error("{path} is not a valid credentials file: {reason}; fix it, or ignore the credential files")]
    Malformed { path: String, reason: String },
    #[error(
        "{path} names the credential helper `{helper}` ({field}), but docker-credential-{helper} is not on PATH; \
         install it, remove the entry, or ignore the credential files"
    )]
    HelperMissing {
        path: String,
        helper: String,
        field: &'static str,
    },
    #[error("credential helper docker-credential-{helper} failed for {server}: {reason}")]
    HelperFailed {
        helper: String,
        server: String,
        reason: String,
    },
}

impl CredentialsError {
    /// What the user can do about it, beyond the message.
    pub fn advice(&self) -> Option<super::Advice> {
        match self {
            CredentialsError::Malformed { .. } | CredentialsError::HelperMissing { .. } => {
                Some(super::Advice::IgnoreCredentialFiles)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Looks up credentials for the registry `host` (`host[:port]` as the user wrote it).
pub fn lookup(host: &str, sources: &CredentialSources) -> Result<Option<Found>, CredentialsError> {
    let host = host.to_ascii_lowercase();
    for path in sources.files() {
        let Some(config) = read_config(&path)? else {
            continue;
        };
        if let Some(found) = lookup_in(&config, &path, &host, sources)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn read_config(path: &Path) -> Result<Option<ConfigFile>, CredentialsError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CredentialsError::Read {
                path: path.display().to_string(),
                cause: e.to_string(),
            });
        }
    };
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| CredentialsError::Malformed {
            path: path.display().to_string(),
            // serde's messages can quote the offending value (possibly a secret): only where.
            reason: format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ),
        })
}

fn lookup_in(
    config: &ConfigFile,
    path: &Path,
    host: &str,
    sources: &CredentialSources,
) -> Result<Option<Found>, CredentialsError> {
    let wanted = canonical_host(host);
    let helper = config
        .cred_helpers
        .iter()
        .find(|(key, _)| normalize_key(key).as_deref() == Some(wanted.as_str()))
        .map(|(_, helper)| (helper.as_str(), "credHelpers"))
        .or_else(|| {
            config
                .creds_store
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| (s, "credsStore"))
        });
    if let Some((helper, field)) = helper {
        let server = helper_server(host);
        if let Some(credentials) = run_helper(helper, field, &server, path, sources)? {
            return Ok(Some(Found {
                credentials,
                source: format!(
                    "credential helper docker-credential-{helper} ({field} in {})",
                    path.display()
                ),
            }));
        }
    }
    for (key, entry) in &config.auths {
        if normalize_key(key).as_deref() != Some(wanted.as_str()) {
            continue;
        }
        if let Some(credentials) = decode_entry(entry, path, key)? {
            return Ok(Some(Found {
                credentials,
                source: format!("`auths` entry `{key}` in {}", path.display()),
            }));
        }
    }
    Ok(None)
}

fn decode_entry(entry: &AuthEntry, path: &Path, key: &str) -> Result<Option<Credentials>, CredentialsError> {
    let malformed = |reason: &str| CredentialsError::Malformed {
        path: path.display().to_string(),
        reason: format!("`auths` entry `{key}`: {reason}"),
    };
    if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::identity_token(token)));
    }
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64_decode(auth).ok_or_else(|| malformed("`auth` is not base64"))?;
        let text = String::from_utf8(decoded).map_err(|_| malformed("`auth` does not decode to text"))?;
        let (user, password) = text
            .split_once(':')
            .ok_or_else(|| malformed("`auth` does not decode to USER:PASSWORD"))?;
        if user.is_empty() || password.is_empty() {
            return Ok(None);
        }
        return Ok(Some(Credentials::new(user, password)));
    }
    match (entry.username.as_deref(), entry.password.as_deref()) {
        (Some(user), Some(password)) if !user.is_empty() && !password.is_empty() => {
            Ok(Some(Credentials::new(user, password)))
        }
        _ => Ok(None),
    }
}

/// Docker Hub answers to several names; credentials are filed under any of them.
fn canonical_host(host: &str) -> String {
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        other => other.to_owned(),
    }
}

/// The host a config key stands for: `https://host:port/v1/` and `http://host` (docker's legacy
/// forms) and `host:port` map to the host; `host/namespace` keys (podman's per-repository
/// entries) apply to one repository only and so never to a whole registry: `None`.
fn normalize_key(key: &str) -> Option<String> {
    let key = key.trim().to_ascii_lowercase();
    let (had_scheme, rest) = match key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
    {
        Some(rest) => (true, rest),
        None => (false, key.as_str()),
    };
    let host = match rest.split_once('/') {
        None => rest,
        Some((host, path)) if had_scheme || path.is_empty() => host,
        Some(_) => return None,
    };
    if host.is_empty() {
        return None;
    }
    Some(canonical_host(host))
}

/// The server string given to a helper: what `docker login` stored the credentials under.
fn helper_server(host: &str) -> String {
    if canonical_host(host) == "docker.io" {
        DOCKER_HUB_KEY.to_owned()
    } else {
        host.to_owned()
    }
}

fn valid_helper_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

fn find_on_path(name: &str, path: Option<&OsString>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::split_paths(path?).map(|dir| dir.join(name)).find(|p| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Runs `docker-credential-HELPER get` with `server` on stdin and reads
/// `{"ServerURL","Username","Secret"}` from stdout. `Ok(None)` when the helper has nothing for
/// the server.
fn run_helper(
    helper: &str,
    field: &'static str,
    server: &str,
    config: &Path,
    sources: &CredentialSources,
) -> Result<Option<Credentials>, CredentialsError> {
    let failed = |reason: String| CredentialsError::HelperFailed {
        helper: helper.to_owned(),
        server: server.to_owned(),
        reason,
    };
    if !valid_helper_name(helper) {
        return Err(CredentialsError::Malformed {
            path: config.display().to_string(),
            reason: format!("{field}: `{helper}` is not a credential helper name"),
        });
    }
    let program =
        find_on_path(&format!("docker-credential-{helper}"), sources.path.as_ref()).ok_or_else(|| {
            CredentialsError::HelperMissing {
                path: config.display().to_string(),
                helper: helper.to_owned(),
                field,
            }
        })?;
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot run {}: {e}", program.display())))?;
    // The protocol sends the server without a newline; helpers read stdin to its end.
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| failed(format!("cannot write to its standard input: {e}")))?;
    }
    // Read both pipes on threads so a chatty helper cannot block on a full pipe while we wait.
    let mut stdout_pipe = child.stdout.take();
    let mut stderr_pipe = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(pipe) = stdout_pipe.as_mut() {
            let _ = pipe.take(1 << 20).read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(pipe) = stderr_pipe.as_mut() {
            let _ = pipe.take(1 << 16).read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + HELPER_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!(
                    "it did not answer within {} s",
                    HELPER_TIMEOUT.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(failed(format!("cannot wait for it: {e}"))),
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() {
        let said = String::from_utf8_lossy(if stdout.is_empty() { &stderr } else { &stdout }).into_owned();
        if said.contains(NOT_FOUND_MESSAGE) {
            tracing::debug!(helper, server, "credential helper has nothing for this server");
            return Ok(None);
        }
        let line: String = said
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no message")
            .chars()
            .take(200)
            .collect();
        return Err(failed(format!("{status}: {line}")));
    }
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let answer: Answer = serde_json::from_slice(&stdout).map_err(|e| {
        failed(format!(
            "its answer is not the helper protocol's JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if answer.username == IDENTITY_TOKEN_USER {
        Credentials::identity_token(answer.secret)
    } else if answer.username.is_empty() {
        return Err(failed("its answer has a secret but no username".to_owned()));
    } else {
        Credentials::new(answer.username, answer.secret)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: &Path) -> CredentialSources {
        CredentialSources {
            auth_file: None,
            xdg_runtime_dir: Some(dir.join("run")),
            xdg_config_home: Some(dir.join("config")),
            docker_config_dir: Some(dir.join("docker")),
            path: Some(dir.join("bin").into_os_string()),
        }
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn keys_normalize_like_docker_and_podman() {
        assert_eq!(
            normalize_key("https://index.docker.io/v1/").as_deref(),
            Some("docker.io")
        );
        assert_eq!(normalize_key("docker.io").as_deref(), Some("docker.io"));
        assert_eq!(
            normalize_key("registry-1.docker.io").as_deref(),
            Some("docker.io")
        );
        assert_eq!(
            normalize_key("HTTPS://Reg.Example.com:5000/v2/").as_deref(),
            Some("reg.example.com:5000")
        );
        assert_eq!(
            normalize_key("http://127.0.0.1:5000").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(
            normalize_key("reg.example.com/").as_deref(),
            Some("reg.example.com")
        );
        assert_eq!(normalize_key("quay.io/team/app"), None);
        assert_eq!(normalize_key("https://"), None);
        assert_eq!(helper_server("index.docker.io"), DOCKER_HUB_KEY);
        assert_eq!(helper_server("ghcr.io"), "ghcr.io");
    }

    #[test]
    fn auths_entries_in_every_form() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join("docker/config.json"),
            r#"{"auths":{
                "https://index.docker.io/v1/":{"auth":"aHViOmh1YnBhc3M="},
                "reg.example.com:5000":{"username":"legacy","password":"pw"},
                "https://id.example.com":{"auth":"ZGV2Og==","identitytoken":"refresh-1"},
                "empty.example.com":{},
                "quay.io/team":{"auth":"dGVhbTp4"}
            }}"#,
        );
        let s = sources(dir.path());
        let found = lookup("docker.io", &s).unwrap().unwrap();
        assert_eq!(found.credentials, Credentials::new("hub", "hubpass"));
        assert!(
            found.source.contains("https://index.docker.io/v1/"),
            "{}",
            found.source
        );
        assert_eq!(
            lookup("reg.example.com:5000", &s).unwrap().unwrap().credentials,
            Credentials::new("legacy", "pw")
        );
        let id = lookup("id.example.com", &s).unwrap().unwrap().credentials;
        assert!(id.is_identity_token());
        assert_eq!(id.password.expose(), "refresh-1");
        assert_eq!(lookup("empty.example.com", &s).unwrap(), None);
        assert_eq!(
            lookup("quay.io", &s).unwrap(),
            None,
            "namespaced keys are not registry-wide"
        );
        assert_eq!(lookup("other.example.com", &s).unwrap(), None);
    }

    #[test]
    fn containers_auth_json_comes_before_docker_and_auth_file_replaces_both() {
        let dir = tempfile::tempdir().unwrap();
        let entry = |user: &str| {
            let auth = match user {
                "runtime" => "cnVudGltZTpw",
                "config" => "Y29uZmlnOnA=",
                "docker" => "ZG9ja2VyOnA=",
                _ => "ZXhwbGljaXQ6cA==",
            };
            format!(r#"{{"auths":{{"r.example.com":{{"auth":"{auth}"}}}}}}"#)
        };
        let s = sources(dir.path());
        write(&dir.path().join("docker/config.json"), &entry("docker"));
        assert_eq!(
            lookup("r.example.com", &s).unwrap().unwrap().credentials.username,
            "docker"
        );
        write(&dir.path().join("config/containers/auth.json"), &entry("config"));
        assert_eq!(
            lookup("r.example.com", &s).unwrap().unwrap().credentials.username,
            "config"
        );
        write(&dir.path().join("run/containers/auth.json"), &entry("runtime"));
        assert_eq!(
            lookup("r.example.com", &s).unwrap().unwrap().credentials.username,
            "runtime"
        );
        let explicit = dir.path().join("explicit.json");
        write(&explicit, &entry("explicit"));
        let only = CredentialSources {
            auth_file: Some(explicit),
            ..s.clone()
        };
        assert_eq!(
            lookup("r.example.com", &only)
                .unwrap()
                .unwrap()
                .credentials
                .username,
            "explicit"
        );
        let none = CredentialSources {
            auth_file: Some(dir.path().join("missing.json")),
            ..s
        };
        assert_eq!(lookup("r.example.com", &none).unwrap(), None);
    }

    #[test]
    fn malformed_files_are_errors_that_do_not_quote_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let s = sources(dir.path());
        let path = dir.path().join("docker/config.json");
        write(&path, r#"{"auths":{"r":{"auth":["secret-canary"]}}}"#);
        let err = lookup("r", &s).unwrap_err();
        assert!(matches!(err, CredentialsError::Malformed { .. }), "{err}");
        assert!(!err.to_string().contains("secret-canary"), "{err}");
        assert_eq!(err.advice(), Some(crate::registry::Advice::IgnoreCredentialFiles));
        write(&path, r#"{"auths":{"r":{"auth":"!!!secret-canary"}}}"#);
        let err = lookup("r", &s).unwrap_err().to_string();
        assert!(
            err.contains("not base64") && !err.contains("secret-canary"),
            "{err}"
        );
        write(&path, r#"{"auths":{"r":{"auth":"bm9jb2xvbg=="}}}"#);
        let err = lookup("r", &s).unwrap_err().to_string();
        assert!(err.contains("USER:PASSWORD"), "{err}");
        write(&path, "");
        assert_eq!(lookup("r", &s).unwrap(), None);
        write(&path, r#"{"credsStore":"../evil"}"#);
        let err = lookup("r", &s).unwrap_err().to_string();
        assert!(err.contains("not a credential helper name"), "{err}");
    }

    #[test]
    fn missing_helper_is_named_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let s = sources(dir.path());
        write(
            &dir.path().join("docker/config.json"),
            r#"{"credHelpers":{"r.example.com":"nothere"}}"#,
        );
        let err = lookup("r.example.com", &s).unwrap_err();
        assert!(
            matches!(&err, CredentialsError::HelperMissing { helper, field: "credHelpers", .. } if helper == "nothere"),
            "{err}"
        );
        assert!(err.to_string().contains("docker-credential-nothere"), "{err}");
        // A helper configured only for another host is not consulted.
        assert_eq!(lookup("elsewhere.example.com", &s).unwrap(), None);
    }

    #[cfg(unix)]
    #[test]
    fn helpers_answer_through_the_protocol() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let log = dir.path().join("helper.log");
        let script = format!(
            r#"#!/bin/sh
read -r server || true
echo "$1 $server" >> '{log}'
case "$server" in
  r.example.com) echo '{{"ServerURL":"r.example.com","Username":"helped","Secret":"s3"}}' ;;
  id.example.com) echo '{{"ServerURL":"id.example.com","Username":"<token>","Secret":"refresh-2"}}' ;;
  broken.example.com) echo 'keychain locked' >&2; exit 3 ;;
  garbage.example.com) echo 'not json secret-canary' ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
"#,
            log = log.display()
        );
        let helper = bin.join("docker-credential-test");
        std::fs::write(&helper, script).unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        write(
            &dir.path().join("docker/config.json"),
            r#"{"credsStore":"test","auths":{"fallback.example.com":{"auth":"ZmI6cA=="}}}"#,
        );
        let s = sources(dir.path());
        let found = lookup("r.example.com", &s).unwrap().unwrap();
        assert_eq!(found.credentials, Credentials::new("helped", "s3"));
        assert!(
            found.source.contains("docker-credential-test (credsStore"),
            "{}",
            found.source
        );
        assert!(
            lookup("id.example.com", &s)
                .unwrap()
                .unwrap()
                .credentials
                .is_identity_token()
        );
        // Not found in the helper: the auths entry, then nothing.
        assert_eq!(
            lookup("fallback.example.com", &s)
                .unwrap()
                .unwrap()
                .credentials
                .username,
            "fb"
        );
        assert_eq!(lookup("none.example.com", &s).unwrap(), None);
        let err = lookup("broken.example.com", &s).unwrap_err().to_string();
        assert!(
            err.contains("keychain locked") && err.contains("exit status: 3"),
            "{err}"
        );
        let err = lookup("garbage.example.com", &s).unwrap_err().to_string();
        assert!(
            err.contains("helper protocol") && !err.contains("secret-canary"),
            "{err}"
        );
        // Docker Hub is asked for under docker's legacy key.
        assert_eq!(lookup("docker.io", &s).unwrap(), None);
        let calls = std::fs::read_to_string(&log).unwrap();
        assert!(calls.contains("get r.example.com\n"), "{calls}");
        assert!(calls.contains("get https://index.docker.io/v1/\n"), "{calls}");
    }
}
