//! `attune pack register|list|remove`: packs on the server.

use crate::cli::{PackArgs, PackCommand};
use crate::client::{segment, Client};
use crate::error::CliError;
use crate::output::{print_structured, OutputFormat};
use crate::table::{print_line, show, Table};
use attune_core::bundle::Bundle;
use serde_json::{json, Value};
use std::path::Path;
use std::process::ExitCode;

/// Runs `attune pack …`.
pub fn run(args: PackArgs, data_dir: &Path) -> Result<ExitCode, CliError> {
    let out = args.output;
    match args.command {
        PackCommand::Register { dir } => {
            if !dir.join("pack.yaml").is_file() {
                return Err(CliError::usage(format!(
                    "{} is not a pack directory (no pack.yaml in it)",
                    dir.display()
                )));
            }
            let bundle = Bundle::from_dir(&dir)
                .map_err(|e| CliError::usage(format!("{}: {e}", dir.display())))?;
            let client = Client::discover(data_dir)?;
            let pack: Value = client.post_bytes("/api/v1/packs", &bundle.to_bytes())?;
            if out != OutputFormat::Table {
                print_structured(&pack, out)?;
            } else {
                let actions = refs(&pack);
                print_line(&format!(
                    "registered pack {} {} ({} action{}{}{}), digest {}",
                    show(pack.get("ref")),
                    show(pack.get("version")),
                    actions.len(),
                    if actions.len() == 1 { "" } else { "s" },
                    if actions.is_empty() { "" } else { ": " },
                    actions.join(", "),
                    show(pack.get("digest")),
                ));
            }
        }
        PackCommand::List => {
            let client = Client::discover(data_dir)?;
            let list: Value = client.get("/api/v1/packs")?;
            if out != OutputFormat::Table {
                print_structured(&list, out)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = Table::new(&[
                "REF",
                "VERSION",
                "ACTIONS",
                "DIGEST",
                "REGISTERED",
                "DESCRIPTION",
            ]);
            for p in list.as_array().into_iter().flatten() {
                let digest = show(p.get("digest"));
                let short: String = digest
                    .strip_prefix("sha256:")
                    .unwrap_or(&digest)
                    .chars()
                    .take(12)
                    .collect();
                t.row(&[
                    show(p.get("ref")),
                    show(p.get("version")),
                    refs(p).len().to_string(),
                    short,
                    show(p.get("registered_at")),
                    p.get("description")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                ]);
            }
            t.print();
        }
        PackCommand::Remove { pack } => {
            if !attune_core::is_valid_name(&pack) {
                return Err(CliError::usage(format!(
                    "`{pack}` is not a pack ref: pack names are [a-z0-9_]+"
                )));
            }
            let client = Client::discover(data_dir)?;
            client.delete(&format!("/api/v1/packs/{}", segment(&pack)))?;
            if out != OutputFormat::Table {
                print_structured(&json!({"ref": pack, "removed": true}), out)?;
            } else {
                print_line(&format!("removed pack {pack}"));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The action refs of a pack record.
fn refs(pack: &Value) -> Vec<String> {
    pack.get("actions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| show(Some(a)))
        .collect()
}
