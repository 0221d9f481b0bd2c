//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`, generated from the routes the
//! server serves: each handler's `#[utoipa::path]` (its path, parameters, bodies and
//! answers, with the types it takes and returns) and the router built from the same list
//! ([`crate::api::routes`]), so a route cannot be served undocumented.
//!
//! The answers every route of a kind can give are added here, once, from what the route
//! takes: 401 and 403 where a token is needed, 404 for a path parameter, 400/413/415/422
//! for a body, 400/422 for a query string, and 503 (the database is unavailable, or too
//! many open connections) everywhere. Each operation carries `x-attune-role`, the least role
//! that may call it.

use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// An error's body (RFC 9457), `application/problem+json`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ProblemBody {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// One sentence a user can act on.
    pub detail: String,
    /// For a 422: every violation, one sentence each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, api) = crate::api::routes().split_for_parts();
        finish(serde_json::to_value(api).unwrap_or(Value::Null))
    })
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemBody"}}}
    })
}

/// Adds the shared parts: the answers each kind of route can give, the security scheme,
/// the problem schema, the info block.
fn finish(mut doc: Value) -> Value {
    doc["info"] = json!({
        "title": "Attune API",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Run the actions of registered packs and follow their executions. Errors are application/problem+json (RFC 9457). See docs/api.md."
    });
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for op in item.values_mut() {
                add_common_answers(op);
            }
        }
    }
    let components = &mut doc["components"];
    if !components.is_object() {
        *components = json!({});
    }
    components["securitySchemes"] = json!({"bearer": {"type": "http", "scheme": "bearer",
        "description": "An API token (`attune token create`); its role decides what it may do"}});
    if !components["schemas"].is_object() {
        components["schemas"] = json!({});
    }
    components["schemas"]["ProblemBody"] =
        serde_json::to_value(<ProblemBody as utoipa::PartialSchema>::schema())
            .unwrap_or(Value::Null);
    refine(&mut doc);
    doc
}

/// What the derives cannot say.
fn refine(doc: &mut Value) {
    // The audit log's kinds, and their families (`secret` for `secret.*`).
    let mut kinds: Vec<&str> = attune_store::AUDIT_KINDS.to_vec();
    for k in attune_store::AUDIT_KINDS {
        let family = k.split('.').next().unwrap_or(k);
        if !kinds.contains(&family) {
            kinds.push(family);
        }
    }
    if let Some(params) = doc["paths"]["/api/v1/audit"]["get"]["parameters"].as_array_mut() {
        for p in params.iter_mut().filter(|p| p["name"] == "kind") {
            p["schema"] = json!({"type": "string", "enum": kinds});
        }
    }
    // A secret's value is any JSON value but null.
    let secret = &mut doc["components"]["schemas"]["SecretRequest"];
    if secret.is_object() {
        secret["properties"]["value"]["not"] = json!({"type": "null"});
    }
}

fn add_common_answers(op: &mut Value) {
    let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
    let params = op["parameters"].as_array().cloned().unwrap_or_default();
    let in_path = params.iter().any(|p| p["in"] == "path");
    let in_query = params.iter().any(|p| p["in"] == "query");
    let body_types: Vec<String> = op["requestBody"]["content"]
        .as_object()
        .map(|c| c.keys().cloned().collect())
        .unwrap_or_default();
    let mut add: Vec<(&str, &str)> = Vec::new();
    if secured {
        add.push(("401", "no token, or an unknown or revoked one"));
        add.push(("403", "the token's role may not do this"));
    }
    if in_path {
        add.push(("404", "nothing has this name or id"));
    }
    if in_query {
        add.push(("400", "a malformed query string"));
        add.push(("422", "a query parameter out of range; `errors` says which"));
    }
    if !body_types.is_empty() {
        add.push(("400", "a malformed body"));
        add.push(("413", "the body is larger than the server accepts"));
        add.push((
            "422",
            "the body is well-formed but invalid; `errors` lists every violation",
        ));
    }
    if body_types.iter().any(|t| t == "application/json") {
        add.push(("415", "the body is not `Content-Type: application/json`"));
    }
    add.push((
        "500",
        "an internal error, said in the server's log (for example stored secrets that the server's key cannot open)",
    ));
    add.push((
        "503",
        "the database is unavailable, or too many connections are open; try again",
    ));
    let responses = &mut op["responses"];
    if !responses.is_object() {
        *responses = Value::Object(Map::new());
    }
    if let Some(answers) = responses.as_object_mut() {
        for (status, answer) in answers.iter_mut() {
            if answer["description"].as_str().is_some_and(str::is_empty) {
                answer["description"] = Value::from(if status.starts_with('2') {
                    "success"
                } else {
                    "an error"
                });
            }
        }
    }
    for (status, description) in add {
        if responses.get(status).is_none() {
            responses[status] = problem(description);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Every operation documents its errors as problems, names its least role, and every
    /// `$ref` resolves.
    #[test]
    fn every_operation_is_complete() {
        let doc = super::document();
        let text = doc.to_string();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{method} {path} has no success answer"
                );
                for (status, r) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        assert!(
                            r["content"]["application/problem+json"].is_object(),
                            "{method} {path} {status} is not a problem"
                        );
                    }
                }
                if path.starts_with("/api/") {
                    assert!(
                        op["x-attune-role"].is_string(),
                        "{method} {path} names no role"
                    );
                    assert!(responses.contains_key("401"), "{method} {path}");
                }
            }
        }
        for (i, _) in text.match_indices("\"$ref\":\"#/components/schemas/") {
            let rest = &text[i + "\"$ref\":\"#/components/schemas/".len()..];
            let name = &rest[..rest.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "unresolved schema {name}"
            );
        }
        assert_eq!(doc["openapi"], Value::from("3.1.0"));
        // The scope parameter's pattern is the one the server parses with.
        let params = doc["paths"]["/api/v1/secrets"]["get"]["parameters"]
            .as_array()
            .unwrap();
        assert_eq!(
            params[0]["schema"]["pattern"],
            crate::secrets::Scope::PATTERN,
            "{params:?}"
        );
        // The probes need no token; everything else does.
        assert_eq!(
            doc["paths"]["/healthz"]["get"]["security"],
            serde_json::json!([{}])
        );
    }
}
