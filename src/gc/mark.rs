//! The mark phase for one repository: pure logic over facts already read from storage, so that
//! every reachability rule is unit-tested without I/O.
//!
//! Roots are the tags' `current/link` targets, every manifest revision younger than the grace
//! period (a push in progress), every manifest that cannot be read (never delete what cannot be
//! understood), and — without `delete_untagged` — every revision, as distribution does. From a
//! kept manifest: its config and layers; for an index or manifest list, every child manifest of
//! the repository, recursively; and every manifest of the repository whose `subject` is a kept
//! manifest (signatures, attestations, SBOMs live and die with their subject).

use std::collections::{BTreeSet, HashSet};
use std::hash::BuildHasherDefault;
use std::time::SystemTime;

use crate::digest::Digest;
use crate::manifest::Manifest;
use crate::storage::{IssueKind, Repository, paths};

use super::digest_set::{DigestHasher, DigestMap, DigestSet};

/// Digests borrowed from the repository's listing, hashed as cheaply as [`DigestMap`] keys.
type DigestRefs<'a> = HashSet<&'a Digest, BuildHasherDefault<DigestHasher>>;
use super::report::{ManifestItem, Problem, ProblemKind, Severity};

/// What the mark phase needs to know about a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ManifestFacts {
    /// Config and layers that must exist in `blobs/`.
    pub blobs: Vec<Digest>,
    /// Foreign (non-distributable) layers: clients fetch them from their URLs, so the registry
    /// never stored them and their absence is not damage.
    pub foreign: Vec<Digest>,
    /// Child manifests of an index or manifest list.
    pub children: Vec<Digest>,
    /// The OCI 1.1 `subject`.
    pub subject: Option<Digest>,
}

impl ManifestFacts {
    pub fn from_manifest(manifest: &Manifest) -> Self {
        let (foreign, blobs) = manifest
            .blobs()
            .partition::<Vec<_>, _>(|d| is_foreign_layer(&d.media_type));
        Self {
            blobs: blobs.into_iter().map(|d| d.digest.clone()).collect(),
            foreign: foreign.into_iter().map(|d| d.digest.clone()).collect(),
            children: manifest.manifests.iter().map(|d| d.digest.clone()).collect(),
            subject: manifest.subject.as_ref().map(|s| s.digest.clone()),
        }
    }
}

/// Docker foreign layers and OCI non-distributable layers (distribution skips the existence
/// check for both when a manifest is pushed).
fn is_foreign_layer(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.docker.image.rootfs.foreign.")
        || media_type.starts_with("application/vnd.oci.image.layer.nondistributable.")
}

/// A manifest revision's content, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestState {
    Parsed(ManifestFacts),
    /// The revision link exists, the blob does not.
    Missing,
    /// The blob exists but could not be read, does not hash to its digest, or is not a manifest.
    Unreadable(String),
}

/// Input of [`mark_repository`].
#[derive(Debug, Clone, Copy)]
pub struct MarkInput<'a> {
    pub repo: &'a Repository,
    /// Content of every revision of the repository.
    pub manifests: &'a DigestMap<Digest, ManifestState>,
    pub delete_untagged: bool,
    /// Links, blobs and folders modified after this instant are younger than the grace period.
    pub cutoff: SystemTime,
}

/// Result of [`mark_repository`].
#[derive(Debug, Clone, Default)]
pub struct RepoMark {
    /// Manifests kept in this repository.
    pub kept: BTreeSet<Digest>,
    /// Blobs this repository keeps: kept manifests, their children, configs and layers, and the
    /// targets of young `_layers` links.
    pub marked: DigestSet,
    /// Config and layer blobs kept manifests need, each with one manifest that needs it; the
    /// caller checks that they exist.
    pub needed: DigestMap<Digest, Digest>,
    /// Untagged manifests to remove (only with `delete_untagged`), sorted.
    pub delete_manifests: Vec<ManifestItem>,
    /// `_layers` links no kept manifest needs, sorted. The caller deletes those older than the
    /// grace period and keeps the blobs of the younger ones (uploads whose manifest is not
    /// pushed yet): link ages are read only for these few.
    pub unneeded_layers: Vec<Digest>,
    /// Empty revision folders older than the grace period.
    pub delete_empty_dirs: Vec<String>,
    pub problems: Vec<Problem>,
    /// Empty folders kept only because they are younger than the grace period.
    pub young_kept: u64,
}

pub use crate::graph::referrer_tag_subject;

/// Fills each item's `tag_history` with the tags whose history (as read into
/// [`Tag::history`](crate::storage::Tag::history)) lists its digest.
pub fn attach_tag_history(items: &mut [ManifestItem], tags: &[crate::storage::Tag]) {
    let mut by_digest: DigestMap<&Digest, Vec<&str>> = DigestMap::default();
    for tag in tags {
        for digest in &tag.history {
            by_digest.entry(digest).or_default().push(&tag.name);
        }
    }
    for item in items {
        if let Some(names) = by_digest.get(&item.digest) {
            item.tag_history = names.iter().map(|n| (*n).to_owned()).collect();
            item.tag_history.sort();
        }
    }
}

/// Marks one repository. Deterministic: every output list is sorted.
pub fn mark_repository(input: &MarkInput<'_>) -> RepoMark {
    let repo = input.repo;
    let name = repo.name.as_str();
    let mut out = RepoMark {
        problems: issue_problems(repo, input.cutoff),
        ..RepoMark::default()
    };
    let revisions: DigestRefs<'_> = repo.revisions.iter().map(|l| &l.digest).collect();
    let layers: DigestRefs<'_> = repo.layers.iter().collect();

    let mut roots = tag_roots(repo, &revisions, &mut out);
    roots.extend(revision_roots(input));
    mark_reachable(input, &revisions, roots, &mut out);

    out.unneeded_layers = repo
        .layers
        .iter()
        .filter(|d| !out.needed.contains_key(d))
        .cloned()
        .collect();
    out.problems
        .extend(unlinked_blob_problems(name, &out.needed, &layers));
    if input.delete_untagged {
        out.delete_manifests = untagged_manifests(repo, &out.kept);
    }
    (out.delete_empty_dirs, out.young_kept) = old_empty_dirs(repo, input.cutoff);
    out.problems
        .extend(orphan_referrer_tag_problems(repo, &revisions));

    out.unneeded_layers.sort();
    out.delete_empty_dirs.sort();
    out
}

/// The layout issues the storage reader found, as problems: a young tag folder without
/// `current/link` is a push in progress, not damage, and is left out.
fn issue_problems(repo: &Repository, cutoff: SystemTime) -> Vec<Problem> {
    let young = |t: SystemTime| t > cutoff;
    repo.issues
        .iter()
        .filter_map(|issue| {
            let (severity, kind) = match issue.kind {
                // A `_layers` link is never a root, so a bad one hides nothing; it is left alone.
                IssueKind::BadLink if issue.path.contains("/_layers/") => {
                    (Severity::Warning, ProblemKind::BadLink)
                }
                IssueKind::BadLink => (Severity::Error, ProblemKind::BadLink),
                // distribution writes `current/link` last when tagging: a young tag folder
                // without it is a push in progress, whose manifest revision is young and
                // therefore a root.
                IssueKind::MissingTagLink if issue.modified.is_none_or(young) => return None,
                IssueKind::MissingTagLink => (Severity::Error, ProblemKind::BrokenTag),
                IssueKind::Unreadable => (Severity::Error, ProblemKind::Unreadable),
                IssueKind::Unexpected => (Severity::Warning, ProblemKind::Unexpected),
            };
            Some(
                Problem::new(severity, kind, issue.message.clone())
                    .in_repo(&repo.name)
                    .at(issue.path.clone()),
            )
        })
        .collect()
}

/// The tags' targets that are manifests of the repository. A tag pointing elsewhere is a
/// problem, and whatever it points at is marked all the same.
fn tag_roots<'a>(repo: &'a Repository, revisions: &DigestRefs<'_>, out: &mut RepoMark) -> Vec<&'a Digest> {
    let name = repo.name.as_str();
    let mut roots = Vec::new();
    for tag in &repo.tags {
        let Some(current) = &tag.current else { continue };
        if revisions.contains(&current.digest) {
            roots.push(&current.digest);
        } else {
            out.problems.push(
                Problem::error(
                    ProblemKind::BrokenTag,
                    format!(
                        "tag `{}` points to {}, which is not a manifest of the repository",
                        tag.name, current.digest
                    ),
                )
                .in_repo(name)
                .with_digest(&current.digest)
                .at(format!("{}/current/link", paths::tag_dir(name, &tag.name))),
            );
            // Whatever it was, its blob stays.
            out.marked.insert(&current.digest);
        }
    }
    roots
}

/// The revisions kept whether tagged or not: all of them without `delete_untagged`, else the
/// young ones and those that cannot be read.
fn revision_roots<'a>(input: &MarkInput<'a>) -> Vec<&'a Digest> {
    let young = |t: SystemTime| t > input.cutoff;
    input
        .repo
        .revisions
        .iter()
        .filter(|link| {
            let readable = matches!(input.manifests.get(&link.digest), Some(ManifestState::Parsed(_)));
            // A revision whose age was not read counts as young: unknown age must not delete.
            !input.delete_untagged || link.modified.is_none_or(young) || !readable
        })
        .map(|link| &link.digest)
        .collect()
}

/// Manifests of the repository whose `subject` is each digest.
fn referrers_by_subject<'a>(input: &MarkInput<'a>) -> DigestMap<&'a Digest, Vec<&'a Digest>> {
    let mut referrers: DigestMap<&Digest, Vec<&Digest>> = DigestMap::default();
    for link in &input.repo.revisions {
        if let Some(ManifestState::Parsed(facts)) = input.manifests.get(&link.digest)
            && let Some(subject) = &facts.subject
        {
            referrers.entry(subject).or_default().push(&link.digest);
        }
    }
    referrers
}

/// Keeps everything reachable from `roots`: blobs, children and referrers, recording what each
/// kept manifest needs and every manifest that cannot be followed.
fn mark_reachable(
    input: &MarkInput<'_>,
    revisions: &DigestRefs<'_>,
    roots: Vec<&Digest>,
    out: &mut RepoMark,
) {
    let name = input.repo.name.as_str();
    let referrers = referrers_by_subject(input);
    let mut queue = roots;
    while let Some(digest) = queue.pop() {
        if out.kept.contains(digest) {
            continue;
        }
        out.kept.insert(digest.clone());
        out.marked.insert(digest);
        let revision_problem = |kind, message: String| {
            Problem::error(kind, message)
                .in_repo(name)
                .with_digest(digest)
                .at(format!("{}/link", paths::revision_dir(name, digest)))
        };
        match input.manifests.get(digest) {
            Some(ManifestState::Parsed(facts)) => {
                for blob in &facts.blobs {
                    out.marked.insert(blob);
                    out.needed.entry(blob.clone()).or_insert_with(|| digest.clone());
                }
                out.marked.extend(facts.foreign.iter());
                for child in &facts.children {
                    out.marked.insert(child);
                    if revisions.contains(child) {
                        queue.push(child);
                    } else {
                        out.problems.push(
                            Problem::warning(
                                ProblemKind::UnlinkedChild,
                                format!(
                                    "index {digest} lists child manifest {child}, which is not in the \
                                     repository (deleted through the API?): pulls of that platform fail"
                                ),
                            )
                            .in_repo(name)
                            .with_digest(child),
                        );
                    }
                }
            }
            Some(ManifestState::Missing) | None => out.problems.push(revision_problem(
                ProblemKind::MissingManifest,
                format!(
                    "manifest {digest} is linked into the repository but its blob is missing: \
                     what it referenced cannot be known"
                ),
            )),
            Some(ManifestState::Unreadable(reason)) => out.problems.push(revision_problem(
                ProblemKind::UnreadableManifest,
                format!("manifest {digest} cannot be used: {reason}"),
            )),
        }
        if let Some(list) = referrers.get(digest) {
            queue.extend(list.iter().copied());
        }
    }
}

/// Blobs kept manifests need that are not linked into the repository, sorted by blob.
fn unlinked_blob_problems(
    name: &str,
    needed: &DigestMap<Digest, Digest>,
    layers: &DigestRefs<'_>,
) -> Vec<Problem> {
    let mut unlinked: Vec<(&Digest, &Digest)> =
        needed.iter().filter(|(blob, _)| !layers.contains(blob)).collect();
    unlinked.sort();
    unlinked
        .into_iter()
        .map(|(blob, manifest)| {
            Problem::warning(
                ProblemKind::UnlinkedBlob,
                format!(
                    "manifest {manifest} needs blob {blob}, which is not linked into the repository \
                     (deleted through the API?): the registry answers 404 for it"
                ),
            )
            .in_repo(name)
            .with_digest(blob)
        })
        .collect()
}

/// The revisions not kept, each with the tags that once pointed at it.
fn untagged_manifests(repo: &Repository, kept: &BTreeSet<Digest>) -> Vec<ManifestItem> {
    let mut items: Vec<ManifestItem> = repo
        .revisions
        .iter()
        .filter(|link| !kept.contains(&link.digest))
        .map(|link| ManifestItem {
            repository: repo.name.clone(),
            digest: link.digest.clone(),
            tag_history: Vec::new(),
        })
        .collect();
    attach_tag_history(&mut items, &repo.tags);
    items
}

/// Empty revision folders older than the grace period, and how many younger ones are kept.
fn old_empty_dirs(repo: &Repository, cutoff: SystemTime) -> (Vec<String>, u64) {
    let (young, old): (Vec<_>, Vec<_>) = repo.empty_dirs.iter().partition(|dir| dir.modified > cutoff);
    (
        old.into_iter().map(|dir| dir.path.clone()).collect(),
        young.len() as u64,
    )
}

/// Referrer tags (`sha256-<hex>`) whose subject is not in the repository any more.
fn orphan_referrer_tag_problems(repo: &Repository, revisions: &DigestRefs<'_>) -> Vec<Problem> {
    repo.tags
        .iter()
        .filter_map(|tag| {
            let subject = referrer_tag_subject(&tag.name)?;
            if revisions.contains(&subject) {
                return None;
            }
            Some(
                Problem::warning(
                    ProblemKind::OrphanReferrerTag,
                    format!(
                        "tag `{}` holds referrers or signatures of {subject}, which is not in the \
                         repository any more; delete the tag if it is not needed",
                        tag.name
                    ),
                )
                .in_repo(&repo.name)
                .with_digest(&subject),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
