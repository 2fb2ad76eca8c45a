//! `regsweep completions SHELL`: the completion script for a shell, generated from the same clap
//! definition that parses the command line, so it never falls behind a new flag.

use std::io::Write;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, ExitStatus, Ui};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for; install paths are in docs/operations.md.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

pub fn run(args: &CompletionsArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    let mut command = Cli::command();
    // clap_complete panics when its writer fails (a closed pipe), so render into memory first
    // and let the write error reach `run`, which treats a broken pipe as success.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "regsweep", &mut script);
    ui.out().write_all(&script)?;
    Ok(ExitStatus::Success)
}
