//! Finding the storage from what the operator points at: a storage root folder, the registry's
//! `config.yml`, or an object-store URL (`s3://`, `az://`, `gs://`).
//!
//! For a config file, the environment is honoured the way the registry itself honours it:
//! `REGISTRY_STORAGE` overrides the driver and `REGISTRY_STORAGE_<DRIVER>_<KEY>` any of the
//! driver's keys (`REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY`, `REGISTRY_STORAGE_S3_BUCKET`, …).
//! Running GC with the same environment as the registry therefore finds the same storage. A
//! folder or URL given directly is used as is; URL targets take endpoint, region and credentials
//! from the standard environment of each cloud (`AWS_*`, `AZURE_*`, `GOOGLE_*`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::registry::Secret;
use crate::storage::LAYOUT_PREFIX;

/// distribution's default for `storage.filesystem.rootdirectory`.
pub const DEFAULT_ROOT: &str = "/var/lib/registry";

pub const ENV_ROOT: &str = "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY";
pub const ENV_DRIVER: &str = "REGISTRY_STORAGE";

/// Keys of `storage:` that configure the registry rather than name a driver.
const NON_DRIVER_KEYS: &[&str] = &["delete", "cache", "maintenance", "redirect", "tag"];

/// Where a registry keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A local `rootdirectory` (the folder that contains `docker/registry/v2`).
    Filesystem {
        root: PathBuf,
    },
    S3(S3Target),
    /// Azure Blob Storage; account and credentials come from the `AZURE_*` environment.
    Azure(BucketTarget),
    /// Google Cloud Storage; credentials come from the `GOOGLE_*` environment.
    Gcs(BucketTarget),
}

/// A bucket (or container) and the key prefix the registry's `rootdirectory` maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketTarget {
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (empty for the bucket's root), as distribution
    /// derives it from `rootdirectory`.
    pub root: String,
}

/// An S3 (or S3-compatible) bucket. Every field left `None` comes from the standard AWS
/// environment (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, …).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S3Target {
    pub bucket: String,
    pub root: String,
    pub region: Option<String>,
    /// `regionendpoint`: a custom endpoint (MinIO, Ceph, a local server).
    pub endpoint: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<Secret>,
    /// `secure: false`, or an `http://` endpoint: talk plain HTTP.
    pub allow_http: bool,
    /// `skipverify: true`: accept any TLS certificate.
    pub skip_verify: bool,
    /// `Some(true)` for path-style requests (`forcepathstyle`, and distribution 2.8 whenever
    /// `regionendpoint` is set), `Some(false)` for virtual-hosted style.
    pub path_style: Option<bool>,
}

impl Target {
    /// Where the storage is, for messages (never with credentials).
    pub fn describe(&self) -> String {
        let url = |scheme: &str, bucket: &str, root: &str| {
            if root.is_empty() {
                format!("{scheme}://{bucket}")
            } else {
                format!("{scheme}://{bucket}/{root}")
            }
        };
        match self {
            Target::Filesystem { root } => root.display().to_string(),
            Target::S3(s3) => url("s3", &s3.bucket, &s3.root),
            Target::Azure(t) => url("az", &t.bucket, &t.root),
            Target::Gcs(t) => url("gs", &t.bucket, &t.root),
        }
    }

    pub fn is_object_store(&self) -> bool {
        !matches!(self, Target::Filesystem { .. })
    }
}

/// Why the storage could not be located.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "`{0}` does not exist: pass the registry's storage folder (its rootdirectory), its config.yml, or an s3://, az:// or gs:// URL"
    )]
    NotFound(PathBuf),
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not a valid registry configuration: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("`{0}` has no `storage:` section, so it does not say where the registry keeps its data")]
    NoStorage(PathBuf),
    #[error(
        "the registry uses the `{driver}` storage driver{via}; regsweep gc supports `filesystem`, `s3`, `azure` and \
         `gcs` (object_store does not speak `{driver}`)"
    )]
    UnsupportedDriver { driver: String, via: String },
    #[error("`{path}` configures several storage drivers ({drivers}); a registry accepts only one")]
    SeveralDrivers { path: PathBuf, drivers: String },
    #[error(
        "storage.filesystem.rootdirectory `{root}`{via} is a relative path, which depends on the registry's \
         working directory: pass the storage folder itself instead"
    )]
    RelativeRoot { root: String, via: String },
    #[error(
        "`{0}` looks like the `{LAYOUT_PREFIX}` folder itself: pass the registry's rootdirectory, the folder that \
         contains `docker/`"
    )]
    InsideLayout(PathBuf),
    #[error(
        "`{0}` is not a registry's storage: it has no `{LAYOUT_PREFIX}` folder and is not empty. Pass the \
         registry's rootdirectory (the folder that contains `docker/`) or its config.yml"
    )]
    NotARegistry(PathBuf),
    #[error(
        "the storage root `{root}`{via} does not exist: check the config file (or the environment override)"
    )]
    RootMissing { root: PathBuf, via: String },
    #[error(
        "`{url}` is not a storage URL: {message} (expected s3://BUCKET/PREFIX, az://CONTAINER/PREFIX or gs://BUCKET/PREFIX)"
    )]
    BadUrl { url: String, message: String },
    #[error("the `{driver}` storage section{via} has no `{key}`, which the registry requires")]
    MissingKey {
        driver: String,
        key: &'static str,
        via: String,
    },
    #[error("`{key}: {value}` in the `{driver}` storage section is not a boolean")]
    NotABool {
        driver: String,
        key: &'static str,
        value: String,
    },
}

impl ConfigError {
    /// Whether the operator pointed at something that is not a registry's storage (a usage
    /// mistake, exit code 2) rather than at a registry whose configuration is broken.
    pub fn is_wrong_target(&self) -> bool {
        matches!(
            self,
            ConfigError::NotFound(_)
                | ConfigError::InsideLayout(_)
                | ConfigError::NotARegistry(_)
                | ConfigError::RootMissing { .. }
                | ConfigError::BadUrl { .. }
        )
    }
}

/// Where the root came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// A folder or URL given on the command line.
    Folder,
    /// This config file.
    Config(PathBuf),
    /// An environment override of the config (`REGISTRY_STORAGE_*`).
    Environment(PathBuf),
    /// The config names the filesystem driver without a rootdirectory: distribution's default.
    Default(PathBuf),
}

/// The located storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub target: Target,
    pub source: RootSource,
    /// `storage.maintenance.readonly.enabled` from the config, when there is one.
    pub config_read_only: Option<bool>,
}

impl Located {
    /// The local root folder, for a filesystem target.
    pub fn root(&self) -> Option<&Path> {
        match &self.target {
            Target::Filesystem { root } => Some(root),
            _ => None,
        }
    }

    /// Whether the layout folder exists; a registry that never received a push has none. Object
    /// stores have no folders: always true there.
    pub fn has_layout(&self) -> bool {
        self.root().is_none_or(|root| root.join(LAYOUT_PREFIX).is_dir())
    }
}

#[derive(Deserialize)]
struct RawConfig {
    storage: Option<BTreeMap<String, serde_json::Value>>,
}

/// Locates the storage for `target`: an `s3://`, `az://` or `gs://` URL, a folder or a config
/// file. `env` reads an environment variable (injected for tests).
pub fn locate(target: &str, env: impl Fn(&str) -> Option<String>) -> Result<Located, ConfigError> {
    if let Some((scheme, _)) = target.split_once("://") {
        return Ok(Located {
            target: from_url(target, scheme)?,
            source: RootSource::Folder,
            config_read_only: None,
        });
    }
    let path = Path::new(target);
    let meta = std::fs::metadata(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ConfigError::NotFound(path.to_owned())
        } else {
            ConfigError::Read {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    if meta.is_dir() {
        check_root_folder(path)?;
        return Ok(Located {
            target: Target::Filesystem {
                root: path.to_owned(),
            },
            source: RootSource::Folder,
            config_read_only: None,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let located = from_config(path, &text, env)?;
    if let Target::Filesystem { root } = &located.target {
        if !root.is_dir() {
            let via = match &located.source {
                RootSource::Environment(_) => format!(" (from {ENV_ROOT})"),
                RootSource::Default(_) => " (distribution's default)".to_owned(),
                _ => format!(" (from {})", path.display()),
            };
            return Err(ConfigError::RootMissing {
                root: root.clone(),
                via,
            });
        }
        check_root_folder(root)?;
    }
    Ok(located)
}

/// A root folder must contain `docker/registry/v2`, or be empty (a registry that never stored
/// anything): anything else (`/etc`, a home folder) is a mistake that must not look like an
/// empty registry.
fn check_root_folder(path: &Path) -> Result<(), ConfigError> {
    // Someone passing `…/docker/registry/v2` (or `…/docker`) would otherwise see an "empty
    // registry" and nothing collected; say what is expected instead.
    if !path.join("docker").is_dir() && (path.join("blobs").is_dir() || path.join("repositories").is_dir())
        || path.ends_with("docker") && path.join("registry").is_dir()
    {
        return Err(ConfigError::InsideLayout(path.to_owned()));
    }
    if path.join(LAYOUT_PREFIX).is_dir() {
        return Ok(());
    }
    let empty = std::fs::read_dir(path)
        .map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?
        // A `docker/` or `docker/registry/` left by a registry that never stored anything.
        .all(|entry| entry.is_ok_and(|e| e.file_name() == "docker"));
    if empty {
        Ok(())
    } else {
        Err(ConfigError::NotARegistry(path.to_owned()))
    }
}

fn from_url(text: &str, scheme: &str) -> Result<Target, ConfigError> {
    // Whatever sits before an `@` may be a secret: it never goes into a message.
    let shown = match text.split_once('@') {
        Some((_, rest)) => format!("{scheme}://***@{rest}"),
        None => text.to_owned(),
    };
    let bad = |message: &str| ConfigError::BadUrl {
        url: shown.clone(),
        message: message.to_owned(),
    };
    let rest = &text[scheme.len() + 3..];
    let (bucket, root) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad("the bucket name is missing"));
    }
    if bucket.contains(['@', ':', '?', '#']) {
        return Err(bad(
            "credentials, ports and queries do not belong in the URL; use the environment",
        ));
    }
    let root = root.trim_matches('/').to_owned();
    if root.split('/').any(|s| s == "." || s == "..") {
        return Err(bad("the prefix cannot contain `.` or `..` segments"));
    }
    let bucket = bucket.to_owned();
    match scheme {
        "s3" | "s3a" => Ok(Target::S3(S3Target {
            bucket,
            root,
            ..S3Target::default()
        })),
        "az" | "azure" => Ok(Target::Azure(BucketTarget { bucket, root })),
        "gs" => Ok(Target::Gcs(BucketTarget { bucket, root })),
        other => Err(bad(&format!("unknown scheme `{other}`"))),
    }
}

/// distribution's key prefix for a `rootdirectory`: leading and trailing `/` stripped.
fn key_root(rootdirectory: &str) -> String {
    rootdirectory.trim_matches('/').to_owned()
}

fn from_config(
    path: &Path,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Located, ConfigError> {
    let raw: RawConfig = serde_saphyr::from_str(text).map_err(|err| ConfigError::Yaml {
        path: path.to_owned(),
        message: err.to_string(),
    })?;
    let storage = raw
        .storage
        .ok_or_else(|| ConfigError::NoStorage(path.to_owned()))?;
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let env_driver = env(ENV_DRIVER);
    let driver = choose_driver(path, &storage, env_driver.clone())?;
    let keys = DriverKeys {
        section: storage.get(&driver),
        driver,
        via: if env_driver.is_some() {
            format!(" (set by {ENV_DRIVER})")
        } else {
            String::new()
        },
        env: &env,
        overridden: std::cell::Cell::new(false),
    };
    let config_read_only = maintenance_read_only(&storage);
    let target = match keys.driver.as_str() {
        "filesystem" => {
            let (root, source) = filesystem_root(&keys, path)?;
            return Ok(Located {
                target: Target::Filesystem { root },
                source,
                config_read_only,
            });
        }
        "s3" => Target::S3(s3_target(&keys)?),
        "azure" => Target::Azure(bucket_target(&keys, "container")?),
        "gcs" => Target::Gcs(bucket_target(&keys, "bucket")?),
        _ => {
            return Err(ConfigError::UnsupportedDriver {
                driver: keys.driver,
                via: keys.via,
            });
        }
    };
    Ok(Located {
        target,
        source: if keys.overridden.get() {
            RootSource::Environment(path.to_owned())
        } else {
            RootSource::Config(path.to_owned())
        },
        config_read_only,
    })
}

/// The storage driver: the one the environment names, else the only driver section of the
/// config.
fn choose_driver(
    path: &Path,
    storage: &BTreeMap<String, serde_json::Value>,
    env_driver: Option<String>,
) -> Result<String, ConfigError> {
    if let Some(driver) = env_driver {
        return Ok(driver);
    }
    let drivers: Vec<&String> = storage
        .keys()
        .filter(|k| !NON_DRIVER_KEYS.contains(&k.as_str()))
        .collect();
    match drivers.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(ConfigError::NoStorage(path.to_owned())),
        several => Err(ConfigError::SeveralDrivers {
            path: path.to_owned(),
            drivers: several.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// `storage.maintenance.readonly.enabled`, when the config says.
fn maintenance_read_only(storage: &BTreeMap<String, serde_json::Value>) -> Option<bool> {
    storage
        .get("maintenance")
        .and_then(|m| m.get("readonly"))
        .and_then(|r| r.get("enabled"))
        .and_then(|e| e.as_bool())
}

/// The keys of the chosen driver's section, each overridable by the registry's environment
/// variable `REGISTRY_STORAGE_<DRIVER>_<KEY>`.
struct DriverKeys<'a> {
    driver: String,
    section: Option<&'a serde_json::Value>,
    /// How the driver was chosen, for error messages (empty when by the config).
    via: String,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// Whether any key read so far came from the environment.
    overridden: std::cell::Cell<bool>,
}

impl DriverKeys<'_> {
    /// A key: the environment override first, then the file; empty means unset.
    fn get(&self, name: &str) -> Option<String> {
        let var = format!(
            "REGISTRY_STORAGE_{}_{}",
            self.driver.to_ascii_uppercase(),
            name.to_ascii_uppercase()
        );
        if let Some(value) = (self.env)(&var) {
            self.overridden.set(true);
            return Some(value);
        }
        match self.section.and_then(|s| s.get(name))? {
            serde_json::Value::String(s) if s.is_empty() => None,
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or_else(|| ConfigError::MissingKey {
            driver: self.driver.clone(),
            key: name,
            via: self.via.clone(),
        })
    }

    fn boolean(&self, name: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.get(name).as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(ConfigError::NotABool {
                driver: self.driver.clone(),
                key: name,
                value: other.to_owned(),
            }),
        }
    }

    /// `rootdirectory` as an object key prefix.
    fn root_prefix(&self) -> String {
        key_root(&self.get("rootdirectory").unwrap_or_default())
    }
}

/// The filesystem driver's root folder (distribution's default when unset), and where it came
/// from.
fn filesystem_root(keys: &DriverKeys<'_>, path: &Path) -> Result<(PathBuf, RootSource), ConfigError> {
    let (root, from_default) = match keys.get("rootdirectory") {
        Some(root) => (root, false),
        None => (DEFAULT_ROOT.to_owned(), true),
    };
    let overridden = keys.overridden.get();
    if !Path::new(&root).is_absolute() {
        let via = if overridden {
            format!(" (from {ENV_ROOT})")
        } else {
            String::new()
        };
        return Err(ConfigError::RelativeRoot { root, via });
    }
    let source = if overridden {
        RootSource::Environment(path.to_owned())
    } else if from_default {
        RootSource::Default(path.to_owned())
    } else {
        RootSource::Config(path.to_owned())
    };
    Ok((PathBuf::from(root), source))
}

fn s3_target(keys: &DriverKeys<'_>) -> Result<S3Target, ConfigError> {
    let bucket = keys.required("bucket")?;
    let region = keys.required("region")?;
    let endpoint = keys.get("regionendpoint");
    let secure = keys.boolean("secure")?.unwrap_or(true);
    let skip_verify = keys.boolean("skipverify")?.unwrap_or(false);
    let force_path_style = keys.boolean("forcepathstyle")?;
    // distribution 2.8 signs with v4 by default and only falls back to v2 when told;
    // object_store signs with v4 only, which every current S3 accepts.
    let _v4auth = keys.boolean("v4auth")?;
    let root = keys.root_prefix();
    let access_key = keys.get("accesskey");
    let secret_key = keys.get("secretkey").map(Secret::new);
    // distribution 2.8 forces path-style requests whenever `regionendpoint` is set; 3.x has an
    // explicit `forcepathstyle`.
    let path_style = force_path_style.or(endpoint.as_ref().map(|_| true));
    let endpoint = endpoint.map(|e| endpoint_url(e, secure));
    let allow_http = !secure || endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
    Ok(S3Target {
        bucket,
        root,
        region: Some(region),
        endpoint,
        access_key,
        secret_key,
        allow_http,
        skip_verify,
        path_style,
    })
}

/// `regionendpoint` as a URL: a bare host gets the scheme `secure` asks for.
fn endpoint_url(endpoint: String, secure: bool) -> String {
    if endpoint.contains("://") {
        endpoint
    } else if secure {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    }
}

/// Azure's container or GCS's bucket, with the root prefix.
fn bucket_target(keys: &DriverKeys<'_>, bucket_key: &'static str) -> Result<BucketTarget, ConfigError> {
    Ok(BucketTarget {
        bucket: keys.required(bucket_key)?,
        root: keys.root_prefix(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<Located, ConfigError> {
        from_config(Path::new("config.yml"), text, no_env)
    }

    fn root_of(located: &Located) -> PathBuf {
        located.root().expect("a filesystem target").to_owned()
    }

    #[test]
    fn driver_is_the_environment_choice_or_the_only_section() {
        let storage: BTreeMap<String, serde_json::Value> = serde_json::from_str(
            r#"{"s3": {}, "delete": {}, "cache": {}, "maintenance": {}, "redirect": {}, "tag": {}}"#,
        )
        .unwrap();
        let path = Path::new("config.yml");
        assert_eq!(choose_driver(path, &storage, None).unwrap(), "s3");
        assert_eq!(choose_driver(path, &storage, Some("gcs".into())).unwrap(), "gcs");
        let mut two = storage.clone();
        two.insert("azure".into(), serde_json::json!({}));
        assert!(matches!(
            choose_driver(path, &two, None),
            Err(ConfigError::SeveralDrivers { drivers, .. }) if drivers == "azure, s3"
        ));
        let none: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        assert!(matches!(
            choose_driver(path, &none, None),
            Err(ConfigError::NoStorage(_))
        ));
    }

    #[test]
    fn driver_keys_prefer_the_environment_and_ignore_empty_values() {
        let section = serde_json::json!({"bucket": "b", "region": "", "secure": false, "skipverify": "yes"});
        let env = |name: &str| (name == "REGISTRY_STORAGE_S3_BUCKET").then(|| "from-env".to_owned());
        let keys = DriverKeys {
            driver: "s3".into(),
            section: Some(&section),
            via: String::new(),
            env: &env,
            overridden: std::cell::Cell::new(false),
        };
        assert_eq!(keys.get("region"), None);
        assert_eq!(keys.boolean("secure").unwrap(), Some(false));
        assert!(!keys.overridden.get());
        assert!(matches!(
            keys.boolean("skipverify"),
            Err(ConfigError::NotABool { .. })
        ));
        assert!(matches!(
            keys.required("region"),
            Err(ConfigError::MissingKey { key: "region", .. })
        ));
        assert_eq!(keys.get("bucket").as_deref(), Some("from-env"));
        assert!(keys.overridden.get());
    }

    #[test]
    fn bare_endpoints_get_the_scheme_secure_asks_for() {
        assert_eq!(endpoint_url("minio:9000".into(), true), "https://minio:9000");
        assert_eq!(endpoint_url("minio:9000".into(), false), "http://minio:9000");
        assert_eq!(
            endpoint_url("http://minio:9000".into(), true),
            "http://minio:9000"
        );
    }

    #[test]
    fn reads_filesystem_rootdirectory() {
        let target = parse(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  \
             filesystem:\n    rootdirectory: /srv/registry\n  delete:\n    enabled: true\n  maintenance:\n    \
             readonly:\n      enabled: true\nhttp:\n  addr: :5000\n",
        )
        .unwrap();
        assert_eq!(root_of(&target), PathBuf::from("/srv/registry"));
        assert_eq!(target.source, RootSource::Config(PathBuf::from("config.yml")));
        assert_eq!(target.config_read_only, Some(true));
    }

    #[test]
    fn flow_style_and_default_root() {
        let target = parse("version: 0.1\nstorage: { filesystem: {}, delete: { enabled: true } }\n").unwrap();
        assert_eq!(root_of(&target), PathBuf::from(DEFAULT_ROOT));
        assert!(matches!(target.source, RootSource::Default(_)));
        assert_eq!(target.config_read_only, None);
    }

    #[test]
    fn environment_overrides_like_the_registry() {
        let env = |name: &str| (name == ENV_ROOT).then(|| "/from/env".to_owned());
        let target = from_config(
            Path::new("c.yml"),
            "storage:\n  filesystem:\n    rootdirectory: /srv/x\n",
            env,
        )
        .unwrap();
        assert_eq!(root_of(&target), PathBuf::from("/from/env"));
        assert!(matches!(target.source, RootSource::Environment(_)));

        let env = |name: &str| (name == ENV_DRIVER).then(|| "swift".to_owned());
        let err = from_config(
            Path::new("c.yml"),
            "storage:\n  filesystem:\n    rootdirectory: /srv/x\n",
            env,
        )
        .unwrap_err();
        assert!(err.to_string().contains("`swift`") && err.to_string().contains(ENV_DRIVER));
    }

    #[test]
    fn s3_section_as_distribution_reads_it() {
        let target = parse(
            "storage:\n  s3:\n    bucket: images\n    region: us-east-1\n    regionendpoint: 127.0.0.1:9000\n    \
             secure: false\n    v4auth: true\n    accesskey: AKIA\n    secretkey: hush\n    rootdirectory: /reg/\n  \
             cache: {blobdescriptor: redis}\n",
        )
        .unwrap();
        let Target::S3(s3) = &target.target else {
            panic!("{target:?}")
        };
        assert_eq!(s3.bucket, "images");
        assert_eq!(s3.root, "reg");
        assert_eq!(s3.region.as_deref(), Some("us-east-1"));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s3.allow_http);
        assert_eq!(s3.path_style, Some(true));
        assert_eq!(s3.access_key.as_deref(), Some("AKIA"));
        assert_eq!(s3.secret_key.as_ref().map(Secret::expose), Some("hush"));
        // The secret never shows in debug output (logs, panics).
        assert!(!format!("{target:?}").contains("hush"));
        assert_eq!(target.target.describe(), "s3://images/reg");

        // REGISTRY_STORAGE_S3_* override the file, as in the registry.
        let env = |name: &str| match name {
            "REGISTRY_STORAGE_S3_BUCKET" => Some("other".to_owned()),
            "REGISTRY_STORAGE_S3_FORCEPATHSTYLE" => Some("false".to_owned()),
            _ => None,
        };
        let target = from_config(
            Path::new("c.yml"),
            "storage:\n  s3:\n    bucket: images\n    region: eu-west-1\n",
            env,
        )
        .unwrap();
        let Target::S3(s3) = &target.target else {
            panic!("{target:?}")
        };
        assert_eq!(s3.bucket, "other");
        assert_eq!(s3.path_style, Some(false));
        assert!(!s3.allow_http);
        assert!(matches!(target.source, RootSource::Environment(_)));

        let err = parse("storage:\n  s3:\n    region: eu-west-1\n").unwrap_err();
        assert!(err.to_string().contains("no `bucket`"), "{err}");
        let err = parse("storage:\n  s3:\n    bucket: b\n    region: r\n    secure: maybe\n").unwrap_err();
        assert!(err.to_string().contains("secure: maybe"), "{err}");
    }

    #[test]
    fn urls_name_bucket_and_prefix() {
        let t = locate("s3://bucket/reg/", no_env).unwrap().target;
        assert_eq!(
            t,
            Target::S3(S3Target {
                bucket: "bucket".into(),
                root: "reg".into(),
                ..S3Target::default()
            })
        );
        assert_eq!(
            locate("az://c", no_env).unwrap().target,
            Target::Azure(BucketTarget {
                bucket: "c".into(),
                root: String::new()
            })
        );
        assert!(matches!(
            locate("gs://b/x/y", no_env).unwrap().target,
            Target::Gcs(_)
        ));
        for bad in ["s3://", "ftp://x/y", "s3://user:pw@b/x", "s3://b/../x"] {
            let err = locate(bad, no_env).unwrap_err();
            assert!(matches!(err, ConfigError::BadUrl { .. }), "{bad}: {err}");
            assert!(err.is_wrong_target());
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
    }

    #[test]
    fn unsupported_drivers_are_named() {
        for driver in ["swift", "oss", "inmemory"] {
            let err = parse(&format!("storage:\n  {driver}:\n    x: y\n")).unwrap_err();
            assert!(matches!(err, ConfigError::UnsupportedDriver { driver: ref d, .. } if d == driver));
            assert!(err.to_string().contains(&format!("`{driver}`")), "{err}");
        }
        let err = parse("storage:\n  inmemory:\n").unwrap_err();
        assert!(matches!(err, ConfigError::UnsupportedDriver { ref driver, .. } if driver == "inmemory"));
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        assert!(matches!(
            parse("http:\n  addr: :5000\n"),
            Err(ConfigError::NoStorage(_))
        ));
        assert!(matches!(
            parse("storage:\n  delete: {enabled: true}\n"),
            Err(ConfigError::NoStorage(_))
        ));
        assert!(matches!(
            parse("storage:\n  filesystem: {rootdirectory: /a}\n  s3: {bucket: b}\n"),
            Err(ConfigError::SeveralDrivers { .. })
        ));
        assert!(matches!(
            parse("storage:\n  filesystem: {rootdirectory: data}\n"),
            Err(ConfigError::RelativeRoot { .. })
        ));
        let err = parse("storage: [unclosed\n").unwrap_err();
        assert!(matches!(err, ConfigError::Yaml { .. }), "{err}");
    }

    #[test]
    fn locate_checks_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let text = |p: &Path| p.to_str().unwrap().to_owned();
        assert!(matches!(
            locate(&text(&dir.path().join("nope")), no_env),
            Err(ConfigError::NotFound(_))
        ));
        // An empty folder is a registry that never stored anything.
        let target = locate(&text(dir.path()), no_env).unwrap();
        assert_eq!(target.source, RootSource::Folder);
        assert!(!target.has_layout());

        let v2 = dir.path().join("docker/registry/v2");
        std::fs::create_dir_all(v2.join("blobs")).unwrap();
        assert!(locate(&text(dir.path()), no_env).unwrap().has_layout());
        assert!(matches!(
            locate(&text(&v2), no_env),
            Err(ConfigError::InsideLayout(_))
        ));
        assert!(matches!(
            locate(&text(&dir.path().join("docker")), no_env),
            Err(ConfigError::InsideLayout(_))
        ));

        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "storage:\n  filesystem:\n    rootdirectory: {}\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let target = locate(&text(&config), no_env).unwrap();
        assert_eq!(root_of(&target), dir.path());
        assert!(target.has_layout());

        // A folder with other content is not an empty registry (issue: `/etc` exited 0).
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("passwd"), "x").unwrap();
        let err = locate(&text(other.path()), no_env).unwrap_err();
        assert!(matches!(err, ConfigError::NotARegistry(_)), "{err}");
        assert!(err.is_wrong_target());

        // A config whose rootdirectory does not exist is an error, not an empty registry.
        std::fs::write(
            &config,
            format!(
                "storage:\n  filesystem:\n    rootdirectory: {}\n",
                dir.path().join("gone").display()
            ),
        )
        .unwrap();
        let err = locate(&text(&config), no_env).unwrap_err();
        assert!(matches!(err, ConfigError::RootMissing { .. }), "{err}");
        assert!(err.is_wrong_target());
    }
}
