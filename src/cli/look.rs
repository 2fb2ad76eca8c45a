//! The read-only commands: `repos`, `tags`, `inspect`, `du`.

use crate::look::du::DuReport;
use crate::look::inspect::Inspection;
use crate::look::{self, TagDetail};
use crate::reference::{ImageRef, Location, RegistryAddr};
use clap::Args;
use serde::Serialize;
use std::io::Write as _;

use super::connect::{RegistryArgs, runtime};
use super::fold;
use super::output::with_json_error;
use super::output::{Bar, or_dash, plural, print_table, print_table_with_notes, size, table};
use super::storage::StorageArgs;
use super::{ExitStatus, Ui, UsageError};

#[derive(Debug, Args)]
pub struct ReposArgs {
    /// The registry, e.g. registry.example.com or localhost:5000 (not with --storage).
    #[arg(value_name = "REGISTRY", required_unless_present = "storage")]
    pub registry: Option<String>,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub connection: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct TagsArgs {
    /// The repository, e.g. registry.example.com/team/app (with --storage: team/app).
    #[arg(value_name = "REGISTRY/REPO")]
    pub repository: String,
    /// Resolve every tag: digest, media type, platforms, size and created time (with
    /// --storage: digest, media type, size and when it was pushed).
    #[arg(long, short = 'l')]
    pub long: bool,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub connection: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The image, e.g. registry.example.com/team/app:v1 or …/app@sha256:… (with --storage:
    /// team/app:v1 or team/app@sha256:…).
    #[arg(value_name = "REF")]
    pub reference: String,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub connection: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct DuArgs {
    /// The registry, or one repository of it (with --storage: a repository, or none for all).
    #[arg(value_name = "REGISTRY[/REPO] | REPO", required_unless_present = "storage")]
    pub location: Option<String>,
    /// Also write a self-contained HTML page (treemap per repository, biggest images) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub connection: RegistryArgs,
}

#[derive(Serialize)]
struct ReposJson<'a> {
    registry: &'a str,
    repositories: &'a [String],
}

pub fn repos(args: &ReposArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    with_json_error(ui, |ui| repos_command(args, ui))
}

fn repos_command(args: &ReposArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    let (source, repositories) = match (args.storage.open(ui.env())?, &args.registry) {
        (Some(opened), None) => {
            let repositories = super::storage::repositories(ui, &[], &opened.storage)?;
            (opened.described, repositories)
        }
        (None, Some(registry)) => {
            let registry = RegistryAddr::parse(registry).map_err(UsageError::from)?;
            let mut repositories = runtime()?.block_on(async {
                let client = args.connection.connector(ui)?.connect(&registry).await?;
                anyhow::Ok(
                    client
                        .catalog()
                        .await?
                        .into_iter()
                        .map(String::from)
                        .collect::<Vec<_>>(),
                )
            })?;
            repositories.sort();
            (registry.host().to_owned(), repositories)
        }
        _ => {
            return Err(
                UsageError::new("name a registry, or its storage with --storage TARGET, not both").into(),
            );
        }
    };
    if ui.json() {
        ui.print_json(&ReposJson {
            registry: &source,
            repositories: &repositories,
        })?;
    } else {
        for repo in &repositories {
            writeln!(ui.out(), "{repo}")?;
        }
    }
    Ok(ExitStatus::Success)
}

#[derive(Serialize)]
struct TagsJson<'a, T> {
    registry: &'a str,
    repository: &'a str,
    tags: &'a [T],
}

pub fn tags(args: &TagsArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    with_json_error(ui, |ui| tags_command(args, ui))
}

fn tags_command(args: &TagsArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    if let Some(opened) = args.storage.open(ui.env())? {
        return tags_on_storage(args, &opened, ui);
    }
    let (registry, repository) = Location::parse_repository(&args.repository).map_err(UsageError::from)?;
    let concurrency = args.connection.concurrency();
    let rt = runtime()?;
    let client = rt.block_on(args.connection.connector(ui)?.connect(&registry))?;
    if !args.long {
        let mut tags = rt.block_on(client.tags(&repository))?;
        tags.sort();
        if ui.json() {
            ui.print_json(&TagsJson {
                registry: registry.host(),
                repository: repository.as_str(),
                tags: &tags,
            })?;
        } else {
            for tag in &tags {
                writeln!(ui.out(), "{tag}")?;
            }
        }
        return Ok(ExitStatus::Success);
    }
    let bar = Bar::new(ui, "resolving tags");
    let listing = rt.block_on(look::tag_details(&client, &repository, concurrency, &bar))?;
    bar.finish();
    let details = &listing.rows;
    if ui.json() {
        ui.print_json(&TagsJson {
            registry: registry.host(),
            repository: repository.as_str(),
            tags: details,
        })?;
    } else {
        print_tag_table(ui.out(), details)?;
    }
    for err in &listing.errors {
        writeln!(ui.err(), "error: {repository}: {err}")?;
    }
    let failed = details.iter().filter(|d| d.error.is_some()).count();
    if failed > 0 {
        writeln!(
            ui.err(),
            "error: {failed} of {} could not be resolved",
            plural(details.len(), "tag", "tags")
        )?;
    }
    Ok(if failed > 0 || !listing.errors.is_empty() {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

/// One tag as storage shows it.
#[derive(Serialize)]
struct StorageTag<'a> {
    tag: &'a str,
    digest: &'a crate::digest::Digest,
    media_type: Option<&'a str>,
    /// The manifest and its blobs (for an index: with its children's).
    size: Option<u64>,
    /// When `current/link` was written.
    pushed: Option<String>,
}

/// `tags --storage`: tags with their digest and push time, read from `current/link`.
fn tags_on_storage(
    args: &TagsArgs,
    opened: &super::storage::Opened,
    ui: &mut Ui<'_>,
) -> anyhow::Result<ExitStatus> {
    let repository = crate::reference::Repository::parse(&args.repository).map_err(|e| {
        UsageError::new(format!(
            "`{}` is not a repository name ({e}); with --storage name it without a host",
            args.repository
        ))
    })?;
    let graph = crate::graph::storage::read(&opened.storage, repository.as_str(), false);
    for err in &graph.errors {
        writeln!(ui.err(), "error: {repository}: {err}")?;
    }
    let tags: Vec<StorageTag> = graph
        .tags
        .iter()
        .map(|(tag, digest)| {
            let node = graph.nodes.get(digest);
            StorageTag {
                tag,
                digest,
                media_type: node.map(|n| n.media_type.as_str()),
                size: node.map(|_| graph.blobs_of(graph.closure([digest]).iter()).values().sum()),
                pushed: graph
                    .pushed
                    .get(tag)
                    .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
            }
        })
        .collect();
    if ui.json() {
        if args.long {
            ui.print_json(&TagsJson {
                registry: &opened.described,
                repository: repository.as_str(),
                tags: &tags,
            })?;
        } else {
            let names: Vec<&str> = tags.iter().map(|t| t.tag).collect();
            ui.print_json(&TagsJson {
                registry: &opened.described,
                repository: repository.as_str(),
                tags: &names,
            })?;
        }
    } else if args.long {
        let mut t = table(&["TAG", "DIGEST", "TYPE", "SIZE", "PUSHED"]);
        for tag in &tags {
            t.add_row(vec![
                tag.tag.to_owned(),
                tag.digest.short().to_owned(),
                tag.media_type.map_or("-", short_media_type).to_owned(),
                tag.size.map_or("-".to_owned(), size),
                tag.pushed.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        writeln!(ui.out(), "{t}")?;
    } else {
        for tag in &tags {
            writeln!(ui.out(), "{}", tag.tag)?;
        }
    }
    Ok(if graph.errors.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

fn print_tag_table(out: &mut impl std::io::Write, details: &[TagDetail]) -> std::io::Result<()> {
    let mut t = table(&["TAG", "DIGEST", "TYPE", "PLATFORMS", "SIZE", "CREATED"]);
    let rows: Vec<fold::Row> = details
        .iter()
        .map(|d| fold::Row {
            tag: &d.tag,
            digest: d.image.as_ref().map(|image| &image.digest),
            label: "",
        })
        .collect();
    let mut notes = Vec::new();
    for shown in fold::fold(&rows) {
        let mut row = tag_row(&details[shown.index]);
        row[0] = shown.tag;
        t.add_row(row);
        notes.push(shown.note);
    }
    print_table_with_notes(out, &mut t, &notes, "  ")
}

/// One row of the `tags --long` table; what is not known is a `-`.
fn tag_row(row: &TagDetail) -> Vec<String> {
    let Some(image) = &row.image else {
        return vec![
            row.tag.clone(),
            "error".into(),
            row.error.clone().unwrap_or_default(),
        ];
    };
    let platforms: Vec<&str> = image.platforms.iter().map(|p| p.platform.as_str()).collect();
    vec![
        row.tag.clone(),
        image.digest.short().to_owned(),
        short_media_type(&image.media_type).to_owned(),
        or_dash(Some(&platforms.join(","))),
        size(image.size),
        or_dash(known_time(image.created.as_deref())),
    ]
}

/// A creation time, unless it is Go's zero time, which reproducible builds (ko, Bazel,
/// `SOURCE_DATE_EPOCH` unset) write when they do not know it.
fn known_time(created: Option<&str>) -> Option<&str> {
    created.filter(|time| !time.starts_with("0001-01-01"))
}

/// A short name for a manifest media type, for tables.
pub fn short_media_type(media_type: &str) -> &str {
    use crate::manifest::media_type as mt;
    match media_type {
        mt::OCI_INDEX => "oci-index",
        mt::OCI_MANIFEST => "oci",
        mt::DOCKER_LIST => "docker-list",
        mt::DOCKER_MANIFEST => "docker",
        mt::DOCKER_SCHEMA1 | mt::DOCKER_SCHEMA1_SIGNED => "schema1",
        other => other,
    }
}

#[derive(Serialize)]
struct InspectJson<'a> {
    registry: &'a str,
    #[serde(flatten)]
    inspection: &'a Inspection,
}

pub fn inspect(args: &InspectArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    with_json_error(ui, |ui| inspect_command(args, ui))
}

fn inspect_command(args: &InspectArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    if let Some(opened) = args.storage.open(ui.env())? {
        let reference = super::storage::StorageRef::parse(&args.reference)?;
        let wanted = match (&reference.tag, &reference.digest) {
            (_, Some(digest)) => digest.as_str(),
            (Some(tag), None) => tag.as_str(),
            (None, None) => return Err(UsageError::new("name a tag or a digest").into()),
        };
        let inspection =
            look::inspect::inspect_on_storage(&opened.storage, reference.repository.as_str(), wanted)?;
        return print_inspection(&args.reference, &opened.described, &inspection, ui);
    }
    let reference = ImageRef::parse(&args.reference).map_err(UsageError::from)?;
    let connector = args.connection.connector(ui)?;
    let inspection = runtime()?.block_on(async {
        let client = connector.connect(reference.registry()).await?;
        anyhow::Ok(
            look::inspect::inspect(
                &client,
                reference.repository(),
                reference.reference(),
                args.connection.concurrency(),
            )
            .await?,
        )
    })?;
    print_inspection(
        &reference.to_string(),
        reference.registry().host(),
        &inspection,
        ui,
    )
}

fn print_inspection(
    reference: &str,
    registry: &str,
    inspection: &look::inspect::Inspection,
    ui: &mut Ui<'_>,
) -> anyhow::Result<ExitStatus> {
    if ui.json() {
        ui.print_json(&InspectJson { registry, inspection })?;
        return Ok(ExitStatus::Success);
    }
    let image = &inspection.image;
    writeln!(ui.out(), "Reference:  {reference}")?;
    writeln!(ui.out(), "Digest:     {}", image.digest)?;
    writeln!(ui.out(), "Media type: {}", image.media_type)?;
    writeln!(ui.out(), "Manifest:   {}", size(image.manifest_size))?;
    writeln!(ui.out(), "Size:       {}", size(image.size))?;
    if let Some(created) = &image.created {
        writeln!(ui.out(), "Created:    {created}")?;
    }
    if let Some(artifact_type) = &image.artifact_type {
        writeln!(ui.out(), "Artifact:   {artifact_type}")?;
    }
    if let Some(subject) = &image.subject {
        writeln!(ui.out(), "Subject:    {subject}")?;
    }
    writeln!(
        ui.out(),
        "Tags:       {}",
        if inspection.tags.is_empty() {
            "(none)".to_owned()
        } else {
            inspection.tags.join(", ")
        }
    )?;
    if !image.platforms.is_empty() {
        writeln!(ui.out(), "Platforms:")?;
        for p in &image.platforms {
            writeln!(ui.out(), "  {:<16} {}  {}", p.platform, p.digest, size(p.size))?;
        }
    }
    if inspection.referrers.is_empty() {
        writeln!(ui.out(), "Referrers:  (none)")?;
    } else {
        writeln!(ui.out(), "Referrers:")?;
        for r in &inspection.referrers {
            let kind = serde_json::to_value(r.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let name = r
                .tag
                .clone()
                .or_else(|| r.artifact_type.clone())
                .unwrap_or_default();
            writeln!(ui.out(), "  {kind:<16} {}  {name}", r.digest)?;
        }
    }
    for warning in &inspection.warnings {
        writeln!(ui.err(), "warning: {warning}")?;
    }
    Ok(ExitStatus::Success)
}

#[derive(Serialize)]
struct DuJson<'a> {
    registry: &'a str,
    #[serde(flatten)]
    report: &'a DuReport,
}

pub fn du(args: &DuArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    with_json_error(ui, |ui| du_command(args, ui))
}

/// `du --storage`: the same accounting, from the graphs read on storage.
fn du_on_storage(
    args: &DuArgs,
    opened: &super::storage::Opened,
    ui: &mut Ui<'_>,
) -> anyhow::Result<ExitStatus> {
    if args.html.is_some() {
        return Err(UsageError::new(
            "--html is not available with --storage yet; use `du REGISTRY --html FILE`",
        )
        .into());
    }
    let inputs: Vec<String> = args.location.iter().cloned().collect();
    let repositories = super::storage::repositories(ui, &inputs, &opened.storage)?;
    let bar = Bar::new(ui, "reading storage");
    let report = crate::look::du::du_on_storage(&opened.storage, &repositories, &bar);
    bar.finish();
    print_du(&opened.described, &report, ui)
}

fn print_du(source: &str, report: &DuReport, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    if ui.json() {
        ui.print_json(&DuJson {
            registry: source,
            report,
        })?;
    } else {
        let mut t = table(&["REPOSITORY", "TAGS", "MANIFESTS", "TOTAL", "UNIQUE", "SHARED"]);
        for r in &report.repositories {
            t.add_row(vec![
                r.name.clone(),
                r.tags.to_string(),
                r.manifests.to_string(),
                size(r.total_bytes),
                size(r.unique_bytes),
                size(r.shared_bytes),
            ]);
        }
        print_table(ui.out(), &mut t)?;
        writeln!(
            ui.out(),
            "{}, {}: {} stored ({} without sharing)",
            plural(report.repositories.len(), "repository", "repositories"),
            plural(report.blobs, "distinct blob", "distinct blobs"),
            size(report.total_bytes),
            size(report.sum_of_repositories_bytes)
        )?;
    }
    for r in report.repositories.iter().filter(|r| !r.errors.is_empty()) {
        for e in &r.errors {
            writeln!(ui.err(), "error: {}: {e}", r.name)?;
        }
    }
    if report.repositories_with_errors > 0 {
        writeln!(
            ui.err(),
            "error: {} could not be read completely; their figures undercount",
            plural(report.repositories_with_errors, "repository", "repositories")
        )?;
        return Ok(ExitStatus::Failure);
    }
    Ok(ExitStatus::Success)
}

fn du_command(args: &DuArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    if let Some(opened) = args.storage.open(ui.env())? {
        return du_on_storage(args, &opened, ui);
    }
    let location = args
        .location
        .as_deref()
        .ok_or_else(|| UsageError::new("name a registry or a repository, or --storage TARGET"))?;
    let location = Location::parse(location).map_err(UsageError::from)?;
    let concurrency = args.connection.concurrency();
    let now = ui.timestamp();
    let bar = Bar::new(ui, "scanning");
    let started = std::time::Instant::now();
    let connector = args.connection.connector(ui)?;
    let report = runtime()?.block_on(async {
        let client = connector.connect(&location.registry).await?;
        let repositories = match &location.repository {
            Some(repo) => vec![repo.to_string()],
            None => client.catalog().await?.into_iter().map(String::from).collect(),
        };
        let report = super::report::du(
            &client,
            &repositories,
            concurrency,
            &bar,
            args.html.as_deref(),
            now,
        )
        .await?;
        let elapsed = started.elapsed().as_secs_f64();
        let requests = client.requests_sent();
        tracing::info!(
            "scanned {} with {requests} requests in {elapsed:.2}s ({:.0} requests/s)",
            plural(report.repositories.len(), "repository", "repositories"),
            requests as f64 / elapsed.max(1e-9)
        );
        anyhow::Ok(report)
    })?;
    bar.finish();
    print_du(location.registry.host(), &report, ui)
}

#[cfg(test)]
mod tests {
    use crate::digest::Digest;
    use crate::look::ImageSummary;
    use crate::manifest::{ManifestKind, media_type};

    use super::*;

    fn image(created: Option<&str>) -> ImageSummary {
        ImageSummary {
            digest: Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap(),
            media_type: media_type::OCI_MANIFEST.into(),
            kind: ManifestKind::Image,
            manifest_size: 400,
            size: 2048,
            created: created.map(str::to_owned),
            platforms: Vec::new(),
            artifact_type: None,
            subject: None,
        }
    }

    fn row(tag: &str, created: Option<&str>) -> Vec<String> {
        tag_row(&TagDetail {
            tag: tag.into(),
            image: Some(image(created)),
            error: None,
        })
    }

    #[test]
    fn unknown_values_are_dashes() {
        assert_eq!(
            row("v1", Some("0001-01-01T00:00:00Z")),
            ["v1", "abababababab", "oci", "-", "2.0 KiB", "-"]
        );
        assert_eq!(row("v2", None)[5], "-");
        assert_eq!(row("v3", Some("2024-05-01T10:00:00Z"))[5], "2024-05-01T10:00:00Z");
    }
}
