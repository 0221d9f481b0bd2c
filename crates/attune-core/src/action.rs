//! Action metadata (DESIGN.md §1). Unknown keys, wrong types and invalid values are
//! refused with a message naming the file, the key and the allowed values.

use crate::format::{check_dotenv_keys, Format};
use crate::pack::{check_keys, opt_string, read_yaml, Pack, PackError};
use crate::schema::{compile_output_schema, ParamSchema};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Default action timeout in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// Largest accepted timeout (one week).
pub const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

const ACTION_KEYS: &[&str] = &[
    "name",
    "ref",
    "description",
    "label",
    "runner_type",
    "entry_point",
    "parameter_delivery",
    "parameter_format",
    "parameters",
    "output_schema",
    "timeout",
    "enabled",
];

/// How an action's entry point is started.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RunnerType {
    /// `bash <entry point>`.
    Shell,
    /// `python3 <entry point>`.
    Python,
    /// `node <entry point>`.
    Node,
    /// The entry point is executed directly.
    Native,
}

impl RunnerType {
    /// All runner types.
    pub const ALL: [RunnerType; 4] = [
        RunnerType::Shell,
        RunnerType::Python,
        RunnerType::Node,
        RunnerType::Native,
    ];

    /// The name used in metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerType::Shell => "shell",
            RunnerType::Python => "python",
            RunnerType::Node => "node",
            RunnerType::Native => "native",
        }
    }

    /// Parses a metadata name.
    pub fn parse(s: &str) -> Option<RunnerType> {
        RunnerType::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// How the parameter document reaches the action.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Written to the action's stdin, then EOF.
    #[default]
    Stdin,
    /// Written to a 0400 file named by `ATTUNE_PARAMETER_FILE`.
    File,
}

impl Delivery {
    /// The name used in metadata and in `ATTUNE_PARAMETER_DELIVERY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Stdin => "stdin",
            Delivery::File => "file",
        }
    }
}

/// A validated action, ready to run.
#[derive(Debug, Clone)]
pub struct Action {
    /// The pack's ref.
    pub pack_ref: String,
    /// The action's name.
    pub name: String,
    /// `<pack>.<name>`.
    pub action_ref: String,
    /// Description.
    pub description: Option<String>,
    /// Display label.
    pub label: Option<String>,
    /// How the entry point is started.
    pub runner_type: RunnerType,
    /// The entry point as written in the metadata.
    pub entry_point: String,
    /// The entry point's path, symlinks resolved, inside the pack.
    pub entry_path: PathBuf,
    /// Parameter delivery method.
    pub delivery: Delivery,
    /// Parameter document format.
    pub format: Format,
    /// Parameter schema.
    pub parameters: ParamSchema,
    /// JSON Schema of the result, if declared.
    pub output_schema: Option<(Value, std::sync::Arc<jsonschema::Validator>)>,
    /// Timeout in seconds.
    pub timeout_secs: u64,
    /// Whether the action may run.
    pub enabled: bool,
    /// The metadata file it came from.
    pub metadata_file: PathBuf,
    /// The pack's root directory (canonical): the action may read, not write, its files.
    pub pack_dir: PathBuf,
}

/// What the API and `attune action get` show of an action.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ActionSummary {
    /// `<pack>.<name>`.
    #[serde(rename = "ref")]
    pub action_ref: String,
    /// The pack's ref.
    pub pack: String,
    /// The action's name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Display label.
    pub label: Option<String>,
    /// How the entry point is started.
    pub runner_type: RunnerType,
    /// The entry point, relative to the pack.
    pub entry_point: String,
    /// How the parameters reach the action.
    pub parameter_delivery: Delivery,
    /// The parameter document's format.
    pub parameter_format: Format,
    /// The parameters as a JSON Schema (draft 2020-12), normalised.
    pub parameters: Value,
    /// The names of the secret parameters.
    pub secret_parameters: Vec<String>,
    /// JSON Schema of the result, if declared.
    pub output_schema: Option<Value>,
    /// Timeout in seconds.
    pub timeout: u64,
    /// Whether the action may run.
    pub enabled: bool,
}

impl Action {
    /// Loads and validates the metadata file `file` of `pack`.
    pub fn load(pack: &Pack, file: &Path) -> Result<Action, PackError> {
        let value = read_yaml(file)?;
        Action::from_value(pack, file, value)
    }

    /// Validates parsed metadata.
    pub fn from_value(pack: &Pack, file: &Path, value: Value) -> Result<Action, PackError> {
        let bad = |msg: String| PackError::invalid(file, msg);
        let Value::Object(map) = value else {
            return Err(bad(format!(
                "expected a mapping of keys, got {}",
                crate::json_type_name(&value)
            )));
        };
        check_keys(file, &map, ACTION_KEYS)?;

        let name = opt_string(file, &map, "name")?
            .ok_or_else(|| bad("key `name` is required ([a-z0-9_]+)".into()))?;
        if !crate::is_valid_name(&name) {
            return Err(bad(format!(
                "key `name`: `{name}` is invalid; use lower-case letters, digits and _ ([a-z0-9_]+)"
            )));
        }
        let action_ref = format!("{}.{name}", pack.pack_ref);
        if let Some(r) = opt_string(file, &map, "ref")? {
            if r != action_ref {
                return Err(bad(format!(
                    "key `ref`: `{r}` does not match the pack and name; it must be `{action_ref}` (or be left out)"
                )));
            }
        }

        let allowed_runners = RunnerType::ALL.map(RunnerType::as_str).join(", ");
        let runner_type = match opt_string(file, &map, "runner_type")? {
            None => {
                return Err(bad(format!(
                    "key `runner_type` is required; allowed values: {allowed_runners}"
                )))
            }
            Some(r) => RunnerType::parse(&r).ok_or_else(|| {
                bad(format!(
                    "key `runner_type`: `{r}` is not supported; allowed values: {allowed_runners}"
                ))
            })?,
        };

        let delivery = match opt_string(file, &map, "parameter_delivery")?.as_deref() {
            None | Some("stdin") => Delivery::Stdin,
            Some("file") => Delivery::File,
            Some("env") => {
                return Err(bad(
                    "key `parameter_delivery`: `env` is not allowed: parameters never go into the \
                     environment, where any process of the same user can read them (/proc/PID/environ) \
                     and child processes inherit them; allowed values: stdin, file (use env_vars for \
                     non-secret execution context)"
                        .into(),
                ))
            }
            Some(other) => {
                return Err(bad(format!(
                    "key `parameter_delivery`: `{other}` is not supported; allowed values: stdin, file"
                )))
            }
        };
        let format = match opt_string(file, &map, "parameter_format")? {
            None => Format::Json,
            Some(f) => Format::parse(&f).ok_or_else(|| {
                bad(format!(
                    "key `parameter_format`: `{f}` is not supported; allowed values: json, dotenv, yaml"
                ))
            })?,
        };

        let parameters = ParamSchema::from_metadata(map.get("parameters")).map_err(|e| bad(e.0))?;
        if format == Format::Dotenv {
            if let Some(props) = parameters.properties() {
                check_dotenv_keys(props.keys().map(String::as_str))
                    .map_err(|e| bad(format!("key `parameters`: {e}")))?;
            }
        }

        let output_schema = match map.get("output_schema") {
            None | Some(Value::Null) => None,
            Some(s) => {
                let v = compile_output_schema(s).map_err(|e| bad(e.0))?;
                Some((s.clone(), std::sync::Arc::new(v)))
            }
        };

        let timeout_secs = match map.get("timeout") {
            None | Some(Value::Null) => DEFAULT_TIMEOUT_SECS,
            Some(Value::Number(n)) if n.as_u64().is_some_and(|t| (1..=MAX_TIMEOUT_SECS).contains(&t)) => {
                n.as_u64().unwrap_or(DEFAULT_TIMEOUT_SECS)
            }
            Some(other) => {
                return Err(bad(format!(
                    "key `timeout`: expected a whole number of seconds from 1 to {MAX_TIMEOUT_SECS}, got {}",
                    describe(other)
                )))
            }
        };
        let enabled = match map.get("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(bad(format!(
                    "key `enabled`: expected true or false, got {}",
                    describe(other)
                )))
            }
        };

        let entry_point = opt_string(file, &map, "entry_point")?.ok_or_else(|| {
            bad("key `entry_point` is required (a path relative to actions/)".into())
        })?;
        let entry_path = resolve_entry(pack, file, &entry_point, runner_type)?;

        Ok(Action {
            pack_ref: pack.pack_ref.clone(),
            name,
            action_ref,
            description: opt_string(file, &map, "description")?,
            label: opt_string(file, &map, "label")?,
            runner_type,
            entry_point,
            entry_path,
            delivery,
            format,
            parameters,
            output_schema,
            timeout_secs,
            enabled,
            metadata_file: file.to_path_buf(),
            pack_dir: pack.root.clone(),
        })
    }

    /// A JSON description of the action for listings (`action show`).
    pub fn summary(&self) -> ActionSummary {
        ActionSummary {
            action_ref: self.action_ref.clone(),
            pack: self.pack_ref.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            label: self.label.clone(),
            runner_type: self.runner_type,
            entry_point: self.entry_point.clone(),
            parameter_delivery: self.delivery,
            parameter_format: self.format,
            parameters: self.parameters.public_schema(),
            secret_parameters: self.parameters.secret_names().to_vec(),
            output_schema: self.output_schema.as_ref().map(|(s, _)| s.clone()),
            timeout: self.timeout_secs,
            enabled: self.enabled,
        }
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) => format!("`{n}`"),
        Value::String(s) if s.len() < 40 => format!("the string `{s}`"),
        other => crate::json_type_name(other).to_string(),
    }
}

fn resolve_entry(
    pack: &Pack,
    file: &Path,
    entry_point: &str,
    runner: RunnerType,
) -> Result<PathBuf, PackError> {
    let bad = |msg: String| PackError::invalid(file, msg);
    if entry_point.is_empty() || Path::new(entry_point).is_absolute() {
        return Err(bad(format!(
            "key `entry_point`: `{entry_point}` must be a path relative to the pack's actions/ directory"
        )));
    }
    let candidate = pack.dir.join("actions").join(entry_point);
    let resolved = candidate.canonicalize().map_err(|e| {
        bad(format!(
            "key `entry_point`: `{entry_point}` cannot be opened ({}): {e}",
            candidate.display()
        ))
    })?;
    if !resolved.starts_with(&pack.root) {
        return Err(bad(format!(
            "key `entry_point`: `{entry_point}` resolves to {}, outside the pack; entry points must stay inside the pack directory",
            resolved.display()
        )));
    }
    let meta = std::fs::metadata(&resolved).map_err(|e| {
        bad(format!(
            "key `entry_point`: `{entry_point}` cannot be read: {e}"
        ))
    })?;
    if !meta.is_file() {
        return Err(bad(format!(
            "key `entry_point`: `{entry_point}` is not a regular file"
        )));
    }
    if runner == RunnerType::Native {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(bad(format!(
                "key `entry_point`: `{entry_point}` is not executable; a native action's entry point is run directly (chmod +x it)"
            )));
        }
    }
    Ok(resolved)
}
