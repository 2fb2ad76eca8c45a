//! Image manifests and indexes in every format a registry may store: OCI image manifest, OCI
//! index, Docker schema 2 manifest, Docker manifest list and Docker schema 1.
//!
//! Parsing is lenient about fields regsweep does not use and strict about the ones it relies on
//! (digests, sizes, the list of children), because the retention planner and the garbage
//! collector decide what to keep from them. Both the registry client and the storage walker use
//! this module, so the two sources agree on what a manifest references.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Manifest and blob media types.
pub mod media_type {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

    /// The `Accept` header for every manifest GET and HEAD: all four modern manifest types, so
    /// that the registry returns the stored manifest and its real digest. A narrower header gets a
    /// 404 for OCI content or, for a Docker manifest list fetched by tag, the amd64 child instead.
    pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.docker.distribution.manifest.v2+json";

    /// Whether `media_type` names a manifest (as opposed to a config or layer blob).
    pub fn is_manifest(media_type: &str) -> bool {
        matches!(
            media_type,
            OCI_INDEX | OCI_MANIFEST | DOCKER_LIST | DOCKER_MANIFEST | DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED
        )
    }

    /// Whether `media_type` names an index or manifest list.
    pub fn is_index(media_type: &str) -> bool {
        matches!(media_type, OCI_INDEX | DOCKER_LIST)
    }
}

/// Manifests larger than this are refused, as the OCI distribution spec allows registries and
/// clients to do; it bounds what a hostile registry can make regsweep buffer.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// A content descriptor: what a manifest says about a blob or a child manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The platform of an index child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, rename = "os.version", skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// The kind of a parsed manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManifestKind {
    /// OCI image manifest or Docker schema 2 manifest.
    Image,
    /// OCI index or Docker manifest list.
    Index,
    /// Docker schema 1 (legacy, only read).
    Schema1,
}

/// A parsed manifest of any supported format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The media type, from the body, else the `Content-Type`, else inferred from the shape.
    pub media_type: String,
    pub kind: ManifestKind,
    /// Image manifests: the config blob.
    pub config: Option<Descriptor>,
    /// Image manifests: layers; schema 1: the `fsLayers` blob sums (size unknown, 0).
    pub layers: Vec<Descriptor>,
    /// Indexes: child manifests.
    pub manifests: Vec<Descriptor>,
    /// OCI 1.1 `subject`: the manifest this one refers to (signatures, SBOMs, attestations).
    pub subject: Option<Descriptor>,
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// Why a manifest body could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is {size} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")]
    TooLarge { size: usize },
    #[error("manifest is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("manifest has unsupported schemaVersion {0}")]
    SchemaVersion(u64),
    #[error("manifest of media type `{0}` is not a known manifest format")]
    UnknownMediaType(String),
    #[error("manifest has neither `manifests` nor `config`/`layers` nor `fsLayers`")]
    UnknownShape,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<u64>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    fs_layers: Option<Vec<Schema1Layer>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Schema1Layer {
    blob_sum: Digest,
}

impl Manifest {
    /// Parses a manifest body. `content_type` is the registry's `Content-Type` (or the media type
    /// recorded elsewhere); the body's own `mediaType` wins when both are present.
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Self, ManifestError> {
        if body.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge { size: body.len() });
        }
        let raw: RawManifest = serde_json::from_slice(body).map_err(ManifestError::Json)?;
        let declared = raw
            .media_type
            .clone()
            .filter(|m| !m.is_empty())
            .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_owned()))
            .filter(|m| media_type::is_manifest(m));

        let kind = match raw.schema_version {
            Some(1) => ManifestKind::Schema1,
            Some(2) | None => match declared.as_deref() {
                Some(media_type::OCI_INDEX | media_type::DOCKER_LIST) => ManifestKind::Index,
                Some(media_type::OCI_MANIFEST | media_type::DOCKER_MANIFEST) => ManifestKind::Image,
                Some(other) if other.contains("v1+") => ManifestKind::Schema1,
                _ if raw.manifests.is_some() => ManifestKind::Index,
                _ if raw.config.is_some() || raw.layers.is_some() => ManifestKind::Image,
                _ if raw.fs_layers.is_some() => ManifestKind::Schema1,
                _ => return Err(ManifestError::UnknownShape),
            },
            Some(other) => return Err(ManifestError::SchemaVersion(other)),
        };
        let media_type = declared.unwrap_or_else(|| {
            match kind {
                ManifestKind::Index => media_type::OCI_INDEX,
                ManifestKind::Image => media_type::OCI_MANIFEST,
                ManifestKind::Schema1 => media_type::DOCKER_SCHEMA1_SIGNED,
            }
            .to_owned()
        });
        if let Some(body_type) = raw.media_type.as_deref()
            && !body_type.is_empty()
            && !media_type::is_manifest(body_type)
        {
            return Err(ManifestError::UnknownMediaType(body_type.to_owned()));
        }

        let mut manifest = Manifest {
            media_type,
            kind,
            config: None,
            layers: Vec::new(),
            manifests: Vec::new(),
            subject: raw.subject,
            artifact_type: raw.artifact_type,
            annotations: raw.annotations.unwrap_or_default(),
        };
        match kind {
            ManifestKind::Image => {
                manifest.config = raw.config;
                manifest.layers = raw.layers.unwrap_or_default();
            }
            ManifestKind::Index => manifest.manifests = raw.manifests.unwrap_or_default(),
            ManifestKind::Schema1 => {
                let layers = raw.fs_layers.ok_or(ManifestError::UnknownShape)?;
                manifest.layers = layers
                    .into_iter()
                    .map(|l| Descriptor {
                        media_type: String::new(),
                        digest: l.blob_sum,
                        size: 0,
                        platform: None,
                        artifact_type: None,
                        annotations: BTreeMap::new(),
                    })
                    .collect();
            }
        }
        Ok(manifest)
    }

    /// Blobs this manifest needs (config and layers), in manifest order. Empty for indexes.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(self.layers.iter())
    }

    /// Every digest this manifest references and needs to be complete: config and layers for an
    /// image, children for an index. The `subject` is deliberately not included: a referrer does
    /// not keep its subject alive; the subject keeps its referrers alive.
    pub fn references(&self) -> impl Iterator<Item = &Descriptor> {
        self.blobs().chain(self.manifests.iter())
    }

    /// The artifact type as the OCI referrers API reports it: `artifactType`, else the config's
    /// media type.
    pub fn effective_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", hex::encode([n; 32]))
    }

    #[test]
    fn parses_docker_v2_image() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":7}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{}","size":100}}]}}"#,
            media_type::DOCKER_MANIFEST,
            media_type::DOCKER_CONFIG,
            d(1),
            d(2)
        );
        let m = Manifest::parse(body.as_bytes(), None).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(m.media_type, media_type::DOCKER_MANIFEST);
        let refs: Vec<_> = m.references().map(|r| r.digest.to_string()).collect();
        assert_eq!(refs, vec![d(1), d(2)]);
        assert_eq!(m.blobs().map(|b| b.size).sum::<u64>(), 107);
    }

    #[test]
    fn parses_oci_index_without_media_type_from_content_type() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":5,
            "platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#,
            media_type::OCI_MANIFEST,
            d(3)
        );
        let m = Manifest::parse(
            body.as_bytes(),
            Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(m.kind, ManifestKind::Index);
        assert_eq!(m.media_type, media_type::OCI_INDEX);
        assert_eq!(
            m.manifests[0].platform.as_ref().unwrap().to_string(),
            "linux/arm64/v8"
        );
        assert_eq!(m.references().count(), 1);
    }

    #[test]
    fn infers_kind_from_shape() {
        let index = format!(r#"{{"manifests":[{{"digest":"{}","size":1}}]}}"#, d(4));
        assert_eq!(
            Manifest::parse(index.as_bytes(), None).unwrap().kind,
            ManifestKind::Index
        );
        let image = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":1}},"layers":[]}}"#,
            d(4)
        );
        let m = Manifest::parse(image.as_bytes(), Some("application/octet-stream")).unwrap();
        assert_eq!(
            (m.kind, m.media_type.as_str()),
            (ManifestKind::Image, media_type::OCI_MANIFEST)
        );
    }

    #[test]
    fn subject_is_not_a_reference() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"application/vnd.dev.sig",
            "config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[],
            "subject":{{"mediaType":"{}","digest":"{}","size":9}}}}"#,
            media_type::OCI_MANIFEST,
            media_type::OCI_EMPTY,
            d(5),
            media_type::OCI_MANIFEST,
            d(6)
        );
        let m = Manifest::parse(body.as_bytes(), None).unwrap();
        assert_eq!(m.subject.as_ref().unwrap().digest.to_string(), d(6));
        assert!(m.references().all(|r| r.digest.to_string() != d(6)));
        assert_eq!(m.effective_artifact_type(), Some("application/vnd.dev.sig"));
    }

    #[test]
    fn parses_schema1() {
        let body = format!(
            r#"{{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[{{"blobSum":"{}"}},{{"blobSum":"{}"}}],"signatures":[]}}"#,
            d(7),
            d(8)
        );
        let m = Manifest::parse(body.as_bytes(), Some(media_type::DOCKER_SCHEMA1_SIGNED)).unwrap();
        assert_eq!(m.kind, ManifestKind::Schema1);
        assert_eq!(m.references().count(), 2);
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            Manifest::parse(b"not json", None),
            Err(ManifestError::Json(_))
        ));
        assert!(matches!(
            Manifest::parse(b"{}", None),
            Err(ManifestError::UnknownShape)
        ));
        assert!(matches!(
            Manifest::parse(br#"{"schemaVersion":3}"#, None),
            Err(ManifestError::SchemaVersion(3))
        ));
        let bad_digest = r#"{"schemaVersion":2,"config":{"digest":"sha256:xyz","size":1},"layers":[]}"#;
        assert!(matches!(
            Manifest::parse(bad_digest.as_bytes(), None),
            Err(ManifestError::Json(_))
        ));
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            Manifest::parse(&big, None),
            Err(ManifestError::TooLarge { .. })
        ));
        let odd = format!(
            r#"{{"schemaVersion":2,"mediaType":"text/plain","config":{{"digest":"{}","size":1}}}}"#,
            d(1)
        );
        assert!(matches!(
            Manifest::parse(odd.as_bytes(), None),
            Err(ManifestError::UnknownMediaType(_))
        ));
    }
}
