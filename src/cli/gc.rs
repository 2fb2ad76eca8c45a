//! `regsweep gc`: garbage-collect a distribution registry's filesystem storage.

use std::io::Write as _;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use regsweep::gc::report::{Outcome, Problem, ProblemKind, Report, Severity};
use regsweep::gc::{self, ConfigError, GcOptions, RootSource};
use regsweep::storage::Storage;

use super::{OutputArgs, exit};

const AFTER_HELP: &str = "\
What is kept: every tag's manifest and everything it needs (config and layers; for an index or \
manifest list every child, recursively), referrers of kept manifests (signatures, attestations, SBOMs: \
manifests whose `subject` is a kept manifest, and `sha256-<hex>` tags), and anything modified within \
the grace period. Without --delete-untagged every manifest is kept, as distribution does.

What is deleted: blobs nothing kept needs; with --delete-untagged, untagged manifests (their revision \
links and tag-history entries); `_layers` links no kept manifest of that repository needs (including \
dangling ones left by distribution 2.x); empty folders.

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
    /// The registry's storage folder (its `rootdirectory`, the folder that contains `docker/`), or
    /// the registry's config.yml (storage.filesystem.rootdirectory is read from it, overridden by
    /// REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY as in the registry).
    #[arg(value_name = "TARGET")]
    pub target: PathBuf,

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

pub fn run(args: &GcArgs, output: &OutputArgs) -> anyhow::Result<u8> {
    let target = match gc::locate(&args.target, |name| std::env::var(name).ok()) {
        Ok(target) => target,
        // Pointing at something that is not a registry is a usage mistake (exit code 2).
        Err(err @ (ConfigError::NotFound(_) | ConfigError::InsideLayout(_))) => {
            eprintln!("error: {err}");
            return Ok(exit::USAGE);
        }
        Err(err) => return Err(err.into()),
    };
    let notes = !output.quiet && !output.json;
    match &target.source {
        RootSource::Folder => {}
        RootSource::Config(path) => {
            tracing::info!("storage root {} from {}", target.root.display(), path.display())
        }
        RootSource::Environment(_) => {
            if notes {
                eprintln!(
                    "note: storage root {} taken from {} (it overrides the config file, as in the registry)",
                    target.root.display(),
                    gc::ENV_ROOT
                );
            }
        }
        RootSource::Default(path) => {
            if notes {
                eprintln!(
                    "note: {} sets no storage.filesystem.rootdirectory; using distribution's default {}",
                    path.display(),
                    target.root.display()
                );
            }
        }
    }
    if !target.has_layout() && notes {
        eprintln!(
            "note: {} has no docker/registry/v2 folder: the registry never stored anything there (or this is not its rootdirectory)",
            target.root.display()
        );
    }

    let mut probe_problem = None;
    if let Some(url) = &args.registry_url {
        let verdict = probe_registry(url);
        match &verdict {
            Probe::ReadOnly | Probe::Stopped => {
                if notes {
                    eprintln!("{}", verdict.describe(url));
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
    } else if let Some(true) = target.config_read_only
        && notes
    {
        eprintln!("note: the config file sets storage.maintenance.readonly.enabled: true");
    }

    let options = GcOptions {
        dry_run: args.dry_run,
        delete_untagged: args.delete_untagged,
        grace: args.grace,
        ignore_problems: args.ignore_problems,
        verify_links: args.verify_links,
        threads: args.jobs.map(NonZeroUsize::get),
    };
    let storage = Storage::local(&target.root);
    let spinner = spinner(output);
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
    if let Some(problem) = probe_problem {
        report.problems.push(problem);
    }

    if output.json {
        // Buffered: the lists can hold hundreds of thousands of lines.
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        out.flush()?;
    } else {
        print_human(&report, args, output.quiet)?;
    }
    if !output.quiet && report.outcome == Outcome::Swept && !report.is_empty() {
        eprintln!(
            "Restart the registry now: its blob descriptor cache (storage.cache.blobdescriptor) may still list deleted \
             blobs, and clients would skip uploading them. If you made it read-only for this, restart it writable."
        );
    }
    Ok(if report.failed() { exit::ERROR } else { exit::OK })
}

fn spinner(output: &OutputArgs) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if output.quiet || output.no_progress || output.json || !std::io::stderr().is_terminal() {
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

fn count(n: usize, one: &str, many: &str) -> String {
    count64(n as u64, one, many)
}

fn count64(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn print_human(report: &Report, args: &GcArgs, quiet: bool) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
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
    let freed = size(report.freed_bytes);
    let what = format!(
        "{} ({freed}), {}, {}, {}",
        count(report.blobs.len(), "blob", "blobs"),
        count(report.manifests.len(), "untagged manifest", "untagged manifests"),
        count(report.layer_links.len(), "layer link", "layer links"),
        count(report.empty_dirs.len(), "empty folder", "empty folders"),
    );
    let verb = match report.outcome {
        Outcome::Swept => "Deleted",
        Outcome::DryRun => "Would delete",
        Outcome::Refused => "Nothing deleted; would delete",
    };
    if quiet {
        writeln!(out, "{verb} {what}.")?;
        out.flush()?;
        return Ok(());
    }
    writeln!(
        out,
        "regsweep gc {} ({mode}; {untagged}; {grace})",
        report.storage
    )?;
    writeln!(
        out,
        "Scanned {}, {}, {}, {} and {} in {:.2} s.",
        count64(s.repositories, "repository", "repositories"),
        count64(s.tags, "tag", "tags"),
        count64(s.manifests, "manifest", "manifests"),
        count64(s.layer_links, "layer link", "layer links"),
        count64(s.blobs, "blob", "blobs"),
        report.timings.total_ms as f64 / 1000.0
    )?;
    writeln!(out, "{verb} {what}.")?;
    let mut kept = format!(
        "Kept {} and {} in use",
        count64(s.manifests_kept, "manifest", "manifests"),
        count64(s.blobs_marked, "blob", "blobs")
    );
    if s.young_kept > 0 {
        kept.push_str(&format!(
            ", and {} unreferenced items younger than the grace period",
            s.young_kept
        ));
    }
    writeln!(out, "{kept}.")?;

    let limit = if args.show == 0 { usize::MAX } else { args.show };
    let section = |out: &mut std::io::BufWriter<std::io::StdoutLock<'_>>,
                   title: &str,
                   lines: Vec<String>|
     -> std::io::Result<()> {
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
    };
    section(
        &mut out,
        &format!("Blobs ({})", report.blobs.len()),
        report
            .blobs
            .iter()
            .map(|b| format!("{}  {}", b.digest, size(b.size)))
            .collect(),
    )?;
    section(
        &mut out,
        &format!("Untagged manifests ({})", report.manifests.len()),
        report
            .manifests
            .iter()
            .map(|m| {
                if m.tag_history.is_empty() {
                    format!("{}@{}", m.repository, m.digest)
                } else {
                    format!(
                        "{}@{}  (once tagged {})",
                        m.repository,
                        m.digest,
                        m.tag_history.join(", ")
                    )
                }
            })
            .collect(),
    )?;
    section(
        &mut out,
        &format!("Layer links ({})", report.layer_links.len()),
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
    )?;
    section(
        &mut out,
        &format!("Empty folders ({})", report.empty_dirs.len()),
        report.empty_dirs.clone(),
    )?;
    section(
        &mut out,
        &format!("Skipped (changed during the run) ({})", report.skipped.len()),
        report
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.path, s.reason))
            .collect(),
    )?;
    section(
        &mut out,
        &format!("Failed deletions ({})", report.failures.len()),
        report
            .failures
            .iter()
            .map(|f| format!("{}: {}", f.path, f.error))
            .collect(),
    )?;
    let errors = report.errors().count();
    section(
        &mut out,
        &format!(
            "Problems ({}: {}, {})",
            report.problems.len(),
            count(errors, "error", "errors"),
            count(report.problems.len() - errors, "warning", "warnings")
        ),
        report
            .problems
            .iter()
            .map(|p| {
                let severity = match p.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                let repo = p
                    .repository
                    .as_deref()
                    .map(|r| format!(" [{r}]"))
                    .unwrap_or_default();
                let kind = serde_json::to_value(p.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                format!("{severity}: {kind}{repo}: {}", p.message)
            })
            .collect(),
    )?;

    if report.outcome == Outcome::Refused {
        writeln!(
            out,
            "\nRefusing to sweep: with {} reachability cannot be established, so nothing {} deleted. \
             Repair or remove what is listed, or run again with --ignore-problems to sweep anyway \
             (what the problems hide may then be deleted).",
            count(errors, "error", "errors"),
            if report.dry_run { "would be" } else { "was" }
        )?;
    } else if report.outcome == Outcome::DryRun && !report.is_empty() {
        writeln!(out, "\nThis was a dry run; nothing was deleted.")?;
    }
    out.flush()?;
    Ok(())
}

/// What the read-only probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Probe {
    ReadOnly,
    Stopped,
    Writable(String),
    Unknown(String),
}

impl Probe {
    fn describe(&self, url: &str) -> String {
        match self {
            Probe::ReadOnly => format!("registry at {url} is read-only"),
            Probe::Stopped => format!("no registry answers at {url} (stopped)"),
            Probe::Writable(why) => format!("registry at {url} accepts writes ({why})"),
            Probe::Unknown(why) => format!("cannot tell whether the registry at {url} is read-only ({why})"),
        }
    }
}

/// Sends `DELETE /v2/<repo>/blobs/sha256:<64 zeros>`: a read-only distribution has no DELETE
/// route (405, text/plain, `Allow: GET, HEAD`); a writable one looks the blob up (404
/// BLOB_UNKNOWN), or answers 405 UNSUPPORTED in JSON when only deletes are disabled. No blob has
/// that digest, so nothing changes either way. No credentials are sent.
fn probe_registry(url: &str) -> Probe {
    let base = match reqwest::Url::parse(url) {
        Ok(base) if matches!(base.scheme(), "http" | "https") => base,
        _ => return Probe::Unknown(format!("`{url}` is not an http(s) URL")),
    };
    let mut base = base;
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    let probe_url = match base.join(&format!("v2/regsweep-probe/blobs/sha256:{}", "0".repeat(64))) {
        Ok(u) => u,
        Err(err) => return Probe::Unknown(err.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => return Probe::Unknown(format!("cannot start the HTTP client: {err}")),
    };
    runtime.block_on(async move {
        let client = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()
        {
            Ok(client) => client,
            Err(err) => return Probe::Unknown(format!("cannot start the HTTP client: {err}")),
        };
        let response = match client.delete(probe_url).send().await {
            Ok(response) => response,
            Err(err) if err.is_connect() => return Probe::Stopped,
            Err(err) => return Probe::Unknown(err.to_string()),
        };
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_ascii_uppercase()
        };
        let allow = header("allow");
        let content_type = header("content-type");
        let body = response.text().await.unwrap_or_default();
        classify(status, &allow, &content_type, &body)
    })
}

fn classify(status: u16, allow: &str, content_type: &str, body: &str) -> Probe {
    match status {
        405 if body.contains("UNSUPPORTED") => Probe::Writable("deletes are disabled, pushes are not".into()),
        405 if content_type.starts_with("TEXT/PLAIN")
            && allow.contains("GET")
            && !allow.contains("DELETE") =>
        {
            Probe::ReadOnly
        }
        404 | 202 => Probe::Writable(format!("the probe DELETE got {status}")),
        401 | 403 => Probe::Unknown(format!(
            "the registry answered {status}: it needs credentials for the probe"
        )),
        other => Probe::Unknown(format!("unexpected answer {other} to the probe")),
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

    #[test]
    fn probe_answers() {
        assert_eq!(
            classify(
                405,
                "GET, HEAD",
                "TEXT/PLAIN; CHARSET=UTF-8",
                "Method not allowed"
            ),
            Probe::ReadOnly
        );
        assert!(matches!(
            classify(
                404,
                "",
                "APPLICATION/JSON",
                r#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#
            ),
            Probe::Writable(_)
        ));
        assert!(matches!(
            classify(
                405,
                "",
                "APPLICATION/JSON",
                r#"{"errors":[{"code":"UNSUPPORTED"}]}"#
            ),
            Probe::Writable(_)
        ));
        assert!(matches!(classify(401, "", "", ""), Probe::Unknown(_)));
        assert!(matches!(classify(500, "", "", ""), Probe::Unknown(_)));
    }

    #[test]
    fn probe_of_a_closed_port_means_stopped() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        assert_eq!(
            probe_registry(&format!("http://127.0.0.1:{port}")),
            Probe::Stopped
        );
        assert!(matches!(probe_registry("ftp://x"), Probe::Unknown(_)));
    }
}
