//! `--storage TARGET`: the retention and look commands reading (and changing) the registry's
//! storage itself instead of talking to its API, and the checks that go with changing it.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::digest::Digest;
use crate::gc::probe::{Probe, probe_registry};
use crate::reference::{Repository, Tag};
use crate::registry::ClientOptions;
use crate::storage::{self, Storage};
use clap::Args;

use super::{Ui, UsageError};
use crate::environment::Environment;

/// Where the commands read from when they work on storage.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Storage (instead of the registry API)")]
pub struct StorageArgs {
    /// Work on the registry's storage instead of its API: its folder (the `rootdirectory`, which
    /// contains `docker/`), its config.yml, or s3://BUCKET/PREFIX, az://… or gs://… (as `gc`
    /// takes). Repositories are then named without a host (`team/app`). Needed when the API
    /// cannot delete (deletes disabled, a proxy in front) and for the `pushed` time source.
    #[arg(long, value_name = "TARGET")]
    pub storage: Option<String>,
}

/// `--storage` for the commands that change it, with the check that the registry does not write
/// meanwhile.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Storage (instead of the registry API)")]
pub struct StorageWriteArgs {
    #[command(flatten)]
    pub target: StorageArgs,

    /// With --storage, before changing anything: the URL of the registry serving this storage
    /// (e.g. http://127.0.0.1:5000), checked to be stopped or read-only. One DELETE of a blob that
    /// cannot exist tells a read-only registry from one with only deletes disabled.
    #[arg(long, value_name = "URL", requires = "storage")]
    pub registry_url: Option<String>,

    /// With --storage: change the storage even though the registry accepts writes or its state
    /// cannot be checked. Its caches then serve stale tags until it restarts, and a push during
    /// the run can be lost.
    #[arg(long, requires = "storage")]
    pub allow_writable: bool,
}

/// An opened storage, with how to name it in messages.
pub struct Opened {
    pub storage: Storage,
    pub described: String,
}

impl StorageArgs {
    /// The storage named by `--storage`, if given. A target that is not a registry's storage is
    /// a usage error.
    pub fn open(&self, env: &Environment) -> anyhow::Result<Option<Opened>> {
        let Some(target) = &self.storage else {
            return Ok(None);
        };
        let located = match storage::locate(target, |name| env.get(name)) {
            Ok(located) => located,
            Err(err) if err.is_wrong_target() => return Err(UsageError::new(err.to_string()).into()),
            Err(err) => return Err(err.into()),
        };
        if !located.has_layout() {
            return Err(UsageError::new(format!(
                "{} has no docker/registry/v2 folder: it is not the storage of a registry that stored anything",
                located.target.describe()
            ))
            .into());
        }
        let described = located.target.describe();
        let storage = Storage::open(&located.target, env)?;
        Ok(Some(Opened { storage, described }))
    }
}

impl StorageWriteArgs {
    pub fn open(&self, env: &Environment) -> anyhow::Result<Option<Opened>> {
        self.target.open(env)
    }

    /// Before changing the storage: the registry serving it must be stopped or read-only (its
    /// caches and a concurrent push would otherwise disagree with what is removed). Refuses when
    /// it accepts writes or cannot be checked, unless --allow-writable; says so when there is no
    /// --registry-url to check with.
    pub fn check_registry_stopped(
        &self,
        ui: &mut Ui<'_>,
        ca_files: &[PathBuf],
        insecure: bool,
    ) -> anyhow::Result<()> {
        let quiet = ui.quiet();
        let Some(url) = &self.registry_url else {
            if !quiet {
                writeln!(
                    ui.err(),
                    "warning: not checked that the registry serving this storage is stopped or read-only (no \
                     --registry-url); if it runs and accepts pushes, a push during this run can be lost"
                )?;
            }
            return Ok(());
        };
        let options = ClientOptions {
            insecure,
            ca_files: ca_files.to_vec(),
            timeout: Duration::from_secs(15),
            ..ClientOptions::default()
        };
        let verdict = probe_registry(url, &options);
        match verdict {
            Probe::ReadOnly | Probe::Stopped => {
                if !quiet {
                    writeln!(ui.err(), "{}", verdict.describe(url))?;
                }
                Ok(())
            }
            Probe::Writable(_) | Probe::Unknown(_) if self.allow_writable => {
                writeln!(ui.err(), "warning: {}; going on because of --allow-writable", verdict.describe(url))?;
                Ok(())
            }
            Probe::Writable(_) | Probe::Unknown(_) => Err(Refused(format!(
                "{}; nothing changed. Stop the registry or restart it with storage.maintenance.readonly.enabled: \
                 true, or pass --allow-writable to take the risk",
                verdict.describe(url)
            ))
            .into()),
        }
    }
}

/// The registry was found running and writable: not a usage mistake, a refusal (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

/// After the storage changed under a registry: its caches do not know.
pub fn restart_reminder(ui: &mut Ui<'_>) -> std::io::Result<()> {
    writeln!(
        ui.err(),
        "note: restart the registry (or its cache, e.g. redis) now: it caches tags and blob descriptors and may \
         still serve what was removed"
    )
}

/// What `rm --storage` names: `REPO:TAG` or `REPO@DIGEST`, without a registry host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    pub repository: Repository,
    pub tag: Option<Tag>,
    pub digest: Option<Digest>,
}

impl StorageRef {
    pub fn parse(input: &str) -> Result<Self, UsageError> {
        let bad = |why: String| {
            UsageError::new(format!(
                "`{input}`: {why}; with --storage name REPO:TAG or REPO@DIGEST"
            ))
        };
        let (name, tag, digest) = if let Some((name, digest)) = input.split_once('@') {
            let digest = Digest::parse(digest).map_err(|e| bad(e.to_string()))?;
            (name, None, Some(digest))
        } else {
            let slash = input.rfind('/').map_or(0, |i| i + 1);
            match input[slash..].rfind(':') {
                Some(colon) => {
                    let (name, tag) = (&input[..slash + colon], &input[slash + colon + 1..]);
                    (name, Some(Tag::parse(tag).map_err(|e| bad(e.to_string()))?), None)
                }
                None => return Err(bad("no tag or digest".into())),
            }
        };
        let repository = Repository::parse(name).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            repository,
            tag,
            digest,
        })
    }
}

/// Repository names given on the command line with --storage (none: every repository).
pub fn repositories(ui: &mut Ui<'_>, inputs: &[String], storage: &Storage) -> anyhow::Result<Vec<String>> {
    if inputs.is_empty() {
        let found = storage.repositories()?;
        for issue in &found.issues {
            writeln!(ui.err(), "warning: {}: {}", issue.path, issue.message)?;
        }
        return Ok(found.names);
    }
    inputs
        .iter()
        .map(|input| {
            Repository::parse(input)
                .map(|r| r.to_string())
                .map_err(|e| UsageError::new(format!("`{input}` is not a repository name ({e}); with --storage name repositories without a host")).into())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_references() {
        let r = StorageRef::parse("team/app:1.0").unwrap();
        assert_eq!(
            (r.repository.as_str(), r.tag.unwrap().as_str()),
            ("team/app", "1.0")
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = StorageRef::parse(&format!("app@{digest}")).unwrap();
        assert_eq!(r.digest.unwrap().as_str(), digest);
        for bad in ["team/app", "app:bad tag", "../x:1", "app@sha256:zz", "a:b/c"] {
            let err = StorageRef::parse(bad).unwrap_err().to_string();
            assert!(err.contains("REPO:TAG or REPO@DIGEST"), "{bad}: {err}");
        }
    }
}
