//! Output helpers: JSON on stdout, human sizes, tables, and progress bars on a terminal.

use std::io::{IsTerminal, Write};

use comfy_table::{Table, presets};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use regsweep::look::Progress;
use serde::Serialize;

use super::OutputArgs;

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Bytes in binary units, e.g. `1.5 MiB`.
pub fn size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

/// A plain, borderless table in the style of `docker images`.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .force_no_tty()
        .set_header(header.iter().copied());
    table
}

/// Prints a table without trailing spaces.
pub fn print_table(table: &mut Table) {
    // Columns separated by two spaces and no indent, like `docker images`.
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    for line in table.lines() {
        println!("{}", line.trim_end());
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal and output is not quieted.
pub struct Bar(ProgressBar);

impl Bar {
    pub fn new(output: &OutputArgs, what: &str) -> Self {
        let visible = !output.quiet && !output.no_progress && std::io::stderr().is_terminal();
        if !visible {
            return Self(ProgressBar::hidden());
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {pos}/{len} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(what.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Self(bar)
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn add_total(&self, n: u64) {
        self.0.inc_length(n);
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}
