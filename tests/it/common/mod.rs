//! Helpers shared by the integration tests: run the `regsweep` binary and read its output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What one run of the binary produced.
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
        assert_eq!(self.code, 0, "expected success: {self:#?}");
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

/// One run of the `regsweep` binary, built up and then [`run`](Cli::run): the one way the tests
/// run the CLI. By default `HOME` is an empty directory, nothing in [`CLEARED`] is inherited and
/// standard input is empty.
#[must_use]
pub struct Cli {
    args: Vec<String>,
    env: Vec<(String, String)>,
    home: Option<PathBuf>,
    dir: Option<PathBuf>,
    stdin: Option<String>,
}

impl Cli {
    pub fn new(args: &[&str]) -> Self {
        Cli {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: Vec::new(),
            home: None,
            dir: None,
            stdin: None,
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

    /// The working directory, for relative paths in the arguments.
    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_owned());
        self
    }

    pub fn stdin(mut self, input: &str) -> Self {
        self.stdin = Some(input.to_owned());
        self
    }

    pub fn run(self) -> Run {
        let home = self.home.unwrap_or_else(|| {
            let empty = std::env::temp_dir().join("regsweep-tests-empty-home");
            std::fs::create_dir_all(&empty).expect("the empty home directory can be created");
            empty
        });
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
