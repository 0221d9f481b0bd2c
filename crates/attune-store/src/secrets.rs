//! The secret store's rows (DESIGN.md §5). Values arrive sealed and leave sealed: this
//! crate never sees a plaintext. Every change is written with its audit entry in one
//! transaction.

use super::audit::{self, AuditEntry};
use super::{now, Result, Store};
use sqlx::Row;

/// A stored secret, without its value.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SecretRow {
    /// `global`, `pack:<pack>` or `action:<pack>.<action>`.
    pub scope: String,
    /// Name.
    pub name: String,
    /// Creation time.
    pub created_at: String,
    /// Who created it.
    pub created_by: String,
    /// Last change.
    pub updated_at: String,
    /// Who changed it last.
    pub updated_by: String,
}

fn subject(scope: &str, name: &str) -> String {
    format!("secret {name} ({scope})")
}

impl Store {
    /// Creates or replaces the secret `name` in `scope`; true if it was created.
    pub async fn put_secret(
        &self,
        scope: &str,
        name: &str,
        sealed: &[u8],
        actor: &str,
    ) -> Result<bool> {
        let at = now();
        let mut tx = self.begin_write().await?;
        let existed: Option<i64> =
            sqlx::query_scalar("SELECT id FROM secrets WHERE scope = $1 AND name = $2")
                .bind(scope)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO secrets (scope, name, value, created_at, created_by, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, $5, $4, $5)
             ON CONFLICT (scope, name) DO UPDATE SET value = excluded.value,
               updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(scope)
        .bind(name)
        .bind(sealed)
        .bind(&at)
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        let kind = if existed.is_some() {
            audit::SECRET_UPDATE
        } else {
            audit::SECRET_CREATE
        };
        audit::insert(
            &mut tx,
            &AuditEntry {
                actor: actor.into(),
                kind: kind.into(),
                subject: subject(scope, name),
                detail: serde_json::json!({"name": name, "scope": scope}),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(existed.is_none())
    }

    /// Deletes the secret `name` in `scope`; false if there was none.
    pub async fn delete_secret(&self, scope: &str, name: &str, actor: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM secrets WHERE scope = $1 AND name = $2")
            .bind(scope)
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            audit::insert(
                &mut tx,
                &AuditEntry {
                    actor: actor.into(),
                    kind: audit::SECRET_DELETE.into(),
                    subject: subject(scope, name),
                    detail: serde_json::json!({"name": name, "scope": scope}),
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    /// The sealed value of `name` in the first of `scopes` that has it, with that scope.
    pub async fn find_secret(
        &self,
        name: &str,
        scopes: &[String],
    ) -> Result<Option<(String, Vec<u8>)>> {
        let rows = sqlx::query("SELECT scope, value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_all(&self.read)
            .await?;
        let mut found: Vec<(String, Vec<u8>)> = rows
            .iter()
            .map(|r| Ok((r.try_get("scope")?, r.try_get("value")?)))
            .collect::<Result<_>>()?;
        for scope in scopes {
            if let Some(i) = found.iter().position(|(s, _)| s == scope) {
                return Ok(Some(found.swap_remove(i)));
            }
        }
        Ok(None)
    }

    /// Stored secrets without their values, by scope and name; only `scope` if given.
    pub async fn list_secrets(&self, scope: Option<&str>) -> Result<Vec<SecretRow>> {
        let rows = sqlx::query(
            "SELECT scope, name, created_at, created_by, updated_at, updated_by FROM secrets
             WHERE ($1 IS NULL OR scope = $1) ORDER BY scope, name",
        )
        .bind(scope)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SecretRow {
                    scope: r.try_get("scope")?,
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                    created_by: r.try_get("created_by")?,
                    updated_at: r.try_get("updated_at")?,
                    updated_by: r.try_get("updated_by")?,
                })
            })
            .collect()
    }
}
