//! The mark phase for one repository: pure logic over facts already read from storage, so that
//! every reachability rule is unit-tested without I/O.
//!
//! Roots are the tags' `current/link` targets, every manifest revision younger than the grace
//! period (a push in progress), every manifest that cannot be read (never delete what cannot be
//! understood), and — without `delete_untagged` — every revision, as distribution does. From a
//! kept manifest: its config and layers; for an index or manifest list, every child manifest of
//! the repository, recursively; and every manifest of the repository whose `subject` is a kept
//! manifest (signatures, attestations, SBOMs live and die with their subject).

use std::collections::BTreeSet;
use std::time::SystemTime;

use crate::digest::Digest;
use crate::manifest::Manifest;
use crate::storage::{IssueKind, Repository, paths};

use super::digest_set::{DigestMap, DigestSet};
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
    let young = |t: SystemTime| t > input.cutoff;
    let mut out = RepoMark::default();

    for issue in &repo.issues {
        let (severity, kind) = match issue.kind {
            // A `_layers` link is never a root, so a bad one hides nothing; it is left alone.
            IssueKind::BadLink if issue.path.contains("/_layers/") => {
                (Severity::Warning, ProblemKind::BadLink)
            }
            IssueKind::BadLink => (Severity::Error, ProblemKind::BadLink),
            // distribution writes `current/link` last when tagging: a young tag folder without it
            // is a push in progress, whose manifest revision is young and therefore a root.
            IssueKind::MissingTagLink if issue.modified.is_none_or(young) => continue,
            IssueKind::MissingTagLink => (Severity::Error, ProblemKind::BrokenTag),
            IssueKind::Unreadable => (Severity::Error, ProblemKind::Unreadable),
            IssueKind::Unexpected => (Severity::Warning, ProblemKind::Unexpected),
        };
        out.problems.push(
            Problem::new(severity, kind, issue.message.clone())
                .in_repo(name)
                .at(issue.path.clone()),
        );
    }

    let revisions: DigestMap<&Digest, Option<SystemTime>> =
        repo.revisions.iter().map(|l| (&l.digest, l.modified)).collect();
    let layers: DigestMap<&Digest, ()> = repo.layers.iter().map(|d| (d, ())).collect();

    let mut referrers: DigestMap<&Digest, Vec<&Digest>> = DigestMap::default();
    for link in &repo.revisions {
        if let Some(ManifestState::Parsed(facts)) = input.manifests.get(&link.digest)
            && let Some(subject) = &facts.subject
        {
            referrers.entry(subject).or_default().push(&link.digest);
        }
    }

    let mut queue: Vec<&Digest> = Vec::new();
    for tag in &repo.tags {
        let Some(current) = &tag.current else { continue };
        if revisions.contains_key(&current.digest) {
            queue.push(&current.digest);
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
    for link in &repo.revisions {
        let readable = matches!(input.manifests.get(&link.digest), Some(ManifestState::Parsed(_)));
        // A revision whose age was not read counts as young: unknown age must not delete.
        if !input.delete_untagged || link.modified.is_none_or(young) || !readable {
            queue.push(&link.digest);
        }
    }

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
                    if revisions.contains_key(child) {
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

    out.unneeded_layers = repo
        .layers
        .iter()
        .filter(|d| !out.needed.contains_key(d))
        .cloned()
        .collect();
    let mut unlinked: Vec<(&Digest, &Digest)> = out
        .needed
        .iter()
        .filter(|(blob, _)| !layers.contains_key(blob))
        .collect();
    unlinked.sort();
    for (blob, manifest) in unlinked {
        out.problems.push(
            Problem::warning(
                ProblemKind::UnlinkedBlob,
                format!(
                    "manifest {manifest} needs blob {blob}, which is not linked into the repository \
                     (deleted through the API?): the registry answers 404 for it"
                ),
            )
            .in_repo(name)
            .with_digest(blob),
        );
    }

    if input.delete_untagged {
        for link in &repo.revisions {
            if !out.kept.contains(&link.digest) {
                out.delete_manifests.push(ManifestItem {
                    repository: name.to_owned(),
                    digest: link.digest.clone(),
                    tag_history: Vec::new(),
                });
            }
        }
        attach_tag_history(&mut out.delete_manifests, &repo.tags);
    }

    for dir in &repo.empty_dirs {
        if young(dir.modified) {
            out.young_kept += 1;
        } else {
            out.delete_empty_dirs.push(dir.path.clone());
        }
    }

    for tag in &repo.tags {
        if let Some(subject) = referrer_tag_subject(&tag.name)
            && !revisions.contains_key(&subject)
        {
            out.problems.push(
                Problem::warning(
                    ProblemKind::OrphanReferrerTag,
                    format!(
                        "tag `{}` holds referrers or signatures of {subject}, which is not in the \
                         repository any more; delete the tag if it is not needed",
                        tag.name
                    ),
                )
                .in_repo(name)
                .with_digest(&subject),
            );
        }
    }

    out.unneeded_layers.sort();
    out.delete_empty_dirs.sort();
    out
}

#[cfg(test)]
mod tests;
