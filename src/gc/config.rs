//! Finding the storage from what the operator points at: a storage root folder, or the
//! registry's `config.yml`.
//!
//! For a config file, the environment is honoured the way the registry itself honours it:
//! `REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY` overrides `storage.filesystem.rootdirectory`, and
//! `REGISTRY_STORAGE` overrides the driver. Running GC with the same environment as the registry
//! therefore finds the same folder. A folder given directly is used as is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::storage::LAYOUT_PREFIX;

/// distribution's default for `storage.filesystem.rootdirectory`.
pub const DEFAULT_ROOT: &str = "/var/lib/registry";

pub const ENV_ROOT: &str = "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY";
pub const ENV_DRIVER: &str = "REGISTRY_STORAGE";

/// Keys of `storage:` that configure the registry rather than name a driver.
const NON_DRIVER_KEYS: &[&str] = &["delete", "cache", "maintenance", "redirect", "tag"];

/// Why the storage could not be located.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("`{0}` does not exist: pass the registry's storage folder (its rootdirectory) or its config.yml")]
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
        "the registry uses the `{driver}` storage driver{via}; regsweep gc supports only `filesystem` so far \
         (object storage is not supported yet)"
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
}

/// Where the root came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// A folder given on the command line.
    Folder,
    /// `storage.filesystem.rootdirectory` of this config file.
    Config(PathBuf),
    /// The `REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY` environment variable (with this config).
    Environment(PathBuf),
    /// The config names the filesystem driver without a rootdirectory: distribution's default.
    Default(PathBuf),
}

/// The located storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageTarget {
    /// The rootdirectory (the folder that contains `docker/registry/v2`).
    pub root: PathBuf,
    pub source: RootSource,
    /// `storage.maintenance.readonly.enabled` from the config, when there is one.
    pub config_read_only: Option<bool>,
}

impl StorageTarget {
    /// The `docker/registry/v2` folder.
    pub fn layout_dir(&self) -> PathBuf {
        self.root.join(LAYOUT_PREFIX)
    }

    /// Whether the layout folder exists; a registry that never received a push has none.
    pub fn has_layout(&self) -> bool {
        self.layout_dir().is_dir()
    }
}

#[derive(Deserialize)]
struct RawConfig {
    storage: Option<BTreeMap<String, serde_json::Value>>,
}

/// Locates the storage for `target` (a folder or a config file). `env` reads an environment
/// variable (injected for tests).
pub fn locate(target: &Path, env: impl Fn(&str) -> Option<String>) -> Result<StorageTarget, ConfigError> {
    let meta = std::fs::metadata(target).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ConfigError::NotFound(target.to_owned())
        } else {
            ConfigError::Read {
                path: target.to_owned(),
                source,
            }
        }
    })?;
    if meta.is_dir() {
        // Someone passing `…/docker/registry/v2` (or `…/docker`) would otherwise see an "empty
        // registry" and nothing collected; say what is expected instead.
        if !target.join("docker").is_dir()
            && (target.join("blobs").is_dir() || target.join("repositories").is_dir())
            || target.ends_with("docker") && target.join("registry").is_dir()
        {
            return Err(ConfigError::InsideLayout(target.to_owned()));
        }
        return Ok(StorageTarget {
            root: target.to_owned(),
            source: RootSource::Folder,
            config_read_only: None,
        });
    }
    let text = std::fs::read_to_string(target).map_err(|source| ConfigError::Read {
        path: target.to_owned(),
        source,
    })?;
    from_config(target, &text, env)
}

fn from_config(
    path: &Path,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<StorageTarget, ConfigError> {
    let raw: RawConfig = serde_saphyr::from_str(text).map_err(|err| ConfigError::Yaml {
        path: path.to_owned(),
        message: err.to_string(),
    })?;
    let storage = raw
        .storage
        .ok_or_else(|| ConfigError::NoStorage(path.to_owned()))?;
    let drivers: Vec<&String> = storage
        .keys()
        .filter(|k| !NON_DRIVER_KEYS.contains(&k.as_str()))
        .collect();
    let env_driver = env(ENV_DRIVER).filter(|v| !v.is_empty());
    let driver = match (&env_driver, drivers.as_slice()) {
        (Some(driver), _) => driver.clone(),
        (None, [one]) => (*one).clone(),
        (None, []) => return Err(ConfigError::NoStorage(path.to_owned())),
        (None, several) => {
            return Err(ConfigError::SeveralDrivers {
                path: path.to_owned(),
                drivers: several.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            });
        }
    };
    if driver != "filesystem" {
        let via = if env_driver.is_some() {
            format!(" (set by {ENV_DRIVER})")
        } else {
            String::new()
        };
        return Err(ConfigError::UnsupportedDriver { driver, via });
    }
    let configured = storage
        .get("filesystem")
        .and_then(|fs| fs.get("rootdirectory"))
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let (root, source, via) = match (env(ENV_ROOT).filter(|v| !v.is_empty()), configured) {
        (Some(root), _) => (
            root.clone(),
            RootSource::Environment(path.to_owned()),
            format!(" (from {ENV_ROOT})"),
        ),
        (None, Some(root)) => (root, RootSource::Config(path.to_owned()), String::new()),
        (None, None) => (
            DEFAULT_ROOT.to_owned(),
            RootSource::Default(path.to_owned()),
            String::new(),
        ),
    };
    if !Path::new(&root).is_absolute() {
        return Err(ConfigError::RelativeRoot { root, via });
    }
    let config_read_only = storage
        .get("maintenance")
        .and_then(|m| m.get("readonly"))
        .and_then(|r| r.get("enabled"))
        .and_then(|e| e.as_bool());
    Ok(StorageTarget {
        root: PathBuf::from(root),
        source,
        config_read_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<StorageTarget, ConfigError> {
        from_config(Path::new("config.yml"), text, no_env)
    }

    #[test]
    fn reads_filesystem_rootdirectory() {
        let target = parse(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  \
             filesystem:\n    rootdirectory: /srv/registry\n  delete:\n    enabled: true\n  maintenance:\n    \
             readonly:\n      enabled: true\nhttp:\n  addr: :5000\n",
        )
        .unwrap();
        assert_eq!(target.root, PathBuf::from("/srv/registry"));
        assert_eq!(target.source, RootSource::Config(PathBuf::from("config.yml")));
        assert_eq!(target.config_read_only, Some(true));
    }

    #[test]
    fn flow_style_and_default_root() {
        let target = parse("version: 0.1\nstorage: { filesystem: {}, delete: { enabled: true } }\n").unwrap();
        assert_eq!(target.root, PathBuf::from(DEFAULT_ROOT));
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
        assert_eq!(target.root, PathBuf::from("/from/env"));
        assert!(matches!(target.source, RootSource::Environment(_)));

        let env = |name: &str| (name == ENV_DRIVER).then(|| "s3".to_owned());
        let err = from_config(
            Path::new("c.yml"),
            "storage:\n  filesystem:\n    rootdirectory: /srv/x\n",
            env,
        )
        .unwrap_err();
        assert!(err.to_string().contains("`s3`") && err.to_string().contains(ENV_DRIVER));
    }

    #[test]
    fn other_drivers_are_not_supported_yet() {
        let err = parse(
            "storage:\n  s3:\n    bucket: b\n    region: us-east-1\n  cache: {blobdescriptor: redis}\n",
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::UnsupportedDriver { ref driver, .. } if driver == "s3"));
        assert!(err.to_string().contains("not supported yet"));
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
        assert!(matches!(
            locate(&dir.path().join("nope"), no_env),
            Err(ConfigError::NotFound(_))
        ));
        let target = locate(dir.path(), no_env).unwrap();
        assert_eq!(target.source, RootSource::Folder);
        assert!(!target.has_layout());

        let v2 = dir.path().join("docker/registry/v2");
        std::fs::create_dir_all(v2.join("blobs")).unwrap();
        assert!(locate(dir.path(), no_env).unwrap().has_layout());
        assert!(matches!(locate(&v2, no_env), Err(ConfigError::InsideLayout(_))));
        assert!(matches!(
            locate(&dir.path().join("docker"), no_env),
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
        let target = locate(&config, no_env).unwrap();
        assert_eq!(target.root, dir.path());
        assert!(target.has_layout());
    }
}
