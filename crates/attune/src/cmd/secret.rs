//! `attune secret set|list|delete|get`: the secret store. A value is read from stdin or a
//! hidden prompt, never from the command line, and never printed but on `get --reveal`.

use crate::cli::{ScopeArgs, SecretArgs, SecretCommand};
use crate::client::{query_value, segment, Client};
use crate::error::CliError;
use crate::output::{print_structured, OutputFormat};
use crate::table::{print_line, show, Table};
use serde_json::{Map, Value};
use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;

/// The largest value read (the server refuses larger ones too).
const MAX_VALUE_BYTES: u64 = 64 * 1024;

/// Runs `attune secret …`.
pub fn run(args: SecretArgs, data_dir: &Path) -> Result<ExitCode, CliError> {
    let out = args.output;
    match args.command {
        SecretCommand::Set {
            name,
            value,
            scope,
            json,
        } => {
            if value.is_some() {
                return Err(CliError::usage(
                    "a secret value on the command line is visible to every process (ps, /proc) and kept in shell history; pipe it on stdin or type it at the prompt: attune secret set NAME",
                ));
            }
            let value = read_value(&name, json)?;
            let mut body = scope_body(&scope);
            body.insert("value".into(), value);
            let client = Client::discover(data_dir)?;
            let r: Value = client.put(&format!("/api/v1/secrets/{}", segment(&name)), &body)?;
            if out != OutputFormat::Table {
                print_structured(&r, out)?;
            } else {
                let verb = if r.get("created").and_then(Value::as_bool) == Some(true) {
                    "stored"
                } else {
                    "replaced"
                };
                print_line(&format!(
                    "{verb} secret {} ({})",
                    show(r.get("name")),
                    show(r.get("scope"))
                ));
            }
        }
        SecretCommand::List { scope } => {
            let client = Client::discover(data_dir)?;
            let list: Value = client.get(&format!("/api/v1/secrets{}", scope_query(&scope)))?;
            if out != OutputFormat::Table {
                print_structured(&list, out)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = Table::new(&["NAME", "SCOPE", "CREATED", "BY", "UPDATED", "BY"]);
            for s in list.as_array().into_iter().flatten() {
                t.row(&[
                    show(s.get("name")),
                    show(s.get("scope")),
                    show(s.get("created_at")),
                    show(s.get("created_by")),
                    show(s.get("updated_at")),
                    show(s.get("updated_by")),
                ]);
            }
            t.print();
        }
        SecretCommand::Delete { name, scope } => {
            let client = Client::discover(data_dir)?;
            client.delete(&format!(
                "/api/v1/secrets/{}{}",
                segment(&name),
                scope_query(&scope)
            ))?;
            if out == OutputFormat::Table {
                print_line(&format!("deleted secret {name}"));
            }
        }
        SecretCommand::Get {
            name,
            scope,
            reveal,
        } => {
            if !reveal {
                return Err(CliError::usage(
                    "secret values are write-only; add --reveal to show this one (admin only; it is recorded in the audit log), or use `attune secret list` for names and scopes",
                ));
            }
            let client = Client::discover(data_dir)?;
            let r: Value = client.post_empty(&format!(
                "/api/v1/secrets/{}/reveal{}",
                segment(&name),
                scope_query(&scope)
            ))?;
            match (out, r.get("value")) {
                (OutputFormat::Table, Some(Value::String(s))) => print_line(s),
                (OutputFormat::Table, Some(v)) => print_line(&v.to_string()),
                _ => print_structured(&r, out)?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pack:<pack>` or `action:<pack>.<action>`, as the API takes a scope; None for none.
fn scope_name(scope: &ScopeArgs) -> Option<String> {
    match (&scope.pack, &scope.action) {
        (Some(p), _) => Some(format!("pack:{p}")),
        (None, Some(a)) => Some(format!("action:{a}")),
        (None, None) => None,
    }
}

fn scope_body(scope: &ScopeArgs) -> Map<String, Value> {
    let mut body = Map::new();
    if let Some(s) = scope_name(scope) {
        body.insert("scope".into(), Value::from(s));
    }
    body
}

fn scope_query(scope: &ScopeArgs) -> String {
    scope_name(scope)
        .map(|s| format!("?scope={}", query_value(&s)))
        .unwrap_or_default()
}

/// The value: typed at a hidden prompt on a terminal, else all of stdin (text, less one
/// final newline, or JSON with `--json`).
fn read_value(name: &str, json: bool) -> Result<Value, CliError> {
    let text = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("value of secret {name} (not shown): "))
            .map_err(|e| CliError::failure(format!("cannot read the value: {e}")))?
    } else {
        let mut buf = Vec::new();
        std::io::stdin()
            .take(MAX_VALUE_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|e| CliError::failure(format!("cannot read the value from stdin: {e}")))?;
        if buf.len() as u64 > MAX_VALUE_BYTES {
            return Err(CliError::usage(format!(
                "the value is larger than {MAX_VALUE_BYTES} bytes"
            )));
        }
        let mut text = String::from_utf8(buf).map_err(|_| {
            CliError::usage("the value on stdin is not UTF-8 text; encode binary secrets (base64)")
        })?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        text
    };
    if json {
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Null) => Err(CliError::usage("the value is null; give a JSON value")),
            Ok(v) => Ok(v),
            // serde_json's message can quote the input: say where, not what.
            Err(e) => Err(CliError::usage(format!(
                "--json: the value is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ))),
        }
    } else if text.is_empty() {
        Err(CliError::usage(
            "the value is empty; pipe it on stdin (printf %s \"$VALUE\" | attune secret set NAME) or type it at the prompt",
        ))
    } else {
        Ok(Value::String(text))
    }
}
