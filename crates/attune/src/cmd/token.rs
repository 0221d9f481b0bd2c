//! `attune token create|list|revoke`: API tokens (admin only). A token is shown once, when
//! it is created; only its hash is stored.

use crate::cli::{TokenArgs, TokenCommand};
use crate::client::segment;
use crate::client::Client;
use crate::error::CliError;
use crate::output::{print_structured, OutputFormat};
use crate::table::{print_line, show, Table};
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
        TokenCommand::List => {
            let client = Client::discover(data_dir)?;
            let list: Value = client.get("/api/v1/tokens")?;
            if out != OutputFormat::Table {
                print_structured(&list, out)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = Table::new(&["ID", "NAME", "ROLE", "CREATED", "LAST USED", "REVOKED"]);
            for tok in list.as_array().into_iter().flatten() {
                t.row(&[
                    show(tok.get("id")),
                    show(tok.get("name")),
                    show(tok.get("role")),
                    show(tok.get("created_at")),
                    show(tok.get("last_used_at")),
                    show(tok.get("revoked_at")),
                ]);
            }
            t.print();
        }
        TokenCommand::Revoke { token } => {
            let client = Client::discover(data_dir)?;
            let revoked: Value =
                client.delete_json(&format!("/api/v1/tokens/{}", segment(&token)))?;
            if out != OutputFormat::Table {
                print_structured(&revoked, out)?;
                return Ok(ExitCode::SUCCESS);
            }
            for tok in revoked.as_array().into_iter().flatten() {
                print_line(&format!(
                    "revoked {} token `{}` (id {})",
                    show(tok.get("role")),
                    show(tok.get("name")),
                    show(tok.get("id"))
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
