//! Options for reaching a registry (scheme, TLS, credentials, concurrency) and turning them into
//! a connected [`Client`].

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use regsweep::reference::RegistryAddr;
use regsweep::registry::{Client, ClientOptions, Credentials, Secret};

use super::UsageError;

/// How to reach and authenticate to the registry.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Registry connection")]
pub struct RegistryArgs {
    /// Talk plain HTTP instead of HTTPS (loopback registries fall back to HTTP on their own).
    #[arg(long)]
    pub plain_http: bool,
    /// Skip TLS certificate verification (the connection is still encrypted).
    #[arg(long)]
    pub insecure: bool,
    /// Trust the CA certificate(s) in this PEM file, in addition to the system's.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Vec<PathBuf>,
    /// Username for HTTP basic authentication.
    #[arg(long, short = 'u', env = "REGSWEEP_USERNAME")]
    pub username: Option<String>,
    /// Read the password from standard input (first line). Or set REGSWEEP_PASSWORD.
    #[arg(long)]
    pub password_stdin: bool,
    /// Requests in flight at most.
    #[arg(long, short = 'j', default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
}

impl RegistryArgs {
    fn credentials(&self) -> anyhow::Result<Option<Credentials>> {
        let from_env = std::env::var("REGSWEEP_PASSWORD").ok().filter(|p| !p.is_empty());
        let password = if self.password_stdin {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            let password = line.trim_end_matches(['\r', '\n']).to_owned();
            if password.is_empty() {
                return Err(UsageError::new("--password-stdin: standard input held no password").into());
            }
            Some(password)
        } else {
            from_env
        };
        match (&self.username, password) {
            (Some(username), Some(password)) => Ok(Some(Credentials {
                username: username.clone(),
                password: Secret::new(password),
            })),
            (Some(_), None) => Err(UsageError::new(
                "--username needs a password: pass --password-stdin, or set REGSWEEP_PASSWORD",
            )
            .into()),
            (None, Some(_)) if self.password_stdin => {
                Err(UsageError::new("--password-stdin needs --username (or REGSWEEP_USERNAME)").into())
            }
            _ => Ok(None),
        }
    }

    /// Connects to `registry` with these options.
    pub async fn connect(&self, registry: &RegistryAddr) -> anyhow::Result<Client> {
        let options = ClientOptions {
            plain_http: self.plain_http,
            insecure: self.insecure,
            ca_files: self.ca_file.clone(),
            credentials: self.credentials()?,
            concurrency: usize::from(self.concurrency),
            ..ClientOptions::default()
        };
        Ok(Client::connect(registry, options).await?)
    }

    pub fn concurrency(&self) -> usize {
        usize::from(self.concurrency)
    }
}

/// The async runtime for network commands.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
