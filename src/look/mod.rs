//! Read-only views of a registry: tag details (`tags --long`), `inspect` and `du`.
//!
//! Everything here only reads. Each view is built from the same primitive, [`resolve_image`],
//! which fetches a manifest, its children when it is an index, and (when asked) the image
//! configs for their `created` time, caching configs by digest.

pub mod du;
pub mod inspect;

use std::collections::HashMap;
use std::sync::Mutex;

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

// Where it used to live; kept so that callers of `look::Progress` need not change.
pub use crate::progress::{NoProgress, Progress};

use crate::digest::Digest;
use crate::manifest::{Manifest, ManifestKind, Platform};
use crate::reference::{Reference, Repository, Tag};
use crate::registry::{Client, MAX_CONFIG_BYTES, RegistryError};

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

/// Caches image config `created` times by config digest, so that images sharing a config (and
/// repeated lookups) cost one request.
#[derive(Default)]
pub struct ConfigCache {
    created: Mutex<HashMap<Digest, Option<String>>>,
}

impl ConfigCache {
    async fn created(
        &self,
        client: &Client,
        repository: &Repository,
        config: &Digest,
    ) -> Result<Option<String>, RegistryError> {
        if let Some(hit) = self.created.lock().unwrap_or_else(|e| e.into_inner()).get(config) {
            return Ok(hit.clone());
        }
        let body = client.blob(repository, config, MAX_CONFIG_BYTES).await?;
        let created = parse_created(&body);
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(config.clone(), created.clone());
        Ok(created)
    }
}

/// Reads `created` from an image config; configs of artifacts (signatures, SBOMs) have none.
fn parse_created(config: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Config {
        created: Option<String>,
    }
    serde_json::from_slice::<Config>(config).ok()?.created
}

/// Whether a config media type is an image config whose `created` is worth reading.
fn is_image_config(media_type: &str) -> bool {
    matches!(
        media_type,
        crate::manifest::media_type::OCI_CONFIG | crate::manifest::media_type::DOCKER_CONFIG
    )
}

/// The size of an image: config plus layers.
fn image_size(manifest: &Manifest) -> u64 {
    manifest.blobs().map(|b| b.size).sum()
}

/// Fetches `reference` and summarises it: for an index also every child; with `with_created`
/// also the image configs' `created` times.
pub async fn resolve_image(
    client: &Client,
    repository: &Repository,
    reference: Reference<'_>,
    with_created: bool,
    configs: &ConfigCache,
) -> Result<ImageSummary, RegistryError> {
    let fetched = client.manifest(repository, reference).await?;
    let manifest = &fetched.manifest;
    let mut summary = ImageSummary {
        digest: fetched.digest.clone(),
        media_type: fetched.media_type.clone(),
        kind: manifest.kind,
        manifest_size: fetched.body.len() as u64,
        size: 0,
        created: None,
        platforms: Vec::new(),
        artifact_type: manifest.artifact_type.clone(),
        subject: manifest.subject.as_ref().map(|s| s.digest.clone()),
    };
    match manifest.kind {
        ManifestKind::Image | ManifestKind::Schema1 => {
            summary.size = image_size(manifest);
            if with_created
                && let Some(config) = manifest
                    .config
                    .as_ref()
                    .filter(|c| is_image_config(&c.media_type))
            {
                summary.created = configs.created(client, repository, &config.digest).await?;
            }
        }
        ManifestKind::Index => {
            let children: Vec<PlatformImage> = stream::iter(manifest.manifests.iter())
                .map(|child| async move {
                    let fetched = client.manifest(repository, &child.digest).await?;
                    let created = match fetched.manifest.config.as_ref() {
                        Some(config) if with_created && is_image_config(&config.media_type) => {
                            configs.created(client, repository, &config.digest).await?
                        }
                        _ => None,
                    };
                    Ok::<_, RegistryError>(PlatformImage {
                        platform: child
                            .platform
                            .as_ref()
                            .map_or_else(|| "unknown".to_owned(), Platform::to_string),
                        digest: child.digest.clone(),
                        media_type: fetched.media_type,
                        size: image_size(&fetched.manifest),
                        created,
                    })
                })
                .buffered(8)
                .try_collect()
                .await?;
            summary.size = children.iter().map(|c| c.size).sum();
            summary.created = children.iter().filter_map(|c| c.created.clone()).max();
            summary.platforms = children;
        }
    }
    Ok(summary)
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

/// Resolves every tag concurrently (`tags --long`). A tag that cannot be resolved (deleted
/// meanwhile, corrupt) is reported in its row instead of failing the listing.
pub async fn tag_details(
    client: &Client,
    repository: &Repository,
    tags: &[Tag],
    concurrency: usize,
    progress: &dyn Progress,
) -> Vec<TagDetail> {
    let configs = ConfigCache::default();
    progress.add_total(tags.len() as u64);
    let mut rows: Vec<TagDetail> = stream::iter(tags.iter())
        .map(|tag| {
            let configs = &configs;
            async move {
                let result = resolve_image(client, repository, tag.into(), true, configs).await;
                progress.advance(1);
                match result {
                    Ok(image) => TagDetail {
                        tag: tag.to_string(),
                        image: Some(image),
                        error: None,
                    },
                    Err(err) => TagDetail {
                        tag: tag.to_string(),
                        image: None,
                        error: Some(err.to_string()),
                    },
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    rows.sort_by(|a, b| a.tag.cmp(&b.tag));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_from_config() {
        assert_eq!(
            parse_created(br#"{"created":"2026-01-02T03:04:05Z","architecture":"amd64"}"#).as_deref(),
            Some("2026-01-02T03:04:05Z")
        );
        assert_eq!(parse_created(b"{}"), None);
        assert_eq!(parse_created(b"not json"), None);
    }
}
