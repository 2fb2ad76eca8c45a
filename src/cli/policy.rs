//! `regsweep policy check FILE`, and the policy options shared by `plan` and `apply`
//! ([`PolicyArgs`]): a policy file or the flags for one simple rule. Files (the policy and its
//! digests files) are read here; the library only parses text.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::policy::{Order, Policy, PolicyFlags, PolicySummary};
use clap::{Args, Subcommand};

use super::{ExitStatus, Ui, UsageError};

const CHECK_AFTER_HELP: &str = "\
Checks the policy without contacting a registry: the YAML, every key, glob, regex, version range, \
duration and time source, and the digests files it names (read relative to the policy file). \
Prints the rules in words.

Exit codes: 0 valid, 2 invalid (every mistake is reported, each with FILE:LINE:COL, what was \
wrong and what was expected). The language is described in docs/policy.md.";

/// `regsweep policy …`
#[derive(Debug, Args)]
pub struct PolicyCommand {
    #[command(subcommand)]
    pub command: PolicySubcommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicySubcommand {
    /// Validate a retention policy file and print its rules in words.
    #[command(after_long_help = CHECK_AFTER_HELP)]
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy file (YAML).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Where `--help` lists the policy options (set per argument: a heading on the flattened struct
/// would also capture the options that follow it in `plan` and `apply`).
const HEADING: &str = "Retention policy";

/// Flags that conflict with `--policy` (clap argument ids).
const FLAG_IDS: [&str; 13] = [
    "repos",
    "keep_tags",
    "keep_newest",
    "keep_semver",
    "keep_newer_than",
    "keep_digests_file",
    "delete_tags",
    "delete_semver",
    "older_than",
    "order",
    "time_source",
    "min_tags",
    "allow_delete_all",
];

/// Which tags to keep and delete: a policy file, or flags for one rule over the repositories
/// matching `--repos`. Keep flags each keep what they match; delete flags are combined (a tag
/// must match all of them); without delete flags every tag not kept is deleted.
#[derive(Debug, Clone, Default, Args)]
pub struct PolicyArgs {
    /// Retention policy file (YAML, see docs/policy.md). Instead of it, the flags below make one rule.
    #[arg(long, help_heading = HEADING, value_name = "FILE", conflicts_with_all = FLAG_IDS)]
    pub policy: Option<PathBuf>,

    /// Repositories the rule applies to (glob; `*` stops at `/`, `**` does not). Repeatable.
    /// Default: every repository.
    #[arg(long, help_heading = HEADING, value_name = "GLOB")]
    pub repos: Vec<String>,

    /// Keep tags matching this glob (e.g. latest, 'release-*'). Repeatable.
    #[arg(long, help_heading = HEADING, value_name = "GLOB")]
    pub keep_tags: Vec<String>,

    /// Keep the N newest tags (by --order).
    #[arg(long, help_heading = HEADING, value_name = "N")]
    pub keep_newest: Option<usize>,

    /// Keep tags whose version is in RANGE (e.g. '>=2.0.0', '>=1.2, <2'); versions are read
    /// leniently (v1.2.3, 1.2, 950).
    #[arg(long, help_heading = HEADING, value_name = "RANGE")]
    pub keep_semver: Option<String>,

    /// Keep tags newer than this (e.g. 14d, 2w, 36h).
    #[arg(long, help_heading = HEADING, value_name = "DURATION")]
    pub keep_newer_than: Option<String>,

    /// Keep tags whose digest is listed in FILE (one per line, or image@digest; `#` comments),
    /// e.g. what is deployed. Repeatable.
    #[arg(long, help_heading = HEADING, value_name = "FILE")]
    pub keep_digests_file: Vec<PathBuf>,

    /// Delete only tags matching this glob (e.g. 'pr-*'). Repeatable.
    #[arg(long, help_heading = HEADING, value_name = "GLOB")]
    pub delete_tags: Vec<String>,

    /// Delete only tags whose version is in RANGE (e.g. '<2.0.0').
    #[arg(long, help_heading = HEADING, value_name = "RANGE")]
    pub delete_semver: Option<String>,

    /// Delete only tags older than this (e.g. 30d, 2w, 36h).
    #[arg(long, help_heading = HEADING, value_name = "DURATION")]
    pub older_than: Option<String>,

    /// Order for --keep-newest and --min-tags: semver, time or name [default: time].
    #[arg(long, help_heading = HEADING, value_name = "ORDER", value_parser = parse_order)]
    pub order: Option<Order>,

    /// Where a tag's time comes from: created (image config), label:KEY or annotation:KEY
    /// [default: created].
    #[arg(long, help_heading = HEADING, value_name = "SOURCE")]
    pub time_source: Option<String>,

    /// Never leave a repository with fewer tags than N (the newest are kept) [default: 0].
    #[arg(long, help_heading = HEADING, value_name = "N")]
    pub min_tags: Option<usize>,

    /// Allow deleting every tag of a repository (refused otherwise).
    #[arg(long, help_heading = HEADING)]
    pub allow_delete_all: bool,
}

fn parse_order(text: &str) -> Result<Order, String> {
    text.parse()
}

impl PolicyArgs {
    /// The flags as the library's [`PolicyFlags`].
    pub fn flags(&self) -> PolicyFlags {
        PolicyFlags {
            repos: self.repos.clone(),
            keep_tags: self.keep_tags.clone(),
            keep_newest: self.keep_newest,
            keep_semver: self.keep_semver.clone(),
            keep_newer_than: self.keep_newer_than.clone(),
            keep_digests_files: self.keep_digests_file.clone(),
            delete_tags: self.delete_tags.clone(),
            delete_semver: self.delete_semver.clone(),
            older_than: self.older_than.clone(),
            order: self.order,
            time: self.time_source.clone(),
            min_tags: self.min_tags,
            allow_delete_all: self.allow_delete_all,
        }
    }

    /// Whether a policy file or any policy flag was given.
    pub fn is_given(&self) -> bool {
        self.policy.is_some() || !self.flags().is_empty()
    }

    /// Reads and validates the policy (and the digests files it names). Every problem is a
    /// [`UsageError`] (exit code 2).
    pub fn load(&self) -> anyhow::Result<Policy> {
        let flags = self.flags();
        match &self.policy {
            Some(path) if !flags.is_empty() => Err(UsageError::new(format!(
                "--policy {} cannot be combined with the policy flags (--keep-*, --delete-*, --older-than, …); \
                 put those rules in the file",
                path.display()
            ))
            .into()),
            Some(path) => load_file(path),
            None if flags.is_empty() => Err(UsageError::new(
                "no retention policy: give --policy FILE, or flags such as --keep-newest 10 or --older-than 30d \
                 (see docs/policy.md)",
            )
            .into()),
            None => {
                let mut policy = Policy::from_flags(&flags).map_err(UsageError::policy)?;
                // Digests files given as flags are relative to the working directory.
                attach_digests_files(&mut policy, Path::new(""))?;
                Ok(policy)
            }
        }
    }
}

/// Reads a policy file and the digests files it names (relative to the policy's folder).
pub fn load_file(path: &Path) -> anyhow::Result<Policy> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|err| UsageError::new(format!("cannot read policy file {name}: {err}")))?;
    let mut policy = Policy::from_yaml(&text, &name).map_err(UsageError::policy)?;
    attach_digests_files(&mut policy, path.parent().unwrap_or(Path::new("")))?;
    Ok(policy)
}

fn attach_digests_files(policy: &mut Policy, base: &Path) -> anyhow::Result<()> {
    let files: Vec<PathBuf> = policy
        .digests_files()
        .into_iter()
        .map(Path::to_path_buf)
        .collect();
    for written in files {
        let resolved = base.join(&written);
        let name = resolved.display().to_string();
        let text = std::fs::read_to_string(&resolved).map_err(|err| {
            UsageError::new(format!(
                "{}: cannot read digests-file {name}: {err}",
                policy.source_name()
            ))
        })?;
        policy
            .attach_digests(&written, &text, &name)
            .map_err(UsageError::policy)?;
    }
    Ok(())
}

pub fn run(command: &PolicyCommand, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    match &command.command {
        PolicySubcommand::Check(args) => check(args, ui),
    }
}

fn check(args: &CheckArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    let policy = load_file(&args.file)?;
    let summary = policy.summary();
    if ui.json() {
        ui.print_json(&summary)?;
    } else {
        write!(ui.out(), "{}", render(&summary))?;
    }
    Ok(ExitStatus::Success)
}

/// The summary as text: one block per rule, selectors in words.
fn render(summary: &PolicySummary) -> String {
    let mut out = String::new();
    let count = summary.rules.len();
    let plural = if count == 1 { "" } else { "s" };
    out.push_str(&format!("{}: valid, {count} rule{plural}\n", summary.source));
    for rule in &summary.rules {
        out.push_str(&format!("\n{}\n", rule.rule));
        if rule.keep.is_empty() {
            out.push_str("  keep    (nothing by selector)\n");
        }
        for keep in &rule.keep {
            out.push_str(&format!("  keep    {keep}\n"));
        }
        match &rule.delete {
            None => out.push_str("  delete  every tag not kept\n"),
            Some(list) if list.is_empty() => out.push_str("  delete  nothing\n"),
            Some(list) => {
                for delete in list {
                    out.push_str(&format!("  delete  {delete}\n"));
                }
            }
        }
        let time: Vec<String> = rule.time.iter().map(ToString::to_string).collect();
        out.push_str(&format!(
            "  order {}, time {}, min-tags {}, {}\n",
            rule.order,
            time.join(" then "),
            rule.protect.min_tags,
            if rule.protect.allow_delete_all {
                "may delete every tag"
            } else {
                "never deletes every tag"
            }
        ));
    }
    out.push_str("\nKeep beats delete; repositories no rule matches are not touched.\n");
    out
}
