//! Deciding: selectors over a repository's tags, then the guards.
//!
//! Each selector yields, per tag, a match (with the detail that goes into the reason), a miss,
//! or — on the delete side only — "blocked": everything definite matched but a fact was
//! unknown, so the tag is kept and the reason says which fact. On the keep side an unknown fact
//! counts as a match. Missing facts therefore always lead to keeping.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::version::{Version, natural_cmp};
use super::{
    Condition, Order, Policy, Rank, RepoDecision, Rule, Selector, TagDecision, TagFacts, TimeSource,
    TimeSpec, Verdict,
};
use crate::digest::Digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Keep,
    Delete,
}

/// The result of one condition for one tag.
enum Check {
    Yes(String),
    No,
    /// The condition depends on a fact that is missing; the text says which.
    Unknown(String),
}

/// The result of one selector for one tag.
#[derive(Debug, Clone)]
enum Hit {
    Match(String),
    Miss,
    /// Delete side: would match, but a fact is unknown.
    Blocked(String),
}

struct Tag<'a> {
    facts: &'a TagFacts,
    version: Option<Version>,
}

pub(super) fn decide(policy: &Policy, repository: &str, facts: &[TagFacts], now: Timestamp) -> RepoDecision {
    // Work in a canonical order so that the result does not depend on the input order.
    let mut tags: Vec<Tag<'_>> = facts
        .iter()
        .map(|facts| Tag {
            facts,
            version: Version::parse(&facts.tag),
        })
        .collect();
    tags.sort_by(|a, b| by_name(a, b));

    let Some(rule) = policy.rule_for(repository) else {
        return RepoDecision {
            rule: None,
            tags: tags
                .iter()
                .map(|t| TagDecision {
                    tag: t.facts.tag.clone(),
                    verdict: Verdict::Keep,
                    reason: "kept: no rule matches this repository".to_owned(),
                })
                .collect(),
            refused: None,
        };
    };

    let eval = Eval { policy, now };
    let keep: Vec<Vec<Hit>> = rule
        .keep
        .iter()
        .map(|s| eval.selector(s, Side::Keep, &tags))
        .collect();
    let delete: Option<Vec<Vec<Hit>>> = rule.delete.as_ref().map(|list| {
        list.iter()
            .map(|s| eval.selector(s, Side::Delete, &tags))
            .collect()
    });

    let mut decisions: Vec<TagDecision> = tags
        .iter()
        .enumerate()
        .map(|(i, tag)| {
            let first = |hits: &[Vec<Hit>]| {
                hits.iter()
                    .enumerate()
                    .find_map(|(j, per_tag)| match &per_tag[i] {
                        Hit::Match(detail) => Some((j, detail.clone())),
                        _ => None,
                    })
            };
            let keep_hit = first(&keep);
            let delete_hit = delete.as_deref().and_then(first);
            let (verdict, reason) = match (keep_hit, &delete) {
                (Some((j, detail)), _) => {
                    let mut reason = format!("kept: keep[{j}] {detail}");
                    if let Some((k, beaten)) = delete_hit {
                        reason.push_str(&format!(" (beats delete[{k}] {beaten})"));
                    }
                    (Verdict::Keep, reason)
                }
                (None, None) => (
                    Verdict::Delete,
                    "deleted: not kept by any keep selector (no `delete` list)".to_owned(),
                ),
                (None, Some(lists)) => match delete_hit {
                    Some((k, detail)) => (Verdict::Delete, format!("deleted: delete[{k}] {detail}")),
                    None => {
                        let mut reason = "kept: matched by no delete selector".to_owned();
                        for (k, per_tag) in lists.iter().enumerate() {
                            if let Hit::Blocked(why) = &per_tag[i] {
                                reason.push_str(&format!("; delete[{k}] not applied: {why}"));
                            }
                        }
                        (Verdict::Keep, reason)
                    }
                },
            };
            TagDecision {
                tag: tag.facts.tag.clone(),
                verdict,
                reason,
            }
        })
        .collect();

    let refused = guards(rule, repository, &tags, &mut decisions, &eval);
    RepoDecision {
        rule: Some(rule.label.clone()),
        tags: decisions,
        refused,
    }
}

/// `min-tags`, then the refusal to delete every tag. Returns the refusal message.
fn guards(
    rule: &Rule,
    repository: &str,
    tags: &[Tag<'_>],
    decisions: &mut [TagDecision],
    eval: &Eval<'_>,
) -> Option<String> {
    let kept = decisions.iter().filter(|d| d.verdict == Verdict::Keep).count();
    let min = rule.protect.min_tags;
    if kept < min {
        // The newest of the would-be-deleted tags, by the rule's order; tags that cannot be
        // ranked (no version, unknown time) come after the ranked ones.
        let mut candidates: Vec<usize> = (0..tags.len())
            .filter(|&i| decisions[i].verdict == Verdict::Delete)
            .collect();
        candidates.sort_by(|&a, &b| {
            let key_a = eval.key(&tags[a], rule.order, &rule.time).ok();
            let key_b = eval.key(&tags[b], rule.order, &rule.time).ok();
            match (key_a, key_b) {
                (Some(x), Some(y)) => cmp_ranked(&x, &tags[a], &y, &tags[b]).reverse(),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => by_name(&tags[a], &tags[b]).reverse(),
            }
        });
        for &i in candidates.iter().take(min - kept) {
            let decision = &mut decisions[i];
            let was = decision
                .reason
                .strip_prefix("deleted: ")
                .unwrap_or(&decision.reason);
            decision.reason = format!(
                "kept: min-tags {min} guard, one of the newest by {} (otherwise deleted: {was})",
                rule.order
            );
            decision.verdict = Verdict::Keep;
        }
    }
    let total = decisions.len();
    if total == 0 || rule.protect.allow_delete_all || decisions.iter().any(|d| d.verdict == Verdict::Keep) {
        return None;
    }
    for decision in decisions.iter_mut() {
        let was = decision
            .reason
            .strip_prefix("deleted: ")
            .unwrap_or(&decision.reason);
        decision.reason = format!("kept: refused to delete every tag (otherwise deleted: {was})");
        decision.verdict = Verdict::Keep;
    }
    Some(format!(
        "{} would delete all {total} tags of {repository}, so nothing is deleted there. If that is \
         intended, set `allow-delete-all: true` under `protect` (or pass --allow-delete-all); to keep \
         the newest tags whatever the rule says, set `min-tags`",
        rule.label
    ))
}

struct Eval<'p> {
    policy: &'p Policy,
    now: Timestamp,
}

/// What `newest`/`oldest` sort by.
enum Key {
    Version(Version),
    Time(Timestamp),
    Name,
}

impl Eval<'_> {
    fn selector(&self, selector: &Selector, side: Side, tags: &[Tag<'_>]) -> Vec<Hit> {
        let mut hits: Vec<Hit> = tags
            .iter()
            .map(|tag| {
                let mut details = Vec::new();
                let mut unknown = Vec::new();
                for condition in &selector.conditions {
                    match self.condition(condition, tag, &selector.time) {
                        Check::Yes(detail) => details.push(detail),
                        Check::No => return Hit::Miss,
                        Check::Unknown(why) => unknown.push(why),
                    }
                }
                if unknown.is_empty() {
                    return Hit::Match(details.join(", "));
                }
                match side {
                    Side::Keep => {
                        details.extend(
                            unknown
                                .into_iter()
                                .map(|why| format!("{why}, kept on the safe side")),
                        );
                        Hit::Match(details.join(", "))
                    }
                    Side::Delete => Hit::Blocked(unknown.join(", ")),
                }
            })
            .collect();
        if let Some(rank) = &selector.rank {
            self.rank(rank, side, &selector.time, tags, &mut hits);
        }
        hits
    }

    fn condition(&self, condition: &Condition, tag: &Tag<'_>, time: &TimeSpec) -> Check {
        let name = tag.facts.tag.as_str();
        match condition {
            Condition::Tags(globs) => match globs.iter().find(|(_, m)| m.is_match(name)) {
                Some((glob, _)) => Check::Yes(format!("tags: {glob}")),
                None => Check::No,
            },
            Condition::TagsRegex(regexes) => match regexes.iter().find(|(_, re)| re.is_match(name)) {
                Some((text, _)) => Check::Yes(format!("tags-regex: {text}")),
                None => Check::No,
            },
            Condition::Semver { text, range } => match &tag.version {
                Some(version) if range.matches(version) => {
                    Check::Yes(format!("semver {text} (version {version})"))
                }
                _ => Check::No,
            },
            Condition::OlderThan(age) | Condition::NewerThan(age) => {
                let older = matches!(condition, Condition::OlderThan(_));
                let word = if older { "older-than" } else { "newer-than" };
                match resolve_time(tag.facts, time) {
                    Ok((when, source)) => {
                        let elapsed = self.now.duration_since(when);
                        let is_older = elapsed >= age.duration;
                        if is_older == older {
                            Check::Yes(format!(
                                "{word} {} ({source} {}, {})",
                                age.text,
                                show(when),
                                ago(elapsed)
                            ))
                        } else {
                            Check::No
                        }
                    }
                    Err(why) => Check::Unknown(format!("{word} {}: time unknown ({why})", age.text)),
                }
            }
            Condition::Digests(set) => match listed(tag.facts, |d| set.contains(d)) {
                Some(digest) => Check::Yes(format!("digests: {} listed", digest.short())),
                None => Check::No,
            },
            Condition::DigestsFile(index) => {
                let file = &self.policy.digests_files[*index];
                match &file.digests {
                    Some(set) => match listed(tag.facts, |d| set.contains(d)) {
                        Some(digest) => Check::Yes(format!(
                            "digests-file {}: {} listed",
                            file.path.display(),
                            digest.short()
                        )),
                        None => Check::No,
                    },
                    None => Check::Unknown(format!("digests-file {} was not loaded", file.path.display())),
                }
            }
        }
    }

    fn key(&self, tag: &Tag<'_>, order: Order, time: &TimeSpec) -> Result<Key, String> {
        match order {
            Order::Semver => tag
                .version
                .clone()
                .map(Key::Version)
                .ok_or_else(|| "not a version".to_owned()),
            Order::Time => resolve_time(tag.facts, time).map(|(when, _)| Key::Time(when)),
            Order::Name => Ok(Key::Name),
        }
    }

    /// Narrows the matches of a selector to the newest/oldest N (per group).
    fn rank(&self, rank: &Rank, side: Side, time: &TimeSpec, tags: &[Tag<'_>], hits: &mut [Hit]) {
        let mut groups: BTreeMap<String, Vec<(usize, Key)>> = BTreeMap::new();
        for (i, tag) in tags.iter().enumerate() {
            let Hit::Match(detail) = &hits[i] else { continue };
            let group = match &rank.group {
                Some((_, re)) => match re.captures(&tag.facts.tag).and_then(|c| c.get(1)) {
                    Some(m) => m.as_str().to_owned(),
                    None => {
                        // Not in any group: outside this selector.
                        hits[i] = Hit::Miss;
                        continue;
                    }
                },
                None => String::new(),
            };
            match self.key(tag, rank.order, time) {
                Ok(key) => groups.entry(group).or_default().push((i, key)),
                Err(why) => {
                    hits[i] = match (rank.order, side) {
                        // A tag that is not a version is simply outside a semver ranking.
                        (Order::Semver | Order::Name, _) => Hit::Miss,
                        (Order::Time, Side::Keep) => Hit::Match(join(
                            detail,
                            &format!("{rank}: time unknown ({why}), kept on the safe side"),
                        )),
                        (Order::Time, Side::Delete) => Hit::Blocked(format!("{rank}: time unknown ({why})")),
                    };
                }
            }
        }
        for (group, mut members) in groups {
            members.sort_by(|(a, ka), (b, kb)| {
                let ord = cmp_ranked(ka, &tags[*a], kb, &tags[*b]);
                if rank.newest { ord.reverse() } else { ord }
            });
            for (position, (i, _)) in members.into_iter().enumerate() {
                let Hit::Match(detail) = &hits[i] else { continue };
                hits[i] = if position < rank.count {
                    let which = if rank.newest { "newest" } else { "oldest" };
                    let place = if rank.group.is_some() {
                        format!("{rank}: #{} {which} in group `{group}`", position + 1)
                    } else {
                        format!("{rank}: #{} {which}", position + 1)
                    };
                    Hit::Match(join(detail, &place))
                } else {
                    Hit::Miss
                };
            }
        }
    }
}

fn join(detail: &str, more: &str) -> String {
    if detail.is_empty() {
        more.to_owned()
    } else {
        format!("{detail}, {more}")
    }
}

/// Ascending order of ranked tags: by key, then by name, then by digest, so that it is total.
fn cmp_ranked(ka: &Key, a: &Tag<'_>, kb: &Key, b: &Tag<'_>) -> Ordering {
    let by_key = match (ka, kb) {
        (Key::Version(x), Key::Version(y)) => x.precedence(y),
        (Key::Time(x), Key::Time(y)) => x.cmp(y),
        _ => Ordering::Equal,
    };
    by_key.then_with(|| by_name(a, b))
}

fn by_name(a: &Tag<'_>, b: &Tag<'_>) -> Ordering {
    natural_cmp(&a.facts.tag, &b.facts.tag).then_with(|| a.facts.digest.cmp(&b.facts.digest))
}

/// The first of the tag's digest and its children's that `is_listed`.
fn listed(facts: &TagFacts, is_listed: impl Fn(&Digest) -> bool) -> Option<&Digest> {
    std::iter::once(&facts.digest)
        .chain(&facts.children)
        .find(|d| is_listed(d))
}

/// The tag's time from the first source that has one, with the source's name for reasons.
fn resolve_time(facts: &TagFacts, spec: &TimeSpec) -> Result<(Timestamp, String), String> {
    let mut why = Vec::new();
    for source in &spec.0 {
        match source {
            TimeSource::Created => match facts.created {
                // Reproducible builds stamp the Unix epoch (or Go's zero time) as `created`; such
                // an image is not 56 years old, its age is unknown.
                Some(created) if created <= Timestamp::UNIX_EPOCH => {
                    why.push(format!("created {} is a placeholder", show(created)));
                }
                Some(created) => return Ok((created, "created".to_owned())),
                None => why.push("no created time".to_owned()),
            },
            TimeSource::Pushed => match facts.pushed {
                Some(pushed) => return Ok((pushed, "pushed".to_owned())),
                None => why.push("no push time (known only with --storage)".to_owned()),
            },
            TimeSource::Label(key) | TimeSource::Annotation(key) => {
                let (kind, map) = match source {
                    TimeSource::Label(_) => ("label", &facts.labels),
                    _ => ("annotation", &facts.annotations),
                };
                match map.get(key) {
                    Some(value) => match parse_time(value) {
                        Some(when) => return Ok((when, format!("{kind} {key}"))),
                        None => why.push(format!("{kind} {key} `{value}` is not a time")),
                    },
                    None => why.push(format!("no {kind} {key}")),
                }
            }
        }
    }
    Err(why.join("; "))
}

/// A time written in a label or annotation: RFC 3339 (`2026-01-02T10:00:00Z`), a date and time
/// without offset (read as UTC), a date (midnight UTC), or Unix seconds.
pub(super) fn parse_time(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if let Ok(when) = text.parse::<Timestamp>() {
        return Some(when);
    }
    if let Ok(civil) = text.parse::<jiff::civil::DateTime>() {
        return civil
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp());
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .ok()
            .and_then(|s| Timestamp::from_second(s).ok());
    }
    None
}

fn show(when: Timestamp) -> String {
    when.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn ago(elapsed: SignedDuration) -> String {
    let seconds = elapsed.as_secs();
    if seconds < 0 {
        return "in the future".to_owned();
    }
    let hours = seconds / 3600;
    match hours {
        0 => format!("{} minutes ago", seconds / 60),
        1..48 => format!("{hours} hours ago"),
        _ => format!("{} days ago", hours / 24),
    }
}
