//! The web console (DESIGN.md §7): server-rendered pages at `/`, signed in with an API
//! token. Every page and form calls the API's own handlers with the session's caller, so the
//! console can do exactly what the API lets that token do, and nothing else.
//!
//! A session is a random id in an HttpOnly, SameSite=Strict cookie, mapped here to the
//! token's hash (never the token itself); every state-changing form carries the session's
//! CSRF token, and a POST from another origin is refused.

mod form;
mod multipart;
mod pages;
mod tar;
mod view;

use crate::auth::{Caller, Role};
use crate::App;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// The most sessions kept at once; past it, the oldest is ended.
const MAX_SESSIONS: usize = 10_000;
/// The most sessions of one token; past it, that token's oldest is ended (so one token
/// signing in again and again cannot push everyone else's sessions out).
const MAX_SESSIONS_PER_TOKEN: usize = 16;
/// The session cookie's name.
const COOKIE: &str = "attune_session";

/// One signed-in browser.
#[derive(Debug, Clone)]
struct Session {
    /// SHA-256 of the token signed in with: the token itself is never kept.
    token_hash: String,
    /// The CSRF token every state-changing form of this session carries.
    csrf: String,
    /// When it ends.
    expires: Instant,
}

/// The console's signed-in sessions, by session id.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session for a token (by its hash); its id and CSRF token.
    fn start(&self, token_hash: String) -> Option<(String, String)> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let now = Instant::now();
        let mut map = self.map.lock().ok()?;
        map.retain(|_, s| s.expires > now);
        let oldest = |map: &HashMap<String, Session>, same_token: bool| {
            map.iter()
                .filter(|(_, s)| !same_token || s.token_hash == token_hash)
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        };
        let of_token = map.values().filter(|s| s.token_hash == token_hash).count();
        let evict = if of_token >= MAX_SESSIONS_PER_TOKEN {
            oldest(&map, true)
        } else if map.len() >= MAX_SESSIONS {
            oldest(&map, false)
        } else {
            None
        };
        if let Some(k) = evict {
            map.remove(&k);
        }
        map.insert(
            id.clone(),
            Session {
                token_hash,
                csrf: csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        Some((id, csrf))
    }

    /// The live session with this id.
    fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock().ok()?;
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    fn end(&self, id: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(id);
        }
    }
}

/// 32 random bytes as hex.
fn random_hex() -> Option<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The signed-in user of a request.
#[derive(Debug, Clone)]
pub struct User {
    /// The caller the API handlers are called as.
    caller: Caller,
    /// The session's CSRF token, for the forms of the page.
    csrf: String,
    /// The session id.
    sid: String,
}

impl User {
    fn can(&self, role: Role) -> bool {
        self.caller.role >= role
    }
}

/// The session id in the request's cookies.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The signed-in user, if the session is live and its token still valid (a revoked token
/// ends its sessions).
async fn user(app: &App, headers: &HeaderMap) -> Result<Option<User>, crate::problem::Problem> {
    let Some(sid) = session_id(headers) else {
        return Ok(None);
    };
    let Some(session) = app.console.get(&sid) else {
        return Ok(None);
    };
    let Some(row) = app.store.token_by_hash(&session.token_hash).await? else {
        app.console.end(&sid);
        return Ok(None);
    };
    let Some(role) = Role::parse(&row.role) else {
        return Ok(None);
    };
    crate::auth::note_use(app, &row);
    tracing::Span::current().record("caller", row.name.as_str());
    Ok(Some(User {
        caller: Caller {
            id: row.id,
            name: row.name,
            role,
        },
        csrf: session.csrf,
        sid,
    }))
}

/// Whether a POST comes from this site: no `Origin`, or one whose host is the request's
/// `Host`; and not marked cross-site by the browser.
fn same_origin(headers: &HeaderMap) -> bool {
    let cross = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site");
    if cross {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, h)| h);
    matches!((origin_host, host), (Some(o), Some(h)) if o == h)
}

/// The user of a state-changing request: a live session, a same-origin request and the
/// session's CSRF token; else 403.
async fn poster(app: &App, headers: &HeaderMap, csrf: Option<&str>) -> Result<User, Response> {
    let refuse = |why: &str| view::error_page(None, StatusCode::FORBIDDEN, why, &[]);
    if !same_origin(headers) {
        return Err(refuse("a request from another site is refused"));
    }
    let u = match user(app, headers).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return Err(refuse(
                "you are not signed in (or your session has ended); sign in again",
            ))
        }
        Err(p) => return Err(view::problem_page(None, p)),
    };
    match csrf {
        Some(t) if ct_eq(t.as_bytes(), u.csrf.as_bytes()) => Ok(u),
        _ => Err(refuse(
            "the form's CSRF token is missing or wrong; reload the page and try again",
        )),
    }
}

/// The `Set-Cookie` value of a session.
fn session_cookie(sid: &str) -> String {
    format!(
        "{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// A 303 to `to`.
fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// The largest sign-in form read.
const MAX_LOGIN_BYTES: usize = 16 * 1024;

/// Refuses a state-changing request from another site or without a live session before
/// its body is read (the handler then checks its CSRF token and role).
async fn signed_in_posts(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD {
        return next.run(req).await;
    }
    let refuse = |why: &str| view::error_page(None, StatusCode::FORBIDDEN, why, &[]);
    if !same_origin(req.headers()) {
        return refuse("a request from another site is refused");
    }
    match user(&app, req.headers()).await {
        Ok(Some(_)) => next.run(req).await,
        Ok(None) => refuse("you are not signed in (or your session has ended); sign in again"),
        Err(p) => view::problem_page(None, p),
    }
}

/// The console's routes (not in the OpenAPI document).
pub fn routes(app: Arc<App>) -> Router<Arc<App>> {
    use pages::*;
    let login_routes = Router::new()
        .route("/login", get(login_form).post(login))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_LOGIN_BYTES));
    Router::new()
        .route("/", get(home))
        .route("/console.css", get(css))
        .route("/console.js", get(js))
        .route("/logout", post(logout))
        .route("/executions", get(executions))
        .route("/executions/rows", get(execution_rows))
        .route("/executions/{id}", get(execution))
        .route("/executions/{id}/output", get(execution_output))
        .route("/executions/{id}/status", get(execution_status))
        .route("/executions/{id}/cancel", post(cancel))
        .route("/executions/{id}/rerun", post(rerun))
        .route("/actions", get(actions))
        .route("/actions/{action_ref}", get(action))
        .route("/actions/{action_ref}/run", post(run))
        .route("/packs", get(packs).post(register_pack))
        .route("/packs/{pack_ref}/remove", post(remove_pack))
        .route("/secrets", get(secrets).post(set_secret))
        .route("/secrets/delete", post(delete_secret))
        .route("/tokens", get(tokens).post(create_token))
        .route("/tokens/{id}/revoke", post(revoke_token))
        .route("/workers", get(workers))
        .route("/audit", get(audit))
        .route_layer(axum::middleware::from_fn_with_state(app, signed_in_posts))
        .merge(login_routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"", b"a"));
    }

    #[test]
    fn session_ids_come_from_the_cookie_header() {
        let mut h = HeaderMap::new();
        let sid = "a".repeat(64);
        h.insert(
            header::COOKIE,
            format!("x=1; {COOKIE}={sid}; y=2").parse().unwrap(),
        );
        assert_eq!(session_id(&h), Some(sid));
        h.insert(header::COOKIE, format!("{COOKIE}=short").parse().unwrap());
        assert_eq!(session_id(&h), None);
    }

    #[test]
    fn cross_origin_posts_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8228".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "http://127.0.0.1:8228".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!same_origin(&h));
    }

    #[test]
    fn one_token_cannot_push_out_the_sessions_of_others() {
        let s = Sessions::default();
        let (other, _) = s.start("other".into()).unwrap();
        let first = s.start("noisy".into()).unwrap().0;
        for _ in 0..MAX_SESSIONS_PER_TOKEN + 5 {
            s.start("noisy".into()).unwrap();
        }
        assert!(s.get(&other).is_some());
        assert!(
            s.get(&first).is_none(),
            "the noisy token's oldest session ended"
        );
        let noisy = s
            .map
            .lock()
            .unwrap()
            .values()
            .filter(|x| x.token_hash == "noisy")
            .count();
        assert_eq!(noisy, MAX_SESSIONS_PER_TOKEN);
    }

    #[test]
    fn sessions_start_and_end() {
        let s = Sessions::default();
        let (id, csrf) = s.start("hash".into()).unwrap();
        assert_eq!(s.get(&id).unwrap().csrf, csrf);
        s.end(&id);
        assert!(s.get(&id).is_none());
    }
}
