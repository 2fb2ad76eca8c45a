//! Object stores (S3, Azure Blob, GCS) through the `object_store` crate, behind the same
//! [`Backend`] as the filesystem.
//!
//! Walking an object store folder by folder costs one request per folder, which is what makes
//! distribution's collector take days on S3. This backend lists the keyspace once, flat and in
//! parallel (one listing per `blobs/<alg>/<xx>/` shard and one per top-level repository folder),
//! into an in-memory snapshot; folder listings and `stat`s are then answered from the snapshot.
//! Contents are fetched only where needed, and link files not even then when the listing's ETag
//! is the MD5 of the digest in their own key path or of a manifest's (see [`Snapshot::link_content`]).
//! The snapshot is kept compact (see the `snapshot` module): a million blobs fit in a few hundred
//! megabytes.
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

mod snapshot;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use futures::{StreamExt as _, TryStreamExt as _};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService,
    ReqwestConnector,
};
use object_store::path::Path as KeyPath;
use object_store::{ObjectStore, ObjectStoreExt as _};

use self::snapshot::{Object, Snapshot, etag_md5};
use super::{Backend, Entry, FileMeta, LAYOUT_PREFIX, RequestCounts, StorageError};

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

/// A flat listing: the objects below one prefix, or why it failed.
type Listed = Result<Vec<Object>, String>;

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
            logs: crate::logging::current(),
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
            // Each listing goes into the snapshot as soon as it completes, so that the listings
            // are never all held at once next to it.
            let mut listings = futures::stream::iter(flat)
                .map(|dir| async move {
                    let listed = self.list_flat(&dir).await;
                    (dir, listed)
                })
                .buffer_unordered(LIST_CONCURRENCY);
            let mut failed = Vec::new();
            while let Some((dir, listed)) = listings.next().await {
                match listed {
                    Ok(objects) => objects.into_iter().for_each(|o| snapshot.insert(o)),
                    Err(_) => failed.push(dir),
                }
            }
            // A page object_store cannot parse (a key with an empty segment): go folder by folder
            // below it, so that only the folder holding the key is lost.
            for dir in failed {
                Box::pin(self.walk_delimited(dir, &mut snapshot)).await;
            }
            snapshot.seal();
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
        for object in &listed.objects {
            if let Some(object) = self.object_of(object) {
                snapshot.insert(object);
            }
        }
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| self.relative(p.as_ref()).map(str::to_owned))
            .collect())
    }

    /// One flat listing, kept compact as its pages arrive.
    async fn list_flat(&self, dir: &str) -> Listed {
        bump(&self.counts.listings, 1);
        self.store
            .list(Some(&self.key(dir)))
            .try_fold(Vec::new(), |mut objects, meta| {
                objects.extend(self.object_of(&meta));
                async move { Ok(objects) }
            })
            .await
            .map_err(|err| with_causes(&err))
    }

    fn object_of(&self, meta: &object_store::ObjectMeta) -> Option<Object> {
        let relative = self.relative(meta.location.as_ref())?;
        Some(Object::new(
            relative,
            meta.size,
            SystemTime::from(meta.last_modified),
            etag_md5(meta.e_tag.as_deref()),
        ))
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
        let known = self.with_snapshot(|s| match s.get(path) {
            Some(object) => Some(Some(object.meta())),
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
        let (size, by_etag) = self.with_snapshot(|s| (s.get(path).map(|o| o.size), s.link_content(path)))?;
        if let Some(text) = by_etag {
            bump(&self.counts.etag_hits, 1);
            return Ok(Some(text.into_bytes()));
        }
        if let Some(size) = size
            && size > limit
        {
            return Err(StorageError::TooLarge {
                path: path.to_owned(),
                size,
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
                    snapshot.mark_deleted(keys.iter().filter(|k| !failed.contains_key(*k)));
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
        match guard.as_mut() {
            Some(snapshot) => snapshot.replace_repositories(fresh),
            None => *guard = Some(fresh),
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
}
