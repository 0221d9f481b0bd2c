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

pub use action::{Action, ActionSummary, Delivery, RunnerType};
pub use envvars::EnvVars;
pub use execution::{Execution, ExecutionStatus};
pub use format::Format;
pub use mask::Masker;
pub use pack::Pack;
pub use schema::ParamSchema;

/// The placeholder shown instead of a secret parameter's value.
pub const REDACTED: &str = "********";

/// Whether two JSON values are equal, numbers compared by value (`1.0` and `1` alike), as
/// a consumer that parses numbers as floats sees them.
pub fn json_same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_same(v, w)))
        }
        _ => a == b,
    }
}

/// Whether `s` is a valid pack or action name: `[a-z0-9_]+`.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Percent-encodes every byte of `s` but ASCII letters, digits and `keep`; `plus` writes
/// space as `+`. Hex digits are upper case. With `keep` = `-_.~`, an RFC 3986 path segment
/// or query value.
pub fn percent_encode(s: &str, keep: &str, plus: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || keep.as_bytes().contains(&b) {
            out.push(b as char);
        } else if plus && b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The candidate closest to `word` (at most two edits away), for "did you mean" hints.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| c)
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
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
