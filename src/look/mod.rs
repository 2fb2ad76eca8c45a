//! Read-only views of a registry: tag details (`tags --long`), `inspect` and `du`.
//!
//! Everything here only reads, and every view is built on the repository graph
//! ([`crate::graph`]), read from the API or from storage: [`summarize`] turns one of its
//! manifests into what the views show.

pub mod du;
pub mod inspect;

use serde::Serialize;

use crate::digest::Digest;
use crate::graph::{Node, RepoGraph, ScanOptions, scan_listed};
use crate::manifest::ManifestKind;
use crate::progress::Progress;
use crate::reference::Repository;
use crate::registry::{Client, RegistryError};

/// One image (or index) as `tags --long` and `inspect` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    pub digest: Digest,
    pub media_type: String,
    pub kind: ManifestKind,
    /// Size of the manifest itself.
    pub manifest_size: u64,
    /// Config plus layers; for an index, the sum over its children.
    pub size: u64,
    /// The image config's `created` time (for an index: the newest child's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Index children, each with its platform.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<PlatformImage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifest this one refers to, for signatures and other referrers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
}

/// One child of an index.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformImage {
    /// `os/arch[/variant]`, or `unknown` for children without a platform (e.g. attestations).
    pub platform: String,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

/// Why a manifest of the graph cannot be summarised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    #[error("manifest {0} could not be read")]
    Unread(Digest),
    #[error("index child {0} could not be read")]
    UnreadChild(Digest),
}

/// The size of an image: config plus layers.
fn image_size(node: &Node) -> u64 {
    node.blobs.iter().map(|(_, size)| size).sum()
}

/// `created` as the views print it (RFC 3339, UTC).
fn created(node: &Node) -> Option<String> {
    node.created.map(|time| time.to_string())
}

/// What the views show of the manifest `digest` of `graph`: for an index also every child with
/// its platform. The graph must hold the manifest and, for an index, its children (configs read,
/// if `created` is wanted).
pub fn summarize(graph: &RepoGraph, digest: &Digest) -> Result<ImageSummary, SummaryError> {
    let node = graph
        .nodes
        .get(digest)
        .ok_or_else(|| SummaryError::Unread(digest.clone()))?;
    let mut platforms = Vec::new();
    if node.kind == ManifestKind::Index {
        for (i, child) in node.children.iter().enumerate() {
            let child_node = graph
                .nodes
                .get(child)
                .ok_or_else(|| SummaryError::UnreadChild(child.clone()))?;
            let platform = node.platforms.get(i).cloned().flatten();
            platforms.push(PlatformImage {
                platform: platform.map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
                digest: child.clone(),
                media_type: child_node.media_type.clone(),
                size: image_size(child_node),
                created: created(child_node),
            });
        }
    }
    Ok(ImageSummary {
        digest: digest.clone(),
        media_type: node.media_type.clone(),
        kind: node.kind,
        manifest_size: node.size,
        size: if node.kind == ManifestKind::Index {
            platforms.iter().map(|p| p.size).sum()
        } else {
            image_size(node)
        },
        created: created(node),
        platforms,
        artifact_type: node.artifact_type.clone(),
        subject: node.subject.clone(),
    })
}

/// A tag with its resolved image, or the error that prevented resolving it.
#[derive(Debug, Clone, Serialize)]
pub struct TagDetail {
    pub tag: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `tags --long`: every tag of a repository with its image, and the reads that failed.
#[derive(Debug, Clone)]
pub struct TagListing {
    /// One row per tag, sorted by tag; a tag that could not be resolved (corrupt, a child
    /// missing) has its error in its row instead of failing the listing.
    pub rows: Vec<TagDetail>,
    /// Reads that failed and belong to no single row (the tag list itself, referrers).
    pub errors: Vec<String>,
}

/// Reads the repository's graph (with image configs, for `created`) and summarises every tag.
/// regsweep's own placeholder tags, left by an interrupted untag, are listed too: they are
/// tags of the repository until `apply` completes.
pub async fn tag_details(
    client: &Client,
    repository: &Repository,
    concurrency: usize,
    progress: &dyn Progress,
) -> Result<TagListing, RegistryError> {
    // Listed here, so that a repository that does not exist is an error, not an empty table.
    let tags = client.tags(repository).await?;
    let options = ScanOptions {
        with_configs: true,
        concurrency,
        skip_referrers_api: true,
    };
    let graph = scan_listed(client, repository, tags, options, progress).await;
    Ok(tag_listing(&graph))
}

/// The rows of `tags --long` from a graph.
fn tag_listing(graph: &RepoGraph) -> TagListing {
    let tagged = graph
        .tags
        .iter()
        .chain(graph.leftovers.iter().map(|(tag, left)| (tag, &left.placeholder)));
    let mut rows: Vec<TagDetail> = tagged
        .map(|(tag, digest)| match summarize(graph, digest) {
            Ok(image) => TagDetail {
                tag: tag.clone(),
                image: Some(image),
                error: None,
            },
            Err(err) => TagDetail {
                tag: tag.clone(),
                image: None,
                error: Some(with_cause(graph, &err)),
            },
        })
        .collect();
    rows.extend(graph.unreadable_tags.iter().map(|(tag, err)| TagDetail {
        tag: tag.clone(),
        image: None,
        error: Some(err.clone()),
    }));
    rows.sort_by(|a, b| a.tag.cmp(&b.tag));
    // The unreadable tags' errors are in their rows already.
    let in_rows: Vec<String> = graph
        .unreadable_tags
        .iter()
        .map(|(tag, reason)| crate::graph::tag_error(tag, reason))
        .collect();
    let errors = graph
        .errors
        .iter()
        .filter(|err| !in_rows.contains(err))
        .cloned()
        .collect();
    TagListing { rows, errors }
}

/// A summary error with the reason the graph recorded for the manifest it names.
fn with_cause(graph: &RepoGraph, err: &SummaryError) -> String {
    let (SummaryError::Unread(digest) | SummaryError::UnreadChild(digest)) = err;
    match graph.unreadable_manifests.get(digest) {
        Some(cause) => format!("{err}: {cause}"),
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{d, image, index, repo};
    use crate::manifest::Platform;

    fn platform(arch: &str) -> Option<Platform> {
        serde_json::from_value(serde_json::json!({"os": "linux", "architecture": arch})).ok()
    }

    #[test]
    fn an_index_is_summarised_with_its_children_platforms_sizes_and_newest_time() {
        let mut amd64 = image(&[(10, 5), (11, 100)]);
        amd64.created = "2026-01-02T03:04:05Z".parse().ok();
        let mut arm64 = image(&[(12, 5), (13, 200)]);
        arm64.created = "2026-02-02T03:04:05.5+01:00".parse().ok();
        let mut multi = index(&[1, 2, 3]);
        multi.platforms = vec![platform("amd64"), platform("arm64"), None];
        multi.created = arm64.created;
        let attestation = image(&[(14, 7)]);
        let graph = repo(
            &[("v1", 4)],
            vec![(1, amd64), (2, arm64), (3, attestation), (4, multi)],
        );

        let summary = summarize(&graph, &d(4)).unwrap();
        let shown: Vec<(&str, u64, Option<&str>)> = summary
            .platforms
            .iter()
            .map(|p| (p.platform.as_str(), p.size, p.created.as_deref()))
            .collect();
        assert_eq!(
            shown,
            [
                ("linux/amd64", 105, Some("2026-01-02T03:04:05Z")),
                ("linux/arm64", 205, Some("2026-02-02T02:04:05.5Z")),
                ("unknown", 7, None),
            ]
        );
        assert_eq!(summary.size, 317);
        assert_eq!(summary.manifest_size, 50);
        assert_eq!(summary.created.as_deref(), Some("2026-02-02T02:04:05.5Z"));
        assert_eq!(summarize(&graph, &d(1)).unwrap().size, 105);
        assert_eq!(summarize(&graph, &d(9)).unwrap_err(), SummaryError::Unread(d(9)));
    }

    #[test]
    fn tag_rows_carry_their_own_errors_and_the_rest_is_listed_once() {
        let mut graph = repo(
            &[("broken", 2), ("ok", 1), ("alias", 1)],
            vec![(1, image(&[(10, 3)])), (2, index(&[1, 3]))],
        );
        graph.tag_unreadable("corrupt".into(), "digest mismatch".into());
        graph.manifest_unreadable(d(3), "500 Internal Server Error".into());
        graph.errors.push(format!("referrers of {}: timed out", d(1)));
        let listing = tag_listing(&graph);
        let rows: Vec<(&str, Option<&str>)> = listing
            .rows
            .iter()
            .map(|r| (r.tag.as_str(), r.error.as_deref()))
            .collect();
        let child_error = format!(
            "index child {} could not be read: 500 Internal Server Error",
            d(3)
        );
        assert_eq!(
            rows,
            [
                ("alias", None),
                ("broken", Some(child_error.as_str())),
                ("corrupt", Some("digest mismatch")),
                ("ok", None),
            ]
        );
        assert_eq!(
            listing.errors,
            [
                format!("manifest {}: 500 Internal Server Error", d(3)),
                format!("referrers of {}: timed out", d(1)),
            ]
        );
    }
}
