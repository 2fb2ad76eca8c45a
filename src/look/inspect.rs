//! `inspect`: one image with everything a cleanup decision depends on — the other tags on the
//! same digest (deleting the digest deletes them too), the platforms of an index, and the
//! signatures, attestations and other referrers attached to it.

use serde::Serialize;

use super::{ImageSummary, summarize, with_cause};
use crate::digest::Digest;
use crate::graph::{self, ScanOptions, scan};
use crate::manifest::{Manifest, ManifestKind};
use crate::progress::NoProgress;
use crate::reference::{Reference, Repository, Tag};
use crate::registry::{Client, RegistryError};

/// What `inspect` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub repository: String,
    /// The tag or digest that was asked for.
    pub reference: String,
    #[serde(flatten)]
    pub image: ImageSummary,
    /// Every tag that points at this digest (sorted), including the one asked for.
    pub tags: Vec<String>,
    /// Signatures, attestations, SBOMs and other artifacts that refer to this digest.
    pub referrers: Vec<Referrer>,
    /// Whether the registry has the OCI referrers API; without it, referrers pushed without a
    /// tag cannot be seen.
    pub referrers_api: bool,
    /// Things that could not be checked (a tag that vanished while listing, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// What a referrer is, from its tag suffix or artifact type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferrerKind {
    Signature,
    Attestation,
    Sbom,
    /// The OCI referrers fallback index (`sha256-<hex>` tag) itself.
    ReferrersIndex,
    Other,
}

/// Where a referrer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferrerSource {
    /// The registry's `GET /v2/<name>/referrers/<digest>`.
    ReferrersApi,
    /// Listed in the `sha256-<hex>` fallback index.
    FallbackIndex,
    /// A tag named after the digest (`sha256-<hex>.sig`, cosign's scheme).
    DigestTag,
    /// A manifest under an ordinary tag whose `subject` is this digest (oras and others).
    Subject,
}

/// One referrer.
#[derive(Debug, Clone, Serialize)]
pub struct Referrer {
    pub digest: Digest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub kind: ReferrerKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub source: ReferrerSource,
}

/// Classifies a tag that starts with `sha256-<hex>` by what follows.
pub fn digest_tag_kind(suffix: &str) -> ReferrerKind {
    match suffix {
        "" => ReferrerKind::ReferrersIndex,
        ".sig" => ReferrerKind::Signature,
        ".att" => ReferrerKind::Attestation,
        ".sbom" => ReferrerKind::Sbom,
        _ => ReferrerKind::Other,
    }
}

fn kind_from_artifact_type(artifact_type: Option<&str>) -> ReferrerKind {
    let Some(t) = artifact_type else {
        return ReferrerKind::Other;
    };
    if t.contains("signature") || t.contains("cosign") || t.contains("notary") {
        ReferrerKind::Signature
    } else if t.contains("spdx") || t.contains("cyclonedx") || t.contains("sbom") {
        ReferrerKind::Sbom
    } else if t.contains("in-toto") || t.contains("attestation") || t.contains("provenance") {
        ReferrerKind::Attestation
    } else {
        ReferrerKind::Other
    }
}

/// Why `inspect` could not inspect.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{0}")]
    Registry(#[from] RegistryError),
    /// The image was found but part of it (an index child) could not be read.
    #[error("{0}")]
    Incomplete(String),
}

/// Inspects `repository` at `reference` (a tag or a digest).
pub async fn inspect(
    client: &Client,
    repository: &Repository,
    reference: Reference<'_>,
    concurrency: usize,
) -> Result<Inspection, InspectError> {
    // The reference first: its answer names the digest (and a tag that does not exist is an
    // error of its own, not a missing row).
    let fetched = client.manifest(repository, reference).await?;
    let digest = fetched.digest.clone();
    // The repository graph knows every tag's manifest, so referrers pushed under ordinary tags
    // (a `subject` field, as oras does) are found as well as those named after the digest.
    let options = ScanOptions {
        with_configs: false,
        concurrency,
        skip_referrers_api: false,
    };
    let mut graph = scan(client, repository, options, &NoProgress).await;
    if !graph.nodes.contains_key(&digest) {
        // Untagged, or pushed after the listing: add it and its children.
        let missing = graph::insert_node(&mut graph, fetched);
        graph::add_manifests(client, repository, &mut graph, missing, concurrency).await;
    }
    // Only this image's configs: the rest of the repository needs no `created` here.
    graph::read_configs_of(
        client,
        repository,
        &mut graph,
        std::slice::from_ref(&digest),
        concurrency,
    )
    .await;
    let image =
        summarize(&graph, &digest).map_err(|err| InspectError::Incomplete(with_cause(&graph, &err)))?;
    let mut warnings: Vec<String> = graph.errors.clone();
    let tags = graph.tags_of(&image.digest);

    let mut referrers: Vec<Referrer> = Vec::new();
    let mut fallback_index_tag = None;
    for (tag, digest) in &graph.tags {
        let Some((subject, suffix)) = Digest::from_referrer_tag(tag) else {
            continue;
        };
        if subject != image.digest {
            continue;
        }
        let kind = digest_tag_kind(suffix);
        if kind == ReferrerKind::ReferrersIndex {
            fallback_index_tag = Some(tag.clone());
        }
        referrers.push(Referrer {
            digest: digest.clone(),
            tag: Some(tag.clone()),
            kind,
            artifact_type: None,
            source: ReferrerSource::DigestTag,
        });
    }

    let referrers_api = graph.referrers_api.unwrap_or(false);
    match client.referrers(repository, &image.digest).await? {
        Some(found) => referrers.extend(found.into_iter().map(|d| Referrer {
            kind: kind_from_artifact_type(d.artifact_type.as_deref()),
            artifact_type: d.artifact_type,
            digest: d.digest,
            tag: None,
            source: ReferrerSource::ReferrersApi,
        })),
        None => {
            // The graph's tags were listed by the registry, which only yields valid tags.
            if let Some(tag) = fallback_index_tag.and_then(|t: String| Tag::parse(&t).ok()) {
                let index = client.manifest(repository, &tag).await?;
                if index.manifest.kind == ManifestKind::Index {
                    referrers.extend(listed_referrers(&index.manifest));
                }
            }
            warnings.push(
                "the registry has no OCI referrers API: referrers pushed without a tag (and not listed in a `sha256-<hex>` fallback index) cannot be seen".to_owned(),
            );
        }
    }
    // Tagged manifests whose `subject` is this image, found by no other way.
    for (tag, digest) in &graph.tags {
        let Some(node) = graph.nodes.get(digest) else {
            continue;
        };
        if node.subject.as_ref() != Some(&image.digest) || referrers.iter().any(|r| r.digest == *digest) {
            continue;
        }
        referrers.push(Referrer {
            digest: digest.clone(),
            tag: Some(tag.clone()),
            kind: kind_from_artifact_type(node.artifact_type.as_deref()),
            artifact_type: node.artifact_type.clone(),
            source: ReferrerSource::Subject,
        });
    }
    referrers.sort_by(|a, b| (a.tag.as_deref(), &a.digest).cmp(&(b.tag.as_deref(), &b.digest)));
    referrers.dedup_by(|a, b| a.digest == b.digest && a.tag == b.tag);

    Ok(Inspection {
        repository: repository.to_string(),
        reference: reference.to_string(),
        image,
        tags,
        referrers,
        referrers_api,
        warnings,
    })
}

/// Why `inspect --storage` could not inspect.
#[derive(Debug, thiserror::Error)]
pub enum StorageInspectError {
    #[error("`{reference}` is not in repository `{repository}` of this storage")]
    NotFound { repository: String, reference: String },
    #[error("repository `{repository}` could not be read completely: {errors}")]
    Read { repository: String, errors: String },
}

/// [`inspect`] on the registry's storage: the same report from the repository graph read from
/// storage, where every referrer is visible (storage has all revisions, tagged or not).
pub fn inspect_on_storage(
    storage: &crate::storage::Storage,
    repository: &str,
    reference: &str,
) -> Result<Inspection, StorageInspectError> {
    let not_found = || StorageInspectError::NotFound {
        repository: repository.to_owned(),
        reference: reference.to_owned(),
    };
    let by_digest = Digest::parse(reference).ok();
    let (graph, gone) = crate::graph::storage::read_with(storage, repository, true, by_digest.as_slice());
    if !graph.errors.is_empty() {
        return Err(StorageInspectError::Read {
            repository: repository.to_owned(),
            errors: graph.errors.join("; "),
        });
    }
    let digest = match by_digest {
        Some(_) if !gone.is_empty() => return Err(not_found()),
        Some(digest) => digest,
        None => graph.tags.get(reference).cloned().ok_or_else(not_found)?,
    };
    if !graph.nodes.contains_key(&digest) {
        return Err(not_found());
    }
    // The graph read completely (no errors), so the image and its children are all there.
    let image = summarize(&graph, &digest).map_err(|err| StorageInspectError::Read {
        repository: repository.to_owned(),
        errors: err.to_string(),
    })?;
    let mut referrers: Vec<Referrer> = Vec::new();
    for (tag, referrer) in &graph.tags {
        if let Some((subject, suffix)) = Digest::from_referrer_tag(tag)
            && subject == digest
        {
            referrers.push(Referrer {
                digest: referrer.clone(),
                tag: Some(tag.clone()),
                kind: digest_tag_kind(suffix),
                artifact_type: None,
                source: ReferrerSource::DigestTag,
            });
        }
    }
    for referrer in graph.referrers.get(&digest).into_iter().flatten() {
        if referrers.iter().any(|r| r.digest == *referrer) {
            continue;
        }
        let artifact_type = graph.nodes.get(referrer).and_then(|n| n.artifact_type.clone());
        referrers.push(Referrer {
            digest: referrer.clone(),
            tag: graph.tags_of(referrer).into_iter().next(),
            kind: kind_from_artifact_type(artifact_type.as_deref()),
            artifact_type,
            source: ReferrerSource::Subject,
        });
    }
    referrers.sort_by(|a, b| (a.tag.as_deref(), &a.digest).cmp(&(b.tag.as_deref(), &b.digest)));
    Ok(Inspection {
        repository: repository.to_owned(),
        reference: reference.to_owned(),
        image,
        tags: graph.tags_of(&digest),
        referrers,
        referrers_api: false,
        warnings: Vec::new(),
    })
}

fn listed_referrers(index: &Manifest) -> impl Iterator<Item = Referrer> + '_ {
    index.manifests.iter().map(|d| Referrer {
        digest: d.digest.clone(),
        tag: None,
        kind: kind_from_artifact_type(d.artifact_type.as_deref()),
        artifact_type: d.artifact_type.clone(),
        source: ReferrerSource::FallbackIndex,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_digest_tags() {
        assert_eq!(digest_tag_kind(".sig"), ReferrerKind::Signature);
        assert_eq!(digest_tag_kind(".att"), ReferrerKind::Attestation);
        assert_eq!(digest_tag_kind(".sbom"), ReferrerKind::Sbom);
        assert_eq!(digest_tag_kind(""), ReferrerKind::ReferrersIndex);
        assert_eq!(digest_tag_kind(".foo"), ReferrerKind::Other);
    }

    #[test]
    fn classifies_artifact_types() {
        assert_eq!(
            kind_from_artifact_type(Some("application/vnd.dev.cosign.artifact.sig.v1+json")),
            ReferrerKind::Signature
        );
        assert_eq!(
            kind_from_artifact_type(Some("application/spdx+json")),
            ReferrerKind::Sbom
        );
        assert_eq!(
            kind_from_artifact_type(Some("application/vnd.in-toto+json")),
            ReferrerKind::Attestation
        );
        assert_eq!(kind_from_artifact_type(None), ReferrerKind::Other);
    }
}
