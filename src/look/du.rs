//! `du`: storage used per repository, computed from manifests.
//!
//! The repository graph ([`crate::graph::scan`]) is read: every tag, index children and
//! referrers; every blob (manifests, configs, layers) is counted once per repository. Across the registry a blob is stored once however many
//! repositories link it, so the registry total counts each distinct digest once, and each
//! repository's bytes split into *unique* (only this repository references them: what deleting
//! the repository would free) and *shared* (also referenced elsewhere).
//!
//! Only content reachable from tags is visible through the API; untagged manifests and orphan
//! blobs that are still on disk are what `gc` reclaims.

use std::collections::HashMap;

use futures::stream::{self, StreamExt};

use serde::Serialize;

use crate::digest::Digest;
use crate::graph::{RepoGraph, ScanOptions, scan_named};
use crate::progress::Progress;
use crate::registry::Client;

/// What one repository references, as scanned.
#[derive(Debug, Clone, Default)]
pub struct RepoContent {
    pub name: String,
    pub tags: usize,
    pub manifests: usize,
    /// Every blob digest (manifests included) with its size.
    pub blobs: HashMap<Digest, u64>,
    /// Reads that failed; the figures then undercount.
    pub errors: Vec<String>,
}

/// Usage of one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepoUsage {
    pub name: String,
    pub tags: usize,
    pub manifests: usize,
    pub blobs: usize,
    /// Everything this repository references.
    pub total_bytes: u64,
    /// Referenced by no other repository.
    pub unique_bytes: u64,
    /// Also referenced by another repository.
    pub shared_bytes: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The `du` report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuReport {
    pub repositories: Vec<RepoUsage>,
    /// Distinct blobs across all scanned repositories.
    pub blobs: usize,
    /// Bytes of distinct blobs: what the registry stores for this content.
    pub total_bytes: u64,
    /// Sum of the repositories' totals: what it would take without sharing.
    pub sum_of_repositories_bytes: u64,
    /// Number of repositories with read errors.
    pub repositories_with_errors: usize,
}

/// Combines per-repository scans into the report. Pure, so the accounting is unit-tested.
pub fn account(mut contents: Vec<RepoContent>) -> DuReport {
    contents.sort_by(|a, b| a.name.cmp(&b.name));
    let mut owners: HashMap<&Digest, (u32, u64)> = HashMap::new();
    for repo in &contents {
        for (digest, size) in &repo.blobs {
            let entry = owners.entry(digest).or_insert((0, *size));
            entry.0 += 1;
        }
    }
    let repositories: Vec<RepoUsage> = contents
        .iter()
        .map(|repo| {
            let total: u64 = repo.blobs.values().sum();
            let unique: u64 = repo
                .blobs
                .iter()
                .filter(|(d, _)| owners.get(d).is_some_and(|(count, _)| *count == 1))
                .map(|(_, size)| size)
                .sum();
            RepoUsage {
                name: repo.name.clone(),
                tags: repo.tags,
                manifests: repo.manifests,
                blobs: repo.blobs.len(),
                total_bytes: total,
                unique_bytes: unique,
                shared_bytes: total - unique,
                errors: repo.errors.clone(),
            }
        })
        .collect();
    DuReport {
        blobs: owners.len(),
        total_bytes: owners.values().map(|(_, size)| size).sum(),
        sum_of_repositories_bytes: repositories.iter().map(|r| r.total_bytes).sum(),
        repositories_with_errors: repositories.iter().filter(|r| !r.errors.is_empty()).count(),
        repositories,
    }
}

/// Scans the given repositories concurrently and accounts their storage.
pub async fn du(
    client: &Client,
    repositories: &[String],
    concurrency: usize,
    progress: &dyn Progress,
) -> DuReport {
    let options = ScanOptions {
        with_configs: false,
        concurrency,
        skip_referrers_api: false,
    };
    let contents = stream::iter(repositories)
        .map(|repo| async move { content(&scan_named(client, repo, options, progress).await) })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    account(contents)
}

/// Like [`du`], reading the repositories from the registry's storage.
pub fn du_on_storage(
    storage: &crate::storage::Storage,
    repositories: &[String],
    progress: &dyn Progress,
) -> DuReport {
    use rayon::prelude::*;
    progress.add_total(repositories.len() as u64);
    let contents = repositories
        .par_iter()
        .map(|repo| {
            let graph = crate::graph::storage::read(storage, repo, false);
            progress.advance(1);
            content(&graph)
        })
        .collect();
    account(contents)
}

/// What a repository's graph references: every manifest reachable from its tags (children and
/// referrers included) and their blobs.
fn content(graph: &RepoGraph) -> RepoContent {
    RepoContent {
        name: graph.repository.clone(),
        tags: graph.tags.len(),
        manifests: graph.nodes.len(),
        blobs: graph.blobs_of(graph.nodes.keys()),
        errors: graph.errors.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::sha256(&[n])
    }

    fn repo(name: &str, blobs: &[(u8, u64)]) -> RepoContent {
        RepoContent {
            name: name.into(),
            tags: 1,
            manifests: 1,
            blobs: blobs.iter().map(|(n, s)| (d(*n), *s)).collect(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn shared_blobs_count_once_in_the_total() {
        let report = account(vec![
            repo("b", &[(1, 100), (2, 10), (3, 1)]),
            repo("a", &[(1, 100), (4, 1000)]),
        ]);
        assert_eq!(report.blobs, 4);
        assert_eq!(report.total_bytes, 1111);
        assert_eq!(report.sum_of_repositories_bytes, 1211);
        let a = &report.repositories[0];
        assert_eq!(
            (a.name.as_str(), a.total_bytes, a.unique_bytes, a.shared_bytes),
            ("a", 1100, 1000, 100)
        );
        let b = &report.repositories[1];
        assert_eq!((b.total_bytes, b.unique_bytes, b.shared_bytes), (111, 11, 100));
    }

    #[test]
    fn errors_are_counted() {
        let mut broken = repo("x", &[]);
        broken.errors.push("boom".into());
        let report = account(vec![broken, repo("y", &[(1, 5)])]);
        assert_eq!(report.repositories_with_errors, 1);
        assert_eq!(report.total_bytes, 5);
    }

    #[test]
    fn empty_registry() {
        let report = account(Vec::new());
        assert_eq!(
            (report.blobs, report.total_bytes, report.repositories.len()),
            (0, 0, 0)
        );
    }
}
