//! Helpers shared by the integration tests: run the command line (in this process through
//! `regsweep::cli::run`, or as the `regsweep` binary where a process is needed) and read what it
//! printed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use regsweep::cli::Context;
use regsweep::environment::Environment;

pub mod fixtures;
mod scenario;
pub use scenario::Scenario;

/// What one run produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Parses stdout as JSON, with the whole run in the panic message when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        self.assert_code(0)
    }

    /// Asserts the exit code, with the whole run in the message when it differs.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code: {self:#?}");
        self
    }

    /// Asserts that stdout is these lines, in this order.
    #[track_caller]
    pub fn assert_stdout_lines(&self, lines: &[&str]) -> &Self {
        assert_eq!(
            self.stdout.lines().collect::<Vec<_>>(),
            lines,
            "stdout: {self:#?}"
        );
        self
    }
}

/// Variables that point at credentials, logging or a registry's storage: none is inherited, so a
/// developer's own registry logins or registry configuration never leak into (or change) a test.
const CLEARED: [&str; 9] = [
    "REGSWEEP_USERNAME",
    "REGSWEEP_PASSWORD",
    "REGSWEEP_LOG",
    "DOCKER_CONFIG",
    "REGISTRY_AUTH_FILE",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    // distribution's overrides of its config file, which gc reads.
    "REGISTRY_STORAGE",
    "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
];

/// One run of the command line, built up and then [`run`](Cli::run): the one way the tests run
/// it. By default it runs in this process (`regsweep::cli::run` with a captured context), `HOME`
/// is an empty directory, nothing in [`CLEARED`] is inherited, standard input is empty and the
/// clock is the wall clock. A working directory or [`Cli::binary`] runs the built binary instead.
#[must_use]
pub struct Cli {
    args: Vec<String>,
    env: Vec<(String, String)>,
    home: Option<PathBuf>,
    dir: Option<PathBuf>,
    stdin: Option<String>,
    now: Option<SystemTime>,
    binary: bool,
}

impl Cli {
    pub fn new(args: &[&str]) -> Self {
        Cli {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: Vec::new(),
            home: None,
            dir: None,
            stdin: None,
            now: None,
            binary: false,
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn envs(self, vars: &[(&str, &str)]) -> Self {
        vars.iter().fold(self, |cli, (k, v)| cli.env(k, v))
    }

    /// `HOME` for the run (which may hold docker or podman config).
    pub fn home(mut self, home: &Path) -> Self {
        self.home = Some(home.to_owned());
        self
    }

    /// The working directory, for relative paths in the arguments (runs the binary: a test
    /// cannot change this process's directory under the others).
    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_owned());
        self
    }

    pub fn stdin(mut self, input: &str) -> Self {
        self.stdin = Some(input.to_owned());
        self
    }

    /// The run's clock stopped at `now` (in this process only).
    pub fn now(mut self, now: SystemTime) -> Self {
        self.now = Some(now);
        self
    }

    /// Runs the built `regsweep` binary in a child process: for what only a process shows
    /// (log lines of every thread, signals, the real standard streams).
    pub fn binary(mut self) -> Self {
        self.binary = true;
        self
    }

    pub fn run(self) -> Run {
        let home = self.home.clone().unwrap_or_else(|| {
            let empty = std::env::temp_dir().join("regsweep-tests-empty-home");
            std::fs::create_dir_all(&empty).expect("the empty home directory can be created");
            empty
        });
        if self.binary || self.dir.is_some() {
            assert!(self.now.is_none(), "a stopped clock needs an in-process run");
            self.run_binary(&home)
        } else {
            self.run_in_process(&home)
        }
    }

    fn run_in_process(self, home: &Path) -> Run {
        let mut env = Environment::from_process();
        for var in CLEARED {
            env.remove(var);
        }
        env.set("HOME", home);
        for (name, value) in self.env {
            env.set(name, value);
        }
        let mut ctx = Context::captured(env);
        if let Some(input) = self.stdin {
            ctx = ctx.with_stdin(input);
        }
        if let Some(now) = self.now {
            ctx = ctx.with_clock(now);
        }
        let args = std::iter::once("regsweep".to_owned()).chain(self.args);
        // On a thread of its own: the command line starts its own async runtime, which cannot
        // block inside a test's runtime.
        let status = std::thread::scope(|scope| {
            scope
                .spawn(|| regsweep::cli::run(args, &mut ctx))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        Run {
            code: i32::from(status.code()),
            stdout: ctx.stdout(),
            stderr: ctx.stderr(),
        }
    }

    fn run_binary(self, home: &Path) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_regsweep"));
        command.args(&self.args).env("HOME", home);
        for var in CLEARED {
            command.env_remove(var);
        }
        command.envs(self.env);
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the regsweep binary runs");
        if let Some(input) = self.stdin {
            child
                .stdin
                .take()
                .expect("stdin is piped")
                .write_all(input.as_bytes())
                .expect("stdin accepts the input");
        }
        let output = child.wait_with_output().expect("regsweep finishes");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// `regsweep ARGS` in the clean environment of [`Cli`].
pub fn regsweep(args: &[&str]) -> Run {
    Cli::new(args).run()
}

/// `regsweep ARGS` with extra environment variables and optional standard input.
pub fn regsweep_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let cli = Cli::new(args).envs(env);
    match stdin {
        Some(input) => cli.stdin(input),
        None => cli,
    }
    .run()
}

/// String values of a JSON array.
pub fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {value}"))
        .iter()
        .map(|v| v.as_str().expect("array of strings").to_owned())
        .collect()
}

/// The environment `regsweep … s3://…` reads its endpoint and credentials from, for an S3 server
/// (moto, or a proxy in front of it) at `endpoint`; moto accepts any key. The secret is
/// [`S3_TEST_SECRET`], so that tests can check it is never printed.
pub fn s3_env(endpoint: String) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "regsweep-test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", S3_TEST_SECRET.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
    ]
}

pub const S3_TEST_SECRET: &str = "regsweep-test-secret";
