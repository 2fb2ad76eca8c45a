//! Output helpers: JSON on stdout, human sizes, tables, progress bars on a terminal, and error
//! messages with each cause said once.

use std::io::{IsTerminal, Write};

use comfy_table::{Table, presets};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use regsweep::look::Progress;
use regsweep::registry::RegistryError;
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

/// An error as one line: its chain of causes joined by `: `, each said once, then what to do
/// about it where the CLI knows (the library names no flags).
///
/// Many errors already include their source in their own message (thiserror's `{source}` and
/// hand-written `{err}`), and anyhow contexts often repeat the start of the cause; printing the
/// chain as is would say the same thing two or three times in one line.
pub fn error_line(err: &anyhow::Error) -> String {
    let causes: Vec<String> = err.chain().map(|cause| cause.to_string()).collect();
    let mut line = join_causes(&causes);
    let certificate = err
        .chain()
        .filter_map(|cause| cause.downcast_ref::<RegistryError>())
        .any(RegistryError::is_certificate_error);
    if certificate {
        line.push_str(
            " (pass --ca-file with the CA certificate that signed the registry's certificate, or the \
             registry's own certificate when it is self-signed; or --insecure to skip verification)",
        );
    }
    line
}

/// Joins causes outermost first, leaving out each one whose text is already part of what was
/// said, and letting a cause replace the text before it when it repeats all of it.
fn join_causes(causes: &[String]) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for cause in causes.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
        if parts.iter().any(|said| said.contains(cause)) {
            continue;
        }
        // A context like "cannot reach registry r" above a cause that says it again in full.
        parts.retain(|said| !cause.contains(said));
        parts.push(cause);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(causes: &[&str]) -> String {
        join_causes(&causes.iter().map(|c| c.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn each_cause_is_said_once() {
        assert_eq!(
            join(&[
                "GET u: invalid manifest: manifest is not valid JSON: EOF",
                "manifest is not valid JSON: EOF",
                "EOF",
            ]),
            "GET u: invalid manifest: manifest is not valid JSON: EOF"
        );
        assert_eq!(
            join(&[
                "cannot reach registry r",
                "cannot reach registry r (GET u): refused"
            ]),
            "cannot reach registry r (GET u): refused"
        );
        assert_eq!(
            join(&["cannot read the plan p", "No such file or directory"]),
            "cannot read the plan p: No such file or directory"
        );
    }

    #[test]
    fn hints_come_from_the_cli() {
        let err = anyhow::Error::new(RegistryError::Connect {
            host: "r:1".into(),
            request: regsweep::registry::RequestInfo {
                method: "GET".into(),
                url: "https://r:1/v2/".into(),
            },
            cause: "invalid peer certificate: UnknownIssuer".into(),
            certificate: true,
        });
        let line = error_line(&err);
        assert_eq!(line.matches("UnknownIssuer").count(), 1, "{line}");
        assert!(line.contains("--ca-file"), "{line}");
    }
}
