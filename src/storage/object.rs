//! Object stores (S3, Azure Blob, GCS) through the `object_store` crate, behind the same
//! [`Backend`] as the filesystem.
//!
//! Walking an object store folder by folder costs one request per folder, which is what makes
//! distribution's collector take days on S3. This backend lists the keyspace once, flat and in
//! parallel (one listing per `blobs/<alg>/<xx>/` shard and one per top-level repository folder),
//! into an in-memory snapshot; folder listings and `stat`s are then answered from the snapshot.
//! Contents are fetched only where needed, and link files not even then when the listing's ETag
//! is the MD5 of a digest string found in a key path (see [`Snapshot::link_by_etag`]).
//! [`Backend::refresh`] re-lists the repositories before a sweep, so that links written during the
//! run are seen; deletions are batched ([`Backend::delete_many`]).
//!
//! Two gaps of `object_store` are worked around here (docs/gc.md says more):
//! - a key with an empty segment (`a//b`) fails the whole listing page it is in: the listing of
//!   that prefix is retried folder by folder, and only the folders that still fail are reported
//!   unreadable;
//! - a directory marker (a zero-byte key ending in `/`) is listed as a file named like its folder:
//!   such a key is dropped from the snapshot and reported, never deleted (`object_store` cannot
//!   name it).
//!
//! Throttling (`503 SlowDown`, `429`): `object_store` retries each such answer with exponential
//! backoff, but the collection's other requests keep coming at full concurrency. [`Throttle`]
//! sits below the retries, in the HTTP layer, and limits requests in flight the AIMD way: halved
//! on a throttling answer, one more after each limit's worth of successes.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use futures::{StreamExt as _, TryStreamExt as _};
use md5::{Digest as _, Md5};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService,
    ReqwestConnector,
};
use object_store::path::Path as KeyPath;
use object_store::{ObjectStore, ObjectStoreExt as _};

use super::{Backend, Entry, EntryKind, FileMeta, LAYOUT_PREFIX, RequestCounts, StorageError};

/// Listings running at once while the snapshot is taken.
const LIST_CONCURRENCY: usize = 32;
/// Worker threads a collection should use: requests wait on the network, not on the CPU.
pub const OBJECT_STORE_THREADS: usize = 32;

/// Requests in flight at most while the store does not throttle: above the listing concurrency
/// plus the workers' reads, and above object_store's 20 batch deletes in flight.
const MAX_IN_FLIGHT: usize = 64;
/// The limit is halved at most once per this interval: one burst of throttled answers to
/// requests sent together is one signal, not one per request.
const CUT_INTERVAL: Duration = Duration::from_secs(1);

/// Adaptive limit on requests in flight (additive increase, multiplicative decrease), shared by
/// every HTTP client of one store. The semaphore holds `limit + debt` permits; permits owed after
/// a cut are forgotten as they come back.
#[derive(Debug)]
pub struct Throttle {
    gate: tokio::sync::Semaphore,
    state: Mutex<ThrottleState>,
}

#[derive(Debug)]
struct ThrottleState {
    limit: usize,
    debt: usize,
    successes: usize,
    last_cut: Option<Instant>,
    throttled: u64,
    lowest: usize,
}

impl Throttle {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            gate: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
            state: Mutex::new(ThrottleState {
                limit: MAX_IN_FLIGHT,
                debt: 0,
                successes: 0,
                last_cut: None,
                throttled: 0,
                lowest: MAX_IN_FLIGHT,
            }),
        })
    }

    /// The HTTP connector to give the store's builder (`with_http_connector`).
    pub fn connector(self: &Arc<Self>) -> ThrottledConnector {
        ThrottledConnector(self.clone())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ThrottleState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one answer; returns whether a permit must be forgotten instead of released.
    fn record(&self, throttled: bool) -> bool {
        let mut state = self.state();
        if throttled {
            state.throttled += 1;
            state.successes = 0;
            let due = state.last_cut.is_none_or(|at| at.elapsed() >= CUT_INTERVAL);
            if due && state.limit > 1 {
                let halved = state.limit / 2;
                state.debt += state.limit - halved;
                state.limit = halved;
                state.last_cut = Some(Instant::now());
                if halved < state.lowest {
                    state.lowest = halved;
                    tracing::warn!(
                        "the object store is throttling (503 SlowDown or 429): at most {halved} requests in flight now"
                    );
                }
            }
        } else {
            state.successes += 1;
            if state.successes >= state.limit && state.limit < MAX_IN_FLIGHT {
                state.successes = 0;
                state.limit += 1;
                if state.debt > 0 {
                    state.debt -= 1;
                } else {
                    self.gate.add_permits(1);
                }
            }
        }
        if state.debt > 0 {
            state.debt -= 1;
            true
        } else {
            false
        }
    }

    /// Throttling answers seen (each one retried by object_store), and the lowest limit reached.
    fn summary(&self) -> (u64, usize) {
        let state = self.state();
        (state.throttled, state.lowest)
    }
}

/// Connects object_store's usual reqwest client behind a [`Throttle`].
#[derive(Debug)]
pub struct ThrottledConnector(Arc<Throttle>);

impl HttpConnector for ThrottledConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(ThrottledService {
            inner: ReqwestConnector::default().connect(options)?,
            throttle: self.0.clone(),
        }))
    }
}

#[derive(Debug)]
struct ThrottledService {
    inner: HttpClient,
    throttle: Arc<Throttle>,
}

impl ThrottledService {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        // The semaphore is never closed, so acquiring cannot fail; if it did, sending unthrottled
        // is still correct.
        let permit = self.throttle.gate.acquire().await.ok();
        let answer = self.inner.execute(request).await;
        let throttled = answer
            .as_ref()
            .is_ok_and(|r| matches!(r.status().as_u16(), 503 | 429));
        if self.throttle.record(throttled)
            && let Some(permit) = permit
        {
            permit.forget();
        }
        answer
    }
}

// `HttpService` is declared with `async_trait`; this is the signature it expands to.
impl HttpService for ThrottledService {
    fn call<'life0, 'async_trait>(
        &'life0 self,
        request: HttpRequest,
    ) -> Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.send(request))
    }
}

/// What the snapshot keeps of one object.
#[derive(Debug, Clone, Copy)]
struct ObjMeta {
    size: u64,
    modified: SystemTime,
    /// The ETag when it is a plain MD5 (single-part uploads without KMS encryption).
    md5: Option<[u8; 16]>,
}

/// Every key under the layout prefix, relative to it.
#[derive(Debug, Default)]
struct Snapshot {
    objects: BTreeMap<String, ObjMeta>,
    /// MD5 of `<alg>:<hex>` for every `<alg>/<hex>` pair found in a key path, to the digest text:
    /// a link file's content is one of these digests, so its ETag names it without a GET.
    link_by_etag: BTreeMap<[u8; 16], String>,
    /// Prefixes (relative, with a trailing `/`) whose listing failed, with the error.
    unreadable: Vec<(String, String)>,
    /// Directory-marker keys that were dropped.
    markers: Vec<String>,
}

/// A flat listing: keys relative to the layout with their metadata, or why it failed.
type Listed = Result<Vec<(String, ObjMeta)>, String>;

/// distribution's layout in a bucket.
#[derive(Debug)]
pub struct ObjectBackend {
    store: Arc<dyn ObjectStore>,
    /// Key prefix of `docker/registry/v2`, without a trailing `/`.
    base: String,
    location: String,
    runtime: tokio::runtime::Runtime,
    /// Where the run that opened the store logs: requests are driven from the callers' threads
    /// (rayon workers), which log nowhere of their own.
    logs: tracing::Dispatch,
    snapshot: RwLock<Option<Snapshot>>,
    counts: Counters,
    throttle: Arc<Throttle>,
}

#[derive(Debug, Default)]
struct Counters {
    listings: AtomicU64,
    gets: AtomicU64,
    heads: AtomicU64,
    etag_hits: AtomicU64,
    deleted: AtomicU64,
    delete_errors: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn store_error(op: &'static str, path: &str, err: impl std::fmt::Display) -> StorageError {
    StorageError::Remote {
        op,
        path: path.to_owned(),
        message: err.to_string(),
    }
}

/// An error with its causes: object_store's own text hides the HTTP client's reason.
fn with_causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(&format!(": {more}"));
        }
        source = cause.source();
    }
    text
}

/// A plain-MD5 ETag (`"<32 hex>"`), as S3 gives for single-part uploads.
fn etag_md5(etag: Option<&str>) -> Option<[u8; 16]> {
    let text = etag?.trim_matches('"');
    let mut out = [0u8; 16];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// The `<alg>:<hex>` digest text of a key path ending in `…/<alg>/<hex>/<file>`, if it looks like
/// one (the content of every link file in the layout is such a digest).
fn digest_in_path(relative: &str) -> Option<String> {
    let mut parts = relative.rsplit('/');
    let _file = parts.next()?;
    let hex = parts.next()?;
    let alg = parts.next()?;
    let plausible = hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && !alg.is_empty();
    plausible.then(|| format!("{alg}:{hex}"))
}

impl Snapshot {
    fn insert(&mut self, relative: String, meta: ObjMeta) {
        if let Some(text) = digest_in_path(&relative) {
            let md5: [u8; 16] = Md5::digest(text.as_bytes()).into();
            self.link_by_etag.entry(md5).or_insert(text);
        }
        self.objects.insert(relative, meta);
    }

    /// Drops zero-byte keys that are also a folder of other keys: directory markers.
    fn drop_markers(&mut self) {
        let markers: Vec<String> = self
            .objects
            .iter()
            .filter(|(key, meta)| meta.size == 0 && self.has_children(key))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &markers {
            self.objects.remove(key);
        }
        self.markers.extend(markers);
    }

    fn has_children(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.objects
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    /// Keys equal to `path` or below it.
    fn keys_under(&self, path: &str) -> Vec<String> {
        let prefix = format!("{path}/");
        let mut keys: Vec<String> = self
            .objects
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        if self.objects.contains_key(path) {
            keys.push(path.to_owned());
        }
        keys
    }

    fn unreadable_covering(&self, dir: &str) -> Option<&(String, String)> {
        let with_slash = format!("{dir}/");
        self.unreadable
            .iter()
            .find(|(prefix, _)| with_slash.starts_with(prefix.as_str()) || prefix.starts_with(&with_slash))
    }

    /// The immediate children of `dir`, skipping over each child folder's keys instead of
    /// visiting them.
    fn children(&self, dir: &str) -> Vec<Entry> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut entries = Vec::new();
        let mut from = prefix.clone();
        while let Some((key, _)) = self
            .objects
            .range::<str, _>((Bound::Included(from.as_str()), Bound::Unbounded))
            .next()
        {
            let Some(rest) = key.strip_prefix(&prefix) else {
                break;
            };
            match rest.split_once('/') {
                Some((name, _)) => {
                    entries.push(Entry {
                        name: name.to_owned(),
                        kind: EntryKind::Dir,
                    });
                    // `0` follows `/`: the first key after everything below `name/`.
                    from = format!("{prefix}{name}0");
                }
                None => {
                    entries.push(Entry {
                        name: rest.to_owned(),
                        kind: EntryKind::File,
                    });
                    from = format!("{key}\0");
                }
            }
        }
        entries
    }

    /// The newest modification below `dir` (an object store has no folder times).
    fn newest_under(&self, dir: &str) -> Option<FileMeta> {
        let prefix = format!("{dir}/");
        self.objects
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, m)| m.modified)
            .max()
            .map(|modified| FileMeta { size: 0, modified })
    }
}

impl ObjectBackend {
    /// `root` is the key prefix of the registry's `rootdirectory` (may be empty); `throttle` is
    /// the one whose [`Throttle::connector`] the store was built with.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        root: &str,
        location: String,
        throttle: Arc<Throttle>,
    ) -> Result<Self, StorageError> {
        let runtime = crate::logging::inherit(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("regsweep-store")
                .enable_all(),
        )
        .build()
        .map_err(|err| store_error("start", &location, err))?;
        let root = root.trim_matches('/');
        let base = if root.is_empty() {
            LAYOUT_PREFIX.to_owned()
        } else {
            format!("{root}/{LAYOUT_PREFIX}")
        };
        Ok(Self {
            store,
            base,
            location,
            runtime,
            logs: tracing::dispatcher::get_default(tracing::Dispatch::clone),
            snapshot: RwLock::new(None),
            counts: Counters::default(),
            throttle,
        })
    }

    fn key(&self, relative: &str) -> KeyPath {
        KeyPath::from(format!("{}/{relative}", self.base))
    }

    fn relative<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.base.as_str())?.strip_prefix('/')
    }

    /// Runs a future to completion from synchronous code (the rayon workers of a collection).
    fn block_on<F>(&self, future: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        use tracing::instrument::WithSubscriber as _;
        let future = future.with_subscriber(self.logs.clone());
        // Called from inside an async context (a test's runtime), blocking its thread would
        // panic: run on a scoped thread instead.
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| s.spawn(|| self.runtime.block_on(future)).join())
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        } else {
            self.runtime.block_on(future)
        }
    }

    fn with_snapshot<T>(&self, read: impl FnOnce(&Snapshot) -> T) -> Result<T, StorageError> {
        {
            let guard = self.snapshot.read().unwrap_or_else(|p| p.into_inner());
            if let Some(snapshot) = guard.as_ref() {
                return Ok(read(snapshot));
            }
        }
        let mut guard = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(self.load(&["blobs", "repositories"])?);
        }
        Ok(read(guard.as_ref().expect("just loaded")))
    }

    /// Lists the given top-level folders of the layout: one delimiter listing per level down to
    /// the split points, then flat listings in parallel.
    fn load(&self, tops: &[&str]) -> Result<Snapshot, StorageError> {
        self.block_on(async {
            let mut snapshot = Snapshot::default();
            let mut flat = Vec::new();
            for top in tops {
                // `blobs/<alg>/<xx>/` and `repositories/<name>/` are the split points.
                let depth = if *top == "blobs" { 2 } else { 1 };
                let mut level = vec![top.to_string()];
                for _ in 0..depth {
                    let mut next = Vec::new();
                    for dir in level {
                        let listed = self.list_level(&dir, &mut snapshot).await?;
                        next.extend(listed);
                    }
                    level = next;
                }
                flat.extend(level);
            }
            let results: Vec<(String, Listed)> = futures::stream::iter(flat)
                .map(|dir| async move {
                    let listed = self.list_flat(&dir).await;
                    (dir, listed)
                })
                .buffer_unordered(LIST_CONCURRENCY)
                .collect()
                .await;
            for (dir, listed) in results {
                match listed {
                    Ok(objects) => {
                        for (key, meta) in objects {
                            snapshot.insert(key, meta);
                        }
                    }
                    // A page object_store cannot parse (a key with an empty segment): go folder
                    // by folder below it, so that only the folder holding the key is lost.
                    Err(_) => Box::pin(self.walk_delimited(dir, &mut snapshot)).await,
                }
            }
            snapshot.drop_markers();
            Ok(snapshot)
        })
    }

    /// One delimiter listing: files go into the snapshot, sub-folders are returned. A missing
    /// folder is empty, not an error (an empty registry has no `repositories/`).
    async fn list_level(&self, dir: &str, snapshot: &mut Snapshot) -> Result<Vec<String>, StorageError> {
        bump(&self.counts.listings, 1);
        let listed = self
            .store
            .list_with_delimiter(Some(&self.key(dir)))
            .await
            .map_err(|err| store_error("list", dir, with_causes(&err)))?;
        for object in listed.objects {
            if let Some(relative) = self.relative(object.location.as_ref()) {
                snapshot.insert(relative.to_owned(), meta_of(&object));
            }
        }
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| self.relative(p.as_ref()).map(str::to_owned))
            .collect())
    }

    async fn list_flat(&self, dir: &str) -> Listed {
        bump(&self.counts.listings, 1);
        let objects: Vec<_> = self
            .store
            .list(Some(&self.key(dir)))
            .try_collect()
            .await
            .map_err(|err| with_causes(&err))?;
        Ok(objects
            .iter()
            .filter_map(|o| {
                self.relative(o.location.as_ref())
                    .map(|r| (r.to_owned(), meta_of(o)))
            })
            .collect())
    }

    async fn walk_delimited(&self, dir: String, snapshot: &mut Snapshot) {
        match self.list_level(&dir, snapshot).await {
            Ok(children) => {
                for child in children {
                    Box::pin(self.walk_delimited(child, snapshot)).await;
                }
            }
            Err(err) => snapshot.unreadable.push((format!("{dir}/"), err.to_string())),
        }
    }

    /// Deletes the given keys in batches (`DeleteObjects`, 1,000 keys each), returning the keys
    /// that could not be deleted with the reason.
    fn delete_keys(&self, keys: Vec<String>) -> BTreeMap<String, String> {
        if keys.is_empty() {
            return BTreeMap::new();
        }
        let paths: Vec<KeyPath> = keys.iter().map(|k| self.key(k)).collect();
        let stream = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let results: Vec<_> = self.block_on(self.store.delete_stream(stream).collect::<Vec<_>>());
        let mut failed = BTreeMap::new();
        // One result per input key, in input order.
        for (i, key) in keys.iter().enumerate() {
            match results.get(i) {
                Some(Ok(_)) => bump(&self.counts.deleted, 1),
                Some(Err(object_store::Error::NotFound { .. })) => {}
                Some(Err(err)) => {
                    failed.insert(key.clone(), with_causes(err));
                }
                None => {
                    failed.insert(key.clone(), "no answer for this key".to_owned());
                }
            }
        }
        bump(&self.counts.delete_errors, failed.len() as u64);
        failed
    }
}

fn meta_of(object: &object_store::ObjectMeta) -> ObjMeta {
    ObjMeta {
        size: object.size,
        modified: SystemTime::from(object.last_modified),
        md5: etag_md5(object.e_tag.as_deref()),
    }
}

impl Backend for ObjectBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn list(&self, path: &str) -> Result<Option<Vec<Entry>>, StorageError> {
        self.with_snapshot(|s| {
            if let Some((prefix, err)) = s.unreadable_covering(path) {
                return Err(store_error("list", prefix, err));
            }
            let entries = s.children(path);
            Ok((!entries.is_empty()).then_some(entries))
        })?
    }

    fn stat(&self, path: &str) -> Result<Option<FileMeta>, StorageError> {
        let known = self.with_snapshot(|s| match s.objects.get(path) {
            Some(meta) => Some(Some(FileMeta {
                size: meta.size,
                modified: meta.modified,
            })),
            None => s.newest_under(path).map(Some),
        })?;
        if let Some(found) = known {
            return Ok(found);
        }
        // Not in the snapshot: written since, or absent. Rare (a needed blob missing from the
        // listing), so one HEAD settles it.
        bump(&self.counts.heads, 1);
        match self.block_on(self.store.head(&self.key(path))) {
            Ok(meta) => Ok(Some(FileMeta {
                size: meta.size,
                modified: SystemTime::from(meta.last_modified),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(store_error("stat", path, with_causes(&err))),
        }
    }

    fn read(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let (meta, by_etag) = self.with_snapshot(|s| {
            let meta = s.objects.get(path).copied();
            let by_etag = meta
                .and_then(|m| m.md5)
                .and_then(|md5| s.link_by_etag.get(&md5).cloned());
            (meta, by_etag)
        })?;
        if let Some(text) = by_etag {
            bump(&self.counts.etag_hits, 1);
            return Ok(Some(text.into_bytes()));
        }
        if let Some(meta) = meta
            && meta.size > limit
        {
            return Err(StorageError::TooLarge {
                path: path.to_owned(),
                size: meta.size,
                limit,
            });
        }
        bump(&self.counts.gets, 1);
        let fetched = self.block_on(async {
            let result = self.store.get(&self.key(path)).await?;
            result.bytes().await
        });
        match fetched {
            Ok(bytes) if bytes.len() as u64 > limit => Err(StorageError::TooLarge {
                path: path.to_owned(),
                size: bytes.len() as u64,
                limit,
            }),
            Ok(bytes) => Ok(Some(bytes.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(store_error("read", path, with_causes(&err))),
        }
    }

    fn delete(&self, path: &str) -> Result<bool, StorageError> {
        self.delete_many(&[path.to_owned()]).pop().unwrap_or(Ok(false))
    }

    fn delete_many(&self, paths: &[String]) -> Vec<Result<bool, StorageError>> {
        let per_path = match self.with_snapshot(|s| paths.iter().map(|p| s.keys_under(p)).collect::<Vec<_>>())
        {
            Ok(keys) => keys,
            Err(err) => {
                return paths
                    .iter()
                    .map(|p| Err(store_error("delete", p, &err)))
                    .collect();
            }
        };
        let failed = self.delete_keys(per_path.iter().flatten().cloned().collect());
        let mut guard = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        per_path
            .iter()
            .map(|keys| {
                if let Some(snapshot) = guard.as_mut() {
                    for key in keys.iter().filter(|k| !failed.contains_key(*k)) {
                        snapshot.objects.remove(key);
                    }
                }
                match keys.iter().find_map(|k| failed.get(k).map(|e| (k, e))) {
                    Some((key, err)) => Err(store_error("delete", key, err)),
                    None => Ok(!keys.is_empty()),
                }
            })
            .collect()
    }

    fn remove_empty_dir(&self, _path: &str) -> Result<bool, StorageError> {
        // Folders exist only as key prefixes: an empty one is already gone.
        Ok(false)
    }

    fn write(&self, path: &str, content: &[u8]) -> Result<(), StorageError> {
        let payload = object_store::PutPayload::from(content.to_vec());
        self.block_on(self.store.put(&self.key(path), payload))
            .map_err(|e| store_error("write", path, with_causes(&e)))?;
        // The listing taken earlier does not have the new key; the next read lists again.
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }

    fn refresh(&self) -> Result<(), StorageError> {
        let fresh = self.load(&["repositories"])?;
        let mut guard = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        let Some(snapshot) = guard.as_mut() else {
            *guard = Some(fresh);
            return Ok(());
        };
        let stale: Vec<String> = snapshot
            .objects
            .keys()
            .filter(|k| k.starts_with("repositories/"))
            .cloned()
            .collect();
        for key in stale {
            snapshot.objects.remove(&key);
        }
        snapshot
            .unreadable
            .retain(|(p, _)| !p.starts_with("repositories/"));
        snapshot.unreadable.extend(fresh.unreadable);
        for (key, meta) in fresh.objects {
            snapshot.insert(key, meta);
        }
        Ok(())
    }

    fn anomalies(&self) -> Vec<String> {
        self.with_snapshot(|s| {
            s.markers
                .iter()
                .map(|m| {
                    format!(
                        "`{m}/` is a directory-marker object (zero bytes, name ending in `/`, made by consoles and \
                         some tools); left alone"
                    )
                })
                .collect()
        })
        .unwrap_or_default()
    }

    fn has_folders(&self) -> bool {
        false
    }

    fn parallelism(&self) -> Option<usize> {
        Some(OBJECT_STORE_THREADS)
    }

    fn request_counts(&self) -> Option<RequestCounts> {
        let c = &self.counts;
        let (throttled, lowest_concurrency) = self.throttle.summary();
        Some(RequestCounts {
            throttled,
            lowest_concurrency,
            listings: c.listings.load(Ordering::Relaxed),
            gets: c.gets.load(Ordering::Relaxed),
            heads: c.heads.load(Ordering::Relaxed),
            links_from_etag: c.etag_hits.load(Ordering::Relaxed),
            keys_deleted: c.deleted.load(Ordering::Relaxed),
            delete_errors: c.delete_errors.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: u64) -> ObjMeta {
        ObjMeta {
            size,
            modified: SystemTime::UNIX_EPOCH,
            md5: None,
        }
    }

    fn snapshot(keys: &[(&str, u64)]) -> Snapshot {
        let mut s = Snapshot::default();
        for (k, size) in keys {
            s.insert((*k).to_owned(), meta(*size));
        }
        s.drop_markers();
        s
    }

    #[test]
    fn children_skip_over_folders() {
        let s = snapshot(&[
            ("repositories/a/_layers/x", 1),
            ("repositories/a/_manifests/y", 1),
            ("repositories/a-b/_layers/z", 1),
            ("repositories/file", 1),
            ("repositoriesX/q", 1),
        ]);
        let mut names: Vec<(String, EntryKind)> = s
            .children("repositories")
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect();
        // `a-b/…` sorts before `a/…` as keys; callers sort names themselves.
        names.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            names,
            vec![
                ("a".to_owned(), EntryKind::Dir),
                ("a-b".to_owned(), EntryKind::Dir),
                ("file".to_owned(), EntryKind::File)
            ]
        );
        assert!(s.children("nothing").is_empty());
        assert_eq!(s.keys_under("repositories/a").len(), 2);
    }

    #[test]
    fn directory_markers_are_dropped_and_reported() {
        let s = snapshot(&[
            ("blobs/sha256/04", 0),
            ("blobs/sha256/04/0400/data", 5),
            ("blobs/lone", 0),
        ]);
        assert_eq!(s.markers, vec!["blobs/sha256/04".to_owned()]);
        assert!(!s.objects.contains_key("blobs/sha256/04"));
        // A zero-byte key without children is an ordinary (empty) file.
        assert!(s.objects.contains_key("blobs/lone"));
    }

    #[test]
    fn throttling_halves_the_limit_once_per_burst_and_grows_it_back() {
        let throttle = Throttle::new();
        let limit = |t: &Throttle| t.state().limit;
        let mut forgotten = usize::from(throttle.record(true));
        // A second throttled answer of the same burst does not halve again.
        forgotten += usize::from(throttle.record(true));
        assert_eq!(limit(&throttle), MAX_IN_FLIGHT / 2);
        assert_eq!(throttle.summary(), (2, MAX_IN_FLIGHT / 2));
        // One limit's worth of successes adds one request in flight.
        for _ in 0..MAX_IN_FLIGHT {
            forgotten += usize::from(throttle.record(false));
        }
        assert_eq!(limit(&throttle), MAX_IN_FLIGHT / 2 + 1);
        // Permits in circulation (none is held here) match the limit once the debt is paid:
        // the cut's permits were forgotten as they came back, the increase added one.
        assert_eq!(throttle.state().debt, 0);
        assert_eq!(forgotten, MAX_IN_FLIGHT / 2);
        assert_eq!(throttle.gate.available_permits() - forgotten, limit(&throttle));
    }

    #[test]
    fn link_content_from_etag() {
        let hex = "a".repeat(64);
        let s = snapshot(&[(
            &format!("repositories/x/_manifests/revisions/sha256/{hex}/link"),
            71,
        )]);
        let md5: [u8; 16] = Md5::digest(format!("sha256:{hex}").as_bytes()).into();
        assert_eq!(s.link_by_etag.get(&md5), Some(&format!("sha256:{hex}")));
        assert_eq!(etag_md5(Some(&format!("\"{}\"", hex::encode(md5)))), Some(md5));
        // Multipart ETags are not an MD5 of the content.
        assert_eq!(etag_md5(Some("\"0123456789abcdef0123456789abcdef-2\"")), None);
    }
}
