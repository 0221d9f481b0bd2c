//! The admin side of the API (docs/api.md): the secret store, tokens and the audit log.
//! Secret values are write-only, except for an admin's audited reveal.

use crate::api::{sealed_problem, ApiJson};
use crate::auth::{hash_token, new_token, Caller, Role};
use crate::openapi::ProblemBody;
use crate::problem::Problem;
use crate::secrets::{check_name, Scope};
use crate::App;
use attune_store::{AuditEntry, AuditFilter};
use attune_store::{AuditRow, SecretRow, TokenRow};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type ApiResult = Result<Response, Problem>;

/// The largest secret value accepted, as JSON text.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// The routes of this module, with their OpenAPI descriptions.
pub fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(list_secrets))
        .routes(routes!(put_secret, delete_secret))
        .routes(routes!(reveal_secret))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(list_audit))
}

/// `?scope=`: a secret's scope.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ScopeQuery {
    /// `global`, `pack:<pack>` or `action:<pack>.<action>`. Left out: every scope for the
    /// list, `global` for one secret.
    #[param(
        pattern = "^(global|pack:[a-z0-9_]+|action:[a-z0-9_]+[.][a-z0-9_]+)$",
        nullable = false
    )]
    pub(crate) scope: Option<String>,
}

/// The secret name in a path.
const NAME_DOC: &str = "the secret's name: 1 to 128 letters, digits, `_`, `.` or `-`";

/// What `PUT /api/v1/secrets/{name}` takes.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
struct SecretRequest {
    /// The value: a string, or any JSON value but null; at most 64 KiB as JSON.
    value: Value,
    /// `global` (the default), `pack:<pack>` or `action:<pack>.<action>`.
    #[schema(pattern = "^(global|pack:[a-z0-9_]+|action:[a-z0-9_]+[.][a-z0-9_]+)$")]
    scope: Option<String>,
}

/// A stored secret's name and scope.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct SecretStored {
    /// Its name.
    name: String,
    /// `global`, `pack:<pack>` or `action:<pack>.<action>`.
    scope: String,
    /// Whether it is new (else it replaced a value).
    created: bool,
}

/// A stored secret, revealed.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct SecretRevealed {
    /// Its name.
    name: String,
    /// Its scope.
    scope: String,
    /// Its value.
    value: Value,
}

impl ScopeQuery {
    fn scope(&self) -> Result<Scope, Problem> {
        Scope::parse(self.scope.as_deref().unwrap_or("global"))
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

/// Stored secrets: names, scopes and dates, never values.
#[utoipa::path(get, path = "/api/v1/secrets", tag = "secrets", security(("bearer" = [])), extensions(("x-attune-role" = json!("operator"))),
    params(ScopeQuery),
    responses((status = 200, body = [SecretRow])))]
pub(crate) async fn list_secrets(
    caller: Caller,
    State(app): State<Arc<App>>,
    Query(q): Query<ScopeQuery>,
) -> ApiResult {
    caller.require(Role::Operator)?;
    let scope = match &q.scope {
        None => None,
        Some(_) => Some(q.scope()?.as_str()),
    };
    Ok(Json(app.store.list_secrets(scope.as_deref()).await?).into_response())
}

/// Stores a secret, encrypted: 201 when new, 200 when it replaced a value.
#[utoipa::path(put, path = "/api/v1/secrets/{name}", tag = "secrets", security(("bearer" = [])), extensions(("x-attune-role" = json!("admin"))),
    params(("name" = String, Path, description = NAME_DOC, pattern = "^[A-Za-z0-9_.-]{1,128}$")),
    request_body = SecretRequest,
    responses((status = 201, body = SecretStored), (status = 200, body = SecretStored)))]
pub(crate) async fn put_secret(
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
            vec!["expected {\"value\": …, \"scope\": … (optional)}".into()],
        ));
    };
    let mut errors = Vec::new();
    for key in body.keys() {
        if !["value", "scope"].contains(&key.as_str()) {
            errors.push(format!("unknown field `{key}`; allowed: value, scope"));
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
    let scope = text("scope", &mut errors);
    let scope = Scope::parse(scope.as_deref().unwrap_or("global")).map_err(|e| errors.push(e));
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
    tracing::info!(
        "secret `{name}` ({scope}) {} by {}",
        if created { "created" } else { "updated" },
        caller.name
    );
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(SecretStored {
            name,
            scope,
            created,
        }),
    )
        .into_response())
}

/// Deletes a stored secret.
#[utoipa::path(delete, path = "/api/v1/secrets/{name}", tag = "secrets", security(("bearer" = [])), extensions(("x-attune-role" = json!("admin"))),
    params(("name" = String, Path, description = NAME_DOC, pattern = "^[A-Za-z0-9_.-]{1,128}$"),
        ScopeQuery),
    responses((status = 204, description = "deleted")))]
pub(crate) async fn delete_secret(
    caller: Caller,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Query(q): Query<ScopeQuery>,
) -> ApiResult {
    let scope = admin_on_secret(&caller, &name, &q)?;
    if !app.store.delete_secret(&scope, &name, &caller.name).await? {
        return Err(Problem::not_found(format!("no secret `{name}` ({scope})")));
    }
    tracing::info!("secret `{name}` ({scope}) deleted by {}", caller.name);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Shows a stored secret's value; recorded in the audit log first.
#[utoipa::path(post, path = "/api/v1/secrets/{name}/reveal", tag = "secrets", security(("bearer" = [])), extensions(("x-attune-role" = json!("admin"))),
    params(("name" = String, Path, description = NAME_DOC, pattern = "^[A-Za-z0-9_.-]{1,128}$"),
        ScopeQuery),
    responses((status = 200, body = SecretRevealed)))]
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
    tracing::info!("secret `{name}` ({scope}) revealed to {}", caller.name);
    Ok(Json(SecretRevealed { name, scope, value }).into_response())
}

/// What `POST /api/v1/tokens` takes.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    /// `admin`, `operator` or `viewer`.
    #[schema(pattern = "^(admin|operator|viewer)$")]
    role: String,
    /// A name for it (default `<role>-token`): 1 to 100 letters, digits, spaces or
    /// `_.@:-`, not starting with a space.
    #[schema(pattern = "^[A-Za-z0-9_.@:-][A-Za-z0-9 _.@:-]{0,99}$")]
    name: Option<String>,
}

/// A new token: the only time it is shown.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct NewToken {
    /// Its id.
    id: i64,
    /// Its name.
    name: String,
    /// Its role.
    role: String,
    /// When it was made.
    created_at: String,
    /// The token, for `Authorization: Bearer`; never shown again.
    token: String,
}

/// Makes an API token with a role.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", security(("bearer" = [])), extensions(("x-attune-role" = json!("admin"))),
    request_body = TokenRequest,
    responses((status = 201, body = NewToken)))]
pub(crate) async fn create_token(
    caller: Caller,
    State(app): State<Arc<App>>,
    ApiJson(body): ApiJson,
) -> ApiResult {
    caller.require(Role::Admin)?;
    if let Some(key) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| !["role", "name"].contains(&k.as_str())))
    {
        return Err(Problem::invalid(
            "invalid token request",
            vec![format!("unknown field `{key}`; allowed: role, name")],
        ));
    }
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
        Some(Value::String(n)) if token_name_ok(n) => n.clone(),
        Some(_) => {
            return Err(Problem::invalid(
                "invalid token request",
                vec!["`name` must be 1 to 100 letters, digits, spaces or `_.@:-`, not starting with a space".into()],
            ))
        }
    };
    let token = new_token()?;
    let row = app
        .store
        .insert_token(&name, role.as_str(), &hash_token(&token), &caller.name)
        .await?;
    tracing::info!(
        "token `{name}` ({}) created by {}",
        role.as_str(),
        caller.name
    );
    Ok((
        StatusCode::CREATED,
        Json(NewToken {
            id: row.id,
            name: row.name,
            role: row.role,
            created_at: row.created_at,
            token,
        }),
    )
        .into_response())
}

/// A token name: 1 to 100 of `[A-Za-z0-9 _.@:-]`, not starting with a space.
fn token_name_ok(n: &str) -> bool {
    (1..=100).contains(&n.len())
        && !n.starts_with(' ')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" _.@:-".contains(&b))
}

/// The API tokens: names, roles, dates, never a token.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", security(("bearer" = [])), extensions(("x-attune-role" = json!("admin"))),
    responses((status = 200, body = [TokenRow])))]
pub(crate) async fn list_tokens(caller: Caller, State(app): State<Arc<App>>) -> ApiResult {
    caller.require(Role::Admin)?;
    Ok(Json(app.store.list_tokens().await?).into_response())
}

/// Revokes the unrevoked tokens with this name, or the one with this id; not the one
/// making the request.
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "tokens", security(("bearer" = [])), extensions(("x-attune-role" = json!("admin"))),
    params(("name" = String, Path, description = "a token's name, or its id")),
    responses((status = 200, description = "the tokens revoked", body = [TokenRow]),
        (status = 409, description = "that is the token making this request", body = ProblemBody,
            content_type = "application/problem+json")))]
pub(crate) async fn revoke_token(
    caller: Caller,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> ApiResult {
    caller.require(Role::Admin)?;
    let token = name;
    // An admin cannot lock themselves out: their own token is revoked with another's.
    let own = app.store.list_tokens().await?.into_iter().any(|t| {
        t.id == caller.id
            && t.revoked_at.is_none()
            && (t.name == token || t.id.to_string() == token)
    });
    if own {
        return Err(Problem::conflict(
            "that is the token making this request; revoke it with another admin token",
        ));
    }
    let revoked = app.store.revoke_tokens(&token, &caller.name).await?;
    if revoked.is_empty() {
        return Err(Problem::not_found(format!(
            "no unrevoked token named `{token}` or with that id"
        )));
    }
    for t in &revoked {
        tracing::info!(
            "token `{}` (id {}) revoked by {}",
            t.name,
            t.id,
            caller.name
        );
    }
    Ok(Json(revoked).into_response())
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Only entries at or after this RFC 3339 UTC time, or its date, or date and minute.
    #[param(
        pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$|^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}Z?$|^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z?$|^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]+Z?$",
        nullable = false
    )]
    pub(crate) since: Option<String>,
    /// Only entries of this kind (`secret.reveal`) or family (`secret`); the document
    /// lists them.
    #[param(nullable = false)]
    pub(crate) kind: Option<String>,
    /// Only entries with a smaller id: the cursor of the next page.
    #[param(nullable = false)]
    pub(crate) before: Option<i64>,
    /// How many at most (default 50).
    #[param(minimum = 1, maximum = 200, nullable = false)]
    pub(crate) limit: Option<u32>,
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

/// The audit log, newest first: who did what to which secret, token, pack or execution.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])), extensions(("x-attune-role" = json!("admin"))),
    params(AuditQuery),
    responses((status = 200, body = [AuditRow])))]
pub(crate) async fn list_audit(
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
