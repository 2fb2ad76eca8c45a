//! `regsweep probe REGISTRY[/REPO]`: what the registry allows and what regsweep will use there.

use clap::Args;
use regsweep::probe::{AuthKind, Capabilities};
use regsweep::reference::Location;
use regsweep::registry::delete::UntagMethod;

use super::connect::{RegistryArgs, runtime};
use super::output::print_json;
use super::{OutputArgs, UsageError, exit};

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

pub fn run(args: &ProbeArgs, output: &OutputArgs) -> anyhow::Result<u8> {
    let location = Location::parse(&args.location).map_err(UsageError::from)?;
    let caps = runtime()?.block_on(async {
        let options = args.connection.client_options(&location.registry).await?;
        anyhow::Ok(regsweep::probe::probe(&location.registry, &options, location.repository.as_ref()).await?)
    })?;
    if output.json {
        print_json(&caps)?;
    } else {
        print_human(&caps);
    }
    Ok(exit::OK)
}

fn print_human(caps: &Capabilities) {
    let yes_no = |value: Option<bool>, yes: &str, no: &str| match value {
        Some(true) => yes.to_owned(),
        Some(false) => no.to_owned(),
        None => "unknown".to_owned(),
    };
    println!("Registry:       {} ({})", caps.registry, caps.scheme);
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
    println!("Auth:           {auth}");
    let catalog = match (caps.catalog, caps.repositories, caps.catalog_page_limit) {
        (Some(true), Some(repos), Some(limit)) => {
            format!("yes, {repos} repositories; pages of up to {limit} accepted")
        }
        (other, ..) => yes_no(other, "yes", "no"),
    };
    println!("Catalog:        {catalog}");
    if let Some(repo) = &caps.probe_repository {
        println!("Checked in:     {repo}");
    }
    println!(
        "Read-only:      {}",
        yes_no(caps.read_only, "yes (pushes and deletes refused)", "no")
    );
    println!(
        "Deletes:        {}",
        yes_no(
            caps.deletes_enabled,
            "enabled",
            "disabled (storage.delete.enabled: false)"
        )
    );
    println!(
        "Delete by tag:  {}",
        yes_no(
            caps.delete_by_tag,
            "yes, and other tags on the digest survive",
            "no"
        )
    );
    let untag = match caps.untag_method {
        Some(UntagMethod::DeleteByTag) => "OCI DELETE by tag",
        Some(UntagMethod::Placeholder) => "point the tag at a placeholder image, then delete that by digest",
        None => "none possible (deletes do not work here)",
    };
    println!("Untag with:     {untag}");
    println!(
        "Referrers:      {}",
        yes_no(
            caps.referrers_api,
            "OCI referrers API",
            "no API; sha256-<digest> tags are read instead"
        )
    );
    for note in &caps.notes {
        println!("note: {note}");
    }
}
