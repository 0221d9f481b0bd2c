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

/// `c` and its subcommands, with [`cli::CLIENT_HELP`] as their after-help (where they
/// have none of their own).
fn with_client_help(c: clap::Command) -> clap::Command {
    let c = match c.get_after_help() {
        Some(_) => c,
        None => c.after_help(cli::CLIENT_HELP),
    };
    let names: Vec<String> = c
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    names
        .iter()
        .fold(c, |c, n| c.mut_subcommand(n, with_client_help))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let wants_help = args
        .iter()
        .any(|a| a == "--help" || a == "-h" || a == "help");
    let mut command = cli::Cli::command();
    if wants_help {
        // `server --help` says how actions would be confined on this machine, as it stands.
        if args.iter().any(|a| a == "server") {
            let mode = attune_runner::sandbox::probe().join("\n");
            command = command.mut_subcommand("server", |c| {
                c.after_help(format!("Confinement of actions on this machine:\n{mode}"))
            });
        }
        // Every client command's help says where it finds its server.
        for name in cli::CLIENT_COMMANDS {
            command = command.mut_subcommand(name, with_client_help);
        }
        command = command.mut_subcommand("worker", |w| w.mut_subcommand("list", with_client_help));
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
