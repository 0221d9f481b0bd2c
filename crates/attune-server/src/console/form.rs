//! The run form of an action, generated from its parameter schema, and the request it
//! makes: one labelled field per parameter, typed by the schema; secret parameters are
//! password fields whose values are never written back into a page.

use maud::{html, Markup};
use serde_json::{Map, Number, Value};
use std::collections::{BTreeMap, HashMap};

/// How a parameter is entered.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A line of text.
    Text,
    /// A number (`integer` or `number`).
    Number,
    /// A checkbox.
    Bool,
    /// A select of the schema's `enum` values.
    Enum(Vec<Value>),
    /// JSON text, for objects, arrays and anything else.
    Json,
}

/// One parameter of the form.
#[derive(Debug, Clone)]
pub struct Field {
    /// The parameter's name.
    pub name: String,
    /// How it is entered.
    pub kind: Kind,
    /// Whether the schema requires it.
    pub required: bool,
    /// Whether it is `secret: true`.
    pub secret: bool,
    /// The schema's default.
    pub default: Option<Value>,
    /// The schema's description.
    pub description: Option<String>,
}

impl Field {
    /// The element id of its input.
    pub fn id(&self) -> String {
        format!("p-{}", css_id(&self.name))
    }
}

/// `name` with every character outside `[A-Za-z0-9_-]` replaced, for an element id.
fn css_id(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The fields of a (normalised) parameter schema, in its order.
pub fn fields(schema: &Value, secret: &[String]) -> Vec<Field> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = schema["properties"].as_object() else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, p)| {
            let kind = if let Some(e) = p["enum"].as_array() {
                Kind::Enum(e.clone())
            } else {
                match p["type"].as_str() {
                    Some("string") => Kind::Text,
                    Some("integer") | Some("number") => Kind::Number,
                    Some("boolean") => Kind::Bool,
                    None if p.get("type").is_none() => Kind::Text,
                    _ => Kind::Json,
                }
            };
            Field {
                name: name.clone(),
                kind,
                required: required.contains(&name.as_str()),
                secret: secret.contains(name) || p["secret"] == Value::Bool(true),
                default: p.get("default").cloned(),
                description: p["description"].as_str().map(str::to_string),
            }
        })
        .collect()
}

/// What the user entered, to fill the form again after an error (never secret values).
#[derive(Debug, Default)]
pub struct Entered {
    /// Parameter name → the text entered.
    pub params: HashMap<String, String>,
    /// Environment variable rows.
    pub env: Vec<(String, String)>,
    /// The timeout field.
    pub timeout: String,
    /// Whether this is a form sent back (then an unchecked box stays unchecked).
    pub submitted: bool,
}

/// Errors to show: by parameter, for the env vars, for the timeout, and the rest.
#[derive(Debug, Default)]
pub struct Errors {
    /// Parameter name → its errors.
    pub params: BTreeMap<String, Vec<String>>,
    /// The env vars' errors.
    pub env: Vec<String>,
    /// The timeout's errors.
    pub timeout: Vec<String>,
    /// Errors about no one field.
    pub general: Vec<String>,
}

impl Errors {
    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
            && self.env.is_empty()
            && self.timeout.is_empty()
            && self.general.is_empty()
    }

    /// Files each of the API's violations under the parameter it names (its first
    /// back-quoted name, up to a `.`), or under no field.
    pub fn file(&mut self, fields: &[Field], violations: &[String]) {
        for v in violations {
            let named = v
                .split('`')
                .nth(1)
                .map(|n| n.split(['.', '/', '[']).next().unwrap_or(n));
            match named.filter(|n| fields.iter().any(|f| f.name == *n)) {
                Some(n) => self
                    .params
                    .entry(n.to_string())
                    .or_default()
                    .push(v.clone()),
                None => self.general.push(v.clone()),
            }
        }
    }
}

/// Reads the form's fields into an execution request (`parameters`, `env_vars`, `timeout`),
/// or the errors of the fields that cannot be read.
pub fn read(
    fields: &[Field],
    form: &[(String, String)],
) -> (Entered, Result<Map<String, Value>, Errors>) {
    let mut entered = Entered {
        submitted: true,
        ..Entered::default()
    };
    let mut errors = Errors::default();
    let mut names = Vec::new();
    let mut values = Vec::new();
    for (k, v) in form {
        match k.as_str() {
            "env_name" => names.push(v.trim().to_string()),
            "env_value" => values.push(v.clone()),
            "timeout" => entered.timeout = v.trim().to_string(),
            _ => {
                if let Some(p) = k.strip_prefix("p.") {
                    entered.params.insert(p.to_string(), v.clone());
                }
            }
        }
    }
    let mut params = Map::new();
    for f in fields {
        let given = entered.params.get(&f.name).map(String::as_str);
        let mut bad = |msg: String| errors.params.entry(f.name.clone()).or_default().push(msg);
        match (&f.kind, given) {
            (Kind::Bool, g) => {
                params.insert(f.name.clone(), Value::Bool(g == Some("true")));
            }
            (_, None) | (_, Some("")) => {}
            (Kind::Text, Some(s)) => {
                params.insert(f.name.clone(), Value::String(s.to_string()));
            }
            (Kind::Number, Some(s)) => match number(s.trim()) {
                Some(n) => {
                    params.insert(f.name.clone(), Value::Number(n));
                }
                None => bad(format!("`{}` must be a number", f.name)),
            },
            (Kind::Enum(options), Some(s)) => {
                match s.parse::<usize>().ok().and_then(|i| options.get(i)) {
                    Some(v) => {
                        params.insert(f.name.clone(), v.clone());
                    }
                    None => bad(format!("`{}` must be one of the listed values", f.name)),
                }
            }
            (Kind::Json, Some(s)) => match serde_json::from_str::<Value>(s) {
                Ok(v) => {
                    params.insert(f.name.clone(), v);
                }
                // serde_json's message can quote the text: say where, not what.
                Err(e) => bad(format!(
                    "`{}` is not valid JSON (line {}, column {})",
                    f.name,
                    e.line(),
                    e.column()
                )),
            },
        }
    }
    // Secret values are not kept for the form: it never shows them again.
    entered
        .params
        .retain(|k, _| !fields.iter().any(|f| f.secret && f.name == *k));
    let mut env = Map::new();
    for (i, name) in names.iter().enumerate() {
        let value = values.get(i).cloned().unwrap_or_default();
        if name.is_empty() && value.is_empty() {
            continue;
        }
        entered.env.push((name.clone(), value.clone()));
        if name.is_empty() {
            errors
                .env
                .push(format!("variable {} has a value but no name", i + 1));
        } else {
            env.insert(name.clone(), Value::String(value));
        }
    }
    if !env.is_empty() {
        if let Err(e) = attune_core::EnvVars::from_json(&Value::Object(env.clone())) {
            errors.env.push(e.to_string());
        }
    }
    let timeout = if entered.timeout.is_empty() {
        None
    } else {
        match entered.timeout.parse::<u64>() {
            Ok(t) if t > 0 => Some(t),
            _ => {
                errors
                    .timeout
                    .push("the timeout must be a whole number of seconds, at least 1".into());
                None
            }
        }
    };
    if !errors.is_empty() {
        return (entered, Err(errors));
    }
    let mut body = Map::new();
    body.insert("parameters".into(), Value::Object(params));
    if !env.is_empty() {
        body.insert("env_vars".into(), Value::Object(env));
    }
    if let Some(t) = timeout {
        body.insert("timeout".into(), Value::from(t));
    }
    (entered, Ok(body))
}

/// A number typed into a field: an integer if it is one.
fn number(s: &str) -> Option<Number> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Number::from(i));
    }
    s.parse::<f64>().ok().and_then(Number::from_f64)
}

/// The text a field shows: what was entered, else the default.
fn shown(f: &Field, entered: &Entered) -> String {
    if f.secret {
        return String::new();
    }
    if let Some(v) = entered.params.get(&f.name) {
        return v.clone();
    }
    match (&f.kind, &f.default) {
        (_, None) => String::new(),
        (Kind::Enum(options), Some(d)) => options
            .iter()
            .position(|o| o == d)
            .map(|i| i.to_string())
            .unwrap_or_default(),
        (Kind::Json, Some(d)) => serde_json::to_string_pretty(d).unwrap_or_default(),
        (_, Some(Value::String(s))) => s.clone(),
        (_, Some(d)) => d.to_string(),
    }
}

/// Error messages under a field, with the id its input refers to.
fn field_errors(id: &str, errors: &[String]) -> Markup {
    html! {
        @if !errors.is_empty() {
            ul.field-error id=(id) {
                @for e in errors { li { (e) } }
            }
        }
    }
}

/// The run form.
pub fn render(
    action_ref: &str,
    fields: &[Field],
    entered: &Entered,
    errors: &Errors,
    csrf: &str,
) -> Markup {
    let none: Vec<String> = Vec::new();
    let env_rows = entered.env.len().max(2) + 1;
    html! {
        form.run method="post" action={ "/actions/" (action_ref) "/run" } novalidate {
            input type="hidden" name="csrf" value=(csrf);
            @if !errors.general.is_empty() {
                div.problem role="alert" {
                    p { "The action was not run:" }
                    ul { @for e in &errors.general { li { (e) } } }
                }
            }
            @if fields.is_empty() {
                p { "This action takes no parameters." }
            }
            @for f in fields {
                @let id = f.id();
                @let errs = errors.params.get(&f.name).unwrap_or(&none);
                @let err_id = format!("{id}-error");
                @let hint_id = format!("{id}-hint");
                @let described = match (f.description.is_some(), errs.is_empty()) {
                    (true, false) => format!("{hint_id} {err_id}"),
                    (true, true) => hint_id.clone(),
                    (false, false) => err_id.clone(),
                    (false, true) => String::new(),
                };
                @let value = shown(f, entered);
                div class={ "field" @if !errs.is_empty() { " invalid" } } {
                    label for=(id) {
                        (f.name)
                        @if f.required { " " span.req { "(required)" } }
                        @if f.secret { " " span.tag { "secret" } }
                    }
                    @if let Some(d) = &f.description {
                        p.hint id=(hint_id) { (d) }
                    }
                    @match &f.kind {
                        Kind::Bool => {
                            @let checked = if entered.submitted {
                                entered.params.get(&f.name).is_some_and(|v| v == "true")
                            } else {
                                f.default == Some(Value::Bool(true))
                            };
                            input type="checkbox" id=(id) name={ "p." (f.name) } value="true"
                                checked[checked] aria-invalid=[(!errs.is_empty()).then_some("true")]
                                aria-describedby=[(!described.is_empty()).then_some(&described)];
                        }
                        Kind::Enum(options) => {
                            select id=(id) name={ "p." (f.name) } required[f.required]
                                aria-invalid=[(!errs.is_empty()).then_some("true")]
                                aria-describedby=[(!described.is_empty()).then_some(&described)] {
                                @if !f.required || value.is_empty() {
                                    option value="" { "—" }
                                }
                                @for (i, o) in options.iter().enumerate() {
                                    @let v = i.to_string();
                                    option value=(v) selected[v == value] { (super::view::text(o)) }
                                }
                            }
                        }
                        // A secret object or array is typed on one line, hidden.
                        Kind::Json if !f.secret => {
                            textarea id=(id) name={ "p." (f.name) } rows="4" spellcheck="false"
                                required[f.required] placeholder="JSON"
                                aria-invalid=[(!errs.is_empty()).then_some("true")]
                                aria-describedby=[(!described.is_empty()).then_some(&described)] { (value) }
                        }
                        kind => {
                            @let ty = if f.secret { "password" } else { "text" };
                            @let mode = (*kind == Kind::Number).then_some("decimal");
                            @let hint = (*kind == Kind::Json).then_some("JSON");
                            input type=(ty) id=(id) name={ "p." (f.name) } value=(value)
                                inputmode=[mode] required[f.required] placeholder=[hint]
                                autocomplete=[f.secret.then_some("new-password")]
                                aria-invalid=[(!errs.is_empty()).then_some("true")]
                                aria-describedby=[(!described.is_empty()).then_some(&described)];
                        }
                    }
                    (field_errors(&err_id, errs))
                }
            }
            fieldset.env {
                legend { "Environment variables" }
                @for i in 0..env_rows {
                    @let (k, v) = entered.env.get(i).cloned().unwrap_or_default();
                    div.env-row {
                        label for={ "env-name-" (i) } { "Variable " (i + 1) " name" }
                        input type="text" id={ "env-name-" (i) } name="env_name" value=(k) autocomplete="off";
                        label for={ "env-value-" (i) } { "Variable " (i + 1) " value" }
                        input type="text" id={ "env-value-" (i) } name="env_value" value=(v) autocomplete="off";
                    }
                }
                (field_errors("env-error", &errors.env))
                button.secondary type="button" id="add-env" hidden { "Add a variable" }
            }
            div class={ "field" @if !errors.timeout.is_empty() { " invalid" } } {
                label for="timeout" { "Timeout (seconds)" }
                input type="text" inputmode="numeric" id="timeout" name="timeout" value=(entered.timeout)
                    aria-describedby=[(!errors.timeout.is_empty()).then_some("timeout-error")];
                (field_errors("timeout-error", &errors.timeout))
            }
            button type="submit" { "Run" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "message": {"type": "string", "description": "say"},
            "count": {"type": "integer", "default": 2},
            "loud": {"type": "boolean", "default": true},
            "method": {"type": "string", "enum": ["GET", "POST"], "default": "GET"},
            "headers": {"type": "object", "default": {}},
            "token": {"type": "string", "secret": true}
        }, "required": ["message"]})
    }

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fields_follow_the_schema() {
        let f = fields(&schema(), &["token".into()]);
        let kinds: Vec<_> = f
            .iter()
            .map(|f| (f.name.as_str(), f.kind.clone()))
            .collect();
        assert_eq!(kinds[0], ("message", Kind::Text));
        assert_eq!(kinds[1], ("count", Kind::Number));
        assert_eq!(kinds[2], ("loud", Kind::Bool));
        assert!(matches!(kinds[3].1, Kind::Enum(_)));
        assert_eq!(kinds[4], ("headers", Kind::Json));
        assert!(f[0].required && !f[1].required);
        assert!(f[5].secret);
    }

    #[test]
    fn a_form_becomes_a_request() {
        let f = fields(&schema(), &["token".into()]);
        let (entered, body) = read(
            &f,
            &form(&[
                ("p.message", "hi"),
                ("p.count", "3"),
                ("p.method", "1"),
                ("p.headers", "{\"a\": \"b\"}"),
                ("p.token", "s3cr3t-value"),
                ("env_name", "COLOR"),
                ("env_value", "blue"),
                ("env_name", ""),
                ("env_value", ""),
                ("timeout", "30"),
            ]),
        );
        let body = body.unwrap();
        assert_eq!(
            Value::Object(body),
            json!({"parameters": {"message": "hi", "count": 3, "loud": false, "method": "POST",
                "headers": {"a": "b"}, "token": "s3cr3t-value"},
                "env_vars": {"COLOR": "blue"}, "timeout": 30})
        );
        assert!(
            !entered.params.contains_key("token"),
            "a secret is not kept"
        );
    }

    #[test]
    fn unreadable_fields_are_errors_next_to_them() {
        let f = fields(&schema(), &[]);
        let (_, body) = read(
            &f,
            &form(&[("p.count", "many"), ("p.headers", "{"), ("timeout", "-1")]),
        );
        let e = body.unwrap_err();
        assert!(e.params["count"][0].contains("number"));
        assert!(e.params["headers"][0].contains("JSON"));
        assert!(!e.timeout.is_empty());
    }

    #[test]
    fn violations_are_filed_under_their_parameter() {
        let f = fields(&schema(), &[]);
        let mut e = Errors::default();
        e.file(
            &f,
            &[
                "parameter `message` is required".into(),
                "`count` must be at least 0, got -1".into(),
                "unknown parameter `nope`".into(),
            ],
        );
        assert_eq!(e.params["message"].len(), 1);
        assert_eq!(e.params["count"].len(), 1);
        assert_eq!(e.general.len(), 1);
    }

    #[test]
    fn secret_values_are_never_rendered() {
        let f = fields(&schema(), &["token".into()]);
        let (entered, _) = read(&f, &form(&[("p.token", "s3cr3t-value")]));
        let html = render("x.y", &f, &entered, &Errors::default(), "c").into_string();
        assert!(!html.contains("s3cr3t-value"));
        assert!(html.contains("type=\"password\""));
    }

    #[test]
    fn a_secret_object_is_a_password_input_too() {
        let f = fields(&schema(), &["headers".into()]);
        let (entered, _) = read(&f, &form(&[("p.headers", "{\"k\": \"s3cr3t\"}")]));
        let html = render("x.y", &f, &entered, &Errors::default(), "c").into_string();
        assert!(!html.contains("s3cr3t"));
        assert!(!html.contains("textarea"), "{html}");
        assert!(html.contains("id=\"p-headers\"") || html.contains("name=\"p.headers\""));
        let input = html.split("name=\"p.headers\"").next().unwrap_or_default();
        assert!(
            input
                .rsplit("<input")
                .next()
                .unwrap_or_default()
                .contains("type=\"password\""),
            "{html}"
        );
    }
}
