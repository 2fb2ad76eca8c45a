//! The safety invariants (DESIGN.md), checked on random repository graphs × random decisions:
//! indexes with shared children, aliases, cosign-style signature tags, OCI referrers (untagged,
//! under ordinary tags, listed in a referrers fallback index).
//! Decisions are arbitrary keep/delete verdicts (every policy's output is one of them) or those
//! of real policies. Also: `apply`'s review of an unchanged repository accepts exactly what the
//! planner planned, so apply and planning enforce the same rules.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;

use super::*;
use crate::graph::{Node, RepoGraph};
use crate::manifest::{ManifestKind, media_type};
use crate::policy::Verdict;

/// What the random repository is made of.
#[derive(Debug, Clone)]
struct Shape {
    images: usize,
    /// Each index lists these images (by number, modulo `images`): children may be shared.
    indexes: Vec<Vec<usize>>,
    /// Tags: (name number, manifest number over images then indexes).
    tags: Vec<(usize, usize)>,
    /// Signatures (`sha256-<hex>.sig` tags) of these manifests.
    signatures: Vec<usize>,
    /// OCI referrers with `subject`: (subject manifest, tagged under an ordinary tag, listed in
    /// the subject's fallback index).
    referrers: Vec<(usize, bool, bool)>,
    /// Verdicts: keep each policy tag or not (`None` = no verdict, kept by default).
    verdicts: Vec<Option<bool>>,
}

fn shape() -> impl Strategy<Value = Shape> {
    (1usize..8, 0usize..4).prop_flat_map(|(images, indexes)| {
        let manifests = images + indexes;
        (
            Just(images),
            proptest::collection::vec(proptest::collection::vec(0..images, 1..4), indexes),
            proptest::collection::vec((0usize..12, 0..manifests), 1..12),
            proptest::collection::vec(0..manifests, 0..4),
            proptest::collection::vec((0..manifests, any::<bool>(), any::<bool>()), 0..4),
            proptest::collection::vec(proptest::option::weighted(0.9, any::<bool>()), 12),
        )
            .prop_map(|(images, indexes, tags, signatures, referrers, verdicts)| Shape {
                images,
                indexes,
                tags,
                signatures,
                referrers,
                verdicts,
            })
    })
}

fn digest(kind: u8, n: usize) -> Digest {
    Digest::sha256(&[kind, n as u8])
}

fn image(blob: u8, n: usize, subject: Option<Digest>) -> Node {
    Node {
        media_type: media_type::OCI_MANIFEST.into(),
        kind: ManifestKind::Image,
        size: 100,
        // A layer of its own and a base layer shared by every image.
        blobs: vec![(digest(blob, n), 1000), (digest(9, 0), 5000)],
        children: Vec::new(),
        platforms: Vec::new(),
        subject,
        artifact_type: None,
        annotations: BTreeMap::new(),
        created: None,
        labels: BTreeMap::new(),
    }
}

/// Builds the graph as `graph::scan` would see it.
fn build(shape: &Shape) -> RepoGraph {
    let mut g = RepoGraph {
        repository: "app".into(),
        ..RepoGraph::default()
    };
    let mut manifests: Vec<Digest> = Vec::new();
    for i in 0..shape.images {
        g.nodes.insert(digest(1, i), image(10, i, None));
        manifests.push(digest(1, i));
    }
    for (i, children) in shape.indexes.iter().enumerate() {
        let mut children: Vec<Digest> = children.iter().map(|c| digest(1, *c)).collect();
        children.sort();
        children.dedup();
        g.nodes.insert(
            digest(2, i),
            Node {
                media_type: media_type::OCI_INDEX.into(),
                kind: ManifestKind::Index,
                blobs: Vec::new(),
                children,
                ..image(0, 0, None)
            },
        );
        manifests.push(digest(2, i));
    }
    for (name, target) in &shape.tags {
        g.tags.insert(format!("t{name}"), manifests[*target].clone());
    }
    for (i, subject) in shape.signatures.iter().enumerate() {
        let subject = &manifests[*subject];
        let sig = digest(3, i);
        g.nodes.insert(sig.clone(), image(11, i, None));
        g.tags.insert(format!("{}.sig", subject.referrers_tag()), sig);
    }
    let mut fallback: BTreeMap<Digest, Vec<Digest>> = BTreeMap::new();
    for (i, (subject, tagged, listed)) in shape.referrers.iter().enumerate() {
        let subject = manifests[*subject].clone();
        let referrer = digest(4, i);
        g.nodes
            .insert(referrer.clone(), image(12, i, Some(subject.clone())));
        if *tagged {
            g.tags.insert(format!("sbom-{i}"), referrer.clone());
        }
        if *listed {
            fallback.entry(subject).or_default().push(referrer);
        }
    }
    for (i, (subject, listed)) in fallback.into_iter().enumerate() {
        let index = digest(5, i);
        g.nodes.insert(
            index.clone(),
            Node {
                media_type: media_type::OCI_INDEX.into(),
                kind: ManifestKind::Index,
                blobs: Vec::new(),
                children: listed,
                ..image(0, 0, None)
            },
        );
        g.tags.insert(subject.referrers_tag(), index);
    }
    // The edges scan derives: `subject` fields, then referrer tags and fallback indexes.
    let subjects: Vec<(Digest, Digest)> = g
        .nodes
        .iter()
        .filter_map(|(d, n)| Some((n.subject.clone()?, d.clone())))
        .collect();
    for (subject, referrer) in subjects {
        g.referrers.entry(subject).or_default().insert(referrer);
    }
    crate::graph::add_tag_referrers(&mut g);
    g
}

fn verdicts(g: &RepoGraph, keep: &[Option<bool>]) -> Decisions {
    Decisions {
        rule: Some("random".into()),
        verdicts: g
            .policy_tags()
            .enumerate()
            .filter_map(|(i, (tag, _))| {
                keep[i % keep.len()].map(|keep| TagDecision {
                    tag: tag.clone(),
                    verdict: if keep { Verdict::Keep } else { Verdict::Delete },
                    reason: "random".into(),
                })
            })
            .collect(),
        ..Decisions::default()
    }
}

/// Checks every invariant of `plan` against `g` and `decisions`; returns what is wrong.
fn check(g: &RepoGraph, decisions: &Decisions, repo: &RepoPlan) -> Result<(), String> {
    if decisions.refused.is_some() {
        // A guard refused the decisions: nothing at all may happen.
        return match repo.actions.is_empty() && repo.tags.iter().all(|t| t.action == TagAction::Keep) {
            true => Ok(()),
            false => Err("a refused repository has actions".into()),
        };
    }
    let deleted = repo.deleted_manifests();
    let untagged: HashSet<&str> = repo
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Untag { tag, .. } => Some(tag.as_str()),
            _ => None,
        })
        .collect();
    // The tags that remain afterwards.
    let remaining: BTreeMap<&String, &Digest> = g
        .tags
        .iter()
        .filter(|(t, d)| !untagged.contains(t.as_str()) && !deleted.contains(d))
        .collect();
    let needed = g.closure(remaining.values().copied());
    let verdict: HashMap<&str, bool> = decisions
        .verdicts
        .iter()
        .map(|v| (v.tag.as_str(), v.keeps()))
        .collect();

    for (tag, digest) in g.policy_tags() {
        let kept = verdict.get(tag.as_str()).copied().unwrap_or(true);
        // Kept tags keep their digest; deleted ones are gone.
        if kept && remaining.get(tag) != Some(&digest) {
            return Err(format!("kept tag {tag} does not survive"));
        }
        if !kept && remaining.contains_key(tag) {
            return Err(format!("tag {tag} decided for deletion survives"));
        }
    }
    // Nothing deleted is needed by anything kept: children, config/layers (they go with their
    // manifest), referrers.
    if let Some(d) = deleted.iter().find(|d| needed.contains(**d)) {
        return Err(format!("deleted {d} is needed by a remaining tag"));
    }
    for action in &repo.actions {
        match action {
            // Untag only where the digest stays because kept content needs it.
            Action::Untag { tag, digest } => {
                if !needed.contains(digest) || deleted.contains(digest) {
                    return Err(format!("untag of {tag} where the digest is not kept"));
                }
            }
            // A deletion names exactly the tags that go with it.
            Action::DeleteManifest { digest, tags, .. } => {
                if *tags != g.tags_of(digest) {
                    return Err(format!("delete of {digest} lists {tags:?}"));
                }
            }
            Action::RemovePlaceholder { .. } => return Err("no leftovers here".into()),
        }
    }
    // Referrers live and die with their subject: no remaining tag is a referrer of a deleted
    // subject, and every referrer of a deleted subject is deleted unless kept content needs it.
    for (tag, digest) in &remaining {
        if let Some(subject) = g.tag_subject(tag, digest)
            && deleted.contains(&subject)
        {
            return Err(format!("tag {tag} is left as an orphaned referrer of {subject}"));
        }
    }
    for (subject, referrers) in &g.referrers {
        if deleted.contains(subject) {
            for r in referrers {
                if !deleted.contains(r) && !needed.contains(r) {
                    return Err(format!("referrer {r} of deleted {subject} is left behind"));
                }
            }
        }
    }
    // Whatever refers to a deleted manifest is deleted in an earlier phase.
    let phase: HashMap<&Digest, u32> = repo
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::DeleteManifest { digest, phase, .. } => Some((digest, *phase)),
            _ => None,
        })
        .collect();
    for (parent, node) in &g.nodes {
        for child in &node.children {
            if let (Some(p), Some(c)) = (phase.get(parent), phase.get(child))
                && p >= c
            {
                return Err(format!("index {parent} is not deleted before its child {child}"));
            }
        }
    }
    for (subject, referrers) in &g.referrers {
        for r in referrers {
            if let (Some(s), Some(r_phase)) = (phase.get(subject), phase.get(r))
                && r_phase >= s
            {
                return Err(format!(
                    "referrer {r} is not deleted before its subject {subject}"
                ));
            }
        }
    }
    Ok(())
}

fn plan_one(g: &RepoGraph, decisions: &Decisions) -> RepoPlan {
    let map = BTreeMap::from([("app".to_owned(), decisions.clone())]);
    plan("reg", std::slice::from_ref(g), &map, "now")
        .repositories
        .remove(0)
}

/// Real policies, as a user would write them.
const POLICIES: &[&str] = &[
    "rules:\n  - repos: \"**\"\n    keep: [{tags: [t1, t2]}]\n",
    "rules:\n  - repos: \"**\"\n    keep: [{newest: 2, order: name}]\n",
    "rules:\n  - repos: \"**\"\n    keep: [{tags: \"t1*\"}]\n    delete: [{tags: [\"t*\"]}]\n",
    "protect: {min-tags: 0, allow-delete-all: true}\nrules:\n  - repos: \"**\"\n    delete: [{tags: \"*\"}]\n",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn plans_keep_the_safety_invariants(shape in shape()) {
        let g = build(&shape);
        let decisions = verdicts(&g, &shape.verdicts);
        let repo = plan_one(&g, &decisions);
        if let Err(problem) = check(&g, &decisions, &repo) {
            return Err(TestCaseError::fail(format!("{problem}\ngraph: {g:#?}\nplan: {repo:#?}")));
        }
        // apply's review of the unchanged repository accepts exactly the planned deletions.
        let review = crate::apply::review::review(&repo, &g, &[], false);
        prop_assert!(review.refused.is_empty() && review.skipped.is_empty(), "{review:?}");
        let reviewed: HashSet<Digest> = review.phases.values().flatten().map(|d| d.digest.clone()).collect();
        let planned: HashSet<Digest> = repo.actions.iter().filter_map(|a| match a {
            Action::DeleteManifest { digest, .. } => Some(digest.clone()),
            _ => None,
        }).collect();
        prop_assert_eq!(reviewed, planned);
    }

    #[test]
    fn real_policies_keep_the_safety_invariants(shape in shape(), which in 0..POLICIES.len()) {
        let g = build(&shape);
        let policy = crate::policy::Policy::from_yaml(POLICIES[which], "policy.yaml").unwrap();
        let decisions = crate::retention::decide(&policy, &g, jiff::Timestamp::UNIX_EPOCH);
        let repo = plan_one(&g, &decisions);
        if let Err(problem) = check(&g, &decisions, &repo) {
            return Err(TestCaseError::fail(format!("{problem}\ngraph: {g:#?}\nplan: {repo:#?}")));
        }
    }
}
