//! Errors as `application/problem+json` (RFC 9457): a status, a title, one sentence of
//! detail, and for validation failures every violation.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::{AtomicU64, Ordering};

/// An API error.
#[derive(Debug)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// One sentence a user can act on; never a secret value.
    pub detail: String,
    /// Every violation, for 422s.
    pub errors: Vec<String>,
}

impl Problem {
    /// A problem with `status` and `detail`.
    pub fn new(status: StatusCode, detail: impl std::fmt::Display) -> Problem {
        Problem {
            status,
            detail: detail.to_string(),
            errors: Vec::new(),
        }
    }

    /// 400.
    pub fn bad_request(detail: impl std::fmt::Display) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404.
    pub fn not_found(detail: impl std::fmt::Display) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }

    /// 409.
    pub fn conflict(detail: impl std::fmt::Display) -> Problem {
        Problem::new(StatusCode::CONFLICT, detail)
    }

    /// 422 with a list of violations.
    pub fn invalid(detail: impl std::fmt::Display, errors: Vec<String>) -> Problem {
        Problem {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: detail.to_string(),
            errors,
        }
    }

    /// 500: something failed that the client cannot fix; the detail is logged only.
    pub fn internal(e: impl std::fmt::Display) -> Problem {
        tracing::error!("internal error: {e}");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the server log",
        )
    }
}

/// When a request's database error was last logged at error level (seconds since the
/// epoch), and how many were not since then.
static STORE_ERROR_LOGGED: AtomicU64 = AtomicU64::new(0);
static STORE_ERRORS_UNSAID: AtomicU64 = AtomicU64::new(0);

/// Logs a request's database error: at most one line every 10 s at error level, saying how
/// many were left out (an outage fails every request; the operator needs one line, not
/// thousands); the rest at debug level.
fn log_store_error(e: &attune_store::StoreError) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = STORE_ERROR_LOGGED.load(Ordering::Relaxed);
    if now >= last + 10
        && STORE_ERROR_LOGGED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        match STORE_ERRORS_UNSAID.swap(0, Ordering::Relaxed) {
            0 => tracing::error!("store: {e}"),
            n => tracing::error!("store: {e} ({n} more such errors since the last one logged)"),
        }
    } else {
        STORE_ERRORS_UNSAID.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("store: {e}");
    }
}

impl From<attune_store::StoreError> for Problem {
    fn from(e: attune_store::StoreError) -> Self {
        log_store_error(&e);
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database is unavailable; try again",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = crate::openapi::ProblemBody {
            kind: "about:blank",
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
        };
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            serde_json::to_string(&body).unwrap_or_default(),
        )
            .into_response()
    }
}
