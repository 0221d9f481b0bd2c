//! Parameters and env_vars from the command line, shared by `attune run --local` and
//! `attune run` against a server.

use crate::error::CliError;
use attune_core::{EnvVars, ParamSchema};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Parameters from `--params-file`, then `key=value` arguments on top, coerced by `schema`.
/// A secret parameter on the command line is refused: every user can read it there.
pub fn collect_params(
    schema: &ParamSchema,
    file: Option<&Path>,
    args: &[String],
) -> Result<Map<String, Value>, CliError> {
    let mut params = match file {
        None => Map::new(),
        Some(path) => read_params_file(path)?,
    };
    refuse_secrets_on_argv(schema, args)?;
    let from_args = attune_core::params::parse_args(schema, args).map_err(CliError::usage)?;
    params.extend(from_args);
    Ok(params)
}

fn refuse_secrets_on_argv(schema: &ParamSchema, args: &[String]) -> Result<(), CliError> {
    for arg in args {
        if let Some((key, _)) = arg.split_once('=') {
            if schema.is_secret(key) {
                return Err(CliError::usage(format!(
                    "parameter `{key}` is secret: do not put it on the command line, where every user can read it in the process list; pass it with --params-file FILE (or --params-file - on stdin), or store it once with `attune secret set {key}` and leave it out"
                )));
            }
        }
    }
    Ok(())
}

/// A JSON or YAML mapping of parameters from a file, or from stdin for `-`.
pub fn read_params_file(path: &Path) -> Result<Map<String, Value>, CliError> {
    let shown = path.display();
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| CliError::usage(format!("--params-file -: cannot read stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("--params-file {shown}: {e}")))?
    };
    let is_json = path.extension().is_some_and(|e| e == "json")
        || (path == Path::new("-") && text.trim_start().starts_with('{'));
    let value: Value = if is_json {
        serde_json::from_str(&text)
            .map_err(|e| CliError::usage(format!("--params-file {shown}: malformed JSON: {e}")))?
    } else {
        serde_yaml_ng::from_str(&text)
            .map_err(|e| CliError::usage(format!("--params-file {shown}: malformed YAML: {e}")))?
    };
    match value {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        other => Err(CliError::usage(format!(
            "--params-file {shown}: expected a mapping of parameter names to values, got {}",
            attune_core::json_type_name(&other)
        ))),
    }
}

/// `--env KEY=VALUE` arguments, checked as the engine checks env_vars.
pub fn collect_env(args: &[String]) -> Result<EnvVars, CliError> {
    let mut vars = BTreeMap::new();
    for arg in args {
        let (k, v) = arg
            .split_once('=')
            .ok_or_else(|| CliError::usage(format!("--env `{arg}`: expected KEY=VALUE")))?;
        if vars.insert(k.to_string(), v.to_string()).is_some() {
            return Err(CliError::usage(format!("--env {k} is given twice")));
        }
    }
    EnvVars::new(vars).map_err(CliError::usage)
}
