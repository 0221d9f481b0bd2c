//! `attune audit list`: the audit log (admin). Names and ids, never a value.

use crate::cli::{AuditArgs, AuditCommand};
use crate::client::{query_value, Client};
use crate::error::CliError;
use crate::output::{print_structured, OutputFormat};
use crate::table::{show, Table};
use serde_json::Value;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// Runs `attune audit …`.
pub fn run(args: AuditArgs, data_dir: &Path) -> Result<ExitCode, CliError> {
    let out = args.output;
    match args.command {
        AuditCommand::List {
            since,
            kind,
            limit,
            before,
        } => {
            let mut query = Vec::new();
            if let Some(s) = since {
                query.push(format!("since={}", query_value(&since_time(&s)?)));
            }
            if let Some(k) = kind {
                query.push(format!("kind={}", query_value(&k)));
            }
            if let Some(id) = before {
                query.push(format!("before={id}"));
            }
            if let Some(n) = limit {
                query.push(format!("limit={n}"));
            }
            let path = if query.is_empty() {
                "/api/v1/audit".to_string()
            } else {
                format!("/api/v1/audit?{}", query.join("&"))
            };
            let client = Client::discover(data_dir)?;
            let list: Value = client.get(&path)?;
            if out != OutputFormat::Table {
                print_structured(&list, out)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = Table::new(&["ID", "AT", "ACTOR", "KIND", "SUBJECT", "DETAIL"]);
            for e in list.as_array().into_iter().flatten() {
                t.row(&[
                    show(e.get("id")),
                    show(e.get("at")),
                    show(e.get("actor")),
                    show(e.get("kind")),
                    show(e.get("subject")),
                    e.get("detail").map(Value::to_string).unwrap_or_default(),
                ]);
            }
            t.print();
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--since`: an age (`30s`, `30m`, `12h`, `7d`) becomes the time that long ago; anything
/// else goes to the server as a time, which checks it.
fn since_time(s: &str) -> Result<String, CliError> {
    let unit = |c: char| match c {
        's' => Some(1),
        'm' => Some(60),
        'h' => Some(3600),
        'd' => Some(86_400),
        _ => None,
    };
    let age = s
        .char_indices()
        .last()
        .and_then(|(i, c)| Some((s[..i].parse::<u64>().ok()?, unit(c)?)));
    Ok(match age {
        Some((n, secs)) => {
            let back = Duration::from_secs(n.saturating_mul(secs));
            let at = SystemTime::now()
                .checked_sub(back)
                .ok_or_else(|| CliError::usage(format!("--since {s}: too long ago")))?;
            attune_core::execution::rfc3339(at)
        }
        None => s.to_string(),
    })
}
