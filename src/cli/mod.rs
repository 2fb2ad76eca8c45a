//! Command-line interface: clap types, output formatting and exit codes. The library never sees
//! clap; each subcommand module turns its arguments into core calls and prints the result.

pub mod completions;
pub mod connect;
mod fold;
pub mod gc;
pub mod look;
pub mod man;
pub mod output;
pub mod policy;
pub mod probe;
pub mod report;
pub mod retention;
mod storage;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Exit codes, documented in the README.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The command failed (network, registry, storage or a refused operation).
    pub const ERROR: u8 = 1;
    /// Bad usage: unknown flag, invalid reference or option value.
    pub const USAGE: u8 = 2;
}

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
    policy: Option<regsweep::policy::PolicyErrors>,
}

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            policy: None,
        }
    }

    /// A policy that cannot be used, with all its mistakes.
    pub fn policy(errors: regsweep::policy::PolicyErrors) -> Self {
        Self {
            message: errors.to_string(),
            policy: Some(errors),
        }
    }

    pub fn policy_errors(&self) -> Option<&regsweep::policy::PolicyErrors> {
        self.policy.as_ref()
    }
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

impl From<regsweep::reference::ReferenceError> for UsageError {
    fn from(err: regsweep::reference::ReferenceError) -> Self {
        Self::new(err.to_string())
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    init_logging(&cli.output);
    let result = match &cli.command {
        Command::Repos(args) => look::repos(args, &cli.output),
        Command::Tags(args) => look::tags(args, &cli.output),
        Command::Inspect(args) => look::inspect(args, &cli.output),
        Command::Du(args) => look::du(args, &cli.output),
        Command::Plan(args) => retention::plan(args, &cli.output),
        Command::Apply(args) => retention::apply(args, &cli.output),
        Command::Rm(args) => retention::rm(args, &cli.output),
        Command::Restore(args) => retention::restore(args, &cli.output),
        // With `--json`, a failure before the document is printed still prints one document.
        Command::Policy(args) => output::with_json_error(&cli.output, || policy::run(args, &cli.output)),
        Command::Gc(args) => output::with_json_error(&cli.output, || gc::run(args, &cli.output)),
        Command::Probe(args) => output::with_json_error(&cli.output, || probe::run(args, &cli.output)),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args, &cli.output),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) if is_broken_pipe(&err) => ExitCode::from(exit::OK),
        Err(err) => {
            eprintln!("error: {}", output::error_line(&err));
            let usage = err.downcast_ref::<UsageError>().is_some();
            ExitCode::from(if usage { exit::USAGE } else { exit::ERROR })
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

fn init_logging(output: &OutputArgs) {
    let level = match (output.quiet, output.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("REGSWEEP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("regsweep={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
