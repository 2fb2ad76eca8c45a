//! How operators install and run regsweep: shell completions, man pages, the capability probe,
//! the HTML report and the deployment examples.

use std::collections::BTreeSet;
use std::process::Command;

use crate::common::{Cli, regsweep, regsweep_with};

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

/// `main` is `cli::run` in the process's context: the binary and an in-process run agree on exit
/// codes and on what they print, for help, a usage mistake, an invalid reference and a command's
/// output.
#[test]
fn the_binary_and_an_in_process_run_agree() {
    let cases: [&[&str]; 4] = [
        &["--version"],
        &["tags"],
        &["inspect", "localhost:1/app:bad tag"],
        &["completions", "fish"],
    ];
    for args in cases {
        let inside = Cli::new(args).run();
        let outside = Cli::new(args).binary().run();
        assert_eq!(
            (inside.code, &inside.stdout, &inside.stderr),
            (outside.code, &outside.stdout, &outside.stderr),
            "{args:?}"
        );
    }
    let codes: Vec<i32> = cases.iter().map(|args| Cli::new(args).run().code).collect();
    assert_eq!(codes, [0, 2, 2, 0]);
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

// ---------------------------------------------------------------------------------------------
// Capability probe, against the real registry in each configuration.

mod probe {
    use std::collections::BTreeSet;
    use std::path::Path;

    use regsweep_testkit::{
        Grant, ImageSpec, RegistryOptions, TestRegistry, TokenServer, TokenServerOptions, TokenUser,
    };
    use serde_json::Value;

    use crate::common::{Run, regsweep, regsweep_with};

    /// Every file under the registry's storage root (path relative to the root).
    fn files(root: &Path) -> BTreeSet<String> {
        fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    out.insert(path.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(root, root, &mut out);
        out
    }

    /// Tags with their digests, read by the harness's own HTTP client.
    async fn tags(reg: &TestRegistry, repo: &str) -> Vec<(String, String)> {
        let pusher = reg.client();
        let mut out = Vec::new();
        for tag in pusher.tags(repo).await.unwrap() {
            let (_, _, digest) = pusher.get_manifest(repo, &tag).await.unwrap();
            out.push((tag, digest));
        }
        out.sort();
        out
    }

    async fn push_two_tags(reg: &TestRegistry) {
        let pusher = reg.client();
        let image = pusher
            .push_image("team/app", Some("v1"), &ImageSpec::seeded(7))
            .await
            .unwrap();
        pusher.tag("team/app", &image.digest, "v1-alias").await.unwrap();
    }

    fn probe_json(run: &Run) -> Value {
        run.assert_ok();
        run.json()
    }

    #[tokio::test]
    async fn deletes_enabled_registry_and_nothing_left_behind() {
        let reg = TestRegistry::start(RegistryOptions::default()).await.unwrap();
        push_two_tags(&reg).await;
        let before_tags = tags(&reg, "team/app").await;
        let before_files = files(reg.storage_root());

        let json = probe_json(&regsweep(&["--json", "probe", &reg.host()]));
        assert_eq!(json["registry"], reg.host());
        assert_eq!(json["scheme"], "http");
        assert_eq!(json["auth"]["kind"], "none");
        assert_eq!(json["catalog"], true);
        assert_eq!(json["repositories"], 1);
        // distribution's default catalog.maxentries is 1000.
        assert_eq!(json["catalog_page_limit"], 1000);
        assert_eq!(json["probe_repository"], "team/app");
        assert_eq!(json["deletes_enabled"], true);
        assert_eq!(json["read_only"], false);
        // distribution 2.8.2 refuses DELETE by tag, so regsweep untags with a placeholder.
        assert_eq!(json["delete_by_tag"], false);
        assert_eq!(json["untag_method"], "placeholder");
        assert_eq!(json["referrers_api"], false);

        assert_eq!(tags(&reg, "team/app").await, before_tags, "tags changed");
        assert_eq!(reg.client().catalog().await.unwrap(), vec!["team/app".to_owned()]);
        // The placeholder's manifest is deleted again; what stays is distribution's
        // bookkeeping of it (the blob data of the placeholder and its 2-byte `{}` config, and
        // their layer links in the repository), which gc collects. No tag, no revision link.
        let after = files(reg.storage_root());
        let new: Vec<&String> = after.difference(&before_files).collect();
        for path in &new {
            assert!(
                path.contains("/blobs/sha256/") || path.contains("/_layers/sha256/"),
                "the probe left {path} behind (all new: {new:?})"
            );
        }
        assert!(
            !new.iter().any(|p| p.contains("/_manifests/")),
            "new manifest links: {new:?}"
        );
    }

    /// The anonymous `/v2/` check uses the connection's TLS settings like every other request.
    #[tokio::test]
    async fn probe_over_tls_reads_the_auth_kind_with_the_ca_file() {
        let reg = TestRegistry::start(RegistryOptions::default().with_tls())
            .await
            .unwrap();
        let ca = reg.ca_cert_path().unwrap().to_str().unwrap().to_owned();
        let json = probe_json(&regsweep(&["--json", "probe", &reg.host(), "--ca-file", &ca]));
        assert_eq!(json["scheme"], "https");
        assert_eq!(json["auth"]["kind"], "none", "{json:#}");
    }

    #[tokio::test]
    async fn deletes_disabled_is_not_read_only_and_nothing_changes() {
        let reg = TestRegistry::start(RegistryOptions::default().delete_disabled())
            .await
            .unwrap();
        push_two_tags(&reg).await;
        let before = files(reg.storage_root());
        let json = probe_json(&regsweep(&[
            "--json",
            "probe",
            &format!("{}/team/app", reg.host()),
        ]));
        assert_eq!(json["deletes_enabled"], false);
        assert_eq!(json["read_only"], false);
        assert_eq!(json["delete_by_tag"], Value::Null);
        assert_eq!(json["untag_method"], Value::Null);
        assert_eq!(json["referrers_api"], false);
        assert_eq!(
            files(reg.storage_root()),
            before,
            "the probe wrote into the storage"
        );

        let human = regsweep(&["probe", &format!("{}/team/app", reg.host())]);
        human.assert_ok();
        assert!(
            human.stdout.contains("Deletes:        disabled"),
            "{}",
            human.stdout
        );
        assert!(human.stdout.contains("Read-only:      no"), "{}", human.stdout);
    }

    #[tokio::test]
    async fn read_only_registry_is_told_apart_from_deletes_disabled() {
        let mut writable = TestRegistry::start(RegistryOptions::default()).await.unwrap();
        push_two_tags(&writable).await;
        writable.stop().await.unwrap();
        let reg = TestRegistry::start(
            RegistryOptions::default()
                .read_only()
                .with_storage_root(writable.storage_root()),
        )
        .await
        .unwrap();
        let before = files(reg.storage_root());
        let json = probe_json(&regsweep(&["--json", "probe", &reg.host()]));
        assert_eq!(json["read_only"], true);
        // Behind read-only mode, the delete setting is not visible.
        assert_eq!(json["deletes_enabled"], Value::Null);
        assert_eq!(json["delete_by_tag"], Value::Null);
        assert_eq!(json["catalog"], true);
        assert_eq!(json["referrers_api"], false);
        assert_eq!(
            files(reg.storage_root()),
            before,
            "the probe wrote into the storage"
        );
    }

    #[tokio::test]
    async fn basic_auth_registry() {
        let reg = TestRegistry::start(RegistryOptions::default().with_htpasswd("ops", "s3cret-pw"))
            .await
            .unwrap();
        push_two_tags(&reg).await;
        let before_tags = tags(&reg, "team/app").await;
        let run = regsweep_with(
            &["--json", "probe", &reg.host(), "--username", "ops"],
            &[("REGSWEEP_PASSWORD", "s3cret-pw")],
            None,
        );
        let json = probe_json(&run);
        assert_eq!(json["auth"]["kind"], "basic");
        assert_eq!(json["catalog"], true);
        assert_eq!(json["deletes_enabled"], true);
        assert_eq!(json["read_only"], false);
        assert_eq!(json["untag_method"], "placeholder");
        assert!(!run.stdout.contains("s3cret-pw") && !run.stderr.contains("s3cret-pw"));
        assert_eq!(tags(&reg, "team/app").await, before_tags);

        // Without credentials the probe still says what the registry wants, and that it
        // cannot see the rest.
        let anonymous = probe_json(&regsweep(&["--json", "probe", &reg.host()]));
        assert_eq!(anonymous["auth"]["kind"], "basic");
        assert_eq!(anonymous["catalog"], false);
        assert_eq!(anonymous["deletes_enabled"], Value::Null);
        assert_eq!(anonymous["read_only"], Value::Null);
    }

    #[tokio::test]
    async fn token_auth_registry() {
        let user = TokenUser::new(
            "ops",
            "t0ken-pw",
            vec![
                Grant::repos("team/*", &["pull", "push", "delete"]),
                Grant::catalog(),
            ],
        );
        let tokens = TokenServer::start(TokenServerOptions::default().user(user)).unwrap();
        let reg = TestRegistry::start(RegistryOptions::default().with_token_auth(&tokens))
            .await
            .unwrap();
        push_two_tags(&reg).await;
        let before_tags = tags(&reg, "team/app").await;
        let json = probe_json(&regsweep_with(
            &["--json", "probe", &reg.host(), "--username", "ops"],
            &[("REGSWEEP_PASSWORD", "t0ken-pw")],
            None,
        ));
        assert_eq!(json["auth"]["kind"], "bearer");
        assert_eq!(json["auth"]["realm"], tokens.realm());
        assert_eq!(json["auth"]["service"], tokens.service());
        assert_eq!(json["catalog"], true);
        assert_eq!(json["deletes_enabled"], true);
        assert_eq!(json["read_only"], false);
        assert_eq!(json["delete_by_tag"], false);
        assert_eq!(json["referrers_api"], false);
        assert_eq!(tags(&reg, "team/app").await, before_tags);
    }

    #[tokio::test]
    async fn catalog_page_limit_follows_maxentries() {
        let opts = RegistryOptions {
            extra_config: Some("catalog:\n  maxentries: 50\n".into()),
            ..RegistryOptions::default()
        };
        let reg = TestRegistry::start(opts).await.unwrap();
        push_two_tags(&reg).await;
        let json = probe_json(&regsweep(&["--json", "probe", &reg.host()]));
        assert_eq!(json["catalog_page_limit"], 10);
        assert_eq!(json["repositories"], 1);
    }

    #[tokio::test]
    async fn a_missing_repository_is_named() {
        let reg = TestRegistry::start(RegistryOptions::default()).await.unwrap();
        let json = probe_json(&regsweep(&[
            "--json",
            "probe",
            &format!("{}/no/such", reg.host()),
        ]));
        assert_eq!(json["deletes_enabled"], Value::Null);
        let notes = json["notes"].to_string();
        assert!(
            notes.contains("no/such") && notes.contains("does not exist"),
            "{notes}"
        );
        let empty = probe_json(&regsweep(&["--json", "probe", &reg.host()]));
        assert_eq!(empty["repositories"], 0);
        assert!(empty["notes"].to_string().contains("REGISTRY/REPO"), "{empty}");
    }
}

// ---------------------------------------------------------------------------------------------
// HTML report: parsed, and its numbers compared with `du --json` and `plan --json`.

mod html {
    use std::collections::BTreeMap;

    use regex::Regex;
    use regsweep_testkit::{RegistryOptions, TestRegistry, sample};
    use serde_json::Value;

    use crate::common::regsweep;

    /// The `data-*` attributes of every element that matches `open_tag` (e.g. `<tr`), keyed by
    /// `data-repo`, after un-escaping.
    fn rows(html: &str, table_id: &str) -> Vec<BTreeMap<String, String>> {
        let start = html
            .find(&format!("<table id=\"{table_id}\""))
            .unwrap_or_else(|| panic!("no table {table_id}"));
        let end = start + html[start..].find("</table>").expect("table is closed");
        let attr = Regex::new(r#"data-([a-z]+)="([^"]*)""#).unwrap();
        html[start..end]
            .split("<tr ")
            .skip(1)
            .map(|row| {
                let open = &row[..row.find('>').expect("tag closes")];
                attr.captures_iter(open)
                    .map(|c| (c[1].to_owned(), unescape(&c[2])))
                    .collect()
            })
            .collect()
    }

    fn unescape(text: &str) -> String {
        text.replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    }

    fn number(v: &str) -> u64 {
        v.parse().unwrap_or_else(|_| panic!("not a number: {v}"))
    }

    fn assert_self_contained(html: &str) {
        assert!(html.starts_with("<!DOCTYPE html>"));
        for needle in [
            "src=", "href=", "@import", "url(http", "<link", "//cdn", "https://",
        ] {
            assert!(
                !html.contains(needle),
                "the page loads something from elsewhere: {needle}"
            );
        }
        // Every opened block element that matters is closed.
        for tag in ["svg", "table", "script", "style", "body", "html"] {
            assert_eq!(
                html.matches(&format!("<{tag}")).count(),
                html.matches(&format!("</{tag}>")).count(),
                "<{tag}> is not balanced"
            );
        }
    }

    #[tokio::test]
    async fn du_html_matches_du_json() {
        let reg = TestRegistry::start(RegistryOptions::default()).await.unwrap();
        let pushed = sample(&reg.client()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("du.html");

        let json = regsweep(&["--json", "du", &reg.host()]);
        json.assert_ok();
        let json = json.json();
        let run = regsweep(&["du", &reg.host(), "--html", page.to_str().unwrap()]);
        run.assert_ok();
        let html = std::fs::read_to_string(&page).unwrap();
        assert_self_contained(&html);

        let summary = Regex::new(r#"<p class="summary" data-repositories="(\d+)" data-blobs="(\d+)" data-total="(\d+)" data-sum="(\d+)""#)
            .unwrap()
            .captures(&html)
            .expect("summary line");
        assert_eq!(
            number(&summary[1]),
            json["repositories"].as_array().unwrap().len() as u64
        );
        assert_eq!(number(&summary[2]), json["blobs"].as_u64().unwrap());
        assert_eq!(number(&summary[3]), json["total_bytes"].as_u64().unwrap());
        assert_eq!(
            number(&summary[4]),
            json["sum_of_repositories_bytes"].as_u64().unwrap()
        );

        let table = rows(&html, "repositories");
        let expected: BTreeMap<String, &Value> = json["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["name"].as_str().unwrap().to_owned(), r))
            .collect();
        assert_eq!(table.len(), expected.len());
        for row in &table {
            let r = expected[&row["repo"]];
            for (attr, field) in [
                ("tags", "tags"),
                ("manifests", "manifests"),
                ("total", "total_bytes"),
                ("unique", "unique_bytes"),
                ("shared", "shared_bytes"),
            ] {
                assert_eq!(
                    number(&row[attr]),
                    r[field].as_u64().unwrap(),
                    "{} {attr}",
                    row["repo"]
                );
            }
        }
        // The table lists the biggest repository first.
        let totals: Vec<u64> = table.iter().map(|r| number(&r["total"])).collect();
        assert!(totals.windows(2).all(|w| w[0] >= w[1]), "{totals:?}");

        // One treemap cell per repository, sized like the table, with the shared part marked:
        // every sample image shares one base layer.
        let cell =
            Regex::new(r#"<g class="cell" data-repo="([^"]*)" data-bytes="(\d+)" data-shared="(\d+)">"#)
                .unwrap();
        let cells: Vec<(String, u64, u64)> = cell
            .captures_iter(&html)
            .map(|c| (unescape(&c[1]), number(&c[2]), number(&c[3])))
            .collect();
        assert_eq!(cells.len(), expected.len());
        for (repo, bytes, shared) in &cells {
            assert_eq!(*bytes, expected[repo]["total_bytes"].as_u64().unwrap());
            assert_eq!(*shared, expected[repo]["shared_bytes"].as_u64().unwrap());
            assert!(*shared > 0, "{repo} shares the base layer");
        }
        assert_eq!(html.matches("class=\"shared\"").count(), cells.len());

        // Biggest images: largest first, each a real tagged manifest of its repository.
        let images = rows(&html, "images");
        let tagged: usize = {
            let mut digests: Vec<(&str, &str)> = pushed
                .tags
                .iter()
                .filter(|t| !t.tag.starts_with("sha256-"))
                .map(|t| (t.repo.as_str(), t.digest.as_str()))
                .collect();
            digests.sort();
            digests.dedup();
            digests.len()
        };
        assert_eq!(images.len(), tagged);
        let sizes: Vec<u64> = images.iter().map(|r| number(&r["bytes"])).collect();
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
        for image in &images {
            assert!(
                pushed
                    .tags
                    .iter()
                    .any(|t| t.repo == image["repo"] && t.digest == image["digest"]),
                "{image:?} is not a pushed tag"
            );
            assert!(
                number(&image["bytes"])
                    <= number(&table.iter().find(|r| r["repo"] == image["repo"]).unwrap()["total"])
            );
        }
        // A single-platform image: manifest + config + layers, nothing else.
        let single = pushed
            .images
            .iter()
            .find(|i| i.repo == "legacy/app" && i.tag.as_deref() == Some("0.1.0"))
            .expect("the sample has legacy/app:0.1.0");
        let row = images.iter().find(|r| r["digest"] == single.digest).unwrap();
        assert_eq!(number(&row["bytes"]), single.size + single.manifest.len() as u64);
    }

    #[tokio::test]
    async fn plan_html_shows_what_the_plan_frees() {
        let reg = TestRegistry::start(RegistryOptions::default()).await.unwrap();
        sample(&reg.client()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("plan.html");
        let args = [
            "--json",
            "plan",
            &reg.host(),
            "--keep-tags",
            "latest",
            "--keep-tags",
            "stable",
            "--keep-newest",
            "2",
            "--html",
            page.to_str().unwrap(),
        ];
        let run = regsweep(&args);
        run.assert_ok();
        let plan = run.json();
        let html = std::fs::read_to_string(&page).unwrap();
        assert_self_contained(&html);
        let freed = plan["totals"]["bytes_freed"].as_u64().unwrap();
        assert!(freed > 0, "the sample policy frees something");
        assert!(html.contains(&format!("data-freed=\"{freed}\"")), "summary total");
        let table = rows(&html, "repositories");
        let repos = plan["repositories"].as_array().unwrap();
        assert_eq!(table.len(), repos.len());
        for r in repos {
            let name = r["repository"].as_str().unwrap();
            let row = table.iter().find(|row| row["repo"] == name).unwrap();
            assert_eq!(
                number(&row["freed"]),
                r["bytes_freed"].as_u64().unwrap(),
                "{name}"
            );
            let count = |action: &str| {
                r["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|t| t["action"] == action)
                    .count() as u64
            };
            assert_eq!(number(&row["kept"]), count("keep"), "{name}");
            assert_eq!(number(&row["deleted"]), count("delete"), "{name}");
            assert_eq!(number(&row["untagged"]), count("untag"), "{name}");
        }
        let cells = html.matches("<g class=\"cell\"").count();
        assert_eq!(
            cells,
            repos
                .iter()
                .filter(|r| r["bytes_freed"].as_u64() > Some(0))
                .count()
        );
        // The plan is read-only: the registry still has every tag.
        let again = regsweep(&["--json", "plan", &reg.host(), "--keep-newest", "100"]);
        again.assert_ok();
        assert_eq!(again.json()["totals"]["tags_deleted"], 0);
    }

    #[tokio::test]
    async fn html_to_an_unwritable_path_is_a_clear_error() {
        let reg = TestRegistry::start(RegistryOptions::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-folder").join("du.html");
        let run = regsweep(&["du", &reg.host(), "--html", missing.to_str().unwrap()]);
        assert_eq!(run.code, 1, "{run:#?}");
        assert!(
            run.stderr.contains("cannot write the HTML report to"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}

// ---------------------------------------------------------------------------------------------
// Deployment examples: parsed, checked field by field, and their commands run for real against
// a test registry (with the example host names and paths replaced by the test's).

mod deploy {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use regsweep_testkit::{RegistryOptions, TestRegistry, sample};
    use serde_json::Value;

    use crate::common::{Run, regsweep_with};

    const EXAMPLE_HOST: &str = "registry.example.com";

    fn repo_file(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
    }

    fn documents(path: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(repo_file(path)).unwrap();
        serde_saphyr::from_multiple::<Value>(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    }

    fn strings(v: &Value) -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("not a list: {v}"))
            .iter()
            .map(|s| s.as_str().expect("a string").to_owned())
            .collect()
    }

    fn assert_cron(schedule: &str) {
        let fields: Vec<&str> = schedule.split_whitespace().collect();
        assert_eq!(
            fields.len(),
            5,
            "schedule `{schedule}` is not a 5-field cron expression"
        );
        for f in fields {
            assert!(
                !f.is_empty() && f.chars().all(|c| c.is_ascii_digit() || "*/,-".contains(c)),
                "cron field `{f}`"
            );
        }
    }

    /// The checks every CronJob here must pass; returns the pod spec.
    fn check_cronjob(job: &Value) -> &Value {
        assert_cron(job["spec"]["schedule"].as_str().expect("schedule"));
        assert_eq!(job["spec"]["concurrencyPolicy"], "Forbid");
        let pod = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert!(pod["securityContext"]["runAsUser"].as_u64().unwrap() > 0);
        let containers = pod["containers"].as_array().unwrap().iter();
        let init = pod["initContainers"].as_array().into_iter().flatten();
        for c in containers.chain(init) {
            assert!(c["image"].as_str().unwrap().contains("regsweep"), "{c}");
            assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false, "{c}");
            assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true, "{c}");
            assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL", "{c}");
        }
        pod
    }

    /// Where each volume is mounted in `container`, by volume name.
    fn mounts(container: &Value) -> BTreeMap<String, String> {
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_owned(),
                    m["mountPath"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn run(args: &[String], env: &[(&str, &str)]) -> Run {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        regsweep_with(&args, env, None)
    }

    /// Replaces the example's paths and host with the test's.
    fn localize(args: &[String], swaps: &[(&str, String)]) -> Vec<String> {
        args.iter()
            .map(|a| {
                swaps
                    .iter()
                    .fold(a.clone(), |acc, (from, to)| acc.replace(from, to))
            })
            .collect()
    }

    #[tokio::test]
    async fn kubernetes_retention_cronjob_plans_and_applies_the_configmap_policy() {
        let docs = documents("deploy/kubernetes/retention.yaml");
        let config_map = kind(&docs, "ConfigMap");
        let secret = kind(&docs, "Secret");
        let pod = check_cronjob(kind(&docs, "CronJob"));
        assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
        let docker_config: Value =
            serde_json::from_str(secret["stringData"][".dockerconfigjson"].as_str().unwrap()).unwrap();
        assert!(
            docker_config["auths"][EXAMPLE_HOST].is_object(),
            "{docker_config}"
        );

        // Volumes: the ConfigMap and the Secret above, the Secret's key as config.json.
        let volumes: BTreeMap<String, &Value> = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["name"].as_str().unwrap().to_owned(), v))
            .collect();
        assert_eq!(
            volumes["policy"]["configMap"]["name"],
            config_map["metadata"]["name"]
        );
        let auth = &volumes["registry-auth"]["secret"];
        assert_eq!(auth["secretName"], secret["metadata"]["name"]);
        assert_eq!(auth["items"][0]["key"], ".dockerconfigjson");
        assert_eq!(auth["items"][0]["path"], "config.json");

        let plan = &pod["initContainers"][0];
        let apply = &pod["containers"][0];
        for c in [plan, apply] {
            let mounted = mounts(c);
            let docker_config = c["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == "DOCKER_CONFIG")
                .expect("DOCKER_CONFIG is set");
            assert_eq!(docker_config["value"].as_str().unwrap(), mounted["registry-auth"]);
        }
        let plan_args = strings(&plan["args"]);
        let apply_args = strings(&apply["args"]);
        let policy_path = &plan_args[plan_args.iter().position(|a| a == "--policy").unwrap() + 1];
        let policy_dir = &mounts(plan)["policy"];
        let key = policy_path
            .strip_prefix(&format!("{policy_dir}/"))
            .expect("policy under its mount");
        let policy = config_map["data"][key]
            .as_str()
            .expect("the policy key is in the ConfigMap");
        let work_dir = &mounts(plan)["work"];
        assert_eq!(
            &mounts(apply)["work"],
            work_dir,
            "apply reads the plan where plan wrote it"
        );
        assert!(apply_args.contains(&format!("{work_dir}/plan.json")));

        // Now run both steps for real against a registry with the sample content.
        let reg = TestRegistry::start(RegistryOptions::default()).await.unwrap();
        sample(&reg.client()).await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let (policy_tmp, auth_tmp, work_tmp) =
            (tmp.path().join("p"), tmp.path().join("a"), tmp.path().join("w"));
        for d in [&policy_tmp, &auth_tmp, &work_tmp] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(policy_tmp.join(key), policy).unwrap();
        std::fs::write(auth_tmp.join("config.json"), r#"{"auths": {}}"#).unwrap();
        let swaps = [
            (policy_dir.as_str(), policy_tmp.display().to_string()),
            (work_dir.as_str(), work_tmp.display().to_string()),
            (EXAMPLE_HOST, reg.host()),
        ];
        let env = [("DOCKER_CONFIG", auth_tmp.to_str().unwrap())];
        let planned = run(&localize(&plan_args, &swaps), &env);
        planned.assert_ok();
        assert!(work_tmp.join("plan.html").is_file());
        let plan_json: Value =
            serde_json::from_slice(&std::fs::read(work_tmp.join("plan.json")).unwrap()).unwrap();
        assert!(
            plan_json["totals"]["tags_deleted"].as_u64().unwrap() > 0,
            "the example policy deletes something"
        );
        let applied = run(&localize(&apply_args, &swaps), &env);
        applied.assert_ok();
        // What the policy keeps is still there.
        let pusher = reg.client();
        for repo in pusher.catalog().await.unwrap() {
            let tags = pusher.tags(&repo).await.unwrap();
            assert!(!tags.is_empty(), "{repo} lost every tag");
            if plan_json["repositories"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["repository"] == repo.as_str() && r["tags"].to_string().contains("\"latest\""))
            {
                assert!(tags.contains(&"latest".to_owned()), "{repo}: {tags:?}");
            }
        }
    }

    #[tokio::test]
    async fn kubernetes_gc_cronjob_requires_a_read_only_registry() {
        let docs = documents("deploy/kubernetes/gc.yaml");
        let pod = check_cronjob(kind(&docs, "CronJob"));
        let gc = &pod["containers"][0];
        let args = strings(&gc["args"]);
        assert_eq!(args[0], "gc");
        assert!(args.contains(&"--require-read-only".to_owned()));
        let url_at = args
            .iter()
            .position(|a| a == "--registry-url")
            .expect("--registry-url");
        let url = args[url_at + 1].clone();
        let storage = mounts(gc)["storage"].clone();
        assert_eq!(args.last().unwrap(), &storage, "gc collects the mounted storage");
        assert!(pod["volumes"][0]["persistentVolumeClaim"]["claimName"].is_string());

        let mut writable = TestRegistry::start(RegistryOptions::default()).await.unwrap();
        sample(&writable.client()).await.unwrap();
        let root = writable.storage_root().display().to_string();
        // While the registry accepts writes, the job refuses to collect.
        let refused = run(
            &localize(&args, &[(&url, writable.base_url()), (&storage, root.clone())]),
            &[],
        );
        assert_eq!(refused.code, 1, "{refused:#?}");
        assert!(refused.stderr.contains("accepts writes"), "{}", refused.stderr);
        writable.stop().await.unwrap();
        let read_only = TestRegistry::start(
            RegistryOptions::default()
                .read_only()
                .with_storage_root(writable.storage_root()),
        )
        .await
        .unwrap();
        let collected = run(
            &localize(&args, &[(&url, read_only.base_url()), (&storage, root)]),
            &[],
        );
        collected.assert_ok();
        assert!(collected.stderr.contains("is read-only"), "{}", collected.stderr);
    }

    /// `Key=value` lines of a systemd unit, in order.
    fn unit(path: &str) -> Vec<(String, String)> {
        std::fs::read_to_string(repo_file(path))
            .unwrap()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (l.to_owned(), String::new()),
            })
            .collect()
    }

    fn value<'a>(unit: &'a [(String, String)], key: &str) -> &'a str {
        unit.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {key}="))
    }

    #[tokio::test]
    async fn systemd_service_and_timer() {
        let timer = unit("deploy/systemd/regsweep.timer");
        assert!(timer.iter().any(|(k, _)| k == "[Timer]"));
        assert!(!value(&timer, "OnCalendar").is_empty());
        assert_eq!(value(&timer, "Persistent"), "true");
        assert_eq!(value(&timer, "WantedBy"), "timers.target");

        let service = unit("deploy/systemd/regsweep.service");
        assert_eq!(value(&service, "Type"), "oneshot");
        assert_eq!(
            value(&service, "DynamicUser"),
            "yes",
            "runs as a throw-away non-root user"
        );
        assert_eq!(value(&service, "NoNewPrivileges"), "yes");
        let credential = value(&service, "LoadCredential");
        let (name, _) = credential.split_once(':').expect("LoadCredential=NAME:PATH");
        let state = format!("/var/lib/{}", value(&service, "StateDirectory"));
        let commands: Vec<Vec<String>> = ["ExecStartPre", "ExecStart"]
            .iter()
            .map(|k| value(&service, k).split_whitespace().map(str::to_owned).collect())
            .collect();
        for command in &commands {
            assert_eq!(command[0], "/usr/local/bin/regsweep");
            assert!(
                command.contains(&format!("%d/{name}")),
                "reads the loaded credential: {command:?}"
            );
        }

        // Run both for real: the policy of the Kubernetes example, the test registry.
        let docs = documents("deploy/kubernetes/retention.yaml");
        let policy = kind(&docs, "ConfigMap")["data"]["policy.yaml"].as_str().unwrap();
        let reg = TestRegistry::start(RegistryOptions::default()).await.unwrap();
        sample(&reg.client()).await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("policy.yaml"), policy).unwrap();
        std::fs::write(tmp.path().join(name), r#"{"auths": {}}"#).unwrap();
        let swaps = [
            ("/etc/regsweep", tmp.path().display().to_string()),
            ("%d", tmp.path().display().to_string()),
            (state.as_str(), tmp.path().display().to_string()),
            (EXAMPLE_HOST, reg.host()),
        ];
        for command in &commands {
            run(&localize(&command[1..], &swaps), &[]).assert_ok();
        }
        assert!(tmp.path().join("plan.html").is_file());
    }
}
