//! Options for reaching a registry (scheme, TLS, credentials, concurrency) and turning them into
//! a connected [`Client`].
//!
//! Credentials, first match wins (docs/auth.md): `--username` with `--password-stdin`; the
//! `REGSWEEP_USERNAME`/`REGSWEEP_PASSWORD` environment; then what `podman login` and
//! `docker login` stored (see [`crate::registry::credentials`]). `--no-creds` skips them all.

use std::path::PathBuf;
use std::time::Duration;

use crate::reference::RegistryAddr;
use crate::registry::credentials::{self, CredentialSources};
use crate::registry::{Client, ClientOptions, Credentials, RetryPolicy, Secret};
use anyhow::Context;
use clap::Args;

use super::{Ui, UsageError};

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
    /// Trust the certificate(s) in this PEM file, in addition to the system's: a CA, or the
    /// registry's own self-signed certificate (docs/connection.md).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Vec<PathBuf>,
    /// Username (for basic auth, or to obtain tokens); default: $REGSWEEP_USERNAME. Without
    /// it, credentials come from `podman login` / `docker login` (auth.json, config.json,
    /// credential helpers).
    #[arg(long, short = 'u')]
    pub username: Option<String>,
    /// Read the password from standard input (first line). Or set REGSWEEP_PASSWORD.
    #[arg(long)]
    pub password_stdin: bool,
    /// Read credentials from this auth.json only (podman/containers format; docker's config.json
    /// works too) instead of the default locations; default: $REGISTRY_AUTH_FILE.
    #[arg(long, value_name = "PATH")]
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
    /// Time allowed for one attempt of one request, from connecting to the last byte (`30s`,
    /// `500ms`, `2m`, or seconds). A stalled response fails after this long and is retried.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Time allowed for one request with all its retries and the waits between them; no retry
    /// starts that would end past it.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_timeout)]
    pub request_timeout: Duration,
    /// Attempts per request before giving up on transient failures (connection errors,
    /// timeouts, responses cut short, 429, 5xx), including the first.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further one (with jitter, at most 8 s).
    /// A server's `Retry-After` takes precedence.
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = parse_timeout)]
    pub retry_delay: Duration,
}

/// Parses a duration flag: `30s`, `500ms`, `2m`, `1h`, or a number of seconds.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let parsed = match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(Duration::from_secs_f64(seconds)),
        Ok(_) => Err(()),
        Err(_) => text
            .parse::<jiff::SignedDuration>()
            .ok()
            .and_then(|d| Duration::try_from(d).ok())
            .ok_or(()),
    };
    match parsed {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(format!(
            "`{text}` is not a duration: write it as 30s, 500ms, 2m or a number of seconds (more than 0)"
        )),
    }
}

impl RegistryArgs {
    /// What connecting needs from the run: credentials from the flags, the environment or
    /// standard input (read once here, however many connections follow), and where stored
    /// credentials are looked up.
    pub fn connector(&self, ui: &mut Ui<'_>) -> anyhow::Result<Connector> {
        let explicit = if self.no_creds {
            None
        } else {
            self.explicit_credentials(ui)?
        };
        Ok(Connector {
            args: self.clone(),
            // The flag, else REGISTRY_AUTH_FILE, else the default locations.
            sources: CredentialSources::from_env(ui.env(), self.authfile.clone()),
            explicit,
        })
    }

    /// Credentials given on the command line, in the environment or on standard input.
    fn explicit_credentials(&self, ui: &mut Ui<'_>) -> anyhow::Result<Option<Credentials>> {
        let password = if self.password_stdin {
            let line = ui
                .read_line()
                .context("cannot read the password from standard input")?
                .unwrap_or_default();
            if line.is_empty() {
                return Err(UsageError::new("--password-stdin: standard input held no password").into());
            }
            Some(line)
        } else {
            ui.env().get("REGSWEEP_PASSWORD")
        };
        // An empty REGSWEEP_USERNAME (or `--username ""`) means no username, as an empty
        // variable does for docker and git.
        let username = match &self.username {
            Some(username) => Some(username.clone()).filter(|u| !u.is_empty()),
            None => ui.env().get("REGSWEEP_USERNAME"),
        };
        match (username, password) {
            (Some(username), Some(password)) => Ok(Some(Credentials {
                username,
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

    pub fn concurrency(&self) -> usize {
        usize::from(self.concurrency)
    }
}

/// The connection options of one run, resolved: see [`RegistryArgs::connector`].
pub struct Connector {
    args: RegistryArgs,
    explicit: Option<Credentials>,
    sources: CredentialSources,
}

impl Connector {
    /// The credentials to use for `registry`, in the documented order.
    async fn credentials(&self, registry: &RegistryAddr) -> anyhow::Result<Option<Credentials>> {
        if self.args.no_creds {
            tracing::info!(registry = %registry, "--no-creds: connecting anonymously");
            return Ok(None);
        }
        if let Some(explicit) = &self.explicit {
            tracing::info!(registry = %registry, user = %explicit.username, "using credentials from the command line or environment");
            return Ok(Some(explicit.clone()));
        }
        if let Some(file) = &self.sources.auth_file
            && !file.is_file()
        {
            return Err(UsageError::new(format!(
                "--authfile {}: no such file (set by the flag or REGISTRY_AUTH_FILE)",
                file.display()
            ))
            .into());
        }
        let sources = self.sources.clone();
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
        let args = &self.args;
        Ok(ClientOptions {
            plain_http: args.plain_http,
            insecure: args.insecure,
            ca_files: args.ca_file.clone(),
            credentials: self.credentials(registry).await?,
            allow_insecure_auth: args.allow_insecure_auth,
            concurrency: usize::from(args.concurrency),
            timeout: args.timeout,
            retry: RetryPolicy {
                max_attempts: args.attempts,
                base_delay: args.retry_delay,
                total: args.request_timeout,
                ..RetryPolicy::default()
            },
            ..ClientOptions::default()
        })
    }
}

/// The async runtime for network commands; its threads log where the command does.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    crate::logging::inherit(tokio::runtime::Builder::new_multi_thread().enable_all())
        .build()
        .context("cannot start the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_timeout("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_timeout("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["0", "0s", "-1", "soon", "", "NaN"] {
            let err = parse_timeout(bad).unwrap_err();
            assert!(err.contains("not a duration"), "{bad}: {err}");
        }
    }
}
