//! `regsweep gc` (owned by the gc work in progress).

use clap::Args;

use super::OutputArgs;

#[derive(Debug, Args)]
pub struct GcArgs {}

pub fn run(_args: &GcArgs, _output: &OutputArgs) -> anyhow::Result<u8> {
    anyhow::bail!("gc is not built yet")
}
