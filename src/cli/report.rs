//! `--html FILE` for `du` and `plan`: writes the self-contained HTML report.

use std::path::Path;

use crate::look;
use crate::look::du::DuReport;
use crate::plan::Plan;
use crate::progress::Progress;
use crate::registry::Client;
use crate::report::{self, html};
use anyhow::Context;

/// `du`'s scan. With an HTML path the images are sized too and the page is written there.
pub async fn du(
    client: &Client,
    repositories: &[String],
    concurrency: usize,
    progress: &dyn Progress,
    html_path: Option<&Path>,
    now: jiff::Timestamp,
) -> anyhow::Result<DuReport> {
    let Some(path) = html_path else {
        return Ok(look::du::du(client, repositories, concurrency, progress).await);
    };
    let scan = report::du_with_images(client, repositories, concurrency, progress).await;
    write(
        path,
        &html::du_page(client.registry().host(), &scan, &generated_at(now)),
    )?;
    Ok(scan.report)
}

/// Writes the plan's HTML page.
pub fn plan(path: &Path, plan: &Plan) -> anyhow::Result<()> {
    write(path, &html::plan_page(plan))
}

fn write(path: &Path, page: &str) -> anyhow::Result<()> {
    std::fs::write(path, page)
        .with_context(|| format!("cannot write the HTML report to {}", path.display()))?;
    tracing::info!("HTML report written to {}", path.display());
    Ok(())
}

/// When the page was made, to the second.
fn generated_at(now: jiff::Timestamp) -> String {
    now.round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
