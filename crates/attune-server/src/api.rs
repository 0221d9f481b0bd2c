//! The REST API (docs/api.md): routes, request parsing, responses.

use crate::auth::{Caller, Role};
use crate::openapi::ProblemBody;
use crate::problem::Problem;
use crate::secrets::{ResolveError, SecretError};
use crate::App;
use attune_core::bundle::Bundle;
use attune_core::{ActionSummary, Execution};
use attune_core::{EnvVars, ExecutionStatus};
use attune_store::{AuditEntry, ExecutionFilter, ExecutionRow, Finish, NewExecution, PackRow};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type ApiResult = Result<Response, Problem>;

/// Every route, each with its OpenAPI description: the router and the document are
/// built from this one list.
pub fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi))
        .routes(routes!(list_actions))
        .routes(routes!(get_action))
        .routes(routes!(list_packs, register_pack))
        .routes(routes!(remove_pack))
        .routes(routes!(list_executions, create_execution))
        .routes(routes!(get_execution))
        .routes(routes!(execution_output))
        .routes(routes!(cancel_execution))
        .routes(routes!(rerun_execution))
        .routes(routes!(list_workers))
        .routes(routes!(metrics))
        .merge(crate::api_admin::routes())
}

/// The server's router: [`routes`], the fallback and the layers every request goes through.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.config.max_body_bytes;
    let (router, _) = routes().split_for_parts();
    router
        .merge(crate::console::routes(app.clone()))
        .fallback(|| async { Problem::not_found("no such route") })
        .layer(axum::middleware::from_fn(problems_only))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            limit,
            refuse_oversized,
        ))
        .layer(axum::middleware::from_fn(refuse_oversized_head))
        .layer(axum::middleware::from_fn(body_deadline))
        .layer(axum::middleware::map_response(nosniff))
        .layer(axum::middleware::from_fn(trace_request))
        .with_state(app)
}

/// Every answer says what it is, and browsers must not guess otherwise: an action's
/// output served as NDJSON is never taken for HTML or a script.
async fn nosniff(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    resp
}

/// How long any request body may take to arrive, at the least.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The slowest upload rate a body is given time for past [`BODY_TIMEOUT`] (bytes/s).
const BODY_MIN_RATE: u64 = 64 * 1024;

/// Gives a request's body a deadline: [`BODY_TIMEOUT`], plus the time its declared length
/// takes at [`BODY_MIN_RATE`]. A client that sends its body a byte at a time gets an error
/// answer when the handler's read fails there, and its connection is closed, as one that
/// is slow with its headers is (DESIGN.md §8). Nothing is read here: a request refused
/// before its body is read is still answered at once.
async fn body_deadline(req: Request, next: axum::middleware::Next) -> Response {
    use http_body::Body as _;
    // Most requests (GETs) have no body: no timer for them.
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let allowed = BODY_TIMEOUT + Duration::from_secs(declared / BODY_MIN_RATE);
    let req = req.map(|body| {
        axum::body::Body::new(Deadline {
            inner: body,
            expired: Box::pin(tokio::time::sleep(allowed)),
        })
    });
    next.run(req).await
}

/// A request body that fails once its deadline has passed.
struct Deadline {
    inner: axum::body::Body,
    expired: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Deadline {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::future::Future;
        use std::task::Poll;
        if let Poll::Ready(frame) = std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.expired.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(
                "the request's body did not arrive in time",
            )))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Runs a request in a `request` span (method, route template, caller) and logs its status
/// and duration when it is answered: never its path's values, query or body.
async fn trace_request(req: Request, next: axum::middleware::Next) -> Response {
    use tracing::field::Empty;
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "-".to_string(), |p| p.as_str().to_string());
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        route = %route,
        caller = Empty,
        status = Empty,
        ms = Empty
    );
    let start = std::time::Instant::now();
    let resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let status = resp.status().as_u16();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    span.record("status", status);
    span.record("ms", (ms * 1000.0).round() / 1000.0);
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!("answered {status}");
        } else {
            tracing::info!("answered {status}");
        }
    });
    resp
}

/// The longest request target accepted (path and query), in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes (names and values) accepted in one request.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The most header fields accepted in one request.
pub const MAX_HEADERS: usize = 100;

/// 414 for a request target over [`MAX_URI_BYTES`], 431 for headers over
/// [`MAX_HEADER_BYTES`] or [`MAX_HEADERS`] fields, as problems. (The connection's parser
/// has higher limits, so these are the ones clients meet.)
async fn refuse_oversized_head(req: Request, next: axum::middleware::Next) -> Response {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Problem::new(
            StatusCode::URI_TOO_LONG,
            format!("the request target is {uri_len} bytes, at most {MAX_URI_BYTES} allowed"),
        )
        .into_response();
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "{} header fields, {bytes} bytes: at most {MAX_HEADERS} fields and {MAX_HEADER_BYTES} bytes allowed",
                headers.len()
            ),
        )
        .into_response();
    }
    next.run(req).await
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
    // The console's pages answer errors as HTML pages.
    let is_page = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if status.as_u16() < 400 || is_problem || is_page {
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
                let detail = match (status, &rejection) {
                    (StatusCode::PAYLOAD_TOO_LARGE, _) => "request body too large".to_string(),
                    (StatusCode::UNSUPPORTED_MEDIA_TYPE, _) => {
                        "expected Content-Type: application/json".to_string()
                    }
                    // Not the JSON's fault: the body did not arrive (in time, or at all).
                    (_, axum::extract::rejection::JsonRejection::BytesRejection(_)) => {
                        format!("cannot read the request's body: {}", rejection.body_text())
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

/// An execution record as the answer, serialised into a buffer sized for it once: a record
/// with 64 MiB of parameters would otherwise double its way there, copying as it goes.
fn execution_response(status: StatusCode, e: &ExecutionRow) -> Response {
    let body = attune_core::format::to_json_sized(e, e.json_len());
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Bytes::from(body),
    )
        .into_response()
}

/// `/healthz`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Health {
    /// Always `ok`: the server answers.
    status: &'static str,
}

/// `/readyz`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Ready {
    /// Always `ready`.
    status: &'static str,
    /// `enforced`, or `degraded` where actions run without part of the sandbox.
    #[schema(pattern = "^(enforced|degraded)$")]
    sandbox: &'static str,
}

/// The server is up.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, body = Health)))]
async fn healthz() -> Response {
    Json(Health { status: "ok" }).into_response()
}

/// The server can serve: its database answers.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses((status = 200, body = Ready)))]
async fn readyz(State(app): State<Arc<App>>) -> ApiResult {
    match app.store.ping().await {
        Ok(()) => {
            let sandbox = if app.runner.sandbox().degraded() {
                "degraded"
            } else {
                "enforced"
            };
            Ok(Json(Ready {
                status: "ready",
                sandbox,
            })
            .into_response())
        }
        Err(e) => {
            tracing::error!("readiness: {e}");
            Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable",
            ))
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", security(("bearer" = [])), extensions(("x-attune-role" = json!("viewer"))),
    responses((status = 200, description = "the OpenAPI 3.1 document", body = Object)))]
async fn openapi(caller: Caller) -> ApiResult {
    caller.require(Role::Viewer)?;
    Ok(Json(crate::openapi::document()).into_response())
}

/// The registered actions, by ref.
#[utoipa::path(get, path = "/api/v1/actions", tag = "actions", security(("bearer" = [])), extensions(("x-attune-role" = json!("viewer"))),
    responses((status = 200, body = [ActionSummary])))]
pub(crate) async fn list_actions(caller: Caller, State(app): State<Arc<App>>) -> ApiResult {
    caller.require(Role::Viewer)?;
    let mut list: Vec<ActionSummary> = app.catalog.actions().iter().map(|a| a.summary()).collect();
    list.sort_by(|a, b| a.action_ref.cmp(&b.action_ref));
    Ok(Json(list).into_response())
}

/// One action: its delivery, format, timeout and parameter schema.
#[utoipa::path(get, path = "/api/v1/actions/{action_ref}", tag = "actions", security(("bearer" = [])), extensions(("x-attune-role" = json!("viewer"))),
    params(("action_ref" = String, Path, description = "`<pack>.<action>`")),
    responses((status = 200, body = ActionSummary)))]
pub(crate) async fn get_action(
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

/// A registered pack.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct PackView {
    /// The pack's ref.
    #[serde(rename = "ref")]
    pack_ref: String,
    /// Its version, if pack.yaml gives one.
    version: Option<String>,
    /// Its description.
    description: Option<String>,
    /// SHA-256 of its bundle, hex.
    digest: String,
    /// RFC 3339 time it was registered.
    registered_at: String,
    /// Its actions' refs.
    actions: Vec<String>,
}

fn pack_view(p: &crate::catalog::LoadedPack) -> PackView {
    PackView {
        pack_ref: p.pack.pack_ref.clone(),
        version: p.pack.version.clone(),
        description: p.pack.description.clone(),
        digest: p.digest.clone(),
        registered_at: p.registered_at.clone(),
        actions: p.actions.values().map(|a| a.action_ref.clone()).collect(),
    }
}

/// The registered packs.
#[utoipa::path(get, path = "/api/v1/packs", tag = "packs", security(("bearer" = [])), extensions(("x-attune-role" = json!("viewer"))),
    responses((status = 200, body = [PackView])))]
pub(crate) async fn list_packs(caller: Caller, State(app): State<Arc<App>>) -> ApiResult {
    caller.require(Role::Viewer)?;
    Ok(Json(
        app.catalog
            .packs()
            .iter()
            .map(pack_view)
            .collect::<Vec<_>>(),
    )
    .into_response())
}

/// A pack bundle's bytes.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
struct BundleBytes(Vec<u8>);

/// Registers a pack, or replaces the one with its ref. The body is a pack bundle
/// (`attune pack bundle`, docs/api.md); an invalid one is a 422 saying why.
#[utoipa::path(post, path = "/api/v1/packs", tag = "packs", security(("bearer" = [])), extensions(("x-attune-role" = json!("admin"))),
    request_body(content = inline(BundleBytes), content_type = "application/octet-stream",
        description = "a pack bundle"),
    responses((status = 201, body = PackView)))]
pub(crate) async fn register_pack(
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
    Ok(created(pack_view(&loaded)))
}

/// Removes a pack and its actions (its executions stay).
#[utoipa::path(delete, path = "/api/v1/packs/{pack_ref}", tag = "packs", security(("bearer" = [])), extensions(("x-attune-role" = json!("admin"))),
    params(("pack_ref" = String, Path, description = "the pack's ref")),
    responses((status = 204, description = "removed"),
        (status = 409, description = "the bundled core pack cannot be removed", body = ProblemBody,
            content_type = "application/problem+json")))]
pub(crate) async fn remove_pack(
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

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only executions with this status.
    #[param(value_type = Option<ExecutionStatus>, nullable = false)]
    pub(crate) status: Option<String>,
    /// Only executions of this action (`<pack>.<action>`).
    #[param(nullable = false)]
    pub(crate) action: Option<String>,
    /// Only executions with a smaller id: the cursor of the next page.
    #[param(nullable = false)]
    pub(crate) before: Option<i64>,
    /// How many at most (default 50).
    #[param(minimum = 1, maximum = 200, nullable = false)]
    pub(crate) limit: Option<u32>,
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

/// Executions, newest first, without their output (`/output` serves it). A full page
/// names the next in its `Link` header.
#[utoipa::path(get, path = "/api/v1/executions", tag = "executions", security(("bearer" = [])), extensions(("x-attune-role" = json!("viewer"))),
    params(ListQuery),
    responses((status = 200, body = [Execution],
        headers(("Link" = String, description = "`<…?before=ID&limit=N>; rel=\"next\"` when there may be more")))))]
pub(crate) async fn list_executions(
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
    let items: Vec<Execution> = rows
        .into_iter()
        .map(|r| Execution {
            stdout: None,
            stderr: None,
            ..r
        })
        .collect();
    let mut resp = Json(items).into_response();
    if let Some(link) = next.and_then(|l| header::HeaderValue::from_str(&l).ok()) {
        resp.headers_mut().insert(header::LINK, link);
    }
    Ok(resp)
}

/// The longest `wait` of `GET /api/v1/executions/{id}`, in seconds.
pub const MAX_WAIT_SECS: u32 = 60;

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GetQuery {
    /// Answer once the execution has ended, or after this many seconds at the latest
    /// (default 0: at once). The answer comes as soon as the status changes to a final
    /// one, without polling.
    #[param(minimum = 0, maximum = 60, nullable = false)]
    pub(crate) wait: Option<u32>,
}

/// One execution, with its output. With `wait`, a long poll: the answer comes when the
/// execution ends, or after `wait` seconds with its status then.
#[utoipa::path(get, path = "/api/v1/executions/{id}", tag = "executions", security(("bearer" = [])), extensions(("x-attune-role" = json!("viewer"))),
    params(("id" = i64, Path, description = "the execution's id"), GetQuery),
    responses((status = 200, body = Execution)))]
pub(crate) async fn get_execution(
    caller: Caller,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<GetQuery>,
) -> ApiResult {
    caller.require(Role::Viewer)?;
    let wait = match q.wait.unwrap_or(0) {
        n @ 0..=MAX_WAIT_SECS => std::time::Duration::from_secs(u64::from(n)),
        n => {
            return Err(Problem::invalid(
                format!("wait {n} is out of range"),
                vec![format!("`wait` must be 0 to {MAX_WAIT_SECS} seconds")],
            ))
        }
    };
    // Watched before the first read: no change falls in between.
    let n = parse_id(&id)?;
    let mut changes = app.store.status_changes(n);
    let deadline = tokio::time::Instant::now() + wait;
    // What this process last heard of it (it stored it, or a change was announced): if
    // that says it has not ended, its status is not read back before the wait.
    let mut heard = changes.last_known();
    loop {
        use attune_store::Change;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        // While it runs, only its status is read, and only when the announcement did not
        // say what it became: the record (parameters, output) once, at the end.
        let done = match heard {
            _ if left.is_zero() => true,
            Change::Final => true,
            Change::NotFinal => false,
            Change::Unknown => app
                .store
                .execution_status(n)
                .await?
                .is_none_or(|s| s.is_final()),
        };
        if done {
            let e = load_execution(&app, &id).await?;
            return Ok(execution_response(StatusCode::OK, &e));
        }
        heard = changes.changed(left.min(STATUS_POLL)).await;
    }
}

/// The longest a waiter goes without reading the status again, should an announcement be
/// missed (PostgreSQL's listener reconnecting).
const STATUS_POLL: std::time::Duration = std::time::Duration::from_secs(1);

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
    tracing::error!("{e}");
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e)
}

/// Validates a request, resolves its secrets from the store and stores the execution
/// (secret values sealed, with an audit entry naming them) before answering.
/// `also_secret`: parameters that were secret when first stored (a rerun's), kept sealed
/// whatever the action says now. Also whether this process's workers need no waking
/// any more: on SQLite a small execution's are woken as soon as it is committed, and on
/// PostgreSQL the announcement at the commit wakes them. The caller answers and wakes a
/// worker otherwise ([`created_execution`]).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn submit(
    app: &Arc<App>,
    requested_by: &str,
    action_ref: &str,
    parameters: Map<String, Value>,
    env_vars: EnvVars,
    timeout: Option<u64>,
    rerun_of: Option<i64>,
    also_secret: &[String],
) -> Result<(ExecutionRow, bool), Problem> {
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
    // PostgreSQL: announced to one worker process (see `WorkTargets`).
    let postgres = app.store.backend() == attune_store::Backend::Postgres;
    let work_for = match postgres {
        true => app.targets.pick(&app.store, sealed.is_some()).await,
        false => None,
    };
    // SQLite: a small execution can be claimed while its insert waits for the disk.
    // PostgreSQL: the workers hear of it at its commit, this process's too: it is never
    // woken here.
    let woken = std::sync::atomic::AtomicBool::new(postgres);
    let row = app
        .store
        .insert_execution_then(
            NewExecution {
                action_ref: action.action_ref.clone(),
                parameters: action.parameters.redact_owned(parameters, also_secret),
                secrets: sealed,
                env_vars: env_vars.as_map().clone(),
                timeout_secs: timeout,
                requested_by: requested_by.to_string(),
                rerun_of,
                secret_refs: resolved.refs,
            },
            audit.as_ref(),
            work_for.as_deref(),
            || {
                if postgres {
                    return false;
                }
                woken.store(true, std::sync::atomic::Ordering::Relaxed);
                app.wake.work_arrived()
            },
        )
        .await?;
    if work_for.is_some() {
        // Announced to one process: to all if it has not claimed it soon.
        let mut changes = app.store.status_changes(row.id);
        let store = app.store.clone();
        tokio::spawn(async move {
            use attune_store::Change;
            let change = changes.changed(crate::UNCLAIMED_AFTER).await;
            if !matches!(change, Change::NotFinal | Change::Final) {
                if let Err(e) = store.announce_work().await {
                    tracing::debug!("cannot announce work to every worker: {e}");
                }
            }
        });
    }
    Ok((row, woken.into_inner()))
}

/// The 201 answer for a new execution; then a worker is woken, unless one was when it was
/// committed (`woken`). In that order, so that a large parameter document is not held by
/// this request while a worker reads it again.
fn created_execution(app: &App, (row, woken): (ExecutionRow, bool)) -> Response {
    let response = execution_response(StatusCode::CREATED, &row);
    drop(row);
    if !woken {
        app.wake.work_arrived();
    }
    response
}

/// What `POST /api/v1/executions` takes.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
struct ExecutionRequest {
    /// The action to run, `<pack>.<action>`.
    action_ref: String,
    /// Its parameters, checked against the action's schema; a secret one may be
    /// `{"$secret": "<name>"}`, filled from the secret store.
    parameters: Option<Map<String, Value>>,
    /// Extra environment variables for the action. Names are letters, digits and `_`;
    /// the platform's own (`PATH`, `HOME`, `ATTUNE_*`…) and those that make an
    /// interpreter run code (`LD_*`, `BASH_ENV`, `PYTHONSTARTUP`…) are refused.
    env_vars: Option<std::collections::BTreeMap<String, String>>,
    /// A timeout in seconds, at most the action's own.
    #[schema(minimum = 1)]
    timeout: Option<u64>,
}

/// Runs an action: the execution is stored (secret parameters sealed) before the answer.
/// Parameters are checked against the action's schema; a `{"$secret": "name"}` value is
/// filled from the secret store.
#[utoipa::path(post, path = "/api/v1/executions", tag = "executions", security(("bearer" = [])), extensions(("x-attune-role" = json!("operator"))),
    request_body = ExecutionRequest,
    responses((status = 201, body = Execution),
        (status = 404, description = "no such action", body = ProblemBody,
            content_type = "application/problem+json")))]
pub(crate) async fn create_execution(
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
    // An unknown action first: nothing else about the request matters then.
    if let Some(Value::String(a)) = body.get("action_ref") {
        if app.catalog.action(a).is_none() {
            return Err(no_action(&app, a));
        }
    }
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
    let submitted = submit(
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
    Ok(created_execution(&app, submitted))
}

/// Cancels an execution: one not started ends `canceled` at once; a running one gets
/// SIGTERM, then SIGKILL after its grace period.
#[utoipa::path(post, path = "/api/v1/executions/{id}/cancel", tag = "executions", security(("bearer" = [])), extensions(("x-attune-role" = json!("operator"))),
    params(("id" = i64, Path, description = "the execution's id")),
    responses((status = 202, body = Execution),
        (status = 409, description = "it has already ended", body = ProblemBody,
            content_type = "application/problem+json")))]
pub(crate) async fn cancel_execution(
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
            tracing::info!("execution {} cancel requested by {}", exec.id, caller.name);
            app.store
                .audit(&AuditEntry {
                    actor: caller.name.clone(),
                    kind: attune_store::EXECUTION_CANCEL.into(),
                    subject: format!("execution {}", exec.id),
                    detail: json!({"action": exec.action_ref, "status": exec.status}),
                })
                .await?;
            let row = load_execution(&app, &id).await?;
            return Ok(execution_response(StatusCode::ACCEPTED, &row));
        }
    }
    Err(Problem::conflict(
        "the execution changed state while being cancelled; try again",
    ))
}

/// Runs an execution's action again with the same parameters (secrets from the store are
/// looked up again).
#[utoipa::path(post, path = "/api/v1/executions/{id}/rerun", tag = "executions", security(("bearer" = [])), extensions(("x-attune-role" = json!("operator"))),
    params(("id" = i64, Path, description = "the execution's id")),
    responses((status = 201, body = Execution),
        (status = 422, description = "the action's parameters no longer accept these", body = ProblemBody,
            content_type = "application/problem+json")))]
pub(crate) async fn rerun_execution(
    caller: Caller,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> ApiResult {
    caller.require(Role::Operator)?;
    let mut exec = load_execution(&app, &id).await?;
    let (mut params, sealed_names) =
        crate::worker::full_parameters(&app, &mut exec).map_err(|e| sealed_problem(&e))?;
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
    let submitted = submit(
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
    Ok(created_execution(&app, submitted))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct OutputQuery {
    /// Keep the stream open until the execution ends (default false).
    #[param(nullable = false)]
    pub(crate) follow: Option<bool>,
}

/// One line of `/output`: a chunk of output, or (last) how the execution ended.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct OutputLine {
    /// `stdout` or `stderr`, for a chunk.
    stream: Option<String>,
    /// The chunk, masked (invalid UTF-8 replaced).
    data: Option<String>,
    /// The final status, on the last line.
    status: Option<ExecutionStatus>,
    /// Exit code, on the last line.
    exit_code: Option<i32>,
    /// Signal, on the last line.
    signal: Option<i32>,
    /// Error, on the last line.
    error: Option<String>,
}

fn ndjson_line(v: Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn chunk_line(stream: attune_runner::Stream, data: &[u8]) -> Bytes {
    named_chunk_line(crate::worker::stream_name(stream), data)
}

fn named_chunk_line(stream: &str, data: &[u8]) -> Bytes {
    ndjson_line(json!({"stream": stream, "data": String::from_utf8_lossy(data)}))
}

/// Sends the stored output chunks of `id` from `next` on; the next one to send, or `None`
/// if the client went away. `Err` if the database failed.
async fn send_stored_chunks(
    app: &App,
    id: i64,
    mut next: i64,
    tx: &tokio::sync::mpsc::Sender<Bytes>,
) -> Result<Option<i64>, attune_store::StoreError> {
    loop {
        let chunks = app.store.output_since(id, next).await?;
        if chunks.is_empty() {
            return Ok(Some(next));
        }
        for (seq, stream, data) in chunks {
            if tx.send(named_chunk_line(&stream, &data)).await.is_err() {
                return Ok(None);
            }
            next = seq + 1;
        }
    }
}

fn final_line(e: &ExecutionRow) -> Bytes {
    ndjson_line(
        json!({"status": e.status, "exit_code": e.exit_code, "signal": e.signal, "error": e.error}),
    )
}

/// An execution's output as NDJSON, one object per line: `{"stream","data"}` chunks,
/// then `{"status","exit_code","signal","error"}` once it has ended (or, without
/// `follow`, its status now).
#[utoipa::path(get, path = "/api/v1/executions/{id}/output", tag = "executions", security(("bearer" = [])), extensions(("x-attune-role" = json!("viewer"))),
    params(("id" = i64, Path, description = "the execution's id"), OutputQuery),
    responses((status = 200, body = OutputLine, content_type = "application/x-ndjson")))]
pub(crate) async fn execution_output(
    caller: Caller,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<OutputQuery>,
) -> ApiResult {
    caller.require(Role::Viewer)?;
    // Watched before the first read: no change falls in between.
    let changes = app.store.status_changes(parse_id(&id)?);
    let exec = load_execution(&app, &id).await?;
    let follow = q.follow.unwrap_or(false);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(stream_output(app.clone(), exec, follow, changes, tx));
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    }));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// Sends an execution's output: stored if it has ended, live while it runs. Between
/// states it waits for the status to change (`changes`), not for a timer.
async fn stream_output(
    app: Arc<App>,
    mut exec: ExecutionRow,
    follow: bool,
    mut changes: attune_store::StatusChanges,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let id = exec.id;
    // Output of an execution running on another process (PostgreSQL), as it is stored.
    let remote = app.store.backend() == attune_store::Backend::Postgres;
    let mut next_chunk = 0i64;
    loop {
        if exec.status.is_final() && next_chunk > 0 {
            // Streamed from the database so far: the rest from there too.
            if let Ok(Some(_)) = send_stored_chunks(&app, id, next_chunk, &tx).await {
                let _ = tx.send(final_line(&exec)).await;
            }
            return;
        }
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
        if remote
            && matches!(
                exec.status,
                ExecutionStatus::Running | ExecutionStatus::Canceling
            )
        {
            match send_stored_chunks(&app, id, next_chunk, &tx).await {
                Ok(Some(n)) => next_chunk = n,
                Ok(None) => return,
                Err(_) => {}
            }
        }
        if !follow {
            let _ = tx.send(final_line(&exec)).await;
            return;
        }
        // A remote worker's output is read from the database every 100 ms while it runs.
        let remote_running = remote && exec.status == ExecutionStatus::Running;
        let poll = if remote_running {
            std::time::Duration::from_millis(100)
        } else {
            STATUS_POLL
        };
        changes.changed(poll).await;
        exec = match app.store.get_execution(id).await {
            Ok(Some(e)) => e,
            _ => return,
        };
    }
}

/// The worker processes: the server's embedded ones and `attune worker`s, with their
/// state: `live`, `lost` (no heartbeat within the lease: what they had in flight is
/// abandoned) or `stopped`.
#[utoipa::path(get, path = "/api/v1/workers", tag = "workers", security(("bearer" = [])), extensions(("x-attune-role" = json!("viewer"))),
    responses((status = 200, body = [attune_store::WorkerRow])))]
pub(crate) async fn list_workers(caller: Caller, State(app): State<Arc<App>>) -> ApiResult {
    caller.require(Role::Viewer)?;
    Ok(Json(app.store.list_workers(crate::LEASE.as_secs()).await?).into_response())
}

/// The content type of `/metrics`.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Metrics in the Prometheus text format (OpenMetrics 1.0): executions by action and
/// status, execution and queue-wait durations, parameter deliveries by method and format,
/// parameter sizes, delivery time, parameter-file cleanups, queue depth, live workers and
/// the sandbox mode. Counters cover what this process's workers ran.
#[utoipa::path(get, path = "/metrics", tag = "meta", security(("bearer" = [])), extensions(("x-attune-role" = json!("viewer"))),
    responses((status = 200, description = "the metrics, one sample a line", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
async fn metrics(caller: Caller, State(app): State<Arc<App>>) -> ApiResult {
    caller.require(Role::Viewer)?;
    let depth = app.store.queue_depth().await?;
    let workers = app.store.list_workers(crate::LEASE.as_secs()).await?;
    let live = workers.iter().filter(|w| w.state == "live").count() as i64;
    let text = app.metrics.render(
        depth,
        live,
        app.running_count(),
        app.runner.sandbox().degraded(),
    );
    Ok(([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response())
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
