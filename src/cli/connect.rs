//! Options for reaching a registry (scheme, TLS, credentials, concurrency) and turning them into
//! a connected [`Client`].
//!
//! Credentials, first match wins (docs/auth.md): `--username` with `--password-stdin`; the
//! `REGSWEEP_USERNAME`/`REGSWEEP_PASSWORD` environment; then what `podman login` and
//! `docker login` stored (see [`regsweep::registry::credentials`]). `--no-creds` skips them all.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use regsweep::reference::RegistryAddr;
use regsweep::registry::credentials::{self, CredentialSources};
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
    /// Username (for basic auth, or to obtain tokens). Without it, credentials come from
    /// `podman login` / `docker login` (auth.json, config.json, credential helpers).
    #[arg(long, short = 'u', env = "REGSWEEP_USERNAME")]
    pub username: Option<String>,
    /// Read the password from standard input (first line). Or set REGSWEEP_PASSWORD.
    #[arg(long)]
    pub password_stdin: bool,
    /// Read credentials from this auth.json only (podman/containers format; docker's config.json
    /// works too) instead of the default locations.
    #[arg(long, value_name = "PATH", env = "REGISTRY_AUTH_FILE")]
    pub authfile: Option<PathBuf>,
    /// Send no credentials at all: ignore --username, REGSWEEP_* and every config file.
    #[arg(long, conflicts_with = "password_stdin")]
    pub no_creds: bool,
    /// Allow sending credentials over plain HTTP to a registry or token server that is not on
    /// loopback (anyone on the network path can read them).
    #[arg(long)]
    pub allow_insecure_auth: bool,
    /// Requests in flight at most.
    #[arg(long, short = 'j', default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
}

impl RegistryArgs {
    /// Credentials given on the command line or in the environment.
    fn explicit_credentials(&self) -> anyhow::Result<Option<Credentials>> {
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

    /// The credentials to use for `registry`, in the documented order.
    async fn credentials(&self, registry: &RegistryAddr) -> anyhow::Result<Option<Credentials>> {
        if self.no_creds {
            tracing::info!(registry = %registry, "--no-creds: connecting anonymously");
            return Ok(None);
        }
        if let Some(explicit) = self.explicit_credentials()? {
            tracing::info!(registry = %registry, user = %explicit.username, "using credentials from the command line or environment");
            return Ok(Some(explicit));
        }
        if let Some(file) = &self.authfile
            && !file.is_file()
        {
            return Err(UsageError::new(format!(
                "--authfile {}: no such file (set by the flag or REGISTRY_AUTH_FILE)",
                file.display()
            ))
            .into());
        }
        let sources = CredentialSources::from_env(self.authfile.clone());
        let host = registry.host().to_owned();
        // A credential helper is a child process that may take a while (a keychain prompt).
        let found = tokio::task::spawn_blocking(move || credentials::lookup(&host, &sources))
            .await
            .context("the credential lookup stopped unexpectedly")??;
        match found {
            Some(found) => {
                tracing::info!(registry = %registry, source = %found.source, who = %found.credentials.describe(), "using stored credentials");
                Ok(Some(found.credentials))
            }
            None => {
                tracing::debug!(registry = %registry, "no stored credentials; connecting anonymously");
                Ok(None)
            }
        }
    }

    /// Connects to `registry` with these options.
    pub async fn connect(&self, registry: &RegistryAddr) -> anyhow::Result<Client> {
        let options = self.client_options(registry).await?;
        Ok(Client::connect(registry, options).await?)
    }

    /// The client options these arguments stand for, credentials looked up, for callers that
    /// connect more than once (the capability probe).
    pub async fn client_options(&self, registry: &RegistryAddr) -> anyhow::Result<ClientOptions> {
        Ok(ClientOptions {
            plain_http: self.plain_http,
            insecure: self.insecure,
            ca_files: self.ca_file.clone(),
            credentials: self.credentials(registry).await?,
            allow_insecure_auth: self.allow_insecure_auth,
            concurrency: usize::from(self.concurrency),
            ..ClientOptions::default()
        })
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
