//! The result of a garbage collection, serialisable as the JSON documented in `docs/gc.md`.

use serde::Serialize;

use crate::digest::Digest;

/// Version of the JSON format; bumped on incompatible changes.
pub const REPORT_FORMAT: u32 = 1;

/// Everything a run found, deleted or would delete.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`REPORT_FORMAT`].
    pub format: u32,
    /// The `docker/registry/v2` folder that was collected.
    pub storage: String,
    pub dry_run: bool,
    pub delete_untagged: bool,
    pub grace_seconds: u64,
    /// When the run started (RFC 3339, UTC); the grace period counts back from here.
    pub started_at: String,
    pub outcome: Outcome,
    pub stats: Stats,
    /// Bytes of the blobs in [`Report::blobs`]: freed by a sweep, or that a sweep would free.
    pub freed_bytes: u64,
    /// Blobs deleted (`swept`) or to delete (`dry-run`, `refused`), sorted by digest.
    pub blobs: Vec<BlobItem>,
    /// Untagged manifests removed from a repository (only with `delete_untagged`).
    pub manifests: Vec<ManifestItem>,
    /// `_layers` links removed because no kept manifest of their repository needs the blob.
    pub layer_links: Vec<LayerLinkItem>,
    /// Uploads (`_uploads/<id>`) not written to within the grace period: abandoned pushes.
    pub uploads: Vec<UploadItem>,
    /// Empty folders removed (paths relative to the storage folder): the ones that are empty
    /// already, and blob shard folders the blob deletions empty. Object stores have no folders.
    pub empty_dirs: Vec<String>,
    /// Items a sweep left alone because they changed while it ran (re-pushed content).
    pub skipped: Vec<Skipped>,
    /// Deletions that failed.
    pub failures: Vec<Failure>,
    /// Damage and oddities found in the storage; `error` ones stop the sweep.
    pub problems: Vec<Problem>,
    pub timings: Timings,
    /// Requests made to an object store (absent for a filesystem).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<crate::storage::RequestCounts>,
}

/// What the run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Nothing was deleted; the lists say what a sweep would delete.
    DryRun,
    /// The sweep ran; the lists say what was deleted.
    Swept,
    /// Problems of severity `error` were found, so nothing was (or would be) deleted: the lists
    /// say what would be deleted if the problems were ignored.
    Refused,
}

/// Counts over the whole storage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub repositories: u64,
    pub tags: u64,
    /// Manifest revisions (`_manifests/revisions` links) over all repositories.
    pub manifests: u64,
    /// Of those, the ones kept.
    pub manifests_kept: u64,
    /// `_layers` links over all repositories.
    pub layer_links: u64,
    /// Blobs under `blobs/`.
    pub blobs: u64,
    /// Blobs something kept needs.
    pub blobs_marked: u64,
    /// Unreferenced blobs, links and folders kept because they are younger than the grace period.
    pub young_kept: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobItem {
    pub digest: Digest,
    /// Size of the blob's `data` file.
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestItem {
    pub repository: String,
    pub digest: Digest,
    /// Tags whose history (`index/`) listed this manifest; those entries go with it.
    pub tag_history: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerLinkItem {
    pub repository: String,
    pub digest: Digest,
    /// The blob itself is already gone (a link left behind by an earlier garbage collection).
    pub dangling: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadItem {
    pub repository: String,
    /// The upload's folder name under `_uploads/`.
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub path: String,
    pub error: String,
}

/// Milliseconds per phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Walking repositories, reading links and manifests, marking.
    pub mark_ms: u64,
    /// Checking that needed blobs exist and walking `blobs/`.
    pub blobs_ms: u64,
    /// Deleting (0 for a dry run).
    pub sweep_ms: u64,
    pub total_ms: u64,
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Reachability cannot be established: the sweep is refused unless problems are ignored.
    Error,
    /// Worth knowing; does not stop the sweep.
    Warning,
}

/// What kind of problem; the JSON name is the kebab-case variant name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// A manifest revision whose blob cannot be read, does not match its digest, or is not a
    /// manifest: what it references is unknown. (error)
    UnreadableManifest,
    /// A manifest revision whose blob is missing. (error)
    MissingManifest,
    /// A tag without `current/link`, or pointing at a digest that is not a manifest of the
    /// repository. (error)
    BrokenTag,
    /// A revision or tag link file that is not a digest, or names another digest than its folder.
    /// (error; a bad `_layers` link is a warning, it is never a root)
    BadLink,
    /// A folder or file that could not be listed or read. (error)
    Unreadable,
    /// A kept manifest needs a config or layer blob that does not exist. (error)
    MissingBlob,
    /// An index lists a child manifest that is not in the repository (deleted through the API);
    /// pulls of that platform fail. (warning)
    UnlinkedChild,
    /// A kept manifest needs a blob that exists but is not linked into the repository; the
    /// registry answers 404 for it. (warning)
    UnlinkedBlob,
    /// A `sha256-<hex>` referrers or signature tag whose subject is not in the repository.
    /// (warning)
    OrphanReferrerTag,
    /// An entry that does not belong to the layout; left alone. (warning)
    Unexpected,
    /// Content was pushed while the collection ran and could not be read back: the sweep is
    /// abandoned before deleting anything. (error)
    ChangedDuringRun,
    /// The registry answered the read-only probe as a writable registry, or could not be
    /// probed. (warning, added by the command line)
    RegistryWritable,
}

/// One problem found in the storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub kind: ProblemKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Path relative to the storage folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(severity: Severity, kind: ProblemKind, message: impl Into<String>) -> Self {
        Self {
            severity,
            kind,
            repository: None,
            digest: None,
            path: None,
            message: message.into(),
        }
    }

    pub fn error(kind: ProblemKind, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, kind, message)
    }

    pub fn warning(kind: ProblemKind, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, kind, message)
    }

    pub fn in_repo(mut self, repository: &str) -> Self {
        self.repository = Some(repository.to_owned());
        self
    }

    pub fn with_digest(mut self, digest: &Digest) -> Self {
        self.digest = Some(digest.clone());
        self
    }

    pub fn at(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl Report {
    /// Problems that stop the sweep.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.is_error())
    }

    /// Whether the run should be reported as failed: refused, or a deletion failed.
    pub fn failed(&self) -> bool {
        self.outcome == Outcome::Refused || !self.failures.is_empty()
    }

    /// Whether anything is (or would be) deleted.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
            && self.manifests.is_empty()
            && self.layer_links.is_empty()
            && self.uploads.is_empty()
            && self.empty_dirs.is_empty()
    }
}
