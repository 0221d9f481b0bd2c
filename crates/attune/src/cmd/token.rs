//! `attune token create`: API tokens (admin only). The token is shown once.

use crate::cli::{TokenArgs, TokenCommand};
use crate::client::Client;
use crate::error::CliError;
use crate::output::{print_structured, OutputFormat};
use crate::table::{print_line, show};
use serde_json::{Map, Value};
use std::path::Path;
use std::process::ExitCode;

/// Runs `attune token …`.
pub fn run(args: TokenArgs, data_dir: &Path) -> Result<ExitCode, CliError> {
    let out = args.output;
    match args.command {
        TokenCommand::Create { role, name } => {
            let mut body = Map::new();
            body.insert("role".into(), Value::from(role.as_str()));
            if let Some(n) = name {
                if n.trim().is_empty() || n.chars().count() > 100 {
                    return Err(CliError::usage("--name must be 1 to 100 characters"));
                }
                body.insert("name".into(), Value::from(n));
            }
            let client = Client::discover(data_dir)?;
            let created: Value = client.post("/api/v1/tokens", &body)?;
            if out != OutputFormat::Table {
                print_structured(&created, out)?;
                return Ok(ExitCode::SUCCESS);
            }
            let Some(token) = created.get("token").and_then(Value::as_str) else {
                return Err(CliError::failure(
                    "the server created the token but did not send it",
                ));
            };
            // The token alone on stdout, so that `TOKEN=$(attune token create …)` works;
            // what it is on stderr.
            eprintln!(
                "attune: created {} token `{}` (id {}); it is shown only this once",
                show(created.get("role")),
                show(created.get("name")),
                show(created.get("id")),
            );
            print_line(token);
        }
    }
    Ok(ExitCode::SUCCESS)
}
