//! `regsweep probe REGISTRY[/REPO]`: what the registry allows and what regsweep will use there.

use crate::probe::{AuthKind, Capabilities};
use crate::reference::Location;
use crate::registry::delete::UntagMethod;
use clap::Args;

use super::connect::{RegistryArgs, runtime};
use super::{ExitStatus, Ui, UsageError};

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The registry, or one repository of it to run the checks in (default: the first
    /// repository of the catalog). The checks change nothing there except two throw-away tags
    /// on a placeholder image, removed again, when deletes are enabled.
    #[arg(value_name = "REGISTRY[/REPO]")]
    pub location: String,
    #[command(flatten)]
    pub connection: RegistryArgs,
}

pub fn run(args: &ProbeArgs, ui: &mut Ui<'_>) -> anyhow::Result<ExitStatus> {
    let location = Location::parse(&args.location).map_err(UsageError::from)?;
    let connector = args.connection.connector(ui)?;
    let caps = runtime()?.block_on(async {
        let options = connector.client_options(&location.registry).await?;
        anyhow::Ok(crate::probe::probe(&location.registry, &options, location.repository.as_ref()).await?)
    })?;
    if ui.json() {
        ui.print_json(&caps)?;
    } else {
        print_human(ui.out(), &caps)?;
    }
    Ok(ExitStatus::Success)
}

fn print_human(out: &mut impl std::io::Write, caps: &Capabilities) -> std::io::Result<()> {
    let yes_no = |value: Option<bool>, yes: &str, no: &str| match value {
        Some(true) => yes.to_owned(),
        Some(false) => no.to_owned(),
        None => "unknown".to_owned(),
    };
    writeln!(out, "Registry:       {} ({})", caps.registry, caps.scheme)?;
    let auth = match &caps.auth {
        AuthKind::None => "none (anonymous access)".to_owned(),
        AuthKind::Basic { .. } => "basic (username and password on every request)".to_owned(),
        AuthKind::Bearer { realm, service } => format!(
            "bearer tokens from {realm}{}",
            service
                .as_ref()
                .map(|s| format!(" (service {s})"))
                .unwrap_or_default()
        ),
        AuthKind::Other { challenge } => format!("unsupported challenge: {challenge}"),
        AuthKind::Unknown { reason } => format!("unknown ({reason})"),
    };
    writeln!(out, "Auth:           {auth}")?;
    let catalog = match (caps.catalog, caps.repositories, caps.catalog_page_limit) {
        (Some(true), Some(repos), Some(limit)) => {
            format!("yes, {repos} repositories; pages of up to {limit} accepted")
        }
        (other, ..) => yes_no(other, "yes", "no"),
    };
    writeln!(out, "Catalog:        {catalog}")?;
    if let Some(repo) = &caps.probe_repository {
        writeln!(out, "Checked in:     {repo}")?;
    }
    writeln!(
        out,
        "Read-only:      {}",
        yes_no(caps.read_only, "yes (pushes and deletes refused)", "no")
    )?;
    writeln!(
        out,
        "Deletes:        {}",
        yes_no(
            caps.deletes_enabled,
            "enabled",
            "disabled (storage.delete.enabled: false)"
        )
    )?;
    writeln!(
        out,
        "Delete by tag:  {}",
        yes_no(
            caps.delete_by_tag,
            "yes, and other tags on the digest survive",
            "no"
        )
    )?;
    let untag = match caps.untag_method {
        Some(UntagMethod::DeleteByTag) => "OCI DELETE by tag",
        Some(UntagMethod::Placeholder) => "point the tag at a placeholder image, then delete that by digest",
        None => "none possible (deletes do not work here)",
    };
    writeln!(out, "Untag with:     {untag}")?;
    writeln!(
        out,
        "Referrers:      {}",
        yes_no(
            caps.referrers_api,
            "OCI referrers API",
            "no API; sha256-<digest> tags are read instead"
        )
    )?;
    for note in &caps.notes {
        writeln!(out, "note: {note}")?;
    }
    Ok(())
}
