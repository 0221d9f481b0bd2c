//! `attune action list|show`: the actions registered on the server.

use crate::cli::{ActionArgs, ActionCommand};
use crate::client::{segment, Client};
use crate::error::CliError;
use crate::output::{print_structured, OutputFormat};
use crate::table::{print_fields, print_text, show, Table};
use serde_json::Value;
use std::path::Path;
use std::process::ExitCode;

/// Runs `attune action …`.
pub fn run(args: ActionArgs, data_dir: &Path) -> Result<ExitCode, CliError> {
    let out = args.output;
    match args.command {
        ActionCommand::List => {
            let client = Client::discover(data_dir)?;
            let list: Value = client.get("/api/v1/actions")?;
            if out != OutputFormat::Table {
                print_structured(&list, out)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = Table::new(&[
                "REF",
                "RUNNER",
                "DELIVERY",
                "FORMAT",
                "TIMEOUT",
                "ENABLED",
                "DESCRIPTION",
            ]);
            for a in list.as_array().into_iter().flatten() {
                t.row(&[
                    show(a.get("ref")),
                    show(a.get("runner_type")),
                    show(a.get("parameter_delivery")),
                    show(a.get("parameter_format")),
                    timeout(a),
                    yes_no(a.get("enabled")),
                    description(a),
                ]);
            }
            t.print();
        }
        ActionCommand::Show { action } => {
            super::run::check_action_ref(&action)?;
            let client = Client::discover(data_dir)?;
            let a: Value = client.get(&format!("/api/v1/actions/{}", segment(&action)))?;
            if out != OutputFormat::Table {
                print_structured(&a, out)?;
                return Ok(ExitCode::SUCCESS);
            }
            print_action(&a);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn timeout(a: &Value) -> String {
    match a.get("timeout") {
        Some(Value::Number(n)) => format!("{n}s"),
        other => show(other),
    }
}

fn yes_no(v: Option<&Value>) -> String {
    match v {
        Some(Value::Bool(true)) => "yes".into(),
        Some(Value::Bool(false)) => "no".into(),
        other => show(other),
    }
}

fn description(a: &Value) -> String {
    ["description", "label"]
        .iter()
        .filter_map(|k| a.get(*k).and_then(Value::as_str))
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or("")
        .to_string()
}

/// An action: its settings, then a table of its parameters.
fn print_action(a: &Value) {
    let mut fields: Vec<(&str, String)> = vec![("ref", show(a.get("ref")))];
    for (label, key) in [("label", "label"), ("description", "description")] {
        if a.get(key)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty())
        {
            fields.push((label, show(a.get(key))));
        }
    }
    fields.extend([
        ("runner", show(a.get("runner_type"))),
        ("entry point", show(a.get("entry_point"))),
        ("delivery", show(a.get("parameter_delivery"))),
        ("format", show(a.get("parameter_format"))),
        ("timeout", timeout(a)),
        ("enabled", yes_no(a.get("enabled"))),
    ]);
    if a.get("output_schema").is_some_and(|v| !v.is_null()) {
        fields.push(("output schema", show(a.get("output_schema"))));
    }
    print_fields(&fields);

    let schema = a.get("parameters");
    let props = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object);
    let Some(props) = props.filter(|p| !p.is_empty()) else {
        print_text("\nno parameters\n");
        return;
    };
    let required: Vec<&str> = schema
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let secret: Vec<&str> = a
        .get("secret_parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut t = Table::new(&[
        "PARAMETER",
        "TYPE",
        "REQUIRED",
        "DEFAULT",
        "SECRET",
        "DESCRIPTION",
    ]);
    for (name, prop) in props {
        let is_secret =
            secret.contains(&name.as_str()) || prop.get("secret") == Some(&Value::Bool(true));
        let default = match prop.get("default") {
            None => "-".to_string(),
            Some(_) if is_secret => attune_core::REDACTED.to_string(),
            Some(Value::String(s)) => format!("{s:?}"),
            Some(v) => v.to_string(),
        };
        let mut desc = prop
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string();
        if let Some(choices) = prop.get("enum").and_then(Value::as_array) {
            let choices: Vec<String> = choices.iter().map(Value::to_string).collect();
            let sep = if desc.is_empty() { "" } else { " " };
            desc = format!("{desc}{sep}(one of {})", choices.join(", "));
        }
        t.row(&[
            name.clone(),
            type_of(prop),
            if required.contains(&name.as_str()) {
                "yes"
            } else {
                "no"
            }
            .to_string(),
            default,
            if is_secret { "yes" } else { "no" }.to_string(),
            desc,
        ]);
    }
    print_text("\n");
    t.print();
}

/// "string", "integer|null", "array[string]", or "any".
fn type_of(prop: &Value) -> String {
    let base = match prop.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("|"),
        _ if prop.get("enum").is_some() => "enum".to_string(),
        _ => "any".to_string(),
    };
    match prop
        .get("items")
        .and_then(|i| i.get("type"))
        .and_then(Value::as_str)
    {
        Some(item) if base.contains("array") => base.replace("array", &format!("array[{item}]")),
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_are_shown_compactly() {
        assert_eq!(type_of(&json!({"type": "string"})), "string");
        assert_eq!(
            type_of(&json!({"type": ["integer", "null"]})),
            "integer|null"
        );
        assert_eq!(
            type_of(&json!({"type": "array", "items": {"type": "string"}})),
            "array[string]"
        );
        assert_eq!(type_of(&json!({"enum": [1, 2]})), "enum");
        assert_eq!(type_of(&json!({})), "any");
    }
}
