//! The retention commands: `plan`, `apply`, `rm` and `restore`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use crate::apply::{self, ApplyOptions, ApplyReport};
use crate::plan::{Action, Plan, TagAction};
use crate::policy::Policy;
use crate::reference::{ImageRef, Location, RegistryAddr};
use crate::registry::Client;
use crate::retention::{self, Removal};
use anyhow::Context;
use clap::Args;

use super::connect::{RegistryArgs, runtime};
use super::fold;
use super::output::{Bar, plural, print_table_with_notes, size, table, with_json_error};
use super::policy::PolicyArgs;
use super::storage::{self as on_storage, Opened, StorageArgs, StorageRef, StorageWriteArgs};
use super::{ExitStatus, Ui, UsageError};

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// What to plan: a registry (every repository in its catalog) or repositories of one
    /// registry (REGISTRY/REPO …); with --storage, repositories without a host (none: all).
    #[arg(value_name = "REGISTRY[/REPO] | REPO")]
    pub targets: Vec<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Write the plan as JSON to this file, for `regsweep apply FILE`.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Show kept tags too (by default only what changes is listed per repository).
    #[arg(long)]
    pub all: bool,
    /// Also write a self-contained HTML page (what the plan frees per repository) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub connection: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan file written by `regsweep plan -o`, or, with --policy or policy flags, the
    /// registry or repositories to plan and apply in one go (with --storage: repositories
    /// without a host, none for all).
    #[arg(value_name = "PLAN.json | REGISTRY[/REPO] | REPO")]
    pub inputs: Vec<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Do not ask for confirmation (required when not on a terminal).
    #[arg(short, long)]
    pub yes: bool,
    /// Save every manifest before deleting it into this directory; `regsweep restore DIR` puts
    /// them back (until the registry's garbage collection removes their blobs).
    #[arg(long, value_name = "DIR")]
    pub backup: Option<PathBuf>,
    /// With --storage: collect garbage right after (`regsweep gc` on the same storage, without
    /// --delete-untagged), so that the space is freed in one step.
    #[arg(long, requires = "storage")]
    pub gc: bool,
    /// With --gc: gc's grace period (blobs, links and uploads modified more recently are kept).
    /// 0 collects everything unreferenced at once; only for a stopped or read-only registry.
    #[arg(long, value_name = "DURATION", requires = "gc", default_value = "1h")]
    pub grace: String,
    /// With --storage: afterwards, remove the plan's repositories that have no tags and no
    /// manifests left, so that they leave the catalog (the API has no way to do this).
    #[arg(long, requires = "storage")]
    pub remove_empty_repositories: bool,
    #[command(flatten)]
    pub storage: StorageWriteArgs,
    #[command(flatten)]
    pub connection: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Tags (REGISTRY/REPO:TAG) or manifests (REGISTRY/REPO@DIGEST) to remove, all on one
    /// registry; with --storage, REPO:TAG or REPO@DIGEST.
    #[arg(value_name = "REF", required = true)]
    pub references: Vec<String>,
    /// Delete a manifest even when a kept index or tag still needs it (breaks that image).
    #[arg(long)]
    pub force: bool,
    /// Show what would be removed, remove nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Save every manifest before deleting it into this directory (see `restore`).
    #[arg(long, value_name = "DIR")]
    pub backup: Option<PathBuf>,
    /// With --storage: afterwards, remove the named repositories if no tags and no manifests are
    /// left in them, so that they leave the catalog.
    #[arg(long, requires = "storage")]
    pub remove_empty_repositories: bool,
    #[command(flatten)]
    pub storage: StorageWriteArgs,
    #[command(flatten)]
    pub connection: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A directory written by `apply --backup` or `rm --backup`.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The registry to restore into (not with --storage).
    #[arg(value_name = "REGISTRY", required_unless_present = "storage")]
    pub registry: Option<String>,
    #[command(flatten)]
    pub storage: StorageWriteArgs,
    #[command(flatten)]
    pub connection: RegistryArgs,
}

/// Parses targets that must all be on one registry; `None` for the repositories means the
/// whole catalog.
fn targets(inputs: &[String]) -> anyhow::Result<(RegistryAddr, Option<Vec<String>>)> {
    let mut registry: Option<RegistryAddr> = None;
    let mut repos: Vec<String> = Vec::new();
    let mut whole = false;
    for input in inputs {
        let location = Location::parse(input).map_err(UsageError::from)?;
        if let Some(r) = &registry
            && r.host() != location.registry.host()
        {
            return Err(UsageError::new(format!(
                "all targets must be on one registry: `{}` and `{}`",
                r.host(),
                location.registry.host()
            ))
            .into());
        }
        registry = Some(location.registry);
        match location.repository {
            Some(repo) => repos.push(repo.to_string()),
            None => whole = true,
        }
    }
    let registry = registry.ok_or_else(|| {
        UsageError::new("name a registry or repositories (or the registry's storage with --storage TARGET)")
    })?;
    Ok((registry, if whole { None } else { Some(repos) }))
}

async fn make_plan(
    client: &Client,
    policy: &Policy,
    repos: Option<Vec<String>>,
    concurrency: usize,
    ui: &mut Ui<'_>,
) -> anyhow::Result<Plan> {
    let repositories = match repos {
        Some(repos) => repos,
        None => client.catalog().await?.into_iter().map(String::from).collect(),
    };
    let bar = Bar::new(ui, "scanning");
    let plan =
        retention::plan_with_policy(client, policy, &repositories, concurrency, ui.timestamp(), &bar).await;
    bar.finish();
    // Read errors are failures: they go to stderr too, whatever the output format.
    for repo in &plan.repositories {
        for err in &repo.errors {
            writeln!(ui.err(), "error: {}: {err}", repo.repository)?;
        }
    }
    Ok(plan)
}

/// Plans on the registry's storage: `inputs` are repository names (none: every repository).
fn make_storage_plan(
    opened: &Opened,
    policy: &Policy,
    inputs: &[String],
    ui: &mut Ui<'_>,
) -> anyhow::Result<Plan> {
    let repositories = on_storage::repositories(ui, inputs, &opened.storage)?;
    let bar = Bar::new(ui, "reading storage");
    let plan = retention::plan_on_storage(&opened.storage, policy, &repositories, ui.timestamp(), &bar);
    bar.finish();
    for repo in &plan.repositories {
        for err in &repo.errors {
            writeln!(ui.err(), "error: {}: {err}", repo.repository)?;
        }
    }
    Ok(plan)
}

/// Over the API nobody can tell when a tag was pushed: a policy that needs it would keep
/// everything without saying why.
fn refuse_push_times(policy: &Policy) -> anyhow::Result<()> {
    if policy.needs_push_times(None) {
        return Err(UsageError::new(
            "the `pushed` time source needs --storage TARGET: the registry API does not tell when a tag was pushed \
             (over the API use created, label:KEY or annotation:KEY)",
        )
        .into());
    }
    Ok(())
}

pub fn plan(args: &PlanArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    with_json_error(ui, |ui| plan_command(args, ui))
}

fn plan_command(args: &PlanArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    let plan = if let Some(opened) = args.storage.open(ui.env())? {
        let policy = args.policy.load()?;
        make_storage_plan(&opened, &policy, &args.targets, ui)?
    } else {
        let (registry, repos) = targets(&args.targets)?;
        // A bad policy is a usage error, found before any network traffic.
        let policy = args.policy.load()?;
        refuse_push_times(&policy)?;
        runtime()?.block_on(async {
            let client = args.connection.connector(ui)?.connect(&registry).await?;
            make_plan(&client, &policy, repos, args.connection.concurrency(), ui).await
        })?
    };
    if let Some(path) = &args.output {
        let json = serde_json::to_vec_pretty(&plan)?;
        std::fs::write(path, json).with_context(|| format!("cannot write the plan to {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        super::report::plan(path, &plan)?;
    }
    if ui.json() {
        ui.print_json(&plan)?;
    } else {
        print_plan(ui.out(), &plan, args.all)?;
        if let Some(path) = &args.output {
            writeln!(
                ui.out(),
                "Plan written to {}; carry it out with `regsweep apply {}`.",
                path.display(),
                path.display()
            )?;
        }
    }
    Ok(if plan.totals.repositories_with_errors > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

fn action_word(action: TagAction) -> &'static str {
    match action {
        TagAction::Keep => "keep",
        TagAction::Delete => "delete",
        TagAction::Untag => "untag",
    }
}

fn print_plan(out: &mut impl Write, plan: &Plan, all: bool) -> std::io::Result<()> {
    let mut untouched = 0;
    for repo in &plan.repositories {
        let changes = repo.tags.iter().any(|t| t.action != TagAction::Keep);
        let leftovers: Vec<&Action> = repo
            .actions
            .iter()
            .filter(|a| matches!(a, Action::RemovePlaceholder { .. }))
            .collect();
        if !changes && leftovers.is_empty() && repo.errors.is_empty() && repo.refused.is_none() && !all {
            untouched += 1;
            continue;
        }
        let rule = repo
            .rule
            .as_deref()
            .map(|r| format!("  ({r})"))
            .unwrap_or_default();
        writeln!(out, "{}{rule}", repo.repository)?;
        for e in &repo.errors {
            writeln!(out, "  read error: {e}")?;
        }
        if let Some(refused) = &repo.refused {
            writeln!(out, "  refused: {refused}")?;
        }
        for leftover in leftovers {
            if let Action::RemovePlaceholder {
                tag,
                placeholder,
                untag_of,
            } = leftover
            {
                let was = untag_of
                    .as_ref()
                    .map(|d| format!(" (an interrupted untag from {})", d.short()))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "  leftover: tag `{tag}` points at regsweep's placeholder {}{was}; apply removes it",
                    placeholder.short()
                )?;
            }
        }
        let mut t = table(&["  TAG", "DIGEST", "ACTION", "REASON"]);
        let listed: Vec<_> = repo
            .tags
            .iter()
            .filter(|t| all || t.action != TagAction::Keep)
            .collect();
        let rows: Vec<fold::Row> = listed
            .iter()
            .map(|tag| fold::Row {
                tag: &tag.tag,
                digest: Some(&tag.digest),
                label: action_word(tag.action),
            })
            .collect();
        let mut notes = Vec::new();
        for shown in fold::fold(&rows) {
            let tag = listed[shown.index];
            t.add_row(vec![
                format!("  {}", shown.tag),
                tag.digest.short().to_owned(),
                action_word(tag.action).to_owned(),
                tag.reason.clone(),
            ]);
            notes.push(shown.note);
        }
        if t.row_count() > 0 {
            print_table_with_notes(out, &mut t, &notes, "    ")?;
        }
        let manifests = repo
            .actions
            .iter()
            .filter(|a| matches!(a, Action::DeleteManifest { .. }))
            .count();
        let untagged_manifests = repo
            .actions
            .iter()
            .filter(|a| matches!(a, Action::DeleteManifest { tags, .. } if tags.is_empty()))
            .count();
        if manifests > 0 {
            writeln!(
                out,
                "  deletes {} ({untagged_manifests} untagged: index children and referrers); frees {}",
                plural(manifests, "manifest", "manifests"),
                size(repo.bytes_freed)
            )?;
        }
        writeln!(out)?;
    }
    if untouched > 0 {
        writeln!(
            out,
            "{} unchanged (use --all to list their tags)",
            plural(untouched, "repository", "repositories")
        )?;
    }
    writeln!(out, "{}", plan_summary(plan))?;
    let t = &plan.totals;
    if t.repositories_refused > 0 || t.repositories_with_errors > 0 {
        writeln!(
            out,
            "Nothing is deleted in {} refused by a guard and {} with read errors.",
            plural(t.repositories_refused, "repository", "repositories"),
            t.repositories_with_errors
        )?;
    }
    Ok(())
}

/// The plan's last line: what it keeps, deletes and frees.
fn plan_summary(plan: &Plan) -> String {
    let t = &plan.totals;
    format!(
        "Plan for {}: {}; tags: {} kept, {} deleted, {} untagged only; {} deleted; {} freed once the registry's garbage collection runs.",
        plan.registry,
        plural(t.repositories, "repository", "repositories"),
        t.tags_kept,
        t.tags_deleted,
        t.tags_untagged,
        plural(t.manifests_deleted, "manifest", "manifests"),
        size(t.bytes_freed)
    )
}

pub fn apply(args: &ApplyArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    with_json_error(ui, |ui| apply_command(args, ui))
}

fn apply_command(args: &ApplyArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    if args.gc && ui.json() {
        return Err(UsageError::new(
            "--gc with --json would print two documents; run `regsweep gc --json` after `apply --json`",
        )
        .into());
    }
    let from_policy = args.policy.is_given();
    let opened = args.storage.open(ui.env())?;
    let rt = runtime()?;
    let (client, plan) = match (&opened, from_policy) {
        (Some(opened), true) => {
            let policy = args.policy.load()?;
            (None, make_storage_plan(opened, &policy, &args.inputs, ui)?)
        }
        (None, true) => {
            let (registry, repos) = targets(&args.inputs)?;
            let policy = args.policy.load()?;
            refuse_push_times(&policy)?;
            rt.block_on(async {
                let client = args.connection.connector(ui)?.connect(&registry).await?;
                let plan = make_plan(&client, &policy, repos, args.connection.concurrency(), ui).await?;
                anyhow::Ok((Some(client), plan))
            })?
        }
        (_, false) => {
            let [file] = args.inputs.as_slice() else {
                return Err(UsageError::new("apply takes one plan file, or --policy/policy flags with the registry or repositories to plan").into());
            };
            let bytes = std::fs::read(file).with_context(|| format!("cannot read the plan {file}"))?;
            let plan: Plan = serde_json::from_slice(&bytes)
                .map_err(|e| UsageError::new(format!("{file} is not a regsweep plan: {e}")))?;
            if opened.is_some() {
                // Checked against the storage itself right before each repository's changes,
                // whichever way the plan was made.
                apply::validate_contents(&plan).map_err(|e| UsageError::new(format!("{file}: {e}")))?;
                (None, plan)
            } else {
                let registry = RegistryAddr::parse(&plan.registry).map_err(|e| {
                    UsageError::new(format!(
                        "{file} names `{}` as its registry ({e}); a plan made on storage is applied with --storage",
                        plan.registry
                    ))
                })?;
                // A plan file that names invalid repositories is refused before connecting.
                apply::validate(&plan, registry.host())
                    .map_err(|e| UsageError::new(format!("{file}: {e}")))?;
                (
                    Some(rt.block_on(args.connection.connector(ui)?.connect(&registry))?),
                    plan,
                )
            }
        }
    };
    if !ui.json() {
        print_plan(ui.out(), &plan, false)?;
    }
    // Counted from the actions, not from the file's totals, which nothing checks.
    let (untags, deletes, leftovers) = plan.distinct_actions();
    if untags + deletes + leftovers == 0 {
        if ui.json() {
            ui.print_json(&ApplyReport::default())?;
        } else {
            writeln!(ui.out(), "Nothing to do.")?;
        }
        return Ok(ExitStatus::Success);
    }
    if let Some(opened) = &opened {
        args.storage
            .check_registry_stopped(ui, &args.connection.ca_file, args.connection.insecure)?;
        if !args.yes {
            confirm(ui, &confirm_question(&plan, &opened.described))?;
        }
    } else if !args.yes {
        confirm(ui, &confirm_question(&plan, &plan.registry))?;
    }
    let bar = Bar::new(ui, "applying");
    let options = ApplyOptions {
        concurrency: args.connection.concurrency(),
        backup: args.backup.clone(),
        force: false,
        remove_empty_repositories: args.remove_empty_repositories,
    };
    let report = match (&opened, &client) {
        (Some(opened), _) => apply::apply_on_storage(&opened.storage, &plan, &options, &bar)?,
        (None, Some(client)) => rt.block_on(apply::apply(client, &plan, &options, &bar))?,
        (None, None) => anyhow::bail!("no registry to apply the plan to"),
    };
    bar.finish();
    let code = finish(&report, ui)?;
    if let Some(target) = &args.storage.target.storage {
        if args.gc && !report.deleted.is_empty() {
            // The collection ends with its own reminder to restart the registry.
            let gc_code = collect_after_apply(target, &args.grace, &args.storage, &args.connection, ui)?;
            return Ok(code.max(gc_code));
        }
        if !ui.quiet() && report.changed_anything() {
            on_storage::restart_reminder(ui)?;
        }
    }
    Ok(code)
}

/// What `apply` asks before changing anything.
fn confirm_question(plan: &Plan, place: &str) -> String {
    let (untags, deletes, leftovers) = plan.distinct_actions();
    let repositories = plan.repositories.iter().filter(|r| !r.actions.is_empty()).count();
    format!(
        "Delete {}, untag {}{}, in {} of {place}?",
        plural(deletes, "manifest", "manifests"),
        plural(untags, "tag", "tags"),
        if leftovers > 0 {
            format!(
                ", remove {}",
                plural(leftovers, "leftover placeholder", "leftover placeholders")
            )
        } else {
            String::new()
        },
        plural(repositories, "repository", "repositories"),
    )
}

/// `apply --storage … --gc`: the collection on the same storage, with gc's defaults (a grace
/// period of an hour, untagged manifests kept) and the same registry check.
fn collect_after_apply(
    target: &str,
    grace: &str,
    storage: &StorageWriteArgs,
    connection: &RegistryArgs,
    ui: &mut Ui<'_>,
) -> anyhow::Result<ExitStatus> {
    #[derive(clap::Parser)]
    struct Gc {
        #[command(flatten)]
        args: super::gc::GcArgs,
    }
    let mut argv: Vec<String> = vec!["gc".into(), target.to_owned(), "--grace".into(), grace.to_owned()];
    if let Some(url) = &storage.registry_url {
        argv.extend(["--registry-url".into(), url.clone()]);
        if !storage.allow_writable {
            argv.push("--require-read-only".into());
        }
        for ca in &connection.ca_file {
            argv.extend(["--ca-file".into(), ca.display().to_string()]);
        }
        if connection.insecure {
            argv.push("--insecure".into());
        }
    }
    let gc = <Gc as clap::Parser>::try_parse_from(argv).map_err(|e| UsageError::new(e.to_string()))?;
    if !ui.quiet() {
        writeln!(ui.out())?;
        writeln!(ui.out(), "Collecting garbage on {target}:")?;
    }
    super::gc::run(&gc.args, ui)
}

/// Asks on the terminal; refuses without one.
fn confirm(ui: &mut Ui<'_>, question: &str) -> anyhow::Result<()> {
    if !ui.can_ask() {
        return Err(UsageError::new(
            "refusing to delete without confirmation: not on a terminal; pass --yes",
        )
        .into());
    }
    write!(ui.err(), "{question} [y/N] ")?;
    ui.err().flush()?;
    let answer = ui.read_line()?.unwrap_or_default();
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        anyhow::bail!("cancelled; nothing was deleted")
    }
}

fn finish(report: &ApplyReport, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    if ui.json() {
        ui.print_json(report)?;
    } else {
        for c in &report.cleaned {
            writeln!(ui.out(), "cleaned {}:{}: {}", c.repository, c.target, c.detail)?;
        }
        for s in &report.skipped {
            writeln!(ui.out(), "skipped {} {}: {}", s.repository, s.target, s.detail)?;
        }
        for f in report.refused.iter().chain(&report.failed) {
            writeln!(ui.err(), "failed {} {}: {}", f.repository, f.target, f.detail)?;
        }
        for repository in &report.removed_repositories {
            writeln!(ui.out(), "removed the empty repository {repository}")?;
        }
        writeln!(ui.out(), "{}", apply_summary(report))?;
    }
    Ok(if report.is_success() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// The last line of `apply` and `rm`: what was done, and what the registry's GC can reclaim.
fn apply_summary(report: &ApplyReport) -> String {
    let tags: usize = report.deleted.iter().map(|d| d.tags.len()).sum();
    let cleaned = if report.cleaned.is_empty() {
        String::new()
    } else {
        format!(
            ", removed {}",
            plural(
                report.cleaned.len(),
                "leftover placeholder",
                "leftover placeholders"
            )
        )
    };
    format!(
        "Deleted {} ({}), untagged {}{}{cleaned}; {} skipped, {} refused, {} failed. About {} can be reclaimed by the registry's garbage collection (`regsweep gc`).",
        plural(report.deleted.len(), "manifest", "manifests"),
        plural(tags, "tag", "tags"),
        plural(report.untagged.len(), "tag", "tags"),
        report
            .untag_method
            .map(|m| format!(" ({})", untag_method_words(m)))
            .unwrap_or_default(),
        report.skipped.len(),
        report.refused.len(),
        report.failed.len(),
        size(report.bytes_freed)
    )
}

fn untag_method_words(method: apply::UntagMethod) -> &'static str {
    match method {
        apply::UntagMethod::DeleteByTag => "by OCI tag deletion",
        apply::UntagMethod::Placeholder => "by placeholder manifest, since the registry cannot delete tags",
    }
}

pub fn rm(args: &RmArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    with_json_error(ui, |ui| rm_command(args, ui))
}

fn rm_command(args: &RmArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    if let Some(opened) = args.storage.open(ui.env())? {
        return rm_on_storage(args, &opened, ui);
    }
    let mut registry: Option<RegistryAddr> = None;
    let mut removals: BTreeMap<String, Removal> = BTreeMap::new();
    for input in &args.references {
        let reference = ImageRef::parse(input).map_err(UsageError::from)?;
        if let Some(r) = &registry
            && r.host() != reference.registry().host()
        {
            return Err(UsageError::new("all references must be on one registry").into());
        }
        add_removal(
            &mut removals,
            reference.repository(),
            reference.tag(),
            reference.digest(),
        );
        registry = Some(reference.into_registry());
    }
    let registry = registry.ok_or_else(|| UsageError::new("name what to remove"))?;
    let concurrency = args.connection.concurrency();
    let rt = runtime()?;
    let client = rt.block_on(args.connection.connector(ui)?.connect(&registry))?;
    // Every repository is planned before anything is removed, so that a refusal in one leaves
    // all of them untouched; the plans are then applied as one, with one report.
    let mut plans = Vec::new();
    for (repository, removal) in &removals {
        plans.push(rt.block_on(retention::plan_removal(
            &client,
            &crate::reference::Repository::parse(repository)?,
            removal,
            args.force,
            concurrency,
        ))?);
    }
    let Some(plan) = merged(plans) else {
        return Err(UsageError::new("name what to remove").into());
    };
    if args.dry_run {
        return show_dry_run(&plan, ui);
    }
    let options = ApplyOptions {
        concurrency,
        backup: args.backup.clone(),
        force: args.force,
        remove_empty_repositories: false,
    };
    let report = rt.block_on(apply::apply(
        &client,
        &plan,
        &options,
        &crate::progress::NoProgress,
    ))?;
    print_removed(&report, ui)?;
    finish(&report, ui)
}

/// `rm --storage`: the same planning and review, carried out on the storage.
fn rm_on_storage(args: &RmArgs, opened: &Opened, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    let mut removals: BTreeMap<String, Removal> = BTreeMap::new();
    for input in &args.references {
        let reference = StorageRef::parse(input)?;
        add_removal(
            &mut removals,
            &reference.repository,
            reference.tag.as_ref(),
            reference.digest.as_ref(),
        );
    }
    let now = ui.timestamp();
    let plans = removals
        .iter()
        .map(|(repository, removal)| {
            retention::plan_removal_on_storage(&opened.storage, repository, removal, args.force, now)
        })
        .collect::<Result<Vec<Plan>, _>>()?;
    let Some(plan) = merged(plans) else {
        return Err(UsageError::new("name what to remove").into());
    };
    if args.dry_run {
        return show_dry_run(&plan, ui);
    }
    args.storage
        .check_registry_stopped(ui, &args.connection.ca_file, args.connection.insecure)?;
    let options = ApplyOptions {
        concurrency: args.connection.concurrency(),
        backup: args.backup.clone(),
        force: args.force,
        remove_empty_repositories: args.remove_empty_repositories,
    };
    let report = apply::apply_on_storage(&opened.storage, &plan, &options, &crate::progress::NoProgress)?;
    print_removed(&report, ui)?;
    let code = finish(&report, ui)?;
    if !ui.quiet() && report.changed_anything() {
        on_storage::restart_reminder(ui)?;
    }
    Ok(code)
}

fn add_removal(
    removals: &mut BTreeMap<String, Removal>,
    repository: &crate::reference::Repository,
    tag: Option<&crate::reference::Tag>,
    digest: Option<&crate::digest::Digest>,
) {
    let removal = removals.entry(repository.to_string()).or_default();
    match (digest, tag) {
        (Some(digest), _) => removal.digests.push(digest.clone()),
        (None, Some(tag)) => removal.tags.push(tag.to_string()),
        // References always name a tag or a digest.
        (None, None) => {}
    }
}

/// The plans of several repositories as one.
fn merged(plans: Vec<Plan>) -> Option<Plan> {
    let mut plans = plans.into_iter();
    let mut plan = plans.next()?;
    for one in plans {
        plan.merge(one);
    }
    Some(plan)
}

fn show_dry_run(plan: &Plan, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    if ui.json() {
        ui.print_json(plan)?;
    } else {
        print_plan(ui.out(), plan, false)?;
    }
    Ok(ExitStatus::Success)
}

fn print_removed(report: &ApplyReport, ui: &mut Ui<'_>) -> std::io::Result<()> {
    if ui.json() {
        return Ok(());
    }
    for d in &report.deleted {
        let tags = if d.tags.is_empty() {
            "untagged".to_owned()
        } else {
            format!("tags: {}", d.tags.join(", "))
        };
        writeln!(ui.out(), "deleted {}{} ({tags})", d.repository, d.target)?;
    }
    for u in &report.untagged {
        let how = report
            .untag_method
            .map(untag_method_words)
            .unwrap_or("on storage");
        writeln!(ui.out(), "untagged {}:{} ({how})", u.repository, u.target)?;
    }
    Ok(())
}

pub fn restore(args: &RestoreArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    with_json_error(ui, |ui| restore_command(args, ui))
}

fn restore_command(args: &RestoreArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    let opened = args.storage.open(ui.env())?;
    let registry = match (&opened, &args.registry) {
        (None, Some(registry)) => Some(RegistryAddr::parse(registry).map_err(UsageError::from)?),
        (None, None) => {
            return Err(UsageError::new("name the registry to restore into, or --storage TARGET").into());
        }
        (Some(_), Some(registry)) => {
            return Err(UsageError::new(format!(
                "restore into the registry `{registry}` or into --storage, not both"
            ))
            .into());
        }
        (Some(_), None) => None,
    };
    let entries = apply::read_backup(&args.dir)
        .map_err(|e| UsageError::new(format!("cannot restore from {}: {e}", args.dir.display())))?;
    if entries.is_empty() {
        return Err(UsageError::new(format!("{} holds no backed-up manifests", args.dir.display())).into());
    }
    let results = match (&opened, registry) {
        (Some(opened), _) => {
            args.storage
                .check_registry_stopped(ui, &args.connection.ca_file, args.connection.insecure)?;
            apply::restore_on_storage(&opened.storage, &entries)
        }
        (None, Some(registry)) => {
            let rt = runtime()?;
            let client = rt.block_on(args.connection.connector(ui)?.connect(&registry))?;
            rt.block_on(apply::restore(&client, &entries))
        }
        (None, None) => anyhow::bail!("no registry to restore into"),
    };
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if ui.json() {
        let restored: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        ui.print_json(&serde_json::json!({ "restored": restored, "failed": failed }))?;
    } else {
        for r in &results {
            match r {
                Ok(what) => writeln!(ui.out(), "restored {what}")?,
                Err(e) => writeln!(ui.err(), "failed {e}")?,
            }
        }
    }
    if opened.is_some() && !ui.quiet() && results.iter().any(Result::is_ok) {
        on_storage::restart_reminder(ui)?;
    }
    if failed.is_empty() {
        Ok(ExitStatus::Success)
    } else {
        writeln!(
            ui.err(),
            "error: {} of {} could not be restored (were their blobs garbage-collected?)",
            failed.len(),
            plural(results.len(), "manifest", "manifests")
        )?;
        Ok(ExitStatus::Failure)
    }
}

#[cfg(test)]
mod tests {
    use crate::apply::Done;

    use super::*;

    fn done(target: &str, tags: &[&str]) -> Done {
        Done {
            repository: "app".into(),
            target: target.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            detail: String::new(),
        }
    }

    #[test]
    fn summaries_count_in_the_right_number() {
        let report = ApplyReport {
            deleted: vec![done("@sha256:aa", &["v1"])],
            untagged: vec![done("v2", &[])],
            cleaned: vec![done("v3", &[])],
            bytes_freed: 1024,
            ..ApplyReport::default()
        };
        assert_eq!(
            apply_summary(&report),
            "Deleted 1 manifest (1 tag), untagged 1 tag, removed 1 leftover placeholder; 0 skipped, \
             0 refused, 0 failed. About 1.0 KiB can be reclaimed by the registry's garbage collection \
             (`regsweep gc`)."
        );
    }
}
