//! Parameters given as `key=value` strings on a command line, coerced by the type the
//! schema declares (DESIGN.md §2 step 1).

use crate::schema::ParamSchema;
use serde_json::{Map, Value};

/// Why a `key=value` argument could not become a parameter. Messages show the value only
/// when the parameter is not secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgError {
    /// No `=` in the argument.
    #[error("parameter argument `{0}` is not of the form key=value")]
    NoEquals(String),
    /// The same key twice.
    #[error("parameter `{0}` is given twice")]
    Duplicate(String),
    /// A value that is not of the declared type.
    #[error("parameter `{name}`: {shown} is not {expected}")]
    BadValue {
        /// Parameter name.
        name: String,
        /// The value, quoted, or "the value" for secrets.
        shown: String,
        /// What was expected, e.g. "an integer".
        expected: String,
    },
}

/// Parses `key=value` arguments into parameters, coercing each value by its declared type.
pub fn parse_args<S: AsRef<str>>(
    schema: &ParamSchema,
    args: &[S],
) -> Result<Map<String, Value>, ArgError> {
    let mut out = Map::new();
    for arg in args {
        let arg = arg.as_ref();
        let Some((key, raw)) = arg.split_once('=') else {
            let shown = if arg.len() > 40 {
                "(long argument)"
            } else {
                arg
            };
            return Err(ArgError::NoEquals(shown.to_string()));
        };
        if key.is_empty() {
            return Err(ArgError::NoEquals("=…".into()));
        }
        if out.contains_key(key) {
            return Err(ArgError::Duplicate(key.to_string()));
        }
        let value = coerce(schema, key, raw)?;
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

/// Coerces the string `raw` for parameter `name` to the schema's declared type. With no
/// declared type the value stays a string.
pub fn coerce(schema: &ParamSchema, name: &str, raw: &str) -> Result<Value, ArgError> {
    let types = schema.declared_types(name);
    if types.is_empty() || types.contains(&"string") && types.len() == 1 {
        return Ok(Value::String(raw.to_string()));
    }
    // Try the declared types in order, a string last: `5` for ["integer", "string"] is 5.
    let mut ordered: Vec<&str> = types.iter().copied().filter(|t| *t != "string").collect();
    if types.contains(&"string") {
        ordered.push("string");
    }
    for t in &ordered {
        if let Some(v) = coerce_to(schema, name, t, raw) {
            return Ok(v);
        }
    }
    let expected = ordered
        .iter()
        .map(|t| article(t))
        .collect::<Vec<_>>()
        .join(" or ");
    Err(ArgError::BadValue {
        name: name.to_string(),
        shown: if schema.is_secret(name) {
            "the value".into()
        } else {
            format!("`{}`", shorten(raw))
        },
        expected,
    })
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}

fn article(t: &str) -> String {
    match t {
        "integer" => "an integer".into(),
        "array" => "a list (JSON like [\"a\",1] or comma-separated)".into(),
        "object" => "a JSON object".into(),
        "null" => "null".into(),
        other => format!("a {other}"),
    }
}

fn coerce_to(schema: &ParamSchema, name: &str, t: &str, raw: &str) -> Option<Value> {
    match t {
        "string" => Some(Value::String(raw.to_string())),
        "integer" => raw
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| raw.parse::<u64>().map(Value::from))
            .ok(),
        "number" => match serde_json::from_str::<Value>(raw.trim()) {
            Ok(v @ Value::Number(_)) => Some(v),
            _ => None,
        },
        "boolean" => match raw.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Some(Value::Bool(true)),
            "false" | "no" | "0" => Some(Value::Bool(false)),
            _ => None,
        },
        "null" => (raw.is_empty() || raw == "null").then_some(Value::Null),
        "object" => match serde_json::from_str::<Value>(raw) {
            Ok(v @ Value::Object(_)) => Some(v),
            _ => None,
        },
        "array" => {
            if raw.trim_start().starts_with('[') {
                match serde_json::from_str::<Value>(raw) {
                    Ok(v @ Value::Array(_)) => Some(v),
                    _ => None,
                }
            } else if raw.is_empty() {
                Some(Value::Array(Vec::new()))
            } else {
                let item = schema.item_type(name);
                raw.split(',')
                    .map(|part| match item {
                        Some(it) if it != "string" => coerce_to(schema, name, it, part.trim()),
                        _ => Some(Value::String(part.to_string())),
                    })
                    .collect::<Option<Vec<_>>>()
                    .map(Value::Array)
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> ParamSchema {
        ParamSchema::from_metadata(Some(&json!({
            "message": {"type": "string"},
            "count": {"type": "integer"},
            "ratio": {"type": "number"},
            "on": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "ports": {"type": "array", "items": {"type": "integer"}},
            "cfg": {"type": "object"},
            "maybe": {"type": ["integer", "string"]},
            "token": {"type": "integer", "secret": true}
        })))
        .unwrap()
    }

    #[test]
    fn coerces_by_type() {
        let s = schema();
        let p = parse_args(
            &s,
            &[
                "message=a=b",
                "count=3",
                "ratio=0.5",
                "on=yes",
                r#"tags=["a","b"]"#,
                "ports=80, 443",
                r#"cfg={"x":1}"#,
                "maybe=hello",
            ],
        )
        .unwrap();
        assert_eq!(
            Value::Object(p),
            json!({"message": "a=b", "count": 3, "ratio": 0.5, "on": true, "tags": ["a", "b"],
                   "ports": [80, 443], "cfg": {"x": 1}, "maybe": "hello"})
        );
    }

    #[test]
    fn errors_hide_secret_values() {
        let s = schema();
        let e = parse_args(&s, &["count=abc"]).unwrap_err();
        assert_eq!(e.to_string(), "parameter `count`: `abc` is not an integer");
        let e = parse_args(&s, &["token=hunter2"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameter `token`: the value is not an integer"
        );
        assert_eq!(
            parse_args(&s, &["count=1", "count=2"]).unwrap_err(),
            ArgError::Duplicate("count".into())
        );
        assert!(matches!(
            parse_args(&s, &["novalue"]),
            Err(ArgError::NoEquals(_))
        ));
    }
}
