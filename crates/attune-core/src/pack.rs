//! Packs on disk (DESIGN.md §1): a directory with `pack.yaml` and `actions/*.yaml`.

use crate::action::Action;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Why a pack or one of its actions cannot be loaded. Each message names the file and,
/// where there is one, the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// What was being read.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The directory has no `pack.yaml`.
    #[error("{0} is not a pack: it has no pack.yaml")]
    NotAPack(PathBuf),
    /// Metadata that is malformed or invalid.
    #[error("{file}: {message}")]
    Invalid {
        /// The metadata file.
        file: PathBuf,
        /// What is wrong, naming the key and the allowed values.
        message: String,
    },
    /// No action of that name in the pack.
    #[error("action `{action_ref}` not found in pack {dir}{}", available_list(.action_ref, .available))]
    ActionNotFound {
        /// The requested ref.
        action_ref: String,
        /// The pack directory.
        dir: PathBuf,
        /// The actions the pack has.
        available: Vec<String>,
    },
    /// Two metadata files declare the same action name.
    #[error("{second}: action name `{name}` is already declared in {first}")]
    DuplicateAction {
        /// The duplicated name.
        name: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
}

fn available_list(wanted: &str, v: &[String]) -> String {
    if v.is_empty() {
        return " (it has no actions)".into();
    }
    let hint = crate::closest(wanted, v.iter().map(String::as_str))
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default();
    format!("{hint} (it has: {})", v.join(", "))
}

impl PackError {
    pub(crate) fn invalid(file: &Path, message: impl Into<String>) -> PackError {
        PackError::Invalid {
            file: file.to_path_buf(),
            message: message.into(),
        }
    }
}

const PACK_KEYS: &[&str] = &[
    "ref",
    "name",
    "version",
    "description",
    "author",
    "email",
    "keywords",
];

/// A pack's metadata and location.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pack {
    /// The pack's ref, `[a-z0-9_]+`.
    #[serde(rename = "ref")]
    pub pack_ref: String,
    /// Display name.
    pub name: Option<String>,
    /// Version string.
    pub version: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// The directory as given (used in messages).
    #[serde(skip)]
    pub dir: PathBuf,
    /// The directory with symlinks resolved (entry points must stay inside it).
    #[serde(skip)]
    pub root: PathBuf,
}

/// Reads a YAML metadata file into a JSON value, with the file named in any error.
pub(crate) fn read_yaml(file: &Path) -> Result<Value, PackError> {
    let text = std::fs::read_to_string(file).map_err(|source| PackError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    parse_yaml(file, &text)
}

/// How deeply metadata may nest (flow collections `[`/`{`), checked before parsing: the
/// parser takes quadratic time on deep flow nesting.
pub const MAX_YAML_DEPTH: usize = 64;

pub(crate) fn parse_yaml(file: &Path, text: &str) -> Result<Value, PackError> {
    if flow_depth(text) > MAX_YAML_DEPTH {
        return Err(PackError::invalid(
            file,
            format!("malformed YAML: nested more than {MAX_YAML_DEPTH} levels deep"),
        ));
    }
    serde_yaml_ng::from_str::<StrictValue>(text)
        .map(|v| v.0)
        .map_err(|e| PackError::invalid(file, format!("malformed YAML: {e}")))
}

/// The deepest nesting of `[` and `{` outside quoted strings and comments.
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut quote: Option<u8> = None;
    let mut prev = b'\n';
    let mut comment = false;
    for &b in text.as_bytes() {
        if comment {
            comment = b != b'\n';
        } else if let Some(q) = quote {
            if b == q {
                quote = None;
            }
        } else {
            match b {
                b'#' if prev == b' ' || prev == b'\n' || prev == b'\t' => comment = true,
                b'\'' | b'"'
                    if matches!(prev, b' ' | b'\n' | b'\t' | b'[' | b'{' | b',' | b':') =>
                {
                    quote = Some(b)
                }
                b'[' | b'{' => {
                    depth += 1;
                    max = max.max(depth);
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        prev = b;
    }
    max
}

/// A JSON value read from YAML that refuses duplicate mapping keys (serde_json's own
/// `Value` keeps the last one silently).
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(StrictValue(k)) = map.next_key()? {
            let key = match k {
                Value::String(s) => s,
                other => other.to_string(),
            };
            let StrictValue(v) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
            }
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

pub(crate) fn opt_string(
    file: &Path,
    map: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<String>, PackError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(PackError::invalid(
            file,
            format!(
                "key `{key}`: expected a string, got {} (quote it: {key}: \"…\")",
                crate::json_type_name(other)
            ),
        )),
    }
}

pub(crate) fn check_keys(
    file: &Path,
    map: &serde_json::Map<String, Value>,
    allowed: &[&str],
) -> Result<(), PackError> {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(PackError::invalid(
                file,
                format!("unknown key `{key}`; allowed keys: {}", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

impl Pack {
    /// Reads `pack.yaml` in `dir`.
    pub fn open(dir: &Path) -> Result<Pack, PackError> {
        let file = dir.join("pack.yaml");
        let value = match std::fs::read_to_string(&file) {
            Ok(text) => parse_yaml(&file, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if dir.is_dir() {
                    return Err(PackError::NotAPack(dir.to_path_buf()));
                }
                return Err(PackError::Io {
                    path: dir.to_path_buf(),
                    source: e,
                });
            }
            Err(source) => return Err(PackError::Io { path: file, source }),
        };
        let Value::Object(map) = value else {
            return Err(PackError::invalid(
                &file,
                format!(
                    "expected a mapping of keys, got {}",
                    crate::json_type_name(&value)
                ),
            ));
        };
        check_keys(&file, &map, PACK_KEYS)?;
        let pack_ref = opt_string(&file, &map, "ref")?
            .ok_or_else(|| PackError::invalid(&file, "key `ref` is required ([a-z0-9_]+)"))?;
        if !crate::is_valid_name(&pack_ref) {
            return Err(PackError::invalid(
                &file,
                format!("key `ref`: `{pack_ref}` is invalid; use lower-case letters, digits and _ ([a-z0-9_]+)"),
            ));
        }
        if let Some(k) = map.get("keywords") {
            if !k.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
                return Err(PackError::invalid(
                    &file,
                    "key `keywords`: expected a list of strings",
                ));
            }
        }
        opt_string(&file, &map, "author")?;
        opt_string(&file, &map, "email")?;
        let root = dir.canonicalize().map_err(|source| PackError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Pack {
            pack_ref,
            name: opt_string(&file, &map, "name")?,
            version: opt_string(&file, &map, "version")?,
            description: opt_string(&file, &map, "description")?,
            dir: dir.to_path_buf(),
            root,
        })
    }

    /// The metadata files under `actions/`, sorted.
    pub fn action_files(&self) -> Result<Vec<PathBuf>, PackError> {
        let dir = self.dir.join("actions");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(PackError::Io { path: dir, source }),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| PackError::Io {
                path: dir.clone(),
                source,
            })?;
            let path = entry.path();
            let is_meta = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
            if is_meta && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    /// Loads and validates every action of the pack, as registration does: any invalid
    /// file fails the whole pack.
    pub fn load_actions(&self) -> Result<Vec<Action>, PackError> {
        let mut actions: Vec<Action> = Vec::new();
        for file in self.action_files()? {
            let action = Action::load(self, &file)?;
            if let Some(prev) = actions.iter().find(|a| a.name == action.name) {
                return Err(PackError::DuplicateAction {
                    name: action.name.clone(),
                    first: prev.metadata_file.clone(),
                    second: file,
                });
            }
            actions.push(action);
        }
        Ok(actions)
    }

    /// Loads the action called `name`, reading `actions/<name>.yaml` first and the other
    /// metadata files only if that is not it.
    pub fn load_action(&self, name: &str) -> Result<Action, PackError> {
        let actions = self.dir.join("actions");
        for ext in ["yaml", "yml"] {
            let guess = actions.join(format!("{name}.{ext}"));
            if guess.is_file() {
                let action = Action::load(self, &guess)?;
                if action.name == name {
                    return Ok(action);
                }
            }
        }
        let mut available = Vec::new();
        for file in self.action_files()? {
            let action = Action::load(self, &file)?;
            if action.name == name {
                return Ok(action);
            }
            available.push(action.action_ref.clone());
        }
        Err(PackError::ActionNotFound {
            action_ref: format!("{}.{name}", self.pack_ref),
            dir: self.dir.clone(),
            available,
        })
    }
}
