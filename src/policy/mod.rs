//! Retention policies: which tags of a repository to keep and which to delete, and why.
//!
//! A policy is written in YAML (docs/policy.md is the reference) or built from command-line
//! flags ([`PolicyFlags`]); both go through the same validation, so a flag means
//! exactly what the equivalent YAML means. [`Policy::decide`] is pure: given the facts about a
//! repository's tags and the current time, it returns every tag's decision with the rule and a
//! reason. Fetching those facts, following referrers and protecting digests shared between kept
//! and deleted tags is the planner's job.
//!
//! Precedence, in one place: the first rule whose `repos` matches the repository applies;
//! conditions inside a selector are ANDed and a list of selectors is ORed; keep beats delete; a
//! tag no delete selector matches is kept (without a `delete` list every tag not kept is
//! deleted); then the guards: `min-tags` keeps the newest would-be-deleted tags, and a rule that
//! would still delete every tag is refused unless `allow-delete-all` is set. Whenever a fact is
//! missing (no time, a digests file not loaded) the decision falls on the side of keeping.

mod decide;
mod errors;
mod parse;
pub mod version;
mod yaml;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use globset::{GlobMatcher, GlobSet};
use regex::Regex;
use serde::{Serialize, Serializer};

use crate::digest::Digest;
pub use errors::PolicyErrors;
use version::Range;

/// A validated policy with its globs and regexes compiled.
#[derive(Debug, Clone)]
pub struct Policy {
    source: String,
    rules: Vec<Rule>,
    digests_files: Vec<DigestsFile>,
}

#[derive(Debug, Clone)]
struct Rule {
    /// How reasons and plans name the rule, e.g. `rules[0] (repos: app/**)`.
    label: String,
    repos: Vec<String>,
    repos_set: GlobSet,
    keep: Vec<Selector>,
    /// `None`: no `delete` list, so every tag not kept is deleted.
    delete: Option<Vec<Selector>>,
    order: Order,
    time: TimeSpec,
    protect: Protect,
}

#[derive(Debug, Clone)]
struct Selector {
    conditions: Vec<Condition>,
    rank: Option<Rank>,
    /// Where times come from for this selector's time conditions and `order: time`.
    time: TimeSpec,
}

#[derive(Debug, Clone)]
enum Condition {
    Tags(Vec<(String, GlobMatcher)>),
    TagsRegex(Vec<(String, Regex)>),
    Semver {
        text: String,
        range: Range,
    },
    OlderThan(Age),
    NewerThan(Age),
    Digests(BTreeSet<Digest>),
    /// Index into [`Policy::digests_files`].
    DigestsFile(usize),
}

#[derive(Debug, Clone)]
struct Age {
    text: String,
    duration: jiff::SignedDuration,
}

#[derive(Debug, Clone)]
struct Rank {
    newest: bool,
    count: usize,
    order: Order,
    group: Option<(String, Regex)>,
}

/// A time source and its fallbacks, tried in order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TimeSpec(Vec<TimeSource>);

#[derive(Debug, Clone)]
struct DigestsFile {
    path: PathBuf,
    /// `None` until [`Policy::attach_digests`] loads it; a condition on it is then unknown.
    digests: Option<BTreeSet<Digest>>,
}

/// The guards of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Protect {
    /// Never leave the repository with fewer tags than this (the newest are kept).
    pub min_tags: usize,
    /// Allow a rule to delete every tag of a repository (refused otherwise).
    pub allow_delete_all: bool,
}

/// How `newest`/`oldest` and the `min-tags` guard order tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// By leniently parsed version; tags that are not versions are not ranked.
    Semver,
    /// By the time source (`created` by default); tags with an unknown time are not ranked.
    Time,
    /// By name in natural order (`v2` before `v10`).
    Name,
}

impl FromStr for Order {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "semver" => Ok(Self::Semver),
            "time" => Ok(Self::Time),
            "name" => Ok(Self::Name),
            other => Err(format!("unknown order `{other}`; expected semver, time or name")),
        }
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Semver => "semver",
            Self::Time => "time",
            Self::Name => "name",
        })
    }
}

/// Where a tag's time comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeSource {
    /// The image config's `created` (for an index, as the planner defines it).
    Created,
    /// An image config label, e.g. `org.opencontainers.image.created`.
    Label(String),
    /// A manifest annotation, e.g. `org.opencontainers.image.created`.
    Annotation(String),
    /// When the tag was last pushed: the modification time of its link in the registry's
    /// storage. Only planning on storage (`--storage`) knows it; the registry API does not.
    Pushed,
}

impl FromStr for TimeSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "created" {
            return Ok(Self::Created);
        }
        if s == "pushed" {
            // Only storage knows push times; planning over the API refuses a policy that needs
            // them (see `Policy::needs_push_times`) rather than keeping everything silently.
            return Ok(Self::Pushed);
        }
        let keyed = |prefix: &str| {
            s.strip_prefix(prefix).map(|key| {
                if key.is_empty() {
                    Err(format!("`{s}` names no key"))
                } else {
                    Ok(key.to_owned())
                }
            })
        };
        if let Some(key) = keyed("label:") {
            return key.map(Self::Label);
        }
        if let Some(key) = keyed("annotation:") {
            return key.map(Self::Annotation);
        }
        Err(format!("unknown time source `{s}`"))
    }
}

impl fmt::Display for TimeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Created => f.write_str("created"),
            Self::Label(key) => write!(f, "label:{key}"),
            Self::Annotation(key) => write!(f, "annotation:{key}"),
            Self::Pushed => f.write_str("pushed"),
        }
    }
}

impl Serialize for TimeSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The time sources a rule needs, in the order they are tried.
fn time_sources(rule: &Rule) -> Vec<TimeSource> {
    let mut sources: Vec<TimeSource> = Vec::new();
    let mut add = |spec: &TimeSpec| {
        for source in &spec.0 {
            if !sources.contains(source) {
                sources.push(source.clone());
            }
        }
    };
    for selector in rule.keep.iter().chain(rule.delete.iter().flatten()) {
        if selector.uses_time() {
            add(&selector.time);
        }
    }
    if rule.protect.min_tags > 0 && rule.order == Order::Time {
        add(&rule.time);
    }
    sources
}

/// What the policy knows about one tag. Fill `created`, `labels` and `annotations` only as far as
/// [`Policy::time_sources`] asks; a missing fact is treated as unknown (kept on the safe side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagFacts {
    pub tag: String,
    /// The digest the tag resolves to.
    pub digest: Digest,
    /// For an index (multi-platform image): its platform manifests' digests. A `digests`
    /// condition matches a tag whose digest or one of these is listed, since deployments often
    /// record the platform digest they pulled.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Digest>,
    /// The image config's `created`.
    #[serde(serialize_with = "serialize_time")]
    pub created: Option<jiff::Timestamp>,
    /// When the tag was last pushed (known only on storage).
    #[serde(serialize_with = "serialize_time")]
    pub pushed: Option<jiff::Timestamp>,
    /// The image config's labels.
    pub labels: BTreeMap<String, String>,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
}

fn serialize_time<S: Serializer>(time: &Option<jiff::Timestamp>, serializer: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => serializer.collect_str(time),
        None => serializer.serialize_none(),
    }
}

/// What the policy says about a tag: keep it or delete it. (What then happens to the tag, which
/// may be only an untag, is the plan's [`crate::plan::TagAction`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Keep,
    Delete,
}

/// The decision for one tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagDecision {
    pub tag: String,
    pub verdict: Verdict,
    /// Why, naming the selector or guard, e.g. `kept: keep[0] tags: latest` or
    /// `deleted: delete[1] older-than 90d (created 2026-01-02T10:00:00Z, 120 days ago)`.
    pub reason: String,
}

impl TagDecision {
    pub fn keeps(&self) -> bool {
        self.verdict == Verdict::Keep
    }
}

/// The decisions for one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepoDecision {
    /// The rule that applied, e.g. `rules[0] (repos: app/**)`; `None` when no rule matches (then
    /// every tag is kept).
    pub rule: Option<String>,
    /// One decision per tag, in natural tag order.
    pub tags: Vec<TagDecision>,
    /// Set when the rule would have deleted every tag and that is not allowed: every tag is then
    /// kept, and this says why and how to allow it.
    pub refused: Option<String>,
}

impl RepoDecision {
    /// The tags to delete.
    pub fn deleted(&self) -> impl Iterator<Item = &TagDecision> {
        self.tags.iter().filter(|t| t.verdict == Verdict::Delete)
    }
}

/// Where in the policy something is: a line and column of a file, or a command-line flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// 1-based line and column.
    Line {
        line: usize,
        column: usize,
    },
    Flag(&'static str),
}

/// A policy that cannot be used: where, what was wrong and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    source_name: String,
    location: Location,
    problem: String,
    expected: String,
}

impl PolicyError {
    pub(crate) fn new(
        source_name: &str,
        location: Location,
        problem: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        Self {
            source_name: source_name.to_owned(),
            location,
            problem: problem.into(),
            expected: expected.into(),
        }
    }

    /// The file (as named by the caller) or `command-line flags`.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// What was wrong.
    pub fn problem(&self) -> &str {
        &self.problem
    }

    /// What was expected there.
    pub fn expected(&self) -> &str {
        &self.expected
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::Line { line, column } => write!(f, "{}:{line}:{column}: ", self.source_name)?,
            Location::Flag(flag) => write!(f, "{flag}: ")?,
        }
        write!(f, "{}; expected {}", self.problem, self.expected)
    }
}

impl std::error::Error for PolicyError {}

/// The simple command-line form of a policy: one rule for the repositories matching `repos`.
/// Keep flags are separate keep selectors (any of them keeps a tag); delete flags are ANDed into
/// one delete selector; without delete flags every tag not kept is deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFlags {
    /// Repositories the rule applies to (globs; default `**`, every repository).
    pub repos: Vec<String>,
    /// Keep tags matching any of these globs.
    pub keep_tags: Vec<String>,
    /// Keep the newest N tags (by `order`).
    pub keep_newest: Option<usize>,
    /// Keep tags whose version is in this range.
    pub keep_semver: Option<String>,
    /// Keep tags newer than this duration.
    pub keep_newer_than: Option<String>,
    /// Keep tags whose digest is listed in these files.
    pub keep_digests_files: Vec<PathBuf>,
    /// Delete only tags matching one of these globs.
    pub delete_tags: Vec<String>,
    /// Delete only tags whose version is in this range.
    pub delete_semver: Option<String>,
    /// Delete only tags older than this duration.
    pub older_than: Option<String>,
    /// Order for `keep_newest` and the `min-tags` guard.
    pub order: Option<Order>,
    /// Time source for the time conditions and `order: time` (`created`, `label:KEY`, …).
    pub time: Option<String>,
    pub min_tags: Option<usize>,
    pub allow_delete_all: bool,
}

impl PolicyFlags {
    /// Whether any flag that makes a policy is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A readable description of a policy, for `regsweep policy check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicySummary {
    pub source: String,
    pub rules: Vec<RuleSummary>,
}

/// One rule in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RuleSummary {
    pub rule: String,
    pub repos: Vec<String>,
    pub keep: Vec<String>,
    /// `None`: every tag not kept is deleted.
    pub delete: Option<Vec<String>>,
    pub order: Order,
    pub time: Vec<TimeSource>,
    pub protect: Protect,
}

impl Policy {
    /// Parses and validates a YAML policy. `source_name` names the file in errors
    /// (`FILE:LINE:COL: …`). `digests-file` entries are listed by [`Policy::digests_files`] and
    /// must be loaded with [`Policy::attach_digests`]. Every mistake is reported, in source
    /// order; only a YAML syntax error stops the check where it is.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Policy, PolicyErrors> {
        let root = yaml::parse(text, source_name)?;
        parse::compile(root, source_name, false)
    }

    /// Builds the policy the flags describe, with the same semantics as the equivalent YAML rule.
    pub fn from_flags(flags: &PolicyFlags) -> Result<Policy, PolicyErrors> {
        let root = parse::flags_tree(flags)?;
        parse::compile(Some(root), parse::FLAGS_SOURCE, true)
    }

    /// The name given to [`Policy::from_yaml`], or `command-line flags`.
    pub fn source_name(&self) -> &str {
        &self.source
    }

    /// The `digests-file` paths, as written, each once.
    pub fn digests_files(&self) -> Vec<&Path> {
        self.digests_files.iter().map(|f| f.path.as_path()).collect()
    }

    /// Loads the contents of a digests file named by the policy (`path` as returned by
    /// [`Policy::digests_files`]): one digest per line, or an image reference ending in
    /// `@digest`; `#` starts a comment. `source_name` names the file in errors (every bad line).
    /// Returns how many digests it lists.
    pub fn attach_digests(
        &mut self,
        path: &Path,
        text: &str,
        source_name: &str,
    ) -> Result<usize, PolicyErrors> {
        let digests = parse::digests_file(text, source_name)?;
        let count = digests.len();
        let Some(file) = self.digests_files.iter_mut().find(|f| f.path == path) else {
            return Err(PolicyError::new(
                source_name,
                Location::Line { line: 1, column: 1 },
                format!("the policy names no digests-file `{}`", path.display()),
                format!("one of: {}", {
                    let names: Vec<String> = self
                        .digests_files
                        .iter()
                        .map(|f| f.path.display().to_string())
                        .collect();
                    if names.is_empty() {
                        "(none)".to_owned()
                    } else {
                        names.join(", ")
                    }
                }),
            )
            .into());
        };
        file.digests = Some(digests);
        Ok(count)
    }

    /// Whether some rule applies to `repository`.
    pub fn applies_to(&self, repository: &str) -> bool {
        self.rule_for(repository).is_some()
    }

    /// The time sources the rule for `repository` needs, in the order they are tried; empty
    /// when no condition depends on time (then no image config needs to be read).
    pub fn time_sources(&self, repository: &str) -> Vec<TimeSource> {
        self.rule_for(repository).map(time_sources).unwrap_or_default()
    }

    /// Whether the rule for some repository reads push times, which only storage has. With
    /// `repository` `None`, any rule counts.
    pub fn needs_push_times(&self, repository: Option<&str>) -> bool {
        match repository {
            Some(repo) => self.time_sources(repo).contains(&TimeSource::Pushed),
            None => self
                .rules
                .iter()
                .any(|rule| time_sources(rule).contains(&TimeSource::Pushed)),
        }
    }

    /// Decides every tag of `repository`. Pure: the same inputs give the same decisions, in
    /// any input order.
    pub fn decide(&self, repository: &str, tags: &[TagFacts], now: jiff::Timestamp) -> RepoDecision {
        decide::decide(self, repository, tags, now)
    }

    /// The policy in words.
    pub fn summary(&self) -> PolicySummary {
        PolicySummary {
            source: self.source.clone(),
            rules: self
                .rules
                .iter()
                .map(|rule| RuleSummary {
                    rule: rule.label.clone(),
                    repos: rule.repos.clone(),
                    keep: rule.keep.iter().map(|s| self.describe(s)).collect(),
                    delete: rule
                        .delete
                        .as_ref()
                        .map(|list| list.iter().map(|s| self.describe(s)).collect()),
                    order: rule.order,
                    time: rule.time.0.clone(),
                    protect: rule.protect,
                })
                .collect(),
        }
    }

    fn rule_for(&self, repository: &str) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.repos_set.is_match(repository))
    }

    fn describe(&self, selector: &Selector) -> String {
        let mut parts: Vec<String> = selector
            .conditions
            .iter()
            .map(|condition| match condition {
                Condition::Tags(globs) => format!("tags: {}", join(globs.iter().map(|(t, _)| t.as_str()))),
                Condition::TagsRegex(res) => {
                    format!("tags-regex: {}", join(res.iter().map(|(t, _)| t.as_str())))
                }
                Condition::Semver { text, .. } => format!("semver {text}"),
                Condition::OlderThan(age) => format!("older-than {}", age.text),
                Condition::NewerThan(age) => format!("newer-than {}", age.text),
                Condition::Digests(set) => format!("digests: {} listed", set.len()),
                Condition::DigestsFile(i) => {
                    let file = &self.digests_files[*i];
                    match &file.digests {
                        Some(set) => format!("digests-file {} ({} listed)", file.path.display(), set.len()),
                        None => format!("digests-file {} (not loaded)", file.path.display()),
                    }
                }
            })
            .collect();
        if let Some(rank) = &selector.rank {
            parts.push(rank.to_string());
        }
        let mut text = parts.join(" and ");
        if selector.uses_time() {
            text.push_str(&format!(" (time: {})", selector.time));
        }
        text
    }
}

impl Selector {
    fn uses_time(&self) -> bool {
        self.rank.as_ref().is_some_and(|r| r.order == Order::Time)
            || self
                .conditions
                .iter()
                .any(|c| matches!(c, Condition::OlderThan(_) | Condition::NewerThan(_)))
    }
}

impl fmt::Display for Rank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let which = if self.newest { "newest" } else { "oldest" };
        write!(f, "{which} {} by {}", self.count, self.order)?;
        if let Some((group, _)) = &self.group {
            write!(f, " per group of `{group}`")?;
        }
        Ok(())
    }
}

impl fmt::Display for TimeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, source) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", then ")?;
            }
            write!(f, "{source}")?;
        }
        Ok(())
    }
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}
