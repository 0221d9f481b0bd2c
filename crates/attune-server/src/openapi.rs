//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`. Each operation carries
//! `x-attune-role`, the least role that may call it, so tests can check every route.

use serde_json::{json, Value};

fn op(summary: &str, role: &str, ok: &str, extra: Value) -> Value {
    let mut o = json!({
        "summary": summary,
        "x-attune-role": role,
        "security": [{"bearer": []}],
        "responses": {
            ok: {"description": "success"},
            "401": {"$ref": "#/components/responses/Problem"},
            "403": {"$ref": "#/components/responses/Problem"}
        }
    });
    if let (Some(o), Value::Object(extra)) = (o.as_object_mut(), extra) {
        o.extend(extra);
    }
    o
}

fn path_param(name: &str) -> Value {
    json!({"parameters": [{"name": name, "in": "path", "required": true, "schema": {"type": "string"}}]})
}

fn scope_params() -> Value {
    json!({"parameters": [
        {"name": "pack", "in": "query", "schema": {"type": "string"}},
        {"name": "action", "in": "query", "schema": {"type": "string"}}]})
}

fn with_scope(path: &str) -> Value {
    let mut v = scope_params();
    if let Some(p) = v["parameters"].as_array_mut() {
        p.insert(
            0,
            json!({"name": path, "in": "path", "required": true, "schema": {"type": "string"}}),
        );
    }
    v
}

/// The document.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Attune API", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Problem": {"description": "an error", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}},
            "schemas": {
                "Problem": {"type": "object", "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                    "detail": {"type": "string"}, "errors": {"type": "array", "items": {"type": "string"}}}},
                "ExecutionRequest": {"type": "object", "required": ["action_ref"], "additionalProperties": false, "properties": {
                    "action_ref": {"type": "string"}, "parameters": {"type": "object"},
                    "env_vars": {"type": "object", "additionalProperties": {"type": "string"}},
                    "timeout": {"type": "integer", "minimum": 1}}},
                "Execution": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "action_ref": {"type": "string"},
                    "status": {"type": "string", "enum": ["requested", "scheduled", "running", "canceling", "succeeded", "failed", "timeout", "canceled", "abandoned"]},
                    "parameters": {"type": "object"}, "env_vars": {"type": "object"},
                    "exit_code": {"type": ["integer", "null"]}, "result": {}, "stdout": {"type": ["string", "null"]},
                    "stderr": {"type": ["string", "null"]}, "error": {"type": ["string", "null"]}}},
                "TokenRequest": {"type": "object", "required": ["role"], "properties": {
                    "name": {"type": "string"}, "role": {"type": "string", "enum": ["admin", "operator", "viewer"]}}},
                "SecretRequest": {"type": "object", "required": ["value"], "additionalProperties": false, "properties": {
                    "value": {"description": "a string, or any JSON value but null; at most 64 KiB as JSON"},
                    "pack": {"type": "string", "description": "scope: this pack's actions"},
                    "action": {"type": "string", "description": "scope: this action (<pack>.<action>)"}}},
                "Secret": {"type": "object", "properties": {
                    "name": {"type": "string"}, "scope": {"type": "string", "description": "global, pack:<pack> or action:<pack>.<action>"},
                    "created_at": {"type": "string"}, "created_by": {"type": "string"},
                    "updated_at": {"type": "string"}, "updated_by": {"type": "string"}}},
                "Token": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "name": {"type": "string"}, "role": {"type": "string"},
                    "created_at": {"type": "string"}, "last_used_at": {"type": ["string", "null"]}, "revoked_at": {"type": ["string", "null"]}}},
                "AuditEntry": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "at": {"type": "string"}, "actor": {"type": "string"},
                    "kind": {"type": "string"}, "subject": {"type": "string"}, "detail": {"type": "object"}}}
            }
        },
        "paths": {
            "/api/v1/openapi.json": {"get": op("This document", "viewer", "200", json!({}))},
            "/api/v1/actions": {"get": op("List actions", "viewer", "200", json!({}))},
            "/api/v1/actions/{action_ref}": {"get": op("Show an action", "viewer", "200", path_param("action_ref"))},
            "/api/v1/packs": {
                "get": op("List packs", "viewer", "200", json!({})),
                "post": op("Register a pack (body: pack bundle)", "admin", "201", json!({"requestBody": {"required": true, "content": {"application/octet-stream": {}}}}))
            },
            "/api/v1/packs/{pack_ref}": {"delete": op("Remove a pack", "admin", "204", path_param("pack_ref"))},
            "/api/v1/executions": {
                "get": op("List executions, newest first, without their output (a Link header names the next page)", "viewer", "200", json!({"parameters": [
                    {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["requested", "scheduled", "running", "canceling", "succeeded", "failed", "timeout", "canceled", "abandoned"]}},
                    {"name": "action", "in": "query", "schema": {"type": "string"}},
                    {"name": "before", "in": "query", "schema": {"type": "integer"}, "description": "only executions with a smaller id (the cursor)"},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}}]})),
                "post": op("Run an action", "operator", "201", json!({"requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExecutionRequest"}}}}}))
            },
            "/api/v1/executions/{id}": {"get": op("Show an execution", "viewer", "200", path_param("id"))},
            "/api/v1/executions/{id}/output": {"get": op("Stream an execution's output (NDJSON)", "viewer", "200", path_param("id"))},
            "/api/v1/executions/{id}/cancel": {"post": op("Cancel an execution", "operator", "202", path_param("id"))},
            "/api/v1/executions/{id}/rerun": {"post": op("Run an execution again", "operator", "201", path_param("id"))},
            "/api/v1/tokens": {
                "get": op("List API tokens (never a token)", "admin", "200", json!({})),
                "post": op("Create an API token", "admin", "201", json!({"requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TokenRequest"}}}}}))
            },
            "/api/v1/tokens/{token}": {"delete": op("Revoke the tokens with this name, or this id", "admin", "200", path_param("token"))},
            "/api/v1/secrets": {"get": op("List stored secrets (names and scopes, never values)", "operator", "200", scope_params())},
            "/api/v1/secrets/{name}": {
                "put": op("Store a secret (201 created, 200 replaced)", "admin", "201", json!({
                    "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SecretRequest"}}}}})),
                "delete": op("Delete a stored secret", "admin", "204", with_scope("name"))
            },
            "/api/v1/secrets/{name}/reveal": {"post": op("Show a stored secret's value (audited)", "admin", "200", with_scope("name"))},
            "/api/v1/audit": {"get": op("The audit log, newest first", "admin", "200", json!({"parameters": [
                {"name": "since", "in": "query", "schema": {"type": "string"}, "description": "RFC 3339 UTC time, or its date"},
                {"name": "kind", "in": "query", "schema": {"type": "string"}, "description": "a kind (secret.reveal) or family (secret)"},
                {"name": "before", "in": "query", "schema": {"type": "integer"}, "description": "only entries with a smaller id (paging)"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}}]}))}
        }
    })
}

#[cfg(test)]
mod tests {
    /// Every route the router serves is in the document (so the end-to-end auth test, which
    /// walks the document, covers it), and nothing is documented that is not served.
    #[test]
    fn the_document_lists_exactly_the_routes_served() {
        let source = [include_str!("api.rs"), include_str!("api_admin.rs")].concat();
        let mut served: Vec<String> = source
            .match_indices(".route(")
            .filter_map(|(i, m)| {
                let rest = source[i + m.len()..].trim_start().strip_prefix('"')?;
                Some(rest[..rest.find('"')?].to_string())
            })
            .filter(|p| p.starts_with("/api/"))
            .collect();
        served.sort();
        let doc = super::document();
        let mut documented: Vec<String> =
            doc["paths"].as_object().unwrap().keys().cloned().collect();
        documented.sort();
        assert_eq!(served, documented);
    }
}
