//! `attune`: one binary for the CLI, the server and workers.

mod bundled;
mod cli;
mod client;
mod cmd;
mod error;
mod output;
mod table;

use clap::{CommandFactory, FromArgMatches};
use std::process::ExitCode;

fn main() -> ExitCode {
    // `server --help` says how actions would be confined on this machine, as it stands.
    let wants_server_help = {
        let args: Vec<String> = std::env::args().collect();
        args.iter().any(|a| a == "server") && args.iter().any(|a| a == "--help" || a == "-h")
    };
    let mut command = cli::Cli::command();
    if wants_server_help {
        let mode = attune_runner::sandbox::probe().join("\n");
        command = command.mut_subcommand("server", |c| {
            c.after_help(format!("Confinement of actions on this machine:\n{mode}"))
        });
    }
    let cli = match cli::Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cmd::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            e.print();
            e.exit_code()
        }
    }
}
