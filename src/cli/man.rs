//! `regsweep man DIR`: one man page per command (`regsweep.1`, `regsweep-gc.1`,
//! `regsweep-policy-check.1`, …), rendered from the clap definition.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory};

use super::{Cli, ExitStatus, Ui};

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The folder to write the pages into (created if missing), e.g. /usr/local/share/man/man1.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

pub fn run(args: &ManArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut command = Cli::command();
    // Building propagates the global flags (--json, -v, …) into every subcommand's page.
    command.build();
    let mut written = Vec::new();
    write_pages(&command, "regsweep", &args.dir, &mut written)?;
    if !ui.quiet() {
        for path in &written {
            writeln!(ui.out(), "{}", path.display())?;
        }
    }
    Ok(ExitStatus::Success)
}

/// Writes the page of `command` under `name`, then those of its subcommands as `name-sub`.
fn write_pages(
    command: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let page = command.clone().display_name(name.to_owned());
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .with_context(|| format!("cannot render the man page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, roff).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
