//! From per-tag decisions and the repository graph to concrete, ordered actions.
//!
//! Pure: no I/O, so every safety rule is unit-tested here.
//! - What kept tags need (their manifests, index children recursively, referrers recursively) is
//!   never deleted.
//! - A deleted tag whose digest is still needed loses only the tag ([`Action::Untag`]); deleting
//!   the digest would delete the kept tags on it too.
//! - A manifest is deleted with the children and referrers (signatures, SBOMs, the referrers
//!   fallback index) that nothing kept needs; referrer tags (`sha256-<hex>.sig`) follow their
//!   subject instead of the policy.
//! - A repository whose graph could not be read completely, or whose decisions were refused by
//!   a guard, gets no actions at all.
//! - Actions are ordered so that whatever refers to a manifest goes before it (referrers before
//!   their subject, indexes before their children): an interrupted apply leaves nothing that
//!   points at a missing manifest.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::graph::RepoGraph;
use crate::policy::TagDecision;

/// Version of the plan JSON format (docs/json.md).
pub const PLAN_FORMAT: u32 = 1;

/// How a repository was decided.
#[derive(Debug, Clone, Default)]
pub struct Decisions {
    /// The rule that applied, for display; `None` when no rule matched (everything is kept).
    pub rule: Option<String>,
    /// The policy's decision per tag (the planner turns them into actions).
    pub verdicts: Vec<TagDecision>,
    /// A guard refused the decisions; nothing is deleted and this says why.
    pub refused: Option<String>,
    /// Untagged manifests to delete too (with what only they need), e.g. `rm REPO@DIGEST`.
    pub extra_roots: Vec<Digest>,
    /// Manifests to delete even though kept content needs them (`rm --force`).
    pub forced: Vec<Digest>,
}

/// What happens to a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TagAction {
    Keep,
    /// Removed together with its manifest.
    Delete,
    /// Only the tag is removed; the manifest stays because kept content needs it.
    Untag,
}

/// One tag in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagPlan {
    pub tag: String,
    pub digest: Digest,
    pub action: TagAction,
    pub reason: String,
}

/// Why a manifest is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Role {
    /// A tagged manifest whose tags are all deleted.
    Tagged,
    /// A child of a deleted index that nothing kept needs.
    Child { parent: Digest },
    /// A referrer (signature, attestation, SBOM, referrers index) of a deleted manifest.
    Referrer { subject: Digest },
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Action {
    /// Remove `tag` only (it pointed at `digest` when planned).
    Untag { tag: String, digest: Digest },
    /// Delete the manifest `digest`, which takes exactly `tags` with it.
    DeleteManifest {
        digest: Digest,
        media_type: String,
        tags: Vec<String>,
        role: Role,
        /// Actions run in phases; everything in phase n refers to nothing in a later phase.
        phase: u32,
    },
    /// Delete regsweep's own placeholder that `tag` was left pointing at by an interrupted
    /// untag; that removes the tag, which completes the untag.
    RemovePlaceholder {
        tag: String,
        placeholder: Digest,
        /// The digest the tag pointed at before the interrupted untag, when recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        untag_of: Option<Digest>,
    },
}

/// The plan for one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoPlan {
    pub repository: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Set when nothing is deleted because a guard refused the decisions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Read errors; when present nothing is deleted in this repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    pub tags: Vec<TagPlan>,
    pub actions: Vec<Action>,
    /// Bytes that become reclaimable by the registry's garbage collection.
    pub bytes_freed: u64,
}

/// Totals over the plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub repositories: usize,
    pub tags_kept: usize,
    pub tags_deleted: usize,
    pub tags_untagged: usize,
    pub manifests_deleted: usize,
    pub bytes_freed: u64,
    pub repositories_refused: usize,
    pub repositories_with_errors: usize,
    /// Tags left on regsweep's placeholders by interrupted runs, removed by `apply`.
    #[serde(default)]
    pub leftovers_removed: usize,
}

/// Where a plan's repositories were read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanSource {
    /// The registry's HTTP API.
    #[default]
    Registry,
    /// The registry's storage (`--storage`).
    Storage,
}

/// A whole plan: what `plan -o` writes and `apply` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format: u32,
    /// The registry's host, or where its storage is for a plan made on storage.
    pub registry: String,
    /// What the plan was read from. Plans of older versions have no such field: `registry`.
    #[serde(default)]
    pub source: PlanSource,
    pub created: String,
    pub repositories: Vec<RepoPlan>,
    pub totals: Totals,
}

impl RepoPlan {
    /// The manifests this repository's plan deletes.
    pub fn deleted_manifests(&self) -> HashSet<&Digest> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::DeleteManifest { digest, .. } => Some(digest),
                _ => None,
            })
            .collect()
    }
}

impl Plan {
    /// Adds the repositories of another plan of the same registry (`rm` plans each repository
    /// on its own and reports them as one). Totals are summed, so a blob freed in two
    /// repositories counts twice.
    pub fn merge(&mut self, other: Plan) {
        let (a, b) = (&mut self.totals, other.totals);
        a.repositories += b.repositories;
        a.tags_kept += b.tags_kept;
        a.tags_deleted += b.tags_deleted;
        a.tags_untagged += b.tags_untagged;
        a.manifests_deleted += b.manifests_deleted;
        a.bytes_freed += b.bytes_freed;
        a.repositories_refused += b.repositories_refused;
        a.repositories_with_errors += b.repositories_with_errors;
        a.leftovers_removed += b.leftovers_removed;
        self.repositories.extend(other.repositories);
    }

    /// Distinct actions in the plan (a hand-edited file may list one twice): untags, manifest
    /// deletions and leftover removals.
    pub fn distinct_actions(&self) -> (usize, usize, usize) {
        let mut seen: HashSet<(&str, &str, &str)> = HashSet::new();
        let (mut untags, mut deletes, mut leftovers) = (0, 0, 0);
        for repo in &self.repositories {
            for action in &repo.actions {
                let (kind, key, counter) = match action {
                    Action::Untag { tag, .. } => ("untag", tag.as_str(), &mut untags),
                    Action::DeleteManifest { digest, .. } => ("delete", digest.as_str(), &mut deletes),
                    Action::RemovePlaceholder { tag, .. } => ("leftover", tag.as_str(), &mut leftovers),
                };
                if seen.insert((repo.repository.as_str(), kind, key)) {
                    *counter += 1;
                }
            }
        }
        (untags, deletes, leftovers)
    }
}

/// One repository planned, with what the registry-wide bytes freed needs of its graph: the
/// graph itself can then be dropped (see [`PlanBuilder`]).
#[derive(Debug, Clone)]
pub struct PlannedRepo {
    plan: RepoPlan,
    /// Manifests and blobs kept content references.
    kept_blobs: HashSet<Digest>,
    /// Manifests and blobs deleted content references, with their sizes; freed unless kept
    /// content anywhere references them too.
    deleted_blobs: HashMap<Digest, u64>,
}

impl PlannedRepo {
    /// Plans one repository from its graph. Pure.
    pub fn new(graph: &RepoGraph, decisions: &Decisions) -> Self {
        let (plan, kept, deleted) = plan_repository(graph, decisions);
        Self {
            plan,
            kept_blobs: graph.blobs_of(&kept).into_keys().collect(),
            deleted_blobs: graph.blobs_of(&deleted),
        }
    }
}

/// Assembles a [`Plan`] one repository at a time, holding per repository only its plan and the
/// blobs its deletions would free, plus one registry-wide set of kept blobs: a blob shared
/// across repositories is freed only if no kept manifest anywhere references it, and counted
/// once.
#[derive(Debug, Default)]
pub struct PlanBuilder {
    repos: Vec<(RepoPlan, HashMap<Digest, u64>)>,
    kept_blobs: HashSet<Digest>,
}

impl PlanBuilder {
    pub fn add(&mut self, planned: PlannedRepo) {
        let PlannedRepo {
            plan,
            kept_blobs,
            deleted_blobs,
        } = planned;
        // Blobs kept here are not freed anywhere: only those deleted elsewhere need remembering.
        self.kept_blobs.extend(kept_blobs);
        self.repos.push((plan, deleted_blobs));
    }

    pub fn finish(self, registry: &str, created: &str) -> Plan {
        let mut freed_total: HashMap<Digest, u64> = HashMap::new();
        let mut repos = Vec::with_capacity(self.repos.len());
        for (mut repo, deleted) in self.repos {
            let freed: HashMap<Digest, u64> = deleted
                .into_iter()
                .filter(|(d, _)| !self.kept_blobs.contains(d))
                .collect();
            repo.bytes_freed = freed.values().sum();
            freed_total.extend(freed);
            repos.push(repo);
        }
        assemble(registry, repos, freed_total.values().sum(), created)
    }
}

/// Plans one repository: its plan, the manifests kept and the manifests deleted.
fn plan_repository(graph: &RepoGraph, decisions: &Decisions) -> (RepoPlan, HashSet<Digest>, HashSet<Digest>) {
    let mut repo = RepoPlan {
        repository: graph.repository.clone(),
        rule: decisions.rule.clone(),
        refused: decisions.refused.clone(),
        errors: graph.errors.clone(),
        tags: Vec::new(),
        actions: Vec::new(),
        bytes_freed: 0,
    };
    let blocked = if !graph.errors.is_empty() {
        Some("kept: the repository could not be read completely, so nothing in it is deleted".to_owned())
    } else {
        decisions.refused.as_ref().map(|r| format!("kept: {r}"))
    };
    if let Some(reason) = blocked {
        for (tag, digest) in &graph.tags {
            repo.tags.push(TagPlan {
                tag: tag.clone(),
                digest: digest.clone(),
                action: TagAction::Keep,
                reason: reason.clone(),
            });
        }
        return (repo, graph.closure(graph.nodes.keys()), HashSet::new());
    }

    let verdicts: HashMap<&str, &TagDecision> =
        decisions.verdicts.iter().map(|v| (v.tag.as_str(), v)).collect();
    let (kept, deleted) = kept_and_deleted(graph, decisions, &verdicts);
    for (tag, leftover) in &graph.leftovers {
        repo.actions.push(Action::RemovePlaceholder {
            tag: tag.clone(),
            placeholder: leftover.placeholder.clone(),
            untag_of: leftover.info.untag_of.clone(),
        });
    }
    let needs = Needs::of(graph);
    for (tag, digest) in &graph.tags {
        let (action, reason) = tag_outcome(graph, tag, digest, &verdicts, &deleted, &needs);
        if action == TagAction::Untag {
            repo.actions.push(Action::Untag {
                tag: tag.clone(),
                digest: digest.clone(),
            });
        }
        repo.tags.push(TagPlan {
            tag: tag.clone(),
            digest: digest.clone(),
            action,
            reason,
        });
    }
    repo.actions.extend(manifest_deletions(graph, &deleted));
    (repo, kept, deleted)
}

/// What the kept tags need (closure), and what goes: the deleted tags' manifests with what only
/// they need, untagged roots asked for, and forced deletions.
fn kept_and_deleted(
    graph: &RepoGraph,
    decisions: &Decisions,
    verdicts: &HashMap<&str, &TagDecision>,
) -> (HashSet<Digest>, HashSet<Digest>) {
    // A policy tag without a verdict (no rule matched) is kept.
    let keep_tag = |tag: &str| verdicts.get(tag).is_none_or(|v| v.keeps());
    let kept_roots: Vec<&Digest> = graph
        .policy_tags()
        .filter(|(t, _)| keep_tag(t))
        .map(|(_, d)| d)
        .collect();
    let kept = graph.closure(kept_roots);
    let delete_roots: Vec<&Digest> = graph
        .policy_tags()
        .filter(|(t, d)| !keep_tag(t) && !kept.contains(*d))
        .map(|(_, d)| d)
        .chain(decisions.extra_roots.iter().filter(|d| !kept.contains(*d)))
        .collect();
    let mut deleted: HashSet<Digest> = graph
        .closure(delete_roots)
        .into_iter()
        .filter(|d| !kept.contains(d))
        .collect();
    deleted.extend(decisions.forced.iter().cloned());
    (kept, deleted)
}

/// What happens to one tag, and why: referrer tags follow their subject, the others their
/// verdict, as far as what is deleted allows (a deleted tag whose manifest stays is untagged).
fn tag_outcome(
    graph: &RepoGraph,
    tag: &str,
    digest: &Digest,
    verdicts: &HashMap<&str, &TagDecision>,
    deleted: &HashSet<Digest>,
    needs: &Needs<'_>,
) -> (TagAction, String) {
    match (graph.tag_subject(tag, digest), verdicts.get(tag)) {
        (Some(subject), _) => {
            if deleted.contains(digest) {
                (
                    TagAction::Delete,
                    format!("deleted: referrer of deleted {}", subject.short()),
                )
            } else if deleted.contains(&subject) {
                (
                    TagAction::Untag,
                    format!(
                        "untagged: its subject {} is deleted but the manifest is still needed",
                        subject.short()
                    ),
                )
            } else if graph.nodes.contains_key(&subject) {
                (
                    TagAction::Keep,
                    format!("kept: referrer of kept {}", subject.short()),
                )
            } else {
                (
                    TagAction::Keep,
                    format!(
                        "kept: orphaned referrer (subject {} is not in the repository)",
                        subject.short()
                    ),
                )
            }
        }
        (None, Some(v)) if !v.keeps() => {
            if deleted.contains(digest) {
                (TagAction::Delete, v.reason.clone())
            } else {
                (
                    TagAction::Untag,
                    format!(
                        "{}; untagged only: {}",
                        v.reason,
                        needs.why(graph, digest, verdicts)
                    ),
                )
            }
        }
        (None, Some(v)) => (TagAction::Keep, v.reason.clone()),
        (None, None) => (TagAction::Keep, "kept: no rule applies".to_owned()),
    }
}

/// The manifest deletions, by phase then digest: referrers before their subject, indexes
/// before their children.
fn manifest_deletions(graph: &RepoGraph, deleted: &HashSet<Digest>) -> Vec<Action> {
    let phases = phases(graph, deleted);
    let mut deletions: Vec<(u32, &Digest)> = deleted
        .iter()
        .map(|digest| (phases.get(digest).copied().unwrap_or(0), digest))
        .collect();
    deletions.sort();
    let mut tags = graph.tags_by_digest();
    let roles = Roles::new(graph, deleted);
    deletions
        .into_iter()
        .map(|(phase, digest)| Action::DeleteManifest {
            digest: digest.clone(),
            media_type: graph
                .nodes
                .get(digest)
                .map(|n| n.media_type.clone())
                .unwrap_or_default(),
            tags: tags.remove(digest).unwrap_or_default(),
            role: roles.of(digest),
            phase,
        })
        .collect()
}

/// What keeps a manifest, from the graph's reverse indexes, built once per repository (asking
/// the graph per untagged tag would scan every tag and node each time: quadratic when thousands
/// of tags share a kept digest).
struct Needs<'a> {
    tags_by_digest: HashMap<&'a Digest, Vec<String>>,
    parents: HashMap<&'a Digest, Vec<&'a Digest>>,
}

impl<'a> Needs<'a> {
    fn of(graph: &'a RepoGraph) -> Self {
        Self {
            tags_by_digest: graph.tags_by_digest(),
            parents: graph.parents_by_child(),
        }
    }

    /// Why a digest that a deleted tag points at must stay.
    fn why(&self, graph: &RepoGraph, digest: &Digest, verdicts: &HashMap<&str, &TagDecision>) -> String {
        let kept_tags: Vec<&str> = self
            .tags_by_digest
            .get(digest)
            .into_iter()
            .flatten()
            .filter(|t| {
                graph.tag_subject(t, digest).is_none() && verdicts.get(t.as_str()).is_none_or(|v| v.keeps())
            })
            .map(String::as_str)
            .collect();
        if !kept_tags.is_empty() {
            return format!("kept tag(s) {} share its digest", kept_tags.join(", "));
        }
        let parents: Vec<&str> = self
            .parents
            .get(digest)
            .into_iter()
            .flatten()
            .map(|d| d.short())
            .collect();
        if !parents.is_empty() {
            return format!("kept index {} needs it", parents.join(", "));
        }
        "kept content refers to it".to_owned()
    }
}

/// Why each deleted manifest goes, computed once for all of them (asking the graph per manifest
/// would scan every tag and node each time: quadratic on a repository with 20,000 tags).
struct Roles<'a> {
    /// Digests a policy tag points at.
    tagged: HashSet<&'a Digest>,
    /// A deleted subject of each referrer (the smallest, for a stable plan).
    subject_of: HashMap<&'a Digest, &'a Digest>,
    /// A deleted parent index of each child (the smallest).
    parent_of: HashMap<&'a Digest, &'a Digest>,
}

impl<'a> Roles<'a> {
    fn new(graph: &'a RepoGraph, deleted: &HashSet<Digest>) -> Self {
        let mut subject_of: HashMap<&Digest, &Digest> = HashMap::new();
        for (subject, referrers) in graph.referrers.iter().filter(|(s, _)| deleted.contains(*s)) {
            for referrer in referrers {
                let entry = subject_of.entry(referrer).or_insert(subject);
                *entry = (*entry).min(subject);
            }
        }
        let mut parent_of: HashMap<&Digest, &Digest> = HashMap::new();
        for (parent, node) in graph.nodes.iter().filter(|(p, _)| deleted.contains(*p)) {
            for child in &node.children {
                let entry = parent_of.entry(child).or_insert(parent);
                *entry = (*entry).min(parent);
            }
        }
        Self {
            tagged: graph.policy_tags().map(|(_, d)| d).collect(),
            subject_of,
            parent_of,
        }
    }

    /// A manifest a policy tag points at is `tagged`; else a referrer of a deleted subject (a
    /// referrer listed in a deleted fallback index is that index's child too; it is deleted
    /// because its subject is, which is what the plan should say); else a child of a deleted
    /// index.
    fn of(&self, digest: &Digest) -> Role {
        if self.tagged.contains(digest) {
            Role::Tagged
        } else if let Some(subject) = self.subject_of.get(digest) {
            Role::Referrer {
                subject: (*subject).clone(),
            }
        } else if let Some(parent) = self.parent_of.get(digest) {
            Role::Child {
                parent: (*parent).clone(),
            }
        } else {
            Role::Tagged
        }
    }
}

/// Phase of each deleted manifest: 0 for those nothing deleted refers to, and one more than the
/// deepest deleted manifest that refers to it (as index parent or as referrer).
pub(crate) fn phases(graph: &RepoGraph, deleted: &HashSet<Digest>) -> HashMap<Digest, u32> {
    phases_with(graph, deleted, &[])
}

/// [`phases`] with further "refers to" edges (`apply` adds those a plan states for manifests it
/// did not read again).
pub(crate) fn phases_with(
    graph: &RepoGraph,
    deleted: &HashSet<Digest>,
    extra: &[(Digest, Digest)],
) -> HashMap<Digest, u32> {
    // Edges "from refers to to".
    let mut refers: Vec<(&Digest, &Digest)> = extra
        .iter()
        .filter(|(from, to)| deleted.contains(from) && deleted.contains(to))
        .map(|(from, to)| (from, to))
        .collect();
    for (digest, node) in &graph.nodes {
        if deleted.contains(digest) {
            refers.extend(
                node.children
                    .iter()
                    .filter(|c| deleted.contains(*c))
                    .map(|c| (digest, c)),
            );
        }
    }
    for (subject, referrers) in &graph.referrers {
        if deleted.contains(subject) {
            refers.extend(
                referrers
                    .iter()
                    .filter(|r| deleted.contains(*r))
                    .map(|r| (r, subject)),
            );
        }
    }
    let mut phase: HashMap<Digest, u32> = deleted.iter().map(|d| (d.clone(), 0)).collect();
    // Longest-path relaxation; bounded because digests cannot form cycles through content, and
    // the bound keeps a malformed graph from looping.
    for _ in 0..=deleted.len() {
        let mut changed = false;
        for (from, to) in &refers {
            let want = phase[*from] + 1;
            if phase[*to] < want {
                phase.insert((*to).clone(), want);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    phase
}

/// Plans every repository. `graphs` holds every repository scanned (also those no rule applies
/// to, so that blobs they use are not counted as freed); `decisions` maps a repository to its
/// decisions (missing = keep everything).
pub fn plan(
    registry: &str,
    graphs: &[RepoGraph],
    decisions: &BTreeMap<String, Decisions>,
    created: &str,
) -> Plan {
    let none = Decisions::default();
    let mut builder = PlanBuilder::default();
    for graph in graphs {
        builder.add(PlannedRepo::new(
            graph,
            decisions.get(&graph.repository).unwrap_or(&none),
        ));
    }
    builder.finish(registry, created)
}

/// The plan of planned repositories, sorted, with its totals.
fn assemble(registry: &str, mut repos: Vec<RepoPlan>, bytes_freed: u64, created: &str) -> Plan {
    repos.sort_by(|a, b| a.repository.cmp(&b.repository));
    let count = |action: TagAction| {
        repos
            .iter()
            .flat_map(|r| &r.tags)
            .filter(|t| t.action == action)
            .count()
    };
    let totals = Totals {
        repositories: repos.len(),
        tags_kept: count(TagAction::Keep),
        tags_deleted: count(TagAction::Delete),
        tags_untagged: count(TagAction::Untag),
        manifests_deleted: repos
            .iter()
            .flat_map(|r| &r.actions)
            .filter(|a| matches!(a, Action::DeleteManifest { .. }))
            .count(),
        bytes_freed,
        repositories_refused: repos.iter().filter(|r| r.refused.is_some()).count(),
        repositories_with_errors: repos.iter().filter(|r| !r.errors.is_empty()).count(),
        leftovers_removed: repos
            .iter()
            .flat_map(|r| &r.actions)
            .filter(|a| matches!(a, Action::RemovePlaceholder { .. }))
            .count(),
    };
    Plan {
        format: PLAN_FORMAT,
        registry: registry.to_owned(),
        source: PlanSource::Registry,
        created: created.to_owned(),
        repositories: repos,
        totals,
    }
}

#[cfg(test)]
mod invariants;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{d, image, index, repo as graph};

    fn decide(keep: &[&str], delete: &[&str]) -> Decisions {
        let verdict = |tag: &&str, keep: bool| TagDecision {
            tag: (*tag).to_owned(),
            verdict: if keep {
                crate::policy::Verdict::Keep
            } else {
                crate::policy::Verdict::Delete
            },
            reason: format!("{} by test", if keep { "kept" } else { "deleted" }),
        };
        Decisions {
            rule: Some("test".into()),
            verdicts: keep
                .iter()
                .map(|t| verdict(t, true))
                .chain(delete.iter().map(|t| verdict(t, false)))
                .collect(),
            ..Decisions::default()
        }
    }

    fn one(graph: RepoGraph, decisions: Decisions) -> RepoPlan {
        let map = BTreeMap::from([("app".to_owned(), decisions)]);
        plan("reg", &[graph], &map, "now").repositories.remove(0)
    }

    fn deleted_digests(plan: &RepoPlan) -> Vec<Digest> {
        let mut out: Vec<Digest> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::DeleteManifest { digest, .. } => Some(digest.clone()),
                Action::Untag { .. } | Action::RemovePlaceholder { .. } => None,
            })
            .collect();
        out.sort();
        out
    }

    fn action_of(plan: &RepoPlan, tag: &str) -> TagAction {
        plan.tags.iter().find(|t| t.tag == tag).unwrap().action
    }

    #[test]
    fn deleting_a_tag_that_shares_a_kept_digest_only_untags() {
        let g = graph(
            &[("latest", 1), ("v1", 1), ("v0", 2)],
            vec![(1, image(&[(10, 5)])), (2, image(&[(11, 7)]))],
        );
        let p = one(g, decide(&["latest"], &["v1", "v0"]));
        assert_eq!(deleted_digests(&p), vec![d(2)]);
        assert_eq!(action_of(&p, "v1"), TagAction::Untag);
        assert_eq!(action_of(&p, "v0"), TagAction::Delete);
        assert_eq!(action_of(&p, "latest"), TagAction::Keep);
        assert!(p.actions.contains(&Action::Untag {
            tag: "v1".into(),
            digest: d(1)
        }));
        let reason = &p.tags.iter().find(|t| t.tag == "v1").unwrap().reason;
        assert!(reason.contains("latest"), "{reason}");
        assert_eq!(p.bytes_freed, 100 + 7);
    }

    #[test]
    fn children_of_kept_indexes_survive_and_children_of_deleted_ones_go() {
        let g = graph(
            &[("multi", 1), ("old-multi", 4), ("amd64", 2)],
            vec![
                (1, index(&[2, 3])),
                (2, image(&[(10, 1)])),
                (3, image(&[(11, 1)])),
                (4, index(&[5, 3])),
                (5, image(&[(12, 1)])),
            ],
        );
        let p = one(g, decide(&["multi"], &["old-multi", "amd64"]));
        // Child 3 is shared with the kept index; child 2 is tagged by a deleted tag but needed.
        assert_eq!(
            deleted_digests(&p),
            vec![d(4), d(5)]
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        );
        assert_eq!(action_of(&p, "amd64"), TagAction::Untag);
        let reason = &p.tags.iter().find(|t| t.tag == "amd64").unwrap().reason;
        assert!(
            reason.ends_with(&format!("untagged only: kept index {} needs it", d(1).short())),
            "{reason}"
        );
        let phase_of = |digest: &Digest| {
            p.actions.iter().find_map(|a| match a {
                Action::DeleteManifest {
                    digest: x,
                    phase,
                    role,
                    ..
                } if x == digest => Some((*phase, role.clone())),
                _ => None,
            })
        };
        assert_eq!(phase_of(&d(4)), Some((0, Role::Tagged)));
        assert_eq!(phase_of(&d(5)), Some((1, Role::Child { parent: d(4) })));
    }

    #[test]
    fn referrers_follow_their_subject() {
        let subject = d(1);
        let sig_tag = format!("{}.sig", subject.referrers_tag());
        let kept_sig_tag = format!("{}.sig", d(3).referrers_tag());
        let mut g = graph(
            &[
                ("old", 1),
                ("new", 3),
                (sig_tag.as_str(), 2),
                (kept_sig_tag.as_str(), 4),
            ],
            vec![
                (1, image(&[(10, 1)])),
                (2, image(&[(11, 1)])),
                (3, image(&[(12, 1)])),
                (4, image(&[(13, 1)])),
                (5, image(&[(14, 1)])),
            ],
        );
        g.referrers.entry(d(1)).or_default().insert(d(2));
        g.referrers.entry(d(3)).or_default().insert(d(4));
        // An untagged OCI 1.1 referrer (subject field) of the deleted image.
        g.referrers.entry(d(1)).or_default().insert(d(5));
        let p = one(g, decide(&["new"], &["old"]));
        assert_eq!(deleted_digests(&p), {
            let mut v = vec![d(1), d(2), d(5)];
            v.sort();
            v
        });
        assert_eq!(action_of(&p, &sig_tag), TagAction::Delete);
        assert_eq!(action_of(&p, &kept_sig_tag), TagAction::Keep);
        // Signatures are deleted before their subject.
        let position = |x: Digest| {
            p.actions
                .iter()
                .position(|a| matches!(a, Action::DeleteManifest { digest, .. } if *digest == x))
        };
        assert!(position(d(2)) < position(d(1)) && position(d(5)) < position(d(1)));
    }

    #[test]
    fn read_errors_and_refusals_delete_nothing() {
        let mut g = graph(&[("a", 1), ("b", 2)], vec![(1, image(&[])), (2, image(&[]))]);
        g.errors.push("boom".into());
        let p = one(g.clone(), decide(&[], &["a", "b"]));
        assert!(p.actions.is_empty());
        assert!(p.tags.iter().all(|t| t.action == TagAction::Keep));
        g.errors.clear();
        let mut refused = decide(&[], &["a", "b"]);
        refused.refused = Some("would delete every tag".into());
        let p = one(g, refused);
        assert!(p.actions.is_empty());
        assert!(p.tags[0].reason.contains("every tag"));
    }

    #[test]
    fn blobs_used_by_kept_content_anywhere_are_not_freed() {
        let g1 = graph(
            &[("old", 1), ("new", 2)],
            vec![(1, image(&[(10, 1000), (11, 10)])), (2, image(&[(10, 1000)]))],
        );
        let mut g2 = graph(&[("x", 3)], vec![(3, image(&[(11, 10)]))]);
        g2.repository = "other".into();
        let decisions = BTreeMap::from([("app".to_owned(), decide(&["new"], &["old"]))]);
        let p = plan("reg", &[g1, g2], &decisions, "now");
        // Blob 10 is kept by `new`, blob 11 by the other repository: only manifest 1 is freed.
        assert_eq!(p.totals.bytes_freed, 100);
        assert_eq!(p.totals.manifests_deleted, 1);
        assert_eq!(p.totals.tags_deleted, 1);
        assert_eq!(p.repositories[1].repository, "other");
        assert!(p.repositories[1].actions.is_empty());
    }

    #[test]
    fn blobs_kept_by_a_repository_planned_later_are_not_freed() {
        let app = graph(&[("old", 1)], vec![(1, image(&[(10, 1000), (11, 10)]))]);
        let mut other = graph(&[("x", 3)], vec![(3, image(&[(11, 10)]))]);
        other.repository = "other".into();
        let mut another = graph(&[("y", 4)], vec![(4, image(&[(10, 1000)]))]);
        another.repository = "another".into();
        another.errors.push("partly read".into());
        let deleting = decide(&[], &["old"]);
        let keeping = Decisions::default();
        // The graphs go one at a time, in any order, and are dropped after being added.
        for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2]] {
            let mut builder = PlanBuilder::default();
            for i in order {
                let planned = match i {
                    0 => PlannedRepo::new(&app.clone(), &deleting),
                    1 => PlannedRepo::new(&other.clone(), &keeping),
                    _ => PlannedRepo::new(&another.clone(), &keeping),
                };
                builder.add(planned);
            }
            let p = builder.finish("reg", "now");
            // Blob 11 is kept by `other`, blob 10 by the unreadable `another` (which keeps
            // everything): only manifest 1 is freed.
            assert_eq!(p.totals.bytes_freed, 100, "{order:?}");
            let app_plan = p.repositories.iter().find(|r| r.repository == "app").unwrap();
            assert_eq!(app_plan.bytes_freed, 100, "{order:?}");
            assert_eq!(p.totals.manifests_deleted, 1, "{order:?}");
        }
    }

    #[test]
    fn tags_without_verdicts_are_kept() {
        let g = graph(&[("a", 1)], vec![(1, image(&[]))]);
        let p = one(g, Decisions::default());
        assert_eq!(action_of(&p, "a"), TagAction::Keep);
        assert!(p.actions.is_empty());
    }

    #[test]
    fn plan_json_round_trips() {
        let g = graph(
            &[("latest", 1), ("v1", 1), ("v0", 2)],
            vec![(1, image(&[(10, 5)])), (2, image(&[(11, 7)]))],
        );
        let map = BTreeMap::from([("app".to_owned(), decide(&["latest"], &["v1", "v0"]))]);
        let p = plan("reg", &[g], &map, "2026-11-22T00:00:00Z");
        let json = serde_json::to_string(&p).unwrap();
        let back: Plan = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        assert!(json.contains(r#""type":"delete-manifest""#) && json.contains(r#""type":"untag""#));
    }
}
