//! Carries out a [`Plan`] on the registry's storage (`--storage`), for registries whose API
//! cannot delete (deletes disabled, a proxy in front, read-only mode) or is too slow to scan.
//!
//! It does what distribution does when it serves a DELETE, in the same order and under the same
//! review as [`super::apply`] over HTTP:
//! - untag: the tag's folder `_manifests/tags/<tag>` goes, nothing else;
//! - delete a manifest: its revision link `_manifests/revisions/<alg>/<hex>` goes, with every tag
//!   whose `current/link` names it and every tag-history entry (`index/<alg>/<hex>`) naming it.
//!
//! Right before, the repository is read again from storage and the plan is reviewed against it
//! (what a kept, new or moved tag needs is never deleted); each tag's link is read once more just
//! before its folder goes. Blobs stay until `gc` runs, so `restore --storage` can put back what
//! went. The registry must not be writing meanwhile: the caller checks that it is stopped or
//! read-only.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::digest::Digest;
use crate::graph::RepoGraph;
use crate::manifest::MAX_MANIFEST_BYTES;
use crate::plan::{Plan, RepoPlan};
use crate::progress::Progress;
use crate::storage::{Storage, StorageError, paths};

use super::backup::{self, BackupEntry};
use super::review::{self, Deletion};
use super::{ApplyError, ApplyOptions, ApplyReport, Done, ErrorCode, ItemError, validate_contents};

/// Executes a plan on storage. Per-action failures are collected in the report.
pub fn apply_on_storage(
    storage: &Storage,
    plan: &Plan,
    options: &ApplyOptions,
    progress: &dyn Progress,
) -> Result<ApplyReport, ApplyError> {
    validate_contents(plan)?;
    if let Some(dir) = &options.backup {
        std::fs::create_dir_all(dir).map_err(|source| ApplyError::Backup {
            path: dir.clone(),
            source,
        })?;
    }
    let work: Vec<&RepoPlan> = plan
        .repositories
        .iter()
        .filter(|r| !r.actions.is_empty())
        .collect();
    progress.add_total(work.iter().map(|r| r.actions.len() as u64).sum());
    // What was listed when planning may be stale (an object store caches its listing).
    storage.backend().refresh().map_err(ApplyError::Storage)?;
    let reports: Vec<ApplyReport> = work
        .par_iter()
        .map(|repo| {
            let site = Site {
                storage,
                name: &repo.repository,
                backup: options.backup.as_deref(),
            };
            site.apply_repository(repo, options.force, progress)
        })
        .collect();
    let mut total = ApplyReport::default();
    for report in reports {
        total.merge(report);
    }
    if options.remove_empty_repositories {
        for repo in &plan.repositories {
            match remove_if_empty(storage, &repo.repository) {
                Ok(true) => total.removed_repositories.push(repo.repository.clone()),
                Ok(false) => {}
                Err(err) => total.failed.push(ItemError {
                    repository: repo.repository.clone(),
                    target: String::new(),
                    tags: Vec::new(),
                    code: ErrorCode::Storage,
                    detail: format!("removing the empty repository failed: {err}"),
                }),
            }
        }
    }
    Ok(total)
}

/// Removes a repository with no tags, no manifests and no uploads left: its `_manifests` and
/// `_layers` folders (what make a folder a repository to distribution's catalog), then its
/// folder and empty parents. A namespace that holds other repositories (`team` of `team/app`)
/// keeps its folder. `false` when something is left in it.
pub fn remove_if_empty(storage: &Storage, name: &str) -> Result<bool, StorageError> {
    let read = storage.read_repository(
        name,
        crate::storage::ReadOptions {
            tag_names_only: true,
            ..Default::default()
        },
    );
    if !read.tags.is_empty() || !read.revisions.is_empty() || !read.issues.is_empty() {
        return Ok(false);
    }
    if !storage.uploads(name)?.is_empty() {
        return Ok(false);
    }
    let backend = storage.backend();
    let base = paths::repository(name);
    for part in ["_manifests", "_layers", "_uploads"] {
        backend.delete(&format!("{base}/{part}"))?;
    }
    let mut dir = base;
    while dir != "repositories" && backend.remove_empty_dir(&dir)? {
        match dir.rfind('/') {
            Some(i) => dir.truncate(i),
            None => break,
        }
    }
    Ok(true)
}

/// One repository's storage and what its actions share.
struct Site<'a> {
    storage: &'a Storage,
    name: &'a str,
    backup: Option<&'a std::path::Path>,
}

/// Which tags' histories (`index/<alg>/<hex>`) name each manifest: read once per repository, so
/// that deleting a manifest touches only the entries that exist.
type Histories = HashMap<Digest, Vec<String>>;

fn histories(storage: &Storage, name: &str) -> Histories {
    let read = storage.read_repository(
        name,
        crate::storage::ReadOptions {
            tag_history: true,
            ..Default::default()
        },
    );
    let mut out: Histories = HashMap::new();
    for tag in read.tags {
        for digest in tag.history {
            out.entry(digest).or_default().push(tag.name.clone());
        }
    }
    out
}

impl Site<'_> {
    fn apply_repository(&self, repo: &RepoPlan, force: bool, progress: &dyn Progress) -> ApplyReport {
        let mut report = ApplyReport::default();
        let planned: Vec<Digest> = repo.deleted_manifests().into_iter().cloned().collect();
        let (live, gone) = crate::graph::storage::read_with(self.storage, self.name, false, &planned);
        if !live.errors.is_empty() {
            report.failed.push(self.error(
                String::new(),
                Vec::new(),
                ErrorCode::ReadFailed,
                format!(
                    "reading the repository again failed, nothing deleted in it: {}",
                    live.errors.join("; ")
                ),
            ));
            progress.advance(repo.actions.len() as u64);
            return report;
        }
        let review = review::review(repo, &live, &gone, force);
        let accepted = review.phases.values().flatten().count();
        let histories = histories(self.storage, self.name);
        let tags_on = live.tags_by_digest();
        let partial = !review.skipped.is_empty() || !review.refused.is_empty();
        report.skipped = review.skipped;
        report.refused = review.refused;

        // Leftover placeholders of an interrupted untag over HTTP: the tag goes, and the
        // placeholder manifest with it.
        for (tag, placeholder) in &review.placeholders {
            let result = self.untag(tag, placeholder, false).and_then(|_| {
                self.delete(
                    &live,
                    &tags_on,
                    &histories,
                    &Deletion {
                        digest: placeholder.clone(),
                        tags: Vec::new(),
                    },
                )
            });
            match result {
                Ok(mut done) => {
                    done.target = tag.clone();
                    done.detail = "removed regsweep's placeholder left by an interrupted run; the tag is gone, as intended".into();
                    report.cleaned.push(done);
                }
                Err(err) => report.file(err),
            }
        }
        // Independent of each other: in parallel (an object store answers each in a round trip).
        let untags: Vec<Result<Done, ItemError>> = review
            .untags
            .par_iter()
            .map(|(tag, digest)| {
                let result = self.untag(tag, digest, true);
                progress.advance(1);
                result
            })
            .collect();
        for result in untags {
            match result {
                Ok(done) => report.untagged.push(done),
                Err(err) => report.file(err),
            }
        }
        let mut done: HashSet<Digest> = HashSet::new();
        let mut phases = review.phases.into_values();
        for deletions in phases.by_ref() {
            // Nothing in one phase refers to anything else in it: in parallel.
            let results: Vec<(Digest, Result<Done, ItemError>)> = deletions
                .par_iter()
                .map(|deletion| {
                    let result = self.delete(&live, &tags_on, &histories, deletion);
                    progress.advance(1);
                    (deletion.digest.clone(), result)
                })
                .collect();
            let phase_failed = report.record_phase(results, &mut done);
            if phase_failed {
                // Later phases hold what the failed manifests refer to.
                break;
            }
        }
        for deletion in phases.flatten() {
            report.failed.push(self.error(
                format!("@{}", deletion.digest),
                deletion.tags,
                ErrorCode::NotAttempted,
                "not attempted: deleting a manifest that refers to it failed".into(),
            ));
        }
        report.bytes_freed = if !partial && done.len() == accepted {
            repo.bytes_freed
        } else {
            review::freed_bytes(&live, &done).min(repo.bytes_freed)
        };
        report
    }

    fn error(&self, target: String, tags: Vec<String>, code: ErrorCode, detail: String) -> ItemError {
        ItemError::new(self.name, target, tags, code, detail)
    }

    fn storage_error(&self, target: String, tags: Vec<String>, err: StorageError) -> ItemError {
        self.error(target, tags, ErrorCode::Storage, err.to_string())
    }

    /// What a tag's `current/link` names now; `None` when the tag is gone.
    fn tag_target(&self, tag: &str) -> Result<Option<Digest>, ItemError> {
        let path = format!("{}/current/link", paths::tag_dir(self.name, tag));
        match self.storage.read_link(&path, None, false) {
            Ok(link) => Ok(link.map(|l| l.digest)),
            Err(issue) => Err(self.error(tag.to_owned(), Vec::new(), ErrorCode::Storage, issue.message)),
        }
    }

    /// Compare-and-untag: the tag must still point at `digest` right before its folder goes.
    fn untag(&self, tag: &str, digest: &Digest, save: bool) -> Result<Done, ItemError> {
        let target = || tag.to_owned();
        match self.tag_target(tag)? {
            Some(now) if now == *digest => {}
            Some(now) => {
                return Err(self.error(
                    target(),
                    Vec::new(),
                    ErrorCode::ChangedSincePlanning,
                    format!(
                        "changed since planning: moved to {} just before untagging",
                        now.short()
                    ),
                ));
            }
            None => {
                return Err(self.error(
                    target(),
                    Vec::new(),
                    ErrorCode::AlreadyGone,
                    "already gone".into(),
                ));
            }
        }
        if save && let Some(dir) = self.backup {
            self.save(dir, digest, &[tag.to_owned()], Some(tag))
                .map_err(|e| self.error(target(), Vec::new(), ErrorCode::BackupFailed, e))?;
        }
        self.storage
            .backend()
            .delete(&paths::tag_dir(self.name, tag))
            .map_err(|e| self.storage_error(target(), Vec::new(), e))?;
        Ok(Done {
            repository: self.name.to_owned(),
            target: target(),
            tags: Vec::new(),
            detail: "untagged on storage".into(),
        })
    }

    /// Backs the manifest up if asked, then removes its revision link, the tags that point at it
    /// (each checked again just before) and the tag-history entries that name it.
    fn delete(
        &self,
        live: &RepoGraph,
        tags_on: &HashMap<&Digest, Vec<String>>,
        histories: &Histories,
        deletion: &Deletion,
    ) -> Result<Done, ItemError> {
        let digest = &deletion.digest;
        let target = format!("@{digest}");
        let fail = |e| self.storage_error(target.clone(), deletion.tags.clone(), e);
        if let Some(dir) = self.backup {
            self.save(dir, digest, &deletion.tags, None)
                .map_err(|e| self.error(target.clone(), deletion.tags.clone(), ErrorCode::BackupFailed, e))?;
        }
        let removed = self
            .storage
            .backend()
            .delete(&paths::revision_dir(self.name, digest))
            .map_err(fail)?;
        if !removed {
            return Err(self.error(
                target,
                deletion.tags.clone(),
                ErrorCode::AlreadyGone,
                "already gone".into(),
            ));
        }
        // Every tag on it, not only the planned ones: distribution removes each tag that points
        // at a deleted manifest, and a tag left pointing at nothing would answer 404. The
        // repository was read just before; each link is read once more right before it goes.
        let on_it = tags_on.get(digest).into_iter().flatten().chain(
            live.leftovers
                .iter()
                .filter(|(_, l)| l.placeholder == *digest)
                .map(|(t, _)| t),
        );
        let mut tags = Vec::new();
        for tag in on_it {
            if self.tag_target(tag)?.as_ref() == Some(digest) {
                self.storage
                    .backend()
                    .delete(&paths::tag_dir(self.name, tag))
                    .map_err(fail)?;
                tags.push(tag.clone());
            }
        }
        for tag in histories.get(digest).into_iter().flatten() {
            self.storage
                .backend()
                .delete(&paths::tag_history_dir(self.name, tag, digest))
                .map_err(fail)?;
        }
        tags.sort();
        Ok(Done {
            repository: self.name.to_owned(),
            target,
            tags,
            detail: "deleted on storage".into(),
        })
    }

    /// Saves the manifest `digest` (read from the blob store, checked against its digest).
    fn save(
        &self,
        dir: &std::path::Path,
        digest: &Digest,
        tags: &[String],
        untagged: Option<&str>,
    ) -> Result<(), String> {
        let failed = |e: String| format!("backup failed, nothing removed: {e}");
        let body = self
            .storage
            .read_blob(digest, MAX_MANIFEST_BYTES as u64)
            .map_err(|e| failed(e.to_string()))?
            .ok_or_else(|| failed("the manifest's blob is missing".into()))?;
        let manifest = crate::manifest::Manifest::parse(&body, None).map_err(|e| failed(e.to_string()))?;
        let entry = BackupEntry {
            repository: self.name.to_owned(),
            digest: digest.clone(),
            media_type: manifest.media_type,
            tags: tags.to_vec(),
            manifest: String::from_utf8(body)
                .map_err(|e| failed(format!("the manifest is not UTF-8: {e}")))?,
        };
        backup::write_backup(dir, &entry, untagged)
            .map(drop)
            .map_err(|e| failed(e.to_string()))
    }
}

/// Puts backed-up manifests back on storage: the manifest's blob if gc removed it, its revision
/// link, and each tag's `current/link` and history entry. The layers must still be there
/// (before gc), as with `restore` over the API.
pub fn restore_on_storage(storage: &Storage, entries: &[BackupEntry]) -> Vec<Result<String, String>> {
    entries
        .iter()
        .map(|entry| {
            let what = format!("{}@{}", entry.repository, entry.digest);
            restore_entry(storage, entry)
                .map(|()| {
                    if entry.tags.is_empty() {
                        what.clone()
                    } else {
                        format!("{what} (tags: {})", entry.tags.join(", "))
                    }
                })
                .map_err(|e| format!("{what}: {e}"))
        })
        .collect()
}

fn restore_entry(storage: &Storage, entry: &BackupEntry) -> Result<(), StorageError> {
    let backend = storage.backend();
    let link = entry.digest.as_str().as_bytes();
    if storage.stat_blob(&entry.digest)?.is_none() {
        backend.write(&paths::blob_data(&entry.digest), entry.manifest.as_bytes())?;
    }
    let repo = entry.repository.as_str();
    backend.write(
        &format!("{}/link", paths::revision_dir(repo, &entry.digest)),
        link,
    )?;
    for tag in &entry.tags {
        backend.write(
            &format!("{}/link", paths::tag_history_dir(repo, tag, &entry.digest)),
            link,
        )?;
        backend.write(&format!("{}/current/link", paths::tag_dir(repo, tag)), link)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testtree::Tree;

    fn site<'a>(storage: &'a Storage) -> Site<'a> {
        Site {
            storage,
            name: "app",
            backup: None,
        }
    }

    #[test]
    fn deleting_a_manifest_removes_its_revision_its_tags_and_their_history_entries() {
        let tree = Tree::new();
        let old = tree.image("app", Some("v1"), "a", 1);
        tree.tag("app", "alias", &old);
        let new = tree.image("app", Some("v2"), "b", 1);
        // `v2` pointed at `old` before: its history names it.
        tree.tag("app", "v2", &old);
        tree.tag("app", "v2", &new);
        let storage = tree.storage();
        let live = crate::graph::storage::read(&storage, "app", false);
        let history = histories(&storage, "app");
        let done = site(&storage)
            .delete(
                &live,
                &live.tags_by_digest(),
                &history,
                &Deletion {
                    digest: old.clone(),
                    tags: vec!["alias".into(), "v1".into()],
                },
            )
            .unwrap();
        assert_eq!(done.tags, ["alias", "v1"]);
        assert!(!tree.exists(&paths::revision_dir("app", &old)));
        assert!(!tree.exists(&paths::tag_dir("app", "v1")) && !tree.exists(&paths::tag_dir("app", "alias")));
        assert!(!tree.exists(&paths::tag_history_dir("app", "v2", &old)));
        assert!(tree.exists(&paths::tag_history_dir("app", "v2", &new)));
        // The blob stays for gc; a second delete is "already gone".
        assert!(tree.exists(&paths::blob_data(&old)));
        let again = site(&storage).delete(
            &live,
            &live.tags_by_digest(),
            &history,
            &Deletion {
                digest: old,
                tags: Vec::new(),
            },
        );
        assert_eq!(again.unwrap_err().code, ErrorCode::AlreadyGone);
    }

    #[test]
    fn untag_checks_the_link_right_before() {
        let tree = Tree::new();
        let a = tree.image("app", Some("v1"), "a", 1);
        let b = tree.image("app", Some("v2"), "b", 1);
        let storage = tree.storage();
        let moved = site(&storage).untag("v2", &a, true).unwrap_err();
        assert_eq!(moved.code, ErrorCode::ChangedSincePlanning);
        assert!(tree.exists(&paths::tag_dir("app", "v2")));
        site(&storage).untag("v2", &b, true).unwrap();
        assert!(!tree.exists(&paths::tag_dir("app", "v2")));
        assert!(tree.exists(&paths::revision_dir("app", &b)));
        let gone = site(&storage).untag("v2", &b, true).unwrap_err();
        assert_eq!(gone.code, ErrorCode::AlreadyGone);
    }

    #[test]
    fn only_empty_repositories_are_removed_and_namespaces_keep_their_children() {
        let tree = Tree::new();
        let a = tree.image("team", Some("v1"), "a", 1);
        tree.image("team/app", Some("v1"), "b", 1);
        let storage = tree.storage();
        assert!(!remove_if_empty(&storage, "team").unwrap(), "it has a tag");
        site_named(&storage, "team").untag("v1", &a, false).unwrap();
        assert!(
            !remove_if_empty(&storage, "team").unwrap(),
            "it still has a manifest"
        );
        storage
            .backend()
            .delete(&paths::revision_dir("team", &a))
            .unwrap();
        assert!(remove_if_empty(&storage, "team").unwrap());
        assert!(!tree.exists("repositories/team/_manifests") && !tree.exists("repositories/team/_layers"));
        assert_eq!(storage.repositories().unwrap().names, ["team/app"]);
    }

    fn site_named<'a>(storage: &'a Storage, name: &'a str) -> Site<'a> {
        Site {
            storage,
            name,
            backup: None,
        }
    }

    #[test]
    fn restore_puts_back_links_and_a_collected_manifest_blob() {
        let tree = Tree::new();
        let a = tree.image("app", Some("v1"), "a", 1);
        let storage = tree.storage();
        let body = String::from_utf8(storage.read_blob(&a, 1 << 20).unwrap().unwrap()).unwrap();
        let live = crate::graph::storage::read(&storage, "app", false);
        site(&storage)
            .delete(
                &live,
                &live.tags_by_digest(),
                &histories(&storage, "app"),
                &Deletion {
                    digest: a.clone(),
                    tags: vec!["v1".into()],
                },
            )
            .unwrap();
        storage.backend().delete(&paths::blob_dir(&a)).unwrap();
        let entry = BackupEntry {
            repository: "app".into(),
            digest: a.clone(),
            media_type: crate::manifest::media_type::OCI_MANIFEST.into(),
            tags: vec!["v1".into()],
            manifest: body,
        };
        let results = restore_on_storage(&storage, &[entry]);
        assert!(results[0].is_ok(), "{results:?}");
        let graph = crate::graph::storage::read(&storage, "app", false);
        assert!(graph.errors.is_empty(), "{:?}", graph.errors);
        assert_eq!(graph.tags["v1"], a);
    }
}
