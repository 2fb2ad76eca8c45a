//! Pure construction of image content: configs, layers, manifests and indexes.
//!
//! Nothing here talks to a registry, so the exact bytes (and therefore the digests) a fixture will
//! have are known before it is pushed: the same [`ImageSpec`] always yields the same manifest digest.
//! Layers are deterministic pseudo-random bytes, not real tarballs: the registry never looks inside a
//! layer, and neither do the tools under test.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Media types used by the fixtures (OCI image-spec and Docker image manifest v2 schema 2).
pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const COSIGN_SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
    /// The four manifest types, as sent in `Accept`: without the right one distribution answers 404
    /// for OCI content and rewrites Docker lists/manifests fetched by tag.
    pub const ACCEPT_ALL: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.docker.distribution.manifest.v2+json";
    /// True for the two "list of manifests" types.
    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_LIST
    }
}

/// The annotation cosign puts the base64 signature in.
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// Digest of the OCI empty descriptor content `{}`.
pub const EMPTY_JSON_DIGEST: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Manifest flavour of a fixture: Docker v2 schema 2 (`manifest.v2` / `manifest.list.v2`) or OCI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// What classic `docker push` produces; the most common content of private registries.
    #[default]
    Docker,
    Oci,
}

impl Format {
    pub fn manifest_type(self) -> &'static str {
        match self {
            Format::Docker => media::DOCKER_MANIFEST,
            Format::Oci => media::OCI_MANIFEST,
        }
    }
    pub fn index_type(self) -> &'static str {
        match self {
            Format::Docker => media::DOCKER_LIST,
            Format::Oci => media::OCI_INDEX,
        }
    }
    pub fn config_type(self) -> &'static str {
        match self {
            Format::Docker => media::DOCKER_CONFIG,
            Format::Oci => media::OCI_CONFIG,
        }
    }
    pub fn layer_type(self) -> &'static str {
        match self {
            Format::Docker => media::DOCKER_LAYER,
            Format::Oci => media::OCI_LAYER,
        }
    }
}

/// Content of a blob, with its digest computed once. Cheap to clone (shared bytes), so one base
/// layer can be handed to thousands of [`ImageSpec`]s.
#[derive(Clone, PartialEq, Eq)]
pub struct Blob {
    pub data: Arc<[u8]>,
    pub digest: String,
}

impl Blob {
    pub fn new(data: impl Into<Arc<[u8]>>) -> Self {
        let data = data.into();
        let digest = sha256_digest(&data);
        Blob { data, digest }
    }

    /// `size` deterministic pseudo-random bytes: the same `(seed, size)` gives the same blob.
    pub fn random(seed: u64, size: usize) -> Self {
        Blob::new(pseudo_random_bytes(seed, size))
    }

    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob")
            .field("digest", &self.digest)
            .field("size", &self.data.len())
            .finish()
    }
}

/// A content descriptor as pushed: digest, size and media type (of a blob or of a manifest).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobRef {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

/// What image to build. Same spec => same bytes => same digests.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub format: Format,
    /// Number of layers generated for this image (after `shared_layers`).
    pub layers: usize,
    /// Size in bytes of each generated layer.
    pub layer_size: usize,
    /// RFC 3339 value of the config's `created`; `None` leaves the field out (see [`days_ago`]).
    pub created: Option<String>,
    /// Written to `config.Labels` and, for OCI, to the manifest `annotations`.
    pub labels: BTreeMap<String, String>,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    /// Makes the content unique; it is also recorded in the config (`Env`), so two specs that
    /// differ only in seed never share a config blob.
    pub seed: u64,
    /// Existing layers put first (base-image style), e.g. shared across many images and repos.
    pub shared_layers: Vec<Blob>,
    /// Repository to cross-repo mount `shared_layers` from when the target repo lacks them.
    pub mount_from: Option<String>,
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec {
            format: Format::default(),
            layers: 2,
            layer_size: 512,
            created: None,
            labels: BTreeMap::new(),
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
            seed: 0,
            shared_layers: Vec::new(),
            mount_from: None,
        }
    }
}

impl ImageSpec {
    /// Default spec (Docker, 2 × 512-byte layers, linux/amd64) with the given seed.
    pub fn seeded(seed: u64) -> Self {
        ImageSpec {
            seed,
            ..Default::default()
        }
    }

    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    pub fn created(mut self, rfc3339: impl Into<String>) -> Self {
        self.created = Some(rfc3339.into());
        self
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Set the platform from `os` and `arch`, where `arch` may carry a variant (`arm64/v8`).
    pub fn platform(mut self, os: &str, arch: &str) -> Self {
        let (architecture, variant) = split_arch(arch);
        self.os = os.into();
        self.architecture = architecture.into();
        self.variant = variant.map(Into::into);
        self
    }

    /// Build the image bytes without pushing anything.
    pub fn build(&self) -> BuiltImage {
        build_image(self)
    }
}

/// `"arm64/v8"` => `("arm64", Some("v8"))`.
pub(crate) fn split_arch(arch: &str) -> (&str, Option<&str>) {
    match arch.split_once('/') {
        Some((a, v)) => (a, Some(v)),
        None => (arch, None),
    }
}

/// An image ready to push: the generated blobs plus the manifest that references them.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub format: Format,
    pub config_blob: Blob,
    pub config: BlobRef,
    /// Layers generated for this image (must be uploaded).
    pub own_layers: Vec<Blob>,
    /// Descriptors of all layers in manifest order (shared first).
    pub layers: Vec<BlobRef>,
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

impl BuiltImage {
    pub fn descriptor(&self) -> BlobRef {
        BlobRef {
            digest: self.digest.clone(),
            size: self.manifest.len() as u64,
            media_type: self.media_type.clone(),
        }
    }
}

// ---- wire types ---------------------------------------------------------------------------------

/// A descriptor as it appears in manifests and indexes (OCI and Docker share the shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Embedded base64 content (OCI 1.1), used for the empty config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl Descriptor {
    pub fn of(r: &BlobRef) -> Self {
        Descriptor {
            media_type: r.media_type.clone(),
            digest: r.digest.clone(),
            size: r.size,
            ..Default::default()
        }
    }

    pub fn to_ref(&self) -> BlobRef {
        BlobRef {
            digest: self.digest.clone(),
            size: self.size,
            media_type: self.media_type.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Any manifest or index, loosely: enough to walk the graph (children, config, layers, subject).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ManifestDoc {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifests: Option<Vec<Descriptor>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ManifestDoc {
    pub fn parse(bytes: &[u8]) -> anyhow::Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| anyhow::anyhow!("invalid manifest JSON: {e}"))
    }

    /// Serialised with indentation, like most real clients: a tool under test must keep the bytes
    /// it fetched, not re-serialise them.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("manifest serialises")
    }
}

// ---- builders -----------------------------------------------------------------------------------

fn build_image(spec: &ImageSpec) -> BuiltImage {
    let format = spec.format;
    let own_layers: Vec<Blob> = (0..spec.layers)
        .map(|i| Blob::random(mix(spec.seed, 0x1a7e_0000 + i as u64), spec.layer_size))
        .collect();
    let all_layers: Vec<&Blob> = spec.shared_layers.iter().chain(own_layers.iter()).collect();
    let layers: Vec<BlobRef> = all_layers
        .iter()
        .map(|b| BlobRef {
            digest: b.digest.clone(),
            size: b.size(),
            media_type: format.layer_type().into(),
        })
        .collect();

    // serde_json sorts object keys, so the config bytes are canonical for a given spec.
    let mut config = serde_json::Map::new();
    if let Some(created) = &spec.created {
        config.insert("created".into(), created.clone().into());
    }
    config.insert("architecture".into(), spec.architecture.clone().into());
    if let Some(v) = &spec.variant {
        config.insert("variant".into(), v.clone().into());
    }
    config.insert("os".into(), spec.os.clone().into());
    config.insert(
        "config".into(),
        serde_json::json!({
            "Env": [format!("REGSWEEP_TESTKIT_SEED={}", spec.seed)],
            "Labels": spec.labels,
        }),
    );
    // The layers are opaque bytes, so their "uncompressed" digests are the layer digests.
    config.insert(
        "rootfs".into(),
        serde_json::json!({
            "type": "layers",
            "diff_ids": all_layers.iter().map(|b| b.digest.clone()).collect::<Vec<_>>(),
        }),
    );
    let config_bytes = serde_json::to_vec(&serde_json::Value::Object(config)).expect("config");
    let config_blob = Blob::new(config_bytes);
    let config_ref = BlobRef {
        digest: config_blob.digest.clone(),
        size: config_blob.size(),
        media_type: format.config_type().into(),
    };

    let annotations = match format {
        Format::Oci if !spec.labels.is_empty() => Some(spec.labels.clone()),
        _ => None,
    };
    let doc = ManifestDoc {
        schema_version: 2,
        media_type: Some(format.manifest_type().into()),
        config: Some(Descriptor::of(&config_ref)),
        layers: Some(layers.iter().map(Descriptor::of).collect()),
        annotations,
        ..Default::default()
    };
    let manifest = doc.to_bytes();
    BuiltImage {
        format,
        digest: sha256_digest(&manifest),
        config_blob,
        config: config_ref,
        own_layers,
        layers,
        manifest,
        media_type: format.manifest_type().into(),
    }
}

/// An index / manifest list over already built children, with their platforms.
pub(crate) fn build_index(
    format: Format,
    children: &[(BlobRef, Platform)],
    annotations: Option<BTreeMap<String, String>>,
) -> Vec<u8> {
    let doc = ManifestDoc {
        schema_version: 2,
        media_type: Some(format.index_type().into()),
        manifests: Some(
            children
                .iter()
                .map(|(d, p)| Descriptor {
                    platform: Some(p.clone()),
                    ..Descriptor::of(d)
                })
                .collect(),
        ),
        annotations: if format == Format::Oci { annotations } else { None },
        ..Default::default()
    };
    doc.to_bytes()
}

// ---- small deterministic helpers ----------------------------------------------------------------

/// splitmix64 finaliser: a cheap, well-mixed way to derive child seeds (`mix(seed, i)`).
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a
        .wrapping_add(b.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pseudo_random_bytes(seed: u64, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 8);
    let mut state = seed;
    while out.len() < size {
        state = mix(state, 1);
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(size);
    out
}

/// RFC 3339 UTC timestamp (`2024-05-01T12:00:00Z`) for a Unix time in seconds.
pub fn rfc3339_utc(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Now minus `days` (fractional days allowed), as RFC 3339 UTC, truncated to the second.
pub fn days_ago(days: f64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    rfc3339_utc(now - (days * 86_400.0) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn same_spec_same_digest_and_seed_changes_it() {
        let a = ImageSpec::seeded(7).created("2024-01-01T00:00:00Z").build();
        let b = ImageSpec::seeded(7).created("2024-01-01T00:00:00Z").build();
        let c = ImageSpec::seeded(8).created("2024-01-01T00:00:00Z").build();
        assert_eq!(a.digest, b.digest);
        assert_ne!(a.digest, c.digest);
        assert_ne!(a.config.digest, c.config.digest);
        assert_eq!(a.digest, sha256_digest(&a.manifest));
    }

    #[test]
    fn zero_layers_still_unique_config() {
        let mut a = ImageSpec::seeded(1);
        a.layers = 0;
        let mut b = a.clone();
        b.seed = 2;
        assert_ne!(a.build().config.digest, b.build().config.digest);
    }

    #[test]
    fn formats_use_matching_media_types() {
        let oci = ImageSpec::seeded(1).format(Format::Oci).build();
        let doc = ManifestDoc::parse(&oci.manifest).unwrap();
        assert_eq!(doc.media_type.as_deref(), Some(media::OCI_MANIFEST));
        assert_eq!(doc.config.unwrap().media_type, media::OCI_CONFIG);
        assert!(
            doc.layers
                .unwrap()
                .iter()
                .all(|l| l.media_type == media::OCI_LAYER)
        );
        let docker = ImageSpec::seeded(1).build();
        let doc = ManifestDoc::parse(&docker.manifest).unwrap();
        assert_eq!(doc.media_type.as_deref(), Some(media::DOCKER_MANIFEST));
        assert_eq!(doc.config.unwrap().media_type, media::DOCKER_CONFIG);
    }

    #[test]
    fn shared_layers_come_first() {
        let base = Blob::random(99, 100);
        let mut spec = ImageSpec::seeded(3);
        spec.shared_layers = vec![base.clone()];
        let img = spec.build();
        assert_eq!(img.layers.len(), 3);
        assert_eq!(img.layers[0].digest, base.digest);
        assert_eq!(img.own_layers.len(), 2);
    }

    #[test]
    fn empty_json_digest_constant() {
        assert_eq!(sha256_digest(b"{}"), EMPTY_JSON_DIGEST);
    }
}
