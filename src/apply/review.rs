//! Which actions of a plan are still safe, judged against the repository as it is now.
//!
//! A plan file is input like any other: it may be old, or edited by hand. So `apply` does not
//! trust it to say what is safe. It reads the repository again and applies the planner's own
//! rules to the live graph: every tag that stays (kept, new, or moved since planning) is a root,
//! and nothing their closure needs (index children, referrers) is deleted. Deletions that only
//! became unsafe through a change since planning are skipped; those the plan should never have
//! asked for are refused (unless `rm --force` asked for exactly that). Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::digest::Digest;
use crate::graph::RepoGraph;
use crate::plan::{Action, RepoPlan, Role, TagAction};

/// Stable codes for per-item outcomes that are not "done" (docs/json.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The tag or manifest changed between planning and applying; left alone.
    ChangedSincePlanning,
    /// Already removed (by an earlier run or someone else).
    AlreadyGone,
    /// Kept content needs it; the plan asked for more than planning allows.
    NeededByKeptContent,
    /// The repository could not be read again before deleting; nothing was deleted in it.
    ReadFailed,
    /// The registry refused or failed the request.
    Registry,
    /// Reading or removing a file of the registry's storage failed (`--storage`).
    Storage,
    /// The backup could not be written, so nothing was removed.
    BackupFailed,
    /// Not attempted because something it depends on failed first.
    NotAttempted,
    /// No method to remove a single tag could be established on this registry.
    NoUntagMethod,
    /// An untag was interrupted and left the tag on regsweep's placeholder; the next run
    /// finishes it.
    UntagInterrupted,
}

/// One item that was not done, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemError {
    pub repository: String,
    /// `tag` or `@digest` (empty for the whole repository).
    pub target: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub code: ErrorCode,
    /// What happened, in words.
    pub detail: String,
}

impl ItemError {
    pub fn new(repository: &str, target: String, tags: Vec<String>, code: ErrorCode, detail: String) -> Self {
        Self {
            repository: repository.to_owned(),
            target,
            tags,
            code,
            detail,
        }
    }
}

/// A manifest deletion that passed the review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub digest: Digest,
    /// The tags that go with it, as they are now.
    pub tags: Vec<String>,
}

/// What is still to be done in one repository.
#[derive(Debug, Default)]
pub struct Review {
    /// Tags to remove, with the digest each must still point at.
    pub untags: Vec<(String, Digest)>,
    /// Tags left on regsweep's placeholders, to remove by deleting the placeholder.
    pub placeholders: Vec<(String, Digest)>,
    /// Deletions by phase: everything in a phase refers to nothing in a later one.
    pub phases: BTreeMap<u32, Vec<Deletion>>,
    pub skipped: Vec<ItemError>,
    pub refused: Vec<ItemError>,
}

/// Reviews `plan` against `live`, the repository read again just now; `gone` are planned
/// manifests the registry no longer has. With `force` (only `rm --force`), deletions that kept
/// content needs are allowed, but never those that a change since planning made unsafe.
pub fn review(plan: &RepoPlan, live: &RepoGraph, gone: &[Digest], force: bool) -> Review {
    let mut reviewer = Reviewer::new(plan, live, gone, force);
    let mut untags: BTreeMap<&str, &Digest> = BTreeMap::new();
    let mut placeholders: BTreeMap<&str, &Digest> = BTreeMap::new();
    for action in &plan.actions {
        match action {
            Action::Untag { tag, digest } => {
                untags.insert(tag, digest);
            }
            Action::RemovePlaceholder { tag, placeholder, .. } => {
                placeholders.insert(tag, placeholder);
            }
            Action::DeleteManifest { digest, tags, .. } => reviewer.deletion(digest, tags),
        }
    }
    reviewer.untags(untags);
    reviewer.placeholders(placeholders);
    reviewer.into_phases()
}

/// What a review needs to know about the live repository, and what it has decided so far.
struct Reviewer<'a> {
    plan: &'a RepoPlan,
    live: &'a RepoGraph,
    gone: &'a [Digest],
    force: bool,
    /// Live tags the plan does not remove (kept, new, or moved since planning).
    staying: BTreeSet<&'a str>,
    /// What new or moved tags need: deleting it was decided on a picture that no longer holds.
    needed_after_change: HashSet<Digest>,
    /// What every staying tag needs.
    needed: HashSet<Digest>,
    /// The live tags of each digest.
    tags_on: HashMap<&'a Digest, Vec<String>>,
    accepted: HashSet<Digest>,
    out: Review,
}

impl<'a> Reviewer<'a> {
    /// Sorts the live tags: those the plan removes (decided to delete or untag, still at the
    /// digest it saw), and every other one, which stays and protects what it needs.
    fn new(plan: &'a RepoPlan, live: &'a RepoGraph, gone: &'a [Digest], force: bool) -> Self {
        let decided: HashMap<&str, &crate::plan::TagPlan> =
            plan.tags.iter().map(|t| (t.tag.as_str(), t)).collect();
        let mut changed_roots: Vec<&Digest> = Vec::new();
        let mut planned_roots: Vec<&Digest> = Vec::new();
        let mut staying: BTreeSet<&str> = BTreeSet::new();
        for (tag, digest) in &live.tags {
            match decided.get(tag.as_str()) {
                Some(t) if t.digest == *digest && t.action != TagAction::Keep => {}
                Some(t) if t.digest == *digest => {
                    planned_roots.push(digest);
                    staying.insert(tag);
                }
                _ => {
                    changed_roots.push(digest);
                    staying.insert(tag);
                }
            }
        }
        Self {
            plan,
            live,
            gone,
            force,
            staying,
            needed_after_change: live.closure(changed_roots.iter().copied()),
            needed: live.closure(changed_roots.into_iter().chain(planned_roots)),
            tags_on: live.tags_by_digest(),
            accepted: HashSet::new(),
            out: Review::default(),
        }
    }

    fn issue(&self, target: String, tags: Vec<String>, code: ErrorCode, detail: String) -> ItemError {
        ItemError::new(&self.plan.repository, target, tags, code, detail)
    }

    /// A planned manifest deletion: accepted, skipped (gone, or changed since planning) or
    /// refused (kept content needs it).
    fn deletion(&mut self, digest: &Digest, tags: &[String]) {
        let live = self.live;
        let target = format!("@{digest}");
        let present = live.nodes.contains_key(digest) || self.tags_on.contains_key(digest);
        if self.gone.contains(digest) || (!present && !self.accepted.contains(digest)) {
            if !self.out.skipped.iter().any(|s| s.target == target) {
                let gone = self.issue(
                    target,
                    tags.to_vec(),
                    ErrorCode::AlreadyGone,
                    "already gone".into(),
                );
                self.out.skipped.push(gone);
            }
            return;
        }
        if self.accepted.contains(digest)
            || self
                .out
                .skipped
                .iter()
                .chain(&self.out.refused)
                .any(|s| s.target == target)
        {
            return; // listed twice
        }
        let tagged_now: Vec<&String> = self
            .tags_on
            .get(digest)
            .into_iter()
            .flatten()
            .filter(|t| self.staying.contains(t.as_str()))
            .collect();
        if self.needed_after_change.contains(digest) {
            let detail = if tagged_now.is_empty() {
                "changed since planning: a new or moved tag now needs it".to_owned()
            } else {
                format!("changed since planning: now also tagged {}", quoted(&tagged_now))
            };
            let skipped = self.issue(target, tags.to_vec(), ErrorCode::ChangedSincePlanning, detail);
            self.out.skipped.push(skipped);
        } else if self.needed.contains(digest) && !self.force {
            let refused = self.issue(
                target,
                tags.to_vec(),
                ErrorCode::NeededByKeptContent,
                format!(
                    "refused: {}; deleting it would break kept content, which planning never allows",
                    why_needed(live, digest, &tagged_now, &self.needed)
                ),
            );
            self.out.refused.push(refused);
        } else {
            self.accepted.insert(digest.clone());
            // Planned tags that moved elsewhere do not go with it; say so.
            for tag in tags {
                if live.tags.get(tag).is_some_and(|now| now != digest) {
                    let moved = self.issue(
                        tag.clone(),
                        Vec::new(),
                        ErrorCode::ChangedSincePlanning,
                        format!(
                            "changed since planning: it no longer points at {}, so it is not deleted",
                            digest.short()
                        ),
                    );
                    self.out.skipped.push(moved);
                }
            }
        }
    }

    /// Planned untags: done only where the tag still points at the planned digest.
    fn untags(&mut self, untags: BTreeMap<&str, &Digest>) {
        for (tag, digest) in untags {
            match self.live.tags.get(tag) {
                Some(now) if now == digest => self.out.untags.push((tag.to_owned(), digest.clone())),
                Some(now) => {
                    let moved = self.issue(
                        tag.to_owned(),
                        Vec::new(),
                        ErrorCode::ChangedSincePlanning,
                        format!("changed since planning: now points at {}", now.short()),
                    );
                    self.out.skipped.push(moved);
                }
                None => {
                    let gone = self.issue(
                        tag.to_owned(),
                        Vec::new(),
                        ErrorCode::AlreadyGone,
                        "already gone".into(),
                    );
                    self.out.skipped.push(gone);
                }
            }
        }
    }

    /// Every leftover placeholder is removed, also those that appeared after planning: they are
    /// regsweep's own, never the user's content. Planned ones no longer there are gone.
    fn placeholders(&mut self, planned: BTreeMap<&str, &Digest>) {
        for (tag, leftover) in &self.live.leftovers {
            self.out
                .placeholders
                .push((tag.clone(), leftover.placeholder.clone()));
        }
        for (tag, _) in planned {
            if !self.live.leftovers.contains_key(tag) {
                let gone = self.issue(
                    tag.to_owned(),
                    Vec::new(),
                    ErrorCode::AlreadyGone,
                    "already gone".into(),
                );
                self.out.skipped.push(gone);
            }
        }
    }

    /// Orders the accepted deletions: whatever refers to a manifest goes first, by the live
    /// graph's edges plus those the plan states (the manifests the plan deletes with their tags
    /// are not read again over the API).
    fn into_phases(mut self) -> Review {
        let stated: Vec<(Digest, Digest)> = self
            .plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::DeleteManifest { digest, role, .. } => match role {
                    Role::Child { parent } => Some((parent.clone(), digest.clone())),
                    Role::Referrer { subject } => Some((digest.clone(), subject.clone())),
                    Role::Tagged => None,
                },
                _ => None,
            })
            .collect();
        let phases = crate::plan::phases_with(self.live, &self.accepted, &stated);
        let mut sorted: Vec<&Digest> = self.accepted.iter().collect();
        sorted.sort();
        for digest in sorted {
            self.out
                .phases
                .entry(phases.get(digest).copied().unwrap_or(0))
                .or_default()
                .push(Deletion {
                    digest: digest.clone(),
                    tags: self.tags_on.get(digest).cloned().unwrap_or_default(),
                });
        }
        self.out
    }
}

/// Why kept content needs `digest`, for the refusal message.
fn why_needed(live: &RepoGraph, digest: &Digest, tagged_now: &[&String], needed: &HashSet<Digest>) -> String {
    if !tagged_now.is_empty() {
        return format!("kept tag(s) {} point at it", quoted(tagged_now));
    }
    let mut parents: Vec<String> = live
        .nodes
        .iter()
        .filter(|(p, n)| needed.contains(*p) && n.children.contains(digest))
        .map(|(p, _)| describe(live, p))
        .collect();
    parents.sort();
    if !parents.is_empty() {
        return format!("it is a child of kept index {}", parents.join(", "));
    }
    let mut subjects: Vec<String> = live
        .referrers
        .iter()
        .filter(|(s, refs)| needed.contains(*s) && refs.contains(digest))
        .map(|(s, _)| describe(live, s))
        .collect();
    subjects.sort();
    if !subjects.is_empty() {
        return format!("it is a referrer of kept {}", subjects.join(", "));
    }
    "kept content refers to it".to_owned()
}

fn describe(live: &RepoGraph, digest: &Digest) -> String {
    let tags = live.tags_of(digest);
    if tags.is_empty() {
        digest.short().to_owned()
    } else {
        format!("{} ({})", digest.short(), tags.join(", "))
    }
}

fn quoted(tags: &[&String]) -> String {
    tags.iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Bytes that deleting `done` makes reclaimable within this repository: blobs of the deleted
/// manifests that no remaining manifest of the live graph references. Blobs shared with other
/// repositories are not known here, so callers cap this with the plan's own figure.
pub fn freed_bytes(live: &RepoGraph, done: &HashSet<Digest>) -> u64 {
    let remaining: HashSet<Digest> = live
        .blobs_of(live.nodes.keys().filter(|d| !done.contains(*d)))
        .into_keys()
        .collect();
    live.blobs_of(done)
        .into_iter()
        .filter(|(d, _)| !remaining.contains(d))
        .map(|(_, size)| size)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{d, image, index, repo as graph};
    use crate::plan::{Decisions, plan};
    use crate::policy::{TagDecision, Verdict};

    fn planned(g: &RepoGraph, delete: &[&str]) -> RepoPlan {
        let decisions = Decisions {
            rule: Some("test".into()),
            verdicts: g
                .policy_tags()
                .map(|(t, _)| TagDecision {
                    tag: t.clone(),
                    verdict: if delete.contains(&t.as_str()) {
                        Verdict::Delete
                    } else {
                        Verdict::Keep
                    },
                    reason: "test".into(),
                })
                .collect(),
            ..Decisions::default()
        };
        let map = BTreeMap::from([("app".to_owned(), decisions)]);
        plan("reg", std::slice::from_ref(g), &map, "now")
            .repositories
            .remove(0)
    }

    fn deleted(r: &Review) -> Vec<Digest> {
        let mut v: Vec<Digest> = r.phases.values().flatten().map(|x| x.digest.clone()).collect();
        v.sort();
        v
    }

    fn multi_arch() -> RepoGraph {
        graph(
            &[("multi", 1), ("old", 4)],
            vec![
                (1, index(&[2, 3])),
                (2, image(&[(10, 1)])),
                (3, image(&[(11, 1)])),
                (4, image(&[(12, 1)])),
            ],
        )
    }

    #[test]
    fn an_unchanged_plan_passes_as_it_is() {
        let g = multi_arch();
        let p = planned(&g, &["old"]);
        let r = review(&p, &g, &[], false);
        assert_eq!(deleted(&r), vec![d(4)]);
        assert!(r.skipped.is_empty() && r.refused.is_empty());
    }

    #[test]
    fn a_hand_edited_deletion_of_a_kept_index_child_is_refused() {
        let g = multi_arch();
        let mut p = planned(&g, &["old"]);
        p.actions.push(Action::DeleteManifest {
            digest: d(2),
            media_type: String::new(),
            tags: Vec::new(),
            role: crate::plan::Role::Tagged,
            phase: 0,
        });
        let r = review(&p, &g, &[], false);
        assert_eq!(deleted(&r), vec![d(4)], "the child of `multi` stays");
        assert_eq!(r.refused.len(), 1);
        assert_eq!(r.refused[0].code, ErrorCode::NeededByKeptContent);
        assert!(
            r.refused[0].detail.contains("child of kept index"),
            "{:?}",
            r.refused
        );
        // `rm --force` may delete it.
        assert_eq!(deleted(&review(&p, &g, &[], true)), vec![d(2), d(4)]);
    }

    #[test]
    fn a_deletion_that_a_moved_tag_now_needs_is_skipped_not_refused() {
        let g = multi_arch();
        let p = planned(&g, &["old"]);
        let mut live = g.clone();
        live.tags.insert("multi".into(), d(4)); // moved onto the image planned for deletion
        let r = review(&p, &live, &[], true);
        assert!(deleted(&r).is_empty());
        assert_eq!(r.skipped[0].code, ErrorCode::ChangedSincePlanning);
        assert!(
            r.skipped[0].detail.contains("now also tagged `multi`"),
            "{:?}",
            r.skipped
        );
    }

    #[test]
    fn duplicated_and_already_done_actions_count_once() {
        let g = multi_arch();
        let mut p = planned(&g, &["old"]);
        let again = p.actions.clone();
        p.actions.extend(again);
        let r = review(&p, &g, &[], false);
        assert_eq!(r.phases.values().flatten().count(), 1);
        let mut live = g.clone();
        live.tags.remove("old");
        live.nodes.remove(&d(4));
        let r = review(&p, &live, &[d(4)], false);
        assert!(deleted(&r).is_empty());
        assert_eq!(r.skipped.len(), 1);
        assert_eq!(r.skipped[0].code, ErrorCode::AlreadyGone);
    }

    #[test]
    fn freed_bytes_leave_out_blobs_still_used() {
        let g = graph(
            &[("a", 1), ("b", 2)],
            vec![(1, image(&[(10, 1000), (11, 7)])), (2, image(&[(10, 1000)]))],
        );
        assert_eq!(freed_bytes(&g, &HashSet::from([d(1)])), 100 + 7);
        assert_eq!(freed_bytes(&g, &HashSet::from([d(1), d(2)])), 2 * 100 + 1007);
        assert_eq!(freed_bytes(&g, &HashSet::new()), 0);
    }
}
