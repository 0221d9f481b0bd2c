//! The admin side of the API (docs/api.md): the secret store, tokens and the audit log.
//! Secret values are write-only, except for an admin's audited reveal.

use crate::api::{sealed_problem, ApiJson};
use crate::auth::{hash_token, new_token, Caller, Role};
use crate::problem::Problem;
use crate::secrets::{check_name, Scope};
use crate::App;
use attune_store::{AuditEntry, AuditFilter};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

type ApiResult = Result<Response, Problem>;

/// The largest secret value accepted, as JSON text.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// The routes of this module.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/secrets", get(list_secrets))
        .route(
            "/api/v1/secrets/{name}",
            axum::routing::put(put_secret).delete(delete_secret),
        )
        .route("/api/v1/secrets/{name}/reveal", post(reveal_secret))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route(
            "/api/v1/tokens/{token}",
            axum::routing::delete(revoke_token),
        )
        .route("/api/v1/audit", get(list_audit))
}

/// `?pack=` or `?action=`: the scope of a secret.
#[derive(serde::Deserialize)]
struct ScopeQuery {
    pack: Option<String>,
    action: Option<String>,
}

impl ScopeQuery {
    fn scope(&self) -> Result<Scope, Problem> {
        Scope::from_parts(self.pack.as_deref(), self.action.as_deref())
            .map_err(|e| Problem::invalid("invalid scope", vec![e]))
    }
}

fn secret_name(name: &str) -> Result<(), Problem> {
    check_name(name).map_err(|e| Problem::invalid("invalid secret name", vec![e]))
}

/// For a route on one stored secret: an admin, a valid name; its scope.
fn admin_on_secret(caller: &Caller, name: &str, q: &ScopeQuery) -> Result<String, Problem> {
    caller.require(Role::Admin)?;
    secret_name(name)?;
    Ok(q.scope()?.as_str())
}

async fn list_secrets(
    caller: Caller,
    State(app): State<Arc<App>>,
    Query(q): Query<ScopeQuery>,
) -> ApiResult {
    caller.require(Role::Operator)?;
    let scope = match (&q.pack, &q.action) {
        (None, None) => None,
        _ => Some(q.scope()?.as_str()),
    };
    Ok(Json(app.store.list_secrets(scope.as_deref()).await?).into_response())
}

async fn put_secret(
    caller: Caller,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson,
) -> ApiResult {
    caller.require(Role::Admin)?;
    secret_name(&name)?;
    let Value::Object(mut body) = body else {
        return Err(Problem::invalid(
            "the body must be a JSON object",
            vec!["expected {\"value\": …, \"pack\" or \"action\": … (optional)}".into()],
        ));
    };
    let mut errors = Vec::new();
    for key in body.keys() {
        if !["value", "pack", "action"].contains(&key.as_str()) {
            errors.push(format!(
                "unknown field `{key}`; allowed: value, pack, action"
            ));
        }
    }
    let text = |k: &str, errors: &mut Vec<String>| match body.get(k) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push(format!("`{k}` must be a string"));
            None
        }
    };
    let pack = text("pack", &mut errors);
    let action = text("action", &mut errors);
    let scope = Scope::from_parts(pack.as_deref(), action.as_deref()).map_err(|e| errors.push(e));
    let value = match body.remove("value") {
        None | Some(Value::Null) => {
            errors.push("`value` is required: a string, or any JSON value but null".into());
            None
        }
        Some(v) if v.to_string().len() > MAX_SECRET_BYTES => {
            errors.push(format!(
                "`value` is larger than {MAX_SECRET_BYTES} bytes (as JSON)"
            ));
            None
        }
        Some(v) => Some(v),
    };
    let (Ok(scope), Some(value), true) = (scope, value, errors.is_empty()) else {
        return Err(Problem::invalid("invalid secret", errors));
    };
    let sealed = app
        .secrets
        .seal_stored(&scope, &name, &value)
        .map_err(Problem::internal)?;
    let scope = scope.as_str();
    let created = app
        .store
        .put_secret(&scope, &name, &sealed, &caller.name)
        .await?;
    crate::log::info(&format!(
        "secret `{name}` ({scope}) {} by {}",
        if created { "created" } else { "updated" },
        caller.name
    ));
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"name": name, "scope": scope, "created": created})),
    )
        .into_response())
}

async fn delete_secret(
    caller: Caller,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Query(q): Query<ScopeQuery>,
) -> ApiResult {
    let scope = admin_on_secret(&caller, &name, &q)?;
    if !app.store.delete_secret(&scope, &name, &caller.name).await? {
        return Err(Problem::not_found(format!("no secret `{name}` ({scope})")));
    }
    crate::log::info(&format!(
        "secret `{name}` ({scope}) deleted by {}",
        caller.name
    ));
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn reveal_secret(
    caller: Caller,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Query(q): Query<ScopeQuery>,
) -> ApiResult {
    let scope = admin_on_secret(&caller, &name, &q)?;
    let Some((scope, sealed)) = app
        .store
        .find_secret(&name, std::slice::from_ref(&scope))
        .await?
    else {
        return Err(Problem::not_found(format!("no secret `{name}` ({scope})")));
    };
    let value = app
        .secrets
        .open_stored(&scope, &name, &sealed)
        .map_err(|e| sealed_problem(&e))?;
    // Audited before it is shown.
    app.store
        .audit(&AuditEntry {
            actor: caller.name.clone(),
            kind: attune_store::SECRET_REVEAL.into(),
            subject: format!("secret {name} ({scope})"),
            detail: json!({"name": name, "scope": scope}),
        })
        .await?;
    crate::log::info(&format!(
        "secret `{name}` ({scope}) revealed to {}",
        caller.name
    ));
    Ok(Json(json!({"name": name, "scope": scope, "value": value})).into_response())
}

async fn create_token(
    caller: Caller,
    State(app): State<Arc<App>>,
    ApiJson(body): ApiJson,
) -> ApiResult {
    caller.require(Role::Admin)?;
    let role = body
        .get("role")
        .and_then(Value::as_str)
        .and_then(Role::parse)
        .ok_or_else(|| {
            Problem::invalid(
                "invalid token request",
                vec!["`role` must be admin, operator or viewer".into()],
            )
        })?;
    let name = match body.get("name") {
        None | Some(Value::Null) => format!("{}-token", role.as_str()),
        Some(Value::String(n)) if !n.trim().is_empty() && n.chars().count() <= 100 => n.clone(),
        Some(_) => {
            return Err(Problem::invalid(
                "invalid token request",
                vec!["`name` must be a string of 1 to 100 characters".into()],
            ))
        }
    };
    let token = new_token()?;
    let row = app
        .store
        .insert_token(&name, role.as_str(), &hash_token(&token), &caller.name)
        .await?;
    crate::log::info(&format!(
        "token `{name}` ({}) created by {}",
        role.as_str(),
        caller.name
    ));
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": row.id, "name": row.name, "role": row.role, "created_at": row.created_at, "token": token}),
        ),
    )
        .into_response())
}

async fn list_tokens(caller: Caller, State(app): State<Arc<App>>) -> ApiResult {
    caller.require(Role::Admin)?;
    Ok(Json(app.store.list_tokens().await?).into_response())
}

async fn revoke_token(
    caller: Caller,
    State(app): State<Arc<App>>,
    Path(token): Path<String>,
) -> ApiResult {
    caller.require(Role::Admin)?;
    let revoked = app.store.revoke_tokens(&token, &caller.name).await?;
    if revoked.is_empty() {
        return Err(Problem::not_found(format!(
            "no unrevoked token named `{token}` or with that id"
        )));
    }
    for t in &revoked {
        crate::log::info(&format!(
            "token `{}` (id {}) revoked by {}",
            t.name, t.id, caller.name
        ));
    }
    Ok(Json(revoked).into_response())
}

#[derive(serde::Deserialize)]
struct AuditQuery {
    since: Option<String>,
    kind: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

/// `s` as the log's times compare with it as text, if it is an RFC 3339 UTC time or a
/// prefix of one (`2026-11-25`, `2026-11-25T04:00`, `2026-11-25T04:00:59.5Z`): without its
/// `Z`, which would sort after the stored `.123Z` of the same second.
fn time_prefix(s: &str) -> Option<&str> {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd";
    let body = s.strip_suffix('Z').unwrap_or(s);
    let (main, frac) = match body.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (body, None),
    };
    let shape = [10, 16, 19].contains(&main.len())
        && main.bytes().zip(SHAPE).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            p => c == *p,
        });
    let fraction = frac
        .is_none_or(|f| main.len() == 19 && !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()));
    let zone = body.len() == s.len() || main.len() >= 16;
    (shape && fraction && zone).then_some(body)
}

async fn list_audit(
    caller: Caller,
    State(app): State<Arc<App>>,
    Query(q): Query<AuditQuery>,
) -> ApiResult {
    caller.require(Role::Admin)?;
    let mut errors = Vec::new();
    let since = q.since.as_deref().map(|s| (s, time_prefix(s)));
    if let Some((s, None)) = since {
        errors.push(format!(
            "`since` must be an RFC 3339 UTC time such as 2026-11-25T04:00:00Z (or its date, or date and minute); got `{}`",
            s.chars().take(40).collect::<String>()
        ));
    }
    if let Some(k) = &q.kind {
        let family = |f: &str| {
            attune_store::AUDIT_KINDS
                .iter()
                .any(|x| x.split('.').next() == Some(f))
        };
        if !attune_store::AUDIT_KINDS.contains(&k.as_str()) && !family(k) {
            errors.push(format!(
                "unknown kind `{}`; kinds: {} (or a family: secret, execution, token, pack)",
                k.chars().take(40).collect::<String>(),
                attune_store::AUDIT_KINDS.join(", ")
            ));
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid("invalid audit query", errors));
    }
    let filter = AuditFilter {
        since: since.and_then(|(_, t)| t).map(str::to_string),
        kind: q.kind,
        before: q.before,
        limit: crate::api::page_limit(q.limit)?,
    };
    Ok(Json(app.store.list_audit(&filter).await?).into_response())
}

#[cfg(test)]
mod tests {
    use super::time_prefix;

    #[test]
    fn since_accepts_rfc3339_times_and_their_prefixes() {
        for (given, compared) in [
            ("2026-11-25", "2026-11-25"),
            ("2026-11-25T04:00", "2026-11-25T04:00"),
            ("2026-11-25T04:00Z", "2026-11-25T04:00"),
            ("2026-11-25T04:00:59", "2026-11-25T04:00:59"),
            ("2026-11-25T04:00:59Z", "2026-11-25T04:00:59"),
            ("2026-11-25T04:00:59.123Z", "2026-11-25T04:00:59.123"),
        ] {
            assert_eq!(time_prefix(given), Some(compared), "{given}");
        }
        // What the store writes sorts at or after the time given for its second.
        assert!("2026-11-25T04:00:59.000Z" >= time_prefix("2026-11-25T04:00:59Z").unwrap());
        for bad in [
            "",
            "yesterday",
            "2026-11-2",
            "2026-11-25 04:00",
            "2026-11-25T04",
            "2026-11-25Z",
            "2026-11-25T04:00:59.",
            "2026-11-25T04:00.5",
            "' OR 1=1 --",
        ] {
            assert_eq!(time_prefix(bad), None, "{bad}");
        }
    }
}
