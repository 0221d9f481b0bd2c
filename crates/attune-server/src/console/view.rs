//! The console's page frame, navigation and shared pieces of markup.

use super::User;
use crate::auth::Role;
use crate::problem::Problem;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

/// The navigation: label, path, and the least role that sees it.
const NAV: [(&str, &str, Role); 7] = [
    ("Executions", "/executions", Role::Viewer),
    ("Actions", "/actions", Role::Viewer),
    ("Packs", "/packs", Role::Viewer),
    ("Secrets", "/secrets", Role::Operator),
    ("Tokens", "/tokens", Role::Admin),
    ("Workers", "/workers", Role::Viewer),
    ("Audit", "/audit", Role::Admin),
];

/// A whole page: head, header with navigation (for a signed-in user), `body` in `<main>`.
pub fn page(user: Option<&User>, title: &str, current: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Attune" }
                link rel="stylesheet" href="/console.css";
                script src="/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "Attune" }
                    @if let Some(u) = user {
                        nav aria-label="Main" {
                            ul {
                                @for (label, path, role) in NAV {
                                    @if u.can(role) {
                                        li {
                                            @if current == path {
                                                a href=(path) aria-current="page" { (label) }
                                            } @else {
                                                a href=(path) { (label) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        form.signout method="post" action="/logout" {
                            (csrf(u))
                            span.who { (u.caller.name) " (" (u.caller.role.as_str()) ")" }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The hidden CSRF field of a form.
pub fn csrf(u: &User) -> Markup {
    html! { input type="hidden" name="csrf" value=(u.csrf); }
}

/// A page as a response with `status`.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "same-origin"),
        ],
        markup.into_string(),
    )
        .into_response()
}

/// An error page: the status, one sentence, and the violations if any.
pub fn error_page(
    user: Option<&User>,
    status: StatusCode,
    detail: &str,
    errors: &[String],
) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    respond(
        status,
        page(
            user,
            title,
            "",
            html! {
                div.problem role="alert" {
                    p { (detail) }
                    @if !errors.is_empty() {
                        ul { @for e in errors { li { (e) } } }
                    }
                }
                p { a href="/" { "Back to the console" } }
            },
        ),
    )
}

/// An API problem as an error page.
pub fn problem_page(user: Option<&User>, p: Problem) -> Response {
    error_page(user, p.status, &p.detail, &p.errors)
}

/// A problem as a box inside a page (for a form's errors).
pub fn problem_box(p: &Problem) -> Markup {
    html! {
        div.problem role="alert" {
            p { (p.detail) }
            @if !p.errors.is_empty() {
                ul { @for e in &p.errors { li { (e) } } }
            }
        }
    }
}

/// A JSON field as text: strings as they are, null as empty, others as JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An RFC 3339 time shortened for a table (`2026-12-07 12:20:07`).
pub fn when(v: &Value) -> String {
    let t = text(v);
    t.get(..19).map_or(t.clone(), |s| s.replace('T', " "))
}

/// Milliseconds as a duration for people.
pub fn duration(v: &Value) -> String {
    match v.as_u64() {
        None => String::new(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{}m {}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// A status as a badge.
pub fn status_badge(status: &str) -> Markup {
    html! { span class={ "status status-" (status) } { (status) } }
}

/// A read-only table of JSON objects: `cols` are (heading, key).
pub fn table(caption: &str, rows: &[Value], cols: &[(&str, &str)]) -> Markup {
    html! {
        @if rows.is_empty() {
            p { "None yet." }
        } @else {
            div.scroll {
                table {
                    caption.visually-hidden { (caption) }
                    thead { tr { @for (h, _) in cols { th scope="col" { (h) } } } }
                    tbody {
                        @for r in rows {
                            tr {
                                @for (_, k) in cols {
                                    @let v = &r[*k];
                                    @if k.ends_with("_at") || *k == "at" {
                                        td { (when(v)) }
                                    } @else {
                                        td { (text(v)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
