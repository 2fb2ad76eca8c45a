//! Reports for people rather than scripts: a self-contained HTML page with a treemap of where
//! a registry's storage went (`du --html`) and of what a plan frees (`plan --html`).

pub mod html;
pub mod treemap;

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::digest::Digest;
use crate::graph::{RepoGraph, ScanOptions, scan_named};
use crate::look::du::{DuReport, RepoContent, account};
use crate::progress::Progress;
use crate::registry::Client;

/// One image (a tagged manifest) and what it references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageUsage {
    pub repository: String,
    pub digest: Digest,
    pub tags: Vec<String>,
    /// Manifest, index children, configs, layers and referrers, each blob once.
    pub bytes: u64,
}

/// `du` with the images behind it, for the HTML report.
#[derive(Debug, Clone)]
pub struct DuScan {
    pub report: DuReport,
    /// Largest first.
    pub images: Vec<ImageUsage>,
}

/// Scans like `du` (same graph, same accounting) and keeps the size of every tagged image.
pub async fn du_with_images(
    client: &Client,
    repositories: &[String],
    concurrency: usize,
    progress: &dyn Progress,
) -> DuScan {
    let options = ScanOptions {
        with_configs: false,
        concurrency,
        skip_referrers_api: false,
    };
    let graphs: Vec<RepoGraph> = stream::iter(repositories)
        .map(|repo| scan_named(client, repo, options, progress))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut images: Vec<ImageUsage> = graphs.iter().flat_map(images_of).collect();
    images.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then_with(|| a.repository.cmp(&b.repository))
    });
    let contents = graphs
        .iter()
        .map(|graph| RepoContent {
            name: graph.repository.clone(),
            tags: graph.tags.len(),
            manifests: graph.nodes.len(),
            blobs: graph.blobs_of(graph.nodes.keys()),
            errors: graph.errors.clone(),
        })
        .collect();
    DuScan {
        report: account(contents),
        images,
    }
}

/// Every tagged digest of a repository with its tags and the bytes of its closure.
fn images_of(graph: &RepoGraph) -> Vec<ImageUsage> {
    let mut by_digest: BTreeMap<&Digest, Vec<String>> = BTreeMap::new();
    for (tag, digest) in graph.policy_tags() {
        by_digest.entry(digest).or_default().push(tag.clone());
    }
    by_digest
        .into_iter()
        .map(|(digest, tags)| {
            let closure = graph.closure([digest]);
            ImageUsage {
                repository: graph.repository.clone(),
                digest: digest.clone(),
                tags,
                bytes: graph.blobs_of(closure.iter()).values().sum(),
            }
        })
        .collect()
}
