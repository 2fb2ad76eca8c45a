//! Retention planning end to end: scan the repositories, let the policy decide per tag, and turn
//! the decisions into a [`Plan`]. Also the plans behind `rm`, which use the same planner so that
//! removing one tag obeys the same safety rules as a policy.

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt};
use rayon::prelude::*;

use crate::digest::Digest;
use crate::graph::{RepoGraph, ScanOptions, scan, scan_named};
use crate::plan::{Decisions, Plan, PlanBuilder, PlanSource, PlannedRepo, plan};
use crate::policy::{Policy, TagDecision, TagFacts, TimeSource, Verdict};
use crate::progress::Progress;
use crate::reference::Repository;
use crate::registry::Client;
use crate::storage::Storage;

/// Scans `repositories` and plans them with `policy`. Repositories no rule matches are scanned
/// too (without configs), so that blobs they use are not counted as freed.
pub async fn plan_with_policy(
    client: &Client,
    policy: &Policy,
    repositories: &[String],
    concurrency: usize,
    now: jiff::Timestamp,
    progress: &dyn Progress,
) -> Plan {
    let mut scans = stream::iter(repositories)
        .map(|repo| async move {
            let options = ScanOptions {
                with_configs: policy.applies_to(repo) && !policy.time_sources(repo).is_empty(),
                concurrency,
                skip_referrers_api: false,
            };
            scan_named(client, repo, options, progress).await
        })
        .buffer_unordered(concurrency.max(1));
    // Each graph is planned as soon as it is read and then dropped: only its plan and the blobs
    // it would free stay until the registry-wide bytes freed are known.
    let mut builder = PlanBuilder::default();
    while let Some(graph) = scans.next().await {
        builder.add(plan_graph(policy, &graph, now));
    }
    builder.finish(client.registry().host(), &now.to_string())
}

/// Like [`plan_with_policy`], reading the repositories from the registry's storage. Push times
/// are known here, so policies may use the `pushed` time source.
pub fn plan_on_storage(
    storage: &Storage,
    policy: &Policy,
    repositories: &[String],
    now: jiff::Timestamp,
    progress: &dyn Progress,
) -> Plan {
    progress.add_total(repositories.len() as u64);
    let planned: Vec<PlannedRepo> = repositories
        .par_iter()
        .map(|repo| {
            let with_configs =
                policy.applies_to(repo) && policy.time_sources(repo).iter().any(|s| *s != TimeSource::Pushed);
            let graph = crate::graph::storage::read(storage, repo, with_configs);
            progress.advance(1);
            plan_graph(policy, &graph, now)
        })
        .collect();
    let mut builder = PlanBuilder::default();
    for repo in planned {
        builder.add(repo);
    }
    let mut plan = builder.finish(storage.location(), &now.to_string());
    plan.source = PlanSource::Storage;
    plan
}

/// Decides and plans one scanned repository (without read errors; one with errors plans no
/// deletions). Pure.
fn plan_graph(policy: &Policy, graph: &RepoGraph, now: jiff::Timestamp) -> PlannedRepo {
    let decisions = if policy.applies_to(&graph.repository) && graph.errors.is_empty() {
        decide(policy, graph, now)
    } else {
        Decisions::default()
    };
    PlannedRepo::new(graph, &decisions)
}

/// The policy's decisions about one repository's tags. Pure.
pub fn decide(policy: &Policy, graph: &RepoGraph, now: jiff::Timestamp) -> Decisions {
    let decision = policy.decide(&graph.repository, &facts(graph), now);
    Decisions {
        rule: decision.rule,
        verdicts: decision.tags,
        refused: decision.refused,
        ..Decisions::default()
    }
}

/// What the policy may look at for each (non-referrer) tag.
fn facts(graph: &RepoGraph) -> Vec<TagFacts> {
    graph
        .policy_tags()
        .filter_map(|(tag, digest)| {
            let node = graph.nodes.get(digest)?;
            Some(TagFacts {
                tag: tag.clone(),
                digest: digest.clone(),
                children: node.children.clone(),
                created: node.created,
                pushed: graph.pushed.get(tag).copied(),
                labels: node.labels.clone(),
                annotations: node.annotations.clone(),
            })
        })
        .collect()
}

/// What `rm` was asked to remove in one repository.
#[derive(Debug, Clone, Default)]
pub struct Removal {
    pub tags: Vec<String>,
    pub digests: Vec<Digest>,
}

/// Why `rm` refuses.
#[derive(Debug, thiserror::Error)]
pub enum RemovalError {
    #[error("{repository}: {errors}")]
    Read { repository: String, errors: String },
    #[error("tag `{tag}` not found in `{repository}`")]
    NoSuchTag { repository: String, tag: String },
    #[error(
        "{repository}@{digest} is needed by kept content ({why}); deleting it would break that image. Pass --force to delete it anyway"
    )]
    Needed {
        repository: String,
        digest: Digest,
        why: String,
    },
}

/// Plans removing the given tags and digests from one repository: tags shared with other tags
/// are only untagged; a manifest whose last tag goes is deleted with its referrers and the
/// children nothing else needs; a digest is deleted with every tag on it, unless kept content
/// (a tagged index, say) still needs it — then it is refused unless `force`.
pub async fn plan_removal(
    client: &Client,
    repository: &Repository,
    removal: &Removal,
    force: bool,
    concurrency: usize,
) -> Result<Plan, RemovalError> {
    let options = ScanOptions {
        with_configs: false,
        concurrency,
        skip_referrers_api: false,
    };
    let mut graph = scan(client, repository, options, &crate::progress::NoProgress).await;
    if !removal.digests.is_empty() {
        crate::graph::add_manifests(
            client,
            repository,
            &mut graph,
            removal.digests.clone(),
            concurrency,
        )
        .await;
    }
    plan_removal_in(
        &graph,
        removal,
        force,
        client.registry().host(),
        jiff::Timestamp::now(),
    )
}

/// Like [`plan_removal`], reading the repository from the registry's storage.
pub fn plan_removal_on_storage(
    storage: &Storage,
    repository: &str,
    removal: &Removal,
    force: bool,
    now: jiff::Timestamp,
) -> Result<Plan, RemovalError> {
    let (mut graph, gone) = crate::graph::storage::read_with(storage, repository, false, &removal.digests);
    if let Some(digest) = gone.first() {
        graph
            .errors
            .push(format!("manifest {digest} is not in the repository"));
    }
    let mut plan = plan_removal_in(&graph, removal, force, storage.location(), now)?;
    plan.source = PlanSource::Storage;
    Ok(plan)
}

/// Plans a removal from a repository's graph. Pure.
fn plan_removal_in(
    graph: &RepoGraph,
    removal: &Removal,
    force: bool,
    registry: &str,
    now: jiff::Timestamp,
) -> Result<Plan, RemovalError> {
    let repository = graph.repository.as_str();
    if !graph.errors.is_empty() {
        return Err(RemovalError::Read {
            repository: repository.to_owned(),
            errors: graph.errors.join("; "),
        });
    }
    for tag in &removal.tags {
        // A tag left on regsweep's placeholder is removed by every plan of its repository.
        if !graph.tags.contains_key(tag) && !graph.leftovers.contains_key(tag) {
            return Err(RemovalError::NoSuchTag {
                repository: repository.to_owned(),
                tag: tag.clone(),
            });
        }
    }
    // Every tag on a named digest goes with it.
    let mut doomed: Vec<String> = removal.tags.clone();
    for digest in &removal.digests {
        doomed.extend(graph.tags_of(digest));
    }
    let verdicts: Vec<TagDecision> = graph
        .policy_tags()
        .map(|(tag, _)| {
            let delete = doomed.contains(tag);
            TagDecision {
                tag: tag.clone(),
                verdict: if delete { Verdict::Delete } else { Verdict::Keep },
                reason: if delete {
                    "deleted: named on the command line"
                } else {
                    "kept: not named"
                }
                .to_owned(),
            }
        })
        .collect();
    let kept_roots: Vec<&Digest> = graph
        .policy_tags()
        .filter(|(t, _)| !doomed.contains(t))
        .map(|(_, d)| d)
        .collect();
    let kept = graph.closure(kept_roots);
    let (mut forced, mut extra_roots) = (Vec::new(), Vec::new());
    for digest in &removal.digests {
        if kept.contains(digest) {
            if !force {
                return Err(RemovalError::Needed {
                    repository: repository.to_owned(),
                    digest: digest.clone(),
                    why: needed_by(graph, digest, &doomed),
                });
            }
            forced.push(digest.clone());
        } else {
            // Also covers an untagged manifest, which no tag verdict can reach.
            extra_roots.push(digest.clone());
        }
    }
    let decisions = BTreeMap::from([(
        repository.to_owned(),
        Decisions {
            rule: Some("command line".into()),
            verdicts,
            refused: None,
            extra_roots,
            forced,
        },
    )]);
    Ok(plan(
        registry,
        std::slice::from_ref(graph),
        &decisions,
        &now.to_string(),
    ))
}

fn needed_by(graph: &RepoGraph, digest: &Digest, doomed: &[String]) -> String {
    let parents: Vec<String> = graph
        .nodes
        .iter()
        .filter(|(_, n)| n.children.contains(digest))
        .map(|(d, _)| {
            let tags: Vec<String> = graph
                .tags_of(d)
                .into_iter()
                .filter(|t| !doomed.contains(t))
                .collect();
            if tags.is_empty() {
                format!("index {}", d.short())
            } else {
                format!("index {} ({})", d.short(), tags.join(", "))
            }
        })
        .collect();
    if parents.is_empty() {
        "a kept tag refers to it".to_owned()
    } else {
        format!("child of {}", parents.join(", "))
    }
}
