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
use super::report::{Failure, Outcome, Problem, ProblemKind, Report, Skipped};

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

pub(super) fn sweep(storage: &Storage, report: &mut Report, started: SystemTime, cutoff: SystemTime) {
    // Links written since the run started are looked for, with some slack for coarse file
    // timestamps, but never before the grace cutoff: what is older than that was already judged
    // by the mark phase (and with `--grace 0` the operator opted out of time-based protection).
    let since = started.checked_sub(CLOCK_SLACK).unwrap_or(started).max(cutoff);
    let protected = match pushed_since(storage, since) {
        Ok(protected) => protected,
        Err(problem) => {
            report.problems.push(problem);
            report.outcome = Outcome::Refused;
            return;
        }
    };
    protect(report, &protected);

    let manifests = std::mem::take(&mut report.manifests);
    let results: Vec<Step<_>> = manifests
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
            for tag in &item.tag_history {
                let entry = paths::tag_history_dir(&item.repository, tag, &item.digest);
                if let Err(err) = storage.backend().delete(&entry) {
                    return Step::Fail(failure(&entry, &err));
                }
            }
            match storage.backend().delete(&dir) {
                Ok(_) => Step::Done(item),
                Err(err) => Step::Fail(failure(&dir, &err)),
            }
        })
        .collect();
    report.manifests = settle(report, results);

    let links = std::mem::take(&mut report.layer_links);
    let results: Vec<Step<_>> = links
        .into_par_iter()
        .map(|item| {
            let dir = paths::layer_link_dir(&item.repository, &item.digest);
            match changed_recently(storage, &format!("{dir}/link"), cutoff) {
                Ok(Some(reason)) => Step::Skip(Skipped { path: dir, reason }),
                Ok(None) => match storage.backend().delete(&dir) {
                    Ok(_) => Step::Done(item),
                    Err(err) => Step::Fail(failure(&dir, &err)),
                },
                Err(failure) => Step::Fail(failure),
            }
        })
        .collect();
    report.layer_links = settle(report, results);

    let blobs = std::mem::take(&mut report.blobs);
    let results: Vec<Step<_>> = blobs
        .into_par_iter()
        .map(|item| {
            let dir = paths::blob_dir(&item.digest);
            match changed_recently(storage, &paths::blob_data(&item.digest), cutoff) {
                Ok(Some(reason)) => Step::Skip(Skipped { path: dir, reason }),
                Ok(None) => match storage.backend().delete(&dir) {
                    Ok(_) => Step::Done(item),
                    Err(err) => Step::Fail(failure(&dir, &err)),
                },
                Err(failure) => Step::Fail(failure),
            }
        })
        .collect();
    report.blobs = settle(report, results);

    // Empty folders found by the walk, then blob shards this sweep emptied.
    let mut dirs: Vec<(String, bool)> = std::mem::take(&mut report.empty_dirs)
        .into_iter()
        .map(|d| (d, true))
        .collect();
    let shards: BTreeSet<String> = report
        .blobs
        .iter()
        .filter_map(|b| {
            let dir = paths::blob_dir(&b.digest);
            dir.rsplit_once('/').map(|(shard, _)| shard.to_owned())
        })
        .collect();
    dirs.extend(shards.into_iter().map(|d| (d, false)));
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
    report.empty_dirs = settle(report, results).into_iter().flatten().collect();
    report.empty_dirs.sort();
}

/// Keeps the done items, moves the rest to `skipped` and `failures`.
fn settle<T>(report: &mut Report, results: Vec<Step<T>>) -> Vec<T> {
    let mut done = Vec::with_capacity(results.len());
    for step in results {
        match step {
            Step::Done(item) => done.push(item),
            Step::Skip(skipped) => report.skipped.push(skipped),
            Step::Fail(failure) => report.failures.push(failure),
        }
    }
    done
}

/// Removes from the plan everything that content pushed since the run started needs.
fn protect(report: &mut Report, protected: &DigestSet) {
    if protected.is_empty() {
        return;
    }
    let mut skipped = Vec::new();
    drop_protected(&mut report.manifests, protected, &mut skipped, |m| {
        (&m.digest, paths::revision_dir(&m.repository, &m.digest))
    });
    drop_protected(&mut report.layer_links, protected, &mut skipped, |l| {
        (&l.digest, paths::layer_link_dir(&l.repository, &l.digest))
    });
    drop_protected(&mut report.blobs, protected, &mut skipped, |b| {
        (&b.digest, paths::blob_dir(&b.digest))
    });
    report.skipped.extend(skipped);
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
