//! `attune`: one binary for the CLI, the server and workers.

mod bundled;
mod cli;
mod client;
mod cmd;
mod error;
mod output;
mod table;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cmd::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            e.print();
            e.exit_code()
        }
    }
}
