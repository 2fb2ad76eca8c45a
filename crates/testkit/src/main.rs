//! `regsweep-testkit`: run a test registry, or push demo / bulk content into one. Used by the
//! benchmarks and the README demo. See `usage()`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use regsweep_testkit::{FillSpec, Pusher, RegistryOptions, TestRegistry};

fn usage() -> &'static str {
    "usage:
  regsweep-testkit serve [--tls] [--htpasswd USER:PASS]... [--root DIR] [--read-only]
                         [--no-delete] [--log-level LEVEL]
      Start distribution's registry on a free 127.0.0.1 port; print
      `READY <url> ROOT=<dir> CONFIG=<path>` on stdout; stop it on SIGTERM/SIGINT, or on EOF
      when stdin is a pipe. LEVEL defaults to warn (info logs every request and costs ~20% of
      the registry's CPU). Files go under $TMPDIR (TMPDIR=/dev/shm avoids slow disks).
  regsweep-testkit sample URL [--user USER:PASS] [--ca FILE]
      Push the small demo content (a few repos, versions, multi-arch, signature, referrer).
  regsweep-testkit fill URL --repos N --tags M [--multiarch-every K] [--alias-every K] [--latest]
                        [--prefix P] [--concurrency C] [--layers N] [--layer-size BYTES]
                        [--seed S]
                        [--user USER:PASS] [--ca FILE]
      Push N repos x M tags as fast as possible; print counts and elapsed time."
}

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(run());
    // A pending blocking stdin read (serve's EOF watch) cannot be cancelled; don't wait for it.
    runtime.shutdown_background();
    code
}

async fn run() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]).await,
        Some("sample") => sample(&args[1..]).await,
        Some("fill") => fill(&args[1..]).await,
        Some("-h" | "--help" | "help") => {
            println!("{}", usage());
            Ok(())
        }
        _ => Err(anyhow!("{}", usage())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regsweep-testkit: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Tiny flag parser: `--flag value`, `--flag=value`, boolean `--flag`, positionals.
struct Args {
    positional: Vec<String>,
    flags: Vec<(String, Option<String>)>,
}

impl Args {
    fn parse(raw: &[String], boolean: &[&str]) -> Result<Self> {
        let mut a = Args {
            positional: Vec::new(),
            flags: Vec::new(),
        };
        let mut it = raw.iter();
        while let Some(arg) = it.next() {
            if let Some(name) = arg.strip_prefix("--") {
                if let Some((n, v)) = name.split_once('=') {
                    a.flags.push((n.into(), Some(v.into())));
                } else if boolean.contains(&name) {
                    a.flags.push((name.into(), None));
                } else {
                    let v = it.next().ok_or_else(|| anyhow!("--{name} needs a value"))?;
                    a.flags.push((name.into(), Some(v.clone())));
                }
            } else {
                a.positional.push(arg.clone());
            }
        }
        Ok(a)
    }

    fn check_known(&self, known: &[&str]) -> Result<()> {
        for (f, _) in &self.flags {
            if !known.contains(&f.as_str()) {
                bail!("unknown flag --{f}\n{}", usage());
            }
        }
        Ok(())
    }

    fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(f, _)| f == name)
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.flags
            .iter()
            .filter(|(f, _)| f == name)
            .filter_map(|(_, v)| v.clone())
            .collect()
    }

    fn value(&self, name: &str) -> Option<String> {
        self.all(name).pop()
    }

    fn number(&self, name: &str) -> Result<Option<usize>> {
        self.value(name)
            .map(|v| v.parse().with_context(|| format!("--{name}: not a number: {v}")))
            .transpose()
    }

    fn url(&self) -> Result<String> {
        match self.positional.as_slice() {
            [url] => Ok(url.clone()),
            _ => bail!("expected exactly one registry URL\n{}", usage()),
        }
    }
}

fn split_creds(s: &str) -> Result<(String, String)> {
    s.split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .ok_or_else(|| anyhow!("credentials must be USER:PASS"))
}

async fn serve(raw: &[String]) -> Result<()> {
    let a = Args::parse(raw, &["tls", "read-only", "no-delete"])?;
    a.check_known(&["tls", "htpasswd", "root", "read-only", "no-delete", "log-level"])?;
    let mut opts = RegistryOptions {
        log_level: "warn".into(),
        tls: a.has("tls"),
        read_only: a.has("read-only"),
        delete_enabled: !a.has("no-delete"),
        storage_root: a.value("root").map(PathBuf::from),
        ..Default::default()
    };
    if let Some(level) = a.value("log-level") {
        opts.log_level = level;
    }
    for c in a.all("htpasswd") {
        let (u, p) = split_creds(&c)?;
        opts = opts.with_htpasswd(&u, &p);
    }
    // Handlers first, so a signal during startup still stops the registry cleanly.
    let shutdown = Shutdown::install()?;
    let mut reg = TestRegistry::start(opts).await?;
    println!(
        "READY {} ROOT={} CONFIG={}",
        reg.base_url(),
        reg.storage_root().display(),
        reg.config_path().display()
    );
    eprintln!(
        "registry pid {} log {}{}",
        reg.pid().unwrap_or(0),
        reg.log_path().display(),
        reg.ca_cert_path()
            .map(|p| format!(" CA {}", p.display()))
            .unwrap_or_default()
    );
    use std::io::Write as _;
    std::io::stdout().flush().ok();

    shutdown.wait().await;
    reg.stop().await?;
    eprintln!("registry stopped");
    Ok(())
}

/// SIGTERM, SIGINT, or EOF on stdin — the latter only when stdin is a pipe or socket: a script's
/// `serve &` gets /dev/null as stdin and must keep running.
struct Shutdown {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Shutdown {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) {
        let eof = async {
            if stdin_is_pipe() {
                use tokio::io::AsyncReadExt as _;
                let mut stdin = tokio::io::stdin();
                let mut buf = [0u8; 256];
                while !matches!(stdin.read(&mut buf).await, Ok(0) | Err(_)) {}
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
            () = eof => {}
        }
    }
}

fn stdin_is_pipe() -> bool {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::FileTypeExt as _;
    let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .map(|m| m.file_type().is_fifo() || m.file_type().is_socket())
        .unwrap_or(false)
}

fn pusher(a: &Args) -> Result<Pusher> {
    let creds = a.value("user").map(|c| split_creds(&c)).transpose()?;
    let ca = a
        .value("ca")
        .map(|p| std::fs::read(&p).with_context(|| format!("reading {p}")))
        .transpose()?;
    Pusher::connect(
        &a.url()?,
        creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
        ca.as_deref(),
    )
}

async fn sample(raw: &[String]) -> Result<()> {
    let a = Args::parse(raw, &[])?;
    a.check_known(&["user", "ca"])?;
    let p = pusher(&a)?;
    let started = Instant::now();
    let report = regsweep_testkit::sample(&p).await?;
    println!("{report}");
    println!("pushed in {:.2}s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn fill(raw: &[String]) -> Result<()> {
    let a = Args::parse(raw, &["latest"])?;
    a.check_known(&[
        "repos",
        "tags",
        "multiarch-every",
        "alias-every",
        "latest",
        "prefix",
        "concurrency",
        "layers",
        "layer-size",
        "seed",
        "user",
        "ca",
    ])?;
    let d = FillSpec::default();
    let spec = FillSpec {
        repos: a.number("repos")?.ok_or_else(|| anyhow!("--repos is required"))?,
        tags_per_repo: a.number("tags")?.ok_or_else(|| anyhow!("--tags is required"))?,
        multiarch_every: a.number("multiarch-every")?.unwrap_or(0),
        alias_every: a.number("alias-every")?.unwrap_or(0),
        latest: a.has("latest"),
        prefix: a.value("prefix").unwrap_or(d.prefix),
        concurrency: a.number("concurrency")?.unwrap_or(d.concurrency),
        layers_per_image: a.number("layers")?.unwrap_or(d.layers_per_image),
        layer_size: a.number("layer-size")?.unwrap_or(d.layer_size),
        seed: a.number("seed")?.unwrap_or(0) as u64,
    };
    let p = pusher(&a)?;
    let report = regsweep_testkit::fill(&p, &spec).await?;
    println!("{report}");
    Ok(())
}
