//! The console's pages and form handlers. Each calls the API handler of the same
//! operation as the session's caller, so roles and validation are the API's own.

use super::form::{self, Entered, Errors};
use super::view::{self, csrf, page, respond, status_badge, table, text, when};
use super::{poster, user, User};
use crate::api;
use crate::api_admin;
use crate::auth::{hash_token, Role};
use crate::problem::Problem;
use crate::App;
use attune_core::ExecutionStatus;
use axum::body::Bytes;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::{json, Value};
use std::sync::Arc;

type Page = Result<Response, Response>;
type Fields = Form<Vec<(String, String)>>;

/// The largest API answer a page reads (an execution with its output).
const MAX_ANSWER: usize = 64 << 20;

/// The signed-in user of a page, or a redirect to the sign-in page.
async fn signed_in(app: &App, headers: &HeaderMap) -> Result<User, Response> {
    match user(app, headers).await {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(super::see_other("/login")),
        Err(p) => Err(view::problem_page(None, p)),
    }
}

/// The user of a state-changing form, who must have at least `role`.
async fn actor_user(
    app: &App,
    headers: &HeaderMap,
    form: &[(String, String)],
    role: Role,
) -> Result<User, Response> {
    let token = form
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str());
    let u = poster(app, headers, token).await?;
    u.caller
        .require(role)
        .map_err(|p| view::problem_page(Some(&u), p))?;
    Ok(u)
}

/// An API handler's answer as JSON, or its problem.
async fn json_of(answer: Result<Response, Problem>) -> Result<Value, Problem> {
    let resp = answer?;
    let bytes = axum::body::to_bytes(resp.into_body(), MAX_ANSWER)
        .await
        .map_err(Problem::internal)?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(Problem::internal)
}

/// An API answer for a page, or the error page.
async fn load(u: &User, answer: Result<Response, Problem>) -> Result<Value, Response> {
    json_of(answer)
        .await
        .map_err(|p| view::problem_page(Some(u), p))
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// `/`: the executions, or the sign-in page.
pub async fn home(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match user(&app, &headers).await {
        Ok(Some(_)) => super::see_other("/executions"),
        _ => super::see_other("/login"),
    }
}

/// The style sheet.
pub async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("console.css"),
    )
        .into_response()
}

/// The script: live rows and live output.
pub async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("console.js"),
    )
        .into_response()
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    respond(
        status,
        page(
            None,
            "Sign in",
            "",
            html! {
                form.login method="post" action="/login" {
                    @if let Some(e) = error {
                        div.problem role="alert" id="login-error" { p { (e) } }
                    }
                    div.field {
                        label for="token" { "API token" }
                        input type="password" id="token" name="token" required autocomplete="current-password"
                            aria-describedby=[error.map(|_| "login-error")];
                    }
                    button type="submit" { "Sign in" }
                }
                p.hint { "The first start writes an admin token to " code { "<data dir>/admin.token" } "; "
                    code { "attune token create" } " makes more." }
            },
        ),
    )
}

/// The sign-in page.
pub async fn login_form(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match user(&app, &headers).await {
        Ok(Some(_)) => super::see_other("/executions"),
        _ => login_page(StatusCode::OK, None),
    }
}

/// Signs in with an API token: a new session, whose cookie names only its id.
pub async fn login(State(app): State<Arc<App>>, headers: HeaderMap, Form(f): Fields) -> Response {
    if !super::same_origin(&headers) {
        return view::error_page(
            None,
            StatusCode::FORBIDDEN,
            "a request from another site is refused",
            &[],
        );
    }
    let token = f
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    if token.is_empty() {
        return login_page(StatusCode::UNAUTHORIZED, Some("Enter an API token."));
    }
    if token.len() > 200 {
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("That token is unknown or revoked."),
        );
    }
    let hash = hash_token(&token);
    match app.store.token_by_hash(&hash).await {
        Ok(Some(row)) => {
            // The session this browser had, if any, ends: one browser, one session.
            if let Some(old) = super::session_id(&headers) {
                app.console.end(&old);
            }
            let Some((sid, _)) = app.console.start(hash) else {
                return view::problem_page(None, Problem::internal("cannot start a session"));
            };
            tracing::info!("console: token `{}` signed in", row.name);
            let mut resp = super::see_other("/executions");
            if let Ok(v) = header::HeaderValue::from_str(&super::session_cookie(&sid)) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Ok(None) => login_page(
            StatusCode::UNAUTHORIZED,
            Some("That token is unknown or revoked."),
        ),
        Err(e) => view::problem_page(None, e.into()),
    }
}

/// Signs out: the session ends on the server and its cookie is removed.
pub async fn logout(State(app): State<Arc<App>>, headers: HeaderMap, Form(f): Fields) -> Response {
    let u = match actor_user(&app, &headers, &f, Role::Viewer).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    app.console.end(&u.sid);
    let mut resp = super::see_other("/login");
    if let Ok(v) = header::HeaderValue::from_str(&super::clear_cookie()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `?status=&action=` of the executions list.
#[derive(serde::Deserialize, Default)]
pub struct ExecFilter {
    status: Option<String>,
    action: Option<String>,
}

impl ExecFilter {
    fn query(&self) -> api::ListQuery {
        api::ListQuery {
            status: self.status.clone().filter(|s| !s.is_empty()),
            action: self
                .action
                .clone()
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().to_string()),
            before: None,
            limit: Some(100),
        }
    }

    fn as_query_string(&self) -> String {
        let q = self.query();
        let mut parts = Vec::new();
        if let Some(s) = q.status {
            parts.push(format!(
                "status={}",
                attune_core::percent_encode(&s, "-_.~", false)
            ));
        }
        if let Some(a) = q.action {
            parts.push(format!(
                "action={}",
                attune_core::percent_encode(&a, "-_.~", false)
            ));
        }
        parts.join("&")
    }
}

fn execution_rows_markup(rows: &[Value]) -> Markup {
    html! {
        @if rows.is_empty() {
            tr { td colspan="6" { "No executions match." } }
        }
        @for e in rows {
            @let id = text(&e["id"]);
            tr {
                td { a href={ "/executions/" (id) } { "#" (id) } }
                td { (text(&e["action_ref"])) }
                td { (status_badge(&text(&e["status"]))) }
                td.opt { (text(&e["requested_by"])) }
                td { (when(&e["created_at"])) }
                td.opt { (view::duration(&e["duration_ms"])) }
            }
        }
    }
}

/// The executions, newest first, with filters; the rows refresh themselves.
pub async fn executions(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(f): Query<ExecFilter>,
) -> Page {
    let u = signed_in(&app, &headers).await?;
    let rows = load(
        &u,
        api::list_executions(u.caller.clone(), State(app.clone()), Query(f.query())).await,
    )
    .await?;
    let actions = load(
        &u,
        api::list_actions(u.caller.clone(), State(app.clone())).await,
    )
    .await?;
    let status = f.status.clone().unwrap_or_default();
    let action = f.action.clone().unwrap_or_default();
    let qs = f.as_query_string();
    Ok(respond(
        StatusCode::OK,
        page(
            Some(&u),
            "Executions",
            "/executions",
            html! {
                form.filters method="get" action="/executions" role="search" {
                    div.field {
                        label for="status" { "Status" }
                        select id="status" name="status" {
                            option value="" { "Any" }
                            @for s in ExecutionStatus::ALL {
                                option value=(s.as_str()) selected[s.as_str() == status] { (s.as_str()) }
                            }
                        }
                    }
                    div.field {
                        label for="action" { "Action" }
                        input type="text" id="action" name="action" value=(action) list="action-refs" placeholder="pack.action";
                        datalist id="action-refs" {
                            @for a in list(&actions) { option value=(text(&a["ref"])) {} }
                        }
                    }
                    button type="submit" { "Filter" }
                }
                div.scroll {
                    table.executions {
                        caption.visually-hidden { "Executions, newest first" }
                        thead { tr {
                            th scope="col" { "ID" } th scope="col" { "Action" } th scope="col" { "Status" }
                            th.opt scope="col" { "Requested by" } th scope="col" { "When" } th.opt scope="col" { "Duration" }
                        } }
                        tbody id="execution-rows" aria-live="polite" data-live-rows={ "/executions/rows?" (qs) } {
                            (execution_rows_markup(list(&rows)))
                        }
                    }
                }
            },
        ),
    ))
}

/// The rows of the executions list alone, for its live refresh.
pub async fn execution_rows(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(f): Query<ExecFilter>,
) -> Response {
    let u = match user(&app, &headers).await {
        Ok(Some(u)) => u,
        Ok(None) => return StatusCode::UNAUTHORIZED.into_response(),
        Err(p) => return p.into_response(),
    };
    match json_of(
        api::list_executions(u.caller.clone(), State(app.clone()), Query(f.query())).await,
    )
    .await
    {
        Ok(rows) => respond(StatusCode::OK, execution_rows_markup(list(&rows))),
        Err(p) => p.into_response(),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// One execution: its record, result and output (live while it runs); Cancel while it
/// runs and Rerun after, for operators.
pub async fn execution(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Page {
    let u = signed_in(&app, &headers).await?;
    let e = load(
        &u,
        api::get_execution(
            u.caller.clone(),
            State(app.clone()),
            Path(id.clone()),
            Query(api::GetQuery { wait: None }),
        )
        .await,
    )
    .await?;
    let status = text(&e["status"]);
    let is_final = ExecutionStatus::parse(&status).is_some_and(ExecutionStatus::is_final);
    let id = text(&e["id"]);
    let record: [(&str, String); 11] = [
        ("Action", text(&e["action_ref"])),
        ("Requested by", text(&e["requested_by"])),
        ("Worker", text(&e["worker"])),
        ("Requested", when(&e["created_at"])),
        ("Started", when(&e["started_at"])),
        ("Finished", when(&e["finished_at"])),
        ("Duration", view::duration(&e["duration_ms"])),
        ("Exit code", text(&e["exit_code"])),
        ("Signal", text(&e["signal"])),
        ("Timeout", text(&e["timeout_secs"])),
        ("Rerun of", text(&e["rerun_of"])),
    ];
    let body = html! {
        div.actions-bar {
            @if is_final {
                p { "Status: " span id="execution-status" { (status_badge(&status)) } }
            } @else {
                p { "Status: " span id="execution-status" aria-live="polite"
                    data-live-status={ "/executions/" (id) "/status" } { (status_badge(&status)) } }
            }
            @if u.can(Role::Operator) {
                @if !is_final {
                    form method="post" action={ "/executions/" (id) "/cancel" } {
                        (csrf(&u))
                        button.danger type="submit" { "Cancel" }
                    }
                } @else {
                    form method="post" action={ "/executions/" (id) "/rerun" } {
                        (csrf(&u))
                        button type="submit" { "Rerun" }
                    }
                }
            }
        }
        @if let Some(err) = e["error"].as_str() {
            div.problem role="status" { p { (err) } }
        }
        h2 { "Record" }
        dl.record {
            @for (k, v) in &record {
                @if !v.is_empty() {
                    dt { (k) } dd { (v) }
                }
            }
        }
        h2 { "Parameters" }
        p.hint { "Secret parameters are shown as ********." }
        pre.json id="parameters" { (pretty(&e["parameters"])) }
        @if e["env_vars"].as_object().is_some_and(|m| !m.is_empty()) {
            h2 { "Environment variables" }
            pre.json { (pretty(&e["env_vars"])) }
        }
        h2 { "Result" }
        @if e["result"].is_null() {
            p { "None." }
        } @else {
            pre.json id="result" { (pretty(&e["result"])) }
        }
        h2 { "Output" }
        @if is_final {
            pre.output id="output" tabindex="0" {
                (text(&e["stdout"]))
                @if let Some(err) = e["stderr"].as_str().filter(|s| !s.is_empty()) {
                    span.stderr { (err) }
                }
            }
        } @else {
            pre.output id="output" tabindex="0" aria-live="polite"
                data-live-output={ "/executions/" (id) "/output" } { "Waiting for output…" }
        }
    };
    Ok(respond(
        StatusCode::OK,
        page(Some(&u), &format!("Execution #{id}"), "/executions", body),
    ))
}

/// An execution's status badge alone, for the live view of its page.
pub async fn execution_status(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let u = match user(&app, &headers).await {
        Ok(Some(u)) => u,
        Ok(None) => return StatusCode::UNAUTHORIZED.into_response(),
        Err(p) => return p.into_response(),
    };
    let answer = api::get_execution(
        u.caller,
        State(app),
        Path(id),
        Query(api::GetQuery { wait: None }),
    )
    .await;
    match json_of(answer).await {
        Ok(e) => respond(StatusCode::OK, status_badge(&text(&e["status"]))),
        Err(p) => p.into_response(),
    }
}

/// The execution's output as the API streams it (NDJSON, masked), for the live view.
pub async fn execution_output(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let u = match user(&app, &headers).await {
        Ok(Some(u)) => u,
        Ok(None) => return StatusCode::UNAUTHORIZED.into_response(),
        Err(p) => return p.into_response(),
    };
    api::execution_output(
        u.caller,
        State(app),
        Path(id),
        Query(api::OutputQuery { follow: Some(true) }),
    )
    .await
    .into_response()
}

/// Cancels an execution, then shows it.
pub async fn cancel(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Fields,
) -> Page {
    on_execution(app, &headers, &f, |c, a| {
        api::cancel_execution(c, State(a), Path(id))
    })
    .await
}

/// Runs an execution again, then shows the new one.
pub async fn rerun(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Fields,
) -> Page {
    on_execution(app, &headers, &f, |c, a| {
        api::rerun_execution(c, State(a), Path(id))
    })
    .await
}

/// An operator's request about an execution (`call`, an API handler), then the page of
/// the execution it answers with.
async fn on_execution<F, Fut>(
    app: Arc<App>,
    headers: &HeaderMap,
    f: &[(String, String)],
    call: F,
) -> Page
where
    F: FnOnce(crate::auth::Caller, Arc<App>) -> Fut,
    Fut: std::future::Future<Output = Result<Response, Problem>>,
{
    let u = actor_user(&app, headers, f, Role::Operator).await?;
    let e = load(&u, call(u.caller.clone(), app).await).await?;
    Ok(super::see_other(&format!("/executions/{}", text(&e["id"]))))
}

/// `?q=` of the actions list.
#[derive(serde::Deserialize)]
pub struct Search {
    q: Option<String>,
}

/// The actions, searchable by ref and description.
pub async fn actions(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(s): Query<Search>,
) -> Page {
    let u = signed_in(&app, &headers).await?;
    let all = load(
        &u,
        api::list_actions(u.caller.clone(), State(app.clone())).await,
    )
    .await?;
    let q = s.q.unwrap_or_default();
    let needle = q.trim().to_lowercase();
    let shown: Vec<&Value> = list(&all)
        .iter()
        .filter(|a| {
            needle.is_empty()
                || text(&a["ref"]).to_lowercase().contains(&needle)
                || text(&a["description"]).to_lowercase().contains(&needle)
        })
        .collect();
    Ok(respond(
        StatusCode::OK,
        page(
            Some(&u),
            "Actions",
            "/actions",
            html! {
                form.filters method="get" action="/actions" role="search" {
                    div.field {
                        label for="q" { "Search" }
                        input type="search" id="q" name="q" value=(q);
                    }
                    button type="submit" { "Search" }
                }
                @if shown.is_empty() {
                    p { "No action matches." }
                } @else {
                    div.scroll { table {
                        caption.visually-hidden { "Actions" }
                        thead { tr { th scope="col" { "Action" } th scope="col" { "Description" } th scope="col" { "Runner" } th scope="col" { "Enabled" } } }
                        tbody {
                            @for a in &shown {
                                @let r = text(&a["ref"]);
                                tr {
                                    td { a href={ "/actions/" (r) } { (r) } }
                                    td { (text(&a["description"])) }
                                    td { (text(&a["runner_type"])) }
                                    td { @if a["enabled"] == Value::Bool(false) { "no" } @else { "yes" } }
                                }
                            }
                        }
                    } }
                }
            },
        ),
    ))
}

fn action_page(
    u: &User,
    a: &Value,
    entered: &Entered,
    errors: &Errors,
    problem: Option<&Problem>,
) -> Markup {
    let r = text(&a["ref"]);
    let secret: Vec<String> = list(&a["secret_parameters"])
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let fields = form::fields(&a["parameters"], &secret);
    let facts = [
        ("Description", text(&a["description"])),
        ("Runner", text(&a["runner_type"])),
        ("Entry point", text(&a["entry_point"])),
        ("Delivery", text(&a["parameter_delivery"])),
        ("Format", text(&a["parameter_format"])),
        ("Timeout", format!("{} s", text(&a["timeout"]))),
        (
            "Enabled",
            if a["enabled"] == Value::Bool(false) {
                "no".into()
            } else {
                "yes".into()
            },
        ),
    ];
    let body = html! {
        dl.record {
            @for (k, v) in &facts { dt { (k) } dd { (v) } }
        }
        h2 { "Parameters" }
        @if fields.is_empty() {
            p { "None." }
        } @else {
            div.scroll { table {
                caption.visually-hidden { "Parameters" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" { "Required" } th scope="col" { "Secret" } th scope="col" { "Default" } th scope="col" { "Description" } } }
                tbody {
                    @for f in &fields {
                        @let p = &a["parameters"]["properties"][&f.name];
                        tr {
                            td { code { (f.name) } }
                            td { (text(&p["type"])) @if let Some(e) = p["enum"].as_array() { " (" (e.iter().map(text).collect::<Vec<_>>().join(", ")) ")" } }
                            td { @if f.required { "yes" } @else { "no" } }
                            td { @if f.secret { "yes" } @else { "no" } }
                            td { @if !f.secret { (f.default.as_ref().map(text).unwrap_or_default()) } }
                            td { (f.description.clone().unwrap_or_default()) }
                        }
                    }
                }
            } }
        }
        @if u.can(Role::Operator) {
            h2 { "Run" }
            @if let Some(p) = problem { (view::problem_box(p)) }
            (form::render(&r, &fields, entered, errors, &u.csrf))
        }
    };
    page(Some(u), &r, "/actions", body)
}

/// One action: what it is, its parameters, and (for operators) its run form.
pub async fn action(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(action_ref): Path<String>,
) -> Page {
    let u = signed_in(&app, &headers).await?;
    let a = load(
        &u,
        api::get_action(u.caller.clone(), State(app), Path(action_ref)).await,
    )
    .await?;
    Ok(respond(
        StatusCode::OK,
        action_page(&u, &a, &Entered::default(), &Errors::default(), None),
    ))
}

/// Runs an action from its form: to the new execution's page, or the form again with the
/// errors next to their fields (secret fields empty).
pub async fn run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(action_ref): Path<String>,
    Form(f): Fields,
) -> Page {
    let u = actor_user(&app, &headers, &f, Role::Operator).await?;
    let a = load(
        &u,
        api::get_action(
            u.caller.clone(),
            State(app.clone()),
            Path(action_ref.clone()),
        )
        .await,
    )
    .await?;
    let secret: Vec<String> = list(&a["secret_parameters"])
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let fields = form::fields(&a["parameters"], &secret);
    let (entered, body) = form::read(&fields, &f);
    let mut body = match body {
        Ok(b) => b,
        Err(errors) => {
            return Err(respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                action_page(&u, &a, &entered, &errors, None),
            ))
        }
    };
    body.insert("action_ref".into(), Value::String(action_ref));
    let answer = api::create_execution(
        u.caller.clone(),
        State(app),
        api::ApiJson(Value::Object(body)),
    )
    .await;
    match json_of(answer).await {
        Ok(e) => Ok(super::see_other(&format!("/executions/{}", text(&e["id"])))),
        Err(p) if p.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let mut errors = Errors::default();
            errors.file(&fields, &p.errors);
            // Env var errors from the API are filed with the variables.
            let (env, rest): (Vec<String>, Vec<String>) = std::mem::take(&mut errors.general)
                .into_iter()
                .partition(|e| e.contains("env") || e.contains("variable"));
            errors.env.extend(env);
            errors.general = rest;
            let problem = Problem::new(p.status, p.detail);
            Err(respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                action_page(&u, &a, &entered, &errors, Some(&problem)),
            ))
        }
        Err(p) => Err(view::problem_page(Some(&u), p)),
    }
}

fn packs_page(u: &User, packs: &Value, problem: Option<&Problem>) -> Markup {
    let body = html! {
        @if let Some(p) = problem { (view::problem_box(p)) }
        div.scroll { table {
            caption.visually-hidden { "Packs" }
            thead { tr {
                th scope="col" { "Pack" } th scope="col" { "Version" } th scope="col" { "Description" }
                th scope="col" { "Actions" } th scope="col" { "Registered" }
                @if u.can(Role::Admin) { th scope="col" { span.visually-hidden { "Remove" } } }
            } }
            tbody {
                @for p in list(packs) {
                    @let r = text(&p["ref"]);
                    tr {
                        td { (r) }
                        td { (text(&p["version"])) }
                        td { (text(&p["description"])) }
                        td { @for a in list(&p["actions"]) { a href={ "/actions/" (text(a)) } { (text(a)) } " " } }
                        td { (when(&p["registered_at"])) }
                        @if u.can(Role::Admin) {
                            td { @if r != "core" {
                                form method="post" action={ "/packs/" (r) "/remove" } {
                                    (csrf(u))
                                    button.danger type="submit" aria-label={ "Remove pack " (r) } { "Remove" }
                                }
                            } }
                        }
                    }
                }
            }
        } }
        @if u.can(Role::Admin) {
            h2 { "Register a pack" }
            form method="post" action="/packs" enctype="multipart/form-data" {
                (csrf(u))
                div.field {
                    label for="bundle" { "Pack bundle" }
                    p.hint id="bundle-hint" { "A pack bundle (docs/api.md) or a tar archive of the pack directory." }
                    input type="file" id="bundle" name="bundle" required aria-describedby="bundle-hint";
                }
                button type="submit" { "Register" }
            }
        }
    };
    page(Some(u), "Packs", "/packs", body)
}

/// The registered packs; admins remove and register them here.
pub async fn packs(State(app): State<Arc<App>>, headers: HeaderMap) -> Page {
    let u = signed_in(&app, &headers).await?;
    let packs = load(&u, api::list_packs(u.caller.clone(), State(app)).await).await?;
    Ok(respond(StatusCode::OK, packs_page(&u, &packs, None)))
}

/// Registers a pack from an uploaded bundle or tar archive.
pub async fn register_pack(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Page {
    // Only an admin's session gets its upload parsed (the CSRF token is inside it).
    let admin = matches!(user(&app, &headers).await, Ok(Some(u)) if u.can(Role::Admin));
    if !admin {
        return Err(view::error_page(
            None,
            StatusCode::FORBIDDEN,
            "registering a pack needs an admin's session; sign in again",
            &[],
        ));
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let parts = super::multipart::boundary(ct)
        .and_then(|b| super::multipart::parts(&body, &b))
        .unwrap_or_default();
    let field = |n: &str| parts.iter().find(|p| p.name == n).map(|p| p.data);
    let csrf_field = field("csrf")
        .and_then(|d| std::str::from_utf8(d).ok())
        .map(|s| ("csrf".to_string(), s.to_string()));
    let u = actor_user(&app, &headers, csrf_field.as_slice(), Role::Admin).await?;
    let bytes = field("bundle").unwrap_or_default();
    let bytes = super::tar::to_bundle(bytes).unwrap_or_else(|| bytes.to_vec());
    let answer =
        api::register_pack(u.caller.clone(), State(app.clone()), Ok(Bytes::from(bytes))).await;
    match json_of(answer).await {
        Ok(_) => Ok(super::see_other("/packs")),
        Err(p) => {
            let packs = load(&u, api::list_packs(u.caller.clone(), State(app)).await).await?;
            Err(respond(p.status, packs_page(&u, &packs, Some(&p))))
        }
    }
}

/// Removes a pack.
pub async fn remove_pack(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(pack_ref): Path<String>,
    Form(f): Fields,
) -> Page {
    let u = actor_user(&app, &headers, &f, Role::Admin).await?;
    load(
        &u,
        api::remove_pack(u.caller.clone(), State(app), Path(pack_ref)).await,
    )
    .await?;
    Ok(super::see_other("/packs"))
}

fn secrets_page(
    u: &User,
    rows: &Value,
    problem: Option<&Problem>,
    name: &str,
    scope: &str,
) -> Markup {
    let body = html! {
        @if let Some(p) = problem { (view::problem_box(p)) }
        p.hint { "Values are write-only: they are never shown here." }
        @if list(rows).is_empty() {
            p { "No secrets stored." }
        } @else {
            div.scroll { table {
                caption.visually-hidden { "Secrets" }
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Scope" } th scope="col" { "Created" }
                    th scope="col" { "Updated" } th scope="col" { "Updated by" }
                    @if u.can(Role::Admin) { th scope="col" { span.visually-hidden { "Delete" } } }
                } }
                tbody {
                    @for s in list(rows) {
                        tr {
                            td { (text(&s["name"])) }
                            td { (text(&s["scope"])) }
                            td { (when(&s["created_at"])) }
                            td { (when(&s["updated_at"])) }
                            td { (text(&s["updated_by"])) }
                            @if u.can(Role::Admin) {
                                td { form method="post" action="/secrets/delete" {
                                    (csrf(u))
                                    input type="hidden" name="name" value=(text(&s["name"]));
                                    input type="hidden" name="scope" value=(text(&s["scope"]));
                                    button.danger type="submit" aria-label={ "Delete secret " (text(&s["name"])) " (" (text(&s["scope"])) ")" } { "Delete" }
                                } }
                            }
                        }
                    }
                }
            } }
        }
        @if u.can(Role::Admin) {
            h2 { "Set a secret" }
            form method="post" action="/secrets" autocomplete="off" {
                (csrf(u))
                div.field {
                    label for="secret-name" { "Name" }
                    input type="text" id="secret-name" name="name" value=(name) required;
                }
                div.field {
                    label for="secret-scope" { "Scope" }
                    p.hint id="scope-hint" { code { "global" } ", " code { "pack:<pack>" } " or " code { "action:<pack>.<action>" } }
                    input type="text" id="secret-scope" name="scope" value=(scope) aria-describedby="scope-hint";
                }
                div.field {
                    label for="secret-value" { "Value" }
                    input type="password" id="secret-value" name="value" required autocomplete="new-password";
                }
                button type="submit" { "Set secret" }
            }
        }
    };
    page(Some(u), "Secrets", "/secrets", body)
}

/// The stored secrets: names, scopes, dates.
pub async fn secrets(State(app): State<Arc<App>>, headers: HeaderMap) -> Page {
    let u = signed_in(&app, &headers).await?;
    let rows = secret_rows(&u, app).await?;
    Ok(respond(
        StatusCode::OK,
        secrets_page(&u, &rows, None, "", "global"),
    ))
}

/// Every stored secret (names, scopes, dates), as the user may list them.
async fn secret_rows(u: &User, app: Arc<App>) -> Result<Value, Response> {
    let all = Query(api_admin::ScopeQuery { scope: None });
    load(
        u,
        api_admin::list_secrets(u.caller.clone(), State(app), all).await,
    )
    .await
}

/// Every API token, as the user may list them.
async fn token_rows(u: &User, app: Arc<App>) -> Result<Value, Response> {
    load(
        u,
        api_admin::list_tokens(u.caller.clone(), State(app)).await,
    )
    .await
}

fn field<'a>(f: &'a [(String, String)], name: &str) -> &'a str {
    f.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Stores a secret's value (write-only).
pub async fn set_secret(State(app): State<Arc<App>>, headers: HeaderMap, Form(f): Fields) -> Page {
    let u = actor_user(&app, &headers, &f, Role::Admin).await?;
    let (name, scope) = (field(&f, "name").trim(), field(&f, "scope").trim());
    let scope = if scope.is_empty() { "global" } else { scope };
    let answer = api_admin::put_secret(
        u.caller.clone(),
        State(app.clone()),
        Path(name.to_string()),
        api::ApiJson(json!({"value": field(&f, "value"), "scope": scope})),
    )
    .await;
    match json_of(answer).await {
        Ok(_) => Ok(super::see_other("/secrets")),
        Err(p) => {
            let rows = secret_rows(&u, app).await?;
            Err(respond(
                p.status,
                secrets_page(&u, &rows, Some(&p), name, scope),
            ))
        }
    }
}

/// Deletes a stored secret.
pub async fn delete_secret(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Fields,
) -> Page {
    let u = actor_user(&app, &headers, &f, Role::Admin).await?;
    let scope = Some(field(&f, "scope").to_string()).filter(|s| !s.is_empty());
    load(
        &u,
        api_admin::delete_secret(
            u.caller.clone(),
            State(app),
            Path(field(&f, "name").to_string()),
            Query(api_admin::ScopeQuery { scope }),
        )
        .await,
    )
    .await?;
    Ok(super::see_other("/secrets"))
}

fn tokens_page(
    u: &User,
    rows: &Value,
    problem: Option<&Problem>,
    created: Option<&Value>,
) -> Markup {
    let body = html! {
        @if let Some(p) = problem { (view::problem_box(p)) }
        @if let Some(t) = created {
            div.created role="status" {
                p { "Token " strong { (text(&t["name"])) } " (" (text(&t["role"])) ") was created. Copy it now: it is not shown again." }
                label for="new-token" { "New token" }
                input type="text" id="new-token" readonly value=(text(&t["token"]));
            }
        }
        div.scroll { table {
            caption.visually-hidden { "Tokens" }
            thead { tr {
                th scope="col" { "ID" } th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Created" }
                th scope="col" { "Last used" } th scope="col" { "Revoked" } th scope="col" { span.visually-hidden { "Revoke" } }
            } }
            tbody {
                @for t in list(rows) {
                    @let id = text(&t["id"]);
                    tr {
                        td { (id) }
                        td { (text(&t["name"])) }
                        td { (text(&t["role"])) }
                        td { (when(&t["created_at"])) }
                        td { (when(&t["last_used_at"])) }
                        td { (when(&t["revoked_at"])) }
                        td { @if t["revoked_at"].is_null() {
                            form method="post" action={ "/tokens/" (id) "/revoke" } {
                                (csrf(u))
                                button.danger type="submit" aria-label={ "Revoke token " (text(&t["name"])) } { "Revoke" }
                            }
                        } }
                    }
                }
            }
        } }
        h2 { "Create a token" }
        form method="post" action="/tokens" autocomplete="off" {
            (csrf(u))
            div.field {
                label for="token-name" { "Name" }
                input type="text" id="token-name" name="name";
            }
            div.field {
                label for="token-role" { "Role" }
                select id="token-role" name="role" {
                    option value="viewer" { "viewer" }
                    option value="operator" { "operator" }
                    option value="admin" { "admin" }
                }
            }
            button type="submit" { "Create token" }
        }
    };
    page(Some(u), "Tokens", "/tokens", body)
}

/// The API tokens (admins).
pub async fn tokens(State(app): State<Arc<App>>, headers: HeaderMap) -> Page {
    let u = signed_in(&app, &headers).await?;
    let rows = token_rows(&u, app).await?;
    Ok(respond(StatusCode::OK, tokens_page(&u, &rows, None, None)))
}

/// Creates a token and shows it, once.
pub async fn create_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Fields,
) -> Page {
    let u = actor_user(&app, &headers, &f, Role::Admin).await?;
    let name = field(&f, "name").trim();
    let mut req = json!({"role": field(&f, "role")});
    if !name.is_empty() {
        req["name"] = Value::String(name.to_string());
    }
    let answer =
        api_admin::create_token(u.caller.clone(), State(app.clone()), api::ApiJson(req)).await;
    let (created, problem) = match json_of(answer).await {
        Ok(t) => (Some(t), None),
        Err(p) => (None, Some(p)),
    };
    let rows = token_rows(&u, app).await?;
    let status = problem.as_ref().map_or(StatusCode::CREATED, |p| p.status);
    Ok(respond(
        status,
        tokens_page(&u, &rows, problem.as_ref(), created.as_ref()),
    ))
}

/// Revokes a token.
pub async fn revoke_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Fields,
) -> Page {
    let u = actor_user(&app, &headers, &f, Role::Admin).await?;
    match json_of(api_admin::revoke_token(u.caller.clone(), State(app.clone()), Path(id)).await)
        .await
    {
        Ok(_) => Ok(super::see_other("/tokens")),
        Err(p) => {
            let rows = token_rows(&u, app).await?;
            Err(respond(p.status, tokens_page(&u, &rows, Some(&p), None)))
        }
    }
}

/// The worker processes.
pub async fn workers(State(app): State<Arc<App>>, headers: HeaderMap) -> Page {
    let u = signed_in(&app, &headers).await?;
    let rows = load(&u, api::list_workers(u.caller.clone(), State(app)).await).await?;
    Ok(respond(
        StatusCode::OK,
        page(
            Some(&u),
            "Workers",
            "/workers",
            table(
                "Workers",
                list(&rows),
                &[
                    ("Name", "name"),
                    ("Host", "host"),
                    ("State", "state"),
                    ("Running", "running"),
                    ("Concurrency", "concurrency"),
                    ("Started", "started_at"),
                    ("Heartbeat", "heartbeat_at"),
                    ("Stopped", "stopped_at"),
                    ("Holds key", "holds_key"),
                ],
            ),
        ),
    ))
}

/// The audit log, newest first (admins).
pub async fn audit(State(app): State<Arc<App>>, headers: HeaderMap) -> Page {
    let u = signed_in(&app, &headers).await?;
    let q = api_admin::AuditQuery {
        since: None,
        kind: None,
        before: None,
        limit: Some(200),
    };
    let rows = load(
        &u,
        api_admin::list_audit(u.caller.clone(), State(app), Query(q)).await,
    )
    .await?;
    Ok(respond(
        StatusCode::OK,
        page(
            Some(&u),
            "Audit",
            "/audit",
            table(
                "Audit log, newest first",
                list(&rows),
                &[
                    ("ID", "id"),
                    ("At", "at"),
                    ("Actor", "actor"),
                    ("Kind", "kind"),
                    ("Subject", "subject"),
                    ("Detail", "detail"),
                ],
            ),
        ),
    ))
}
