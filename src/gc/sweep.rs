//! The sweep: deletes what the mark phase found, in distribution's order (manifests with their
//! tag-history entries, then `_layers` links, then blobs, then empty folders), re-checking each
//! item just before it goes.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use rayon::prelude::*;

use crate::digest::Digest;
use crate::storage::{Storage, StorageError, paths};

use super::digest_set::DigestSet;
use super::load_manifest;
use super::mark::ManifestState;
use super::report::{
    BlobItem, Failure, LayerLinkItem, ManifestItem, Problem, ProblemKind, Skipped, UploadItem,
};

/// Filesystems with coarse timestamps (and clocks that disagree by a little) must not make a
/// write that happened just after the run started look older than the start.
const CLOCK_SLACK: Duration = Duration::from_secs(2);

enum Step<T> {
    Done(T),
    Skip(Skipped),
    Fail(Failure),
}

fn failure(path: &str, err: &StorageError) -> Failure {
    Failure {
        path: path.to_owned(),
        error: err.to_string(),
    }
}

/// `Some(reason)` when `path` was modified after `cutoff` (re-pushed while the run went on).
fn changed_recently(storage: &Storage, path: &str, cutoff: SystemTime) -> Result<Option<String>, Failure> {
    match storage.backend().stat(path) {
        Ok(Some(meta)) if meta.modified > cutoff => Ok(Some(format!(
            "`{path}` was modified during the run (younger than the grace period)"
        ))),
        Ok(_) => Ok(None),
        Err(err) => Err(failure(path, &err)),
    }
}

/// What a sweep is asked to delete: the lists of a dry run.
#[derive(Debug, Clone, Default)]
pub struct SweepPlan {
    pub manifests: Vec<ManifestItem>,
    pub layer_links: Vec<LayerLinkItem>,
    pub blobs: Vec<BlobItem>,
    pub uploads: Vec<UploadItem>,
    /// Folders already empty (their age is checked again before they go).
    pub empty_dirs: Vec<String>,
}

/// What a sweep did: the items actually deleted, and why the others were not.
#[derive(Debug, Clone, Default)]
pub struct SweepResult {
    pub manifests: Vec<ManifestItem>,
    pub layer_links: Vec<LayerLinkItem>,
    pub blobs: Vec<BlobItem>,
    pub uploads: Vec<UploadItem>,
    pub empty_dirs: Vec<String>,
    pub skipped: Vec<Skipped>,
    pub failures: Vec<Failure>,
    /// Set when the sweep stopped before deleting (the rest): content pushed during the run
    /// could not be read back, or the storage could not be listed again.
    pub abandoned: Option<Problem>,
}

impl SweepResult {
    /// Keeps the done items, moves the rest to `skipped` and `failures`.
    fn settle<T>(&mut self, results: Vec<Step<T>>) -> Vec<T> {
        let mut done = Vec::with_capacity(results.len());
        for step in results {
            match step {
                Step::Done(item) => done.push(item),
                Step::Skip(skipped) => self.skipped.push(skipped),
                Step::Fail(failure) => self.failures.push(failure),
            }
        }
        done
    }
}

/// Lists the repositories again and drops from the plan whatever content pushed since `since`
/// needs.
fn recheck(storage: &Storage, plan: &mut SweepPlan, since: SystemTime, result: &mut SweepResult) -> bool {
    if let Err(err) = storage.backend().refresh() {
        result.abandoned = Some(Problem::error(
            ProblemKind::ChangedDuringRun,
            format!("cannot list the repositories again before deleting ({err}); the sweep stopped there"),
        ));
        return false;
    }
    match pushed_since(storage, since) {
        Ok(protected) => {
            result.skipped.extend(protect(plan, &protected));
            true
        }
        Err(problem) => {
            result.abandoned = Some(problem);
            false
        }
    }
}

/// Deletes the `items` whose checked path has not changed since `cutoff`, in one batch.
/// `paths_of` gives the path to delete and the path whose age decides.
fn delete_unchanged<T: Send>(
    storage: &Storage,
    items: Vec<T>,
    cutoff: SystemTime,
    paths_of: impl Fn(&T) -> (String, String) + Sync,
) -> Vec<Step<T>> {
    let checked: Vec<(T, String, Result<Option<String>, Failure>)> = items
        .into_par_iter()
        .map(|item| {
            let (dir, check) = paths_of(&item);
            let state = changed_recently(storage, &check, cutoff);
            (item, dir, state)
        })
        .collect();
    let mut steps: Vec<Option<Step<T>>> = Vec::with_capacity(checked.len());
    let mut pending = Vec::new();
    let mut to_delete = Vec::new();
    for (item, dir, state) in checked {
        match state {
            Ok(Some(reason)) => steps.push(Some(Step::Skip(Skipped { path: dir, reason }))),
            Err(failure) => steps.push(Some(Step::Fail(failure))),
            Ok(None) => {
                pending.push((steps.len(), item));
                steps.push(None);
                to_delete.push(dir);
            }
        }
    }
    let results = storage.backend().delete_many(&to_delete);
    for (((index, item), dir), result) in pending.into_iter().zip(&to_delete).zip(results) {
        steps[index] = Some(match result {
            Ok(_) => Step::Done(item),
            Err(err) => Step::Fail(failure(dir, &err)),
        });
    }
    steps.into_iter().flatten().collect()
}

/// Removes the folders that are (still) empty, the ones flagged `true` only when old enough.
fn remove_empty_dirs(
    storage: &Storage,
    dirs: Vec<(String, bool)>,
    cutoff: SystemTime,
    result: &mut SweepResult,
) -> Vec<String> {
    let results: Vec<Step<Option<String>>> = dirs
        .into_par_iter()
        .map(|(dir, check_age)| {
            if check_age {
                match changed_recently(storage, &dir, cutoff) {
                    Ok(Some(reason)) => return Step::Skip(Skipped { path: dir, reason }),
                    Ok(None) => {}
                    Err(failure) => return Step::Fail(failure),
                }
            }
            match storage.backend().remove_empty_dir(&dir) {
                Ok(true) => Step::Done(Some(dir)),
                // Not empty (any more): someone wrote into it, so it stays.
                Ok(false) => Step::Done(None),
                Err(err) => Step::Fail(failure(&dir, &err)),
            }
        })
        .collect();
    result.settle(results).into_iter().flatten().collect()
}

/// Deletes what `plan` lists, in distribution's order, re-checking before each kind of item.
pub(super) fn sweep(
    storage: &Storage,
    mut plan: SweepPlan,
    started: SystemTime,
    cutoff: SystemTime,
) -> SweepResult {
    let mut result = SweepResult::default();
    // Links written since the run started are looked for, with some slack for coarse file
    // timestamps, but never before the grace cutoff: what is older than that was already judged
    // by the mark phase (and with `--grace 0` the operator opted out of time-based protection).
    let since = started.checked_sub(CLOCK_SLACK).unwrap_or(started).max(cutoff);
    if !recheck(storage, &mut plan, since, &mut result) {
        return result;
    }

    let results: Vec<Step<_>> = std::mem::take(&mut plan.manifests)
        .into_par_iter()
        .map(|item| {
            let dir = paths::revision_dir(&item.repository, &item.digest);
            match changed_recently(storage, &format!("{dir}/link"), cutoff) {
                Ok(Some(reason)) => return Step::Skip(Skipped { path: dir, reason }),
                Ok(None) => {}
                Err(failure) => return Step::Fail(failure),
            }
            // History entries first, as distribution does: a crash in between leaves a revision
            // without history, never history without a revision.
            let history: Vec<String> = item
                .tag_history
                .iter()
                .map(|tag| paths::tag_history_dir(&item.repository, tag, &item.digest))
                .collect();
            for (entry, outcome) in history.iter().zip(storage.backend().delete_many(&history)) {
                if let Err(err) = outcome {
                    return Step::Fail(failure(entry, &err));
                }
            }
            match storage.backend().delete(&dir) {
                Ok(_) => Step::Done(item),
                Err(err) => Step::Fail(failure(&dir, &err)),
            }
        })
        .collect();
    result.manifests = result.settle(results);

    let results = delete_unchanged(storage, std::mem::take(&mut plan.layer_links), cutoff, |item| {
        let dir = paths::layer_link_dir(&item.repository, &item.digest);
        let link = format!("{dir}/link");
        (dir, link)
    });
    result.layer_links = result.settle(results);

    // Once more right before the blobs go: a push that reused one of them since the first
    // re-check (its HEAD found the blob, so nothing was uploaded) left a fresh revision or
    // `_layers` link behind. This narrows the race to the moments of the deletes themselves.
    if !recheck(storage, &mut plan, since, &mut result) {
        return result;
    }
    let results = delete_unchanged(storage, std::mem::take(&mut plan.blobs), cutoff, |item| {
        (paths::blob_dir(&item.digest), paths::blob_data(&item.digest))
    });
    result.blobs = result.settle(results);

    // An upload is judged by its newest file; one written to since the mark phase stays.
    let results: Vec<Step<UploadItem>> = std::mem::take(&mut plan.uploads)
        .into_par_iter()
        .map(|item| {
            let dir = paths::upload_dir(&item.repository, &item.id);
            match storage.upload_modified(&item.repository, &item.id) {
                Ok(Some(modified)) if modified > cutoff => Step::Skip(Skipped {
                    path: dir,
                    reason: "the upload was written to during the run".to_owned(),
                }),
                Ok(_) => match storage.backend().delete(&dir) {
                    Ok(_) => Step::Done(item),
                    Err(err) => Step::Fail(failure(&dir, &err)),
                },
                Err(err) => Step::Fail(failure(&dir, &err)),
            }
        })
        .collect();
    result.uploads = result.settle(results);

    // Empty folders found by the walk, then the blob shard folders this sweep emptied.
    let empty = std::mem::take(&mut plan.empty_dirs);
    let mut removed = remove_empty_dirs(
        storage,
        empty.into_iter().map(|d| (d, true)).collect(),
        cutoff,
        &mut result,
    );
    let shards: BTreeSet<String> = result
        .blobs
        .iter()
        .map(|b| paths::blob_dir(&b.digest))
        .chain(removed.iter().filter(|d| d.starts_with("blobs/")).cloned())
        .filter_map(|dir| dir.rsplit_once('/').map(|(shard, _)| shard.to_owned()))
        .collect();
    removed.extend(remove_empty_dirs(
        storage,
        shards.into_iter().map(|d| (d, false)).collect(),
        cutoff,
        &mut result,
    ));
    result.empty_dirs = removed;
    result.empty_dirs.sort();
    result
}

/// Removes from the plan everything that content pushed since the run started needs, and
/// says what was left out.
fn protect(plan: &mut SweepPlan, protected: &DigestSet) -> Vec<Skipped> {
    let mut skipped = Vec::new();
    if protected.is_empty() {
        return skipped;
    }
    drop_protected(&mut plan.manifests, protected, &mut skipped, |m| {
        (&m.digest, paths::revision_dir(&m.repository, &m.digest))
    });
    drop_protected(&mut plan.layer_links, protected, &mut skipped, |l| {
        (&l.digest, paths::layer_link_dir(&l.repository, &l.digest))
    });
    drop_protected(&mut plan.blobs, protected, &mut skipped, |b| {
        (&b.digest, paths::blob_dir(&b.digest))
    });
    skipped
}

/// Drops the planned items whose digest is protected, recording each as skipped at its path.
fn drop_protected<T>(
    items: &mut Vec<T>,
    protected: &DigestSet,
    skipped: &mut Vec<Skipped>,
    digest_and_path: impl Fn(&T) -> (&Digest, String),
) {
    items.retain(|item| {
        let (digest, path) = digest_and_path(item);
        let keep_in_plan = !protected.contains(digest);
        if !keep_in_plan {
            skipped.push(Skipped {
                path,
                reason: "needed by content pushed during the run".to_owned(),
            });
        }
        keep_in_plan
    });
}

/// Walks the repositories again and returns every digest that links written since `since`
/// lead to: pushed manifests with everything they reference (children recursively), and
/// uploaded blobs. The walk is cheap next to what a lost layer costs, and it runs only before a
/// real sweep. A pushed manifest that cannot be read (still being written) abandons the sweep.
pub(super) fn pushed_since(storage: &Storage, since: SystemTime) -> Result<DigestSet, Problem> {
    let names = storage
        .repositories()
        .map_err(|err| Problem::error(ProblemKind::ChangedDuringRun, err.to_string()))?
        .names;
    let fresh: Vec<_> = names
        .par_iter()
        .map(|name| storage.links_modified_since(name, since))
        .collect();

    let mut protected = DigestSet::new();
    let mut queue = Vec::new();
    for recent in fresh {
        protected.extend(recent.blobs.iter());
        queue.extend(recent.manifests);
    }
    while let Some(digest) = queue.pop() {
        if !protected.insert(&digest) {
            continue;
        }
        match load_manifest(storage, &digest) {
            ManifestState::Parsed(facts) => {
                protected.extend(facts.blobs.iter().chain(&facts.foreign));
                queue.extend(facts.children);
            }
            // A child pushed long ago that is simply gone is not this run's business; the
            // mark phase already reported it if it mattered.
            ManifestState::Missing => {}
            ManifestState::Unreadable(reason) => {
                return Err(Problem::error(
                    ProblemKind::ChangedDuringRun,
                    format!(
                        "manifest {digest} was pushed while the collection ran and cannot be read yet \
                         ({reason}); nothing was deleted: run again, preferably with the registry read-only"
                    ),
                )
                .with_digest(&digest));
            }
        }
    }
    Ok(protected)
}
