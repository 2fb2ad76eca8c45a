//! Retention planning end to end: scan the repositories, let the policy decide per tag, and turn
//! the decisions into a [`Plan`]. Also the plans behind `rm`, which use the same planner so that
//! removing one tag obeys the same safety rules as a policy.

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt};

use crate::digest::Digest;
use crate::graph::{RepoGraph, ScanOptions, scan};
use crate::look::Progress;
use crate::plan::{Decisions, Plan, Verdict, plan};
use crate::policy::{Action, Policy, TagFacts};
use crate::reference::Repository;
use crate::registry::Client;

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
    let graphs: Vec<RepoGraph> = stream::iter(repositories)
        .map(|repo| async move {
            // Names from the catalog go into URL paths: one that is not a repository name
            // (`a/../b`, `x?y`) is reported, never requested.
            if let Err(err) = Repository::parse(repo) {
                return RepoGraph {
                    repository: repo.clone(),
                    errors: vec![format!(
                        "not read: the catalog lists an invalid repository name: {err}"
                    )],
                    ..RepoGraph::default()
                };
            }
            let options = ScanOptions {
                with_configs: policy.applies_to(repo) && !policy.time_sources(repo).is_empty(),
                concurrency,
            };
            scan(client, repo, options, progress).await
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let decisions = graphs
        .iter()
        .filter(|g| policy.applies_to(&g.repository) && g.errors.is_empty())
        .map(|g| (g.repository.clone(), decide(policy, g, now)))
        .collect();
    plan(client.registry().host(), &graphs, &decisions, &now.to_string())
}

/// The policy's decisions about one repository's tags. Pure.
pub fn decide(policy: &Policy, graph: &RepoGraph, now: jiff::Timestamp) -> Decisions {
    let decision = policy.decide(&graph.repository, &facts(graph), now);
    Decisions {
        rule: decision.rule,
        verdicts: decision
            .tags
            .into_iter()
            .map(|t| Verdict {
                tag: t.tag,
                keep: t.action == Action::Keep,
                reason: t.reason,
            })
            .collect(),
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
    repository: &str,
    removal: &Removal,
    force: bool,
    concurrency: usize,
) -> Result<Plan, RemovalError> {
    let options = ScanOptions {
        with_configs: false,
        concurrency,
    };
    let mut graph = scan(client, repository, options, &crate::look::NoProgress).await;
    if !removal.digests.is_empty() {
        crate::graph::add_manifests(client, &mut graph, removal.digests.clone(), concurrency).await;
    }
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
    let verdicts: Vec<Verdict> = graph
        .policy_tags()
        .map(|(tag, _)| {
            let delete = doomed.contains(tag);
            Verdict {
                tag: tag.clone(),
                keep: !delete,
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
                    why: needed_by(&graph, digest, &doomed),
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
        client.registry().host(),
        std::slice::from_ref(&graph),
        &decisions,
        &jiff::Timestamp::now().to_string(),
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
