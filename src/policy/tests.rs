//! Tests of the policy engine: parsing and its errors, the six required cases over realistic
//! tag lists, ranking, groups, guards, unknown facts, digests, flags, and properties.

use std::collections::BTreeMap;
use std::path::Path;

use jiff::{SignedDuration, Timestamp};

use super::*;

fn now() -> Timestamp {
    "2026-06-01T00:00:00Z".parse().unwrap()
}

fn days_ago(days: i64) -> Timestamp {
    now() - SignedDuration::from_hours(24 * days)
}

fn digest_of(tag: &str) -> Digest {
    Digest::sha256(tag.as_bytes())
}

/// A tag created `days` days before [`now`] (`None`: no created time).
fn tag(name: &str, days: Option<i64>) -> TagFacts {
    TagFacts {
        tag: name.to_owned(),
        digest: digest_of(name),
        children: Vec::new(),
        created: days.map(days_ago),
        pushed: None,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
    }
}

/// A realistic repository: releases, a release candidate, numeric build tags, branch and PR tags.
fn sample() -> Vec<TagFacts> {
    [
        ("latest", 1),
        ("stable", 20),
        ("main", 2),
        ("v2.1.0", 3),
        ("v2.0.0", 40),
        ("v2.0.0-rc1", 45),
        ("v1.10.0", 60),
        ("v1.9.3", 90),
        ("1.2", 400),
        ("1002", 5),
        ("950", 100),
        ("949", 110),
        ("pr-12", 10),
        ("pr-13", 35),
        ("sha-abc", 50),
    ]
    .into_iter()
    .map(|(name, days)| tag(name, Some(days)))
    .collect()
}

fn policy(yaml: &str) -> Policy {
    Policy::from_yaml(yaml, "policy.yaml").unwrap_or_else(|err| panic!("{err}"))
}

/// The error of a policy with one mistake: exactly one error, none that follows from it.
fn error(yaml: &str) -> PolicyError {
    match Policy::from_yaml(yaml, "policy.yaml") {
        Ok(_) => panic!("should be rejected:\n{yaml}"),
        Err(errors) => only(errors),
    }
}

#[track_caller]
fn only(errors: PolicyErrors) -> PolicyError {
    match errors.errors() {
        [err] => err.clone(),
        all => panic!("expected one error, got {}:\n{errors}", all.len()),
    }
}

fn at(err: &PolicyError) -> (usize, usize) {
    match err.location() {
        Location::Line { line, column } => (*line, *column),
        Location::Flag(flag) => panic!("flag location {flag}: {err}"),
    }
}

fn decide(policy: &Policy, tags: &[TagFacts]) -> RepoDecision {
    policy.decide("app/web", tags, now())
}

fn with_verdict(decision: &RepoDecision, verdict: Verdict) -> Vec<&str> {
    decision
        .tags
        .iter()
        .filter(|t| t.verdict == verdict)
        .map(|t| t.tag.as_str())
        .collect()
}

fn kept(decision: &RepoDecision) -> Vec<&str> {
    with_verdict(decision, Verdict::Keep)
}

fn deleted(decision: &RepoDecision) -> Vec<&str> {
    with_verdict(decision, Verdict::Delete)
}

fn reason<'a>(decision: &'a RepoDecision, tag: &str) -> &'a str {
    &decision
        .tags
        .iter()
        .find(|t| t.tag == tag)
        .unwrap_or_else(|| panic!("no decision for {tag}"))
        .reason
}

// ---------------------------------------------------------------------------------------------
// The six cases the policy language must express.

#[test]
fn case_delete_versions_below_2() {
    let p = policy("rules:\n  - repos: \"**\"\n    delete:\n      - semver: \"<2.0.0\"\n");
    let d = decide(&p, &sample());
    assert_eq!(deleted(&d), ["1.2", "v1.9.3", "v1.10.0", "v2.0.0-rc1"]);
    assert_eq!(
        reason(&d, "v1.9.3"),
        "deleted: delete[0] semver <2.0.0 (version 1.9.3)"
    );
    assert_eq!(reason(&d, "latest"), "kept: matched by no delete selector");
    // 949 is version 949.0.0, not below 2.0.0.
    assert!(kept(&d).contains(&"949"));
    assert_eq!(d.rule.as_deref(), Some("rules[0] (repos: **)"));
    assert_eq!(d.refused, None);
}

#[test]
fn case_keep_only_the_newest_tag() {
    let p = policy("rules:\n  - repos: \"**\"\n    keep:\n      - newest: 1\n");
    let d = decide(&p, &sample());
    assert_eq!(kept(&d), ["latest"]);
    assert_eq!(reason(&d, "latest"), "kept: keep[0] newest 1 by time: #1 newest");
    assert_eq!(
        reason(&d, "main"),
        "deleted: not kept by any keep selector (no `delete` list)"
    );
}

#[test]
fn case_keep_the_newest_10() {
    let p = policy("rules:\n  - repos: \"**\"\n    keep:\n      - newest: 10\n");
    let d = decide(&p, &sample());
    assert_eq!(kept(&d).len(), 10);
    // The five oldest go.
    assert_eq!(deleted(&d), ["1.2", "949", "950", "v1.9.3", "v1.10.0"]);
}

#[test]
fn case_delete_older_than_30_days() {
    let p = policy("rules:\n  - repos: \"**\"\n    delete:\n      - older-than: 30d\n");
    let d = decide(&p, &sample());
    assert_eq!(
        deleted(&d),
        [
            "1.2",
            "949",
            "950",
            "pr-13",
            "sha-abc",
            "v1.9.3",
            "v1.10.0",
            "v2.0.0",
            "v2.0.0-rc1"
        ]
    );
    assert_eq!(
        reason(&d, "pr-13"),
        "deleted: delete[0] older-than 30d (created 2026-04-27T00:00:00Z, 35 days ago)"
    );
    assert_eq!(reason(&d, "stable"), "kept: matched by no delete selector");
}

#[test]
fn case_never_touch_latest() {
    let mut tags = sample();
    tags.iter_mut().find(|t| t.tag == "latest").unwrap().created = Some(days_ago(500));
    let p = policy(
        "rules:\n  - repos: \"**\"\n    keep:\n      - tags: latest\n    delete:\n      - older-than: 30d\n",
    );
    let d = decide(&p, &tags);
    assert!(kept(&d).contains(&"latest"));
    assert_eq!(
        reason(&d, "latest"),
        "kept: keep[0] tags: latest (beats delete[0] older-than 30d (created 2025-01-17T00:00:00Z, 500 days ago))"
    );
    // Even a rule that deletes everything else keeps it.
    let p = policy("rules:\n  - repos: \"**\"\n    keep: [{tags: latest}]\n");
    assert_eq!(kept(&decide(&p, &tags)), ["latest"]);
}

#[test]
fn case_keep_numeric_tags_from_950_and_latest() {
    let p = policy(
        r#"
rules:
  - repos: "**"
    keep:
      - tags: latest
      - tags-regex: '[0-9]+'
        semver: ">=950"
"#,
    );
    let d = decide(&p, &sample());
    assert_eq!(kept(&d), ["950", "1002", "latest"]);
    assert_eq!(
        reason(&d, "1002"),
        "kept: keep[1] tags-regex: [0-9]+, semver >=950 (version 1002.0.0)"
    );
    assert!(deleted(&d).contains(&"949"));
    assert!(deleted(&d).contains(&"v2.1.0"));
}

// ---------------------------------------------------------------------------------------------
// Rules, selectors and precedence.

#[test]
fn first_matching_rule_applies_and_unmatched_repos_are_untouched() {
    let p = policy(
        r#"
rules:
  - name: legacy
    repos: "app/legacy"
    delete: []
  - repos: ["app/*", "tools/**"]
    keep: [{tags: latest}]
"#,
    );
    let tags = sample();
    let legacy = p.decide("app/legacy", &tags, now());
    assert_eq!(
        legacy.rule.as_deref(),
        Some("rules[0] `legacy` (repos: app/legacy)")
    );
    assert!(legacy.deleted().next().is_none());
    let web = p.decide("app/web", &tags, now());
    assert_eq!(web.rule.as_deref(), Some("rules[1] (repos: app/*, tools/**)"));
    assert_eq!(kept(&web), ["latest"]);
    // `*` stops at `/`, `**` crosses it.
    assert!(!p.applies_to("app/web/nested"));
    assert!(p.applies_to("tools/a/b"));
    let other = p.decide("other", &tags, now());
    assert_eq!(other.rule, None);
    assert!(
        other
            .tags
            .iter()
            .all(|t| t.reason == "kept: no rule matches this repository")
    );
    assert_eq!(other.tags.len(), tags.len());
}

#[test]
fn conditions_are_anded_and_selectors_ored() {
    let p = policy(
        r#"
rules:
  - repos: "**"
    delete:
      - tags: "pr-*"
        older-than: 30d
      - tags: ["sha-*", "main"]
"#,
    );
    let d = decide(&p, &sample());
    assert_eq!(deleted(&d), ["main", "pr-13", "sha-abc"]);
    assert_eq!(
        reason(&d, "pr-13"),
        "deleted: delete[0] tags: pr-*, older-than 30d (created 2026-04-27T00:00:00Z, 35 days ago)"
    );
    assert_eq!(reason(&d, "sha-abc"), "deleted: delete[1] tags: sha-*");
}

#[test]
fn missing_delete_deletes_everything_not_kept_and_empty_delete_deletes_nothing() {
    let all = policy("rules:\n  - repos: \"**\"\n    keep: [{tags: \"v*\"}]\n");
    let d = decide(&all, &sample());
    assert_eq!(kept(&d), ["v1.9.3", "v1.10.0", "v2.0.0", "v2.0.0-rc1", "v2.1.0"]);
    let none = policy("rules:\n  - repos: \"**\"\n    keep: [{tags: \"v*\"}]\n    delete: []\n");
    assert!(decide(&none, &sample()).deleted().next().is_none());
}

#[test]
fn globs_and_regexes() {
    let p = policy(
        r#"
rules:
  - repos: "**"
    keep:
      - tags: "v[0-9]*.0"
      - tags: "{main,stable}"
      - tags-regex: ['pr-1\d', 'sha-.*']
"#,
    );
    let d = decide(&p, &sample());
    assert_eq!(
        kept(&d),
        [
            "main", "pr-12", "pr-13", "sha-abc", "stable", "v1.10.0", "v2.0.0", "v2.1.0"
        ]
    );
    // Regexes are anchored: `pr-1` alone does not match `pr-12`.
    let anchored = policy("rules:\n  - repos: \"**\"\n    delete: [{tags-regex: 'pr-1'}]\n");
    assert!(decide(&anchored, &sample()).deleted().next().is_none());
}

#[test]
fn version_conditions_never_match_non_versions() {
    let p = policy("rules:\n  - repos: \"**\"\n    delete: [{semver: \"*\"}]\n");
    let d = decide(&p, &sample());
    assert_eq!(
        kept(&d),
        ["latest", "main", "pr-12", "pr-13", "sha-abc", "stable"]
    );
}

// ---------------------------------------------------------------------------------------------
// Ranking: newest/oldest by each order, groups.

fn named(names: &[(&str, i64)]) -> Vec<TagFacts> {
    names.iter().map(|(name, days)| tag(name, Some(*days))).collect()
}

#[test]
fn newest_by_semver_ranks_only_versions() {
    let p = policy("rules:\n  - repos: \"**\"\n    keep: [{newest: 3, order: semver}]\n");
    let d = decide(&p, &sample());
    assert_eq!(kept(&d), ["949", "950", "1002"]);
    assert_eq!(reason(&d, "1002"), "kept: keep[0] newest 3 by semver: #1 newest");
    // Other conditions narrow the tags first; a pre-release is lower than its release.
    let p = policy("rules:\n  - repos: \"**\"\n    keep: [{tags: \"v*\", newest: 2, order: semver}]\n");
    assert_eq!(kept(&decide(&p, &sample())), ["v2.0.0", "v2.1.0"]);
    // The rule's order is the default for its selectors.
    let p = policy("rules:\n  - repos: \"**\"\n    order: semver\n    keep: [{tags: \"v*\", newest: 1}]\n");
    assert_eq!(kept(&decide(&p, &sample())), ["v2.1.0"]);
}

#[test]
fn newest_by_time_breaks_ties_by_name() {
    let tags = named(&[("a", 3), ("c", 3), ("b", 3), ("old", 9)]);
    let p = policy("rules:\n  - repos: \"**\"\n    keep: [{newest: 2}]\n");
    assert_eq!(kept(&decide(&p, &tags)), ["b", "c"]);
    let p = policy("rules:\n  - repos: \"**\"\n    keep: [{newest: 1, order: time}]\n");
    assert_eq!(kept(&decide(&p, &tags)), ["c"]);
}

#[test]
fn newest_and_oldest_by_name_use_natural_order() {
    let tags = named(&[("pr-9", 1), ("pr-10", 2), ("pr-2", 3), ("main", 4)]);
    let p = policy("rules:\n  - repos: \"**\"\n    keep: [{tags: \"pr-*\", newest: 1, order: name}]\n");
    assert_eq!(kept(&decide(&p, &tags)), ["pr-10"]);
    let p = policy("rules:\n  - repos: \"**\"\n    delete: [{tags: \"pr-*\", oldest: 2, order: name}]\n");
    let d = decide(&p, &tags);
    assert_eq!(deleted(&d), ["pr-2", "pr-9"]);
    assert_eq!(
        reason(&d, "pr-9"),
        "deleted: delete[0] tags: pr-*, oldest 2 by name: #2 oldest"
    );
}

#[test]
fn groups_rank_per_capture() {
    let tags = named(&[
        ("v1.4.0", 50),
        ("v1.4.1", 40),
        ("v1.4.2", 30),
        ("v1.5.0", 20),
        ("v1.5.1", 10),
        ("v2.0.0", 5),
        ("latest", 1),
    ]);
    let p = policy(
        r#"
rules:
  - repos: "**"
    keep:
      - newest: 2
        order: semver
        group: '^v(\d+\.\d+)\.'
"#,
    );
    let d = decide(&p, &tags);
    assert_eq!(kept(&d), ["v1.4.1", "v1.4.2", "v1.5.0", "v1.5.1", "v2.0.0"]);
    assert_eq!(
        reason(&d, "v1.4.1"),
        r"kept: keep[0] newest 2 by semver per group of `^v(\d+\.\d+)\.`: #2 newest in group `1.4`"
    );
    // A tag outside every group is outside the selector.
    assert!(deleted(&d).contains(&"latest"));
}

// ---------------------------------------------------------------------------------------------
// Guards.

#[test]
fn min_tags_keeps_the_newest_would_be_deleted_tags() {
    let tags = named(&[("a", 40), ("b", 50), ("c", 60), ("d", 70)]);
    let p = policy("protect: {min-tags: 2}\nrules:\n  - repos: \"**\"\n    delete: [{older-than: 30d}]\n");
    let d = decide(&p, &tags);
    assert_eq!(kept(&d), ["a", "b"]);
    assert_eq!(d.refused, None);
    assert_eq!(
        reason(&d, "b"),
        "kept: min-tags 2 guard, one of the newest by time (otherwise deleted: delete[0] older-than 30d \
         (created 2026-04-12T00:00:00Z, 50 days ago))"
    );
    // Tags already kept count towards the minimum.
    let tags = named(&[("a", 10), ("b", 50), ("c", 60)]);
    assert_eq!(kept(&decide(&p, &tags)), ["a", "b"]);
    // By semver, versions come first, newest first.
    let p = policy(
        "rules:\n  - repos: \"**\"\n    order: semver\n    protect: {min-tags: 2}\n    keep: [{tags: keep-me}]\n",
    );
    let tags = named(&[("1.0", 1), ("2.0", 2), ("1.5", 3), ("zzz", 4)]);
    assert_eq!(kept(&decide(&p, &tags)), ["1.5", "2.0"]);
    // A minimum above the number of tags keeps them all.
    let p = policy("protect: {min-tags: 9}\nrules:\n  - repos: \"**\"\n    keep: [{tags: keep-me}]\n");
    assert!(decide(&p, &tags).deleted().next().is_none());
}

#[test]
fn deleting_every_tag_is_refused_unless_allowed() {
    let tags = named(&[("a", 40), ("b", 50)]);
    let p = policy("rules:\n  - repos: \"**\"\n    delete: [{older-than: 30d}]\n");
    let d = decide(&p, &tags);
    assert!(d.deleted().next().is_none());
    let refused = d.refused.as_deref().expect("refused");
    assert!(
        refused.contains("would delete all 2 tags of app/web"),
        "{refused}"
    );
    assert!(refused.contains("allow-delete-all: true"), "{refused}");
    assert!(
        reason(&d, "a")
            .starts_with("kept: refused to delete every tag (otherwise deleted: delete[0] older-than 30d")
    );

    let p = policy(
        "rules:\n  - repos: \"**\"\n    delete: [{older-than: 30d}]\n    protect: {allow-delete-all: true}\n",
    );
    let d = decide(&p, &tags);
    assert_eq!(deleted(&d), ["a", "b"]);
    assert_eq!(d.refused, None);

    // An empty repository is not "every tag deleted".
    assert_eq!(decide(&p, &[]).refused, None);
}

#[test]
fn rule_protect_overrides_the_global_one_key_by_key() {
    let tags = named(&[("a", 40), ("b", 50), ("c", 60)]);
    let p = policy(
        r#"
protect: {min-tags: 2, allow-delete-all: false}
rules:
  - repos: "strict/**"
    delete: [{older-than: 30d}]
  - repos: "loose/**"
    delete: [{older-than: 30d}]
    protect: {min-tags: 0, allow-delete-all: true}
  - repos: "**"
    delete: [{older-than: 30d}]
    protect: {min-tags: 1}
"#,
    );
    assert_eq!(kept(&p.decide("strict/x", &tags, now())), ["a", "b"]);
    assert!(kept(&p.decide("loose/x", &tags, now())).is_empty());
    assert_eq!(kept(&p.decide("other", &tags, now())), ["a"]);
    let summary = p.summary();
    assert_eq!(
        summary.rules[1].protect,
        Protect {
            min_tags: 0,
            allow_delete_all: true
        }
    );
    assert_eq!(
        summary.rules[2].protect,
        Protect {
            min_tags: 1,
            allow_delete_all: false
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Unknown facts are decided on the safe side.

#[test]
fn unknown_time_never_deletes() {
    let tags = vec![tag("no-time", None), tag("old", Some(90)), tag("keeper", Some(1))];
    let p = policy("rules:\n  - repos: \"**\"\n    delete: [{older-than: 30d}]\n");
    let d = decide(&p, &tags);
    assert_eq!(deleted(&d), ["old"]);
    assert_eq!(
        reason(&d, "no-time"),
        "kept: matched by no delete selector; delete[0] not applied: older-than 30d: time unknown (no created time)"
    );
    // On the keep side an unknown time keeps the tag.
    let p = policy("rules:\n  - repos: \"**\"\n    keep: [{newer-than: 14d}]\n");
    let d = decide(&p, &tags);
    assert_eq!(kept(&d), ["keeper", "no-time"]);
    assert_eq!(
        reason(&d, "no-time"),
        "kept: keep[0] newer-than 14d: time unknown (no created time), kept on the safe side"
    );
}

#[test]
fn unknown_time_in_rankings() {
    let tags = vec![tag("no-time", None), tag("a", Some(5)), tag("b", Some(9))];
    let keep = policy("rules:\n  - repos: \"**\"\n    keep: [{newest: 1}]\n");
    let d = decide(&keep, &tags);
    assert_eq!(kept(&d), ["a", "no-time"]);
    assert_eq!(
        reason(&d, "no-time"),
        "kept: keep[0] newest 1 by time: time unknown (no created time), kept on the safe side"
    );
    let delete = policy("rules:\n  - repos: \"**\"\n    delete: [{oldest: 3}]\n");
    let d = decide(&delete, &tags);
    assert_eq!(deleted(&d), ["a", "b"]);
    assert!(reason(&d, "no-time").contains("delete[0] not applied: oldest 3 by time: time unknown"));
}

#[test]
fn epoch_created_times_are_placeholders() {
    let mut reproducible = tag("reproducible", None);
    reproducible.created = Some(Timestamp::UNIX_EPOCH);
    let mut go_zero = tag("go-zero", None);
    go_zero.created = Some("0001-01-01T00:00:00Z".parse().unwrap());
    let p = policy("rules:\n  - repos: \"**\"\n    delete: [{older-than: 30d}]\n");
    let d = decide(&p, &[reproducible, go_zero, tag("old", Some(40))]);
    assert_eq!(deleted(&d), ["old"]);
    assert!(reason(&d, "reproducible").contains("created 1970-01-01T00:00:00Z is a placeholder"));
}

#[test]
fn labels_annotations_and_fallbacks() {
    let label = "org.opencontainers.image.created";
    let mut labelled = tag("labelled", Some(400));
    labelled
        .labels
        .insert(label.into(), "2026-05-22T00:00:00Z".into());
    let unlabelled = tag("unlabelled", Some(400));
    let mut garbage = tag("garbage", None);
    garbage.labels.insert(label.into(), "yesterday".into());
    let mut dated = tag("dated", Some(1));
    dated.labels.insert(label.into(), "2025-01-01".into());
    let mut epoch = tag("epoch", Some(1));
    epoch.labels.insert(label.into(), "1735689600".into());
    let p = policy(&format!(
        "rules:\n  - repos: \"**\"\n    delete:\n      - older-than: 30d\n        time: label:{label}\n        time-fallback: created\n"
    ));
    let d = decide(&p, &[labelled, unlabelled, garbage, dated, epoch]);
    assert_eq!(deleted(&d), ["dated", "epoch", "unlabelled"]);
    assert_eq!(
        reason(&d, "dated"),
        format!("deleted: delete[0] older-than 30d (label {label} 2025-01-01T00:00:00Z, 516 days ago)")
    );
    assert_eq!(
        reason(&d, "unlabelled"),
        "deleted: delete[0] older-than 30d (created 2025-04-27T00:00:00Z, 400 days ago)"
    );
    assert_eq!(
        reason(&d, "garbage"),
        format!(
            "kept: matched by no delete selector; delete[0] not applied: older-than 30d: time unknown \
             (label {label} `yesterday` is not a time; no created time)"
        )
    );
    assert_eq!(
        p.time_sources("x"),
        [TimeSource::Label(label.into()), TimeSource::Created]
    );

    let mut annotated = tag("annotated", None);
    annotated
        .annotations
        .insert("built".into(), "2026-01-01T12:00:00".into());
    let p =
        policy("rules:\n  - repos: \"**\"\n    time: annotation:built\n    delete: [{older-than: 30d}]\n");
    let d = decide(&p, &[annotated]);
    // Allowed to delete all: the refusal is not what this test is about.
    assert!(
        reason(&d, "annotated").contains("annotation built 2026-01-01T12:00:00Z"),
        "{d:?}"
    );
}

#[test]
fn time_sources_are_only_asked_for_when_needed() {
    let p = policy(
        r#"
rules:
  - repos: "tags-only/**"
    keep: [{tags: latest}, {newest: 3, order: name}]
    delete: [{semver: "<1"}]
  - repos: "guarded/**"
    keep: [{tags: latest}]
    protect: {min-tags: 1}
  - repos: "by-name/**"
    order: name
    keep: [{tags: latest}]
    protect: {min-tags: 1}
  - repos: "**"
    time: label:built
    time-fallback: [annotation:built, created]
    keep: [{newer-than: 7d}]
"#,
    );
    assert!(p.time_sources("tags-only/a").is_empty());
    assert_eq!(p.time_sources("guarded/a"), [TimeSource::Created]);
    assert!(p.time_sources("by-name/a").is_empty());
    assert_eq!(
        p.time_sources("x"),
        [
            TimeSource::Label("built".into()),
            TimeSource::Annotation("built".into()),
            TimeSource::Created
        ]
    );
    let none = policy("rules:\n  - repos: \"app/*\"\n    keep: [{newer-than: 7d}]\n");
    assert!(none.time_sources("other").is_empty());
    assert!(!none.applies_to("other"));
}

// ---------------------------------------------------------------------------------------------
// Digests.

#[test]
fn inline_digests_match_the_tag_or_its_children() {
    let mut index = tag("multi", Some(90));
    let child = Digest::sha256(b"child");
    index.children.push(child.clone());
    let p = policy(&format!(
        "rules:\n  - repos: \"**\"\n    keep:\n      - digests: [\"{}\", \"{child}\"]\n",
        digest_of("pr-12")
    ));
    let mut tags = sample();
    tags.push(index);
    let d = decide(&p, &tags);
    assert_eq!(kept(&d), ["multi", "pr-12"]);
    assert_eq!(
        reason(&d, "multi"),
        format!("kept: keep[0] digests: {} listed", child.short())
    );
}

#[test]
fn digests_files_are_loaded_by_the_caller() {
    let yaml = "rules:\n  - repos: \"**\"\n    keep: [{tags: latest}, {digests-file: deployed.txt}]\n    delete: [{older-than: 30d}, {digests-file: deployed.txt}]\n";
    let mut p = policy(yaml);
    assert_eq!(p.digests_files(), [Path::new("deployed.txt")]);
    // Not loaded: the keep side keeps everything, the delete side deletes nothing by digest.
    let d = decide(&p, &sample());
    assert!(d.deleted().next().is_none());
    assert!(reason(&d, "v1.9.3").contains("digests-file deployed.txt was not loaded, kept on the safe side"));

    let text = format!(
        "# deployed in production\n\n{}\nregistry.example.com/app/web@{}  # canary\n",
        digest_of("v1.9.3"),
        digest_of("950")
    );
    assert_eq!(
        p.attach_digests(Path::new("deployed.txt"), &text, "deployed.txt"),
        Ok(2)
    );
    let d = decide(&p, &sample());
    assert!(kept(&d).contains(&"v1.9.3"));
    assert!(kept(&d).contains(&"950"));
    assert_eq!(
        reason(&d, "950"),
        format!(
            "kept: keep[1] digests-file deployed.txt: {} listed (beats delete[0] older-than 30d (created 2026-02-21T00:00:00Z, 100 days ago))",
            digest_of("950").short()
        )
    );
    assert!(deleted(&d).contains(&"949"));

    let err = p
        .attach_digests(
            Path::new("deployed.txt"),
            "# ok\nsha256:abc\n",
            "/etc/deployed.txt",
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/etc/deployed.txt:2:1: `sha256:abc` is not a valid sha256 digest"),
        "{err}"
    );
    // Every bad line, not only the first.
    let err = p
        .attach_digests(
            Path::new("deployed.txt"),
            "sha256:abc\n# fine\nnope # canary\n",
            "deployed.txt",
        )
        .unwrap_err();
    let places: Vec<(usize, usize)> = err.errors().iter().map(at).collect();
    assert_eq!(places, [(1, 1), (3, 1)], "{err}");
    assert!(
        err.to_string().starts_with("2 errors in deployed.txt:\n"),
        "{err}"
    );
    let err = p
        .attach_digests(Path::new("other.txt"), "", "other.txt")
        .unwrap_err();
    assert!(
        err.to_string().contains("names no digests-file `other.txt`"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Flags mean what the equivalent YAML means.

fn same_decisions(flags: &PolicyFlags, yaml: &str, tags: &[TagFacts]) {
    let from_flags = Policy::from_flags(flags).unwrap_or_else(|err| panic!("{err}"));
    let from_yaml = policy(yaml);
    let a = decide(&from_flags, tags);
    let b = decide(&from_yaml, tags);
    assert_eq!(a.tags, b.tags, "flags {flags:?} vs\n{yaml}");
    assert_eq!(a.refused.is_some(), b.refused.is_some());
    assert_eq!(a.rule.as_deref(), Some("flags (repos: **)"));
}

#[test]
fn flags_build_the_same_policy_as_yaml() {
    let tags = sample();
    same_decisions(
        &PolicyFlags {
            delete_semver: Some("<2.0.0".into()),
            ..PolicyFlags::default()
        },
        "rules:\n  - repos: \"**\"\n    delete: [{semver: \"<2.0.0\"}]\n",
        &tags,
    );
    same_decisions(
        &PolicyFlags {
            keep_newest: Some(1),
            ..PolicyFlags::default()
        },
        "rules:\n  - repos: \"**\"\n    keep: [{newest: 1}]\n",
        &tags,
    );
    same_decisions(
        &PolicyFlags {
            keep_newest: Some(10),
            order: Some(Order::Semver),
            ..PolicyFlags::default()
        },
        "rules:\n  - repos: \"**\"\n    order: semver\n    keep: [{newest: 10}]\n",
        &tags,
    );
    same_decisions(
        &PolicyFlags {
            older_than: Some("30d".into()),
            ..PolicyFlags::default()
        },
        "rules:\n  - repos: \"**\"\n    delete: [{older-than: 30d}]\n",
        &tags,
    );
    same_decisions(
        &PolicyFlags {
            keep_tags: vec!["latest".into()],
            older_than: Some("30d".into()),
            ..PolicyFlags::default()
        },
        "rules:\n  - repos: \"**\"\n    keep: [{tags: latest}]\n    delete: [{older-than: 30d}]\n",
        &tags,
    );
    same_decisions(
        &PolicyFlags {
            keep_tags: vec!["latest".into()],
            keep_semver: Some(">=950".into()),
            ..PolicyFlags::default()
        },
        "rules:\n  - repos: \"**\"\n    keep: [{tags: latest}, {semver: \">=950\"}]\n",
        &tags,
    );
    // Delete flags are ANDed into one selector; guards and time sources carry over.
    same_decisions(
        &PolicyFlags {
            delete_tags: vec!["pr-*".into(), "sha-*".into()],
            older_than: Some("30d".into()),
            keep_newer_than: Some("2d".into()),
            time: Some("label:built".into()),
            min_tags: Some(3),
            allow_delete_all: true,
            ..PolicyFlags::default()
        },
        "rules:\n  - repos: \"**\"\n    time: label:built\n    keep: [{newer-than: 2d}]\n    delete: [{tags: [\"pr-*\", \"sha-*\"], older-than: 30d}]\n    protect: {min-tags: 3, allow-delete-all: true}\n",
        &tags,
    );
}

#[test]
fn flag_errors_name_the_flag() {
    let err = Policy::from_flags(&PolicyFlags::default()).unwrap_err();
    assert!(
        err.to_string().contains("no keep or delete condition given"),
        "{err}"
    );
    let err = only(
        Policy::from_flags(&PolicyFlags {
            older_than: Some("3x".into()),
            ..PolicyFlags::default()
        })
        .unwrap_err(),
    );
    assert_eq!(err.location(), &Location::Flag("--older-than"));
    assert!(
        err.to_string()
            .starts_with("--older-than: `3x` is not a duration; expected a duration"),
        "{err}"
    );
    let err = only(
        Policy::from_flags(&PolicyFlags {
            keep_newest: Some(0),
            ..PolicyFlags::default()
        })
        .unwrap_err(),
    );
    assert_eq!(err.location(), &Location::Flag("--keep-newest"));
    // `pushed` parses; whether it can be used depends on where the plan is made.
    let p = Policy::from_flags(&PolicyFlags {
        keep_newer_than: Some("30d".into()),
        time: Some("pushed".into()),
        ..PolicyFlags::default()
    })
    .unwrap();
    assert!(p.needs_push_times(None));
    assert!(p.needs_push_times(Some("app")));
    let created = Policy::from_flags(&PolicyFlags {
        keep_newer_than: Some("30d".into()),
        ..PolicyFlags::default()
    })
    .unwrap();
    assert!(!created.needs_push_times(None));
    let p = Policy::from_flags(&PolicyFlags {
        repos: vec!["app/*".into()],
        keep_digests_files: vec!["deployed.txt".into()],
        ..PolicyFlags::default()
    })
    .unwrap();
    assert!(p.applies_to("app/web") && !p.applies_to("lib/x"));
    assert_eq!(p.digests_files(), [Path::new("deployed.txt")]);
}

// ---------------------------------------------------------------------------------------------
// Parsing.

#[test]
fn every_key_parses() {
    let p = policy(
        r#"
# Every key of the language.
protect:
  min-tags: 1
  allow-delete-all: false
rules:
  - name: apps
    repos: ["app/**", "web"]
    order: semver
    time: label:org.opencontainers.image.created
    time-fallback: [created]
    protect: {min-tags: 2, allow-delete-all: true}
    keep:
      - tags: ["latest", "stable"]
      - tags-regex: '^v\d+$'
      - semver: ">=2.0.0"
        newest: 5
        order: semver
        group: '^v(\d+)\.'
      - newer-than: 14d
        time: annotation:built
        time-fallback: created
      - digests: ["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]
      - digests-file: deployed.txt
    delete:
      - tags: "pr-*"
        oldest: 3
        order: name
      - older-than: 90d
"#,
    );
    let summary = p.summary();
    assert_eq!(summary.source, "policy.yaml");
    let rule = &summary.rules[0];
    assert_eq!(rule.rule, "rules[0] `apps` (repos: app/**, web)");
    assert_eq!(rule.repos, ["app/**", "web"]);
    assert_eq!(rule.order, Order::Semver);
    assert_eq!(
        rule.protect,
        Protect {
            min_tags: 2,
            allow_delete_all: true
        }
    );
    assert_eq!(
        rule.keep,
        [
            "tags: latest, stable".to_owned(),
            r"tags-regex: ^v\d+$".to_owned(),
            r"semver >=2.0.0 and newest 5 by semver per group of `^v(\d+)\.`".to_owned(),
            "newer-than 14d (time: annotation:built, then created)".to_owned(),
            "digests: 1 listed".to_owned(),
            "digests-file deployed.txt (not loaded)".to_owned(),
        ]
    );
    assert_eq!(
        rule.delete.as_deref(),
        Some(
            &[
                "tags: pr-* and oldest 3 by name".to_owned(),
                "older-than 90d (time: label:org.opencontainers.image.created, then created)".to_owned()
            ][..]
        )
    );
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["rules"][0]["protect"]["min-tags"], 2);
    assert_eq!(
        json["rules"][0]["time"][0],
        "label:org.opencontainers.image.created"
    );
}

#[test]
fn plain_scalars_stay_text() {
    // `1.10` must not become the number 1.1, nor `950` the integer 950.
    let p = policy("rules:\n  - repos: \"**\"\n    keep: [{tags: 1.10}, {tags: 950}, {semver: 1.10}]\n");
    let tags = named(&[("1.10", 1), ("1.1", 2), ("950", 3)]);
    assert_eq!(kept(&decide(&p, &tags)), ["1.10", "950"]);
}

#[test]
fn anchors_and_aliases_are_expanded() {
    let p = policy(
        r#"
rules:
  - repos: "a/**"
    keep: &common
      - tags: latest
  - repos: "b/**"
    keep: *common
"#,
    );
    assert_eq!(kept(&p.decide("b/x", &sample(), now())), ["latest"]);
}

#[test]
fn empty_rules_touch_nothing() {
    let p = policy("rules: []\n");
    assert!(!p.applies_to("anything"));
}

/// Each broken policy with the line and column of the error and a part of its message.
#[test]
fn errors_have_line_column_and_expectation() {
    let cases: &[(&str, (usize, usize), &str)] = &[
        (
            "rules:\n  - repos: \"app/**\"\n    keep:\n      - tag: latest\n",
            (4, 9),
            "unknown key `tag` in selector keep[0] (did you mean `tags`?); expected one of: tags, tags-regex, semver, newest, oldest, order, group, older-than, newer-than, time, time-fallback, digests, digests-file",
        ),
        (
            "rule:\n  - repos: x\n",
            (1, 1),
            "unknown key `rule` in the policy (did you mean `rules`?); expected one of: rules, protect",
        ),
        (
            "rules:\n  - repos: x\n    kepp: []\n",
            (3, 5),
            "unknown key `kepp` in a rule (did you mean `keep`?)",
        ),
        (
            "protect: {min-tag: 1}\nrules: []\n",
            (1, 11),
            "unknown key `min-tag` in `protect` (did you mean `min-tags`?)",
        ),
        (
            "rules:\n  - repos: \"**\"\n    delete:\n      - tags: [\"ok-*\", \"[abc\"]\n",
            (4, 24),
            "bad glob `[abc`: unclosed character class",
        ),
        (
            "rules:\n  - repos: \"[x\"\n    keep: []\n",
            (2, 12),
            "bad glob `[x`",
        ),
        (
            "rules:\n  - repos: \"**\"\n    delete:\n      - tags-regex: \"(abc\"\n",
            (4, 21),
            "bad regex `(abc`: unclosed group",
        ),
        (
            "rules:\n  - repos: \"**\"\n    delete:\n      - semver: \">=abc\"\n",
            (4, 17),
            "bad version range `>=abc`: `abc` is not a version",
        ),
        (
            "rules:\n  - repos: \"**\"\n    delete:\n      - older-than: 30x\n",
            (4, 21),
            "`30x` is not a duration; expected a duration such as 30d",
        ),
        (
            "rules:\n  - repos: \"**\"\n    delete:\n      - older-than: 1mo\n",
            (4, 21),
            "`1mo` uses months or years",
        ),
        (
            "rules:\n  - repos: \"**\"\n    keep: latest\n",
            (3, 11),
            "`keep` is `latest`; expected a list of selectors",
        ),
        (
            "rules:\n  - repos: \"**\"\n    keep:\n      - newest: five\n",
            (4, 17),
            "`newest` is `five`; expected a whole number (1 or more)",
        ),
        (
            "rules:\n  - repos: \"**\"\n    keep:\n      - newest: 0\n",
            (4, 17),
            "`newest` is 0",
        ),
        (
            "protect:\n  min-tags: -1\nrules: []\n",
            (2, 13),
            "`min-tags` is `-1`; expected a whole number (0 or more)",
        ),
        (
            "protect:\n  allow-delete-all: yes\nrules: []\n",
            (2, 21),
            "`allow-delete-all` is `yes`; expected true or false",
        ),
        (
            "rules: {}\n",
            (1, 8),
            "`rules` is a mapping; expected a list of rules",
        ),
        ("rules:\n  - keep: []\n", (2, 5), "rules[0] has no `repos`"),
        (
            "rules:\n  - repos: \"**\"\n    delete:\n",
            (3, 5),
            "`delete` is empty (null); expected a list of selectors; write `delete: []`",
        ),
        (
            "rules:\n  - repos: \"**\"\n    keep:\n      - newest: 1\n        oldest: 1\n",
            (5, 9),
            "has both `newest` and `oldest`",
        ),
        (
            "rules:\n  - repos: \"**\"\n    keep:\n      - tags: x\n        order: semver\n",
            (5, 9),
            "`order` in selector keep[0] has no effect without `newest` or `oldest`",
        ),
        (
            "rules:\n  - repos: \"**\"\n    keep:\n      - tags: x\n        time: created\n",
            (5, 9),
            "`time` in selector keep[0] has no effect",
        ),
        (
            "rules:\n  - repos: \"**\"\n    keep:\n      - newest: 1\n        group: 'v\\d+'\n",
            (5, 16),
            "has 0 capture groups",
        ),
        (
            "rules:\n  - repos: \"**\"\n    keep:\n      - newest: 1\n        order: size\n",
            (5, 16),
            "unknown order `size`; expected semver, time or name",
        ),
        (
            "rules:\n  - repos: \"**\"\n    time: \"label:\"\n    keep: []\n",
            (3, 11),
            "`label:` names no key",
        ),
        (
            "rules:\n  - repos: \"**\"\n    keep:\n      - {}\n",
            (4, 9),
            "selector keep[0] has no condition",
        ),
        (
            "rules:\n  - repos: \"**\"\n    keep:\n      - digests: [\"sha256:abc\"]\n",
            (4, 19),
            "`sha256:abc` is not a valid sha256 digest",
        ),
        (
            "rules:\n  - repos: \"**\"\n    keep:\n      - tags: []\n",
            (4, 15),
            "`tags` is an empty list",
        ),
        (
            "rules:\n  - repos: x\n    repos: y\n",
            (3, 5),
            "duplicate key `repos` (first given on line 2)",
        ),
        ("rules: [\n", (1, 8), "invalid YAML: unclosed bracket"),
        ("rules: []\n---\nrules: []\n", (2, 1), "a second YAML document"),
        ("", (1, 1), "the policy is empty"),
        ("# only a comment\n", (1, 1), "the policy is empty"),
        ("- a\n", (1, 1), "the policy is a list"),
    ];
    for (yaml, expected_at, message) in cases {
        let err = error(yaml);
        let text = err.to_string();
        assert!(text.contains(message), "{yaml:?}: {text}");
        assert_eq!(at(&err), *expected_at, "{yaml:?}: {text}");
        assert!(
            text.starts_with(&format!("policy.yaml:{}:{}: ", expected_at.0, expected_at.1)),
            "{text}"
        );
        assert!(text.contains("; expected "), "{text}");
    }
}

#[test]
fn long_comments_and_deep_nesting() {
    let mut yaml = String::from("rules:\n  - repos: \"**\"\n    keep:\n");
    for i in 0..500 {
        yaml.push_str(&format!("      # - tags: old-{i}\n"));
    }
    yaml.push_str("      - tags: latest\n");
    assert_eq!(policy(&yaml).summary().rules[0].keep, ["tags: latest"]);
    let deep = format!("rules: {}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(error(&deep).to_string().contains("invalid YAML"));
}

#[test]
fn alias_bombs_are_stopped() {
    let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..8 {
        let prev = i - 1;
        yaml.push_str(&format!(
            "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    let err = error(&yaml);
    assert!(err.to_string().contains("more than 100000 nodes"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Every mistake at once.

/// Every error of a policy as `(line, column, message)`.
fn errors(yaml: &str) -> Vec<(usize, usize, String)> {
    let Err(errors) = Policy::from_yaml(yaml, "p.yaml") else {
        panic!("should be rejected:\n{yaml}");
    };
    errors
        .errors()
        .iter()
        .map(|err| {
            let (line, column) = at(err);
            (line, column, err.to_string())
        })
        .collect()
}

#[test]
fn every_mistake_in_a_file_is_reported_in_source_order() {
    let yaml = "\
protect: {min-tags: -1}
rules:
  - repos: \"app/**\"
    keep:
      - newest: five
        order: size
      - tags: [\"ok\", \"[bad\"]
    delete:
      - older-than: 30x
        tag: pr-*
  - repos: \"[x\"
    kepp: []
";
    let found = errors(yaml);
    let places: Vec<(usize, usize)> = found.iter().map(|(line, column, _)| (*line, *column)).collect();
    assert_eq!(
        places,
        [
            (1, 21),
            (5, 17),
            (6, 16),
            (7, 22),
            (9, 21),
            (10, 9),
            (11, 12),
            (12, 5)
        ],
        "{found:#?}"
    );
    let expected = [
        "p.yaml:1:21: `min-tags` is `-1`",
        "p.yaml:5:17: `newest` is `five`",
        "p.yaml:6:16: unknown order `size`",
        "p.yaml:7:22: bad glob `[bad`",
        "p.yaml:9:21: `30x` is not a duration",
        "p.yaml:10:9: unknown key `tag` in selector delete[0] (did you mean `tags`?)",
        "p.yaml:11:12: bad glob `[x`",
        "p.yaml:12:5: unknown key `kepp` in a rule (did you mean `keep`?)",
    ];
    for ((_, _, message), start) in found.iter().zip(expected) {
        assert!(
            message.starts_with(start),
            "{message:?} should start with {start:?}"
        );
    }

    let all = Policy::from_yaml(yaml, "p.yaml").unwrap_err();
    let text = all.to_string();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("8 errors in p.yaml:"));
    assert!(lines.all(|line| line.starts_with("  p.yaml:")), "{text}");
    assert_eq!(all.source_name(), "p.yaml");
}

/// A wrong value is reported, not the checks it makes fail further on: a selector whose only
/// condition is wrong does not also "have no condition", a misspelt key is not also missing.
#[test]
fn a_mistake_is_reported_once_not_its_consequences() {
    let cases: &[(&str, &[&str])] = &[
        (
            "rules:\n  - repos: x\n    delete:\n      - older-than: soon\n        time: created\n",
            &["`soon` is not a duration"],
        ),
        (
            "rules:\n  - repos: x\n    keep:\n      - newest: 0\n        order: name\n",
            &["`newest` is 0"],
        ),
        (
            "rulez: []\n",
            &["unknown key `rulez` in the policy (did you mean `rules`?)"],
        ),
        (
            "rules:\n  - repo: x\n    keep: [{tags: a}]\n",
            &["unknown key `repo` in a rule (did you mean `repos`?)"],
        ),
        (
            "rules:\n  - repos: x\n    keep: [{tags: [\"[a\", \"[b\"]}]\n",
            &["bad glob `[a`", "bad glob `[b`"],
        ),
    ];
    for (yaml, expected) in cases {
        let found = errors(yaml);
        assert_eq!(found.len(), expected.len(), "{yaml:?}: {found:#?}");
        for ((_, _, message), part) in found.iter().zip(expected.iter()) {
            assert!(
                message.contains(part),
                "{yaml:?}: {message:?} should contain {part:?}"
            );
        }
    }
}

#[test]
fn every_bad_flag_is_reported_and_a_yaml_syntax_error_stops_the_check() {
    let err = Policy::from_flags(&PolicyFlags {
        keep_newest: Some(0),
        older_than: Some("3x".into()),
        time: Some("when".into()),
        ..PolicyFlags::default()
    })
    .unwrap_err();
    let flags: Vec<&Location> = err.errors().iter().map(PolicyError::location).collect();
    assert_eq!(
        flags,
        [
            &Location::Flag("--time-source"),
            &Location::Flag("--keep-newest"),
            &Location::Flag("--older-than"),
        ],
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("3 errors in command-line flags:\n  --time-source: "),
        "{err}"
    );

    // Past a syntax error the rest of the text has no structure to check.
    let found = errors("rules:\n  - repos: [x\n    keep: {newest: five}\n");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].2.contains("invalid YAML"), "{found:#?}");
}

// ---------------------------------------------------------------------------------------------
// Properties.

mod properties {
    use proptest::prelude::*;

    use super::*;

    const NAMES: &[&str] = &[
        "latest",
        "stable",
        "main",
        "v1.0.0",
        "v1.2",
        "v2.0.0-rc1",
        "v2.0.0",
        "v2.1.3",
        "v10.0",
        "950",
        "949",
        "1002",
        "pr-1",
        "pr-12",
        "sha-abc",
        "nightly-2026-01-02",
    ];

    const POLICIES: &[&str] = &[
        "keep: [{tags: latest}, {newest: 3}]\n    delete: [{older-than: 30d}, {semver: \"<2\"}]",
        "keep: [{newest: 2, order: semver, group: '^v(\\d+)\\.'}]\n    delete: [{tags: \"pr-*\"}, {oldest: 4, order: name}]",
        "keep: [{semver: \">=950\", tags-regex: '\\d+'}, {newer-than: 20d}]",
        "keep: [{tags: [\"v*\", main], newest: 4, order: time}]\n    delete: [{older-than: 10d, tags: \"*\"}]",
        "keep: [{oldest: 2, order: name}]\n    delete: [{newest: 5}]",
    ];

    fn tags_strategy() -> impl Strategy<Value = Vec<TagFacts>> {
        proptest::sample::subsequence(NAMES.to_vec(), 0..NAMES.len()).prop_flat_map(|names| {
            let n = names.len();
            (
                Just(names),
                proptest::collection::vec(proptest::option::weighted(0.85, 0i64..200), n),
            )
                .prop_map(|(names, days)| {
                    names
                        .iter()
                        .zip(days)
                        .map(|(name, days)| tag(name, days))
                        .collect()
                })
        })
    }

    fn build(body: &str, min_tags: usize, allow: bool) -> Policy {
        policy(&format!(
            "protect: {{min-tags: {min_tags}, allow-delete-all: {allow}}}\nrules:\n  - repos: \"**\"\n    {body}\n"
        ))
    }

    proptest! {
        #[test]
        fn input_order_does_not_matter(
            tags in tags_strategy(),
            which in 0..POLICIES.len(),
            min_tags in 0usize..3,
            allow: bool,
            seed: u64,
        ) {
            let p = build(POLICIES[which], min_tags, allow);
            let mut shuffled = tags.clone();
            let mut rng = fastrand::Rng::with_seed(seed);
            rng.shuffle(&mut shuffled);
            prop_assert_eq!(decide(&p, &tags), decide(&p, &shuffled));
        }

        #[test]
        fn keep_beats_delete(tags in tags_strategy(), which in 0..POLICIES.len()) {
            // Whatever a keep selector matches is kept, whatever the delete list says: the rule
            // with the most aggressive delete list keeps no fewer of those tags.
            let body = POLICIES[which];
            let keep_part = body.lines().next().unwrap_or_default();
            let aggressive = build(&format!("{keep_part}\n    delete: [{{tags: \"*\"}}]"), 0, true);
            let actual = build(body, 0, true);
            let kept_by_keep = decide(&aggressive, &tags);
            let decided = decide(&actual, &tags);
            for (a, b) in kept_by_keep.tags.iter().zip(&decided.tags) {
                prop_assert_eq!(&a.tag, &b.tag);
                if a.verdict == Verdict::Keep {
                    prop_assert_eq!(b.verdict, Verdict::Keep, "{} {}", a.reason, b.reason);
                }
            }
        }

        #[test]
        fn guards_hold(tags in tags_strategy(), which in 0..POLICIES.len(), min_tags in 0usize..4) {
            let p = build(POLICIES[which], min_tags, false);
            let d = decide(&p, &tags);
            let kept = d.tags.iter().filter(|t| t.verdict == Verdict::Keep).count();
            prop_assert!(kept >= min_tags.min(tags.len()));
            prop_assert!(tags.is_empty() || kept > 0);
            prop_assert_eq!(d.refused.is_some(), d.tags.iter().any(|t| t.reason.starts_with("kept: refused")));
        }

        #[test]
        fn arbitrary_yaml_never_panics(text in "[ -~\n]{0,200}") {
            let _ = Policy::from_yaml(&text, "fuzz.yaml");
        }

        #[test]
        fn arbitrary_versions_and_ranges_never_panic(a in "[v0-9.<>=!^~*x, -]{0,20}", b in "[v0-9.a-z+-]{0,20}") {
            if let (Ok(range), Some(version)) = (version::Range::parse(&a), version::Version::parse(&b)) {
                let _ = range.matches(&version);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// docs/policy.md: every YAML example is a valid policy, and every decision table is what the
// engine decides over the documented sample repository.

#[test]
fn documented_examples_hold() {
    let doc = include_str!("../../docs/policy.md");
    let cell = |text: &str| text.trim().trim_matches('`').to_owned();
    let mut sample: Vec<TagFacts> = Vec::new();
    let mut yaml_blocks = 0;
    let mut tables = 0;
    let mut last_yaml: Option<String> = None;
    let mut lines = doc.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "```yaml" {
            let mut block = String::new();
            for inner in lines.by_ref() {
                if inner == "```" {
                    break;
                }
                block.push_str(inner);
                block.push('\n');
            }
            Policy::from_yaml(&block, "docs/policy.md").unwrap_or_else(|err| panic!("{err}\n{block}"));
            yaml_blocks += 1;
            last_yaml = Some(block);
        } else if line == "| tag | created |" {
            lines.next();
            while let Some(row) = lines.next_if(|l| l.starts_with('|')) {
                let cells: Vec<&str> = row.split('|').collect();
                let days: i64 = cells[2].trim().trim_end_matches(" days ago").parse().unwrap();
                sample.push(tag(&cell(cells[1]), Some(days)));
            }
        } else if line == "| tag | decision | reason |" {
            lines.next();
            let yaml = last_yaml.as_deref().expect("a YAML block before the table");
            let decision = decide(&policy(yaml), &sample);
            let mut rows = 0;
            while let Some(row) = lines.next_if(|l| l.starts_with('|')) {
                let cells: Vec<&str> = row.splitn(4, '|').collect();
                let (name, action, reason) = (
                    cell(cells[1]),
                    cells[2].trim(),
                    cells[3].trim().trim_end_matches('|').trim(),
                );
                let actual = decision
                    .tags
                    .iter()
                    .find(|t| t.tag == name)
                    .unwrap_or_else(|| panic!("no tag {name}"));
                let want = if action == "keep" {
                    Verdict::Keep
                } else {
                    Verdict::Delete
                };
                assert_eq!(
                    (actual.verdict, actual.reason.as_str()),
                    (want, reason),
                    "{name} in\n{yaml}"
                );
                rows += 1;
            }
            assert_eq!(rows, sample.len(), "{yaml}");
            tables += 1;
        }
    }
    assert_eq!(sample.len(), 11);
    assert_eq!(tables, 6);
    assert!(yaml_blocks >= 10, "{yaml_blocks}");
}

#[test]
fn pushed_time_decides_by_the_push_not_the_build() {
    // Built long ago (a rebuilt base image keeps its old `created`), pushed recently: kept by
    // push time, deleted by created time. `new` is new either way (no guard trips).
    let tags: Vec<TagFacts> = [("fresh", 2), ("stale", 120)]
        .into_iter()
        .map(|(name, pushed_days)| TagFacts {
            pushed: Some(days_ago(pushed_days)),
            ..tag(name, Some(400))
        })
        .chain([
            tag("unknown", Some(400)),
            TagFacts {
                pushed: Some(days_ago(1)),
                ..tag("new", Some(1))
            },
        ])
        .collect();
    let by_push =
        policy("rules:\n  - repos: \"**\"\n    delete:\n      - older-than: 90d\n        time: pushed\n");
    let decision = by_push.decide("app", &tags, now());
    assert_eq!(deleted(&decision), ["stale"]);
    // A tag without a push time is never taken to be old.
    assert_eq!(kept(&decision), ["fresh", "new", "unknown"]);
    let reason = &decision.tags.iter().find(|t| t.tag == "stale").unwrap().reason;
    assert!(reason.contains("pushed"), "{reason}");
    let by_created = policy("rules:\n  - repos: \"**\"\n    delete:\n      - older-than: 90d\n");
    assert_eq!(
        deleted(&by_created.decide("app", &tags, now())),
        ["fresh", "stale", "unknown"]
    );
}
