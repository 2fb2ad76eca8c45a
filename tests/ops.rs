//! How operators install and run regsweep: shell completions, man pages, the capability probe,
//! the HTML report and the deployment examples.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{regsweep, regsweep_with};

/// The subcommands `regsweep --help` lists (the clap definition as the user sees it), without
/// `help`, with nested ones as `policy check`.
fn subcommands() -> Vec<String> {
    fn listed(help: &str) -> Vec<String> {
        help.lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            // Entries start two spaces in; wrapped descriptions are indented further.
            .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .filter(|name| name != "help")
            .collect()
    }
    let top = regsweep(&["--help"]);
    top.assert_ok();
    let mut all = Vec::new();
    for name in listed(&top.stdout) {
        let sub = regsweep(&[&name, "--help"]);
        sub.assert_ok();
        for nested in listed(&sub.stdout) {
            all.push(format!("{name} {nested}"));
        }
        all.push(name);
    }
    assert!(all.len() >= 12, "too few subcommands parsed from --help: {all:?}");
    all
}

/// The long flags `regsweep <command> --help` documents.
fn long_flags(command: &str) -> BTreeSet<String> {
    let mut args: Vec<&str> = command.split(' ').collect();
    args.push("--help");
    let run = regsweep(&args);
    run.assert_ok();
    run.stdout
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']' || c == '=')
        .filter(|w| {
            w.starts_with("--") && w.len() > 2 && w[2..].chars().all(|c| c.is_ascii_lowercase() || c == '-')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn completions_name_every_subcommand_in_every_shell() {
    let subcommands = subcommands();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let run = regsweep(&["completions", shell]);
        run.assert_ok();
        assert!(run.stdout.len() > 1000, "{shell}: suspiciously short script");
        for sub in &subcommands {
            let leaf = sub.rsplit(' ').next().unwrap();
            let as_word = |text: &str| {
                text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                    .any(|w| w == leaf)
            };
            assert!(
                as_word(&run.stdout),
                "{shell} completion does not mention `{sub}`"
            );
        }
    }
}

/// Loads the bash script into a real bash and asks it to complete, as a user pressing Tab would.
#[test]
fn bash_completion_completes_subcommands_and_flags() {
    let run = regsweep(&["completions", "bash"]);
    run.assert_ok();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("regsweep.bash");
    std::fs::write(&script, &run.stdout).unwrap();
    let complete = |words: &str| -> BTreeSet<String> {
        let program = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); \
             COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
             _regsweep regsweep \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = Command::new("bash")
            .args(["--norc", "--noprofile", "-c", &program])
            .output()
            .expect("bash runs (apt-get install -y bash)");
        assert!(
            out.status.success(),
            "bash: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let top = complete("regsweep ''");
    for sub in subcommands().iter().filter(|s| !s.contains(' ')) {
        assert!(
            top.contains(sub),
            "Tab after `regsweep` does not offer {sub}: {top:?}"
        );
    }
    let gc = complete("regsweep gc --gr");
    assert_eq!(gc, BTreeSet::from(["--grace".to_owned()]));
}

#[test]
fn man_pages_exist_for_every_subcommand_and_document_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    let run = regsweep(&["man", dir.path().to_str().unwrap()]);
    run.assert_ok();
    let mut expected = vec!["regsweep".to_owned()];
    expected.extend(
        subcommands()
            .iter()
            .map(|s| format!("regsweep-{}", s.replace(' ', "-"))),
    );
    for page in &expected {
        let path = dir.path().join(format!("{page}.1"));
        let roff = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let sections = roff_sections(&roff);
        let th = roff.lines().find(|l| l.starts_with(".TH ")).expect(".TH line");
        assert!(
            th.split_whitespace().nth(1) == Some(page.as_str()),
            "{page}: title line {th}"
        );
        let name = sections
            .iter()
            .find(|(s, _)| s == "NAME")
            .map(|(_, body)| body.as_str());
        assert!(
            name.is_some_and(|n| n.starts_with(&page.replace('-', "\\-"))),
            "{page}: NAME section {name:?}"
        );
        assert!(
            sections.iter().any(|(s, _)| s == "SYNOPSIS"),
            "{page}: no SYNOPSIS"
        );
        if page != "regsweep" {
            let command = page.trim_start_matches("regsweep-").replace('-', " ");
            // `policy-check` is `policy check`; no top-level command has a dash in its name.
            let text = roff.replace("\\-", "-");
            for flag in long_flags(&command) {
                assert!(text.contains(&flag), "{page}: flag {flag} is not documented");
            }
        }
    }
    let listed: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(listed.len(), expected.len(), "{listed:?}");
}

/// `.SH` sections of a roff page and their text (requests stripped), in order.
fn roff_sections(roff: &str) -> Vec<(String, String)> {
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in roff.lines() {
        if let Some(title) = line.strip_prefix(".SH ") {
            sections.push((title.trim_matches('"').to_owned(), String::new()));
        } else if let Some((_, body)) = sections.last_mut()
            && !line.starts_with('.')
        {
            body.push_str(line);
            body.push('\n');
        }
    }
    sections
}

#[test]
fn completions_reject_an_unknown_shell_with_the_valid_ones() {
    let run = regsweep_with(&["completions", "tcsh"], &[], None);
    assert_eq!(run.code, 2, "{run:#?}");
    for shell in ["bash", "zsh", "fish", "powershell"] {
        assert!(run.stderr.contains(shell), "{}", run.stderr);
    }
}

/// `regsweep completions bash | head -1` must end quietly, not with a panic of the generator.
#[test]
fn completions_into_a_closed_pipe_exit_cleanly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(["completions", "zsh"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("regsweep runs");
    // Closing the read end before the program writes makes its write fail with EPIPE.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
