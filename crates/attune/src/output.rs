//! Rendering records for `--output table|json|yaml`.

use crate::error::CliError;
use serde::Serialize;

/// Output formats of the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OutputFormat {
    /// Human-readable (for `run`: the action's own output, live).
    #[default]
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Prints `value` as JSON or YAML on stdout.
pub fn print_structured<T: Serialize>(value: &T, format: OutputFormat) -> Result<(), CliError> {
    let text = match format {
        OutputFormat::Yaml => serde_yaml_ng::to_string(value).map_err(CliError::failure)?,
        _ => {
            let mut s = serde_json::to_string_pretty(value).map_err(CliError::failure)?;
            s.push('\n');
            s
        }
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    Ok(())
}
