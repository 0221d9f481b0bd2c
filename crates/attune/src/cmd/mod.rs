//! One module per command.

pub mod action;
pub mod audit;
pub mod bench;
pub mod execution;
pub mod pack;
pub mod params;
pub mod run;
pub mod run_remote;
pub mod secret;
pub mod server;
pub mod token;
pub mod worker;

use crate::cli::{Cli, Command};
use crate::error::CliError;
use std::path::PathBuf;
use std::process::ExitCode;

/// Runs the command.
pub fn dispatch(cli: Cli) -> Result<ExitCode, CliError> {
    let data_dir = data_dir(cli.data_dir)?;
    match cli.command {
        Command::Run(args) => run::run(args, &data_dir),
        Command::Server(args) => server::server(args, data_dir),
        Command::Execution(args) => execution::run(args, &data_dir),
        Command::Action(args) => action::run(args, &data_dir),
        Command::Pack(args) => pack::run(args, &data_dir),
        Command::Token(args) => token::run(args, &data_dir),
        Command::Secret(args) => secret::run(args, &data_dir),
        Command::Audit(args) => audit::run(args, &data_dir),
        Command::Worker(args) => worker::run(args, data_dir),
        Command::Bench(args) => bench::run(args),
    }
}

/// The data directory: the flag, else $XDG_DATA_HOME/attune, else ~/.local/share/attune.
fn data_dir(flag: Option<PathBuf>) -> Result<PathBuf, CliError> {
    if let Some(d) = flag {
        return Ok(d);
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("attune"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/attune")),
        None => Err(CliError::usage(
            "no data directory: set --data-dir, ATTUNE_DATA_DIR or HOME",
        )),
    }
}

/// A current-thread tokio runtime for a command.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the async runtime: {e}")))
}
