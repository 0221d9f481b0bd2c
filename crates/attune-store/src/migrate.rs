//! Schema migrations: each backend's folder (`migrations/sqlite`, `migrations/postgres`),
//! embedded in the binary and applied at open by sqlx's migrator, which records them in
//! `_sqlx_migrations` with their checksums and, on PostgreSQL, holds an advisory lock so
//! servers and workers starting together apply each migration once.

use crate::{Backend, Result, Store, StoreError};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::SqlSafeStr;
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

/// (version, description, SQL), in order.
type Embedded = &'static [(i64, &'static str, &'static str)];

const SQLITE: Embedded = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "secrets audit",
        include_str!("../migrations/sqlite/0002_secrets_audit.sql"),
    ),
    (
        3,
        "workers",
        include_str!("../migrations/sqlite/0003_workers.sql"),
    ),
    (
        4,
        "output chunks",
        include_str!("../migrations/sqlite/0004_output_chunks.sql"),
    ),
];

const POSTGRES: Embedded = &[
    (
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "secrets audit",
        include_str!("../migrations/postgres/0002_secrets_audit.sql"),
    ),
    (
        3,
        "workers",
        include_str!("../migrations/postgres/0003_workers.sql"),
    ),
    (
        4,
        "output chunks",
        include_str!("../migrations/postgres/0004_output_chunks.sql"),
    ),
];

#[derive(Debug)]
struct Source(Embedded);

impl<'s> MigrationSource<'s> for Source {
    fn resolve(
        self,
    ) -> Pin<
        Box<
            dyn Future<Output = std::result::Result<Vec<Migration>, sqlx::error::BoxDynError>>
                + Send
                + 's,
        >,
    > {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        sql.into_sql_str(),
                        false,
                    )
                })
                .collect())
        })
    }
}

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("cannot migrate the database: {e}"))
}

/// Applies the migrations `store`'s backend has not applied yet.
pub(crate) async fn run(store: &Store) -> Result<()> {
    let embedded = match store.backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    let migrator = Migrator::new(Source(embedded)).await.map_err(failed)?;
    if store.backend == Backend::Sqlite {
        adopt_sqlite_history(store, &migrator).await?;
    }
    migrator.run(&store.pool).await.map_err(failed)
}

/// A SQLite file from before sqlx's migrator kept its history in `schema_migrations`:
/// that history is carried over (with the checksums of the same embedded files), once.
async fn adopt_sqlite_history(store: &Store, migrator: &Migrator) -> Result<()> {
    let old: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
    )
    .fetch_optional(&store.pool)
    .await?;
    if old.is_none() {
        return Ok(());
    }
    let mut tx = store.begin_write().await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            success BOOLEAN NOT NULL,
            checksum BLOB NOT NULL,
            execution_time BIGINT NOT NULL
        )",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *tx)
        .await?;
    for m in migrator.iter().filter(|m| applied.contains(&m.version)) {
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES ($1, $2, TRUE, $3, 0) ON CONFLICT (version) DO NOTHING",
        )
        .bind(m.version)
        .bind(m.description.to_string())
        .bind(m.checksum.to_vec())
        .execute(&mut *tx)
        .await?;
    }
    sqlx::raw_sql("DROP TABLE schema_migrations")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
