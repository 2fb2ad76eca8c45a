//! The `regsweep` command. All behaviour lives in the library; `cli` only parses arguments,
//! calls the core and prints.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
