//! Output helpers: JSON on stdout, human sizes, tables, progress bars on a terminal, and error
//! messages with each cause said once.

use std::io::Write;

use comfy_table::{Table, presets};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{ExitStatus, Ui, UsageError};
use crate::policy::{Location, PolicyError};
use crate::progress::Progress;
use crate::registry::credentials::CredentialsError;
use crate::registry::{Advice, RegistryError};

/// Runs a command; with `--json`, a failure before the command printed its document still
/// prints one: the error document (docs/json.md).
pub fn with_json_error(
    ui: &mut Ui<'_>,
    run: impl FnOnce(&mut Ui<'_>) -> anyhow::Result<ExitStatus>,
) -> anyhow::Result<ExitStatus> {
    let result = run(ui);
    if ui.json()
        && let Err(err) = &result
    {
        ui.print_json(&error_document(err))?;
    }
    result
}

/// `{"error": {"code", "message", "errors"?}}`: `usage` or `error`, the whole message, and for a
/// rejected policy each of its mistakes with its place.
pub fn error_document(err: &anyhow::Error) -> serde_json::Value {
    let usage = err.downcast_ref::<UsageError>();
    let mut error = serde_json::json!({
        "code": if usage.is_some() { "usage" } else { "error" },
        "message": format!("{err:#}"),
    });
    if let Some(policy) = usage.and_then(UsageError::policy_errors) {
        error["errors"] = policy.errors().iter().map(policy_error).collect();
    }
    serde_json::json!({ "error": error })
}

/// One policy mistake: `file`, `line` and `column` for a file, `flag` for the command line.
fn policy_error(err: &PolicyError) -> serde_json::Value {
    let mut out = serde_json::json!({
        "message": err.to_string(),
        "problem": err.problem(),
        "expected": err.expected(),
    });
    match err.location() {
        Location::Line { line, column } => {
            out["file"] = err.source_name().into();
            out["line"] = (*line).into();
            out["column"] = (*column).into();
        }
        Location::Flag(flag) => out["flag"] = (*flag).into(),
    }
    out
}

/// Bytes in binary units, e.g. `1.5 MiB`.
pub fn size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

/// A value a table cell has no figure for, shown as `-` like `docker images` does.
pub fn or_dash(value: Option<&str>) -> String {
    match value {
        Some(text) if !text.is_empty() => text.to_owned(),
        _ => "-".to_owned(),
    }
}

/// A count with its noun in the right number: `1 tag`, `2 tags`, `0 tags`.
///
/// Takes anything displayable so that every integer type reads the same at the call site.
pub fn plural(n: impl std::fmt::Display, one: &str, many: &str) -> String {
    let n = n.to_string();
    let noun = if n == "1" { one } else { many };
    format!("{n} {noun}")
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
pub fn print_table(out: &mut impl Write, table: &mut Table) -> std::io::Result<()> {
    print_table_with_notes(out, table, &[], "")
}

/// Prints a table like [`print_table`], with a note on its own line under some rows
/// (`notes[i]` under row `i`), indented by `indent`.
pub fn print_table_with_notes(
    out: &mut impl Write,
    table: &mut Table,
    notes: &[Option<String>],
    indent: &str,
) -> std::io::Result<()> {
    // Columns separated by two spaces and no indent, like `docker images`.
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    // One line for the header, then one per row: no cell holds a line break.
    for (i, line) in table.lines().enumerate() {
        writeln!(out, "{}", line.trim_end())?;
        if let Some(Some(note)) = i.checked_sub(1).and_then(|row| notes.get(row)) {
            writeln!(out, "{indent}{note}")?;
        }
    }
    Ok(())
}

/// A progress bar on stderr, drawn only when stderr is a terminal and output is not quieted.
pub struct Bar(ProgressBar);

impl Bar {
    pub fn new(ui: &Ui<'_>, what: &str) -> Self {
        if !ui.shows_progress() {
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
    let advice = err.chain().find_map(|cause| {
        cause
            .downcast_ref::<RegistryError>()
            .and_then(RegistryError::advice)
            .or_else(|| {
                cause
                    .downcast_ref::<CredentialsError>()
                    .and_then(CredentialsError::advice)
            })
    });
    if let Some(advice) = advice {
        line.push_str(advice_text(advice));
    }
    line
}

/// The command line's words for what to do.
fn advice_text(advice: Advice) -> &'static str {
    match advice {
        Advice::LogIn => {
            " (or pass --username NAME with --password-stdin, or set REGSWEEP_USERNAME and REGSWEEP_PASSWORD)"
        }
        Advice::AllowInsecureAuth => " (pass --allow-insecure-auth if this network is trusted)",
        Advice::TrustCertificate => {
            " (pass --ca-file with the CA certificate that signed the registry's certificate, or the \
             registry's own certificate when it is self-signed; or --insecure to skip verification)"
        }
        Advice::IgnoreCredentialFiles => " (or pass --no-creds to ignore the credential files)",
    }
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

    #[test]
    fn plurals_follow_the_count() {
        assert_eq!(plural(1usize, "tag", "tags"), "1 tag");
        assert_eq!(plural(0u64, "tag", "tags"), "0 tags");
        assert_eq!(plural(2u32, "repository", "repositories"), "2 repositories");
        assert_eq!(plural(11usize, "blob", "blobs"), "11 blobs");
    }

    #[test]
    fn missing_values_are_a_dash() {
        assert_eq!(or_dash(None), "-");
        assert_eq!(or_dash(Some("")), "-");
        assert_eq!(or_dash(Some("linux/amd64")), "linux/amd64");
    }

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
    fn the_error_document_lists_each_policy_mistake_with_its_place() {
        let flags = crate::policy::PolicyFlags {
            keep_newest: Some(0),
            older_than: Some("3x".into()),
            ..Default::default()
        };
        let errors = crate::policy::Policy::from_flags(&flags).unwrap_err();
        let doc = error_document(&anyhow::Error::new(UsageError::policy(errors)));
        assert_eq!(doc["error"]["code"], "usage");
        let listed = doc["error"]["errors"].as_array().expect("a list of errors");
        let flags: Vec<&str> = listed.iter().map(|e| e["flag"].as_str().unwrap()).collect();
        assert_eq!(flags, ["--keep-newest", "--older-than"], "{doc:#}");
        assert!(listed.iter().all(|e| e.get("line").is_none()), "{doc:#}");
        assert_eq!(listed[1]["problem"], "`3x` is not a duration");
        let message = doc["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("2 errors in command-line flags:\n  --keep-newest: "),
            "{message}"
        );

        let doc = error_document(&anyhow::anyhow!("cannot read the plan p"));
        assert_eq!(doc["error"]["code"], "error");
        assert!(doc["error"].get("errors").is_none(), "{doc:#}");
    }

    #[test]
    fn hints_come_from_the_cli() {
        let err = anyhow::Error::new(RegistryError::Connect {
            host: "r:1".into(),
            request: crate::registry::RequestInfo {
                method: "GET".into(),
                url: "https://r:1/v2/".into(),
            },
            cause: "invalid peer certificate: UnknownIssuer".into(),
            certificate: true,
        });
        let line = error_line(&err);
        assert_eq!(line.matches("UnknownIssuer").count(), 1, "{line}");
        assert!(line.contains("--ca-file"), "{line}");

        let err = anyhow::Error::new(RegistryError::Unauthorized {
            request: crate::registry::RequestInfo {
                method: "GET".into(),
                url: "http://r:1/v2/a/tags/list".into(),
            },
            errors: Vec::new(),
            hint: "refusing to send credentials over plain HTTP to r:1".into(),
            advice: Some(Advice::AllowInsecureAuth),
        })
        .context("cannot list tags");
        let line = error_line(&err);
        assert!(
            line.ends_with("(pass --allow-insecure-auth if this network is trusted)"),
            "{line}"
        );
        assert!(line.starts_with("cannot list tags: GET"), "{line}");
    }
}
