//! The repository graph: tags → manifests → index children → blobs, plus referrers (manifests
//! whose `subject` is another manifest, what the referrers API lists, and cosign-style
//! `sha256-<hex>[.sig|.att|.sbom]` tags). Planning and safety checks reason over this graph, never
//! over tag names alone: deleting a digest deletes every tag on it, an index needs its children,
//! and referrers live and die with their subject.
//!
//! [`scan`] builds a graph from the registry API, [`storage::read`] from the registry's storage;
//! both assemble it with the same functions here. A graph with `errors` is incomplete; nothing
//! may be deleted in that repository on its basis.

pub mod storage;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use futures::stream::{self, StreamExt};

use crate::digest::Digest;
use crate::manifest::{Descriptor, ManifestKind, Platform, media_type};
use crate::progress::Progress;
use crate::reference::{Repository, Tag};
use crate::registry::delete::{PlaceholderInfo, placeholder_info};
use crate::registry::{Client, MAX_CONFIG_BYTES, RegistryError};

/// One manifest of the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub media_type: String,
    pub kind: ManifestKind,
    /// Size of the manifest bytes.
    pub size: u64,
    /// Config and layers with their sizes (empty for an index).
    pub blobs: Vec<(Digest, u64)>,
    /// Index children.
    pub children: Vec<Digest>,
    /// The platform of each index child, in the order of `children` (`None` for children
    /// without one, such as attestations).
    pub platforms: Vec<Option<Platform>>,
    /// OCI `subject`: this manifest is a referrer of that one.
    pub subject: Option<Digest>,
    /// OCI `artifactType`, for artifacts (signatures, SBOMs).
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
    /// Image config `created` (for an index: the newest child's), when configs were read.
    pub created: Option<jiff::Timestamp>,
    /// Image config labels (for an index: the first image child's), when configs were read.
    pub labels: BTreeMap<String, String>,
}

/// A repository as seen through the API.
#[derive(Debug, Clone, Default)]
pub struct RepoGraph {
    pub repository: String,
    /// Every tag with the digest it resolved to.
    pub tags: BTreeMap<String, Digest>,
    /// Every manifest reachable from a tag, through children and referrers.
    pub nodes: HashMap<Digest, Node>,
    /// Subject → manifests that refer to it (from `subject` fields, the referrers API, the
    /// fallback index and digest tags).
    pub referrers: HashMap<Digest, BTreeSet<Digest>>,
    /// Tags that point at a placeholder regsweep pushed to untag them, left behind by an
    /// interrupted run (also the probe's throw-away tags). They are not the user's content:
    /// policies never see them, and `apply` removes them, which completes the untag.
    pub leftovers: BTreeMap<String, Leftover>,
    /// When each tag was last pushed (its `current/link` written): known only when the graph
    /// was read from storage.
    pub pushed: BTreeMap<String, jiff::Timestamp>,
    /// Whether the registry answered the OCI referrers API; `Some(false)` means referrers pushed
    /// without a tag cannot be seen. `None` when it was not asked (no manifests).
    pub referrers_api: Option<bool>,
    /// Reads that failed. A graph with errors must not be used to delete anything.
    pub errors: Vec<String>,
    /// The tags among them whose manifest could not be read, with the reason (each is also in
    /// `errors`): views that list tags show them in their row.
    pub unreadable_tags: BTreeMap<String, String>,
    /// Manifests named by digest (index children, referrers) that could not be read, with the
    /// reason (each is also in `errors`).
    pub unreadable_manifests: BTreeMap<Digest, String>,
}

/// How `errors` words a tag whose manifest could not be read.
pub(crate) fn tag_error(tag: &str, reason: &str) -> String {
    format!("tag `{tag}`: {reason}")
}

/// A tag left pointing at regsweep's placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub placeholder: Digest,
    pub info: PlaceholderInfo,
}

/// The subject digest named by a referrer tag (`sha256-<hex>` or `sha512-<hex>`, optionally
/// followed by a suffix such as `.sig`): see [`Digest::from_referrer_tag`].
pub fn referrer_tag_subject(tag: &str) -> Option<Digest> {
    Digest::from_referrer_tag(tag).map(|(subject, _)| subject)
}

impl RepoGraph {
    /// Records that the tag's manifest could not be read.
    pub(crate) fn tag_unreadable(&mut self, tag: String, reason: String) {
        self.errors.push(tag_error(&tag, &reason));
        self.unreadable_tags.insert(tag, reason);
    }

    /// Records that the manifest `digest` could not be read.
    pub(crate) fn manifest_unreadable(&mut self, digest: Digest, reason: String) {
        self.errors.push(format!("manifest {digest}: {reason}"));
        self.unreadable_manifests.insert(digest, reason);
    }

    /// Tags that are not referrer tags: the ones a retention policy decides about.
    pub fn policy_tags(&self) -> impl Iterator<Item = (&String, &Digest)> {
        self.tags.iter().filter(|(t, d)| self.tag_subject(t, d).is_none())
    }

    /// The subject a tag belongs to, if it is a referrer's tag: named after its subject
    /// (`sha256-<hex>.sig`, the fallback index), or pointing at a manifest with a `subject`
    /// (what oras and others push under ordinary tags). Such tags live and die with their
    /// subject instead of being decided by a policy.
    pub fn tag_subject(&self, tag: &str, digest: &Digest) -> Option<Digest> {
        referrer_tag_subject(tag).or_else(|| self.nodes.get(digest)?.subject.clone())
    }

    /// Everything `roots` need: index children recursively and referrers (recursively, with
    /// their own children and referrers).
    pub fn closure<'a>(&self, roots: impl IntoIterator<Item = &'a Digest>) -> HashSet<Digest> {
        let mut seen: HashSet<Digest> = HashSet::new();
        let mut stack: Vec<Digest> = roots.into_iter().cloned().collect();
        while let Some(digest) = stack.pop() {
            if !seen.insert(digest.clone()) {
                continue;
            }
            if let Some(node) = self.nodes.get(&digest) {
                stack.extend(node.children.iter().filter(|c| !seen.contains(*c)).cloned());
            }
            if let Some(referrers) = self.referrers.get(&digest) {
                stack.extend(referrers.iter().filter(|r| !seen.contains(*r)).cloned());
            }
        }
        seen
    }

    /// Every tagged digest with its tags (sorted): the reverse of `tags`, for callers that ask
    /// about many digests (one [`RepoGraph::tags_of`] per digest would scan every tag each time).
    pub fn tags_by_digest(&self) -> HashMap<&Digest, Vec<String>> {
        let mut index: HashMap<&Digest, Vec<String>> = HashMap::new();
        for (tag, digest) in &self.tags {
            index.entry(digest).or_default().push(tag.clone());
        }
        index
    }

    /// Every index child with the indexes that list it (sorted): the reverse of `children`.
    pub fn parents_by_child(&self) -> HashMap<&Digest, Vec<&Digest>> {
        let mut index: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
        for (parent, node) in &self.nodes {
            for child in &node.children {
                index.entry(child).or_default().push(parent);
            }
        }
        for parents in index.values_mut() {
            parents.sort();
            parents.dedup();
        }
        index
    }

    /// Tags pointing at `digest`, sorted.
    pub fn tags_of(&self, digest: &Digest) -> Vec<String> {
        self.tags
            .iter()
            .filter(|(_, d)| *d == digest)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Blob digests (manifests included) with sizes that the given manifests reference.
    pub fn blobs_of<'a>(&'a self, manifests: impl IntoIterator<Item = &'a Digest>) -> HashMap<Digest, u64> {
        let mut out = HashMap::new();
        for digest in manifests {
            if let Some(node) = self.nodes.get(digest) {
                out.insert(digest.clone(), node.size);
                out.extend(node.blobs.iter().cloned());
            }
        }
        out
    }

    fn add_referrer(&mut self, subject: Digest, referrer: Digest) {
        self.referrers.entry(subject).or_default().insert(referrer);
    }
}

/// What to read besides manifests.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    /// Read image configs for `created` and labels (only when a time or label condition needs
    /// them: it costs a request per distinct config).
    pub with_configs: bool,
    pub concurrency: usize,
    /// Do not ask the referrers API about every manifest: for views of tags alone (`tags
    /// --long`), where referrers pushed without a tag change nothing and the API costs a request
    /// per manifest on registries that have it. Plans, `apply`, `inspect` and `du` ask.
    pub skip_referrers_api: bool,
}

/// Reads a repository's graph from the registry. Failures are recorded in `errors` rather than
/// returned, so that one broken repository does not stop a registry-wide plan.
pub async fn scan(
    client: &Client,
    repository: &Repository,
    options: ScanOptions,
    progress: &dyn Progress,
) -> RepoGraph {
    scan_assuming(client, repository, options, &HashMap::new(), progress).await
}

/// [`scan`] for a repository named by a string, such as a catalog entry: a name that is not a
/// repository name (`a/../b`, `x?y`) is recorded as the graph's error, never requested.
pub async fn scan_named(
    client: &Client,
    name: &str,
    options: ScanOptions,
    progress: &dyn Progress,
) -> RepoGraph {
    match Repository::parse(name) {
        Ok(repository) => scan(client, &repository, options, progress).await,
        Err(err) => RepoGraph {
            repository: name.to_owned(),
            errors: vec![format!(
                "not read: the catalog lists an invalid repository name: {err}"
            )],
            ..RepoGraph::default()
        },
    }
}

/// Like [`scan`], but tags listed in `assumed` are taken to point at the given digest without
/// being read (and their manifests are not read either): `apply` re-reads only what must
/// survive, not what it is about to delete. An assumed tag that no longer exists is left out.
pub async fn scan_assuming(
    client: &Client,
    repository: &Repository,
    options: ScanOptions,
    assumed: &HashMap<String, Digest>,
    progress: &dyn Progress,
) -> RepoGraph {
    match client.tags(repository).await {
        Ok(tags) => scan_listed_assuming(client, repository, tags, options, assumed, progress).await,
        Err(err) => RepoGraph {
            repository: repository.to_string(),
            errors: vec![err.to_string()],
            ..RepoGraph::default()
        },
    }
}

/// [`scan`] of a repository whose tags the caller has listed (and can report a failure to list
/// as it needs).
pub async fn scan_listed(
    client: &Client,
    repository: &Repository,
    tags: Vec<Tag>,
    options: ScanOptions,
    progress: &dyn Progress,
) -> RepoGraph {
    scan_listed_assuming(client, repository, tags, options, &HashMap::new(), progress).await
}

async fn scan_listed_assuming(
    client: &Client,
    repository: &Repository,
    tags: Vec<Tag>,
    options: ScanOptions,
    assumed: &HashMap<String, Digest>,
    progress: &dyn Progress,
) -> RepoGraph {
    let mut graph = RepoGraph {
        repository: repository.to_string(),
        ..RepoGraph::default()
    };
    let concurrency = options.concurrency.max(1);
    let (tags, assumed_tags): (Vec<Tag>, Vec<Tag>) =
        tags.into_iter().partition(|t| !assumed.contains_key(t.as_str()));
    for tag in assumed_tags {
        let digest = assumed[tag.as_str()].clone();
        graph.tags.insert(tag.into(), digest);
    }
    progress.add_total(tags.len() as u64);

    // Tags: one GET each, which gives the verified digest and the body in one request.
    let fetched: Vec<(Tag, Result<crate::registry::FetchedManifest, RegistryError>)> = stream::iter(tags)
        .map(|tag| async move {
            let result = client.manifest(repository, &tag).await;
            progress.advance(1);
            (tag, result)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut pending: Vec<Digest> = Vec::new();
    for (tag, result) in fetched {
        match result {
            Ok(m) => {
                graph.tags.insert(tag.into(), m.digest.clone());
                pending.extend(insert_node(&mut graph, m));
            }
            // A tag deleted between listing and reading is simply gone.
            Err(err) if err.is_not_found() => {}
            Err(err) => graph.tag_unreadable(tag.into(), err.to_string()),
        }
    }
    set_aside_leftovers(&mut graph);
    // Children and referrers found so far, until nothing new turns up.
    fetch_missing(client, repository, &mut graph, pending, concurrency).await;
    add_tag_referrers(&mut graph);
    if !options.skip_referrers_api {
        add_api_referrers(client, repository, &mut graph, concurrency).await;
    }
    if options.with_configs {
        read_configs(client, repository, &mut graph, concurrency).await;
    }
    graph
}

/// Moves tags that point at regsweep's placeholders out of `tags` into `leftovers`.
pub(crate) fn set_aside_leftovers(graph: &mut RepoGraph) {
    let found: Vec<(String, Leftover)> = graph
        .tags
        .iter()
        .filter_map(|(tag, digest)| {
            let info = placeholder_info(&graph.nodes.get(digest)?.annotations)?;
            Some((
                tag.clone(),
                Leftover {
                    placeholder: digest.clone(),
                    info,
                },
            ))
        })
        .collect();
    for (tag, leftover) in found {
        graph.tags.remove(&tag);
        graph.leftovers.insert(tag, leftover);
    }
}

/// Referrers named by tags: a `sha256-<hex>[.suffix]` tag is a referrer of that digest, and the
/// manifests listed in a referrers fallback index (the bare `sha256-<hex>` tag) are referrers of
/// its subject too, not merely children of the index.
pub(crate) fn add_tag_referrers(graph: &mut RepoGraph) {
    let mut edges: Vec<(Digest, Digest)> = Vec::new();
    for (tag, digest) in &graph.tags {
        let Some((subject, suffix)) = Digest::from_referrer_tag(tag) else {
            continue;
        };
        edges.push((subject.clone(), digest.clone()));
        if let Some(node) = graph.nodes.get(digest)
            && suffix.is_empty()
            && node.kind == ManifestKind::Index
        {
            edges.extend(node.children.iter().map(|c| (subject.clone(), c.clone())));
        }
    }
    for (subject, referrer) in edges {
        graph.add_referrer(subject, referrer);
    }
}

/// Inserts a fetched manifest; returns the digests it references that still need fetching.
pub(crate) fn insert_node(graph: &mut RepoGraph, fetched: crate::registry::FetchedManifest) -> Vec<Digest> {
    if graph.nodes.contains_key(&fetched.digest) {
        return Vec::new();
    }
    let node = Node::of(fetched.media_type, fetched.body.len() as u64, &fetched.manifest);
    insert_parsed(graph, fetched.digest, node)
}

impl Node {
    /// What the graph keeps of a manifest (not its bytes).
    pub(crate) fn of(media_type: String, size: u64, m: &crate::manifest::Manifest) -> Self {
        Node {
            media_type,
            kind: m.kind,
            size,
            blobs: m.blobs().map(|b| (b.digest.clone(), b.size)).collect(),
            children: m.manifests.iter().map(|c| c.digest.clone()).collect(),
            platforms: m.manifests.iter().map(|c| c.platform.clone()).collect(),
            subject: m.subject.as_ref().map(|s| s.digest.clone()),
            artifact_type: m.artifact_type.clone(),
            annotations: m.annotations.clone(),
            created: None,
            labels: BTreeMap::new(),
        }
    }
}

/// Inserts a node (with its `subject` edge); returns its children the graph does not have yet.
pub(crate) fn insert_parsed(graph: &mut RepoGraph, digest: Digest, node: Node) -> Vec<Digest> {
    if graph.nodes.contains_key(&digest) {
        return Vec::new();
    }
    if let Some(subject) = &node.subject {
        graph.add_referrer(subject.clone(), digest.clone());
    }
    let missing = node
        .children
        .iter()
        .filter(|c| !graph.nodes.contains_key(*c))
        .cloned()
        .collect();
    graph.nodes.insert(digest, node);
    missing
}

/// Adds manifests named by digest (e.g. untagged ones given to `rm`) and what they reference.
pub async fn add_manifests(
    client: &Client,
    repository: &Repository,
    graph: &mut RepoGraph,
    digests: Vec<Digest>,
    concurrency: usize,
) {
    fetch_missing(client, repository, graph, digests, concurrency.max(1)).await;
}

/// Like [`add_manifests`], for manifests that may have been deleted meanwhile: those the
/// registry no longer has are returned instead of being recorded as read errors.
pub async fn add_manifests_if_present(
    client: &Client,
    repository: &Repository,
    graph: &mut RepoGraph,
    digests: Vec<Digest>,
    concurrency: usize,
) -> Vec<Digest> {
    let wanted: Vec<Digest> = digests
        .into_iter()
        .filter(|d| !graph.nodes.contains_key(d))
        .collect();
    let results: Vec<(Digest, Result<crate::registry::FetchedManifest, RegistryError>)> =
        stream::iter(wanted)
            .map(|digest| async move {
                let result = client.manifest(repository, &digest).await;
                (digest, result)
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    let mut gone = Vec::new();
    let mut pending = Vec::new();
    for (digest, result) in results {
        match result {
            Ok(m) => pending.extend(insert_node(graph, m)),
            Err(err) if err.is_not_found() => gone.push(digest),
            Err(err) => graph.manifest_unreadable(digest, err.to_string()),
        }
    }
    fetch_missing(client, repository, graph, pending, concurrency.max(1)).await;
    gone.sort();
    gone
}

async fn fetch_missing(
    client: &Client,
    repository: &Repository,
    graph: &mut RepoGraph,
    mut pending: Vec<Digest>,
    concurrency: usize,
) {
    while !pending.is_empty() {
        pending.sort();
        pending.dedup();
        pending.retain(|d| !graph.nodes.contains_key(d));
        let results: Vec<(Digest, Result<crate::registry::FetchedManifest, RegistryError>)> =
            stream::iter(std::mem::take(&mut pending))
                .map(|digest| async move {
                    let result = client.manifest(repository, &digest).await;
                    (digest, result)
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
        for (digest, result) in results {
            match result {
                Ok(m) => pending.extend(insert_node(graph, m)),
                // An index pointing at a missing child is already broken; record it so that
                // nothing in this repository is deleted on an incomplete picture.
                Err(err) => graph.manifest_unreadable(digest, err.to_string()),
            }
        }
    }
}

/// Asks the referrers API about every manifest, if the registry has that API (probed once with
/// the first manifest; distribution 2.x answers 404 and costs nothing more).
async fn add_api_referrers(
    client: &Client,
    repository: &Repository,
    graph: &mut RepoGraph,
    concurrency: usize,
) {
    let mut asked: HashSet<Digest> = HashSet::new();
    loop {
        let mut todo: Vec<Digest> = graph
            .nodes
            .keys()
            .filter(|d| !asked.contains(*d))
            .cloned()
            .collect();
        if todo.is_empty() {
            return;
        }
        todo.sort();
        if asked.is_empty() {
            let first = todo[0].clone();
            asked.insert(first.clone());
            match client.referrers(repository, &first).await {
                Ok(None) => {
                    graph.referrers_api = Some(false);
                    return;
                }
                Ok(Some(found)) => {
                    graph.referrers_api = Some(true);
                    let new = found.into_iter().map(|d| d.digest).collect();
                    record_api_referrers(client, repository, graph, first, new, concurrency).await;
                }
                Err(err) => {
                    graph.errors.push(format!("referrers of {first}: {err}"));
                    return;
                }
            }
            continue;
        }
        type Answer = Result<Option<Vec<Descriptor>>, RegistryError>;
        let results: Vec<(Digest, Answer)> = stream::iter(todo.clone())
            .map(|digest| async move {
                let result = client.referrers(repository, &digest).await;
                (digest, result)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        asked.extend(todo);
        for (digest, result) in results {
            match result {
                Ok(found) => {
                    let new = found.unwrap_or_default().into_iter().map(|d| d.digest).collect();
                    record_api_referrers(client, repository, graph, digest, new, concurrency).await;
                }
                Err(err) => graph.errors.push(format!("referrers of {digest}: {err}")),
            }
        }
    }
}

async fn record_api_referrers(
    client: &Client,
    repository: &Repository,
    graph: &mut RepoGraph,
    subject: Digest,
    referrers: Vec<Digest>,
    concurrency: usize,
) {
    for referrer in &referrers {
        graph.add_referrer(subject.clone(), referrer.clone());
    }
    fetch_missing(client, repository, graph, referrers, concurrency).await;
}

/// What an image config says that policies use: `created` and labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFacts {
    pub created: Option<jiff::Timestamp>,
    pub labels: BTreeMap<String, String>,
}

impl ConfigFacts {
    /// Reads a config blob. Artifacts (signatures, SBOMs) have configs that are not image
    /// configs; they simply have no time or labels.
    pub fn parse(body: &[u8]) -> Self {
        #[derive(serde::Deserialize, Default)]
        struct Config {
            created: Option<String>,
            #[serde(default)]
            config: Option<Inner>,
        }
        #[derive(serde::Deserialize, Default)]
        struct Inner {
            #[serde(rename = "Labels", default)]
            labels: Option<BTreeMap<String, String>>,
        }
        let parsed: Config = serde_json::from_slice(body).unwrap_or_default();
        Self {
            created: parsed.created.and_then(|c| c.parse::<jiff::Timestamp>().ok()),
            labels: parsed.config.and_then(|c| c.labels).unwrap_or_default(),
        }
    }
}

/// The image configs whose facts the graph's image manifests need, each once, sorted.
pub(crate) fn configs_to_read(graph: &RepoGraph) -> Vec<Digest> {
    let mut configs: Vec<Digest> = graph.nodes.values().filter_map(image_config).cloned().collect();
    configs.sort();
    configs.dedup();
    configs
}

/// The config of an image manifest, when it is an image config (only those carry `created`):
/// the first blob of an image node.
fn image_config(node: &Node) -> Option<&Digest> {
    let is_image =
        node.media_type == media_type::DOCKER_MANIFEST || node.media_type == media_type::OCI_MANIFEST;
    if node.kind != ManifestKind::Image || !is_image {
        return None;
    }
    node.blobs.first().map(|(config, _)| config)
}

/// Puts the facts read from configs on the image manifests, and on each index the newest
/// child's time and the first labelled child's labels.
pub(crate) fn assign_config_facts(graph: &mut RepoGraph, read: &HashMap<Digest, ConfigFacts>) {
    for node in graph.nodes.values_mut() {
        if let Some(facts) = image_config(node).and_then(|c| read.get(c)) {
            node.created = facts.created;
            node.labels = facts.labels.clone();
        }
    }
    let index_digests: Vec<Digest> = graph
        .nodes
        .iter()
        .filter(|(_, n)| n.kind == ManifestKind::Index)
        .map(|(d, _)| d.clone())
        .collect();
    for digest in index_digests {
        let children = graph.nodes[&digest].children.clone();
        let created = children.iter().filter_map(|c| graph.nodes.get(c)?.created).max();
        let labels = children
            .iter()
            .filter_map(|c| graph.nodes.get(c))
            .find(|n| !n.labels.is_empty())
            .map(|n| n.labels.clone())
            .unwrap_or_default();
        if let Some(n) = graph.nodes.get_mut(&digest) {
            n.created = created;
            n.labels = labels;
        }
    }
}

/// Reads image configs (once per distinct config) for `created` and labels.
async fn read_configs(client: &Client, repository: &Repository, graph: &mut RepoGraph, concurrency: usize) {
    let configs = configs_to_read(graph);
    read_config_blobs(client, repository, graph, configs, concurrency).await;
}

/// Reads the image configs of the manifests `roots` and of their index children only, for a
/// view of a few images that need not cost a request per config of the whole repository.
pub async fn read_configs_of(
    client: &Client,
    repository: &Repository,
    graph: &mut RepoGraph,
    roots: &[Digest],
    concurrency: usize,
) {
    let mut configs: Vec<Digest> = roots
        .iter()
        .filter_map(|root| graph.nodes.get(root))
        .flat_map(|node| std::iter::once(node).chain(node.children.iter().filter_map(|c| graph.nodes.get(c))))
        .filter_map(image_config)
        .cloned()
        .collect();
    configs.sort();
    configs.dedup();
    read_config_blobs(client, repository, graph, configs, concurrency).await;
}

async fn read_config_blobs(
    client: &Client,
    repository: &Repository,
    graph: &mut RepoGraph,
    configs: Vec<Digest>,
    concurrency: usize,
) {
    let read: Mutex<HashMap<Digest, ConfigFacts>> = Mutex::default();
    let errors: Vec<String> = stream::iter(configs)
        .map(|config| {
            let read = &read;
            async move {
                match client.blob(repository, &config, MAX_CONFIG_BYTES).await {
                    Ok(body) => {
                        read.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(config, ConfigFacts::parse(&body));
                        None
                    }
                    Err(err) => Some(format!("config {config}: {err}")),
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|e| async move { e })
        .collect()
        .await;
    graph.errors.extend(errors);
    let read = read.into_inner().unwrap_or_else(|e| e.into_inner());
    assign_config_facts(graph, &read);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn d(n: u8) -> Digest {
        Digest::sha256(&[n])
    }

    pub fn image(blobs: &[(u8, u64)]) -> Node {
        Node {
            media_type: media_type::OCI_MANIFEST.into(),
            kind: ManifestKind::Image,
            size: 100,
            blobs: blobs.iter().map(|(n, s)| (d(*n), *s)).collect(),
            children: Vec::new(),
            platforms: Vec::new(),
            subject: None,
            artifact_type: None,
            annotations: BTreeMap::new(),
            created: None,
            labels: BTreeMap::new(),
        }
    }

    /// A repository `app` with tags and nodes named by number.
    pub fn repo(tags: &[(&str, u8)], nodes: Vec<(u8, Node)>) -> RepoGraph {
        RepoGraph {
            repository: "app".into(),
            tags: tags.iter().map(|(t, n)| ((*t).to_owned(), d(*n))).collect(),
            nodes: nodes.into_iter().map(|(n, node)| (d(n), node)).collect(),
            ..RepoGraph::default()
        }
    }

    pub fn index(children: &[u8]) -> Node {
        Node {
            media_type: media_type::OCI_INDEX.into(),
            kind: ManifestKind::Index,
            size: 50,
            blobs: Vec::new(),
            children: children.iter().map(|c| d(*c)).collect(),
            platforms: children.iter().map(|_| None).collect(),
            ..image(&[])
        }
    }

    #[test]
    fn parents_by_child_lists_every_index_of_a_child_once_sorted() {
        let mut twice = index(&[1, 1]);
        twice.size = 60;
        let g = repo(
            &[],
            vec![(1, image(&[])), (5, index(&[1, 2])), (4, index(&[1])), (6, twice)],
        );
        let parents = g.parents_by_child();
        let mut expected = [d(4), d(5), d(6)];
        expected.sort();
        assert_eq!(parents[&d(1)], expected.iter().collect::<Vec<_>>());
        assert_eq!(parents[&d(2)], vec![&d(5)]);
        assert!(!parents.contains_key(&d(5)));
    }

    #[test]
    fn referrer_tags_name_their_subject() {
        let subject = d(1);
        let hex = subject.encoded();
        assert_eq!(
            referrer_tag_subject(&format!("sha256-{hex}.sig")),
            Some(subject.clone())
        );
        assert_eq!(
            referrer_tag_subject(&format!("sha256-{hex}")),
            Some(subject.clone())
        );
        assert_eq!(referrer_tag_subject(&format!("sha256-{hex}x")), None);
        assert_eq!(referrer_tag_subject("sha256-abc.sig"), None);
        assert_eq!(referrer_tag_subject("v1.0"), None);
        // gc and retention agree: sha512 referrer tags follow their subject too.
        let long = Digest::parse(&format!("sha512:{}", "cd".repeat(64))).unwrap();
        let tag = format!("{}.sig", long.referrers_tag());
        assert_eq!(referrer_tag_subject(&tag), Some(long.clone()));
        assert_eq!(crate::gc::mark::referrer_tag_subject(&tag), Some(long));
    }

    #[test]
    fn closure_follows_children_and_referrers() {
        let mut g = RepoGraph::default();
        g.nodes.insert(d(1), index(&[2, 3]));
        g.nodes.insert(d(2), image(&[(10, 5)]));
        g.nodes.insert(d(3), image(&[(11, 5)]));
        g.nodes.insert(d(4), image(&[(12, 5)])); // signature of the index
        g.nodes.insert(d(5), image(&[(13, 5)])); // signature of the signature
        g.nodes.insert(d(6), image(&[(14, 5)])); // unrelated
        g.referrers.entry(d(1)).or_default().insert(d(4));
        g.referrers.entry(d(4)).or_default().insert(d(5));
        let c = g.closure([&d(1)]);
        assert_eq!(c, [1, 2, 3, 4, 5].iter().map(|n| d(*n)).collect());
        let blobs = g.blobs_of(&c);
        assert!(blobs.contains_key(&d(10)) && blobs.contains_key(&d(1)) && !blobs.contains_key(&d(14)));
    }
}
