//! Bearer tokens (DESIGN.md §6): random, stored as SHA-256 hashes, each with a role.

use crate::problem::Problem;
use crate::App;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A role, in increasing power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read.
    Viewer,
    /// Read, run, cancel, rerun.
    Operator,
    /// Everything.
    Admin,
}

impl Role {
    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// A new random token: `atn_` and 64 hex digits.
pub fn new_token() -> Result<String, Problem> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| Problem::internal(format!("no randomness: {e}")))?;
    Ok(format!(
        "atn_{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token id.
    pub id: i64,
    /// Token name.
    pub name: String,
    /// Role.
    pub role: Role,
}

impl Caller {
    /// Refuses with 403 unless the caller has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), Problem> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this needs the {} role; token `{}` has {}",
                    role.as_str(),
                    self.name,
                    self.role.as_str()
                ),
            ))
        }
    }
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Caller, Problem> {
        let unauthorized = |d: &str| Problem::new(StatusCode::UNAUTHORIZED, d);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing bearer token (Authorization: Bearer <token>)"))?;
        let value = header
            .to_str()
            .map_err(|_| unauthorized("malformed Authorization header"))?;
        let token = value
            .strip_prefix("Bearer ")
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?
            .trim();
        let row = app
            .store
            .token_by_hash(&hash_token(token))
            .await?
            .ok_or_else(|| unauthorized("unknown token"))?;
        let role =
            Role::parse(&row.role).ok_or_else(|| unauthorized("token has an unknown role"))?;
        note_use(app, &row);
        tracing::Span::current().record("caller", row.name.as_str());
        tracing::trace!(role = role.as_str(), "authenticated as token {}", row.id);
        Ok(Caller {
            id: row.id,
            name: row.name,
            role,
        })
    }
}

/// Records a token's last use, to the minute: at most one write per token and minute, off
/// the request's path. The API's callers and the console's sessions both count.
pub(crate) fn note_use(app: &App, row: &attune_store::TokenRow) {
    let now = attune_core::execution::rfc3339(std::time::SystemTime::now());
    let minute = |t: &str| t.get(..16).map(str::to_string);
    if row.last_used_at.as_deref().and_then(minute) != minute(&now) {
        let store = app.store.clone();
        let id = row.id;
        tokio::spawn(async move {
            if let Err(e) = store.touch_token(id, &now).await {
                tracing::warn!("cannot record the use of token {id}: {e}");
            }
        });
    }
}
