//! The read-only commands: `repos`, `tags`, `inspect`, `du`.

use clap::Args;
use regsweep::look::du::DuReport;
use regsweep::look::inspect::Inspection;
use regsweep::look::{self, TagDetail};
use regsweep::reference::{ImageRef, Location, RegistryAddr};
use serde::Serialize;

use super::connect::{RegistryArgs, runtime};
use super::output::{Bar, print_json, print_table, size, table};
use super::retention::with_json_error;
use super::{OutputArgs, UsageError, exit};

#[derive(Debug, Args)]
pub struct ReposArgs {
    /// The registry, e.g. registry.example.com or localhost:5000.
    #[arg(value_name = "REGISTRY")]
    pub registry: String,
    #[command(flatten)]
    pub connection: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct TagsArgs {
    /// The repository, e.g. registry.example.com/team/app.
    #[arg(value_name = "REGISTRY/REPO")]
    pub repository: String,
    /// Resolve every tag: digest, media type, platforms, size and created time.
    #[arg(long, short = 'l')]
    pub long: bool,
    #[command(flatten)]
    pub connection: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The image, e.g. registry.example.com/team/app:v1 or …/app@sha256:….
    #[arg(value_name = "REF")]
    pub reference: String,
    #[command(flatten)]
    pub connection: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct DuArgs {
    /// The registry, or one repository of it.
    #[arg(value_name = "REGISTRY[/REPO]")]
    pub location: String,
    /// Also write a self-contained HTML page (treemap per repository, biggest images) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
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
    let registry = RegistryAddr::parse(&args.registry).map_err(UsageError::from)?;
    let mut repositories = runtime()?.block_on(async {
        let client = args.connection.connect(&registry).await?;
        anyhow::Ok(client.catalog().await?)
    })?;
    repositories.sort();
    if output.json {
        print_json(&ReposJson {
            registry: registry.host(),
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
    let (registry, repository) = Location::parse_repository(&args.repository).map_err(UsageError::from)?;
    let concurrency = args.connection.concurrency();
    let rt = runtime()?;
    let client = rt.block_on(args.connection.connect(&registry))?;
    let mut tags = rt.block_on(client.tags(repository.as_str()))?;
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
    let details = rt.block_on(look::tag_details(
        &client,
        repository.as_str(),
        &tags,
        concurrency,
        &bar,
    ));
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
        eprintln!("error: {failed} of {} tags could not be resolved", details.len());
        return Ok(exit::ERROR);
    }
    Ok(exit::OK)
}

fn print_tag_table(details: &[TagDetail]) {
    let mut t = table(&["TAG", "DIGEST", "TYPE", "PLATFORMS", "SIZE", "CREATED"]);
    for row in details {
        match (&row.image, &row.error) {
            (Some(image), _) => {
                let platforms: Vec<&str> = image.platforms.iter().map(|p| p.platform.as_str()).collect();
                t.add_row(vec![
                    row.tag.clone(),
                    image.digest.short().to_owned(),
                    short_media_type(&image.media_type).to_owned(),
                    platforms.join(","),
                    size(image.size),
                    image.created.clone().unwrap_or_default(),
                ]);
            }
            (None, error) => {
                t.add_row(vec![
                    row.tag.clone(),
                    "error".into(),
                    error.clone().unwrap_or_default(),
                ]);
            }
        }
    }
    print_table(&mut t);
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
    let reference = ImageRef::parse(&args.reference).map_err(UsageError::from)?;
    let inspection = runtime()?.block_on(async {
        let client = args.connection.connect(&reference.registry).await?;
        anyhow::Ok(
            look::inspect::inspect(
                &client,
                reference.repository.as_str(),
                reference.reference(),
                args.connection.concurrency(),
            )
            .await?,
        )
    })?;
    if output.json {
        print_json(&InspectJson {
            registry: reference.registry.host(),
            inspection: &inspection,
        })?;
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

fn du_command(args: &DuArgs, output: &OutputArgs) -> anyhow::Result<u8> {
    let location = Location::parse(&args.location).map_err(UsageError::from)?;
    let concurrency = args.connection.concurrency();
    let bar = Bar::new(output, "scanning");
    let started = std::time::Instant::now();
    let report = runtime()?.block_on(async {
        let client = args.connection.connect(&location.registry).await?;
        let repositories = match &location.repository {
            Some(repo) => vec![repo.to_string()],
            None => client.catalog().await?,
        };
        let report =
            super::report::du(&client, &repositories, concurrency, &bar, args.html.as_deref()).await?;
        let elapsed = started.elapsed().as_secs_f64();
        let requests = client.requests_sent();
        tracing::info!(
            "scanned {} repositories with {requests} requests in {elapsed:.2}s ({:.0} requests/s)",
            report.repositories.len(),
            requests as f64 / elapsed.max(1e-9)
        );
        anyhow::Ok(report)
    })?;
    bar.finish();
    if output.json {
        print_json(&DuJson {
            registry: location.registry.host(),
            report: &report,
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
            "{} repositories, {} distinct blobs: {} stored ({} without sharing)",
            report.repositories.len(),
            report.blobs,
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
            "error: {} repositories could not be read completely; their figures undercount",
            report.repositories_with_errors
        );
        return Ok(exit::ERROR);
    }
    Ok(exit::OK)
}
