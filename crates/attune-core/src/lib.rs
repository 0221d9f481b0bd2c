//! Attune's pure core: what a pack and an action are, how parameters are validated and
//! serialised for delivery, which environment variables an action may receive, and how
//! secret values are masked in output. Nothing here spawns a process or opens a socket.

pub mod action;
pub mod bundle;
pub mod envvars;
pub mod execution;
pub mod format;
pub mod mask;
pub mod pack;
pub mod params;
pub mod schema;

pub use action::{Action, Delivery, RunnerType};
pub use envvars::EnvVars;
pub use execution::{ExecutionRecord, ExecutionStatus};
pub use format::Format;
pub use mask::Masker;
pub use pack::Pack;
pub use schema::ParamSchema;

/// The placeholder shown instead of a secret parameter's value.
pub const REDACTED: &str = "********";

/// Whether `s` is a valid pack or action name: `[a-z0-9_]+`.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A short description of a JSON value's type, for error messages (never its content).
pub fn json_type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}
