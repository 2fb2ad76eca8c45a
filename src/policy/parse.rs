//! Validation: from the located YAML tree (written by hand or built from flags) to a compiled
//! [`Policy`]. Every error names the place (line and column, or the flag), what was wrong and
//! what was expected there; unknown keys are rejected with the list of valid ones.

use std::collections::BTreeSet;
use std::path::PathBuf;

use globset::{GlobBuilder, GlobSetBuilder};
use regex::Regex;

use super::version::Range;
use super::yaml::{Kind, Node};
use super::{
    Age, Condition, DigestsFile, Location, Order, Policy, PolicyError, PolicyFlags, Protect, Rank, Rule,
    Selector, TimeSource, TimeSpec,
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

    fn fields<'n>(&self, node: &'n Node, what: &str, allowed: &[&str]) -> Result<Fields<'n>, PolicyError> {
        let Kind::Map(entries) = &node.kind else {
            return Err(self.error(
                &node.at,
                format!("{what} is {}", node.describe()),
                format!("a mapping with the keys {}", allowed.join(", ")),
            ));
        };
        for (key, _) in entries {
            if !allowed.contains(&key.text.as_str()) {
                let hint = match suggest(&key.text, allowed) {
                    Some(near) => format!(" (did you mean `{near}`?)"),
                    None => String::new(),
                };
                return Err(self.error(
                    &key.at,
                    format!("unknown key `{}` in {what}{hint}", key.text),
                    format!("one of: {}", allowed.join(", ")),
                ));
            }
        }
        Ok(Fields { entries })
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

    /// One string or a non-empty list of strings, each with its location.
    fn strings(
        &self,
        node: &Node,
        what: &str,
        expected: &str,
    ) -> Result<Vec<(String, Location)>, PolicyError> {
        match &node.kind {
            Kind::Seq(items) => {
                if items.is_empty() {
                    return Err(self.error(&node.at, format!("{what} is an empty list"), expected));
                }
                items
                    .iter()
                    .map(|item| {
                        Ok((
                            self.string(item, &format!("an item of {what}"), expected)?,
                            item.at.clone(),
                        ))
                    })
                    .collect()
            }
            _ => Ok(vec![(self.string(node, what, expected)?, node.at.clone())]),
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

    fn time_source(&self, text: &str, at: &Location) -> Result<TimeSource, PolicyError> {
        text.parse()
            .map_err(|problem: String| self.error(at, problem, EXPECT_TIME_SOURCE))
    }

    /// `time` and `time-fallback` of a rule or selector, over the inherited spec.
    fn time_spec(&self, fields: &Fields<'_>, inherited: &TimeSpec) -> Result<TimeSpec, PolicyError> {
        let primary = match fields.get("time") {
            Some(node) => {
                let text = self.string(node, "`time`", EXPECT_TIME_SOURCE)?;
                self.time_source(&text, &node.at)?
            }
            None => inherited.0[0].clone(),
        };
        let fallback = match fields.get("time-fallback") {
            Some(node) => self
                .strings(node, "`time-fallback`", EXPECT_TIME_SOURCE)?
                .iter()
                .map(|(text, at)| self.time_source(text, at))
                .collect::<Result<Vec<_>, _>>()?,
            None => inherited.0[1..].to_vec(),
        };
        let mut sources = vec![primary];
        for source in fallback {
            if !sources.contains(&source) {
                sources.push(source);
            }
        }
        Ok(TimeSpec(sources))
    }

    fn duration(&self, node: &Node, what: &str) -> Result<Age, PolicyError> {
        let text = self.string(node, what, EXPECT_DURATION)?;
        let duration =
            parse_duration(&text).map_err(|problem| self.error(&node.at, problem, EXPECT_DURATION))?;
        Ok(Age { text, duration })
    }

    fn protect(&self, node: &Node, inherited: Protect) -> Result<Protect, PolicyError> {
        let fields = self.fields(node, "`protect`", PROTECT_KEYS)?;
        let mut protect = inherited;
        if let Some(node) = fields.get("min-tags") {
            protect.min_tags = self.count(node, "`min-tags`", 0)?;
        }
        if let Some(node) = fields.get("allow-delete-all") {
            protect.allow_delete_all = self.boolean(node, "`allow-delete-all`")?;
        }
        Ok(protect)
    }

    fn rule(
        &mut self,
        node: &Node,
        index: usize,
        defaults: Protect,
        from_flags: bool,
    ) -> Result<Rule, PolicyError> {
        let fields = self.fields(node, "a rule", RULE_KEYS)?;
        let Some(repos_node) = fields.get("repos") else {
            return Err(self.error(
                &node.at,
                format!("rules[{index}] has no `repos`"),
                "`repos:` with a glob or a list of globs naming the repositories, e.g. `repos: \"app/**\"`",
            ));
        };
        let expect_glob = "a repository glob such as `app/*` or `**`, or a list of them";
        let repos = self.strings(repos_node, "`repos`", expect_glob)?;
        let mut set = GlobSetBuilder::new();
        for (glob, at) in &repos {
            // In repository names `*` stops at `/` and `**` crosses it, like paths.
            let compiled = GlobBuilder::new(glob)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|err| self.error(at, format!("bad glob `{glob}`: {}", err.kind()), expect_glob))?;
            set.add(compiled);
        }
        let repos_set = set
            .build()
            .map_err(|err| self.error(&repos_node.at, format!("bad globs: {err}"), expect_glob))?;
        let repos: Vec<String> = repos.into_iter().map(|(glob, _)| glob).collect();
        let name = match fields.get("name") {
            Some(node) => Some(self.string(node, "`name`", "a short name for the rule")?),
            None => None,
        };
        let label = match (from_flags, name) {
            (true, _) => format!("flags (repos: {})", repos.join(", ")),
            (false, Some(name)) => format!("rules[{index}] `{name}` (repos: {})", repos.join(", ")),
            (false, None) => format!("rules[{index}] (repos: {})", repos.join(", ")),
        };
        let order = match fields.get("order") {
            Some(node) => self.order(node)?,
            None => Order::Time,
        };
        let time = self.time_spec(&fields, &TimeSpec(vec![TimeSource::Created]))?;
        let protect = match fields.get("protect") {
            Some(node) => self.protect(node, defaults)?,
            None => defaults,
        };
        let keep = match fields.get("keep") {
            Some(node) => self.selectors(node, "keep", order, &time)?,
            None => Vec::new(),
        };
        let delete = match fields.get("delete") {
            Some(node) if node.is_null() => {
                return Err(self.error(
                    &node.at,
                    "`delete` is empty (null)",
                    "a list of selectors; write `delete: []` to delete nothing, or leave `delete` out \
                     to delete every tag that is not kept",
                ));
            }
            Some(node) => Some(self.selectors(node, "delete", order, &time)?),
            None => None,
        };
        Ok(Rule {
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

    fn selectors(
        &mut self,
        node: &Node,
        list: &str,
        order: Order,
        time: &TimeSpec,
    ) -> Result<Vec<Selector>, PolicyError> {
        let Kind::Seq(items) = &node.kind else {
            return Err(self.error(
                &node.at,
                format!("`{list}` is {}", node.describe()),
                format!("a list of selectors, e.g. `{list}: [{{tags: \"pr-*\"}}]`"),
            ));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| self.selector(item, &format!("{list}[{i}]"), order, time))
            .collect()
    }

    fn selector(
        &mut self,
        node: &Node,
        name: &str,
        order: Order,
        time: &TimeSpec,
    ) -> Result<Selector, PolicyError> {
        let fields = self.fields(node, &format!("selector {name}"), SELECTOR_KEYS)?;
        let mut conditions = Vec::new();
        for (key, value) in fields.entries {
            let condition = match key.text.as_str() {
                "tags" => {
                    let expected = "a tag glob such as `pr-*` or `latest`, or a list of them";
                    let globs = self.strings(value, "`tags`", expected)?;
                    let mut matchers = Vec::new();
                    for (glob, at) in globs {
                        // Tags contain no `/`, so `*` matches any run of characters.
                        let matcher = GlobBuilder::new(&glob)
                            .literal_separator(false)
                            .backslash_escape(true)
                            .build()
                            .map_err(|err| {
                                self.error(&at, format!("bad glob `{glob}`: {}", err.kind()), expected)
                            })?
                            .compile_matcher();
                        matchers.push((glob, matcher));
                    }
                    Condition::Tags(matchers)
                }
                "tags-regex" => {
                    let expected = "a regular expression (matched against the whole tag), or a list of them";
                    let mut regexes = Vec::new();
                    for (text, at) in self.strings(value, "`tags-regex`", expected)? {
                        // Check the pattern alone first so that the error is about what was written.
                        regex(&text).map_err(|problem| self.error(&at, problem, expected))?;
                        let anchored = regex(&format!("^(?:{text})$"))
                            .map_err(|problem| self.error(&at, problem, expected))?;
                        regexes.push((text, anchored));
                    }
                    Condition::TagsRegex(regexes)
                }
                "semver" => {
                    let text = self.string(value, "`semver`", EXPECT_RANGE)?;
                    let range = Range::parse(&text).map_err(|err| {
                        self.error(
                            &value.at,
                            format!("bad version range `{text}`: {}", err.0),
                            EXPECT_RANGE,
                        )
                    })?;
                    Condition::Semver { text, range }
                }
                "older-than" => Condition::OlderThan(self.duration(value, "`older-than`")?),
                "newer-than" => Condition::NewerThan(self.duration(value, "`newer-than`")?),
                "digests" => {
                    let expected = "a digest such as `sha256:` followed by 64 hex digits, or a list of them";
                    let mut set = BTreeSet::new();
                    for (text, at) in self.strings(value, "`digests`", expected)? {
                        let digest = Digest::parse(text.trim())
                            .map_err(|err| self.error(&at, err.to_string(), expected))?;
                        set.insert(digest);
                    }
                    Condition::Digests(set)
                }
                "digests-file" => {
                    let path = PathBuf::from(self.string(
                        value,
                        "`digests-file`",
                        "the path of a file of digests",
                    )?);
                    let index = match self.digests_files.iter().position(|f| f.path == path) {
                        Some(index) => index,
                        None => {
                            self.digests_files.push(DigestsFile { path, digests: None });
                            self.digests_files.len() - 1
                        }
                    };
                    Condition::DigestsFile(index)
                }
                // Handled below: they shape the selector rather than filter tags.
                _ => continue,
            };
            conditions.push(condition);
        }

        let rank_count = match (fields.get("newest"), fields.get("oldest")) {
            (Some(_), Some(_)) => {
                return Err(self.error(
                    &key_at(&fields, "oldest"),
                    format!("selector {name} has both `newest` and `oldest`"),
                    "one of them; use two selectors for both ends",
                ));
            }
            (Some(node), None) => Some((true, self.count(node, "`newest`", 1)?)),
            (None, Some(node)) => Some((false, self.count(node, "`oldest`", 1)?)),
            (None, None) => None,
        };
        let rank = match rank_count {
            Some((newest, count)) => {
                let order = match fields.get("order") {
                    Some(node) => self.order(node)?,
                    None => order,
                };
                let group = match fields.get("group") {
                    Some(node) => {
                        let expected =
                            "a regular expression with exactly one capture group, e.g. `^v(\\d+\\.\\d+)\\.`";
                        let text = self.string(node, "`group`", expected)?;
                        let compiled =
                            regex(&text).map_err(|problem| self.error(&node.at, problem, expected))?;
                        let captures = compiled.captures_len() - 1;
                        if captures != 1 {
                            return Err(self.error(
                                &node.at,
                                format!("`group` regex `{text}` has {captures} capture groups"),
                                format!("{expected}; use `(?:…)` for groups that should not capture"),
                            ));
                        }
                        Some((text, compiled))
                    }
                    None => None,
                };
                Some(Rank {
                    newest,
                    count,
                    order,
                    group,
                })
            }
            None => {
                for key in ["order", "group"] {
                    if fields.get(key).is_some() {
                        return Err(self.error(
                            &key_at(&fields, key),
                            format!("`{key}` in selector {name} has no effect without `newest` or `oldest`"),
                            format!("`newest: N` or `oldest: N` next to `{key}`"),
                        ));
                    }
                }
                None
            }
        };
        if conditions.is_empty() && rank.is_none() {
            return Err(self.error(
                &node.at,
                format!("selector {name} has no condition"),
                "at least one condition; to match every tag write `tags: \"*\"`",
            ));
        }
        let spec = self.time_spec(&fields, time)?;
        let selector = Selector {
            conditions,
            rank,
            time: spec,
        };
        if !selector.uses_time() {
            for key in ["time", "time-fallback"] {
                if fields.get(key).is_some() {
                    return Err(self.error(
                        &key_at(&fields, key),
                        format!("`{key}` in selector {name} has no effect: nothing in it depends on time"),
                        "`older-than`, `newer-than` or `order: time` in the same selector",
                    ));
                }
            }
        }
        Ok(selector)
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

/// From the located tree to a policy.
pub(crate) fn compile(root: Option<Node>, source: &str, from_flags: bool) -> Result<Policy, PolicyError> {
    let mut ctx = Ctx {
        source,
        digests_files: Vec::new(),
    };
    let Some(root) = root else {
        return Err(ctx.error(
            &Location::Line { line: 1, column: 1 },
            "the policy is empty",
            "a mapping with `rules:` (see docs/policy.md)",
        ));
    };
    let fields = ctx.fields(&root, "the policy", TOP_KEYS)?;
    let defaults = match fields.get("protect") {
        Some(node) => ctx.protect(
            node,
            Protect {
                min_tags: 0,
                allow_delete_all: false,
            },
        )?,
        None => Protect {
            min_tags: 0,
            allow_delete_all: false,
        },
    };
    let Some(rules_node) = fields.get("rules") else {
        return Err(ctx.error(
            &root.at,
            "the policy has no `rules`",
            "`rules:` with a list of rules, each with `repos` and `keep`/`delete` selectors",
        ));
    };
    let Kind::Seq(items) = &rules_node.kind else {
        return Err(ctx.error(
            &rules_node.at,
            format!("`rules` is {}", rules_node.describe()),
            "a list of rules, e.g. `rules: [{repos: \"**\", keep: [{newest: 10}]}]`",
        ));
    };
    let mut rules = Vec::new();
    for (index, item) in items.iter().enumerate() {
        rules.push(ctx.rule(item, index, defaults, from_flags)?);
    }
    Ok(Policy {
        source: source.to_owned(),
        rules,
        digests_files: ctx.digests_files,
    })
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
/// `kubectl` reports image IDs), blank lines and `#` comments ignored.
pub(crate) fn digests_file(text: &str, source: &str) -> Result<BTreeSet<Digest>, PolicyError> {
    let mut set = BTreeSet::new();
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
        let digest = Digest::parse(digest_text).map_err(|err| {
            PolicyError::new(
                source,
                Location::Line {
                    line: number + 1,
                    column,
                },
                err.to_string(),
                "one digest per line (`sha256:` and 64 hex digits) or an image reference ending in `@sha256:…`; \
                 `#` starts a comment",
            )
        })?;
        set.insert(digest);
    }
    Ok(set)
}
