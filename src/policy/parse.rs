//! Validation: from the located YAML tree (written by hand or built from flags) to a compiled
//! [`Policy`]. Every error names the place (line and column, or the flag), what was wrong and
//! what was expected there; unknown keys are rejected with the list of valid ones.

use std::collections::BTreeSet;
use std::path::PathBuf;

use globset::{Glob, GlobBuilder, GlobSetBuilder};
use regex::Regex;

use super::version::Range;
use super::yaml::{Kind, Node};
use super::{
    Age, Condition, DigestsFile, Location, Order, Policy, PolicyError, PolicyErrors, PolicyFlags, Protect,
    Rank, Rule, Selector, TimeSource, TimeSpec,
};
use crate::digest::Digest;

/// The source name of a policy built from flags.
pub(crate) const FLAGS_SOURCE: &str = "command-line flags";

const TOP_KEYS: &[&str] = &["rules", "protect"];
const RULE_KEYS: &[&str] = &[
    "name",
    "repos",
    "keep",
    "delete",
    "order",
    "time",
    "time-fallback",
    "protect",
];
const SELECTOR_KEYS: &[&str] = &[
    "tags",
    "tags-regex",
    "semver",
    "newest",
    "oldest",
    "order",
    "group",
    "older-than",
    "newer-than",
    "time",
    "time-fallback",
    "digests",
    "digests-file",
];
const PROTECT_KEYS: &[&str] = &["min-tags", "allow-delete-all"];

const EXPECT_DURATION: &str = "a duration such as 30d, 2w, 36h or 1d12h (units up to weeks)";
const EXPECT_TIME_SOURCE: &str = "created, label:KEY or annotation:KEY";
const EXPECT_RANGE: &str =
    "a version range such as `>=2.0.0`, `<2`, `>=1.2, <2`, `^1.4`, `~1.4.2` or `1.4.*`";

struct Ctx<'s> {
    source: &'s str,
    digests_files: Vec<DigestsFile>,
    /// Every mistake found so far. Validation goes on past a bad value (leaving it out) so that
    /// one check reports every mistake in the file.
    errors: Vec<PolicyError>,
}

/// A mapping whose keys were checked against the allowed ones.
struct Fields<'n> {
    entries: &'n [(super::yaml::Key, Node)],
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _)| k.text == key).map(|(_, v)| v)
    }
}

impl Ctx<'_> {
    fn error(&self, at: &Location, problem: impl Into<String>, expected: impl Into<String>) -> PolicyError {
        PolicyError::new(self.source, at.clone(), problem, expected)
    }

    /// The value, or `None` with its error recorded.
    fn note<T>(&mut self, result: Result<T, PolicyError>) -> Option<T> {
        result.map_err(|err| self.errors.push(err)).ok()
    }

    /// Whether mistakes were recorded since there were `before` of them. Checks across the
    /// fields of a mapping (a selector with no condition, a key with no effect) are left out
    /// after one: they would only report the consequence of a mistake already reported.
    fn failed_since(&self, before: usize) -> bool {
        self.errors.len() > before
    }

    /// The entries of a mapping, with every unknown key recorded as a mistake (and then ignored);
    /// `None` when `node` is not a mapping.
    fn fields<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let Kind::Map(entries) = &node.kind else {
            let err = self.error(
                &node.at,
                format!("{what} is {}", node.describe()),
                format!("a mapping with the keys {}", allowed.join(", ")),
            );
            self.errors.push(err);
            return None;
        };
        for (key, _) in entries {
            if !allowed.contains(&key.text.as_str()) {
                let hint = match suggest(&key.text, allowed) {
                    Some(near) => format!(" (did you mean `{near}`?)"),
                    None => String::new(),
                };
                let err = self.error(
                    &key.at,
                    format!("unknown key `{}` in {what}{hint}", key.text),
                    format!("one of: {}", allowed.join(", ")),
                );
                self.errors.push(err);
            }
        }
        Some(Fields { entries })
    }

    fn string(&self, node: &Node, what: &str, expected: &str) -> Result<String, PolicyError> {
        match &node.kind {
            Kind::Scalar { text, .. } if !node.is_null() => {
                if text.trim().is_empty() {
                    return Err(self.error(&node.at, format!("{what} is an empty string"), expected));
                }
                Ok(text.clone())
            }
            _ => Err(self.error(&node.at, format!("{what} is {}", node.describe()), expected)),
        }
    }

    /// One string or a non-empty list of strings, each with its location; the items that are
    /// not strings are recorded as mistakes and left out.
    fn strings(&mut self, node: &Node, what: &str, expected: &str) -> Vec<(String, Location)> {
        match &node.kind {
            Kind::Seq(items) => {
                if items.is_empty() {
                    let err = self.error(&node.at, format!("{what} is an empty list"), expected);
                    self.errors.push(err);
                }
                let item_what = format!("an item of {what}");
                items
                    .iter()
                    .filter_map(|item| {
                        let text = self.string(item, &item_what, expected);
                        self.note(text).map(|text| (text, item.at.clone()))
                    })
                    .collect()
            }
            _ => {
                let text = self.string(node, what, expected);
                self.note(text)
                    .map(|text| (text, node.at.clone()))
                    .into_iter()
                    .collect()
            }
        }
    }

    fn count(&self, node: &Node, what: &str, min: usize) -> Result<usize, PolicyError> {
        let expected = if min == 0 {
            "a whole number (0 or more)"
        } else {
            "a whole number (1 or more)"
        };
        let text = match &node.kind {
            Kind::Scalar { text, .. } if !node.is_null() => text.trim(),
            _ => return Err(self.error(&node.at, format!("{what} is {}", node.describe()), expected)),
        };
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.error(&node.at, format!("{what} is {}", node.describe()), expected));
        }
        let n: usize = text
            .parse()
            .map_err(|_| self.error(&node.at, format!("{what} `{text}` is too large"), expected))?;
        if n < min {
            return Err(self.error(&node.at, format!("{what} is {n}"), expected));
        }
        Ok(n)
    }

    fn boolean(&self, node: &Node, what: &str) -> Result<bool, PolicyError> {
        match &node.kind {
            Kind::Scalar { text, .. } => match text.as_str() {
                "true" | "True" | "TRUE" => Ok(true),
                "false" | "False" | "FALSE" => Ok(false),
                _ => Err(self.error(
                    &node.at,
                    format!("{what} is {}", node.describe()),
                    "true or false",
                )),
            },
            _ => Err(self.error(
                &node.at,
                format!("{what} is {}", node.describe()),
                "true or false",
            )),
        }
    }

    fn order(&self, node: &Node) -> Result<Order, PolicyError> {
        let text = self.string(node, "`order`", "semver, time or name")?;
        text.parse().map_err(|_| {
            self.error(
                &node.at,
                format!("unknown order `{text}`"),
                "semver, time or name",
            )
        })
    }

    /// `order` of a rule or selector when it is given and valid.
    fn order_field(&mut self, fields: &Fields<'_>) -> Option<Order> {
        let order = self.order(fields.get("order")?);
        self.note(order)
    }

    fn time_source(&self, text: &str, at: &Location) -> Result<TimeSource, PolicyError> {
        text.parse()
            .map_err(|problem: String| self.error(at, problem, EXPECT_TIME_SOURCE))
    }

    /// `time` and `time-fallback` of a rule or selector, over the inherited spec (which stands in
    /// for a value that is wrong).
    fn time_spec(&mut self, fields: &Fields<'_>, inherited: &TimeSpec) -> TimeSpec {
        let primary = fields.get("time").and_then(|node| {
            let source = self
                .string(node, "`time`", EXPECT_TIME_SOURCE)
                .and_then(|text| self.time_source(&text, &node.at));
            self.note(source)
        });
        let fallback = match fields.get("time-fallback") {
            Some(node) => self
                .strings(node, "`time-fallback`", EXPECT_TIME_SOURCE)
                .iter()
                .filter_map(|(text, at)| {
                    let source = self.time_source(text, at);
                    self.note(source)
                })
                .collect(),
            None => inherited.0[1..].to_vec(),
        };
        let mut sources = vec![primary.unwrap_or_else(|| inherited.0[0].clone())];
        for source in fallback {
            if !sources.contains(&source) {
                sources.push(source);
            }
        }
        TimeSpec(sources)
    }

    fn duration(&self, node: &Node, what: &str) -> Result<Age, PolicyError> {
        let text = self.string(node, what, EXPECT_DURATION)?;
        let duration =
            parse_duration(&text).map_err(|problem| self.error(&node.at, problem, EXPECT_DURATION))?;
        Ok(Age { text, duration })
    }

    fn protect(&mut self, node: &Node, inherited: Protect) -> Protect {
        let mut protect = inherited;
        let Some(fields) = self.fields(node, "`protect`", PROTECT_KEYS) else {
            return protect;
        };
        if let Some(node) = fields.get("min-tags") {
            let count = self.count(node, "`min-tags`", 0);
            protect.min_tags = self.note(count).unwrap_or(protect.min_tags);
        }
        if let Some(node) = fields.get("allow-delete-all") {
            let allow = self.boolean(node, "`allow-delete-all`");
            protect.allow_delete_all = self.note(allow).unwrap_or(protect.allow_delete_all);
        }
        protect
    }

    /// Globs as a matcher each, the bad ones recorded as mistakes and left out. `separator`: `*`
    /// stops at `/` (repository names are paths; tags contain no `/`).
    fn globs(
        &mut self,
        globs: Vec<(String, Location)>,
        separator: bool,
        expected: &str,
    ) -> Vec<(String, Glob)> {
        globs
            .into_iter()
            .filter_map(|(glob, at)| {
                let compiled = GlobBuilder::new(&glob)
                    .literal_separator(separator)
                    .backslash_escape(true)
                    .build()
                    .map_err(|err| self.error(&at, format!("bad glob `{glob}`: {}", err.kind()), expected));
                self.note(compiled).map(|compiled| (glob, compiled))
            })
            .collect()
    }

    /// A rule, or `None` when it is not a mapping.
    fn rule(&mut self, node: &Node, index: usize, defaults: Protect, from_flags: bool) -> Option<Rule> {
        let before = self.errors.len();
        let fields = self.fields(node, "a rule", RULE_KEYS)?;
        let expect_glob = "a repository glob such as `app/*` or `**`, or a list of them";
        let repos = match fields.get("repos") {
            Some(repos_node) => self.strings(repos_node, "`repos`", expect_glob),
            // Unknown keys found: a misspelt `repos` is already reported as such.
            None if self.failed_since(before) => Vec::new(),
            None => {
                let err = self.error(
                    &node.at,
                    format!("rules[{index}] has no `repos`"),
                    "`repos:` with a glob or a list of globs naming the repositories, e.g. `repos: \"app/**\"`",
                );
                self.errors.push(err);
                Vec::new()
            }
        };
        let mut set = GlobSetBuilder::new();
        let repos: Vec<String> = self
            .globs(repos, true, expect_glob)
            .into_iter()
            .map(|(glob, compiled)| {
                set.add(compiled);
                glob
            })
            .collect();
        let repos_set = set
            .build()
            .map_err(|err| self.error(&node.at, format!("bad globs: {err}"), expect_glob));
        let repos_set = self.note(repos_set)?;
        let name = fields.get("name").and_then(|node| {
            let name = self.string(node, "`name`", "a short name for the rule");
            self.note(name)
        });
        let label = match (from_flags, name) {
            (true, _) => format!("flags (repos: {})", repos.join(", ")),
            (false, Some(name)) => format!("rules[{index}] `{name}` (repos: {})", repos.join(", ")),
            (false, None) => format!("rules[{index}] (repos: {})", repos.join(", ")),
        };
        let order = self.order_field(&fields).unwrap_or(Order::Time);
        let time = self.time_spec(&fields, &TimeSpec(vec![TimeSource::Created]));
        let protect = match fields.get("protect") {
            Some(node) => self.protect(node, defaults),
            None => defaults,
        };
        let keep = match fields.get("keep") {
            Some(node) => self.selectors(node, "keep", order, &time),
            None => Vec::new(),
        };
        let delete = match fields.get("delete") {
            Some(node) if node.is_null() => {
                let err = self.error(
                    &node.at,
                    "`delete` is empty (null)",
                    "a list of selectors; write `delete: []` to delete nothing, or leave `delete` out \
                     to delete every tag that is not kept",
                );
                self.errors.push(err);
                None
            }
            Some(node) => Some(self.selectors(node, "delete", order, &time)),
            None => None,
        };
        Some(Rule {
            label,
            repos,
            repos_set,
            keep,
            delete,
            order,
            time,
            protect,
        })
    }

    fn selectors(&mut self, node: &Node, list: &str, order: Order, time: &TimeSpec) -> Vec<Selector> {
        let Kind::Seq(items) = &node.kind else {
            let err = self.error(
                &node.at,
                format!("`{list}` is {}", node.describe()),
                format!("a list of selectors, e.g. `{list}: [{{tags: \"pr-*\"}}]`"),
            );
            self.errors.push(err);
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.selector(item, &format!("{list}[{i}]"), order, time))
            .collect()
    }

    /// The condition one selector key stands for; `None` for the keys that shape the selector
    /// rather than filter tags, and for a value that is wrong (recorded).
    fn condition(&mut self, key: &str, value: &Node) -> Option<Condition> {
        let condition = match key {
            "tags" => {
                let expected = "a tag glob such as `pr-*` or `latest`, or a list of them";
                let globs = self.strings(value, "`tags`", expected);
                let matchers = self
                    .globs(globs, false, expected)
                    .into_iter()
                    .map(|(glob, compiled)| (glob, compiled.compile_matcher()))
                    .collect();
                Condition::Tags(matchers)
            }
            "tags-regex" => {
                let expected = "a regular expression (matched against the whole tag), or a list of them";
                let texts = self.strings(value, "`tags-regex`", expected);
                let regexes = texts
                    .into_iter()
                    .filter_map(|(text, at)| {
                        // Check the pattern alone first so that the error is about what was written.
                        let anchored = regex(&text)
                            .and_then(|_| regex(&format!("^(?:{text})$")))
                            .map_err(|problem| self.error(&at, problem, expected));
                        self.note(anchored).map(|anchored| (text, anchored))
                    })
                    .collect();
                Condition::TagsRegex(regexes)
            }
            "semver" => {
                let range = self
                    .string(value, "`semver`", EXPECT_RANGE)
                    .and_then(|text| match Range::parse(&text) {
                        Ok(range) => Ok(Condition::Semver { text, range }),
                        Err(err) => Err(self.error(
                            &value.at,
                            format!("bad version range `{text}`: {}", err.0),
                            EXPECT_RANGE,
                        )),
                    });
                self.note(range)?
            }
            "older-than" => {
                let age = self.duration(value, "`older-than`");
                Condition::OlderThan(self.note(age)?)
            }
            "newer-than" => {
                let age = self.duration(value, "`newer-than`");
                Condition::NewerThan(self.note(age)?)
            }
            "digests" => {
                let expected = "a digest such as `sha256:` followed by 64 hex digits, or a list of them";
                let texts = self.strings(value, "`digests`", expected);
                let set = texts
                    .into_iter()
                    .filter_map(|(text, at)| {
                        let digest = Digest::parse(text.trim())
                            .map_err(|err| self.error(&at, err.to_string(), expected));
                        self.note(digest)
                    })
                    .collect::<BTreeSet<_>>();
                Condition::Digests(set)
            }
            "digests-file" => {
                let path = self.string(value, "`digests-file`", "the path of a file of digests");
                let path = PathBuf::from(self.note(path)?);
                let index = match self.digests_files.iter().position(|f| f.path == path) {
                    Some(index) => index,
                    None => {
                        self.digests_files.push(DigestsFile { path, digests: None });
                        self.digests_files.len() - 1
                    }
                };
                Condition::DigestsFile(index)
            }
            _ => return None,
        };
        Some(condition)
    }

    /// `newest`/`oldest` with `order` and `group`; `None` without them (or when they are wrong).
    fn rank(&mut self, fields: &Fields<'_>, name: &str, order: Order) -> Option<Rank> {
        let (newest, node) = match (fields.get("newest"), fields.get("oldest")) {
            (Some(_), Some(_)) => {
                let err = self.error(
                    &key_at(fields, "oldest"),
                    format!("selector {name} has both `newest` and `oldest`"),
                    "one of them; use two selectors for both ends",
                );
                self.errors.push(err);
                return None;
            }
            (Some(node), None) => (true, node),
            (None, Some(node)) => (false, node),
            (None, None) => return None,
        };
        let count = self.count(node, if newest { "`newest`" } else { "`oldest`" }, 1);
        let count = self.note(count);
        let order = self.order_field(fields).unwrap_or(order);
        let group = fields.get("group").and_then(|node| {
            let group = self.group(node);
            self.note(group)
        });
        Some(Rank {
            newest,
            count: count?,
            order,
            group,
        })
    }

    /// The `group` regex of a rank, which must have exactly one capture group.
    fn group(&self, node: &Node) -> Result<(String, Regex), PolicyError> {
        let expected = "a regular expression with exactly one capture group, e.g. `^v(\\d+\\.\\d+)\\.`";
        let text = self.string(node, "`group`", expected)?;
        let compiled = regex(&text).map_err(|problem| self.error(&node.at, problem, expected))?;
        let captures = compiled.captures_len() - 1;
        if captures != 1 {
            return Err(self.error(
                &node.at,
                format!("`group` regex `{text}` has {captures} capture groups"),
                format!("{expected}; use `(?:…)` for groups that should not capture"),
            ));
        }
        Ok((text, compiled))
    }

    /// A selector, or `None` when it is not a mapping.
    fn selector(&mut self, node: &Node, name: &str, order: Order, time: &TimeSpec) -> Option<Selector> {
        let before = self.errors.len();
        let fields = self.fields(node, &format!("selector {name}"), SELECTOR_KEYS)?;
        let conditions: Vec<Condition> = fields
            .entries
            .iter()
            .filter_map(|(key, value)| self.condition(&key.text, value))
            .collect();
        let rank = self.rank(&fields, name, order);
        let spec = self.time_spec(&fields, time);
        let selector = Selector {
            conditions,
            rank,
            time: spec,
        };
        if self.failed_since(before) {
            return Some(selector);
        }
        if selector.rank.is_none() {
            for key in ["order", "group"] {
                if fields.get(key).is_some() {
                    let err = self.error(
                        &key_at(&fields, key),
                        format!("`{key}` in selector {name} has no effect without `newest` or `oldest`"),
                        format!("`newest: N` or `oldest: N` next to `{key}`"),
                    );
                    self.errors.push(err);
                }
            }
        }
        if selector.conditions.is_empty() && selector.rank.is_none() {
            let err = self.error(
                &node.at,
                format!("selector {name} has no condition"),
                "at least one condition; to match every tag write `tags: \"*\"`",
            );
            self.errors.push(err);
        }
        if !selector.uses_time() {
            for key in ["time", "time-fallback"] {
                if fields.get(key).is_some() {
                    let err = self.error(
                        &key_at(&fields, key),
                        format!("`{key}` in selector {name} has no effect: nothing in it depends on time"),
                        "`older-than`, `newer-than` or `order: time` in the same selector",
                    );
                    self.errors.push(err);
                }
            }
        }
        Some(selector)
    }
}

fn key_at(fields: &Fields<'_>, key: &str) -> Location {
    fields
        .entries
        .iter()
        .find(|(k, _)| k.text == key)
        .map(|(k, _)| k.at.clone())
        .unwrap_or(Location::Line { line: 1, column: 1 })
}

/// Compiles a regex; the error is the one-line reason.
fn regex(text: &str) -> Result<Regex, String> {
    Regex::new(text).map_err(|err| {
        let full = err.to_string();
        // regex's syntax errors span several lines (pattern, caret, reason); keep the reason.
        let reason = full
            .lines()
            .find_map(|line| line.strip_prefix("error: "))
            .unwrap_or(full.lines().last().unwrap_or("invalid"));
        format!("bad regex `{text}`: {reason}")
    })
}

/// `30d`, `2w`, `36h`, `1d12h`, `90m` or `0`; a day is 24 hours (jiff cannot subtract calendar
/// days from a timestamp without a time zone, and ages of images need no calendar).
pub(crate) fn parse_duration(text: &str) -> Result<jiff::SignedDuration, String> {
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(jiff::SignedDuration::ZERO);
    }
    let span: jiff::Span = trimmed
        .parse()
        .map_err(|_| format!("`{text}` is not a duration"))?;
    let duration = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|_| format!("`{text}` uses months or years, whose length varies"))?;
    if duration.is_negative() {
        return Err(format!("`{text}` is negative"));
    }
    Ok(duration)
}

/// The closest allowed key, for "did you mean".
fn suggest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current.push((previous[j] + cost).min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// From the located tree to a policy, or every mistake in it.
pub(crate) fn compile(root: Option<Node>, source: &str, from_flags: bool) -> Result<Policy, PolicyErrors> {
    let mut ctx = Ctx {
        source,
        digests_files: Vec::new(),
        errors: Vec::new(),
    };
    let Some(root) = root else {
        return Err(ctx
            .error(
                &Location::Line { line: 1, column: 1 },
                "the policy is empty",
                "a mapping with `rules:` (see docs/policy.md)",
            )
            .into());
    };
    let rules = ctx.rules(&root, from_flags);
    if !ctx.errors.is_empty() {
        return Err(PolicyErrors::new(ctx.errors));
    }
    Ok(Policy {
        source: source.to_owned(),
        rules,
        digests_files: ctx.digests_files,
    })
}

impl Ctx<'_> {
    /// The rules of the policy's top-level mapping.
    fn rules(&mut self, root: &Node, from_flags: bool) -> Vec<Rule> {
        let before = self.errors.len();
        let Some(fields) = self.fields(root, "the policy", TOP_KEYS) else {
            return Vec::new();
        };
        // Unknown keys found: a misspelt `rules` is already reported as such.
        let keys_unknown = self.failed_since(before);
        let none = Protect {
            min_tags: 0,
            allow_delete_all: false,
        };
        let defaults = match fields.get("protect") {
            Some(node) => self.protect(node, none),
            None => none,
        };
        let Some(rules_node) = fields.get("rules") else {
            if keys_unknown {
                return Vec::new();
            }
            let err = self.error(
                &root.at,
                "the policy has no `rules`",
                "`rules:` with a list of rules, each with `repos` and `keep`/`delete` selectors",
            );
            self.errors.push(err);
            return Vec::new();
        };
        let Kind::Seq(items) = &rules_node.kind else {
            let err = self.error(
                &rules_node.at,
                format!("`rules` is {}", rules_node.describe()),
                "a list of rules, e.g. `rules: [{repos: \"**\", keep: [{newest: 10}]}]`",
            );
            self.errors.push(err);
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(index, item)| self.rule(item, index, defaults, from_flags))
            .collect()
    }
}

/// The tree the flags stand for: one rule, keep flags as separate keep selectors, delete flags
/// ANDed into one delete selector.
pub(crate) fn flags_tree(flags: &PolicyFlags) -> Result<Node, PolicyError> {
    let flag = Location::Flag;
    let mut keep = Vec::new();
    if !flags.keep_tags.is_empty() {
        let globs = flags
            .keep_tags
            .iter()
            .map(|g| Node::scalar(g, flag("--keep-tags")))
            .collect();
        keep.push(Node::map(
            vec![("tags", Node::seq(globs, flag("--keep-tags")))],
            flag("--keep-tags"),
        ));
    }
    if let Some(n) = flags.keep_newest {
        keep.push(Node::map(
            vec![("newest", Node::plain(n.to_string(), flag("--keep-newest")))],
            flag("--keep-newest"),
        ));
    }
    if let Some(range) = &flags.keep_semver {
        keep.push(Node::map(
            vec![("semver", Node::scalar(range, flag("--keep-semver")))],
            flag("--keep-semver"),
        ));
    }
    if let Some(age) = &flags.keep_newer_than {
        keep.push(Node::map(
            vec![("newer-than", Node::scalar(age, flag("--keep-newer-than")))],
            flag("--keep-newer-than"),
        ));
    }
    for path in &flags.keep_digests_files {
        let at = flag("--keep-digests-file");
        keep.push(Node::map(
            vec![("digests-file", Node::scalar(path.to_string_lossy(), at.clone()))],
            at,
        ));
    }
    let mut delete = Vec::new();
    let mut delete_at = None;
    if !flags.delete_tags.is_empty() {
        let globs = flags
            .delete_tags
            .iter()
            .map(|g| Node::scalar(g, flag("--delete-tags")))
            .collect();
        delete.push(("tags", Node::seq(globs, flag("--delete-tags"))));
        delete_at.get_or_insert(flag("--delete-tags"));
    }
    if let Some(range) = &flags.delete_semver {
        delete.push(("semver", Node::scalar(range, flag("--delete-semver"))));
        delete_at.get_or_insert(flag("--delete-semver"));
    }
    if let Some(age) = &flags.older_than {
        delete.push(("older-than", Node::scalar(age, flag("--older-than"))));
        delete_at.get_or_insert(flag("--older-than"));
    }
    if keep.is_empty() && delete.is_empty() {
        return Err(PolicyError::new(
            FLAGS_SOURCE,
            flag("policy flags"),
            "no keep or delete condition given",
            "--policy FILE, or at least one of --keep-tags, --keep-newest, --keep-semver, --keep-newer-than, \
             --keep-digests-file, --delete-tags, --delete-semver, --older-than",
        ));
    }
    let repos: Vec<Node> = if flags.repos.is_empty() {
        vec![Node::scalar("**", flag("--repos"))]
    } else {
        flags
            .repos
            .iter()
            .map(|g| Node::scalar(g, flag("--repos")))
            .collect()
    };
    let rule_at = flag("policy flags");
    let mut rule = vec![("repos", Node::seq(repos, flag("--repos")))];
    if let Some(order) = flags.order {
        rule.push(("order", Node::scalar(order.to_string(), flag("--order"))));
    }
    if let Some(time) = &flags.time {
        rule.push(("time", Node::scalar(time, flag("--time-source"))));
    }
    rule.push(("keep", Node::seq(keep, rule_at.clone())));
    if let Some(at) = delete_at {
        rule.push(("delete", Node::seq(vec![Node::map(delete, at.clone())], at)));
    }
    let mut protect = Vec::new();
    if let Some(n) = flags.min_tags {
        protect.push(("min-tags", Node::plain(n.to_string(), flag("--min-tags"))));
    }
    if flags.allow_delete_all {
        protect.push((
            "allow-delete-all",
            Node::plain("true", flag("--allow-delete-all")),
        ));
    }
    if !protect.is_empty() {
        rule.push(("protect", Node::map(protect, rule_at.clone())));
    }
    let rules = Node::seq(vec![Node::map(rule, rule_at.clone())], rule_at.clone());
    Ok(Node::map(vec![("rules", rules)], rule_at))
}

/// Reads a digests file: one digest per line (or an image reference ending in `@digest`, as
/// `kubectl` reports image IDs), blank lines and `#` comments ignored. Every bad line is reported.
pub(crate) fn digests_file(text: &str, source: &str) -> Result<BTreeSet<Digest>, PolicyErrors> {
    let mut set = BTreeSet::new();
    let mut errors = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("");
        let trimmed = content.trim();
        if trimmed.is_empty() {
            continue;
        }
        let digest_text = trimmed.rsplit('@').next().unwrap_or(trimmed);
        let column = line
            .find(digest_text)
            .map_or(1, |byte| line[..byte].chars().count() + 1);
        match Digest::parse(digest_text) {
            Ok(digest) => {
                set.insert(digest);
            }
            Err(err) => errors.push(PolicyError::new(
                source,
                Location::Line {
                    line: number + 1,
                    column,
                },
                err.to_string(),
                "one digest per line (`sha256:` and 64 hex digits) or an image reference ending in `@sha256:…`; \
                 `#` starts a comment",
            )),
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(PolicyErrors::new(errors))
    }
}
