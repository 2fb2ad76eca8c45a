//! What one run of the command line may read and where it writes: the environment, the clock,
//! standard input, output and error, and whether they are terminals. `main` passes the
//! process's own ([`Context::from_process`]); tests pass one that captures what was written
//! ([`Context::captured`]) and read it back.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use serde::Serialize;

use super::OutputArgs;
use crate::environment::Environment;

/// How a run ended, and the process exit code it stands for (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitStatus {
    /// 0: done.
    Success,
    /// 1: the command failed (network, registry, storage, a refused operation, per-item
    /// failures).
    Failure,
    /// 2: bad usage: unknown flag, invalid reference, option value or policy.
    Usage,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Usage => 2,
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status.code())
    }
}

/// The environment of one run.
pub struct Context {
    env: Environment,
    now: Option<SystemTime>,
    stdin: Box<dyn BufRead + Send>,
    stdin_is_terminal: bool,
    stdout: Stream,
    stdout_is_terminal: bool,
    stderr: Stream,
    stderr_is_terminal: bool,
    /// Whether log lines from every thread go to `stderr` (a process has one log sink; a test
    /// running several contexts at once keeps each run's log lines to its own threads).
    process_wide_logs: bool,
}

impl Context {
    /// The process's environment, wall clock and standard streams.
    pub fn from_process() -> Self {
        Self {
            env: Environment::from_process(),
            now: None,
            stdin: Box::new(std::io::BufReader::new(std::io::stdin())),
            stdin_is_terminal: std::io::stdin().is_terminal(),
            stdout: Stream::new(Sink::Stdout),
            stdout_is_terminal: std::io::stdout().is_terminal(),
            stderr: Stream::new(Sink::Stderr),
            stderr_is_terminal: std::io::stderr().is_terminal(),
            process_wide_logs: true,
        }
    }

    /// `env` only, the wall clock, empty standard input, and output and errors kept in memory
    /// ([`Context::stdout`], [`Context::stderr`]); nothing is a terminal.
    pub fn captured(env: Environment) -> Self {
        Self {
            env,
            now: None,
            stdin: Box::new(std::io::empty()),
            stdin_is_terminal: false,
            stdout: Stream::new(Sink::Memory(Vec::new())),
            stdout_is_terminal: false,
            stderr: Stream::new(Sink::Memory(Vec::new())),
            stderr_is_terminal: false,
            process_wide_logs: false,
        }
    }

    /// Standard input holding `input`.
    pub fn with_stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Box::new(std::io::Cursor::new(input.into()));
        self
    }

    /// A clock stopped at `now`: what "older than", grace periods and report dates count from.
    pub fn with_clock(mut self, now: SystemTime) -> Self {
        self.now = Some(now);
        self
    }

    /// What was written on standard output, when it is captured.
    pub fn stdout(&self) -> String {
        self.stdout.captured()
    }

    /// What was written on standard error, when it is captured.
    pub fn stderr(&self) -> String {
        self.stderr.captured()
    }

    pub fn env(&self) -> &Environment {
        &self.env
    }

    /// The time now, by this context's clock.
    pub fn now(&self) -> SystemTime {
        self.now.unwrap_or_else(SystemTime::now)
    }

    pub(crate) fn stdout_is_terminal(&self) -> bool {
        self.stdout_is_terminal
    }

    pub(crate) fn stderr_stream(&self) -> Stream {
        self.stderr.clone()
    }

    pub(crate) fn stderr_is_terminal(&self) -> bool {
        self.stderr_is_terminal
    }

    pub(crate) fn process_wide_logs(&self) -> bool {
        self.process_wide_logs
    }

    pub(crate) fn out(&mut self) -> &mut Stream {
        &mut self.stdout
    }

    pub(crate) fn err(&mut self) -> &mut Stream {
        &mut self.stderr
    }
}

/// One of the context's output streams; clones write to the same place (the log subscriber
/// holds one for standard error).
#[derive(Clone)]
pub struct Stream(Arc<Mutex<Sink>>);

enum Sink {
    Stdout,
    Stderr,
    Memory(Vec<u8>),
}

impl Stream {
    fn new(sink: Sink) -> Self {
        Self(Arc::new(Mutex::new(sink)))
    }

    fn sink(&self) -> MutexGuard<'_, Sink> {
        // A panic while writing leaves bytes, not a broken invariant: keep going.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn captured(&self) -> String {
        match &*self.sink() {
            Sink::Memory(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Sink::Stdout | Sink::Stderr => String::new(),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut *self.sink() {
            Sink::Stdout => std::io::stdout().write(buf),
            Sink::Stderr => std::io::stderr().write(buf),
            Sink::Memory(bytes) => bytes.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        // One lock for the whole buffer, so that lines from several threads do not interleave.
        match &mut *self.sink() {
            Sink::Stdout => std::io::stdout().lock().write_all(buf),
            Sink::Stderr => std::io::stderr().lock().write_all(buf),
            Sink::Memory(bytes) => bytes.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut *self.sink() {
            Sink::Stdout => std::io::stdout().flush(),
            Sink::Stderr => std::io::stderr().flush(),
            Sink::Memory(_) => Ok(()),
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stream {
    type Writer = Stream;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A command's view of its run: the context and the shared output options.
pub struct Ui<'a> {
    ctx: &'a mut Context,
    options: &'a OutputArgs,
}

impl<'a> Ui<'a> {
    pub(crate) fn new(ctx: &'a mut Context, options: &'a OutputArgs) -> Self {
        Self { ctx, options }
    }

    /// `--json`: one JSON document on stdout.
    pub fn json(&self) -> bool {
        self.options.json
    }

    /// `--quiet`: only errors on stderr.
    pub fn quiet(&self) -> bool {
        self.options.quiet
    }

    /// Whether a progress bar may be drawn: stderr is a terminal and nobody asked for quiet.
    pub fn shows_progress(&self) -> bool {
        !self.options.quiet && !self.options.no_progress && self.ctx.stderr_is_terminal
    }

    pub fn out(&mut self) -> &mut Stream {
        self.ctx.out()
    }

    pub fn err(&mut self) -> &mut Stream {
        self.ctx.err()
    }

    pub fn env(&self) -> &Environment {
        self.ctx.env()
    }

    pub fn now(&self) -> SystemTime {
        self.ctx.now()
    }

    /// The time now as a timestamp (policies and reports count in these).
    pub fn timestamp(&self) -> jiff::Timestamp {
        jiff::Timestamp::try_from(self.ctx.now()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    /// Prints `value` as pretty JSON on stdout.
    pub fn print_json<T: Serialize>(&mut self, value: &T) -> anyhow::Result<()> {
        // Buffered: documents can hold hundreds of thousands of lines.
        let mut out = std::io::BufWriter::new(self.out());
        serde_json::to_writer_pretty(&mut out, value)?;
        writeln!(out)?;
        out.flush()?;
        Ok(())
    }

    /// One line of standard input, without its line break (`None` at the end of input).
    pub fn read_line(&mut self) -> std::io::Result<Option<String>> {
        let mut line = String::new();
        if self.ctx.stdin.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
    }

    /// Whether a person can answer a question: standard input and error are terminals.
    pub fn can_ask(&self) -> bool {
        self.ctx.stdin_is_terminal && self.ctx.stderr_is_terminal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_documented_ones_and_the_worst_wins() {
        let codes: Vec<u8> = [ExitStatus::Success, ExitStatus::Failure, ExitStatus::Usage]
            .into_iter()
            .map(ExitStatus::code)
            .collect();
        assert_eq!(codes, [0, 1, 2]);
        assert_eq!(ExitStatus::Failure.max(ExitStatus::Usage), ExitStatus::Usage);
        assert_eq!(ExitStatus::Success.max(ExitStatus::Failure), ExitStatus::Failure);
    }

    #[test]
    fn a_captured_run_keeps_its_output_apart() {
        let mut ctx = Context::captured(Environment::empty());
        assert_eq!(
            super::super::run(["regsweep", "--version"], &mut ctx),
            ExitStatus::Success
        );
        assert!(ctx.stdout().starts_with("regsweep "), "{}", ctx.stdout());
        assert_eq!(ctx.stderr(), "");

        let mut ctx = Context::captured(Environment::empty());
        let status = super::super::run(["regsweep", "inspect", "not a reference"], &mut ctx);
        assert_eq!(status, ExitStatus::Usage);
        assert_eq!(ctx.stdout(), "");
        assert!(ctx.stderr().starts_with("error: "), "{}", ctx.stderr());
    }

    #[test]
    fn standard_input_and_the_clock_are_the_contexts() {
        let later = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400);
        let mut ctx = Context::captured(Environment::empty())
            .with_stdin("secret\nrest\n")
            .with_clock(later);
        assert_eq!(ctx.now(), later);
        let options = OutputArgs {
            json: false,
            verbose: 0,
            quiet: false,
            no_progress: false,
        };
        let mut ui = Ui::new(&mut ctx, &options);
        assert_eq!(ui.read_line().unwrap().as_deref(), Some("secret"));
        assert_eq!(ui.read_line().unwrap().as_deref(), Some("rest"));
        assert_eq!(ui.read_line().unwrap(), None);
        assert!(!ui.can_ask(), "captured input is not a terminal");
        assert_eq!(ui.timestamp().as_second(), 86_400);
    }
}
