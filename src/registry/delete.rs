//! How a tag or a manifest is removed: one [`Remover`] trait, one implementation per method,
//! chosen by probing the registry once ([`MethodProbe`]).
//!
//! Deleting a manifest by digest is the same everywhere. Removing a single tag is not: OCI 1.1
//! registries delete a tag with `DELETE /v2/<name>/manifests/<tag>` ([`DeleteByTag`]), some
//! registries (ACR) delete the whole image with every tag instead, and distribution 2.x refuses
//! tag deletion. There the tag is moved onto a unique placeholder manifest that is then deleted
//! by digest ([`Placeholder`]), which removes exactly that tag. Vendor APIs (Harbor, GitLab,
//! Quay, ACR) and a storage-side removal are further implementations of the same trait.
//!
//! Nothing regsweep pushes may outlive the command. A placeholder carries annotations that mark
//! it as regsweep's and record the untag it was for ([`PlaceholderInfo`]), so that a placeholder
//! left behind by an interrupted run (lost answer, failed delete, crash) is recognised on the
//! next scan and removed, which completes the intended untag.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::{Client, RegistryError};
use crate::digest::Digest;
use crate::manifest::media_type;
use crate::reference::{Repository, Tag};

/// Annotation that marks a manifest as regsweep's placeholder; its value says what it was for.
pub const PLACEHOLDER_ANNOTATION: &str = "dev.regsweep.placeholder";
/// Annotation of a placeholder: the digest the tag pointed at before the untag started.
pub const UNTAG_OF_ANNOTATION: &str = "dev.regsweep.untag-of";
/// Annotation of a placeholder: the tag being removed.
pub const UNTAG_TAG_ANNOTATION: &str = "dev.regsweep.untag-tag";
/// Prefix of the throw-away tags the probe pushes.
pub const PROBE_TAG_PREFIX: &str = "regsweep-probe-";

/// How a single tag is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UntagMethod {
    /// OCI 1.1 `DELETE /v2/<name>/manifests/<tag>`, verified to leave other tags alone.
    DeleteByTag,
    /// Point the tag at a unique placeholder manifest, then delete the placeholder by digest:
    /// that removes exactly this tag.
    Placeholder,
}

impl UntagMethod {
    /// The method's name in reports (`delete-by-tag`, `placeholder`).
    pub fn name(self) -> &'static str {
        match self {
            UntagMethod::DeleteByTag => "delete-by-tag",
            UntagMethod::Placeholder => "placeholder",
        }
    }
}

/// Why a tag was not removed.
#[derive(Debug, thiserror::Error)]
pub enum UntagError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The tag now points at regsweep's placeholder and the placeholder could not be deleted:
    /// the next scan finds it and finishes the untag.
    #[error(
        "the tag was moved to regsweep's placeholder {placeholder} but the placeholder could not be deleted ({cause}); the next `plan`/`apply` or `rm` of this repository removes it and so finishes the untag"
    )]
    Interrupted { placeholder: Digest, cause: String },
    /// The tag pointed elsewhere when the untag was verified.
    #[error("the tag moved to {now} while it was being removed; it was left there")]
    Moved { now: Digest },
}

/// One way of removing tags and manifests from a registry.
pub trait Remover: Send + Sync {
    /// Which method this is, for reports.
    fn method(&self) -> UntagMethod;

    /// Removes `tag`, which pointed at `digest` when it was last checked, leaving the manifest
    /// and every other tag alone.
    fn untag<'a>(
        &'a self,
        client: &'a Client,
        repository: &'a Repository,
        tag: &'a Tag,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<(), UntagError>>;

    /// Deletes a manifest (and, on every registry known, every tag on it) by digest.
    fn delete_manifest<'a>(
        &'a self,
        client: &'a Client,
        repository: &'a Repository,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(client.delete_manifest(repository, digest))
    }
}

/// OCI 1.1 tag deletion.
pub struct DeleteByTag;

impl Remover for DeleteByTag {
    fn method(&self) -> UntagMethod {
        UntagMethod::DeleteByTag
    }

    fn untag<'a>(
        &'a self,
        client: &'a Client,
        repository: &'a Repository,
        tag: &'a Tag,
        _digest: &'a Digest,
    ) -> BoxFuture<'a, Result<(), UntagError>> {
        Box::pin(async move { Ok(client.delete_tag(repository, tag).await?) })
    }
}

/// Untag by placeholder manifest, for registries without tag deletion.
pub struct Placeholder;

impl Remover for Placeholder {
    fn method(&self) -> UntagMethod {
        UntagMethod::Placeholder
    }

    fn untag<'a>(
        &'a self,
        client: &'a Client,
        repository: &'a Repository,
        tag: &'a Tag,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<(), UntagError>> {
        Box::pin(placeholder_untag(client, repository, tag, digest))
    }
}

/// The remover for a method.
pub fn remover(method: UntagMethod) -> Box<dyn Remover> {
    match method {
        UntagMethod::DeleteByTag => Box::new(DeleteByTag),
        UntagMethod::Placeholder => Box::new(Placeholder),
    }
}

/// What a placeholder's annotations say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlaceholderInfo {
    /// The digest the tag pointed at before the untag (absent for the probe's placeholders and
    /// those of older versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untag_of: Option<Digest>,
    /// Whether it is one of the probe's throw-away placeholders.
    pub probe: bool,
}

/// Recognises regsweep's placeholder by its annotations.
pub fn placeholder_info(annotations: &BTreeMap<String, String>) -> Option<PlaceholderInfo> {
    let purpose = annotations.get(PLACEHOLDER_ANNOTATION)?;
    Some(PlaceholderInfo {
        untag_of: annotations
            .get(UNTAG_OF_ANNOTATION)
            .and_then(|d| Digest::parse(d).ok()),
        probe: purpose.starts_with("probe"),
    })
}

/// A placeholder manifest: a unique, empty image marked as regsweep's.
struct PlaceholderManifest {
    body: Vec<u8>,
    digest: Digest,
}

impl PlaceholderManifest {
    fn new(config: &Digest, purpose: &str, tag: &str, untag_of: Option<&Digest>) -> Self {
        let nonce = format!("{}-{:016x}", jiff::Timestamp::now(), fastrand::u64(..));
        let mut annotations = serde_json::Map::new();
        annotations.insert(PLACEHOLDER_ANNOTATION.into(), format!("{purpose} {nonce}").into());
        annotations.insert(UNTAG_TAG_ANNOTATION.into(), tag.into());
        if let Some(digest) = untag_of {
            annotations.insert(UNTAG_OF_ANNOTATION.into(), digest.to_string().into());
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_EMPTY, "digest": config, "size": 2},
            "layers": [],
            "annotations": annotations,
        });
        let body = serde_json::to_vec(&manifest).expect("a JSON value serializes");
        let digest = Digest::sha256(&body);
        Self { body, digest }
    }

    async fn push(&self, client: &Client, repository: &Repository, tag: &Tag) -> Result<(), RegistryError> {
        client
            .put_manifest(repository, tag, media_type::OCI_MANIFEST, self.body.clone())
            .await
            .map(drop)
    }
}

/// Deletes a placeholder by digest; already gone counts as deleted.
async fn delete_placeholder(
    client: &Client,
    repository: &Repository,
    placeholder: &Digest,
) -> Result<(), RegistryError> {
    match client.delete_manifest(repository, placeholder).await {
        Err(err) if !err.is_not_found() => Err(err),
        _ => Ok(()),
    }
}

/// Moves `tag` onto a placeholder and deletes the placeholder. Whatever fails in between, the
/// placeholder is deleted (its digest is known before it is pushed, so even a PUT whose answer
/// was lost is cleaned up), and the tag's state afterwards decides the outcome.
async fn placeholder_untag(
    client: &Client,
    repository: &Repository,
    tag: &Tag,
    digest: &Digest,
) -> Result<(), UntagError> {
    let config = client.upload_blob(repository, b"{}".to_vec()).await?;
    let placeholder = PlaceholderManifest::new(&config, "untag", tag.as_str(), Some(digest));
    let pushed = placeholder.push(client, repository, tag).await;
    let deleted = delete_placeholder(client, repository, &placeholder.digest).await;
    match (pushed, deleted) {
        (Ok(()), Ok(())) => Ok(()),
        (pushed, deleted) => {
            // Find out where the tag is now: the answers may have been lost, not the requests.
            match client.manifest_head(repository, tag).await {
                Err(err) if err.is_not_found() => Ok(()),
                Ok(head) if head.digest == placeholder.digest => Err(UntagError::Interrupted {
                    placeholder: placeholder.digest,
                    cause: deleted
                        .err()
                        .map_or_else(|| "unknown".to_owned(), |e| e.to_string()),
                }),
                Ok(head) if head.digest == *digest => Err(pushed
                    .err()
                    .or(deleted.err())
                    .map_or(UntagError::Moved { now: head.digest }, UntagError::Registry)),
                Ok(head) => Err(UntagError::Moved { now: head.digest }),
                Err(err) => Err(UntagError::Interrupted {
                    placeholder: placeholder.digest,
                    cause: format!("cannot check the tag afterwards: {err}"),
                }),
            }
        }
    }
}

/// Checks that the registry accepts manifest deletes, with a DELETE of a digest that cannot
/// exist: 404 means deletes are enabled; 405 (deletes disabled, or read-only) is returned as the
/// error, whose message says which setting to change.
pub async fn ensure_deletes_allowed(client: &Client, repository: &Repository) -> Result<(), RegistryError> {
    let nothing = Digest::sha256(format!("regsweep-probe-{}", fastrand::u64(..)).as_bytes());
    match client.delete_manifest(repository, &nothing).await {
        Ok(()) => Ok(()),
        Err(err) if err.is_not_found() => Ok(()),
        Err(err) => Err(err),
    }
}

/// Finds out how this registry removes a single tag, using two throw-away tags on one
/// placeholder: if deleting the first by tag works and the second survives, tag deletion is
/// safe; some registries (ACR) delete the image with all its tags instead, and distribution 2.x
/// refuses tag deletion (400). The placeholder (with whatever probe tags are left on it) is
/// deleted whatever happens after it was pushed.
pub async fn probe(client: &Client, repository: &Repository) -> Result<UntagMethod, RegistryError> {
    // Nothing is pushed where it could not be deleted again.
    ensure_deletes_allowed(client, repository).await?;
    let (first, second) = probe_tags(fastrand::u64(..));
    let config = client.upload_blob(repository, b"{}".to_vec()).await?;
    let placeholder = PlaceholderManifest::new(&config, "probe", first.as_str(), None);
    let result = probe_with(client, repository, &placeholder, &first, &second).await;
    let cleaned = delete_placeholder(client, repository, &placeholder.digest).await;
    let method = result?;
    cleaned?;
    tracing::info!(?method, "probed how the registry removes a single tag");
    Ok(method)
}

/// The probe's two throw-away tags, unique per run.
fn probe_tags(nonce: u64) -> (Tag, Tag) {
    let id = format!("{:012x}", nonce & 0xffff_ffff_ffff);
    let tag = |suffix: &str| {
        Tag::parse(&format!("{PROBE_TAG_PREFIX}{id}-{suffix}"))
            .expect("the probe prefix, hex digits and a letter make a valid tag")
    };
    (tag("a"), tag("b"))
}

async fn probe_with(
    client: &Client,
    repository: &Repository,
    placeholder: &PlaceholderManifest,
    first: &Tag,
    second: &Tag,
) -> Result<UntagMethod, RegistryError> {
    placeholder.push(client, repository, first).await?;
    placeholder.push(client, repository, second).await?;
    match client.delete_tag(repository, first).await {
        Ok(()) => match client.manifest_head(repository, second).await {
            Ok(_) => Ok(UntagMethod::DeleteByTag),
            Err(err) if err.is_not_found() => Ok(UntagMethod::Placeholder),
            Err(err) => Err(err),
        },
        Err(
            RegistryError::Status { .. }
            | RegistryError::MethodNotAllowed { .. }
            | RegistryError::NotFound { .. },
        ) => Ok(UntagMethod::Placeholder),
        Err(err) => Err(err),
    }
}

/// The untag method, probed at most once per command, on the first repository that needs it.
#[derive(Default)]
pub struct MethodProbe {
    cell: OnceCell<Result<Box<dyn Remover>, String>>,
}

impl MethodProbe {
    /// The remover to use, probing on `repository` the first time.
    pub async fn remover(&self, client: &Client, repository: &Repository) -> Result<&dyn Remover, String> {
        let probed = self
            .cell
            .get_or_init(|| async {
                probe(client, repository)
                    .await
                    .map(remover)
                    .map_err(|e| e.to_string())
            })
            .await;
        match probed {
            Ok(r) => Ok(r.as_ref()),
            Err(e) => Err(e.clone()),
        }
    }

    /// The remover found, if probed successfully.
    pub fn probed(&self) -> Option<&dyn Remover> {
        self.cell.get()?.as_ref().ok().map(|r| r.as_ref())
    }

    /// The method found, if probed successfully.
    pub fn method(&self) -> Option<UntagMethod> {
        self.probed().map(|r| r.method())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_recognised_by_their_annotations() {
        let config = Digest::sha256(b"{}");
        let untag_of = Digest::sha256(b"image");
        let p = PlaceholderManifest::new(&config, "untag", "v1", Some(&untag_of));
        let parsed = crate::manifest::Manifest::parse(&p.body, Some(media_type::OCI_MANIFEST)).unwrap();
        assert_eq!(p.digest, Digest::sha256(&p.body));
        assert_eq!(
            placeholder_info(&parsed.annotations),
            Some(PlaceholderInfo {
                untag_of: Some(untag_of),
                probe: false
            })
        );
        let probe = PlaceholderManifest::new(&config, "probe", "regsweep-probe-1-a", None);
        let parsed = crate::manifest::Manifest::parse(&probe.body, Some(media_type::OCI_MANIFEST)).unwrap();
        assert!(placeholder_info(&parsed.annotations).unwrap().probe);
        // Two placeholders for the same tag never share a digest.
        assert_ne!(
            PlaceholderManifest::new(&config, "untag", "v1", None).digest,
            PlaceholderManifest::new(&config, "untag", "v1", None).digest
        );
        assert_eq!(placeholder_info(&BTreeMap::new()), None);
    }

    #[test]
    fn probe_tags_are_valid_and_distinct() {
        for nonce in [0, 1, u64::MAX] {
            let (first, second) = probe_tags(nonce);
            assert!(first.as_str().starts_with(PROBE_TAG_PREFIX), "{first}");
            assert_ne!(first, second);
        }
    }
}
