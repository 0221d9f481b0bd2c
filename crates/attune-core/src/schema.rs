//! An action's parameter schema (DESIGN.md §1, §2 step 1): both the JSON Schema
//! `{type: object, properties, required}` form and the flat `{name: {type, required, secret}}`
//! form normalise to one JSON Schema; defaults are applied, then the parameters are validated
//! and every violation is reported. Messages never show the value of a secret parameter.

use serde_json::{json, Map, Value};

/// A normalised, compiled parameter schema.
#[derive(Debug, Clone)]
pub struct ParamSchema {
    schema: Value,
    secret: Vec<String>,
    validator: std::sync::Arc<jsonschema::Validator>,
}

/// Why a parameter schema is unusable; the message names the key at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SchemaError(pub String);

/// Parameters that do not satisfy the schema: every violation, one line each.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{}", .0.join("; "))]
pub struct Violations(pub Vec<String>);

impl ParamSchema {
    /// Normalises and compiles the `parameters` value of an action's metadata (`None`: no
    /// parameters at all).
    pub fn from_metadata(raw: Option<&Value>) -> Result<ParamSchema, SchemaError> {
        let (schema, secret) = normalise(raw)?;
        let validator = compile(&schema)?;
        Ok(ParamSchema {
            schema,
            secret,
            validator: std::sync::Arc::new(validator),
        })
    }

    /// The normalised JSON Schema.
    pub fn json_schema(&self) -> &Value {
        &self.schema
    }

    /// The schema as shown to users (the API, `attune action show`): a secret parameter's
    /// `default`, `examples` and `const` are left out, since they are values of a secret.
    pub fn public_schema(&self) -> Value {
        let mut schema = self.schema.clone();
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            for name in &self.secret {
                if let Some(p) = props.get_mut(name).and_then(Value::as_object_mut) {
                    for k in ["default", "examples", "const"] {
                        p.remove(k);
                    }
                }
            }
        }
        schema
    }

    /// The names of the top-level parameters marked `secret: true`, sorted.
    pub fn secret_names(&self) -> &[String] {
        &self.secret
    }

    /// Whether the top-level parameter `name` is secret.
    pub fn is_secret(&self, name: &str) -> bool {
        self.secret
            .binary_search_by(|s| s.as_str().cmp(name))
            .is_ok()
    }

    /// The declared top-level parameters.
    pub fn properties(&self) -> Option<&Map<String, Value>> {
        self.schema.get("properties").and_then(Value::as_object)
    }

    /// The names of required top-level parameters.
    pub fn required(&self) -> Vec<&str> {
        self.schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// Applies defaults for missing top-level parameters, then validates.
    pub fn prepare(&self, params: Map<String, Value>) -> Result<Map<String, Value>, Violations> {
        self.prepare_hiding(params, &[])
    }

    /// Like [`ParamSchema::prepare`], also keeping the values of the parameters named in
    /// `also_secret` out of the messages (a value that was secret once stays secret).
    pub fn prepare_hiding(
        &self,
        mut params: Map<String, Value>,
        also_secret: &[String],
    ) -> Result<Map<String, Value>, Violations> {
        if let Some(props) = self.properties() {
            for (name, prop) in props {
                if let Some(default) = prop.get("default") {
                    if !params.contains_key(name) {
                        params.insert(name.clone(), default.clone());
                    }
                }
            }
        }
        let instance = Value::Object(params);
        let mut problems: Vec<String> = Vec::new();
        for err in self.validator.iter_errors(&instance) {
            let pointer = err.instance_path().to_string();
            let top = pointer
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or_default()
                .replace("~1", "/")
                .replace("~0", "~");
            let hide = self.is_secret(&top) || also_secret.contains(&top);
            let line = sentence(&err, &pointer, hide, self.properties());
            if !problems.contains(&line) {
                problems.push(line);
            }
        }
        match instance {
            Value::Object(params) if problems.is_empty() => Ok(params),
            _ => Err(Violations(problems)),
        }
    }

    /// Copies `params` with every secret parameter replaced by `"********"`.
    pub fn redact(&self, params: &Map<String, Value>) -> Map<String, Value> {
        self.redact_also(params, &[])
    }

    /// [`ParamSchema::redact_also`] of parameters no longer needed otherwise: the values
    /// that are not secret are moved, not copied.
    pub fn redact_owned(
        &self,
        mut params: Map<String, Value>,
        also_secret: &[String],
    ) -> Map<String, Value> {
        for (k, v) in params.iter_mut() {
            if self.is_secret(k) || also_secret.contains(k) {
                *v = Value::String(crate::REDACTED.into());
            }
        }
        params
    }

    /// Like [`ParamSchema::redact`], also redacting the parameters named in `also_secret`.
    pub fn redact_also(
        &self,
        params: &Map<String, Value>,
        also_secret: &[String],
    ) -> Map<String, Value> {
        params
            .iter()
            .map(|(k, v)| {
                if self.is_secret(k) || also_secret.contains(k) {
                    (k.clone(), Value::String(crate::REDACTED.into()))
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect()
    }

    /// The declared JSON type(s) of the top-level parameter `name`, for CLI coercion.
    pub fn declared_types(&self, name: &str) -> Vec<&str> {
        let Some(prop) = self.properties().and_then(|p| p.get(name)) else {
            return Vec::new();
        };
        match prop.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// The declared item type of an array parameter, if it is a single scalar type.
    pub fn item_type(&self, name: &str) -> Option<&str> {
        self.properties()?
            .get(name)?
            .get("items")?
            .get("type")?
            .as_str()
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// One violation as a sentence a user can act on: what, where, and (unless the value is a
/// secret's) what was given. Messages about the whole parameter object name parameters,
/// never values.
fn sentence(
    err: &jsonschema::ValidationError<'_>,
    pointer: &str,
    hide: bool,
    properties: Option<&Map<String, Value>>,
) -> String {
    use jsonschema::error::{TypeKind, ValidationErrorKind as K};
    let at = if pointer.is_empty() {
        "the parameters".to_string()
    } else {
        display_path(pointer)
    };
    let got = if hide {
        format!(
            ", got {} (a secret's value is not shown)",
            kind_of(err.instance())
        )
    } else {
        format!(", got {}", describe_value(err.instance()))
    };
    let list = |v: &Value| match v {
        Value::Array(a) => a
            .iter()
            .map(|x| truncate(x.to_string(), 40))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    match err.kind() {
        K::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            if pointer.is_empty() {
                format!("parameter `{name}` is required")
            } else {
                format!("{at} needs the key `{name}`")
            }
        }
        K::AdditionalProperties { unexpected } if pointer.is_empty() => {
            let names: Vec<String> = unexpected.iter().map(|n| format!("`{n}`")).collect();
            let allowed: Vec<&str> = properties
                .map(|p| p.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let hint = unexpected
                .first()
                .and_then(|u| crate::closest(u, allowed.iter().copied()))
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            format!(
                "unknown parameter{} {}{hint}; {}",
                if names.len() == 1 { "" } else { "s" },
                names.join(", "),
                if allowed.is_empty() {
                    "this action takes none".to_string()
                } else {
                    format!("allowed: {}", allowed.join(", "))
                }
            )
        }
        K::AdditionalProperties { unexpected } => {
            let names: Vec<String> = unexpected.iter().map(|n| format!("`{n}`")).collect();
            format!("{at} has unknown keys: {}", names.join(", "))
        }
        K::Type { kind } => {
            let want = match kind {
                TypeKind::Single(t) => a_type(&t.to_string()),
                TypeKind::Multiple(ts) => ts
                    .iter()
                    .map(|t| a_type(&t.to_string()))
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            format!("{at} must be {want}{got}")
        }
        K::Enum { options } if hide => format!("{at} must be one of the allowed values{got}"),
        K::Enum { options } => format!("{at} must be one of: {}{got}", list(options)),
        K::Constant { .. } if hide => format!("{at} must be the one allowed value{got}"),
        K::Constant { expected_value } => {
            format!(
                "{at} must be {}{got}",
                truncate(expected_value.to_string(), 60)
            )
        }
        K::Minimum { limit } => format!("{at} must be at least {limit}{got}"),
        K::Maximum { limit } => format!("{at} must be at most {limit}{got}"),
        K::ExclusiveMinimum { limit } => format!("{at} must be greater than {limit}{got}"),
        K::ExclusiveMaximum { limit } => format!("{at} must be less than {limit}{got}"),
        K::MultipleOf { multiple_of } => format!("{at} must be a multiple of {multiple_of}{got}"),
        K::MinLength { limit } => format!("{at} must be at least {limit} characters long{got}"),
        K::MaxLength { limit } => format!("{at} must be at most {limit} characters long{got}"),
        K::Pattern { pattern } => format!("{at} must match the pattern `{pattern}`{got}"),
        K::Format { format } => format!("{at} must be a valid {format}{got}"),
        K::MinItems { limit } => format!("{at} must have at least {limit} items"),
        K::MaxItems { limit } => format!("{at} must have at most {limit} items"),
        K::UniqueItems => format!("{at} must not repeat an item"),
        K::MinProperties { limit } => format!("{at} must have at least {limit} keys"),
        K::MaxProperties { limit } => format!("{at} must have at most {limit} keys"),
        K::FalseSchema => format!("{at} is not allowed here"),
        _ if pointer.is_empty() => err.masked_with("parameters").to_string(),
        _ if hide => format!("{at}: {}", err.masked_with("value")),
        _ => format!("{at}: {}", truncate(err.to_string(), 300)),
    }
}

/// `a string`, `an integer`…: a JSON Schema type name with its article.
fn a_type(t: &str) -> String {
    match t {
        "integer" | "object" | "array" => format!("an {t}"),
        "null" => "null".to_string(),
        other => format!("a {other}"),
    }
}

/// What kind of value `v` is, without the value.
fn kind_of(v: &Value) -> String {
    a_type(match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    })
}

/// `v` for a message: short scalars as they are, the rest by kind.
fn describe_value(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().count() <= 40 => format!("the string {v}"),
        Value::String(_) => "a long string".to_string(),
        Value::Number(_) | Value::Bool(_) | Value::Null => v.to_string(),
        other => kind_of(other),
    }
}

fn display_path(pointer: &str) -> String {
    let p = pointer.trim_start_matches('/');
    format!("`{}`", p.replace('/', "."))
}

fn compile(schema: &Value) -> Result<jsonschema::Validator, SchemaError> {
    options_for(schema).build(schema).map_err(|e| {
        SchemaError(format!(
            "key `parameters`: not a valid JSON Schema: {}",
            truncate(e.to_string(), 300)
        ))
    })
}

/// Options for compiling `schema`. Without a `$schema` keyword that is draft 2020-12, as
/// the crate would detect; saying so spares loading every other draft's meta-schemas, half
/// of what compiling costs `run --local` (about 60 µs).
fn options_for(schema: &Value) -> jsonschema::ValidationOptions<'static> {
    let options = jsonschema::options();
    if schema.get("$schema").is_some() {
        options
    } else {
        options.with_draft(jsonschema::Draft::Draft202012)
    }
}

/// Compiles an `output_schema`.
pub fn compile_output_schema(schema: &Value) -> Result<jsonschema::Validator, SchemaError> {
    if !schema.is_object() && !schema.is_boolean() {
        return Err(SchemaError(format!(
            "key `output_schema`: expected a JSON Schema mapping, got {}",
            crate::json_type_name(schema)
        )));
    }
    options_for(schema).build(schema).map_err(|e| {
        SchemaError(format!(
            "key `output_schema`: not a valid JSON Schema: {}",
            truncate(e.to_string(), 300)
        ))
    })
}

/// The keys of the flat form of a parameter's definition.
pub const FLAT_KEYS: &[&str] = &[
    "type",
    "description",
    "default",
    "required",
    "secret",
    "enum",
];

/// JSON Schema's own keywords (draft 2020-12, and drafts 4–7's `definitions` and
/// `dependencies`): allowed in a parameter's definition beside [`FLAT_KEYS`].
const SCHEMA_KEYWORDS: &[&str] = &[
    "$schema",
    "$id",
    "$ref",
    "$defs",
    "$comment",
    "$anchor",
    "$dynamicRef",
    "$dynamicAnchor",
    "$vocabulary",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "type",
    "enum",
    "const",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxContains",
    "minContains",
    "maxProperties",
    "minProperties",
    "required",
    "dependentRequired",
    "items",
    "prefixItems",
    "contains",
    "additionalProperties",
    "properties",
    "patternProperties",
    "propertyNames",
    "dependentSchemas",
    "unevaluatedItems",
    "unevaluatedProperties",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "format",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
    "definitions",
    "dependencies",
];

/// Refuses a key in parameter `name`'s definition that is neither of the flat form nor a
/// JSON Schema keyword: a misspelt `secret` must not quietly leave a password unprotected.
fn check_parameter_keys(name: &str, prop: &Map<String, Value>) -> Result<(), SchemaError> {
    for key in prop.keys() {
        if FLAT_KEYS.contains(&key.as_str()) || SCHEMA_KEYWORDS.contains(&key.as_str()) {
            continue;
        }
        let near = crate::closest(key, FLAT_KEYS.iter().chain(SCHEMA_KEYWORDS).copied())
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        return Err(SchemaError(format!(
            "key `parameters.{name}`: unknown key `{key}`{near}; allowed: {}, or a JSON Schema keyword (minLength, pattern, items, format, …)",
            FLAT_KEYS.join(", ")
        )));
    }
    Ok(())
}

fn normalise(raw: Option<&Value>) -> Result<(Value, Vec<String>), SchemaError> {
    let raw = match raw {
        None | Some(Value::Null) => {
            return Ok((
                json!({"type": "object", "properties": {}, "additionalProperties": false}),
                Vec::new(),
            ))
        }
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(SchemaError(format!(
                "key `parameters`: expected a mapping, got {}",
                crate::json_type_name(other)
            )))
        }
    };
    let object_form = raw.get("type").map(Value::is_string).unwrap_or(false);
    let mut schema: Map<String, Value>;
    let props: Map<String, Value>;
    let mut required: Vec<String> = Vec::new();
    if object_form {
        if raw.get("type") != Some(&json!("object")) {
            return Err(SchemaError(
                "key `parameters`: `type` must be `object` (parameters are always a mapping)"
                    .into(),
            ));
        }
        schema = raw.clone();
        props = match schema.remove("properties") {
            None => Map::new(),
            Some(Value::Object(p)) => p,
            Some(other) => {
                return Err(SchemaError(format!(
                    "key `parameters.properties`: expected a mapping, got {}",
                    crate::json_type_name(&other)
                )))
            }
        };
        match schema.remove("required") {
            None => {}
            Some(Value::Array(r)) => {
                for name in r {
                    match name {
                        Value::String(s) => required.push(s),
                        other => {
                            return Err(SchemaError(format!(
                                "key `parameters.required`: expected a list of parameter names, found {}",
                                crate::json_type_name(&other)
                            )))
                        }
                    }
                }
            }
            Some(other) => {
                return Err(SchemaError(format!(
                    "key `parameters.required`: expected a list of parameter names, got {}",
                    crate::json_type_name(&other)
                )))
            }
        }
    } else {
        schema = Map::new();
        schema.insert("type".into(), json!("object"));
        props = raw.clone();
    }
    let mut out_props = Map::new();
    let mut secret = Vec::new();
    for (name, prop) in props {
        let Value::Object(mut prop) = prop else {
            return Err(SchemaError(format!(
                "key `parameters.{name}`: expected a mapping such as {{type: string}}, got {}",
                crate::json_type_name(&prop)
            )));
        };
        check_parameter_keys(&name, &prop)?;
        match prop.remove("required") {
            None | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => required.push(name.clone()),
            Some(other) => {
                return Err(SchemaError(format!(
                    "key `parameters.{name}.required`: expected true or false, got {}",
                    crate::json_type_name(&other)
                )))
            }
        }
        match prop.get("secret") {
            None | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => secret.push(name.clone()),
            Some(other) => {
                return Err(SchemaError(format!(
                    "key `parameters.{name}.secret`: expected true or false, got {}",
                    crate::json_type_name(other)
                )))
            }
        }
        out_props.insert(name, Value::Object(prop));
    }
    required.sort();
    required.dedup();
    secret.sort();
    schema.insert("properties".into(), Value::Object(out_props));
    if !required.is_empty() {
        schema.insert("required".into(), json!(required));
    }
    schema
        .entry("additionalProperties")
        .or_insert(Value::Bool(false));
    Ok((Value::Object(schema), secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn redacting_owned_parameters_hides_the_same_ones() {
        let flat = json!({"msg": {"type": "string"}, "token": {"type": "string", "secret": true}, "pin": {"type": "string"}});
        let s = ParamSchema::from_metadata(Some(&flat)).unwrap();
        let p = obj(json!({"msg": "hi", "token": "s3cr3t", "pin": "1234"}));
        let also = ["pin".to_string()];
        let owned = s.redact_owned(p.clone(), &also);
        assert_eq!(owned, s.redact_also(&p, &also));
        assert_eq!(
            Value::Object(owned),
            json!({"msg": "hi", "token": "********", "pin": "********"})
        );
    }

    #[test]
    fn flat_and_object_forms_normalise_alike() {
        let flat = json!({"msg": {"type": "string", "required": true}, "token": {"type": "string", "secret": true}});
        let object = json!({"type": "object", "properties": {"msg": {"type": "string"}, "token": {"type": "string", "secret": true}}, "required": ["msg"]});
        let a = ParamSchema::from_metadata(Some(&flat)).unwrap();
        let b = ParamSchema::from_metadata(Some(&object)).unwrap();
        assert_eq!(a.json_schema(), b.json_schema());
        assert_eq!(a.secret_names(), ["token"]);
        // A secret's default is a value of the secret: never shown.
        let with_default = ParamSchema::from_metadata(Some(
            &json!({"token": {"type": "string", "secret": true, "default": "hunter2"}, "n": {"type": "integer", "default": 3}}),
        ))
        .unwrap();
        let shown = with_default.public_schema().to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("\"default\":3"), "{shown}");
    }

    #[test]
    fn a_misspelt_key_is_an_error_naming_the_parameter_and_the_allowed_keys() {
        let e =
            ParamSchema::from_metadata(Some(&json!({"pw": {"type": "string", "secrte": true}})))
                .unwrap_err();
        assert_eq!(
            e.0,
            "key `parameters.pw`: unknown key `secrte` (did you mean `secret`?); allowed: type, description, default, required, secret, enum, or a JSON Schema keyword (minLength, pattern, items, format, …)"
        );
        let e = ParamSchema::from_metadata(Some(
            &json!({"type": "object", "properties": {"n": {"type": "integer", "maxium": 3}}}),
        ))
        .unwrap_err();
        assert!(
            e.0.starts_with("key `parameters.n`: unknown key `maxium` (did you mean `maximum`?)"),
            "{}",
            e.0
        );
        let e = ParamSchema::from_metadata(Some(&json!({"x": {"type": "string", "wibble": 1}})))
            .unwrap_err();
        assert!(e.0.contains("unknown key `wibble`; allowed"), "{}", e.0);
        // JSON Schema's own keywords are fine.
        ParamSchema::from_metadata(Some(&json!({"x": {"type": "string", "minLength": 2, "pattern": "^a", "format": "email", "title": "X", "examples": ["ab"]}})))
            .unwrap();
    }

    #[test]
    fn defaults_then_every_violation() {
        let s = ParamSchema::from_metadata(Some(&json!({
            "count": {"type": "integer", "default": 3},
            "msg": {"type": "string", "required": true},
            "pw": {"type": "string", "secret": true, "minLength": 50}
        })))
        .unwrap();
        assert_eq!(
            s.prepare(obj(json!({"msg": "hi"}))).unwrap()["count"],
            json!(3)
        );
        let err = s
            .prepare(obj(
                json!({"count": "x", "pw": "hunter2-secret", "extra": 1}),
            ))
            .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 4, "{text}");
        assert!(text.contains("`count`"), "{text}");
        assert!(text.contains("msg"), "{text}");
        assert!(text.contains("extra"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn no_parameters_means_none_allowed() {
        let s = ParamSchema::from_metadata(None).unwrap();
        assert!(s.prepare(Map::new()).is_ok());
        assert!(s.prepare(obj(json!({"x": 1}))).is_err());
    }

    #[test]
    fn bad_schemas_are_named() {
        let e = ParamSchema::from_metadata(Some(&json!({"x": "string"}))).unwrap_err();
        assert!(e.0.contains("parameters.x"), "{e}");
        let e = ParamSchema::from_metadata(Some(&json!({"x": {"type": "strin"}}))).unwrap_err();
        assert!(e.0.contains("not a valid JSON Schema"), "{e}");
    }
}
