//! The `regsweep` command: the library's command line, run in the process's own context.

fn main() -> std::process::ExitCode {
    regsweep::cli::run(std::env::args_os(), &mut regsweep::cli::Context::from_process()).into()
}
