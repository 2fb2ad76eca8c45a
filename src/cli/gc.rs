//! `regsweep gc`: garbage-collect a distribution registry's filesystem storage.

use std::io::Write as _;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use super::output::plural;
use super::{ExitStatus, Ui};
use crate::gc::probe::{Probe, probe_registry};
use crate::gc::report::{Outcome, Problem, ProblemKind, Report, Severity};
use crate::gc::{self, GcOptions};
use crate::registry::ClientOptions;
use crate::storage::{self, RootSource, Storage};
use anyhow::Context as _;
use clap::Args;

const AFTER_HELP: &str = "\
What is kept: every tag's manifest and everything it needs (config and layers; for an index or \
manifest list every child, recursively), referrers of kept manifests (signatures, attestations, SBOMs: \
manifests whose `subject` is a kept manifest, and `sha256-<hex>` tags), and anything modified within \
the grace period. Without --delete-untagged every manifest is kept, as distribution does.

What is deleted: blobs nothing kept needs; with --delete-untagged, untagged manifests (their revision \
links and tag-history entries); `_layers` links no kept manifest of that repository needs (including \
dangling ones left by distribution 2.x); uploads not written to within the grace period; empty folders.

--grace 0 means: no time-based protection at all. Only the re-checks just before deleting (links \
written since the run started) protect a push racing with the collection; use it only on a stopped \
or read-only registry.

Safety: stop the registry or set it read-only (storage.maintenance.readonly.enabled: true) first; \
--registry-url checks that. When a manifest cannot be read, a tag or link is broken, or a needed blob \
is missing, nothing is deleted (exit code 1) unless --ignore-problems is given. Restart the registry \
afterwards: its blob descriptor cache may still list deleted blobs.

Exit codes: 0 done (or dry run), 1 refused or a deletion failed, 2 bad usage. Details and the JSON \
format: docs/gc.md.";

/// Arguments of `regsweep gc`.
#[derive(Debug, Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct GcArgs {
    /// The registry's storage: its folder (the `rootdirectory`, which contains `docker/`); its
    /// config.yml (the `filesystem`, `s3`, `azure` or `gcs` section is read, with the registry's
    /// REGISTRY_STORAGE_* environment overrides); or an object-store URL, s3://BUCKET/PREFIX,
    /// az://CONTAINER/PREFIX or gs://BUCKET/PREFIX, whose endpoint, region and credentials come
    /// from the standard environment (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP=true; AZURE_STORAGE_*; GOOGLE_*). GCS is supported
    /// through object_store but untested.
    #[arg(value_name = "TARGET")]
    pub target: String,

    /// Only show what would be deleted and the bytes it would free; change nothing.
    #[arg(short = 'd', long)]
    pub dry_run: bool,

    /// Also delete manifests no tag reaches (not tagged, not a child of a kept index, not a
    /// referrer of a kept manifest). Children of tagged multi-arch images are kept.
    #[arg(short = 'm', long)]
    pub delete_untagged: bool,

    /// Keep anything modified more recently than this (blobs, links, folders, manifests), so that
    /// pushes racing with the collection are safe. Examples: 30m, 2h, 7d, 0 (no grace period).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_grace)]
    pub grace: Duration,

    /// Sweep even when problems of severity `error` were found (unreadable manifests, broken tags
    /// or links, missing blobs). What those problems hide may then be deleted.
    #[arg(long)]
    pub ignore_problems: bool,

    /// Also read every link file (revisions, `_layers`, and tags, whose targets only matter
    /// with --delete-untagged) and report those that do not hold the digest of their folder or
    /// lead nowhere (a consistency check; slower).
    #[arg(long)]
    pub verify_links: bool,

    /// The registry's URL (e.g. http://127.0.0.1:5000): check first that it is read-only or
    /// stopped, and warn if it accepts writes. The check sends one DELETE for a blob that cannot
    /// exist (sha256 of 64 zeros), which changes nothing.
    #[arg(long, value_name = "URL")]
    pub registry_url: Option<String>,

    /// With --registry-url: trust the CA certificate(s) in this PEM file, in addition to the
    /// system's.
    #[arg(long, value_name = "PEM", requires = "registry_url")]
    pub ca_file: Vec<PathBuf>,

    /// With --registry-url: skip TLS certificate verification.
    #[arg(long, requires = "registry_url")]
    pub insecure: bool,

    /// With --registry-url: refuse to collect (exit code 1) instead of warning when the registry
    /// accepts writes or cannot be checked.
    #[arg(long, requires = "registry_url")]
    pub require_read_only: bool,

    /// Worker threads (default: one per core).
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<NonZeroUsize>,

    /// How many entries of each list to print (0 prints all). --json always prints everything.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub show: usize,
}

/// Parses a grace period: `0`, or a duration such as `90s`, `30m`, `2h`, `1h30m`, `7d`, `1w`
/// (days are 24 hours).
pub fn parse_grace(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    let span: jiff::Span = trimmed
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; use e.g. 30m, 2h, 7d or 0"))?;
    let duration = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|_| format!("`{text}` cannot be a grace period; use units up to weeks, e.g. 2h or 7d"))?;
    Duration::try_from(duration).map_err(|_| format!("`{text}`: the grace period cannot be negative"))
}

pub fn run(args: &GcArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    let located = match storage::locate(&args.target, |name| ui.env().get(name)) {
        Ok(located) => located,
        // Pointing at something that is not a registry's storage is a usage mistake (exit 2).
        Err(err) if err.is_wrong_target() => return Err(super::UsageError::new(err.to_string()).into()),
        Err(err) => return Err(err.into()),
    };
    let notes = !ui.quiet() && !ui.json();
    let described = located.target.describe();
    match &located.source {
        RootSource::Folder => {}
        RootSource::Config(path) => tracing::info!("storage {described} from {}", path.display()),
        RootSource::Environment(_) => {
            if notes {
                writeln!(
                    ui.err(),
                    "note: storage {described} taken from the REGISTRY_STORAGE_* environment (it overrides the config \
                     file, as in the registry)"
                )?;
            }
        }
        RootSource::Default(path) => {
            if notes {
                writeln!(
                    ui.err(),
                    "note: {} sets no storage.filesystem.rootdirectory; using distribution's default {described}",
                    path.display()
                )?;
            }
        }
    }
    if !located.has_layout() && notes {
        writeln!(
            ui.err(),
            "note: {described} has no docker/registry/v2 folder: the registry never stored anything there"
        )?;
    }

    let mut probe_problem = None;
    if let Some(url) = &args.registry_url {
        let client = ClientOptions {
            insecure: args.insecure,
            ca_files: args.ca_file.clone(),
            timeout: Duration::from_secs(15),
            ..ClientOptions::default()
        };
        let verdict = probe_registry(url, &client);
        match &verdict {
            Probe::ReadOnly | Probe::Stopped => {
                if notes {
                    writeln!(ui.err(), "{}", verdict.describe(url))?;
                }
            }
            Probe::Writable(_) | Probe::Unknown(_) => {
                if args.require_read_only {
                    anyhow::bail!(
                        "{}; not collecting because of --require-read-only. Stop the registry or restart it with \
                         storage.maintenance.readonly.enabled: true",
                        verdict.describe(url)
                    );
                }
                probe_problem = Some(
                    Problem::warning(
                        ProblemKind::RegistryWritable,
                        format!(
                            "{}: a push during the collection can lose blobs it reuses; stop the registry or set \
                             it read-only (storage.maintenance.readonly.enabled: true)",
                            verdict.describe(url)
                        ),
                    )
                    .at(url.clone()),
                );
            }
        }
    } else if let Some(true) = located.config_read_only {
        if notes {
            writeln!(
                ui.err(),
                "note: the config file sets storage.maintenance.readonly.enabled: true"
            )?;
        }
    } else if !args.dry_run && !ui.quiet() {
        writeln!(
            ui.err(),
            "warning: the registry's state is unknown (no --registry-url): if it is running and writable, a push \
             during the collection can lose blobs it reuses{}. Stop it or make it read-only, and pass --registry-url \
             to have that checked.",
            if args.grace.is_zero() {
                ", and with --grace 0 even fresh uploads are not protected"
            } else {
                ""
            }
        )?;
    }

    let options = GcOptions {
        dry_run: args.dry_run,
        delete_untagged: args.delete_untagged,
        grace: args.grace,
        ignore_problems: args.ignore_problems,
        verify_links: args.verify_links,
        threads: args.jobs.map(NonZeroUsize::get),
        now: Some(ui.now()),
    };
    let storage = Storage::open(&located.target, ui.env()).context("cannot open the storage")?;
    let spinner = spinner(ui);
    let report = gc::collect(&storage, &options).context("garbage collection could not run");
    spinner.finish_and_clear();
    let mut report = report?;
    let t = &report.timings;
    tracing::info!(
        "gc phases: mark {} ms, blobs {} ms, sweep {} ms, total {} ms",
        t.mark_ms,
        t.blobs_ms,
        t.sweep_ms,
        t.total_ms
    );
    if let Some(r) = &report.requests {
        tracing::info!(
            "object store: {} listings, {} GETs, {} HEADs, {} tag links from ETags, {} keys deleted, {} delete errors, \
             {} throttled answers (lowest concurrency {})",
            r.listings,
            r.gets,
            r.heads,
            r.links_from_etag,
            r.keys_deleted,
            r.delete_errors,
            r.throttled,
            r.lowest_concurrency
        );
    }
    if let Some(problem) = probe_problem {
        report.problems.push(problem);
    }

    if ui.json() {
        ui.print_json(&report)?;
    } else {
        let quiet = ui.quiet();
        print_human(ui.out(), &report, args, quiet)?;
    }
    if !ui.quiet() && report.outcome == Outcome::Swept && !report.is_empty() {
        writeln!(
            ui.err(),
            "Restart the registry now: its blob descriptor cache (storage.cache.blobdescriptor) may still list deleted \
             blobs, and clients would skip uploading them. If you made it read-only for this, restart it writable."
        )?;
    }
    Ok(if report.failed() {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

fn spinner(ui: &Ui<'_>) -> indicatif::ProgressBar {
    if ui.json() || !ui.shows_progress() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message("collecting garbage…");
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Bytes in binary units, e.g. `1.5 MiB`.
fn size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

fn print_human(
    out: &mut impl std::io::Write,
    report: &Report,
    args: &GcArgs,
    quiet: bool,
) -> anyhow::Result<()> {
    // Buffered: the lists can hold hundreds of thousands of lines.
    let mut out = std::io::BufWriter::new(out);
    if quiet {
        writeln!(out, "{}", what_goes(report))?;
    } else {
        for line in summary(report) {
            writeln!(out, "{line}")?;
        }
        let limit = if args.show == 0 { usize::MAX } else { args.show };
        for (title, lines) in sections(report) {
            print_section(&mut out, &title, &lines, limit)?;
        }
        if let Some(ending) = ending(report) {
            writeln!(out, "\n{ending}")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `Deleted …` / `Would delete …`: what the run removes, in one sentence.
fn what_goes(report: &Report) -> String {
    let mut what = format!(
        "{} ({}), {}, {}, {}",
        plural(report.blobs.len(), "blob", "blobs"),
        size(report.freed_bytes),
        plural(report.manifests.len(), "untagged manifest", "untagged manifests"),
        plural(report.layer_links.len(), "layer link", "layer links"),
        plural(report.empty_dirs.len(), "empty folder", "empty folders"),
    );
    if !report.uploads.is_empty() {
        what.push_str(&format!(
            ", {}",
            plural(report.uploads.len(), "stale upload", "stale uploads")
        ));
    }
    let verb = match report.outcome {
        Outcome::Swept => "Deleted",
        Outcome::DryRun => "Would delete",
        Outcome::Refused => "Nothing deleted; would delete",
    };
    format!("{verb} {what}.")
}

/// The lines above the lists: the run's settings, what was scanned, deleted and kept.
fn summary(report: &Report) -> [String; 4] {
    let grace = if report.grace_seconds == 0 {
        "no grace period".to_owned()
    } else {
        // `{:#}` is jiff's friendly format: `1h`, `7d` rather than ISO 8601's `PT1H`.
        format!(
            "grace {:#}",
            jiff::SignedDuration::from_secs(report.grace_seconds.try_into().unwrap_or(i64::MAX))
        )
    };
    let mode = match report.outcome {
        Outcome::DryRun => "dry run",
        Outcome::Swept => "sweep",
        Outcome::Refused if report.dry_run => "dry run",
        Outcome::Refused => "sweep refused",
    };
    let untagged = if report.delete_untagged {
        "untagged manifests deleted"
    } else {
        "untagged manifests kept"
    };
    let s = &report.stats;
    let mut kept = format!(
        "Kept {} and {} in use",
        plural(s.manifests_kept, "manifest", "manifests"),
        plural(s.blobs_marked, "blob", "blobs")
    );
    if s.young_kept > 0 {
        kept.push_str(&format!(
            ", and {} unreferenced items younger than the grace period",
            s.young_kept
        ));
    }
    [
        format!("regsweep gc {} ({mode}; {untagged}; {grace})", report.storage),
        format!(
            "Scanned {}, {}, {}, {} and {} in {:.2} s.",
            plural(s.repositories, "repository", "repositories"),
            plural(s.tags, "tag", "tags"),
            plural(s.manifests, "manifest", "manifests"),
            plural(s.layer_links, "layer link", "layer links"),
            plural(s.blobs, "blob", "blobs"),
            report.timings.total_ms as f64 / 1000.0
        ),
        what_goes(report),
        format!("{kept}."),
    ]
}

/// The report's lists, each with its title; empty ones are not printed.
fn sections(report: &Report) -> Vec<(String, Vec<String>)> {
    let errors = report.errors().count();
    vec![
        (
            format!("Blobs ({})", report.blobs.len()),
            report
                .blobs
                .iter()
                .map(|b| format!("{}  {}", b.digest, size(b.size)))
                .collect(),
        ),
        (
            format!("Untagged manifests ({})", report.manifests.len()),
            report
                .manifests
                .iter()
                .map(|m| match m.tag_history.as_slice() {
                    [] => format!("{}@{}", m.repository, m.digest),
                    history => format!(
                        "{}@{}  (once tagged {})",
                        m.repository,
                        m.digest,
                        history.join(", ")
                    ),
                })
                .collect(),
        ),
        (
            format!("Layer links ({})", report.layer_links.len()),
            report
                .layer_links
                .iter()
                .map(|l| {
                    let dangling = if l.dangling {
                        "  (dangling: blob already gone)"
                    } else {
                        ""
                    };
                    format!("{}  {}{dangling}", l.repository, l.digest)
                })
                .collect(),
        ),
        (
            format!("Uploads ({})", report.uploads.len()),
            report
                .uploads
                .iter()
                .map(|u| format!("{}  {}", u.repository, u.id))
                .collect(),
        ),
        (
            format!("Empty folders ({})", report.empty_dirs.len()),
            report.empty_dirs.clone(),
        ),
        (
            format!("Skipped (changed during the run) ({})", report.skipped.len()),
            report
                .skipped
                .iter()
                .map(|s| format!("{}: {}", s.path, s.reason))
                .collect(),
        ),
        (
            format!("Failed deletions ({})", report.failures.len()),
            report
                .failures
                .iter()
                .map(|f| format!("{}: {}", f.path, f.error))
                .collect(),
        ),
        (
            format!(
                "Problems ({}: {}, {})",
                report.problems.len(),
                plural(errors, "error", "errors"),
                plural(report.problems.len() - errors, "warning", "warnings")
            ),
            report.problems.iter().map(problem_line).collect(),
        ),
    ]
}

fn problem_line(problem: &Problem) -> String {
    let severity = match problem.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let repo = problem
        .repository
        .as_deref()
        .map(|r| format!(" [{r}]"))
        .unwrap_or_default();
    let kind = serde_json::to_value(problem.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!("{severity}: {kind}{repo}: {}", problem.message)
}

/// One list under its title, cut at `limit` lines with a note of how many more there are.
fn print_section(
    out: &mut impl std::io::Write,
    title: &str,
    lines: &[String],
    limit: usize,
) -> std::io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n{title}:")?;
    for line in lines.iter().take(limit) {
        writeln!(out, "  {line}")?;
    }
    if lines.len() > limit {
        writeln!(
            out,
            "  … and {} more (--show 0 or --json lists all)",
            lines.len() - limit
        )?;
    }
    Ok(())
}

/// The closing sentence: why nothing was swept, or that it was a dry run.
fn ending(report: &Report) -> Option<String> {
    match report.outcome {
        Outcome::Refused => Some(format!(
            "Refusing to sweep: with {} reachability cannot be established, so nothing {} deleted. \
             Repair or remove what is listed, or run again with --ignore-problems to sweep anyway \
             (what the problems hide may then be deleted).",
            plural(report.errors().count(), "error", "errors"),
            if report.dry_run { "would be" } else { "was" }
        )),
        Outcome::DryRun if !report.is_empty() => Some("This was a dry run; nothing was deleted.".to_owned()),
        Outcome::DryRun | Outcome::Swept => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_periods() {
        assert_eq!(parse_grace("0"), Ok(Duration::ZERO));
        assert_eq!(parse_grace("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_grace("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_grace("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_grace("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_grace("2 weeks"), Ok(Duration::from_secs(14 * 86400)));
        assert!(parse_grace("soon").unwrap_err().contains("not a duration"));
        assert!(parse_grace("1 month").is_err());
        assert!(parse_grace("-1h").is_err());
        assert!(parse_grace("").is_err());
    }
}
