//! The read-only commands: `repos`, `tags`, `inspect`, `du`.

use clap::Args;
use regsweep::look::du::DuReport;
use regsweep::look::inspect::Inspection;
use regsweep::look::{self, TagDetail};
use regsweep::reference::{ImageRef, Location, RegistryAddr};
use serde::Serialize;

use super::connect::{RegistryArgs, runtime};
use super::fold;
use super::output::with_json_error;
use super::output::{Bar, or_dash, plural, print_json, print_table, print_table_with_notes, size, table};
use super::storage::StorageArgs;
use super::{OutputArgs, UsageError, exit};

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

pub fn repos(args: &ReposArgs, output: &OutputArgs) -> anyhow::Result<u8> {
    with_json_error(output, || repos_command(args, output))
}

fn repos_command(args: &ReposArgs, output: &OutputArgs) -> anyhow::Result<u8> {
    let (source, repositories) = match (args.storage.open()?, &args.registry) {
        (Some(opened), None) => {
            let repositories = super::storage::repositories(&[], &opened.storage)?;
            (opened.described, repositories)
        }
        (None, Some(registry)) => {
            let registry = RegistryAddr::parse(registry).map_err(UsageError::from)?;
            let mut repositories = runtime()?.block_on(async {
                let client = args.connection.connect(&registry).await?;
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
    if output.json {
        print_json(&ReposJson {
            registry: &source,
            repositories: &repositories,
        })?;
    } else {
        for repo in &repositories {
            println!("{repo}");
        }
    }
    Ok(exit::OK)
}

#[derive(Serialize)]
struct TagsJson<'a, T> {
    registry: &'a str,
    repository: &'a str,
    tags: &'a [T],
}

pub fn tags(args: &TagsArgs, output: &OutputArgs) -> anyhow::Result<u8> {
    with_json_error(output, || tags_command(args, output))
}

fn tags_command(args: &TagsArgs, output: &OutputArgs) -> anyhow::Result<u8> {
    if let Some(opened) = args.storage.open()? {
        return tags_on_storage(args, &opened, output);
    }
    let (registry, repository) = Location::parse_repository(&args.repository).map_err(UsageError::from)?;
    let concurrency = args.connection.concurrency();
    let rt = runtime()?;
    let client = rt.block_on(args.connection.connect(&registry))?;
    let mut tags = rt.block_on(client.tags(&repository))?;
    tags.sort();
    if !args.long {
        if output.json {
            print_json(&TagsJson {
                registry: registry.host(),
                repository: repository.as_str(),
                tags: &tags,
            })?;
        } else {
            for tag in &tags {
                println!("{tag}");
            }
        }
        return Ok(exit::OK);
    }
    let bar = Bar::new(output, "resolving tags");
    let details = rt.block_on(look::tag_details(&client, &repository, &tags, concurrency, &bar));
    bar.finish();
    if output.json {
        print_json(&TagsJson {
            registry: registry.host(),
            repository: repository.as_str(),
            tags: &details,
        })?;
    } else {
        print_tag_table(&details);
    }
    let failed = details.iter().filter(|d| d.error.is_some()).count();
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} could not be resolved",
            plural(details.len(), "tag", "tags")
        );
        return Ok(exit::ERROR);
    }
    Ok(exit::OK)
}

/// One tag as storage shows it.
#[derive(Serialize)]
struct StorageTag<'a> {
    tag: &'a str,
    digest: &'a regsweep::digest::Digest,
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
    output: &OutputArgs,
) -> anyhow::Result<u8> {
    let repository = regsweep::reference::Repository::parse(&args.repository).map_err(|e| {
        UsageError::new(format!(
            "`{}` is not a repository name ({e}); with --storage name it without a host",
            args.repository
        ))
    })?;
    let graph = regsweep::graph::storage::read(&opened.storage, repository.as_str(), false);
    for err in &graph.errors {
        eprintln!("error: {repository}: {err}");
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
    if output.json {
        if args.long {
            print_json(&TagsJson {
                registry: &opened.described,
                repository: repository.as_str(),
                tags: &tags,
            })?;
        } else {
            let names: Vec<&str> = tags.iter().map(|t| t.tag).collect();
            print_json(&TagsJson {
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
        println!("{t}");
    } else {
        for tag in &tags {
            println!("{}", tag.tag);
        }
    }
    Ok(if graph.errors.is_empty() {
        exit::OK
    } else {
        exit::ERROR
    })
}

fn print_tag_table(details: &[TagDetail]) {
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
    print_table_with_notes(&mut t, &notes, "  ");
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
    use regsweep::manifest::media_type as mt;
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

pub fn inspect(args: &InspectArgs, output: &OutputArgs) -> anyhow::Result<u8> {
    with_json_error(output, || inspect_command(args, output))
}

fn inspect_command(args: &InspectArgs, output: &OutputArgs) -> anyhow::Result<u8> {
    if let Some(opened) = args.storage.open()? {
        let reference = super::storage::StorageRef::parse(&args.reference)?;
        let wanted = match (&reference.tag, &reference.digest) {
            (_, Some(digest)) => digest.as_str(),
            (Some(tag), None) => tag.as_str(),
            (None, None) => return Err(UsageError::new("name a tag or a digest").into()),
        };
        let inspection =
            look::inspect::inspect_on_storage(&opened.storage, reference.repository.as_str(), wanted)?;
        return print_inspection(&args.reference, &opened.described, &inspection, output);
    }
    let reference = ImageRef::parse(&args.reference).map_err(UsageError::from)?;
    let inspection = runtime()?.block_on(async {
        let client = args.connection.connect(reference.registry()).await?;
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
        output,
    )
}

fn print_inspection(
    reference: &str,
    registry: &str,
    inspection: &look::inspect::Inspection,
    output: &OutputArgs,
) -> anyhow::Result<u8> {
    if output.json {
        print_json(&InspectJson { registry, inspection })?;
        return Ok(exit::OK);
    }
    let image = &inspection.image;
    println!("Reference:  {reference}");
    println!("Digest:     {}", image.digest);
    println!("Media type: {}", image.media_type);
    println!("Manifest:   {}", size(image.manifest_size));
    println!("Size:       {}", size(image.size));
    if let Some(created) = &image.created {
        println!("Created:    {created}");
    }
    if let Some(artifact_type) = &image.artifact_type {
        println!("Artifact:   {artifact_type}");
    }
    if let Some(subject) = &image.subject {
        println!("Subject:    {subject}");
    }
    println!(
        "Tags:       {}",
        if inspection.tags.is_empty() {
            "(none)".to_owned()
        } else {
            inspection.tags.join(", ")
        }
    );
    if !image.platforms.is_empty() {
        println!("Platforms:");
        for p in &image.platforms {
            println!("  {:<16} {}  {}", p.platform, p.digest, size(p.size));
        }
    }
    if inspection.referrers.is_empty() {
        println!("Referrers:  (none)");
    } else {
        println!("Referrers:");
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
            println!("  {kind:<16} {}  {name}", r.digest);
        }
    }
    for warning in &inspection.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(exit::OK)
}

#[derive(Serialize)]
struct DuJson<'a> {
    registry: &'a str,
    #[serde(flatten)]
    report: &'a DuReport,
}

pub fn du(args: &DuArgs, output: &OutputArgs) -> anyhow::Result<u8> {
    with_json_error(output, || du_command(args, output))
}

/// `du --storage`: the same accounting, from the graphs read on storage.
fn du_on_storage(args: &DuArgs, opened: &super::storage::Opened, output: &OutputArgs) -> anyhow::Result<u8> {
    if args.html.is_some() {
        return Err(UsageError::new(
            "--html is not available with --storage yet; use `du REGISTRY --html FILE`",
        )
        .into());
    }
    let inputs: Vec<String> = args.location.iter().cloned().collect();
    let repositories = super::storage::repositories(&inputs, &opened.storage)?;
    let bar = Bar::new(output, "reading storage");
    let report = regsweep::look::du::du_on_storage(&opened.storage, &repositories, &bar);
    bar.finish();
    print_du(&opened.described, &report, output)
}

fn print_du(source: &str, report: &DuReport, output: &OutputArgs) -> anyhow::Result<u8> {
    if output.json {
        print_json(&DuJson {
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
        print_table(&mut t);
        println!(
            "{}, {}: {} stored ({} without sharing)",
            plural(report.repositories.len(), "repository", "repositories"),
            plural(report.blobs, "distinct blob", "distinct blobs"),
            size(report.total_bytes),
            size(report.sum_of_repositories_bytes)
        );
    }
    for r in report.repositories.iter().filter(|r| !r.errors.is_empty()) {
        for e in &r.errors {
            eprintln!("error: {}: {e}", r.name);
        }
    }
    if report.repositories_with_errors > 0 {
        eprintln!(
            "error: {} could not be read completely; their figures undercount",
            plural(report.repositories_with_errors, "repository", "repositories")
        );
        return Ok(exit::ERROR);
    }
    Ok(exit::OK)
}

fn du_command(args: &DuArgs, output: &OutputArgs) -> anyhow::Result<u8> {
    if let Some(opened) = args.storage.open()? {
        return du_on_storage(args, &opened, output);
    }
    let location = args
        .location
        .as_deref()
        .ok_or_else(|| UsageError::new("name a registry or a repository, or --storage TARGET"))?;
    let location = Location::parse(location).map_err(UsageError::from)?;
    let concurrency = args.connection.concurrency();
    let bar = Bar::new(output, "scanning");
    let started = std::time::Instant::now();
    let report = runtime()?.block_on(async {
        let client = args.connection.connect(&location.registry).await?;
        let repositories = match &location.repository {
            Some(repo) => vec![repo.to_string()],
            None => client.catalog().await?.into_iter().map(String::from).collect(),
        };
        let report =
            super::report::du(&client, &repositories, concurrency, &bar, args.html.as_deref()).await?;
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
    print_du(location.registry.host(), &report, output)
}

#[cfg(test)]
mod tests {
    use regsweep::digest::Digest;
    use regsweep::look::ImageSummary;
    use regsweep::manifest::{ManifestKind, media_type};

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
