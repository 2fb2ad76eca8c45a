//! distribution's storage layout: repositories (nested names), tags, manifest revisions, layer
//! links and blobs, read through a small [`Backend`] trait.
//!
//! Everything lives under `<rootdirectory>/docker/registry/v2/`:
//!
//! ```text
//! blobs/<alg>/<first 2 hex>/<hex>/data                           content (layers, configs, manifests)
//! repositories/<name...>/_layers/<alg>/<hex>/link                 blob linked into the repository
//! repositories/<name...>/_manifests/revisions/<alg>/<hex>/link    manifest present in the repository
//! repositories/<name...>/_manifests/tags/<tag>/current/link       tag -> manifest digest
//! repositories/<name...>/_manifests/tags/<tag>/index/<alg>/<hex>/link   every digest the tag had
//! repositories/<name...>/_uploads/<id>/...                        uploads in progress (or abandoned)
//! ```
//!
//! A link file holds a digest string and nothing else. This module only reads the layout and
//! carries out single deletions; what to delete is decided by [`crate::gc`]. Every path handed to
//! a [`Backend`] is relative to the `docker/registry/v2` folder and uses `/`, so that an object
//! store (where these paths are key suffixes and folders do not exist) can implement the same
//! trait later.

mod fs;
mod object;
pub mod target;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use rayon::prelude::*;

use crate::digest::Digest;
use crate::environment::Environment;

pub use fs::LocalFs;
pub use object::{OBJECT_STORE_THREADS, ObjectBackend};
pub use target::{ConfigError, Located, RootSource, Target, locate};

/// Where distribution keeps its data below the configured `rootdirectory`.
pub const LAYOUT_PREFIX: &str = "docker/registry/v2";

/// Link files hold one digest (71 bytes for sha256, 135 for sha512). Anything much larger is not
/// a link, and reading it whole would be a waste.
pub const MAX_LINK_BYTES: u64 = 1024;

/// A failed storage operation.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot {op} `{path}`: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is {size} bytes, more than the {limit} bytes expected there")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("cannot {op} `{path}`: {message}")]
    Remote {
        op: &'static str,
        path: String,
        message: String,
    },
    #[error("cannot open {location}: {message}")]
    Open { location: String, message: String },
}

/// Requests an object-store backend made (the filesystem has none to count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    /// Listing calls (each is one or more pages of up to 1,000 keys).
    pub listings: u64,
    /// Objects fetched (manifests, and link files whose ETag is not an MD5).
    pub gets: u64,
    /// Single-object lookups of keys missing from the listing.
    pub heads: u64,
    /// Link files whose content was known from the listing's ETag, without a GET.
    pub links_from_etag: u64,
    pub keys_deleted: u64,
    /// Keys a batch delete answered with an error for.
    pub delete_errors: u64,
    /// Throttling answers (`503 SlowDown`, `429`), each retried with backoff.
    pub throttled: u64,
    /// The lowest limit on requests in flight that throttling brought (object_store::Throttle).
    pub lowest_concurrency: usize,
}

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// Anything else (sockets, dangling symlinks, names that are not UTF-8); never descended into
    /// and never deleted.
    Other,
}

/// One entry of a listed directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
}

/// Size and modification time of a file (or folder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub size: u64,
    pub modified: SystemTime,
}

/// The operations the layout reader and the garbage collector need from a storage driver. Paths
/// are relative to `docker/registry/v2` and separated by `/`. A missing path is not an error:
/// the methods return `None` or `false` for it, because distribution's layout is full of
/// optional parts and concurrent deletes.
///
/// An object-store implementation maps folders to key prefixes: `list` is a delimiter listing,
/// `stat` of a folder may return `None`, and `remove_empty_dir` may do nothing.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Where the storage is, for messages (a path or a URL).
    fn location(&self) -> String;
    /// The entries of a folder, or `None` when it does not exist.
    fn list(&self, path: &str) -> Result<Option<Vec<Entry>>, StorageError>;
    /// Size and modification time, or `None` when the path does not exist.
    fn stat(&self, path: &str) -> Result<Option<FileMeta>, StorageError>;
    /// The whole content of a file, or `None` when it does not exist; files larger than `limit`
    /// are refused with [`StorageError::TooLarge`].
    fn read(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, StorageError>;
    /// Deletes a file, or a folder with everything in it. `false` when it was already gone.
    fn delete(&self, path: &str) -> Result<bool, StorageError>;
    /// Removes a folder only if it is empty. `false` when it is not empty or already gone.
    fn remove_empty_dir(&self, path: &str) -> Result<bool, StorageError>;
    /// Writes a whole file (creating its folders), replacing it if it exists; readers never see
    /// half of it. Only `restore --storage` writes.
    fn write(&self, path: &str, content: &[u8]) -> Result<(), StorageError>;
    /// Deletes several paths (as [`Backend::delete`] each); object stores batch the requests.
    /// One result per path, in order.
    fn delete_many(&self, paths: &[String]) -> Vec<Result<bool, StorageError>> {
        use rayon::prelude::*;
        paths.par_iter().map(|p| self.delete(p)).collect()
    }
    /// Forgets what was cached about `repositories/` so that the next reads see writes made
    /// since (an object store answers from a listing taken at the start).
    fn refresh(&self) -> Result<(), StorageError> {
        Ok(())
    }
    /// Oddities of the storage itself that the layout reader cannot see (directory markers).
    fn anomalies(&self) -> Vec<String> {
        Vec::new()
    }
    /// How many worker threads suit this storage when the caller does not say (`None`: one per
    /// core); network-bound stores want many.
    fn parallelism(&self) -> Option<usize> {
        None
    }
    /// Requests made so far, for object stores.
    fn request_counts(&self) -> Option<RequestCounts> {
        None
    }
    /// Whether folders exist on their own (filesystems), rather than only as key prefixes
    /// (object stores, where removing the last key removes the folder).
    fn has_folders(&self) -> bool {
        true
    }
}

/// Paths of distribution's layout, relative to `docker/registry/v2`.
pub mod paths {
    use crate::digest::Digest;

    /// The folder path of a digest algorithm: distribution replaces `+`, `.` and `;` by `/`.
    fn algorithm_path(digest: &Digest) -> String {
        digest.algorithm().replace(['+', '.', ';'], "/")
    }

    fn fan_out(digest: &Digest) -> &str {
        let encoded = digest.encoded();
        encoded.get(..2).unwrap_or(encoded)
    }

    /// `blobs/<alg>/<xx>/<hex>`: the folder deleted to delete a blob.
    pub fn blob_dir(digest: &Digest) -> String {
        format!(
            "blobs/{}/{}/{}",
            algorithm_path(digest),
            fan_out(digest),
            digest.encoded()
        )
    }

    /// `blobs/<alg>/<xx>/<hex>/data`: a blob's content.
    pub fn blob_data(digest: &Digest) -> String {
        format!("{}/data", blob_dir(digest))
    }

    pub fn repository(name: &str) -> String {
        format!("repositories/{name}")
    }

    /// `…/_manifests/revisions/<alg>/<hex>`: deleted to remove a manifest from a repository.
    pub fn revision_dir(repo: &str, digest: &Digest) -> String {
        format!(
            "repositories/{repo}/_manifests/revisions/{}/{}",
            algorithm_path(digest),
            digest.encoded()
        )
    }

    /// `…/_layers/<alg>/<hex>`: deleted to unlink a blob from a repository.
    pub fn layer_link_dir(repo: &str, digest: &Digest) -> String {
        format!(
            "repositories/{repo}/_layers/{}/{}",
            algorithm_path(digest),
            digest.encoded()
        )
    }

    /// `…/_uploads/<id>`: one upload in progress (or abandoned).
    pub fn upload_dir(repo: &str, id: &str) -> String {
        format!("repositories/{repo}/_uploads/{id}")
    }

    pub fn tag_dir(repo: &str, tag: &str) -> String {
        format!("repositories/{repo}/_manifests/tags/{tag}")
    }

    /// `…/tags/<tag>/index/<alg>/<hex>`: one entry of a tag's history.
    pub fn tag_history_dir(repo: &str, tag: &str, digest: &Digest) -> String {
        format!(
            "repositories/{repo}/_manifests/tags/{tag}/index/{}/{}",
            algorithm_path(digest),
            digest.encoded()
        )
    }
}

/// A link file that was read and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub digest: Digest,
    /// The link file's modification time (when the registry last wrote it): always known for
    /// revisions, for tags only with [`ReadOptions::link_times`].
    pub modified: Option<SystemTime>,
}

/// A tag of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub name: String,
    /// `current/link`; `None` when it is missing or unreadable (an [`Issue`] says which), or
    /// not read ([`ReadOptions::tag_names_only`]).
    pub current: Option<Link>,
    /// Digests under `index/` (the tag's history), when requested with
    /// [`ReadOptions::tag_history`]; empty otherwise.
    pub history: Vec<Digest>,
}

/// A folder left empty, typically a revision or layer link deleted through the API (distribution
/// removes the link file and leaves its folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmptyDir {
    pub path: String,
    pub modified: SystemTime,
}

/// Something in the layout that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub kind: IssueKind,
    /// Path relative to `docker/registry/v2`.
    pub path: String,
    pub message: String,
    /// Modification time of the path, when known (a tag folder without `current/link` that is
    /// very recent is a push in progress, not damage).
    pub modified: Option<SystemTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IssueKind {
    /// A link file whose content is not a digest, or a different digest than its path says.
    BadLink,
    /// A tag folder without `current/link`.
    MissingTagLink,
    /// A file or folder that could not be read or listed.
    Unreadable,
    /// An entry where the layout has none (e.g. `blobs/sha256/zz/not-a-digest`); left alone.
    Unexpected,
}

/// Everything read from one repository folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repository {
    /// The repository name (`team/sub/app`).
    pub name: String,
    pub tags: Vec<Tag>,
    /// `_manifests/revisions`: the manifests the repository has.
    pub revisions: Vec<Link>,
    /// `_layers/<alg>/<hex>` folders: the blobs (configs and layers) linked into the repository,
    /// sorted. Their link files are read only with [`ReadOptions::verify_links`]: a layer link is
    /// never a root of the collection, so only the ones about to be deleted need a look (see
    /// [`Storage::layer_link_state`]). That saves several system calls per layer, the bulk of a
    /// registry.
    pub layers: Vec<Digest>,
    /// Empty revision folders (left by manifests deleted through the API).
    pub empty_dirs: Vec<EmptyDir>,
    pub issues: Vec<Issue>,
}

/// What to read beyond the minimum.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// List every tag's `index/` history (needed only to delete manifests).
    pub tag_history: bool,
    /// Modification times of tag links (revision links always have theirs).
    pub link_times: bool,
    /// List tag names only, without reading `current/link` ([`Tag::current`] stays `None`):
    /// for callers to whom the tags' targets make no difference.
    pub tag_names_only: bool,
    /// Read every revision and `_layers` link file and check that it holds the digest of its
    /// folder, reporting [`IssueKind::BadLink`] otherwise. Without it a revision is recognised
    /// by its link file existing (one `stat`) and named by its folder, which is also how
    /// distribution addresses it when serving and deleting; `_layers` folders are only listed.
    pub verify_links: bool,
}

/// What a `_layers/<alg>/<hex>` folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerLinkState {
    /// The link file, with its modification time.
    Link(SystemTime),
    /// No link file and nothing else: left by a blob deleted through the API.
    EmptyDir(SystemTime),
    /// Gone, or something unexpected; left alone.
    Other,
}

/// Links written after some instant (see [`Storage::links_modified_since`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecentLinks {
    /// Manifests whose revision or tag link is recent.
    pub manifests: Vec<Digest>,
    /// Blobs whose `_layers` link is recent.
    pub blobs: Vec<Digest>,
}

/// Repository names found under `repositories/`.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// Sorted.
    pub names: Vec<String>,
    /// Folders that could not be listed: repositories below them may have been missed.
    pub issues: Vec<Issue>,
}

/// The entries of one `blobs/<alg>/<xx>/` shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobShard {
    /// `<alg>`.
    pub algorithm: String,
    /// Names of the folders in the shard that start with `<xx>`: each is the encoded part of a
    /// blob digest (`<alg>:<name>`) if it is valid for the algorithm — the caller parses it,
    /// since building a [`Digest`] for every blob of a registry is measurable work.
    pub names: Vec<String>,
    /// Anything else, as paths; never deleted.
    pub unexpected: Vec<String>,
}

/// distribution's storage layout over a [`Backend`].
#[derive(Debug, Clone)]
pub struct Storage {
    backend: Arc<dyn Backend>,
    /// How users name it: the root folder or the object-store URL, without the layout prefix.
    location: String,
}

impl Storage {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        let location = backend.location();
        Self { backend, location }
    }

    /// The layout under a local `rootdirectory` (the folder that contains `docker/`).
    pub fn local(root: impl Into<std::path::PathBuf>) -> Self {
        let root = root.into();
        let location = root.display().to_string();
        Self {
            backend: Arc::new(LocalFs::new(root.join(LAYOUT_PREFIX))),
            location,
        }
    }

    /// Where the storage is, as users name it (the `rootdirectory` or the bucket URL).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The storage a [`Target`] names. Object stores take what the target leaves open
    /// (endpoint, region, credentials) from their standard variables in `env` (`AWS_*`,
    /// `AZURE_*`, `GOOGLE_*`, as object_store's `from_env` would read the process's); nothing is
    /// contacted before the first read.
    pub fn open(target: &Target, env: &Environment) -> Result<Self, StorageError> {
        use object_store::ClientConfigKey;
        use object_store::aws::AmazonS3ConfigKey;
        let location = target.describe();
        let failed = |err: object_store::Error| StorageError::Open {
            location: location.clone(),
            message: err.to_string(),
        };
        // Client settings go in key by key: `with_client_options` would replace what the
        // environment set (AWS_ALLOW_HTTP, proxies).
        let pool = (
            ClientConfigKey::PoolMaxIdlePerHost,
            OBJECT_STORE_THREADS.to_string(),
        );
        // Throttling answers slow every request of this store down, not only the retried one.
        let throttle = object::Throttle::new();
        let (store, root): (Arc<dyn object_store::ObjectStore>, &str) = match target {
            Target::Filesystem { root } => return Ok(Self::local(root)),
            Target::S3(s3) => {
                let mut builder = configured(
                    object_store::aws::AmazonS3Builder::new(),
                    env,
                    "AWS_",
                    |b, k, v| b.with_config(k, v),
                )
                .with_bucket_name(&s3.bucket);
                if let Some(region) = &s3.region {
                    builder = builder.with_region(region);
                }
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let (Some(key), Some(secret)) = (&s3.access_key, &s3.secret_key) {
                    builder = builder
                        .with_access_key_id(key)
                        .with_secret_access_key(secret.expose());
                }
                if s3.allow_http {
                    builder = builder.with_allow_http(true);
                }
                if let Some(path_style) = s3.path_style {
                    builder = builder.with_virtual_hosted_style_request(!path_style);
                }
                if s3.skip_verify {
                    builder = builder.with_config(
                        AmazonS3ConfigKey::Client(ClientConfigKey::AllowInvalidCertificates),
                        "true",
                    );
                }
                let store = builder
                    .with_config(AmazonS3ConfigKey::Client(pool.0), pool.1)
                    .with_http_connector(throttle.connector())
                    .build()
                    .map_err(failed)?;
                (Arc::new(store), &s3.root)
            }
            Target::Azure(t) => {
                let mut builder = configured(
                    object_store::azure::MicrosoftAzureBuilder::new(),
                    env,
                    "AZURE_",
                    |b, k, v| b.with_config(k, v),
                );
                // Managed identity's endpoint, which object_store reads under this name.
                if let Some(endpoint) = env.get("IDENTITY_ENDPOINT") {
                    builder = builder.with_msi_endpoint(endpoint);
                }
                let store = builder
                    .with_container_name(&t.bucket)
                    .with_config(object_store::azure::AzureConfigKey::Client(pool.0), pool.1)
                    .with_http_connector(throttle.connector())
                    .build()
                    .map_err(failed)?;
                (Arc::new(store), &t.root)
            }
            Target::Gcs(t) => {
                let mut builder = configured(
                    object_store::gcp::GoogleCloudStorageBuilder::new(),
                    env,
                    "GOOGLE_",
                    |b, k, v| b.with_config(k, v),
                );
                if let Some(path) = env.get("SERVICE_ACCOUNT") {
                    builder = builder.with_service_account_path(path);
                }
                let store = builder
                    .with_bucket_name(&t.bucket)
                    .with_config(object_store::gcp::GoogleConfigKey::Client(pool.0), pool.1)
                    .with_http_connector(throttle.connector())
                    .build()
                    .map_err(failed)?;
                (Arc::new(store), &t.root)
            }
        };
        let backend = Arc::new(ObjectBackend::new(store, root, location.clone(), throttle)?);
        Ok(Self { backend, location })
    }

    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// Every repository: a folder under `repositories/` with a `_manifests` or `_layers` child.
    /// distribution 2.8 looks only for `_layers`, 3.x only for `_manifests`; the union misses
    /// neither. Folders whose name starts with `_` are not descended into; other children are,
    /// because a repository can also be a namespace (`team` and `team/app`).
    pub fn repositories(&self) -> Result<Discovery, StorageError> {
        let Some(top) = self.backend.list("repositories")? else {
            return Ok(Discovery::default());
        };
        let mut found = self.discover_children(String::new(), top);
        found.names.sort_unstable();
        found.issues.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    fn discover_children(&self, prefix: String, entries: Vec<Entry>) -> Discovery {
        entries
            .into_par_iter()
            .filter(|e| e.kind == EntryKind::Dir && !e.name.starts_with('_'))
            .map(|e| {
                let name = format!("{prefix}{}", e.name);
                let path = paths::repository(&name);
                match self.backend.list(&path) {
                    Ok(Some(children)) => {
                        let is_repo = children.iter().any(|c| {
                            c.kind == EntryKind::Dir && (c.name == "_manifests" || c.name == "_layers")
                        });
                        let mut below = self.discover_children(format!("{name}/"), children);
                        if is_repo {
                            below.names.push(name);
                        }
                        below
                    }
                    // Deleted while walking.
                    Ok(None) => Discovery::default(),
                    Err(err) => Discovery {
                        names: Vec::new(),
                        issues: vec![unreadable(path, &err)],
                    },
                }
            })
            .reduce(Discovery::default, |mut a, b| {
                a.names.extend(b.names);
                a.issues.extend(b.issues);
                a
            })
    }

    /// Reads tags, revisions and layer links of one repository. Link files are read in
    /// parallel. Problems are recorded in [`Repository::issues`], never returned as errors, so
    /// the caller sees everything that is wrong at once.
    pub fn read_repository(&self, name: &str, options: ReadOptions) -> Repository {
        let base = paths::repository(name);
        let ((tags, revisions), layers) = rayon::join(
            || {
                rayon::join(
                    || self.read_tags(&base, options),
                    || self.read_revisions(&format!("{base}/_manifests/revisions"), options.verify_links),
                )
            },
            || self.read_layers(&format!("{base}/_layers"), options.verify_links),
        );
        let (tags, mut issues) = tags;
        issues.extend(revisions.issues);
        let (layers, layer_issues) = layers;
        issues.extend(layer_issues);
        Repository {
            name: name.to_owned(),
            tags,
            revisions: revisions.links,
            layers,
            empty_dirs: revisions.empty_dirs,
            issues,
        }
    }

    /// The `_layers/<alg>/<hex>` folders below `dir`, sorted; with `verify`, every link file is
    /// read and checked too.
    fn read_layers(&self, dir: &str, verify: bool) -> (Vec<Digest>, Vec<Issue>) {
        let listed = self.list_digest_dirs(dir);
        let mut issues = listed.issues;
        let mut layers: Vec<Digest> = if verify {
            let checked: Vec<(Digest, Option<Issue>)> = listed
                .digests
                .into_par_iter()
                .map(|(digest, path)| {
                    let issue = self
                        .read_link(&format!("{path}/link"), Some(&digest), false)
                        .err();
                    (digest, issue)
                })
                .collect();
            checked
                .into_iter()
                .map(|(digest, issue)| {
                    issues.extend(issue);
                    digest
                })
                .collect()
        } else {
            listed.digests.into_iter().map(|(d, _)| d).collect()
        };
        layers.sort_unstable();
        (layers, issues)
    }

    /// The digests under `tags/<tag>/index/<algorithm>` of `repo`: part of the tag's history.
    pub fn read_tag_history(&self, repo: &str, tag: &str, algorithm: &str) -> (Vec<Digest>, Vec<Issue>) {
        let dir = format!("{}/index/{algorithm}", paths::tag_dir(repo, tag));
        let entries = match self.backend.list(&dir) {
            Ok(Some(entries)) => entries,
            Ok(None) => return (Vec::new(), Vec::new()),
            Err(err) => return (Vec::new(), vec![unreadable(dir, &err)]),
        };
        let mut digests = Vec::with_capacity(entries.len());
        let mut issues = Vec::new();
        for entry in entries {
            match (entry.kind, Digest::parse(&format!("{algorithm}:{}", entry.name))) {
                (EntryKind::Dir, Ok(digest)) => digests.push(digest),
                _ => issues.push(unexpected(format!("{dir}/{}", entry.name))),
            }
        }
        (digests, issues)
    }

    /// What `_layers/<alg>/<hex>` of `repo` holds, for a link about to be deleted.
    pub fn layer_link_state(&self, repo: &str, digest: &Digest) -> Result<LayerLinkState, StorageError> {
        let dir = paths::layer_link_dir(repo, digest);
        if let Some(meta) = self.backend.stat(&format!("{dir}/link"))? {
            return Ok(LayerLinkState::Link(meta.modified));
        }
        match (self.backend.list(&dir)?, self.backend.stat(&dir)?) {
            (Some(entries), Some(meta)) if entries.is_empty() => Ok(LayerLinkState::EmptyDir(meta.modified)),
            _ => Ok(LayerLinkState::Other),
        }
    }

    /// Manifests and blobs of `repo` whose links were written after `since`: only modification
    /// times are read (digests come from folder names), except for recent tag links.
    pub fn links_modified_since(&self, repo: &str, since: SystemTime) -> RecentLinks {
        let base = paths::repository(repo);
        let recent = |dir: &str| -> Vec<Digest> {
            self.list_digest_dirs(dir)
                .digests
                .into_par_iter()
                .filter(|(_, path)| {
                    matches!(self.backend.stat(&format!("{path}/link")), Ok(Some(meta)) if meta.modified > since)
                })
                .map(|(digest, _)| digest)
                .collect()
        };
        let mut found = RecentLinks {
            manifests: recent(&format!("{base}/_manifests/revisions")),
            blobs: recent(&format!("{base}/_layers")),
        };
        let tags_dir = format!("{base}/_manifests/tags");
        if let Ok(Some(tags)) = self.backend.list(&tags_dir) {
            let targets: Vec<Digest> = tags
                .into_par_iter()
                .filter_map(|tag| {
                    let path = format!("{tags_dir}/{}/current/link", tag.name);
                    match self.backend.stat(&path) {
                        Ok(Some(meta)) if meta.modified > since => self
                            .read_link(&path, None, false)
                            .ok()
                            .flatten()
                            .map(|l| l.digest),
                        _ => None,
                    }
                })
                .collect();
            found.manifests.extend(targets);
        }
        found
    }

    fn read_tags(&self, base: &str, options: ReadOptions) -> (Vec<Tag>, Vec<Issue>) {
        let dir = format!("{base}/_manifests/tags");
        let entries = match self.backend.list(&dir) {
            Ok(Some(entries)) => entries,
            Ok(None) => return (Vec::new(), Vec::new()),
            Err(err) => return (Vec::new(), vec![unreadable(dir, &err)]),
        };
        let results: Vec<(Tag, Vec<Issue>)> = entries
            .into_par_iter()
            .filter(|e| e.kind == EntryKind::Dir)
            .map(|e| {
                let tag_dir = format!("{dir}/{}", e.name);
                let mut issues = Vec::new();
                let link_path = format!("{tag_dir}/current/link");
                if options.tag_names_only {
                    let tag = Tag {
                        name: e.name,
                        current: None,
                        history: Vec::new(),
                    };
                    return (tag, issues);
                }
                let current = match self.read_link(&link_path, None, options.link_times) {
                    Ok(Some(link)) => Some(link),
                    Ok(None) => {
                        let modified = self.backend.stat(&tag_dir).ok().flatten().map(|m| m.modified);
                        issues.push(Issue {
                            kind: IssueKind::MissingTagLink,
                            path: link_path,
                            message: format!("tag `{}` has no current/link", e.name),
                            modified,
                        });
                        None
                    }
                    Err(issue) => {
                        issues.push(issue);
                        None
                    }
                };
                let history = if options.tag_history {
                    let tree = self.list_digest_dirs(&format!("{tag_dir}/index"));
                    issues.extend(tree.issues);
                    tree.digests.into_iter().map(|(d, _)| d).collect()
                } else {
                    Vec::new()
                };
                (
                    Tag {
                        name: e.name,
                        current,
                        history,
                    },
                    issues,
                )
            })
            .collect();
        let mut tags = Vec::with_capacity(results.len());
        let mut issues = Vec::new();
        for (tag, tag_issues) in results {
            tags.push(tag);
            issues.extend(tag_issues);
        }
        tags.sort_by(|a, b| a.name.cmp(&b.name));
        (tags, issues)
    }

    /// Lists `<dir>/<alg>/<hex>` folders and turns each name into a digest.
    fn list_digest_dirs(&self, dir: &str) -> DigestDirs {
        let mut out = DigestDirs::default();
        let algorithms = match self.backend.list(dir) {
            Ok(Some(entries)) => entries,
            Ok(None) => return out,
            Err(err) => {
                out.issues.push(unreadable(dir.to_owned(), &err));
                return out;
            }
        };
        for alg in algorithms.into_iter().filter(|e| e.kind == EntryKind::Dir) {
            let alg_dir = format!("{dir}/{}", alg.name);
            let entries = match self.backend.list(&alg_dir) {
                Ok(Some(entries)) => entries,
                Ok(None) => continue,
                Err(err) => {
                    out.issues.push(unreadable(alg_dir, &err));
                    continue;
                }
            };
            for entry in entries {
                let path = format!("{alg_dir}/{}", entry.name);
                match (entry.kind, Digest::parse(&format!("{}:{}", alg.name, entry.name))) {
                    (EntryKind::Dir, Ok(digest)) => out.digests.push((digest, path)),
                    _ => out.issues.push(Issue {
                        kind: IssueKind::Unexpected,
                        message: format!("`{path}` is not a `<algorithm>/<digest>` folder; left alone"),
                        path,
                        modified: None,
                    }),
                }
            }
        }
        out
    }

    /// Finds every `<alg>/<hex>/link` below `dir` (the revisions) with its modification time;
    /// with `verify`, also reads it and checks that it names the digest of its folder. Folders
    /// without a link are reported as empty when they are empty, and ignored otherwise (old
    /// registries keep `signatures/` there).
    fn read_revisions(&self, dir: &str, verify: bool) -> LinkTree {
        let listed = self.list_digest_dirs(dir);
        let mut tree: LinkTree = listed
            .digests
            .into_par_iter()
            .map(|(digest, path)| {
                let mut part = LinkTree::default();
                let link_path = format!("{path}/link");
                let found = if verify {
                    self.read_link(&link_path, Some(&digest), true)
                } else {
                    match self.backend.stat(&link_path) {
                        Ok(Some(meta)) => Ok(Some(Link {
                            digest,
                            modified: Some(meta.modified),
                        })),
                        Ok(None) => Ok(None),
                        Err(err) => Err(unreadable(link_path, &err)),
                    }
                };
                match found {
                    Ok(Some(link)) => part.links.push(link),
                    Ok(None) => match (self.backend.list(&path), self.backend.stat(&path)) {
                        (Ok(Some(entries)), Ok(Some(meta))) if entries.is_empty() => {
                            part.empty_dirs.push(EmptyDir {
                                path,
                                modified: meta.modified,
                            })
                        }
                        (Err(err), _) | (_, Err(err)) => part.issues.push(unreadable(path, &err)),
                        _ => {}
                    },
                    Err(issue) => part.issues.push(issue),
                }
                part
            })
            .reduce(LinkTree::default, |mut a, b| {
                a.links.extend(b.links);
                a.empty_dirs.extend(b.empty_dirs);
                a.issues.extend(b.issues);
                a
            });
        tree.issues.extend(listed.issues);
        tree.links.sort_by(|a, b| a.digest.cmp(&b.digest));
        tree.empty_dirs.sort_by(|a, b| a.path.cmp(&b.path));
        tree
    }

    /// Reads and parses one link file, with its modification time if `with_time`. `Ok(None)`
    /// when it does not exist; an [`Issue`] when it cannot be read, is not exactly a digest
    /// (distribution does not trim whitespace either), or names another digest than `expected`.
    pub fn read_link(
        &self,
        path: &str,
        expected: Option<&Digest>,
        with_time: bool,
    ) -> Result<Option<Link>, Issue> {
        let issue = |kind, message: String| Issue {
            kind,
            path: path.to_owned(),
            message,
            modified: None,
        };
        let bytes = match self.backend.read(path, MAX_LINK_BYTES) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(err @ StorageError::TooLarge { .. }) => {
                return Err(issue(IssueKind::BadLink, err.to_string()));
            }
            Err(err) => return Err(issue(IssueKind::Unreadable, err.to_string())),
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            issue(
                IssueKind::BadLink,
                format!("link file `{path}` does not contain text"),
            )
        })?;
        let digest = Digest::parse(text).map_err(|err| {
            issue(
                IssueKind::BadLink,
                format!("link file `{path}` is not a digest: {err}"),
            )
        })?;
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(issue(
                IssueKind::BadLink,
                format!("link file `{path}` names {digest}, but its folder is {expected}"),
            ));
        }
        let modified = if with_time {
            match self.backend.stat(path) {
                Ok(Some(meta)) => Some(meta.modified),
                // Deleted between the read and the stat: as good as absent.
                Ok(None) => return Ok(None),
                Err(err) => return Err(issue(IssueKind::Unreadable, err.to_string())),
            }
        } else {
            None
        };
        Ok(Some(Link { digest, modified }))
    }

    /// The `blobs/<alg>/<xx>` shard folders, sorted; entries of `blobs/` and `blobs/<alg>/`
    /// that do not fit the layout are returned as issues.
    pub fn blob_shards(&self) -> Result<(Vec<String>, Vec<Issue>), StorageError> {
        let Some(algorithms) = self.backend.list("blobs")? else {
            return Ok((Vec::new(), Vec::new()));
        };
        let mut shards = Vec::new();
        let mut issues = Vec::new();
        for alg in algorithms {
            let alg_dir = format!("blobs/{}", alg.name);
            if alg.kind != EntryKind::Dir {
                issues.push(unexpected(alg_dir));
                continue;
            }
            let Some(entries) = self.backend.list(&alg_dir)? else {
                continue;
            };
            for shard in entries {
                let path = format!("{alg_dir}/{}", shard.name);
                if shard.kind == EntryKind::Dir && shard.name.len() == 2 {
                    shards.push(path);
                } else {
                    issues.push(unexpected(path));
                }
            }
        }
        shards.sort_unstable();
        Ok((shards, issues))
    }

    /// The blob folders of one shard (`blobs/<alg>/<xx>`).
    pub fn list_blob_shard(&self, shard: &str) -> Result<BlobShard, StorageError> {
        let mut parts = shard.rsplit('/');
        let prefix = parts.next().unwrap_or_default();
        let mut listed = BlobShard {
            algorithm: parts.next().unwrap_or_default().to_owned(),
            ..BlobShard::default()
        };
        let Some(entries) = self.backend.list(shard)? else {
            return Ok(listed);
        };
        for entry in entries {
            if entry.kind == EntryKind::Dir && entry.name.starts_with(prefix) {
                listed.names.push(entry.name);
            } else {
                listed.unexpected.push(format!("{shard}/{}", entry.name));
            }
        }
        Ok(listed)
    }

    /// The ids of `repo`'s uploads (`_uploads/<id>` folders).
    pub fn uploads(&self, repo: &str) -> Result<Vec<String>, StorageError> {
        let dir = format!("{}/_uploads", paths::repository(repo));
        Ok(self
            .backend
            .list(&dir)?
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.kind == EntryKind::Dir)
            .map(|e| e.name)
            .collect())
    }

    /// When an upload was last written to: the newest of its folder, its `startedat` and its
    /// `data` (which grows with every chunk on a filesystem). `None` when it is gone.
    pub fn upload_modified(&self, repo: &str, id: &str) -> Result<Option<SystemTime>, StorageError> {
        let dir = paths::upload_dir(repo, id);
        let mut newest = None;
        for path in [dir.clone(), format!("{dir}/startedat"), format!("{dir}/data")] {
            if let Some(meta) = self.backend.stat(&path)? {
                newest = newest.max(Some(meta.modified));
            }
        }
        Ok(newest)
    }

    /// Size and modification time of a blob's `data`, or `None` when it does not exist.
    pub fn stat_blob(&self, digest: &Digest) -> Result<Option<FileMeta>, StorageError> {
        self.backend.stat(&paths::blob_data(digest))
    }

    /// A blob's content, refusing more than `limit` bytes.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Option<Vec<u8>>, StorageError> {
        self.backend.read(&paths::blob_data(digest), limit)
    }
}

#[derive(Default)]
struct DigestDirs {
    digests: Vec<(Digest, String)>,
    issues: Vec<Issue>,
}

#[derive(Default)]
struct LinkTree {
    links: Vec<Link>,
    empty_dirs: Vec<EmptyDir>,
    issues: Vec<Issue>,
}

fn unreadable(path: String, err: &StorageError) -> Issue {
    Issue {
        kind: IssueKind::Unreadable,
        message: err.to_string(),
        path,
        modified: None,
    }
}

fn unexpected(path: String) -> Issue {
    Issue {
        kind: IssueKind::Unexpected,
        message: format!("`{path}` does not belong to distribution's layout; left alone"),
        path,
        modified: None,
    }
}

/// An object_store builder given every variable of `env` that starts with `prefix` and names
/// one of its settings (`AWS_REGION` → `aws_region`), as its `from_env` does with the
/// process's environment; other variables are left out.
fn configured<B, K: std::str::FromStr>(
    builder: B,
    env: &Environment,
    prefix: &str,
    with_config: impl Fn(B, K, &str) -> B,
) -> B {
    env.with_prefix(prefix).fold(builder, |builder, (name, value)| {
        match name.to_ascii_lowercase().parse::<K>() {
            Ok(key) => with_config(builder, key, value),
            Err(_) => builder,
        }
    })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testtree;
