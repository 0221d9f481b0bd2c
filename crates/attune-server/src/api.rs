//! The REST API (docs/api.md): routes, request parsing, responses.

use crate::auth::{Caller, Role};
use crate::problem::Problem;
use crate::secrets::{ResolveError, SecretError};
use crate::App;
use attune_core::bundle::Bundle;
use attune_core::{EnvVars, ExecutionStatus};
use attune_store::{AuditEntry, ExecutionFilter, ExecutionRow, Finish, NewExecution, PackRow};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::sync::Arc;

type ApiResult = Result<Response, Problem>;

/// All routes.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/actions", get(list_actions))
        .route("/api/v1/actions/{action_ref}", get(get_action))
        .route("/api/v1/packs", get(list_packs).post(register_pack))
        .route(
            "/api/v1/packs/{pack_ref}",
            axum::routing::delete(remove_pack),
        )
        .route(
            "/api/v1/executions",
            get(list_executions).post(create_execution),
        )
        .route("/api/v1/executions/{id}", get(get_execution))
        .route("/api/v1/executions/{id}/output", get(execution_output))
        .route("/api/v1/executions/{id}/cancel", post(cancel_execution))
        .route("/api/v1/executions/{id}/rerun", post(rerun_execution))
        .merge(crate::api_admin::routes())
        .fallback(|| async { Problem::not_found("no such route") })
        .layer(axum::middleware::from_fn(problems_only))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            limit,
            refuse_oversized,
        ))
        .with_state(app)
}

/// Answers 413 to a request whose declared length is over the limit, after reading and
/// discarding its body (up to a bound, for at most 10 s): a client that sends the whole body
/// before it reads the answer then gets the 413 instead of a connection reset mid-write.
async fn refuse_oversized(
    State(limit): State<usize>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    use futures_util::StreamExt;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(len) = declared.filter(|n| *n > limit as u64) else {
        return next.run(req).await;
    };
    let drain_cap = (limit as u64).saturating_mul(4).max(16 << 20);
    if len <= drain_cap {
        let mut body = req.into_body().into_data_stream();
        let drain = async { while let Some(Ok(_)) = body.next().await {} };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
    }
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body too large: {len} bytes, at most {limit} allowed"),
    )
    .into_response()
}

/// Turns every error answer that is not yet `application/problem+json` (axum's own: a bad
/// query string, a method the route does not have) into one, keeping its status.
async fn problems_only(req: Request, next: axum::middleware::Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().chars().take(200).collect::<String>();
    let resp = next.run(req).await;
    let status = resp.status();
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if status.as_u16() < 400 || is_problem {
        return resp;
    }
    let allow = resp
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = axum::body::to_bytes(resp.into_body(), 4096)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let detail = match (status, &allow) {
        (StatusCode::METHOD_NOT_ALLOWED, Some(allow)) => {
            format!("{method} is not allowed on {path}; allowed: {allow}")
        }
        (StatusCode::METHOD_NOT_ALLOWED, None) => format!("{method} is not allowed on {path}"),
        _ if !text.is_empty() => text.chars().take(300).collect(),
        _ => status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_string(),
    };
    let mut problem = Problem::new(status, detail).into_response();
    if let Some(allow) = allow.and_then(|a| header::HeaderValue::from_str(&a).ok()) {
        problem.headers_mut().insert(header::ALLOW, allow);
    }
    problem
}

/// A JSON body parsed as a `Value`: malformed → 400, too large → 413, not JSON → 415.
/// Parsing into a `Value` first means no error message can quote a parameter value.
pub struct ApiJson(pub Value);

impl<S: Send + Sync> FromRequest<S> for ApiJson {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match Json::<Value>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => {
                let status = rejection.status();
                let detail = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "request body too large".to_string(),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                        "expected Content-Type: application/json".to_string()
                    }
                    _ => format!("malformed JSON: {}", rejection.body_text()),
                };
                // serde_json's data errors can quote input; a Value target has none, but stay safe.
                let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
                    StatusCode::BAD_REQUEST
                } else {
                    status
                };
                Err(Problem::new(status, detail))
            }
        }
    }
}

fn created(v: impl serde::Serialize) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(app): State<Arc<App>>) -> ApiResult {
    match app.store.ping().await {
        Ok(()) => {
            let sandbox = if app.runner.sandbox().degraded() {
                "degraded"
            } else {
                "enforced"
            };
            Ok(Json(json!({"status": "ready", "sandbox": sandbox})).into_response())
        }
        Err(e) => {
            crate::log::error(&format!("readiness: {e}"));
            Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable",
            ))
        }
    }
}

async fn openapi(_caller: Caller) -> Response {
    Json(crate::openapi::document()).into_response()
}

async fn list_actions(caller: Caller, State(app): State<Arc<App>>) -> ApiResult {
    caller.require(Role::Viewer)?;
    let mut list: Vec<Value> = app.catalog.actions().iter().map(|a| a.summary()).collect();
    list.sort_by(|a, b| a["ref"].as_str().cmp(&b["ref"].as_str()));
    Ok(Json(list).into_response())
}

async fn get_action(
    caller: Caller,
    State(app): State<Arc<App>>,
    Path(action_ref): Path<String>,
) -> ApiResult {
    caller.require(Role::Viewer)?;
    let action = app
        .catalog
        .action(&action_ref)
        .ok_or_else(|| no_action(&app, &action_ref))?;
    Ok(Json(action.summary()).into_response())
}

fn pack_json(p: &crate::catalog::LoadedPack) -> Value {
    json!({
        "ref": p.pack.pack_ref,
        "version": p.pack.version,
        "description": p.pack.description,
        "digest": p.digest,
        "registered_at": p.registered_at,
        "actions": p.actions.values().map(|a| a.action_ref.clone()).collect::<Vec<_>>(),
    })
}

async fn list_packs(caller: Caller, State(app): State<Arc<App>>) -> ApiResult {
    caller.require(Role::Viewer)?;
    Ok(Json(
        app.catalog
            .packs()
            .iter()
            .map(pack_json)
            .collect::<Vec<_>>(),
    )
    .into_response())
}

async fn register_pack(
    caller: Caller,
    State(app): State<Arc<App>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult {
    caller.require(Role::Admin)?;
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "pack too large")
        } else {
            Problem::bad_request(r.body_text())
        }
    })?;
    let loaded = register(&app, &body).await?;
    app.store
        .audit(&AuditEntry {
            actor: caller.name.clone(),
            kind: attune_store::PACK_REGISTER.into(),
            subject: format!("pack {}", loaded.pack.pack_ref),
            detail: json!({"version": loaded.pack.version, "digest": loaded.digest}),
        })
        .await?;
    Ok(created(pack_json(&loaded)))
}

async fn remove_pack(
    caller: Caller,
    State(app): State<Arc<App>>,
    Path(pack_ref): Path<String>,
) -> ApiResult {
    caller.require(Role::Admin)?;
    if pack_ref == "core" {
        return Err(Problem::conflict("the bundled core pack cannot be removed"));
    }
    if !app.store.delete_pack(&pack_ref).await? {
        return Err(Problem::not_found(format!("no pack `{pack_ref}`")));
    }
    app.catalog.remove(&pack_ref);
    app.store
        .audit(&AuditEntry {
            actor: caller.name.clone(),
            kind: attune_store::PACK_REMOVE.into(),
            subject: format!("pack {pack_ref}"),
            detail: json!({}),
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn parse_id(id: &str) -> Result<i64, Problem> {
    id.parse::<i64>()
        .map_err(|_| Problem::not_found(format!("no execution `{id}`")))
}

async fn load_execution(app: &App, id: &str) -> Result<ExecutionRow, Problem> {
    let id = parse_id(id)?;
    app.store
        .get_execution(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no execution {id}")))
}

/// The most items one page of a list holds.
pub const MAX_PAGE: u32 = 200;

#[derive(serde::Deserialize)]
struct ListQuery {
    status: Option<String>,
    action: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

/// A page's `limit`: default 50, at most [`MAX_PAGE`].
pub fn page_limit(limit: Option<u32>) -> Result<u32, Problem> {
    match limit.unwrap_or(50) {
        n @ 1..=MAX_PAGE => Ok(n),
        n => Err(Problem::invalid(
            format!("limit {n} is out of range"),
            vec![format!(
                "`limit` must be 1 to {MAX_PAGE}; page on with `before`"
            )],
        )),
    }
}

async fn list_executions(
    caller: Caller,
    State(app): State<Arc<App>>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    caller.require(Role::Viewer)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(ExecutionStatus::parse(s).ok_or_else(|| {
            Problem::invalid(
                format!("unknown status `{s}`"),
                vec![format!(
                    "status must be one of: {}",
                    ExecutionStatus::ALL.map(ExecutionStatus::as_str).join(", ")
                )],
            )
        })?),
    };
    let limit = page_limit(q.limit)?;
    let filter = ExecutionFilter {
        status,
        action_ref: q.action.clone(),
        before: q.before,
        limit,
    };
    let rows = app.store.list_executions(&filter).await?;
    // The next page, as a link: the same filters, before the last id of this one.
    let next = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.id))
        .flatten()
        .map(|last| {
            let mut q2 = format!("/api/v1/executions?before={last}&limit={limit}");
            if let Some(s) = status {
                q2.push_str(&format!("&status={}", s.as_str()));
            }
            if let Some(a) = &q.action {
                q2.push_str(&format!(
                    "&action={}",
                    attune_core::percent_encode(a, "-_.~", false)
                ));
            }
            format!("<{q2}>; rel=\"next\"")
        });
    // stdout and stderr are the output endpoint's: a list stays small.
    let items: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.remove("stdout");
                o.remove("stderr");
            }
            v
        })
        .collect();
    let mut resp = Json(items).into_response();
    if let Some(link) = next.and_then(|l| header::HeaderValue::from_str(&l).ok()) {
        resp.headers_mut().insert(header::LINK, link);
    }
    Ok(resp)
}

async fn get_execution(
    caller: Caller,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> ApiResult {
    caller.require(Role::Viewer)?;
    Ok(Json(load_execution(&app, &id).await?).into_response())
}

/// 404 for an unknown action, with the nearest registered one if there is one.
fn no_action(app: &App, action_ref: &str) -> Problem {
    let actions = app.catalog.actions();
    let near = attune_core::closest(action_ref, actions.iter().map(|a| a.action_ref.as_str()))
        .map(|a| format!("; did you mean `{a}`?"))
        .unwrap_or_default();
    Problem::not_found(format!("no action `{action_ref}`{near}"))
}

/// A stored secret that does not open: the server's problem, said plainly (it names the
/// secret and the key option, never a value).
pub fn sealed_problem(e: &SecretError) -> Problem {
    crate::log::error(&e.to_string());
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e)
}

/// Validates a request, resolves its secrets from the store and stores the execution
/// (secret values sealed, with an audit entry naming them) before answering.
/// `also_secret`: parameters that were secret when first stored (a rerun's), kept sealed
/// whatever the action says now.
#[allow(clippy::too_many_arguments)]
pub async fn submit(
    app: &Arc<App>,
    requested_by: &str,
    action_ref: &str,
    parameters: Map<String, Value>,
    env_vars: EnvVars,
    timeout: Option<u64>,
    rerun_of: Option<i64>,
    also_secret: &[String],
) -> Result<ExecutionRow, Problem> {
    let action = app
        .catalog
        .action(action_ref)
        .ok_or_else(|| no_action(app, action_ref))?;
    let resolved = crate::secrets::resolve(&app.store, &app.secrets, &action, parameters)
        .await
        .map_err(|e| match e {
            ResolveError::Invalid(errors) => Problem::invalid(
                format!("cannot resolve the secrets of {action_ref}"),
                errors,
            ),
            ResolveError::Sealed(e) => sealed_problem(&e),
            ResolveError::Store(e) => e.into(),
        })?;
    let (parameters, _) =
        attune_runner::validate_request(&action, resolved.parameters, timeout, also_secret)
            .map_err(|e| match e {
                attune_runner::PrepareError::Invalid { action, violations } => {
                    Problem::invalid(format!("invalid parameters for {action}"), violations.0)
                }
                other => Problem::invalid(other.to_string(), vec![other.to_string()]),
            })?;
    let is_secret = |k: &String| action.parameters.is_secret(k) || also_secret.contains(k);
    let secrets: Map<String, Value> = parameters
        .iter()
        .filter(|(k, _)| is_secret(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let sealed = if secrets.is_empty() {
        None
    } else {
        Some(
            app.secrets
                .seal_parameters(&secrets)
                .map_err(Problem::internal)?,
        )
    };
    // Which secrets it is given, and from where: names and scopes, never values.
    let audit = (!secrets.is_empty()).then(|| AuditEntry {
        actor: requested_by.to_string(),
        kind: attune_store::EXECUTION_SECRETS.into(),
        subject: String::new(),
        detail: json!({
            "action": action.action_ref,
            "secrets": secrets.keys().map(|k| match resolved.refs.get(k) {
                Some(r) => json!({"parameter": k, "source": "store", "name": r["name"], "scope": r["scope"]}),
                None => json!({"parameter": k, "source": "request"}),
            }).collect::<Vec<_>>(),
        }),
    });
    let row = app
        .store
        .insert_execution(
            &NewExecution {
                action_ref: action.action_ref.clone(),
                parameters: action.parameters.redact_also(&parameters, also_secret),
                secrets: sealed,
                env_vars: env_vars.as_map().clone(),
                timeout_secs: timeout,
                requested_by: requested_by.to_string(),
                rerun_of,
                secret_refs: resolved.refs,
            },
            audit.as_ref(),
        )
        .await?;
    app.wake.notify_one();
    Ok(row)
}

async fn create_execution(
    caller: Caller,
    State(app): State<Arc<App>>,
    ApiJson(body): ApiJson,
) -> ApiResult {
    caller.require(Role::Operator)?;
    let Value::Object(mut body) = body else {
        return Err(Problem::invalid(
            "the body must be a JSON object",
            vec!["expected {\"action_ref\": …, \"parameters\": {…}}".into()],
        ));
    };
    let mut errors = Vec::new();
    for key in body.keys() {
        if !["action_ref", "parameters", "env_vars", "timeout"].contains(&key.as_str()) {
            errors.push(format!(
                "unknown field `{key}`; allowed: action_ref, parameters, env_vars, timeout"
            ));
        }
    }
    let action_ref = match body.remove("action_ref") {
        Some(Value::String(s)) => Some(s),
        _ => {
            errors.push("`action_ref` is required: a string such as \"core.echo\"".into());
            None
        }
    };
    let parameters = match body.remove("parameters") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            errors.push(format!(
                "`parameters` must be an object, got {}",
                attune_core::json_type_name(&other)
            ));
            Map::new()
        }
    };
    let env_vars = match EnvVars::from_json(body.get("env_vars").unwrap_or(&Value::Null)) {
        Ok(e) => e,
        Err(e) => {
            errors.push(e.to_string());
            EnvVars::default()
        }
    };
    let timeout = match body.get("timeout") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|t| t > 0) => n.as_u64(),
        Some(_) => {
            errors.push("`timeout` must be a whole number of seconds, at least 1".into());
            None
        }
    };
    if !errors.is_empty() {
        return Err(Problem::invalid("invalid execution request", errors));
    }
    let action_ref = action_ref.unwrap_or_default();
    let row = submit(
        &app,
        &caller.name,
        &action_ref,
        parameters,
        env_vars,
        timeout,
        None,
        &[],
    )
    .await?;
    Ok(created(row))
}

async fn cancel_execution(
    caller: Caller,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> ApiResult {
    use ExecutionStatus::*;
    caller.require(Role::Operator)?;
    for _ in 0..3 {
        let exec = load_execution(&app, &id).await?;
        let done = match exec.status {
            Requested | Scheduled => {
                let f = Finish {
                    error: Some(format!("canceled by {} before it started", caller.name)),
                    ..Finish::default()
                };
                app.store
                    .finish(exec.id, &[Requested, Scheduled], Canceled, &f)
                    .await?
            }
            Running => {
                let moved = app.store.transition(exec.id, Running, Canceling).await?;
                if moved {
                    app.cancel_running(exec.id);
                }
                moved
            }
            Canceling => {
                app.cancel_running(exec.id);
                true
            }
            s => {
                return Err(Problem::conflict(format!(
                    "execution {} already ended: {s}",
                    exec.id
                )))
            }
        };
        if done {
            crate::log::info(&format!(
                "execution {} cancel requested by {}",
                exec.id, caller.name
            ));
            app.store
                .audit(&AuditEntry {
                    actor: caller.name.clone(),
                    kind: attune_store::EXECUTION_CANCEL.into(),
                    subject: format!("execution {}", exec.id),
                    detail: json!({"action": exec.action_ref, "status": exec.status}),
                })
                .await?;
            let row = load_execution(&app, &id).await?;
            return Ok((StatusCode::ACCEPTED, Json(row)).into_response());
        }
    }
    Err(Problem::conflict(
        "the execution changed state while being cancelled; try again",
    ))
}

async fn rerun_execution(
    caller: Caller,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> ApiResult {
    caller.require(Role::Operator)?;
    let exec = load_execution(&app, &id).await?;
    let (mut params, sealed_names) =
        crate::worker::full_parameters(&app, &exec).map_err(|e| sealed_problem(&e))?;
    // Secrets that came from the store are resolved again, as the request asked for them:
    // by reference, or by being left out.
    for (param, r) in &exec.secret_refs {
        match (r.get("explicit").and_then(Value::as_bool), r.get("name")) {
            (Some(true), Some(name)) => {
                params.insert(param.clone(), json!({ "$secret": name }));
            }
            _ => {
                params.remove(param);
            }
        }
    }
    let env = EnvVars::new(exec.env_vars.clone())
        .map_err(|e| Problem::invalid(e.to_string(), vec![e.to_string()]))?;
    let row = submit(
        &app,
        &caller.name,
        &exec.action_ref,
        params,
        env,
        exec.timeout_secs,
        Some(exec.id),
        &sealed_names,
    )
    .await?;
    Ok(created(row))
}

#[derive(serde::Deserialize)]
struct OutputQuery {
    follow: Option<bool>,
}

fn ndjson_line(v: Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn chunk_line(stream: attune_runner::Stream, data: &[u8]) -> Bytes {
    let name = match stream {
        attune_runner::Stream::Stdout => "stdout",
        attune_runner::Stream::Stderr => "stderr",
    };
    ndjson_line(json!({"stream": name, "data": String::from_utf8_lossy(data)}))
}

fn final_line(e: &ExecutionRow) -> Bytes {
    ndjson_line(
        json!({"status": e.status, "exit_code": e.exit_code, "signal": e.signal, "error": e.error}),
    )
}

async fn execution_output(
    caller: Caller,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<OutputQuery>,
) -> ApiResult {
    caller.require(Role::Viewer)?;
    let exec = load_execution(&app, &id).await?;
    let follow = q.follow.unwrap_or(false);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(stream_output(app.clone(), exec, follow, tx));
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    }));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// Sends an execution's output: stored if it has ended, live while it runs.
async fn stream_output(
    app: Arc<App>,
    mut exec: ExecutionRow,
    follow: bool,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let id = exec.id;
    loop {
        if exec.status.is_final() {
            for (stream, text) in [
                (attune_runner::Stream::Stdout, &exec.stdout),
                (attune_runner::Stream::Stderr, &exec.stderr),
            ] {
                if let Some(t) = text.as_deref().filter(|t| !t.is_empty()) {
                    if tx.send(chunk_line(stream, t.as_bytes())).await.is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send(final_line(&exec)).await;
            return;
        }
        if let Some(running) = app.running_get(id) {
            let mut sent = 0;
            loop {
                let notified = running.log.notify.notified();
                let (chunks, done) = running.log.since(sent);
                sent += chunks.len();
                for (stream, data) in chunks {
                    if tx.send(chunk_line(stream, &data)).await.is_err() {
                        return;
                    }
                }
                if done || !follow {
                    break;
                }
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
            // The outcome is written before the log is marked done.
            if let Ok(Some(e)) = app.store.get_execution(id).await {
                let _ = tx.send(final_line(&e)).await;
            }
            return;
        }
        if !follow {
            let _ = tx.send(final_line(&exec)).await;
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        exec = match app.store.get_execution(id).await {
            Ok(Some(e)) => e,
            _ => return,
        };
    }
}

/// Decodes, validates and stores a pack bundle, then adds it to the catalog.
pub async fn register(app: &Arc<App>, bytes: &[u8]) -> Result<crate::catalog::LoadedPack, Problem> {
    let bundle = Bundle::from_bytes(bytes)
        .map_err(|e| Problem::invalid("invalid pack", vec![e.to_string()]))?;
    let digest = bundle.digest();
    let now = attune_core::execution::rfc3339(std::time::SystemTime::now());
    let catalog = app.catalog.clone();
    let (b, d, n) = (bundle.clone(), digest.clone(), now.clone());
    let bundled = app.is_bundled(&digest);
    let loaded = tokio::task::spawn_blocking(move || catalog.load(&b, &d, &n, bundled))
        .await
        .map_err(Problem::internal)?
        .map_err(|e| Problem::invalid("invalid pack", vec![e]))?;
    app.store
        .put_pack(&PackRow {
            pack_ref: loaded.pack.pack_ref.clone(),
            version: loaded.pack.version.clone(),
            description: loaded.pack.description.clone(),
            digest,
            bundle: bytes.to_vec(),
            registered_at: now,
        })
        .await?;
    app.catalog.insert(loaded.clone());
    Ok(loaded)
}
