//! Options of a test registry and the files derived from them: `config.yml`, `htpasswd`, TLS
//! certificates.
//!
//! The config deliberately has **no `storage.cache` section**: without a blob-descriptor cache the
//! registry stats the storage on every request, so blobs removed by an offline `garbage-collect`
//! are seen as gone without a restart (with `cache.blobdescriptor: inmemory` a swept blob can
//! still be reported as present until the process restarts).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// How a [`crate::TestRegistry`] is configured. `Default` = deletes enabled, plain HTTP, no auth,
/// a fresh storage directory.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `storage.delete.enabled`. When false, manifest DELETE answers 405 `UNSUPPORTED`.
    pub delete_enabled: bool,
    /// `storage.maintenance.readonly.enabled`: only GET/HEAD routes exist (DELETE/PUT => 405).
    pub read_only: bool,
    /// Serve HTTPS with a certificate for `127.0.0.1` and `localhost` signed by a fresh CA.
    pub tls: bool,
    /// With `tls`: serve a self-signed certificate that is its own CA (`basicConstraints
    /// CA:TRUE`, as `openssl req -x509` makes by Docker's recipe) instead of one signed by a
    /// separate CA. [`crate::TestRegistry::ca_cert_path`] is then that certificate.
    pub tls_self_signed: bool,
    /// `(user, password)` pairs for htpasswd basic auth (bcrypt, cost 4). The first one is used by
    /// [`crate::TestRegistry::client`].
    pub htpasswd: Option<Vec<(String, String)>>,
    /// Reuse this storage root (e.g. another registry's, or a prepared tree) instead of a fresh
    /// directory inside the registry's temp dir. It is never deleted by the harness.
    pub storage_root: Option<PathBuf>,
    /// Raw YAML appended at the end of `config.yml`. It may only add top-level sections the
    /// harness does not write (`catalog`, `compatibility`, `notifications`, ...): the Go YAML
    /// parser rejects duplicate keys. To change a key the harness writes, use `env`.
    pub extra_config: Option<String>,
    /// Extra environment for the registry process, e.g. `REGISTRY_CATALOG_MAXENTRIES=5`
    /// (distribution maps `REGISTRY_<PATH>` onto any config key, overriding the file).
    pub env: Vec<(String, String)>,
    /// `log.level`: `info` (default; one line per request) or `warn`/`error` for big fills.
    pub log_level: String,
    /// `auth.token`: bearer tokens from a [`crate::TokenServer`] (exclusive with `htpasswd`).
    pub token_auth: Option<TokenAuth>,
    /// Store in an S3 bucket (the registry's `s3` driver) instead of the filesystem.
    pub s3: Option<S3Storage>,
}

/// The `storage.s3` section of a registry writing to a loopback S3 server such as
/// [`crate::MotoServer`].
#[derive(Debug, Clone)]
pub struct S3Storage {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub bucket: String,
    /// `rootdirectory`, e.g. `/reg` (keys then start with `reg/`).
    pub root: String,
}

/// The registry's `auth.token` section, and the user the harness pushes fixtures with.
#[derive(Clone)]
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub rootcertbundle: PathBuf,
    /// A user of the token server with every permission.
    pub user: (String, String),
}

impl std::fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("TokenAuth")
            .field("realm", &self.realm)
            .field("service", &self.service)
            .field("issuer", &self.issuer)
            .field("user", &self.user.0)
            .finish()
    }
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            delete_enabled: true,
            read_only: false,
            tls: false,
            tls_self_signed: false,
            htpasswd: None,
            storage_root: None,
            extra_config: None,
            env: Vec::new(),
            log_level: "info".into(),
            token_auth: None,
            s3: None,
        }
    }
}

impl RegistryOptions {
    pub fn with_htpasswd(mut self, user: &str, password: &str) -> Self {
        self.htpasswd
            .get_or_insert_with(Vec::new)
            .push((user.into(), password.into()));
        self
    }
    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }
    /// HTTPS with a self-signed certificate that is its own CA (see `tls_self_signed`).
    pub fn with_self_signed_tls(mut self) -> Self {
        self.tls = true;
        self.tls_self_signed = true;
        self
    }
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }
    pub fn delete_disabled(mut self) -> Self {
        self.delete_enabled = false;
        self
    }
    /// Token authentication against `server` (`auth.token` with its realm, service, issuer and
    /// CA bundle); the harness's own client pushes as the server's admin user.
    pub fn with_token_auth(mut self, server: &crate::TokenServer) -> Self {
        let (user, password) = server.admin();
        self.token_auth = Some(TokenAuth {
            realm: server.realm(),
            service: server.service().to_owned(),
            issuer: server.issuer().to_owned(),
            rootcertbundle: server.root_cert_bundle().to_owned(),
            user: (user.to_owned(), password.to_owned()),
        });
        self
    }
    /// Store in `bucket` of the S3 server at `endpoint`, under `root`.
    pub fn with_s3(mut self, endpoint: &str, bucket: &str, root: &str) -> Self {
        self.s3 = Some(S3Storage {
            endpoint: endpoint.to_owned(),
            bucket: bucket.to_owned(),
            root: root.to_owned(),
        });
        self
    }

    pub fn with_storage_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.storage_root = Some(root.into());
        self
    }
}

/// Header the registry adds to every response (via `http.headers`), with a value unique to one
/// harness instance: readiness checks use it to make sure the server answering on the port is the
/// one just started, not another test's registry that won a port race.
pub(crate) const INSTANCE_HEADER: &str = "X-Regsweep-Testkit-Instance";

/// Paths of the TLS material written for a registry.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Directory holding `ca.crt`, in the layout `skopeo --cert-dir` expects.
    pub cert_dir: PathBuf,
    /// The server certificate is its own CA.
    pub self_signed: bool,
}

/// Everything needed to render `config.yml`.
pub(crate) struct ConfigInputs<'a> {
    pub opts: &'a RegistryOptions,
    pub port: u16,
    pub storage_root: &'a Path,
    pub instance_id: &'a str,
    pub tls: Option<&'a TlsFiles>,
    pub htpasswd: Option<&'a Path>,
}

/// YAML double-quoted scalar (JSON string syntax is valid YAML).
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("string serialises")
}

fn qp(p: &Path) -> String {
    q(&p.to_string_lossy())
}

pub(crate) fn render_config(c: &ConfigInputs<'_>) -> String {
    let o = c.opts;
    let mut y = String::new();
    // `writeln!` into a String cannot fail.
    let _ = writeln!(y, "version: 0.1");
    let _ = writeln!(y, "log:\n  level: {}", q(&o.log_level));
    // The access log duplicates the "response completed" lines of the app log.
    let _ = writeln!(y, "  accesslog:\n    disabled: true");
    let _ = writeln!(y, "storage:");
    match &o.s3 {
        // Any key and secret: moto accepts everything. distribution 2.8 sends path-style
        // requests whenever `regionendpoint` is set.
        Some(s3) => {
            let _ = writeln!(
                y,
                "  s3:\n    region: us-east-1\n    regionendpoint: {}\n    bucket: {}\n    accesskey: testkit\n    \
                 secretkey: testkit-secret\n    secure: false\n    v4auth: true\n    rootdirectory: {}",
                q(&s3.endpoint),
                q(&s3.bucket),
                q(&s3.root)
            );
        }
        None => {
            let _ = writeln!(y, "  filesystem:\n    rootdirectory: {}", qp(c.storage_root));
        }
    }
    let _ = writeln!(y, "  delete:\n    enabled: {}", o.delete_enabled);
    if o.s3.is_some() {
        // Blob GETs would otherwise answer 307 to a presigned bucket URL.
        let _ = writeln!(y, "  redirect:\n    disable: true");
    }
    let _ = writeln!(y, "  maintenance:");
    // Off: the purger would otherwise start at a random time and touch `_uploads` under a test.
    let _ = writeln!(y, "    uploadpurging:\n      enabled: false");
    let _ = writeln!(y, "    readonly:\n      enabled: {}", o.read_only);
    let _ = writeln!(y, "http:");
    let _ = writeln!(y, "  addr: {}", q(&format!("127.0.0.1:{}", c.port)));
    // Fixed secret: avoids the "No HTTP secret provided" warning; one instance per storage anyway.
    let _ = writeln!(y, "  secret: \"regsweep-testkit-not-a-secret\"");
    let _ = writeln!(y, "  headers:\n    {INSTANCE_HEADER}: [{}]", q(c.instance_id));
    if let Some(t) = c.tls {
        let _ = writeln!(
            y,
            "  tls:\n    certificate: {}\n    key: {}",
            qp(&t.cert),
            qp(&t.key)
        );
    }
    if let Some(h) = c.htpasswd {
        let _ = writeln!(
            y,
            "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}",
            qp(h)
        );
    } else if let Some(t) = &o.token_auth {
        let _ = writeln!(
            y,
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}",
            q(&t.realm),
            q(&t.service),
            q(&t.issuer),
            qp(&t.rootcertbundle)
        );
    }
    if let Some(extra) = &o.extra_config {
        y.push_str(extra);
        if !extra.ends_with('\n') {
            y.push('\n');
        }
    }
    y
}

/// htpasswd content: `user:$2b$04$...` per line. distribution only honours bcrypt entries; cost 4
/// (the minimum Go accepts) keeps both hashing and every authenticated request fast.
pub(crate) fn htpasswd_content(users: &[(String, String)]) -> Result<String> {
    let mut out = String::new();
    for (user, password) in users {
        anyhow::ensure!(
            !user.is_empty() && !user.contains(':'),
            "htpasswd user name must be non-empty and contain no ':'"
        );
        let hash = bcrypt::hash(password, 4).context("bcrypt hashing failed")?;
        out.push_str(&format!("{user}:{hash}\n"));
    }
    Ok(out)
}

/// Create a CA and a server certificate (SANs `127.0.0.1`, `localhost`) signed by it, write them
/// as PEM into `dir`.
pub(crate) fn write_tls_files(dir: &Path, self_signed: bool) -> Result<TlsFiles> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = TlsFiles {
        ca_cert: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
        cert_dir: dir.join("certs.d"),
        self_signed,
    };
    std::fs::create_dir_all(&files.cert_dir)?;
    let server_names = vec!["127.0.0.1".to_string(), "localhost".to_string()];

    if self_signed {
        // What `openssl req -x509 -newkey … -subj /CN=127.0.0.1 -addext subjectAltName=IP:…`
        // makes: one certificate, self-signed, with openssl's default v3_ca extensions
        // (basicConstraints CA:TRUE).
        let mut params = CertificateParams::new(server_names)?;
        params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().context("generating the self-signed key")?;
        let cert = params.self_signed(&key).context("self-signing the certificate")?;
        std::fs::write(&files.ca_cert, cert.pem())?;
        std::fs::write(files.cert_dir.join("ca.crt"), cert.pem())?;
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        return Ok(files);
    }

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "regsweep-testkit CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().context("generating CA key")?;
    let ca_cert = ca_params.self_signed(&ca_key).context("self-signing CA")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut leaf = CertificateParams::new(server_names)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "regsweep-testkit registry");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let leaf_key = KeyPair::generate().context("generating server key")?;
    let leaf_cert = leaf
        .signed_by(&leaf_key, &issuer)
        .context("signing server certificate")?;

    std::fs::write(&files.ca_cert, ca_cert.pem())?;
    std::fs::write(files.cert_dir.join("ca.crt"), ca_cert.pem())?;
    std::fs::write(&files.cert, leaf_cert.pem())?;
    std::fs::write(&files.key, leaf_key.serialize_pem())?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_contains_required_keys() {
        let opts = RegistryOptions {
            read_only: true,
            extra_config: Some("catalog:\n  maxentries: 5".into()),
            ..Default::default()
        };
        let y = render_config(&ConfigInputs {
            opts: &opts,
            port: 5123,
            storage_root: Path::new("/tmp/x y"),
            instance_id: "abc",
            tls: None,
            htpasswd: Some(Path::new("/tmp/h")),
        });
        assert!(y.contains("rootdirectory: \"/tmp/x y\""));
        assert!(y.contains("addr: \"127.0.0.1:5123\""));
        assert!(y.contains("readonly:\n      enabled: true"));
        assert!(y.contains("delete:\n    enabled: true"));
        assert!(y.contains("uploadpurging:\n      enabled: false"));
        assert!(y.contains("path: \"/tmp/h\""));
        assert!(y.ends_with("maxentries: 5\n"));
        assert!(!y.contains("cache"));
    }

    #[test]
    fn token_auth_section() {
        let opts = RegistryOptions {
            token_auth: Some(TokenAuth {
                realm: "http://127.0.0.1:9/token".into(),
                service: "svc".into(),
                issuer: "iss".into(),
                rootcertbundle: "/tmp/ca.pem".into(),
                user: ("admin".into(), "secret-canary".into()),
            }),
            ..Default::default()
        };
        let y = render_config(&ConfigInputs {
            opts: &opts,
            port: 5123,
            storage_root: Path::new("/tmp/s"),
            instance_id: "abc",
            tls: None,
            htpasswd: None,
        });
        assert!(
            y.contains(
                "auth:\n  token:\n    realm: \"http://127.0.0.1:9/token\"\n    service: \"svc\"\n    issuer: \"iss\"\n    rootcertbundle: \"/tmp/ca.pem\"\n"
            ),
            "{y}"
        );
        assert!(!format!("{opts:?}").contains("secret-canary"));
    }

    #[test]
    fn htpasswd_is_bcrypt_and_verifies() {
        let c = htpasswd_content(&[("alice".into(), "s3cret".into())]).unwrap();
        let (user, hash) = c.trim_end().split_once(':').unwrap();
        assert_eq!(user, "alice");
        assert!(hash.starts_with("$2"));
        assert!(bcrypt::verify("s3cret", hash).unwrap());
        assert!(htpasswd_content(&[("a:b".into(), "x".into())]).is_err());
    }
}
