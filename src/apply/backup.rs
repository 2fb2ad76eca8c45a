//! `--backup` and `restore`: every manifest deleted and every tag removed is saved first, keyed
//! by repository (and tag), so that `restore` can put back exactly what went, in every
//! repository, until the registry's garbage collection removes the blobs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest::media_type;
use crate::reference::{Repository, Tag};
use crate::registry::Client;

/// One manifest saved by `--backup`: a deleted manifest with the tags that went with it, or,
/// for a tag that was only untagged, the manifest it pointed at with that one tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupEntry {
    pub repository: String,
    pub digest: Digest,
    pub media_type: String,
    pub tags: Vec<String>,
    /// The manifest bytes, as a JSON string (manifests are UTF-8 JSON).
    pub manifest: String,
}

/// Why a backup could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a regsweep backup entry: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl BackupEntry {
    /// The file this entry is saved in: unique per repository, digest and (for an untag) tag,
    /// so entries of one digest in several repositories never overwrite each other. `/` in the
    /// repository becomes `+`, which no repository name or tag contains.
    fn file_name(&self, untagged: Option<&str>) -> String {
        let repository = self.repository.replace('/', "+");
        let digest = format!("{}-{}", self.digest.algorithm(), self.digest.encoded());
        match untagged {
            Some(tag) => format!("{repository}@{digest}@{tag}.json"),
            None => format!("{repository}@{digest}.json"),
        }
    }

    /// Checks what a hand-edited or foreign file could get wrong: the repository name (it goes
    /// into URL paths), the tags, and that the manifest is the one its digest names.
    fn validate(&self) -> Result<(), String> {
        Repository::parse(&self.repository).map_err(|e| format!("bad repository name: {e}"))?;
        for tag in &self.tags {
            Tag::parse(tag).map_err(|e| format!("bad tag: {e}"))?;
        }
        if self.digest.verify(self.manifest.as_bytes()) == Some(false) {
            return Err(format!("the manifest does not match its digest {}", self.digest));
        }
        Ok(())
    }
}

/// Saves `entry` into `dir`; `untagged` names the tag when only that tag is removed. Written to
/// a temporary file unique to this process and call, then renamed: a crash never leaves half
/// an entry, and concurrent writers never share a temporary file.
pub fn write_backup(dir: &Path, entry: &BackupEntry, untagged: Option<&str>) -> std::io::Result<PathBuf> {
    let file = dir.join(entry.file_name(untagged));
    let json = serde_json::to_vec_pretty(entry).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!(
        ".{}.{}-{:016x}.tmp",
        entry.file_name(untagged),
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, &file).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(file)
}

/// Reads every backup entry in `dir`, checked, in the order they must be restored (children and
/// subjects before what refers to them: the reverse of deletion).
pub fn read_backup(dir: &Path) -> Result<Vec<BackupEntry>, BackupError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| BackupError::Io { path, source }
    };
    let mut entries = Vec::new();
    for item in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = item.map_err(io(dir))?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden || path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let invalid = |reason: String| BackupError::Invalid {
            path: path.clone(),
            reason,
        };
        let entry: BackupEntry = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        entry.validate().map_err(invalid)?;
        entries.push(entry);
    }
    // Images before indexes; untagged (children, referrers) before tagged: a registry may refuse
    // an index whose children are missing.
    entries.sort_by(|a, b| {
        let key = |e: &BackupEntry| {
            (
                media_type::is_index(&e.media_type),
                !e.tags.is_empty(),
                e.repository.clone(),
                e.digest.clone(),
                e.tags.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(entries)
}

/// Puts backed-up manifests back (by digest, then under each tag). Works as long as the
/// registry's garbage collection has not removed their blobs.
pub async fn restore(client: &Client, entries: &[BackupEntry]) -> Vec<Result<String, String>> {
    let mut results = Vec::new();
    for entry in entries {
        let mut outcome = restore_entry(client, entry).await;
        if let (Ok(what), false) = (&mut outcome, entry.tags.is_empty()) {
            what.push_str(&format!(" (tags: {})", entry.tags.join(", ")));
        }
        results.push(outcome);
    }
    results
}

async fn restore_entry(client: &Client, entry: &BackupEntry) -> Result<String, String> {
    let what = format!("{}@{}", entry.repository, entry.digest);
    // Entries read by `read_backups` were validated; these checks keep any other entry's names
    // out of URL paths.
    let repository = Repository::parse(&entry.repository).map_err(|e| format!("{what}: {e}"))?;
    let tags = entry
        .tags
        .iter()
        .map(|tag| Tag::parse(tag))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: {e}"))?;
    let body = entry.manifest.as_bytes().to_vec();
    client
        .put_manifest(&repository, &entry.digest, &entry.media_type, body.clone())
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    for tag in &tags {
        client
            .put_manifest(&repository, tag, &entry.media_type, body.clone())
            .await
            .map_err(|e| format!("{}:{tag}: {e}", entry.repository))?;
    }
    Ok(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(repository: &str, manifest: &str, tags: &[&str]) -> BackupEntry {
        BackupEntry {
            repository: repository.into(),
            digest: Digest::sha256(manifest.as_bytes()),
            media_type: media_type::OCI_MANIFEST.into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            manifest: manifest.into(),
        }
    }

    #[test]
    fn one_digest_in_two_repositories_and_untags_are_kept_apart() {
        let dir = tempfile::tempdir().unwrap();
        let a = entry("team/a", "{}", &["v1"]);
        let b = entry("team/b", "{}", &["v1"]);
        let untag = entry("team/a", "{}", &["alias"]);
        write_backup(dir.path(), &a, None).unwrap();
        write_backup(dir.path(), &b, None).unwrap();
        write_backup(dir.path(), &untag, Some("alias")).unwrap();
        let read = read_backup(dir.path()).unwrap();
        assert_eq!(read.len(), 3, "{read:?}");
        assert!(read.contains(&a) && read.contains(&b) && read.contains(&untag));
        // No temporary file is left.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn entries_with_bad_names_or_content_are_refused() {
        for (bad, why) in [
            (entry("../../x", "{}", &[]), "bad repository name"),
            (entry("app/svc001/../svc000", "{}", &[]), "bad repository name"),
            (entry("app", "{}", &["no/slash"]), "bad tag"),
            (
                BackupEntry {
                    manifest: "{\"other\":1}".into(),
                    ..entry("app", "{}", &[])
                },
                "does not match",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            // Written by hand, as a foreign or edited file would be.
            std::fs::write(dir.path().join("x.json"), serde_json::to_vec(&bad).unwrap()).unwrap();
            let err = read_backup(dir.path()).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }
}
