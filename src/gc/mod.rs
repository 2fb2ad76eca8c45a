//! Garbage collection of distribution's storage: mark everything tags need, sweep the rest.
//!
//! The run has four phases, each spread over all cores with rayon:
//!
//! 1. **List blobs**: every `blobs/<alg>/<xx>/<hex>` folder goes into one [`BlobTable`] (32-byte
//!    keys with a mark bit each).
//! 2. **Mark**, per repository: read tags, revisions and `_layers` folders, read and parse every
//!    manifest revision, then [`mark::mark_repository`] (pure) decides what the repository keeps;
//!    its marks are set in the shared table, so a blob any repository needs is never deleted.
//!    Config and layer blobs kept manifests need are checked to exist, and unneeded `_layers`
//!    links are checked against the grace period.
//! 3. **Candidates**: unmarked blobs older than the grace period are garbage.
//! 4. **Sweep** (not in a dry run, and only when no problem of severity `error` was found unless
//!    told to ignore them): look again for anything pushed since the run started and protect it,
//!    then delete untagged manifests with their tag-history entries, unneeded `_layers` links,
//!    garbage blobs and empty folders — each re-checked against the grace period just before it
//!    goes.
//!
//! The registry should be read-only or stopped while this runs, as for distribution's own
//! `garbage-collect`: the grace period and the re-checks protect content pushed during the run,
//! but a push that reuses a blob this run is about to delete can still lose it.

mod digest_set;
pub mod mark;
pub mod probe;
pub mod report;
mod sweep;

pub use sweep::{SweepPlan, SweepResult};

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use crate::digest::Digest;
use crate::manifest::{MAX_MANIFEST_BYTES, Manifest};
use crate::storage::{Issue, LayerLinkState, ReadOptions, Repository, Storage, paths};

pub use digest_set::{BlobTable, DigestHasher, DigestMap, DigestSet};
use mark::{ManifestFacts, ManifestState, MarkInput, mark_repository};
use report::*;

/// How to collect.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Only report what would be deleted.
    pub dry_run: bool,
    /// Also remove manifests no tag reaches (directly, through an index, or as a referrer of a
    /// kept manifest). Without it every manifest revision is kept, as distribution does.
    pub delete_untagged: bool,
    /// Nothing modified more recently than this is deleted, and manifests this young are kept.
    pub grace: Duration,
    /// Sweep even when problems of severity `error` were found. What those problems hide may
    /// then be deleted.
    pub ignore_problems: bool,
    /// Read every link file — revisions, `_layers`, and tags even without `delete_untagged` —
    /// and report those that do not hold the digest of their folder or lead nowhere (slower; see
    /// [`ReadOptions::verify_links`]).
    pub verify_links: bool,
    /// Worker threads; `None` uses rayon's global pool (one per core).
    pub threads: Option<usize>,
    /// The time the grace period counts back from; `None`: the wall clock when the run starts.
    pub now: Option<SystemTime>,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            dry_run: true,
            delete_untagged: false,
            grace: DEFAULT_GRACE,
            ignore_problems: false,
            verify_links: false,
            threads: None,
            now: None,
        }
    }
}

/// The default grace period.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// A failure that prevents the run itself (storage damage is reported in the [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("cannot start {threads} worker threads: {source}")]
    Threads {
        threads: usize,
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
}

/// Collects garbage in `storage` (or, with `dry_run`, only finds it).
pub fn collect(storage: &Storage, options: &GcOptions) -> Result<Report, GcError> {
    match options.threads.or(storage.backend().parallelism()) {
        Some(threads) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("regsweep-gc-{i}"))
                .build()
                .map_err(|source| GcError::Threads { threads, source })?;
            Ok(pool.install(|| run(storage, options)))
        }
        None => Ok(run(storage, options)),
    }
}

/// Reads a manifest blob and reduces it to what marking needs. The content is checked against
/// its digest: a corrupt blob must not be trusted for what it references.
pub fn load_manifest(storage: &Storage, digest: &Digest) -> ManifestState {
    match storage.read_blob(digest, MAX_MANIFEST_BYTES as u64) {
        Ok(None) => ManifestState::Missing,
        Err(err) => ManifestState::Unreadable(err.to_string()),
        Ok(Some(bytes)) => {
            if digest.verify(&bytes) == Some(false) {
                return ManifestState::Unreadable(format!(
                    "its blob does not hash to {digest} (corrupt content)"
                ));
            }
            match Manifest::parse(&bytes, None) {
                Ok(manifest) => ManifestState::Parsed(ManifestFacts::from_manifest(&manifest)),
                Err(err) => ManifestState::Unreadable(err.to_string()),
            }
        }
    }
}

fn millis(since: Instant) -> u64 {
    since.elapsed().as_millis().try_into().unwrap_or(u64::MAX)
}

/// Everything the mark phase produced, merged over repositories.
#[derive(Default)]
struct Marked {
    stats: Stats,
    manifests: Vec<ManifestItem>,
    layer_links: Vec<LayerLinkItem>,
    uploads: Vec<UploadItem>,
    empty_dirs: Vec<String>,
    problems: Vec<Problem>,
}

impl Marked {
    fn merge(mut self, other: Marked) -> Marked {
        let (a, b) = (&mut self.stats, other.stats);
        a.repositories += b.repositories;
        a.tags += b.tags;
        a.manifests += b.manifests;
        a.manifests_kept += b.manifests_kept;
        a.layer_links += b.layer_links;
        a.young_kept += b.young_kept;
        self.manifests.extend(other.manifests);
        self.layer_links.extend(other.layer_links);
        self.uploads.extend(other.uploads);
        self.empty_dirs.extend(other.empty_dirs);
        self.problems.extend(other.problems);
        self
    }
}

fn run(storage: &Storage, options: &GcOptions) -> Report {
    let clock = Instant::now();
    let started = options.now.unwrap_or_else(SystemTime::now);
    let cutoff = started.checked_sub(options.grace).unwrap_or(UNIX_EPOCH);

    // The blob listing comes first: with it, "does this needed blob exist" and "is this link
    // dangling" are lookups instead of a system call each.
    let BlobListing {
        present,
        mut problems,
        shard_sizes,
    } = list_blobs(storage);
    let blobs_ms = millis(clock);

    let mark_clock = Instant::now();
    let names = match storage.repositories() {
        Ok(discovery) => {
            problems.extend(discovery.issues.into_iter().map(|issue| {
                Problem::error(
                    ProblemKind::Unreadable,
                    format!("{} (repositories below it were not collected)", issue.message),
                )
                .at(issue.path)
            }));
            discovery.names
        }
        Err(err) => {
            problems.push(Problem::error(ProblemKind::Unreadable, err.to_string()).at("repositories"));
            Vec::new()
        }
    };
    let marked = names
        .par_iter()
        .fold(Marked::default, |acc, name| {
            acc.merge(mark_one(storage, name, options, cutoff, &present))
        })
        .reduce(Marked::default, Marked::merge);
    let mark_ms = millis(mark_clock);

    let candidate_clock = Instant::now();
    let blobs = blob_candidates(storage, &present, cutoff);
    let blobs_ms = blobs_ms + millis(candidate_clock);

    let Marked {
        mut stats,
        mut manifests,
        mut layer_links,
        mut uploads,
        mut empty_dirs,
        problems: repo_problems,
    } = marked;
    problems.extend(repo_problems);
    problems.extend(blobs.problems);
    problems.extend(
        storage
            .backend()
            .anomalies()
            .into_iter()
            .map(|message| Problem::warning(ProblemKind::Unexpected, message)),
    );
    stats.blobs = present.len() as u64 - blobs.without_data;
    stats.blobs_marked = stats.blobs - blobs.candidates.len() as u64 - blobs.young;
    stats.young_kept += blobs.young;
    empty_dirs.extend(blobs.empty_dirs);
    drop(present);

    manifests.sort_by(|a, b| (&a.repository, &a.digest).cmp(&(&b.repository, &b.digest)));
    layer_links.sort_by(|a, b| (&a.repository, &a.digest).cmp(&(&b.repository, &b.digest)));
    uploads.sort_by(|a, b| (&a.repository, &a.id).cmp(&(&b.repository, &b.id)));
    empty_dirs.sort();
    problems.sort_by(|a, b| {
        (a.severity, &a.repository, a.kind, &a.path, &a.digest).cmp(&(
            b.severity,
            &b.repository,
            b.kind,
            &b.path,
            &b.digest,
        ))
    });
    let mut blob_items = blobs.candidates;
    blob_items.sort_by(|a, b| a.digest.cmp(&b.digest));
    let plan = SweepPlan {
        manifests,
        layer_links,
        blobs: blob_items,
        uploads,
        empty_dirs,
    };

    let refused = problems.iter().any(Problem::is_error) && !options.ignore_problems;
    let outcome = if refused {
        Outcome::Refused
    } else if options.dry_run {
        Outcome::DryRun
    } else {
        Outcome::Swept
    };
    let mut timings = Timings {
        mark_ms,
        blobs_ms,
        ..Timings::default()
    };
    let swept = if outcome == Outcome::Swept {
        let sweep_clock = Instant::now();
        let result = sweep::sweep(storage, plan, started, cutoff);
        timings.sweep_ms = millis(sweep_clock);
        result
    } else {
        // What a sweep would delete, including the blob shard folders it would empty, so that
        // a dry run announces exactly what the real run removes.
        let mut empty_dirs = plan.empty_dirs;
        if storage.backend().has_folders() {
            let shards = emptied_shards(&plan.blobs, &empty_dirs, &shard_sizes);
            empty_dirs.extend(shards);
            empty_dirs.sort();
        }
        SweepResult {
            manifests: plan.manifests,
            layer_links: plan.layer_links,
            blobs: plan.blobs,
            uploads: plan.uploads,
            empty_dirs,
            ..SweepResult::default()
        }
    };
    let mut outcome = outcome;
    if let Some(problem) = swept.abandoned {
        problems.push(problem);
        outcome = Outcome::Refused;
    }
    timings.total_ms = millis(clock);
    Report {
        format: REPORT_FORMAT,
        storage: storage.backend().location(),
        dry_run: options.dry_run,
        delete_untagged: options.delete_untagged,
        grace_seconds: options.grace.as_secs(),
        started_at: jiff::Timestamp::try_from(started)
            .map(|t| t.to_string())
            .unwrap_or_default(),
        outcome,
        stats,
        // Bytes of the blobs actually deleted (or that a sweep would delete), never of the
        // candidates a failed or skipped deletion left in place.
        freed_bytes: swept.blobs.iter().map(|b| b.size).sum(),
        blobs: swept.blobs,
        manifests: swept.manifests,
        layer_links: swept.layer_links,
        uploads: swept.uploads,
        empty_dirs: swept.empty_dirs,
        skipped: swept.skipped,
        failures: swept.failures,
        problems,
        timings,
        requests: storage.backend().request_counts(),
    }
}

/// The blob shard folders that deleting `blobs` and the empty blob folders among `empty_dirs`
/// leaves empty.
fn emptied_shards(
    blobs: &[BlobItem],
    empty_dirs: &[String],
    shard_sizes: &std::collections::HashMap<String, usize>,
) -> Vec<String> {
    let mut deleted: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let blob_dirs = blobs.iter().map(|b| paths::blob_dir(&b.digest));
    let empty_blob_dirs = empty_dirs.iter().filter(|d| d.starts_with("blobs/")).cloned();
    for dir in blob_dirs.chain(empty_blob_dirs) {
        if let Some((shard, _)) = dir.rsplit_once('/') {
            *deleted.entry(shard.to_owned()).or_default() += 1;
        }
    }
    deleted
        .into_iter()
        .filter(|(shard, n)| shard_sizes.get(shard) == Some(n))
        .map(|(shard, _)| shard)
        .collect()
}

/// Reads, marks and checks one repository.
fn mark_one(
    storage: &Storage,
    name: &str,
    options: &GcOptions,
    cutoff: SystemTime,
    present: &BlobTable,
) -> Marked {
    let mut repo = storage.read_repository(name, read_options(options));
    let manifests: DigestMap<Digest, ManifestState> = repo
        .revisions
        .par_iter()
        .map(|link| (link.digest.clone(), load_manifest(storage, &link.digest)))
        .collect();
    let mut result = mark_repository(&MarkInput {
        repo: &repo,
        manifests: &manifests,
        delete_untagged: options.delete_untagged,
        cutoff,
    });
    drop(manifests);
    let mut out = Marked {
        problems: std::mem::take(&mut result.problems),
        empty_dirs: std::mem::take(&mut result.delete_empty_dirs),
        ..Marked::default()
    };
    if !result.delete_manifests.is_empty() {
        out.problems
            .extend(read_tag_histories(storage, &mut repo, &result.delete_manifests));
        mark::attach_tag_history(&mut result.delete_manifests, &repo.tags);
    }
    // Marks land directly in the shared table of present blobs; marks of blobs the listing did
    // not see matter to nobody (only listed blobs can be deleted).
    result.marked.mark_in(present);
    out.problems
        .extend(missing_needed_blobs(storage, name, &result.needed, present));
    out.stats = Stats {
        repositories: 1,
        tags: repo.tags.len() as u64,
        manifests: repo.revisions.len() as u64,
        manifests_kept: repo
            .revisions
            .iter()
            .filter(|l| result.kept.contains(&l.digest))
            .count() as u64,
        layer_links: repo.layers.len() as u64,
        young_kept: result.young_kept,
        ..Stats::default()
    };
    sweep_unneeded_layer_links(storage, name, &result.unneeded_layers, present, cutoff, &mut out);
    sweep_abandoned_uploads(storage, name, cutoff, &mut out);
    out.manifests = result.delete_manifests;
    out
}

/// What to read of a repository for marking it.
fn read_options(options: &GcOptions) -> ReadOptions {
    ReadOptions {
        // Read later, only where manifests are deleted.
        tag_history: false,
        // Marking needs the age of revisions only, and those come with finding them.
        link_times: false,
        // Without `delete_untagged` every revision is a root, so where tags point cannot change
        // what is kept: their links are read only to verify them. Their names still serve to
        // find signature tags whose image is gone.
        tag_names_only: !options.delete_untagged && !options.verify_links,
        verify_links: options.verify_links,
    }
}

/// Reads each tag's history into `repo`, only the `index/<algorithm>` folders of the manifests
/// to delete: listing every tag's whole history would double the cost of a collection. Returns
/// what could not be read.
fn read_tag_histories(storage: &Storage, repo: &mut Repository, deleted: &[ManifestItem]) -> Vec<Problem> {
    let mut algorithms: Vec<&str> = deleted.iter().map(|m| m.digest.algorithm()).collect();
    algorithms.sort_unstable();
    algorithms.dedup();
    let name = repo.name.clone();
    let histories: Vec<(Vec<Digest>, Vec<Issue>)> = repo
        .tags
        .par_iter()
        .map(|tag| {
            let mut found = (Vec::new(), Vec::new());
            for algorithm in &algorithms {
                let (digests, issues) = storage.read_tag_history(&name, &tag.name, algorithm);
                found.0.extend(digests);
                found.1.extend(issues);
            }
            found
        })
        .collect();
    let mut problems = Vec::new();
    for (tag, (history, issues)) in repo.tags.iter_mut().zip(histories) {
        tag.history = history;
        problems.extend(issues.into_iter().map(|issue| {
            Problem::warning(ProblemKind::Unexpected, issue.message)
                .in_repo(&name)
                .at(issue.path)
        }));
    }
    problems
}

/// Needed blobs missing from the listing, looked up again (one may have been uploaded after the
/// listing, for a manifest pushed while this runs): those still missing are errors.
fn missing_needed_blobs(
    storage: &Storage,
    name: &str,
    needed: &DigestMap<Digest, Digest>,
    present: &BlobTable,
) -> Vec<Problem> {
    let mut missing: Vec<(&Digest, &Digest)> = needed
        .iter()
        .filter(|(blob, _)| !present.contains(blob))
        .collect();
    missing.sort();
    missing
        .into_iter()
        .filter_map(|(blob, manifest)| {
            let problem = match storage.stat_blob(blob) {
                Ok(Some(_)) => return None,
                Ok(None) => Problem::error(
                    ProblemKind::MissingBlob,
                    format!("manifest {manifest} needs blob {blob}, which is missing from blobs/"),
                ),
                Err(err) => Problem::error(ProblemKind::Unreadable, err.to_string()),
            };
            Some(problem.in_repo(name).with_digest(blob).at(paths::blob_data(blob)))
        })
        .collect()
}

/// What happens to a `_layers` link no kept manifest needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayerLinkFate {
    /// Younger than the grace period: an upload whose manifest is not pushed yet keeps its link
    /// and its blob.
    KeepYoung,
    /// An empty folder younger than the grace period.
    KeepYoungEmptyDir,
    DeleteLink,
    DeleteEmptyDir,
    /// Gone, or something unexpected.
    LeaveAlone,
}

fn layer_link_fate(state: &LayerLinkState, cutoff: SystemTime) -> LayerLinkFate {
    match *state {
        LayerLinkState::Link(modified) if modified > cutoff => LayerLinkFate::KeepYoung,
        LayerLinkState::Link(_) => LayerLinkFate::DeleteLink,
        LayerLinkState::EmptyDir(modified) if modified > cutoff => LayerLinkFate::KeepYoungEmptyDir,
        LayerLinkState::EmptyDir(_) => LayerLinkFate::DeleteEmptyDir,
        LayerLinkState::Other => LayerLinkFate::LeaveAlone,
    }
}

/// Reads the state of each unneeded `_layers` link (only these few have their age read) and
/// files it for deletion or keeps it.
fn sweep_unneeded_layer_links(
    storage: &Storage,
    name: &str,
    unneeded: &[Digest],
    present: &BlobTable,
    cutoff: SystemTime,
    out: &mut Marked,
) {
    let states: Vec<_> = unneeded
        .par_iter()
        .map(|digest| (digest, storage.layer_link_state(name, digest)))
        .collect();
    for (digest, state) in states {
        let state = match state {
            Ok(state) => state,
            Err(err) => {
                out.problems.push(
                    Problem::warning(ProblemKind::Unreadable, err.to_string())
                        .in_repo(name)
                        .with_digest(digest)
                        .at(paths::layer_link_dir(name, digest)),
                );
                continue;
            }
        };
        match layer_link_fate(&state, cutoff) {
            LayerLinkFate::KeepYoung => {
                present.mark(digest);
                out.stats.young_kept += 1;
            }
            LayerLinkFate::KeepYoungEmptyDir => out.stats.young_kept += 1,
            LayerLinkFate::DeleteLink => out.layer_links.push(LayerLinkItem {
                repository: name.to_owned(),
                digest: digest.clone(),
                dangling: !present.contains(digest),
            }),
            LayerLinkFate::DeleteEmptyDir => out.empty_dirs.push(paths::layer_link_dir(name, digest)),
            LayerLinkFate::LeaveAlone => {}
        }
    }
}

/// Uploads nobody wrote to within the grace period are abandoned pushes (distribution's own
/// purger removes them only after a week, and never on a read-only registry).
fn sweep_abandoned_uploads(storage: &Storage, name: &str, cutoff: SystemTime, out: &mut Marked) {
    let ids = match storage.uploads(name) {
        Ok(ids) => ids,
        Err(err) => {
            out.problems
                .push(Problem::warning(ProblemKind::Unreadable, err.to_string()).in_repo(name));
            return;
        }
    };
    let ages: Vec<_> = ids
        .into_par_iter()
        .map(|id| {
            let modified = storage.upload_modified(name, &id);
            (id, modified)
        })
        .collect();
    for (id, modified) in ages {
        match modified {
            Ok(Some(t)) if t > cutoff => out.stats.young_kept += 1,
            Ok(Some(_)) => out.uploads.push(UploadItem {
                repository: name.to_owned(),
                id,
            }),
            Ok(None) => {}
            Err(err) => out.problems.push(
                Problem::warning(ProblemKind::Unreadable, err.to_string())
                    .in_repo(name)
                    .at(paths::upload_dir(name, &id)),
            ),
        }
    }
}

/// Every `blobs/<alg>/<xx>/<hex>` folder, listed shard by shard in parallel (names only).
#[derive(Default)]
struct BlobListing {
    present: BlobTable,
    problems: Vec<Problem>,
    /// Entries per shard folder, to tell which shards a sweep empties.
    shard_sizes: std::collections::HashMap<String, usize>,
}

fn list_blobs(storage: &Storage) -> BlobListing {
    let (shards, issues) = match storage.blob_shards() {
        Ok(found) => found,
        Err(err) => {
            return BlobListing {
                problems: vec![Problem::error(ProblemKind::Unreadable, err.to_string()).at("blobs")],
                ..BlobListing::default()
            };
        }
    };
    // Folded into one set per worker, not one per shard: merging hundreds of sets pairwise
    // would move every digest several times.
    let mut listing = shards
        .par_iter()
        .fold(BlobListing::default, |mut part, shard| {
            match storage.list_blob_shard(shard) {
                Ok(listed) => {
                    part.shard_sizes
                        .insert(shard.clone(), listed.names.len() + listed.unexpected.len());
                    for name in &listed.names {
                        if part.present.insert_parts(&listed.algorithm, name).is_none() {
                            part.problems.push(unexpected(format!("{shard}/{name}")));
                        }
                    }
                    part.problems
                        .extend(listed.unexpected.into_iter().map(unexpected));
                }
                // Only deletion candidates can hide there, and a needed blob missing from the
                // listing is looked up on its own.
                Err(err) => part
                    .problems
                    .push(Problem::warning(ProblemKind::Unreadable, err.to_string()).at(shard.clone())),
            }
            part
        })
        .reduce(BlobListing::default, |a, b| BlobListing {
            present: a.present.merge(b.present),
            problems: a.problems.into_iter().chain(b.problems).collect(),
            shard_sizes: a.shard_sizes.into_iter().chain(b.shard_sizes).collect(),
        });
    listing
        .problems
        .extend(issues.into_iter().map(|i| unexpected(i.path)));
    listing
}

fn unexpected(path: String) -> Problem {
    Problem::warning(
        ProblemKind::Unexpected,
        format!("`{path}` does not belong to distribution's layout; left alone"),
    )
    .at(path)
}

#[derive(Default)]
struct BlobCandidates {
    candidates: Vec<BlobItem>,
    young: u64,
    /// Blob folders without `data` (not blobs).
    without_data: u64,
    empty_dirs: Vec<String>,
    problems: Vec<Problem>,
}

/// Unmarked blobs, with size and age (the only blobs that are stat'ed).
fn blob_candidates(storage: &Storage, present: &BlobTable, cutoff: SystemTime) -> BlobCandidates {
    present
        .unmarked()
        .into_par_iter()
        .map(|digest| {
            let mut part = BlobCandidates::default();
            match storage.stat_blob(&digest) {
                Ok(Some(meta)) if meta.modified > cutoff => part.young += 1,
                Ok(Some(meta)) => part.candidates.push(BlobItem {
                    digest,
                    size: meta.size,
                }),
                Ok(None) => {
                    // A blob folder without `data`: an interrupted delete, or an upload being
                    // moved into place right now. Only an old, empty one is removed.
                    part.without_data += 1;
                    let dir = paths::blob_dir(&digest);
                    let backend = storage.backend();
                    match (backend.list(&dir), backend.stat(&dir)) {
                        (Ok(Some(entries)), Ok(Some(meta))) if entries.is_empty() => {
                            if meta.modified > cutoff {
                                part.young += 1;
                            } else {
                                part.empty_dirs.push(dir);
                            }
                        }
                        (Ok(Some(entries)), _) if !entries.is_empty() => part.problems.push(unexpected(dir)),
                        _ => {}
                    }
                }
                Err(err) => part.problems.push(
                    Problem::warning(ProblemKind::Unreadable, err.to_string())
                        .with_digest(&digest)
                        .at(paths::blob_data(&digest)),
                ),
            }
            part
        })
        .reduce(BlobCandidates::default, |mut a, b| {
            a.candidates.extend(b.candidates);
            a.young += b.young;
            a.without_data += b.without_data;
            a.empty_dirs.extend(b.empty_dirs);
            a.problems.extend(b.problems);
            a
        })
}

#[cfg(test)]
mod tests;
