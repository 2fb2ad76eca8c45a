//! Command-line interface: clap types, output formatting and exit codes. [`run`] is the whole
//! program, called by `main` with the process's [`Context`] and by tests with their own. The
//! rest of the library never sees clap; each subcommand module turns its arguments into core
//! calls and prints the result through its [`Ui`].

mod completions;
mod connect;
mod context;
mod fold;
mod gc;
mod look;
mod man;
mod output;
mod policy;
mod probe;
mod report;
mod retention;
mod storage;

pub use context::{Context, ExitStatus, Stream, Ui};

use std::ffi::OsString;
use std::io::Write;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "regsweep", version, about = "List, inspect and clean up images in Docker/OCI registries, and garbage-collect their storage", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command that prints.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Print machine-readable JSON on stdout (formats documented in docs/json.md and docs/gc.md).
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (-v info, -vv debug, -vvv trace). Credentials are never logged.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Never draw progress bars (they are drawn only when stderr is a terminal anyway).
    #[arg(long, global = true)]
    pub no_progress: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every repository in the registry's catalog (all pages).
    Repos(look::ReposArgs),
    /// List every tag of a repository; --long resolves digest, platforms, size and created time.
    Tags(look::TagsArgs),
    /// Show an image: digest, media type, sizes, platforms, tags on the same digest, signatures.
    Inspect(look::InspectArgs),
    /// Storage used per repository, with blobs shared between images and repositories counted once.
    Du(look::DuArgs),
    /// Show what a retention policy keeps and deletes, tag by tag, with reasons and bytes freed.
    Plan(retention::PlanArgs),
    /// Carry out a plan (a file from `plan -o`, or a policy planned and applied in one go).
    Apply(retention::ApplyArgs),
    /// Remove tags (only those tags, even when others share the digest) or manifests by digest.
    Rm(retention::RmArgs),
    /// Put back manifests saved by `apply --backup` or `rm --backup`.
    Restore(retention::RestoreArgs),
    /// Check retention policy files (`policy check FILE`) without contacting a registry.
    Policy(policy::PolicyCommand),
    /// Garbage-collect a distribution registry's storage (filesystem driver).
    Gc(gc::GcArgs),
    /// Find out what a registry allows (auth, catalog, deletes, tag deletion, referrers,
    /// read-only) and what regsweep will use there. Changes nothing.
    Probe(probe::ProbeArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish) on stdout.
    Completions(completions::CompletionsArgs),
    /// Write a man page for regsweep and for every subcommand into a folder.
    Man(man::ManArgs),
}

/// A mistake in how regsweep was called (exit code 2), as opposed to a failure while running.
#[derive(Debug)]
pub struct UsageError {
    message: String,
    /// The mistakes of a rejected policy, which the `--json` error document lists one by one.
    policy: Option<crate::policy::PolicyErrors>,
}

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            policy: None,
        }
    }

    /// A policy that cannot be used, with all its mistakes.
    pub fn policy(errors: crate::policy::PolicyErrors) -> Self {
        Self {
            message: errors.to_string(),
            policy: Some(errors),
        }
    }

    pub fn policy_errors(&self) -> Option<&crate::policy::PolicyErrors> {
        self.policy.as_ref()
    }
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

impl From<crate::reference::ReferenceError> for UsageError {
    fn from(err: crate::reference::ReferenceError) -> Self {
        Self::new(err.to_string())
    }
}

/// Runs the command line `args` (the program name first, as in `std::env::args_os`) in `ctx`.
pub fn run<I, T>(args: I, ctx: &mut Context) -> ExitStatus
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => return parse_failure(&err, ctx),
    };
    let logs = tracing::Dispatch::new(log_subscriber(&cli.output, ctx));
    // Libraries that log through the `log` crate (reqwest, hyper, rustls) reach the same sink;
    // the bridge is process-wide and forwards to whichever sink the logging thread has.
    let _ = tracing_log::LogTracer::init();
    if ctx.process_wide_logs() {
        // Once per process; a second run in the same process keeps the first one's sink.
        let _ = tracing::dispatcher::set_global_default(logs.clone());
    }
    let status = tracing::dispatcher::with_default(&logs, || run_command(&cli, ctx));
    // Whatever was written is out before the caller looks; a pipe closed early is not an error.
    let _ = ctx.out().flush();
    status
}

/// `--help` and `--version` on stdout (exit 0); a mistake on stderr (exit 2).
fn parse_failure(err: &clap::Error, ctx: &mut Context) -> ExitStatus {
    let rendered = err.render();
    let (terminal, status) = if err.use_stderr() {
        (ctx.stderr_is_terminal(), ExitStatus::Usage)
    } else {
        (ctx.stdout_is_terminal(), ExitStatus::Success)
    };
    let text = if terminal {
        rendered.ansi().to_string()
    } else {
        rendered.to_string()
    };
    let stream = if err.use_stderr() { ctx.err() } else { ctx.out() };
    let _ = stream.write_all(text.as_bytes());
    status
}

fn run_command(cli: &Cli, ctx: &mut Context) -> ExitStatus {
    let ui = &mut Ui::new(ctx, &cli.output);
    let result = match &cli.command {
        Command::Repos(args) => look::repos(args, ui),
        Command::Tags(args) => look::tags(args, ui),
        Command::Inspect(args) => look::inspect(args, ui),
        Command::Du(args) => look::du(args, ui),
        Command::Plan(args) => retention::plan(args, ui),
        Command::Apply(args) => retention::apply(args, ui),
        Command::Rm(args) => retention::rm(args, ui),
        Command::Restore(args) => retention::restore(args, ui),
        // With `--json`, a failure before the document is printed still prints one document.
        Command::Policy(args) => output::with_json_error(ui, |ui| policy::run(args, ui)),
        Command::Gc(args) => output::with_json_error(ui, |ui| gc::run(args, ui)),
        Command::Probe(args) => output::with_json_error(ui, |ui| probe::run(args, ui)),
        Command::Completions(args) => completions::run(args, ui),
        Command::Man(args) => man::run(args, ui),
    };
    match result {
        Ok(status) => status,
        Err(err) if is_broken_pipe(&err) => ExitStatus::Success,
        Err(err) => {
            let _ = writeln!(ui.err(), "error: {}", output::error_line(&err));
            if err.downcast_ref::<UsageError>().is_some() {
                ExitStatus::Usage
            } else {
                ExitStatus::Failure
            }
        }
    }
}

/// Output piped into `head` and closed early is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Log lines on the context's stderr, at the level `-v`/`-q` ask for, or as `REGSWEEP_LOG` says.
fn log_subscriber(output: &OutputArgs, ctx: &Context) -> impl tracing::Subscriber + Send + Sync + 'static {
    let level = match (output.quiet, output.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = ctx
        .env()
        .get("REGSWEEP_LOG")
        .and_then(|filter| tracing_subscriber::EnvFilter::try_new(filter).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(format!("regsweep={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ctx.stderr_stream())
        // Colour codes only for a person at a terminal, never into a log file or a pipe.
        .with_ansi(ctx.stderr_is_terminal())
        .with_target(false)
        .finish()
}
