//! The repository graph read straight from distribution's storage, for retention on storage
//! (`--storage`). It is assembled with the same functions as the graph read over the API, so the
//! planner, the review before deleting and the report see the same thing from both sources.
//!
//! What differs from the API, and why:
//! - Tags come from `_manifests/tags/<tag>/current/link`, with the link's modification time as
//!   the tag's push time ([`RepoGraph::pushed`]), which no registry API shows.
//! - A repository has exactly the manifests of `_manifests/revisions`. Every one is read (once,
//!   in parallel), because storage has no referrers index: a manifest is a referrer of another
//!   when its `subject` says so, whether or not it is tagged. This is what the referrers API
//!   answers on registries that have one.
//! - A tag pointing at a manifest the repository does not have (no revision link) is left out,
//!   as the API does (it answers 404 for such a tag).
//! - Manifest bytes are checked against their digest, as the HTTP client checks them.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use rayon::prelude::*;

use super::{
    ConfigFacts, Node, RepoGraph, add_tag_referrers, assign_config_facts, configs_to_read, insert_parsed,
    set_aside_leftovers,
};
use crate::digest::Digest;
use crate::manifest::{MAX_MANIFEST_BYTES, Manifest};
use crate::registry::MAX_CONFIG_BYTES;
use crate::storage::{IssueKind, ReadOptions, Storage};

/// Reads one repository's graph from storage. Problems (unreadable links or manifests) are
/// recorded in [`RepoGraph::errors`], never returned, so that one broken repository does not
/// stop a registry-wide plan and nothing is deleted in it.
pub fn read(storage: &Storage, repository: &str, with_configs: bool) -> RepoGraph {
    read_with(storage, repository, with_configs, &[]).0
}

/// Like [`read`], with manifests named by digest added to the graph whether tagged or not (what
/// `rm REPO@DIGEST` names, what a plan deletes). Returns the graph and those of `extra` the
/// repository does not have (anymore).
pub fn read_with(
    storage: &Storage,
    repository: &str,
    with_configs: bool,
    extra: &[Digest],
) -> (RepoGraph, Vec<Digest>) {
    let mut graph = RepoGraph {
        repository: repository.to_owned(),
        ..RepoGraph::default()
    };
    let read_options = ReadOptions {
        link_times: true,
        ..ReadOptions::default()
    };
    let repo = storage.read_repository(repository, read_options);
    for issue in &repo.issues {
        // Entries the layout does not have are left alone by every command; everything else
        // means the picture of this repository is incomplete.
        if issue.kind != IssueKind::Unexpected {
            graph.errors.push(format!("{}: {}", issue.path, issue.message));
        }
    }
    // Only what the graph keeps of each manifest is held (not its bytes): a repository may have
    // tens of thousands of revisions.
    let mut manifests: HashMap<Digest, Result<Node, String>> = repo
        .revisions
        .par_iter()
        .map(|link| (link.digest.clone(), read_manifest(storage, &link.digest)))
        .collect();
    for (digest, result) in &manifests {
        if let Err(err) = result {
            graph.manifest_unreadable(digest.clone(), err.to_string());
        }
    }
    for tag in repo.tags {
        let Some(link) = tag.current else { continue };
        if !manifests.contains_key(&link.digest) {
            continue;
        }
        if let Some(pushed) = link.modified.and_then(timestamp) {
            graph.pushed.insert(tag.name.clone(), pushed);
        }
        graph.tags.insert(tag.name, link.digest);
    }
    let mut gone = Vec::new();
    let mut roots: Vec<Digest> = graph.tags.values().cloned().collect();
    for digest in extra {
        if manifests.contains_key(digest) {
            roots.push(digest.clone());
        } else {
            gone.push(digest.clone());
        }
    }
    add_with_referrers(&mut graph, &mut manifests, roots);
    set_aside_leftovers(&mut graph);
    add_tag_referrers(&mut graph);
    if with_configs {
        read_configs(storage, &mut graph);
    }
    gone.sort();
    gone.dedup();
    (graph, gone)
}

/// Adds `roots` with what they reference, then every manifest whose `subject` is in the graph,
/// until nothing new turns up. Nodes move from `manifests` into the graph (not copied: a
/// repository may have tens of thousands).
fn add_with_referrers(
    graph: &mut RepoGraph,
    manifests: &mut HashMap<Digest, Result<Node, String>>,
    mut pending: Vec<Digest>,
) {
    loop {
        while let Some(digest) = pending.pop() {
            if graph.nodes.contains_key(&digest) {
                continue;
            }
            match manifests.remove(&digest) {
                Some(Ok(node)) => pending.extend(insert_parsed(graph, digest, node)),
                // Already recorded as an error when it was read; kept so that it is not taken
                // for a missing revision below.
                Some(Err(err)) => {
                    manifests.insert(digest, Err(err));
                }
                // An index pointing at a child the repository does not have is already broken;
                // nothing is deleted on an incomplete picture.
                None => graph.errors.push(format!(
                    "manifest {digest} is referenced but the repository has no revision link for it"
                )),
            }
        }
        let nodes: HashSet<&Digest> = graph.nodes.keys().collect();
        pending = manifests
            .iter()
            .filter(|(digest, _)| !nodes.contains(digest))
            .filter_map(|(digest, m)| {
                let subject = m.as_ref().ok()?.subject.as_ref()?;
                nodes.contains(subject).then(|| digest.clone())
            })
            .collect();
        if pending.is_empty() {
            return;
        }
    }
}

/// A manifest from the blob store, checked against its digest, as the graph keeps it.
fn read_manifest(storage: &Storage, digest: &Digest) -> Result<Node, String> {
    let body = storage
        .read_blob(digest, MAX_MANIFEST_BYTES as u64)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the revision link exists but the blob does not".to_owned())?;
    if digest.verify(&body) == Some(false) {
        return Err("the blob's content does not match its digest".into());
    }
    let manifest = Manifest::parse(&body, None).map_err(|e| e.to_string())?;
    Ok(Node::of(
        manifest.media_type.clone(),
        body.len() as u64,
        &manifest,
    ))
}

fn read_configs(storage: &Storage, graph: &mut RepoGraph) {
    let results: Vec<(Digest, Result<ConfigFacts, String>)> = configs_to_read(graph)
        .into_par_iter()
        .map(|config| {
            let facts = match storage.read_blob(&config, MAX_CONFIG_BYTES as u64) {
                Ok(Some(body)) => Ok(ConfigFacts::parse(&body)),
                Ok(None) => Err("missing from the blob store".to_owned()),
                Err(err) => Err(err.to_string()),
            };
            (config, facts)
        })
        .collect();
    let mut read = HashMap::new();
    for (config, result) in results {
        match result {
            Ok(facts) => {
                read.insert(config, facts);
            }
            Err(err) => graph.errors.push(format!("config {config}: {err}")),
        }
    }
    assign_config_facts(graph, &read);
}

fn timestamp(time: SystemTime) -> Option<jiff::Timestamp> {
    jiff::Timestamp::try_from(time).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::paths;
    use crate::storage::testtree::{Tree, old};

    #[test]
    fn reads_the_graph_the_api_would_show_with_push_times() {
        let tree = Tree::new();
        let a = tree.image("app", Some("v1"), "a", 1);
        let b = tree.image("app", None, "b", 1);
        let c = tree.image("app", None, "c", 1);
        let index = tree.index("app", Some("multi"), &[&b, &c]);
        // An untagged referrer of v1 (found only by its `subject`), and an untagged manifest
        // nothing refers to (not part of the graph).
        let sbom = tree.manifest("app", &tree.image_body("app", "sbom", 1, Some(&a)));
        let stray = tree.image("app", None, "stray", 1);
        // A tag whose manifest the repository lacks: the API answers 404 for it.
        let elsewhere = tree.blob(b"{}");
        tree.tag("app", "dangling", &elsewhere);
        let long_ago = old();
        tree.set_mtime(&format!("{}/current/link", paths::tag_dir("app", "v1")), long_ago);

        let storage = tree.storage();
        let (graph, gone) = read_with(&storage, "app", false, &[stray.clone(), elsewhere.clone()]);
        assert!(graph.errors.is_empty(), "{:?}", graph.errors);
        assert_eq!(gone, [elsewhere]);
        assert_eq!(graph.tags.keys().collect::<Vec<_>>(), ["multi", "v1"]);
        assert!(
            graph.nodes.contains_key(&index) && graph.nodes.contains_key(&b) && graph.nodes.contains_key(&c)
        );
        assert_eq!(graph.referrers[&a].iter().collect::<Vec<_>>(), [&sbom]);
        assert!(graph.nodes.contains_key(&stray), "named manifests are added");
        let v1_pushed = graph.pushed["v1"];
        assert_eq!(v1_pushed, jiff::Timestamp::try_from(long_ago).unwrap());
        assert!(graph.pushed["multi"] > v1_pushed);
        assert!(!read(&storage, "app", false).nodes.contains_key(&stray));
    }

    #[test]
    fn unreadable_or_mismatched_manifests_are_errors() {
        let tree = Tree::new();
        let a = tree.image("app", Some("v1"), "a", 1);
        // A revision whose blob holds other bytes than its digest says.
        let forged = tree.image("app", Some("v2"), "b", 1);
        tree.write(&paths::blob_data(&forged), b"{\"schemaVersion\":2,\"layers\":[]}");
        let graph = read(&tree.storage(), "app", false);
        assert!(
            graph
                .errors
                .iter()
                .any(|e| e.contains("does not match its digest")),
            "{:?}",
            graph.errors
        );
        // A broken tag link.
        let tree = Tree::new();
        tree.image("app", Some("v1"), "a", 1);
        tree.write(
            &format!("{}/current/link", paths::tag_dir("app", "v1")),
            b"garbage",
        );
        let graph = read(&tree.storage(), "app", false);
        assert!(!graph.errors.is_empty());
        assert!(!a.as_str().is_empty());
    }
}
