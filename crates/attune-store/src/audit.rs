//! The audit log (DESIGN.md §5): append-only, names and ids only, never a value. Triggers
//! refuse any UPDATE or DELETE of an entry, so not even a bug here can rewrite history.

use super::{now, Result, Store, StoreError};
use serde_json::Value;
use sqlx::Row;

/// A secret was created.
pub const SECRET_CREATE: &str = "secret.create";
/// A secret's value was replaced.
pub const SECRET_UPDATE: &str = "secret.update";
/// A secret was deleted.
pub const SECRET_DELETE: &str = "secret.delete";
/// A secret's value was shown to an admin.
pub const SECRET_REVEAL: &str = "secret.reveal";
/// An execution was given secret parameters (which, and from where).
pub const EXECUTION_SECRETS: &str = "execution.secrets";
/// An execution was asked to stop.
pub const EXECUTION_CANCEL: &str = "execution.cancel";
/// A token was created.
pub const TOKEN_CREATE: &str = "token.create";
/// A token was revoked.
pub const TOKEN_REVOKE: &str = "token.revoke";
/// A pack was registered (or replaced).
pub const PACK_REGISTER: &str = "pack.register";
/// A pack was removed.
pub const PACK_REMOVE: &str = "pack.remove";

/// Every kind of entry, for help texts and filters.
pub const KINDS: &[&str] = &[
    SECRET_CREATE,
    SECRET_UPDATE,
    SECRET_DELETE,
    SECRET_REVEAL,
    EXECUTION_SECRETS,
    EXECUTION_CANCEL,
    TOKEN_CREATE,
    TOKEN_REVOKE,
    PACK_REGISTER,
    PACK_REMOVE,
];

/// An entry to append.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Who: a token's name, or `attune` for the server itself.
    pub actor: String,
    /// What: one of [`KINDS`].
    pub kind: String,
    /// What it was done to, e.g. `secret db_password (pack:ops)`.
    pub subject: String,
    /// Names and ids that say more; never a value.
    pub detail: Value,
}

/// A stored entry.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AuditRow {
    /// Id, increasing.
    pub id: i64,
    /// RFC 3339 time.
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub kind: String,
    /// To what.
    pub subject: String,
    /// More.
    pub detail: Value,
}

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only entries at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Only this kind, or this family (`secret` matches `secret.create`, …).
    pub kind: Option<String>,
    /// Only entries older than this id (paging backwards).
    pub before: Option<i64>,
    /// At most this many, newest first.
    pub limit: u32,
}

/// Appends `e` inside the caller's transaction.
pub(crate) async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    e: &AuditEntry,
) -> Result<()> {
    sqlx::query("INSERT INTO audit (at, actor, kind, subject, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(now())
        .bind(&e.actor)
        .bind(&e.kind)
        .bind(&e.subject)
        .bind(e.detail.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// Appends one entry, committed before this returns.
    pub async fn audit(&self, e: &AuditEntry) -> Result<()> {
        let mut tx = self.begin_write().await?;
        insert(&mut tx, e).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Entries, newest first.
    pub async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRow>> {
        let family = f.kind.as_ref().map(|k| format!("{k}.%"));
        let rows = sqlx::query(
            "SELECT id, at, actor, kind, subject, detail FROM audit
             WHERE ($1 IS NULL OR at >= $1) AND ($2 IS NULL OR kind = $2 OR kind LIKE $3)
               AND ($4 IS NULL OR id < $4)
             ORDER BY id DESC LIMIT $5",
        )
        .bind(&f.since)
        .bind(&f.kind)
        .bind(family)
        .bind(f.before)
        .bind(i64::from(f.limit.max(1)))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let detail: String = r.try_get("detail")?;
                Ok(AuditRow {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    kind: r.try_get("kind")?,
                    subject: r.try_get("subject")?,
                    detail: serde_json::from_str(&detail).map_err(|e| StoreError::Corrupt {
                        table: "audit",
                        detail: e.to_string(),
                    })?,
                })
            })
            .collect()
    }
}
