//! Helpers shared by the integration tests: run the `regsweep` binary and read its output.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
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

/// Runs `regsweep` with `args`, optional environment variables and optional standard input, in
/// a clean credential environment: an empty `HOME`, and nothing inherited that points at
/// credentials, so a developer's own registry logins never leak into (or change) the tests.
pub fn regsweep_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let home = std::env::temp_dir().join("regsweep-tests-empty-home");
    std::fs::create_dir_all(&home).expect("the empty home directory can be created");
    regsweep_in_home(args, &home, env, stdin)
}

/// Like [`regsweep_with`] with `HOME` set to `home` (which may hold docker or podman config).
pub fn regsweep_in_home(args: &[&str], home: &Path, env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    command.args(args).env("HOME", home);
    for var in [
        "REGSWEEP_USERNAME",
        "REGSWEEP_PASSWORD",
        "REGSWEEP_LOG",
        "DOCKER_CONFIG",
        "REGISTRY_AUTH_FILE",
        "XDG_RUNTIME_DIR",
        "XDG_CONFIG_HOME",
    ] {
        command.env_remove(var);
    }
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("the regsweep binary runs");
    if let Some(input) = stdin {
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

pub fn regsweep(args: &[&str]) -> Run {
    regsweep_with(args, &[], None)
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
