//! Serialisation of an execution's parameters into the one document an action reads
//! (DESIGN.md §2 step 3): compact one-line JSON, a YAML document that PyYAML reads back
//! as the same value, or dotenv lines that `set -a; . file` in `sh` reproduces byte for byte.

use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::io::Write;

/// How the parameter document is encoded.
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
pub enum Format {
    /// Compact JSON on one line, then `\n`.
    #[default]
    Json,
    /// `KEY='VALUE'` lines, one per top-level parameter.
    Dotenv,
    /// One YAML document.
    Yaml,
}

impl Format {
    /// All formats, in documentation order.
    pub const ALL: [Format; 3] = [Format::Json, Format::Dotenv, Format::Yaml];

    /// The name used in action metadata and in `ATTUNE_PARAMETER_FORMAT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Dotenv => "dotenv",
            Format::Yaml => "yaml",
        }
    }

    /// The parameter file's extension for file delivery.
    pub fn file_extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Dotenv => "env",
            Format::Yaml => "yaml",
        }
    }

    /// Parses a format name as written in action metadata.
    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why parameters could not be serialised. Messages name parameters, never values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// dotenv cannot carry a NUL byte through `sh`.
    #[error("parameter `{0}` contains a NUL byte, which the dotenv format cannot carry; use json or yaml")]
    NulInDotenv(String),
    /// Two parameter names map to the same dotenv key.
    #[error(
        "parameters `{0}` and `{1}` both become the dotenv key {2}; rename one or use json or yaml"
    )]
    KeyCollision(String, String, String),
    /// A parameter name that cannot become a dotenv key.
    #[error("parameter name `{0}` cannot become a dotenv key (it is empty)")]
    BadKey(String),
    /// A parameter name whose dotenv key is a variable the shell itself relies on.
    #[error("parameter `{0}` becomes the dotenv key {1}, which would replace the shell's own {1} when the file is sourced; rename the parameter or use json or yaml")]
    ShellVariable(String, String),
}

/// Serialises `params` in `format`. The result is the exact document delivered to the action.
pub fn serialize(params: &Map<String, Value>, format: Format) -> Result<Vec<u8>, FormatError> {
    match format {
        Format::Json => Ok(to_json_line(params)),
        Format::Yaml => Ok(to_yaml(params).into_bytes()),
        Format::Dotenv => to_dotenv(params),
    }
}

/// Checks, when a request is made, that `params` can be delivered in `format`: dotenv
/// cannot carry a NUL byte (JSON text escapes it, so only a string value can hold one).
pub fn check_deliverable(params: &Map<String, Value>, format: Format) -> Result<(), FormatError> {
    if format == Format::Dotenv {
        check_dotenv_keys(params.keys().map(String::as_str))?;
        for (name, value) in params {
            if matches!(value, Value::String(s) if s.contains('\0')) {
                return Err(FormatError::NulInDotenv(name.clone()));
            }
        }
    }
    Ok(())
}

fn to_json_line(params: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(map_json_len(params) + 1);
    // Writing to a Vec cannot fail.
    let _ = write_json_line(&mut out, params);
    out
}

/// Writes `params` as the JSON parameter document: compact JSON, then `\n`. For file
/// delivery the document goes straight into the file, through a small buffer (long
/// strings bypass it), rather than into a buffer of its own size first.
pub fn write_json_line<W: Write>(w: &mut W, params: &Map<String, Value>) -> std::io::Result<()> {
    write_json_map(w, params)?;
    w.write_all(b"\n")
}

/// `m` as compact JSON, in a buffer sized for it once: the same bytes as `serde_json`
/// writes, faster for long strings (see [`write_json_str`]).
pub fn map_to_json(m: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(map_json_len(m));
    // Writing to a Vec cannot fail.
    let _ = write_json_map(&mut out, m);
    out
}

/// Writes `v` as compact JSON, byte for byte what `serde_json` writes.
pub fn write_json<W: Write>(w: &mut W, v: &Value) -> std::io::Result<()> {
    match v {
        Value::Null => w.write_all(b"null"),
        Value::Bool(true) => w.write_all(b"true"),
        Value::Bool(false) => w.write_all(b"false"),
        // A number's Display is its JSON text.
        Value::Number(n) => write!(w, "{n}"),
        Value::String(s) => write_json_str(w, s),
        Value::Array(a) => {
            w.write_all(b"[")?;
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                write_json(w, x)?;
            }
            w.write_all(b"]")
        }
        Value::Object(m) => write_json_map(w, m),
    }
}

fn write_json_map<W: Write>(w: &mut W, m: &Map<String, Value>) -> std::io::Result<()> {
    w.write_all(b"{")?;
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        write_json_str(w, k)?;
        w.write_all(b":")?;
        write_json(w, v)?;
    }
    w.write_all(b"}")
}

/// Writes `s` as a JSON string, escaped as `serde_json` escapes it: `"` and `\\`, the
/// short escapes for \b \f \n \r \t, `\u00xx` for the other control characters. Runs
/// without any are found 64 bytes at a time (a loop without early exit, which the compiler
/// vectorises) and written whole: a 64 MiB parameter is scanned at memory speed, not a
/// table lookup per byte, and goes to a file without being copied first.
pub fn write_json_str<W: Write>(w: &mut W, s: &str) -> std::io::Result<()> {
    const BLOCK: usize = 64;
    // Inlined, or the block check is a call per byte.
    #[inline(always)]
    fn special(b: u8) -> bool {
        b < 0x20 || b == b'"' || b == b'\\'
    }
    let bytes = s.as_bytes();
    w.write_all(b"\"")?;
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(block) = bytes.get(i..i + BLOCK) {
            if !block.iter().fold(false, |any, &b| any | special(b)) {
                i += BLOCK;
                continue;
            }
        }
        let end = (i + BLOCK).min(bytes.len());
        while i < end {
            let b = bytes[i];
            if special(b) {
                w.write_all(&bytes[start..i])?;
                let short = match b {
                    b'"' => Some(b'"'),
                    b'\\' => Some(b'\\'),
                    0x08 => Some(b'b'),
                    0x0c => Some(b'f'),
                    b'\n' => Some(b'n'),
                    b'\r' => Some(b'r'),
                    b'\t' => Some(b't'),
                    _ => None,
                };
                match short {
                    Some(c) => w.write_all(&[b'\\', c])?,
                    None => {
                        const HEX: &[u8; 16] = b"0123456789abcdef";
                        let (hi, lo) = (HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]);
                        w.write_all(&[b'\\', b'u', b'0', b'0', hi, lo])?;
                    }
                }
                start = i + 1;
            }
            i += 1;
        }
    }
    w.write_all(&bytes[start..])?;
    w.write_all(b"\"")
}

/// About how long `v` is as compact JSON (exact for strings without characters to escape;
/// numbers counted short). Reckoned from the lengths, without serialising: a buffer of
/// this size takes a large document without growing, where doubling would copy it and
/// leave up to twice its size behind.
pub fn json_len(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 8,
        Value::String(s) => s.len() + 2,
        Value::Array(a) => 2 + a.iter().map(|x| json_len(x) + 1).sum::<usize>(),
        Value::Object(m) => map_json_len(m),
    }
}

/// [`json_len`] of an object.
pub fn map_json_len(m: &Map<String, Value>) -> usize {
    2 + m
        .iter()
        .map(|(k, v)| k.len() + 4 + json_len(v))
        .sum::<usize>()
}

/// `v` as compact JSON, in a buffer made `capacity` long to begin with. A value that
/// cannot be serialised (a map with non-string keys) gives `{}`.
pub fn to_json_sized(v: &impl serde::Serialize, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    if serde_json::to_writer(&mut out, v).is_err() {
        out.clear();
        out.extend_from_slice(b"{}");
    }
    out
}

/// The dotenv key for a parameter name: upper-cased, every character outside `[A-Z0-9_]`
/// replaced by `_`, a leading digit prefixed with `_`.
pub fn dotenv_key(name: &str) -> Result<String, FormatError> {
    if name.is_empty() {
        return Err(FormatError::BadKey(name.to_string()));
    }
    let mut key = String::with_capacity(name.len() + 1);
    if name.as_bytes()[0].is_ascii_digit() {
        key.push('_');
    }
    for c in name.chars() {
        let u = c.to_ascii_uppercase();
        key.push(
            if u.is_ascii_uppercase() || u.is_ascii_digit() || u == '_' {
                u
            } else {
                '_'
            },
        );
    }
    Ok(key)
}

/// Keys that would change how the sourcing shell (or what it runs) behaves: a parameter
/// called `path` must not silently replace `PATH`.
const SHELL_VARIABLES: &[&str] = &[
    "PATH",
    "IFS",
    "HOME",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "CDPATH",
    "PS1",
    "PS2",
    "PS4",
    "OPTIND",
    "OPTARG",
    "PWD",
    "OLDPWD",
    "SHELL",
    "TMPDIR",
    "LANG",
    "LC_ALL",
    "PYTHONPATH",
    "NODE_OPTIONS",
    "PERL5OPT",
    "GLOBIGNORE",
    "PROMPT_COMMAND",
];

/// Whether a dotenv key would replace a variable the sourcing shell relies on.
pub fn is_shell_variable(key: &str) -> bool {
    SHELL_VARIABLES.contains(&key) || key.starts_with("LD_") || key.starts_with("BASH_")
}

/// Checks that the given parameter names map to distinct dotenv keys, none of them a
/// variable the shell relies on.
pub fn check_dotenv_keys<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), FormatError> {
    let mut seen: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    for name in names {
        let key = dotenv_key(name)?;
        if is_shell_variable(&key) {
            return Err(FormatError::ShellVariable(name.to_string(), key));
        }
        if let Some(prev) = seen.insert(key.clone(), name) {
            let (a, b) = if prev < name {
                (prev, name)
            } else {
                (name, prev)
            };
            return Err(FormatError::KeyCollision(a.into(), b.into(), key));
        }
    }
    Ok(())
}

fn to_dotenv(params: &Map<String, Value>) -> Result<Vec<u8>, FormatError> {
    check_dotenv_keys(params.keys().map(String::as_str))?;
    let mut out = String::new();
    for (name, value) in params {
        let text: std::borrow::Cow<'_, str> = match value {
            Value::Null => "".into(),
            Value::String(s) => s.as_str().into(),
            Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_) => {
                serde_json::to_string(value).unwrap_or_default().into()
            }
        };
        if text.contains('\0') {
            return Err(FormatError::NulInDotenv(name.clone()));
        }
        out.push_str(&dotenv_key(name)?);
        out.push_str("='");
        out.push_str(&text.replace('\'', "'\\''"));
        out.push_str("'\n");
    }
    Ok(out.into_bytes())
}

/// Renders `params` as one block-style YAML document whose `yaml.safe_load` equals the JSON
/// value. Every string is double-quoted with every character PyYAML would reinterpret
/// escaped, so `yes`, `1.0`, `null`, `~`, `=` and dates stay strings.
pub fn to_yaml(params: &Map<String, Value>) -> String {
    let mut out = String::new();
    if params.is_empty() {
        out.push_str("{}\n");
    } else {
        yaml_map(&mut out, params, 0);
    }
    out
}

// PyYAML only allows implicit keys up to 1024 characters; longer ones use `? key`.
const YAML_MAX_IMPLICIT_KEY: usize = 1000;

fn yaml_map(out: &mut String, map: &Map<String, Value>, indent: usize) {
    for (k, v) in map {
        pad(out, indent);
        let start = out.len();
        yaml_string(out, k);
        if out.len() - start > YAML_MAX_IMPLICIT_KEY {
            out.insert_str(start, "? ");
            out.push('\n');
            pad(out, indent);
        }
        out.push(':');
        yaml_value_after_indicator(out, v, indent);
    }
}

fn yaml_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        pad(out, indent);
        out.push('-');
        yaml_value_after_indicator(out, item, indent);
    }
}

/// Writes a value after `key:` or `-`: scalars and empty collections on the same line,
/// non-empty collections on the following lines, indented two more columns.
fn yaml_value_after_indicator(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            yaml_map(out, m, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            yaml_seq(out, a, indent + 2);
        }
        _ => {
            out.push(' ');
            yaml_scalar(out, v);
            out.push('\n');
        }
    }
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn yaml_scalar(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => yaml_number(out, n),
        Value::String(s) => yaml_string(out, s),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

/// Integers as they are; floats in the YAML 1.1 form PyYAML resolves as a float
/// (a `.` in the mantissa, a sign in the exponent): `1e300` becomes `1.0e+300`.
fn yaml_number(out: &mut String, n: &serde_json::Number) {
    let text = n.to_string();
    if n.is_i64() || n.is_u64() {
        out.push_str(&text);
        return;
    }
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text.as_str(), None),
    };
    out.push_str(mantissa);
    if !mantissa.contains('.') {
        out.push_str(".0");
    }
    if let Some(exp) = exponent {
        out.push('e');
        if !exp.starts_with(['+', '-']) {
            out.push('+');
        }
        out.push_str(exp);
    }
}

fn yaml_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            // C0 and C1 controls (NEL U+0085 is a line break in YAML 1.1), DEL, the BOM
            // and the non-characters PyYAML's reader refuses.
            c if (c as u32) < 0x20 || ((c as u32) >= 0x7f && (c as u32) <= 0x9f) => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sized_json_is_the_same_json_and_the_size_is_close() {
        let doc = obj(json!({
            "s": "x".repeat(10_000),
            "esc": "a\"b\\c\n",
            "n": [1, 2.5, -3, null, true, false],
            "o": {"k": {"deep": ["v"]}}
        }));
        let sized = to_json_sized(&doc, map_json_len(&doc));
        assert_eq!(sized, serde_json::to_vec(&doc).unwrap());
        // Exact for unescaped text; escapes and long numbers only add a little.
        let (hint, real) = (map_json_len(&doc), sized.len());
        assert!(hint <= real + 64 && real <= hint + 64, "{hint} vs {real}");
        assert_eq!(to_json_line(&doc), [sized, b"\n".to_vec()].concat());
    }

    /// A JSON value whose strings mix plain runs longer than a block with every character
    /// `serde_json` escapes, at any offset.
    fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            "[a-zé€😀 ]{0,70}",
            "[\\x00-\\x1f\\x7f\"\\\\]{1,3}",
            Just("\u{2028}\u{feff}".to_string()),
        ];
        let text = proptest::collection::vec(piece, 0..6).prop_map(|v| v.concat());
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            text.clone().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 32, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((text.clone(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn our_json_is_serde_jsons_byte_for_byte(v in any_json()) {
            let mut ours = Vec::new();
            write_json(&mut ours, &v).unwrap();
            proptest::prop_assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&v).unwrap()
            );
        }
    }

    #[test]
    fn a_long_string_is_escaped_in_every_block_position() {
        for at in 0..140 {
            for c in ['"', '\\', '\n', '\u{1}', '\u{1f}', '\u{7f}', 'é'] {
                let mut s = "x".repeat(140);
                s.insert(at, c);
                let mut ours = Vec::new();
                write_json_str(&mut ours, &s).unwrap();
                assert_eq!(ours, serde_json::to_vec(&s).unwrap(), "{c:?} at {at}");
            }
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn json_is_one_line() {
        let p = obj(json!({"a": "x\ny", "b": [1, 2]}));
        let out = serialize(&p, Format::Json).unwrap();
        assert_eq!(out, b"{\"a\":\"x\\ny\",\"b\":[1,2]}\n");
    }

    #[test]
    fn dotenv_keys_and_values() {
        let p =
            obj(json!({"my-param": "it's", "1st": 1.5, "flag": true, "none": null, "l": ["a"]}));
        let out = String::from_utf8(serialize(&p, Format::Dotenv).unwrap()).unwrap();
        // In the order given.
        assert_eq!(
            out,
            "MY_PARAM='it'\\''s'\n_1ST='1.5'\nFLAG='true'\nNONE=''\nL='[\"a\"]'\n"
        );
    }

    #[test]
    fn dotenv_rejects_shell_variables() {
        for name in ["path", "IFS", "ld-preload", "bash_env", "home"] {
            assert!(
                matches!(
                    check_dotenv_keys([name]),
                    Err(FormatError::ShellVariable(..))
                ),
                "{name}"
            );
        }
        assert!(check_dotenv_keys(["path_prefix", "user_home"]).is_ok());
    }

    #[test]
    fn dotenv_rejects_nul_and_collisions() {
        let p = obj(json!({"a": "x\u{0}y"}));
        assert_eq!(
            serialize(&p, Format::Dotenv),
            Err(FormatError::NulInDotenv("a".into()))
        );
        let p = obj(json!({"a-b": 1, "a_b": 2}));
        assert!(matches!(
            serialize(&p, Format::Dotenv),
            Err(FormatError::KeyCollision(_, _, k)) if k == "A_B"
        ));
    }

    #[test]
    fn yaml_quotes_everything_ambiguous() {
        let p = obj(json!({"yes": "no", "n": 1e300, "i": 3, "f": 1.0, "s": "~", "e": [], "o": {}}));
        let y = to_yaml(&p);
        assert_eq!(
            y,
            "\"yes\": \"no\"\n\"n\": 1.0e+300\n\"i\": 3\n\"f\": 1.0\n\"s\": \"~\"\n\"e\": []\n\"o\": {}\n"
        );
    }

    #[test]
    fn yaml_nested_and_long_keys() {
        let long = "k".repeat(1500);
        let mut p = Map::new();
        p.insert(long.clone(), json!([{"a": [1, [2]]}]));
        let y = to_yaml(&p);
        assert!(y.starts_with(&format!(
            "? \"{long}\"\n:\n  -\n    \"a\":\n      - 1\n      -\n        - 2\n"
        )));
    }
}
