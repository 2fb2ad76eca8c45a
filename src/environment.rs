//! The environment variables a run may read, as one value passed down instead of each part
//! calling `std::env` on its own: credentials (`REGSWEEP_*`, `DOCKER_CONFIG`, …), distribution's
//! `REGISTRY_STORAGE_*` overrides, the object stores' `AWS_*`, `AZURE_*` and `GOOGLE_*`
//! settings, and the log filter. The command line snapshots the process's environment once;
//! tests and embedders build their own.
//!
//! What third-party code reads by itself is outside it: the proxy variables reqwest honours, the
//! cloud metadata endpoints object_store's credential providers look up, and the Azurite URL
//! (`AZURITE_BLOB_STORAGE_URL`) its Azure emulator mode reads.

use std::collections::BTreeMap;
use std::ffi::OsString;

/// A snapshot of environment variables. Names are kept as given (case matters, as on Unix);
/// values that are not UTF-8 are kept for the ones used as paths.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: BTreeMap<OsString, OsString>,
}

impl Environment {
    /// The process's environment, read now.
    pub fn from_process() -> Self {
        std::env::vars_os().collect()
    }

    /// No variables at all.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, replacing what it held.
    pub fn set(&mut self, name: impl Into<OsString>, value: impl Into<OsString>) {
        self.vars.insert(name.into(), value.into());
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        self.vars.remove(std::ffi::OsStr::new(name));
    }

    /// The value of `name` if it is set, not empty and UTF-8. An empty variable counts as unset,
    /// as it does for docker, git and distribution.
    pub fn get(&self, name: &str) -> Option<String> {
        self.get_os(name)?.into_string().ok()
    }

    /// The value of `name` if it is set and not empty, as the OS gave it (for paths).
    pub fn get_os(&self, name: &str) -> Option<OsString> {
        self.vars
            .get(std::ffi::OsStr::new(name))
            .filter(|value| !value.is_empty())
            .cloned()
    }

    /// Every UTF-8 variable whose name starts with `prefix`, in name order.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.vars.iter().filter_map(move |(name, value)| {
            let name = name.to_str()?;
            name.starts_with(prefix).then_some((name, value.to_str()?))
        })
    }
}

impl<K: Into<OsString>, V: Into<OsString>> FromIterator<(K, V)> for Environment {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self {
            vars: iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_count_as_unset() {
        let env: Environment = [
            ("A", "1"),
            ("B", ""),
            ("AWS_REGION", "x"),
            ("AWS_ENDPOINT_URL", "y"),
        ]
        .into_iter()
        .collect();
        assert_eq!(env.get("A").as_deref(), Some("1"));
        assert_eq!(env.get("B"), None);
        assert_eq!(env.get("C"), None);
        let aws: Vec<_> = env.with_prefix("AWS_").collect();
        assert_eq!(aws, [("AWS_ENDPOINT_URL", "y"), ("AWS_REGION", "x")]);
    }
}
