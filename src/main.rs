//! The `ward` binary: parse arguments, build a validated config, call one
//! function, map the result to an exit code.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run(cli::parse()).into()
}
