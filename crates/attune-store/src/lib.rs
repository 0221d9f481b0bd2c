//! Attune's store (DESIGN.md §4, §5, §6): packs, executions, API tokens, sealed secrets and
//! the audit log. One interface over two backends: SQLite (a file in the data dir, WAL), the
//! embedded default, and PostgreSQL (`--database-url postgres://…`). Both run the same SQL
//! through sqlx's `Any` driver (placeholders `$1`, `$2`…, which SQLite reads too), except
//! where a backend needs its own (the claim, the transaction start); each backend's schema is
//! its own migrations folder, applied at open by sqlx's migrator.
//! Every status change is a conditional write (`… WHERE status = <expected>`), so two
//! workers, or a cancel racing a finish, can never both win.

use attune_core::ExecutionStatus;
use serde_json::{Map, Value};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::AnyPool;
use sqlx::Row;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

mod changes;
mod flush;
mod migrate;
mod workers;

pub use changes::{Change, StatusChanges, ANY_EXECUTION};
pub use flush::Unflushed;

pub use workers::WorkerRow;

mod audit;
mod secrets;

pub use audit::{AuditEntry, AuditFilter, AuditRow, KINDS as AUDIT_KINDS};
pub use audit::{EXECUTION_CANCEL, EXECUTION_SECRETS, PACK_REGISTER, PACK_REMOVE, SECRET_REVEAL};
pub use secrets::SecretRow;

/// Why a store operation failed. Messages never contain parameter values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or answered with an error.
    #[error("database error: {0}")]
    Database(String),
    /// A stored row could not be decoded.
    #[error("corrupt row in {table}: {detail}")]
    Corrupt {
        /// Table name.
        table: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// Which database a store is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The store.
#[derive(Debug, Clone)]
pub struct Store {
    /// Writes. On SQLite, the one connection that writes: SQLite allows one writer at a
    /// time; with several, a blocked writer sleeps in SQLite's busy handler and throughput
    /// collapses. Writes queue here instead, without sleeping. On PostgreSQL, the pool.
    pool: AnyPool,
    /// Reads. On SQLite, read-only connections (in WAL mode they never block the writer or
    /// each other); on PostgreSQL, the same pool as writes.
    read: AnyPool,
    backend: Backend,
    /// PostgreSQL's URL, for the listener that wakes workers.
    url: Option<String>,
    /// Tells this process's waiters of status changes (see [`StatusChanges`]).
    announcer: std::sync::Arc<changes::Announcer>,
    /// The tokens requests came with lately (see [`TokenCache`]).
    tokens: std::sync::Arc<TokenCache>,
    /// SQLite: the group commit of the writes that wait for the disk (see [`flush`]).
    wal: Option<std::sync::Arc<flush::WalFlush>>,
}

/// The unrevoked tokens this process looked up lately, by hash: every request carries
/// one, and reading it from the database twice per execution was a tenth of the work of
/// a trivial one. An entry is used for [`TOKEN_CACHE_TTL`] at most; a revocation empties
/// the cache of the process that made it at once, and on PostgreSQL that of every API
/// server, which hears it on [`TOKENS_CHANNEL`] (and empties its cache whenever its
/// listener reconnects, as it may have missed one).
#[derive(Debug, Default)]
struct TokenCache {
    map: std::sync::Mutex<std::collections::HashMap<String, (TokenRow, std::time::Instant)>>,
}

/// How long a looked-up token is trusted without reading it again: the bound on how long
/// a token revoked by another process could still be used, should its announcement be
/// missed (SQLite has no announcements: a token revoked by another process on the same
/// file).
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(1);
/// The most tokens kept: a request with an unknown token is never cached, so only
/// stored tokens fill it.
const TOKEN_CACHE_MAX: usize = 1024;

impl TokenCache {
    fn get(&self, hash: &str) -> Option<TokenRow> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(hash)
            .filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL)
            .map(|(row, _)| row.clone())
    }

    fn put(&self, hash: &str, row: &TokenRow) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= TOKEN_CACHE_MAX {
            map.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE_TTL);
            if map.len() >= TOKEN_CACHE_MAX {
                map.clear();
            }
        }
        map.insert(hash.to_string(), (row.clone(), std::time::Instant::now()));
    }

    fn touched(&self, id: i64, at: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        for (row, _) in map.values_mut().filter(|(r, _)| r.id == id) {
            row.last_used_at = Some(at.to_string());
        }
    }

    fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// How long a new execution waits for the flush of the claim of the worker it woke before
/// it flushes by itself ([`Store::insert_execution_then`]): a claim takes a fraction of a
/// millisecond when the worker is idle.
const CLAIM_PATIENCE: Duration = Duration::from_millis(1);

/// The PostgreSQL channel a new execution is announced on (a macro too, for the
/// statements built from it at compile time).
macro_rules! work_channel {
    () => {
        "attune_work"
    };
}
const WORK_CHANNEL: &str = work_channel!();
/// The PostgreSQL channel every status change is announced on, with the execution's id
/// (migration 0005's trigger).
const STATUS_CHANNEL: &str = "attune_status";
/// The PostgreSQL channel a registered, replaced or removed pack is announced on.
const PACKS_CHANNEL: &str = "attune_packs";
/// The PostgreSQL channel a token revocation is announced on: API servers forget the
/// tokens they looked up.
const TOKENS_CHANNEL: &str = "attune_tokens";

/// What a [`Listener`] heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A new execution was stored: for the worker process named, or (`None`) for any.
    Work(Option<String>),
    /// An execution changed status (already announced to this process's waiters).
    Status,
    /// A pack was registered, replaced or removed.
    Packs,
    /// A token was revoked (the tokens looked up are forgotten already).
    Tokens,
}

/// Hears of new executions and status changes on PostgreSQL (LISTEN/NOTIFY).
pub struct Listener {
    inner: sqlx::postgres::PgListener,
    announcer: std::sync::Arc<changes::Announcer>,
    tokens: std::sync::Arc<TokenCache>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Listener")
    }
}

impl Listener {
    /// Waits for the next announcement; a status change is passed on to this process's
    /// [`StatusChanges`]. An error means the connection broke: make a new listener
    /// (announcements in between are missed, which the callers' polling covers).
    pub async fn next(&mut self) -> Result<Heard> {
        let n = self.inner.recv().await?;
        if n.channel() == STATUS_CHANNEL {
            match parse_status_payload(n.payload()) {
                Some((id, Some(status))) => self.announcer.announce_status(id, status.is_final()),
                Some((id, None)) => self.announcer.announce(id),
                None => {}
            }
            return Ok(Heard::Status);
        }
        if n.channel() == PACKS_CHANNEL {
            return Ok(Heard::Packs);
        }
        if n.channel() == TOKENS_CHANNEL {
            self.tokens.clear();
            return Ok(Heard::Tokens);
        }
        let payload = n.payload();
        Ok(Heard::Work(
            (!payload.is_empty()).then(|| payload.to_string()),
        ))
    }
}
/// A status announcement's payload: `<id> <status>` (migration 0009), or `<id>` alone
/// (0005, or a status this binary does not know: then it is read back).
fn parse_status_payload(payload: &str) -> Option<(i64, Option<ExecutionStatus>)> {
    let (id, status) = match payload.split_once(' ') {
        Some((id, status)) => (id, ExecutionStatus::parse(status)),
        None => (payload, None),
    };
    Some((id.parse().ok()?, status))
}

/// A registered pack.
#[derive(Debug, Clone)]
pub struct PackRow {
    /// Pack ref.
    pub pack_ref: String,
    /// Version.
    pub version: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Content digest of the bundle.
    pub digest: String,
    /// The pack's files (see `attune_core::bundle`).
    pub bundle: Vec<u8>,
    /// RFC 3339 registration time.
    pub registered_at: String,
}

/// A new execution, as accepted by the API.
#[derive(Debug, Clone)]
pub struct NewExecution {
    /// `<pack>.<action>`.
    pub action_ref: String,
    /// Parameters with secret values replaced by `"********"`.
    pub parameters: Map<String, Value>,
    /// Encrypted secret parameter values, if any.
    pub secrets: Option<Vec<u8>>,
    /// env_vars.
    pub env_vars: BTreeMap<String, String>,
    /// Requested timeout, if lower than the action's.
    pub timeout_secs: Option<u64>,
    /// Name of the token that asked for it.
    pub requested_by: String,
    /// The execution this one re-runs.
    pub rerun_of: Option<i64>,
    /// The secret parameters filled from the secret store: `{param: {name, scope,
    /// explicit}}` (names, never values).
    pub secret_refs: Map<String, Value>,
}

/// An execution as stored: the record users see (one shape, `attune_core::Execution`).
pub type ExecutionRow = attune_core::Execution;

/// How an execution ended, written with its final status.
#[derive(Debug, Clone, Default)]
pub struct Finish {
    /// Exit code.
    pub exit_code: Option<i32>,
    /// Signal.
    pub signal: Option<i32>,
    /// Result.
    pub result: Option<Value>,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
    /// Error text.
    pub error: Option<String>,
    /// RFC 3339 time its process started, if it did. In a worker's outcome it replaces
    /// the claim's time (none: the process never started).
    pub started_at: Option<String>,
}

/// Filters for listing executions.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    /// Only this status.
    pub status: Option<ExecutionStatus>,
    /// Only this action.
    pub action_ref: Option<String>,
    /// Only executions with a smaller id (the cursor of the page before).
    pub before: Option<i64>,
    /// At most this many, newest first.
    pub limit: u32,
}

/// An API token's stored form (never the token or its hash).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TokenRow {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Role: admin, operator or viewer.
    pub role: String,
    /// Creation time.
    pub created_at: String,
    /// When it was last used (to the minute).
    pub last_used_at: Option<String>,
    /// When it was revoked; a revoked token is refused.
    pub revoked_at: Option<String>,
}

fn now() -> String {
    attune_core::execution::rfc3339(std::time::SystemTime::now())
}

/// An execution's columns; its parameters come from their own table (migration 0007),
/// written once, so that status changes never rewrite them.
const EXECUTION_COLUMNS: &str = "id, action_ref, status, (SELECT p.parameters FROM execution_parameters p WHERE p.execution_id = executions.id) AS parameters, secrets, secret_refs, env_vars, timeout_secs, requested_by, worker, rerun_of, created_at, started_at, finished_at, exit_code, signal, result, stdout, stderr, error";
/// The columns a claim returns: the parameter document only when it is small (up to
/// 65,536 characters). A larger one is read by itself after the claim: `UPDATE … RETURNING` would copy
/// it through a temporary table first.
const CLAIM_COLUMNS: &str = "id, action_ref, status, (SELECT CASE WHEN length(p.parameters) <= 65536 THEN p.parameters END FROM execution_parameters p WHERE p.execution_id = executions.id) AS parameters, secrets, secret_refs, env_vars, timeout_secs, requested_by, worker, rerun_of, created_at, started_at, finished_at, exit_code, signal, result, stdout, stderr, error";

/// [`EXECUTION_COLUMNS`] for lists: the output columns are not read.
const LIST_COLUMNS: &str = "id, action_ref, status, (SELECT p.parameters FROM execution_parameters p WHERE p.execution_id = executions.id) AS parameters, secrets, secret_refs, env_vars, timeout_secs, requested_by, worker, rerun_of, created_at, started_at, finished_at, exit_code, signal, result, NULL AS stdout, NULL AS stderr, error";

/// A new execution's row, `$1`…`$8` its values: a macro, so that the statements below
/// are put together from it at compile time.
macro_rules! insert_execution {
    () => {
        "INSERT INTO executions (action_ref, status, secrets, secret_refs, env_vars, timeout_secs, requested_by, rerun_of, created_at)
         VALUES ($1, 'requested', $2, $3, $4, $5, $6, $7, $8) RETURNING id"
    };
}
const INSERT_EXECUTION: &str = insert_execution!();

/// SQLite: [`INSERT_EXECUTION`] and its parameter document (`$9`) in one transaction,
/// committed with `synchronous = NORMAL`: written to the WAL, flushed by the group commit
/// ([`Store::flushed`]) with other writes instead of alone while it holds the writer.
const INSERT_EXECUTION_AT_ONCE_SQLITE: &str = concat!(
    "PRAGMA synchronous = NORMAL;\nBEGIN IMMEDIATE;\n",
    insert_execution!(),
    ";\nINSERT INTO execution_parameters (execution_id, parameters) VALUES (last_insert_rowid(), $9);\nCOMMIT;\nPRAGMA synchronous = FULL;"
);

/// PostgreSQL: the same as one statement (its own transaction), the workers told at its
/// commit on [`WORK_CHANNEL`]. The foreign key of the parameters' row is checked at the
/// statement's end, when the execution's row exists.
const INSERT_EXECUTION_AT_ONCE_POSTGRES: &str = concat!(
    "WITH e AS (",
    insert_execution!(),
    "), p AS (INSERT INTO execution_parameters (execution_id, parameters) SELECT id, $9 FROM e)
     SELECT id, pg_notify('",
    work_channel!(),
    "', $10) IS NULL AS told FROM e"
);

/// A query built only from constants of this file (column lists, `?` placeholders), never
/// from input.
fn sql_with_columns(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

/// SQLite: `update` (one `UPDATE` of executions) with `synchronous = NORMAL` for it alone,
/// in one query: sqlx binds `$n` across the statements of a query, and `RETURNING id`
/// counts the rows changed (`changes()` would still count the `UPDATE` after a `PRAGMA`).
fn unsynced(update: &str) -> String {
    unsynced_statement(&format!("{update} RETURNING id"))
}

/// SQLite: `statement` with `synchronous = NORMAL` for it alone (see [`unsynced`]).
fn unsynced_statement(statement: &str) -> String {
    format!("PRAGMA synchronous = NORMAL;\n{statement};\nPRAGMA synchronous = FULL;")
}

/// Puts SQLite's writer connection back to `synchronous = FULL` after an unsynced write;
/// where that fails, the connection is closed (the pool opens a new one with `FULL`).
async fn back_to_full(conn: &mut sqlx::pool::PoolConnection<sqlx::Any>) -> Result<()> {
    let r = sqlx::raw_sql("PRAGMA synchronous = FULL")
        .execute(&mut **conn)
        .await;
    if r.is_err() {
        conn.close_on_drop();
    }
    Ok(r.map(|_| ())?)
}

fn corrupt(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table: "executions",
        detail: detail.to_string(),
    }
}

/// A parameter document this long or longer (bytes) is stored in chunks (migration 0008).
const CHUNKED_FROM: usize = 1 << 20;

/// The most a chunk holds (bytes); older chunks may be up to [`CHUNKED_FROM`]. Smaller
/// than the server's allocator threshold (`attune server`), so that the buffers the
/// database and its driver take for each chunk are reused, not mapped and faulted in anew.
const PARAMETER_CHUNK: usize = 128 << 10;

/// Whether `row`'s parameter document was left out of it (a claim's large one, or one
/// stored in chunks): [`Store::stored_parameters`] reads it then.
fn parameters_elsewhere(row: &AnyRow) -> Result<bool> {
    Ok(row
        .try_get::<Option<&str>, _>("parameters")?
        .is_none_or(str::is_empty))
}

fn decode_execution(row: &AnyRow) -> Result<ExecutionRow> {
    // Borrowed from the row, not copied: a parameter document may be large.
    let status: &str = row.try_get("status")?;
    // NULL (a claim's large document) or '' (one stored in chunks): read by itself, see
    // [`parameters_elsewhere`].
    let parameters: Option<&str> = row.try_get("parameters")?;
    let parameters = parameters.filter(|p| !p.is_empty());
    let env_vars: &str = row.try_get("env_vars")?;
    let result: Option<&str> = row.try_get("result")?;
    Ok(ExecutionRow {
        id: row.try_get("id")?,
        action_ref: row.try_get("action_ref")?,
        status: ExecutionStatus::parse(status)
            .ok_or_else(|| corrupt(format!("unknown status {status}")))?,
        parameters: match parameters {
            Some(p) => serde_json::from_str(p).map_err(corrupt)?,
            None => Map::new(),
        },
        secrets: row.try_get("secrets")?,
        secret_refs: match row.try_get::<Option<String>, _>("secret_refs")? {
            None => Map::new(),
            Some(r) => serde_json::from_str(&r).map_err(corrupt)?,
        },
        env_vars: serde_json::from_str(env_vars).map_err(corrupt)?,
        timeout_secs: row
            .try_get::<Option<i64>, _>("timeout_secs")?
            .map(|t| t.max(0) as u64),
        requested_by: row.try_get("requested_by")?,
        worker: row.try_get("worker")?,
        rerun_of: row.try_get("rerun_of")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        exit_code: row.try_get("exit_code")?,
        signal: row.try_get("signal")?,
        result: result
            .map(serde_json::from_str)
            .transpose()
            .map_err(corrupt)?,
        stdout: row.try_get("stdout")?,
        stderr: row.try_get("stderr")?,
        error: row.try_get("error")?,
        duration_ms: None,
    }
    .with_duration())
}

/// Creates the database file with mode 0600 (whatever the umask) if it is missing. SQLite
/// gives its `-wal` and `-shm` files the database file's mode.
fn create_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::Database(format!("cannot create {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Database(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

impl Store {
    /// Opens the store named by `url`: `postgres://…` (or `postgresql://…`) for a
    /// PostgreSQL server, else the path of a SQLite file (created if needed).
    pub async fn open(url: &str) -> Result<Store> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Store::open_postgres(url).await
        } else {
            Store::open_sqlite(Path::new(url.strip_prefix("sqlite://").unwrap_or(url))).await
        }
    }

    /// Opens (creating if needed) the SQLite database at `path` and applies migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        sqlx::any::install_default_drivers();
        create_private(path)?;
        let file = path
            .to_str()
            .ok_or_else(|| StoreError::Database(format!("{}: not a UTF-8 path", path.display())))?;
        let url = |mode: &str| {
            format!(
                "sqlite://{}?mode={mode}",
                attune_core::percent_encode(file, "/-_.~", false)
            )
        };
        // FULL: a committed execution survives an OS crash, not only a process crash.
        // No automatic checkpoint: it would run inside the commit that crosses 1000 pages
        // (copying the WAL into the database and syncing both before that request is
        // answered); the server checkpoints in the background instead ([`Store::checkpoint`]).
        let setup = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA wal_autocheckpoint = 0;";
        // A connection to a local file does not go stale: no ping before each use (sqlx's
        // default), which cost a round trip to the connection's thread per statement.
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql(setup).execute(&mut *conn).await?;
                    Ok(())
                })
            })
            .connect(&url("rw"))
            .await?;
        // The writer has put the file in WAL mode; readers only read.
        let read = AnyPoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .connect(&url("ro"))
            .await?;
        let store = Store {
            pool,
            read,
            backend: Backend::Sqlite,
            url: None,
            announcer: changes::Announcer::new(),
            tokens: Default::default(),
            wal: Some(std::sync::Arc::new(flush::WalFlush::new(
                &std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            ))),
        };
        migrate::run(&store).await?;
        Ok(store)
    }

    /// Connects to the PostgreSQL database at `url` and applies migrations.
    pub async fn open_postgres(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| StoreError::Database(format!("cannot connect to PostgreSQL: {e}")))?;
        let store = Store {
            read: pool.clone(),
            pool,
            backend: Backend::Postgres,
            url: Some(url.to_string()),
            announcer: changes::Announcer::new(),
            tokens: Default::default(),
            wal: None,
        };
        migrate::run(&store).await?;
        Ok(store)
    }

    /// Which database this store is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// On PostgreSQL, a connection that hears of each new execution and pack change
    /// (`work`) and of every status change (`status`): call [`Listener::next`]. `None` on SQLite, where this
    /// process is the only one and announces its own changes.
    pub async fn listener(&self, work: bool, status: bool) -> Result<Option<Listener>> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let mut l = sqlx::postgres::PgListener::connect(url).await?;
        let channels = [
            (work, WORK_CHANNEL),
            (work, PACKS_CHANNEL),
            (status, STATUS_CHANNEL),
            (status, TOKENS_CHANNEL),
        ];
        l.listen_all(channels.iter().filter(|c| c.0).map(|c| c.1))
            .await?;
        // Whatever changed before it listened is looked at again.
        self.announcer.announce(ANY_EXECUTION);
        self.tokens.clear();
        Ok(Some(Listener {
            inner: l,
            announcer: self.announcer.clone(),
            tokens: self.tokens.clone(),
        }))
    }

    /// Hears of execution `id`'s status changes from now on (see [`StatusChanges::changed`]).
    pub fn status_changes(&self, id: i64) -> StatusChanges {
        self.announcer.watch(id)
    }

    /// Tells this process's waiters that execution `id` (or [`ANY_EXECUTION`]) changed
    /// status. The store's own writes call it; on PostgreSQL the trigger tells the others.
    fn announce(&self, id: i64) {
        self.announcer.announce(id);
    }

    /// [`Store::announce`] of a change to `status`: a waiter for the end need not read it.
    fn announce_status(&self, id: i64, status: ExecutionStatus) {
        self.announcer.announce_status(id, status.is_final());
    }

    /// Wakes this process's waiters on `id` again, once the worker that claimed it (which
    /// started it) is ready to be followed: one woken by the claim itself may have looked
    /// too early.
    pub fn announce_running(&self, id: i64) {
        self.announce_status(id, ExecutionStatus::Running);
    }

    /// Starts a write transaction. SQLite: `BEGIN IMMEDIATE` takes the write lock at once,
    /// so no statement in it can fail on a read-to-write upgrade.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Runs one write with `RETURNING` and hands back its row (at most one) only once it
    /// is committed: what the caller acts on is durable.
    ///
    /// Never `fetch_one`/`fetch_optional` such a statement outside a transaction. SQLite
    /// commits an autocommit statement when the statement completes, and sqlx's SQLite
    /// driver has handed back the first row of `… RETURNING` before completing it (sqlx
    /// issue 3430): the caller could act on a row that a crash then takes back. `fetch_all`
    /// steps it to completion, so the autocommit statement has committed when it returns.
    /// `tests/crash.rs` kills the process right after each such call returns and checks the
    /// row is there, on both backends.
    async fn write_returning<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<Option<AnyRow>> {
        // One autocommit statement, stepped to completion by fetch_all: one round trip
        // instead of BEGIN, statement, COMMIT.
        // - SQLite: the pool's one connection is the only writer of the file (one server
        //   per data dir, readers open it read-only), so the statement has committed when
        //   it completes, and no other writer can make it fail on a lock upgrade.
        // - PostgreSQL: the statement's implicit transaction commits at the Sync that is
        //   sent with it, before the server says it is ready again, which is when
        //   fetch_all returns; a commit that fails is an error here, not a row.
        let mut rows = q.fetch_all(&self.pool).await?;
        if rows.len() > 1 {
            return Err(StoreError::Database(format!(
                "a single-row write returned {} rows",
                rows.len()
            )));
        }
        Ok(rows.pop())
    }

    /// SQLite: one `UPDATE … RETURNING id` (its values bound in `q`) wrapped between
    /// `PRAGMA synchronous = NORMAL` and `= FULL` in the same query ([`unsynced`]): one round
    /// trip to the connection's thread, committed but not flushed. True if it changed a row.
    async fn update_unsynced<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<bool> {
        Ok(self.fetch_unsynced(q).await?.len() == 1)
    }

    /// SQLite: the rows of a query built by [`unsynced_statement`] (or [`unsynced`]),
    /// stepped to completion on the writer: committed, not flushed.
    async fn fetch_unsynced<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<Vec<AnyRow>> {
        let mut conn = self.pool.acquire().await?;
        match q.fetch_all(&mut *conn).await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                // Stopped before its last statement, perhaps.
                let _ = back_to_full(&mut conn).await;
                Err(e.into())
            }
        }
    }

    /// A write that waits for the disk has just committed: its number in SQLite's group
    /// commit. PostgreSQL's commits are on disk when they return.
    fn committed(&self) -> Unflushed {
        match &self.wal {
            Some(w) => w.committed(),
            None => Unflushed(0),
        }
    }

    /// Returns once commit `c` is on disk. SQLite: after an `fdatasync` of the WAL that
    /// began after the commit, one for all who wait at the same time (see [`flush`]);
    /// PostgreSQL: at once.
    pub async fn flushed(&self, c: Unflushed) -> Result<()> {
        match &self.wal {
            Some(w) => w.flushed(c).await,
            None => Ok(()),
        }
    }

    /// How many times this process has flushed SQLite's WAL for [`Store::flushed`]
    /// (0 on PostgreSQL).
    pub fn wal_flushes(&self) -> u64 {
        self.wal.as_ref().map_or(0, |w| w.flushes())
    }

    // ---- packs ----

    /// Registers (or replaces) a pack. Like every write here without `RETURNING`, it is
    /// executed to completion, which commits it, before this returns.
    pub async fn put_pack(&self, p: &PackRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO packs (ref, version, description, digest, bundle, registered_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (ref) DO UPDATE SET version = excluded.version, description = excluded.description,
             digest = excluded.digest, bundle = excluded.bundle, registered_at = excluded.registered_at",
        )
        .bind(&p.pack_ref)
        .bind(&p.version)
        .bind(&p.description)
        .bind(&p.digest)
        .bind(&p.bundle)
        .bind(&p.registered_at)
        .execute(&self.pool)
        .await?;
        self.announce_packs().await;
        Ok(())
    }

    /// On PostgreSQL, tells every worker process that work is waiting: for an execution
    /// announced to one process that could not take it at once.
    pub async fn announce_work(&self) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(WORK_CHANNEL)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// On PostgreSQL, tells the workers of other processes that the packs changed, so they
    /// load them before they claim an execution of them. Best effort, after the commit:
    /// their heartbeat, and a claim of an action they do not know, load them anyway.
    async fn announce_packs(&self) {
        if self.backend == Backend::Postgres {
            let _ = sqlx::query("SELECT pg_notify($1, '')")
                .bind(PACKS_CHANNEL)
                .execute(&self.pool)
                .await;
        }
    }

    /// All registered packs, with their bundles.
    pub async fn list_packs(&self) -> Result<Vec<PackRow>> {
        let rows = sqlx::query("SELECT ref, version, description, digest, bundle, registered_at FROM packs ORDER BY ref")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PackRow {
                    pack_ref: r.try_get("ref")?,
                    version: r.try_get("version")?,
                    description: r.try_get("description")?,
                    digest: r.try_get("digest")?,
                    bundle: r.try_get("bundle")?,
                    registered_at: r.try_get("registered_at")?,
                })
            })
            .collect()
    }

    /// Removes a pack; false if there was none.
    pub async fn delete_pack(&self, pack_ref: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM packs WHERE ref = $1")
            .bind(pack_ref)
            .execute(&self.pool)
            .await?;
        self.announce_packs().await;
        Ok(r.rows_affected() > 0)
    }

    // ---- executions ----

    /// Stores a new execution in status `requested`; returns it once committed (the API
    /// answers 201 with it). `audit`, if given, is written in the same transaction, its
    /// subject the new execution's id: an execution given secrets is never without it.
    /// Takes `e` whole: its parameters become the returned row's, never copied.
    pub async fn insert_execution(
        &self,
        e: NewExecution,
        audit: Option<&AuditEntry>,
    ) -> Result<ExecutionRow> {
        self.insert_execution_then(e, audit, None, || false).await
    }

    /// [`Store::insert_execution`], calling `committed` as soon as the execution can be
    /// claimed when that comes before this returns: a small document's insert (no audit
    /// entry) commits, then waits for the disk (SQLite's group commit), and a worker woken
    /// by `committed` claims it meanwhile. Otherwise `committed` is not called.
    ///
    /// `committed` says whether it woke a worker of this process that was waiting for
    /// work. Its claim commits next and waits for the disk too, so the insert leaves the
    /// flush to it for up to [`CLAIM_PATIENCE`]: one flush instead of two in a row.
    ///
    /// PostgreSQL: the workers are told at the commit; `work_for`, if given, names the
    /// worker process that should claim it (the others leave it; see [`Heard::Work`]).
    pub async fn insert_execution_then(
        &self,
        e: NewExecution,
        audit: Option<&AuditEntry>,
        work_for: Option<&str>,
        committed: impl FnOnce() -> bool,
    ) -> Result<ExecutionRow> {
        let parameters = attune_core::format::map_to_json(&e.parameters);
        let parameters =
            String::from_utf8(parameters).map_err(|err| StoreError::Database(err.to_string()))?;
        let refs =
            (!e.secret_refs.is_empty()).then(|| Value::Object(e.secret_refs.clone()).to_string());
        let created_at = now();
        // Only the id comes back: the rest is what was written, so a large parameter
        // document is not read back and parsed again.
        let chunked = parameters.len() >= CHUNKED_FROM;
        // A small document without an audit entry: in one round trip.
        let at_once = !chunked && audit.is_none();
        let q = sqlx::query(match (at_once, self.backend) {
            (false, _) => INSERT_EXECUTION,
            (true, Backend::Sqlite) => INSERT_EXECUTION_AT_ONCE_SQLITE,
            (true, Backend::Postgres) => INSERT_EXECUTION_AT_ONCE_POSTGRES,
        })
        .bind(&e.action_ref)
        .bind(&e.secrets)
        .bind(refs)
        .bind(serde_json::to_string(&e.env_vars).unwrap_or_else(|_| "{}".into()))
        .bind(e.timeout_secs.map(|t| t as i64))
        .bind(&e.requested_by)
        .bind(e.rerun_of)
        .bind(&created_at);
        let id_of = |row: Option<&AnyRow>| -> Result<i64> {
            match row {
                Some(r) => Ok(r.try_get("id")?),
                None => Err(StoreError::Database(
                    "INSERT … RETURNING gave no row".into(),
                )),
            }
        };
        let stored = |id: i64| {
            // Known here as not ended: a client waiting for it need not read it back.
            self.announce_status(id, ExecutionStatus::Requested);
            ExecutionRow {
                id,
                action_ref: e.action_ref,
                status: ExecutionStatus::Requested,
                parameters: e.parameters,
                secrets: e.secrets,
                secret_refs: e.secret_refs,
                env_vars: e.env_vars,
                timeout_secs: e.timeout_secs,
                requested_by: e.requested_by,
                rerun_of: e.rerun_of,
                created_at,
                ..ExecutionRow::default()
            }
        };
        if at_once {
            let mut q = q.bind(parameters.as_str());
            if self.backend == Backend::Postgres {
                q = q.bind(work_for.unwrap_or(""));
            }
            let id = self.insert_in_one_round_trip(q).await?;
            let on_disk = self.committed();
            let row = stored(id);
            let claimed_next = committed();
            match &self.wal {
                Some(w) if claimed_next => w.flushed_within(on_disk, CLAIM_PATIENCE).await?,
                _ => self.flushed(on_disk).await?,
            }
            return Ok(row);
        }
        let mut tx = self.begin_write().await?;
        // fetch_all steps the statement to completion (see `write_returning`).
        let rows = q.fetch_all(&mut *tx).await?;
        if rows.len() > 1 {
            return Err(StoreError::Database(
                "INSERT … RETURNING gave more than one row".into(),
            ));
        }
        let id = id_of(rows.first())?;
        sqlx::query("INSERT INTO execution_parameters (execution_id, parameters) VALUES ($1, $2)")
            .bind(id)
            .bind(if chunked { "" } else { parameters.as_str() })
            .execute(&mut *tx)
            .await?;
        if chunked {
            // A chunk at a time: the database and its driver copy a chunk, not the whole.
            let mut rest = parameters.as_str();
            let mut seq = 0i64;
            while !rest.is_empty() {
                let mut cut = rest.len().min(PARAMETER_CHUNK);
                while !rest.is_char_boundary(cut) {
                    cut -= 1;
                }
                sqlx::query(
                    "INSERT INTO execution_parameter_chunks (execution_id, seq, chunk) VALUES ($1, $2, $3)",
                )
                .bind(id)
                .bind(seq)
                .bind(&rest[..cut])
                .execute(&mut *tx)
                .await?;
                rest = &rest[cut..];
                seq += 1;
            }
        }
        drop(parameters);
        if let Some(a) = audit {
            let a = AuditEntry {
                subject: format!("execution {id}"),
                ..a.clone()
            };
            audit::insert(&mut tx, &a).await?;
        }
        if self.backend == Backend::Postgres {
            // Delivered at COMMIT: a worker woken by it finds the row.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(WORK_CHANNEL)
                .bind(work_for.unwrap_or(""))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(stored(id))
    }

    /// [`Store::insert_execution`] of a small document without an audit entry, as one
    /// transaction sent at once (`q`: [`INSERT_EXECUTION_AT_ONCE_SQLITE`] or
    /// [`INSERT_EXECUTION_AT_ONCE_POSTGRES`], its nine values bound). Each statement sent
    /// alone is a round trip (on SQLite, between threads), and four or five of them cost
    /// more than the statements themselves. `fetch_all` steps all of them, the commit
    /// included, before it returns (SQLite's is not flushed: the caller waits for that).
    /// Should any fail, the connection is closed, which rolls back whatever a transaction
    /// it left open holds.
    async fn insert_in_one_round_trip<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        let r = q.fetch_all(&mut *conn).await;
        match r {
            Ok(rows) if rows.len() == 1 => Ok(rows[0].try_get("id")?),
            Ok(rows) => {
                conn.close_on_drop();
                Err(StoreError::Database(format!(
                    "INSERT … RETURNING gave {} rows",
                    rows.len()
                )))
            }
            Err(e) => {
                conn.close_on_drop();
                Err(e.into())
            }
        }
    }

    /// One execution.
    pub async fn get_execution(&self, id: i64) -> Result<Option<ExecutionRow>> {
        let row = sqlx::query(sql_with_columns(format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        match row {
            Some(row) => Ok(Some(self.decode_whole(row).await?)),
            None => Ok(None),
        }
    }

    /// [`decode_execution`], with a parameter document the row left out read by itself.
    /// The row is dropped first: a large document is never held twice.
    async fn decode_whole(&self, row: AnyRow) -> Result<ExecutionRow> {
        let elsewhere = parameters_elsewhere(&row)?;
        let mut e = decode_execution(&row)?;
        drop(row);
        if elsewhere {
            e.parameters = self.stored_parameters(e.id).await?;
        }
        Ok(e)
    }

    /// Execution `id`'s parameter document, read by itself: from its row, or a chunk at a
    /// time (never more than one chunk in the driver at once).
    async fn stored_parameters(&self, id: i64) -> Result<Map<String, Value>> {
        let row =
            sqlx::query("SELECT parameters FROM execution_parameters WHERE execution_id = $1")
                .bind(id)
                .fetch_one(&self.read)
                .await?;
        let inline: &str = row.try_get("parameters")?;
        if !inline.is_empty() {
            return serde_json::from_str(inline).map_err(corrupt);
        }
        drop(row);
        // Sized once (chunks written before they were smaller: grown as needed).
        let chunks: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM execution_parameter_chunks WHERE execution_id = $1",
        )
        .bind(id)
        .fetch_one(&self.read)
        .await?;
        let mut doc = String::with_capacity(usize::try_from(chunks).unwrap_or(0) * PARAMETER_CHUNK);
        for seq in 0i64.. {
            let chunk = sqlx::query(
                "SELECT chunk FROM execution_parameter_chunks WHERE execution_id = $1 AND seq = $2",
            )
            .bind(id)
            .bind(seq)
            .fetch_optional(&self.read)
            .await?;
            match chunk {
                Some(c) => doc.push_str(c.try_get::<&str, _>("chunk")?),
                None => break,
            }
        }
        if doc.is_empty() {
            return Err(corrupt(format!(
                "execution {id}: its parameter chunks are missing"
            )));
        }
        serde_json::from_str(&doc).map_err(corrupt)
    }

    /// SQLite: copies what the WAL holds into the database file (a passive checkpoint: it
    /// does not wait for readers), and restarts the WAL from its beginning when it can.
    /// The server calls it every second; nothing to do on PostgreSQL.
    pub async fn checkpoint(&self) -> Result<()> {
        if self.backend == Backend::Sqlite {
            sqlx::raw_sql("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Only the status of execution `id` (None if there is no such execution): what a
    /// waiter checks, without reading its parameters and output.
    pub async fn execution_status(&self, id: i64) -> Result<Option<ExecutionStatus>> {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM executions WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
        status
            .map(|s| {
                ExecutionStatus::parse(&s).ok_or_else(|| corrupt(format!("unknown status {s}")))
            })
            .transpose()
    }

    /// Executions, newest first, without their stdout and stderr (the list stays small
    /// whatever the actions printed; the output endpoint serves them).
    pub async fn list_executions(&self, f: &ExecutionFilter) -> Result<Vec<ExecutionRow>> {
        let rows = sqlx::query(sql_with_columns(format!(
            "SELECT {LIST_COLUMNS} FROM executions
             WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR action_ref = $2)
               AND ($3 IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4"
        )))
        .bind(f.status.map(ExecutionStatus::as_str))
        .bind(&f.action_ref)
        .bind(f.before)
        .bind(i64::from(f.limit.max(1)))
        .fetch_all(&self.read)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.decode_whole(row).await?);
        }
        Ok(out)
    }

    /// Claims the oldest requested execution for `worker` and starts it: requested →
    /// running, with the worker and `started_at`, in one conditional write (a claim and a
    /// start as two writes cost a commit each, for a state nobody could act on between
    /// them). The claim is committed before the worker gets the row, so a crash after this
    /// returns leaves the execution `running` (abandoned at the next start), never
    /// runnable again.
    pub async fn claim_next(&self, worker: &str) -> Result<Option<ExecutionRow>> {
        self.claim_next_for(worker, true).await
    }

    /// Like [`Store::claim_next`]; a worker that cannot open secret parameters
    /// (`takes_secrets` false) skips the executions that have some, for workers that can.
    pub async fn claim_next_for(
        &self,
        worker: &str,
        takes_secrets: bool,
    ) -> Result<Option<ExecutionRow>> {
        match self.claim_next_unflushed(worker, takes_secrets).await? {
            Some((claimed, on_disk)) => {
                self.flushed(on_disk).await?;
                Ok(Some(claimed))
            }
            None => Ok(None),
        }
    }

    /// [`Store::claim_next_for`], returned once the claim is committed, perhaps before it
    /// is on disk: the worker prepares the execution meanwhile, and must not start it
    /// before [`Store::flushed`] has returned for the claim. A claim lost in a crash of
    /// the machine would make the execution runnable again.
    pub async fn claim_next_unflushed(
        &self,
        worker: &str,
        takes_secrets: bool,
    ) -> Result<Option<(ExecutionRow, Unflushed)>> {
        // PostgreSQL: concurrent claimers skip each other's row instead of queueing on it.
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        };
        let secrets = if takes_secrets {
            ""
        } else {
            "AND secrets IS NULL"
        };
        let claim = format!(
            "UPDATE executions SET status = 'running', worker = $1, started_at = $2
             WHERE id = (SELECT id FROM executions WHERE status = 'requested' {secrets} ORDER BY id LIMIT 1 {lock})
               AND status = 'requested'
             RETURNING {CLAIM_COLUMNS}"
        );
        let started = now();
        let row = match self.backend {
            Backend::Sqlite => {
                let q = sqlx::query(sql_with_columns(unsynced_statement(&claim)))
                    .bind(worker)
                    .bind(&started);
                let mut rows = self.fetch_unsynced(q).await?;
                if rows.len() > 1 {
                    return Err(StoreError::Database(format!(
                        "a claim returned {} rows",
                        rows.len()
                    )));
                }
                rows.pop()
            }
            Backend::Postgres => {
                let q = sqlx::query(sql_with_columns(claim))
                    .bind(worker)
                    .bind(&started);
                self.write_returning(q).await?
            }
        };
        let Some(row) = row else {
            return Ok(None);
        };
        let on_disk = self.committed();
        let claimed = self.decode_whole(row).await?;
        self.announce_status(claimed.id, ExecutionStatus::Running);
        Ok(Some((claimed, on_disk)))
    }

    /// Moves `id` from `from` to `to` if it is still in `from`; true if it did.
    pub async fn transition(
        &self,
        id: i64,
        from: ExecutionStatus,
        to: ExecutionStatus,
    ) -> Result<bool> {
        let q = sqlx::query(
            "UPDATE executions SET status = $1, started_at = COALESCE($2, started_at) WHERE id = $3 AND status = $4",
        )
        .bind(to.as_str())
        .bind((to == ExecutionStatus::Running).then(now))
        .bind(id)
        .bind(from.as_str());
        let moved = q.execute(&self.pool).await?.rows_affected() == 1;
        if moved {
            self.announce_status(id, to);
        }
        Ok(moved)
    }

    /// Writes the final status and outcome if the execution is still in one of `from`.
    /// One statement: SQLite takes the write lock at once, so concurrent finishes queue on
    /// the busy timeout instead of deadlocking on a read-to-write upgrade.
    ///
    /// Flushed to disk before it returns: a cancel the API acknowledged is never undone.
    pub async fn finish(
        &self,
        id: i64,
        from: &[ExecutionStatus],
        to: ExecutionStatus,
        f: &Finish,
    ) -> Result<bool> {
        self.finish_with(id, from, to, f, true).await
    }

    /// [`Store::finish`] for the outcome of an execution a worker has claimed (what it ran,
    /// or why it could not start it). Committed before it returns, so a crash of this
    /// process (kill -9) loses nothing, but not flushed to disk by itself: SQLite's next
    /// synced commit or the server's checkpoint (every second) flushes it, PostgreSQL's WAL
    /// writer within `wal_writer_delay` (asynchronous commit). An OS crash inside that
    /// window takes back only the outcome: the execution is then still claimed, and is
    /// `abandoned` at the next start like any other in flight, never run again.
    pub async fn finish_outcome(
        &self,
        id: i64,
        from: &[ExecutionStatus],
        to: ExecutionStatus,
        f: &Finish,
    ) -> Result<bool> {
        self.finish_with(id, from, to, f, false).await
    }

    async fn finish_with(
        &self,
        id: i64,
        from: &[ExecutionStatus],
        to: ExecutionStatus,
        f: &Finish,
        synced: bool,
    ) -> Result<bool> {
        if from.is_empty() {
            return Ok(false);
        }
        let placeholders = (11..11 + from.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        // PostgreSQL: `set_config(…, true)` lasts until this statement's own commit, which
        // then does not wait for the WAL flush (`synchronous_commit = off` for it alone).
        let lazily = if !synced && self.backend == Backend::Postgres {
            " FROM (SELECT set_config('synchronous_commit', 'off', true)) AS lazily"
        } else {
            ""
        };
        let unsynced_sqlite = !synced && self.backend == Backend::Sqlite;
        // A worker's outcome says when the process started, if it did (until then the
        // record has the claim's time); anyone else's finish keeps what is there.
        let started = if synced {
            "COALESCE($3, started_at)"
        } else {
            "$3"
        };
        let mut sql = format!(
            "UPDATE executions SET status = $1, finished_at = $2, started_at = {started}, exit_code = $4,
             signal = $5, result = $6, stdout = $7, stderr = $8, error = $9{lazily} WHERE id = $10 AND status IN ({placeholders})"
        );
        if unsynced_sqlite {
            sql = unsynced(&sql);
        }
        let mut q = sqlx::query(sql_with_columns(sql))
            .bind(to.as_str())
            .bind(now())
            .bind(&f.started_at)
            .bind(f.exit_code)
            .bind(f.signal)
            .bind(f.result.as_ref().map(Value::to_string))
            .bind(&f.stdout)
            .bind(&f.stderr)
            .bind(&f.error)
            .bind(id);
        for st in from {
            q = q.bind(st.as_str());
        }
        let done = if unsynced_sqlite {
            self.update_unsynced(q).await?
        } else {
            q.execute(&self.pool).await?.rows_affected() == 1
        };
        if done {
            self.announce_status(id, to);
        }
        Ok(done)
    }

    /// Marks every execution that a previous run of this server had scheduled or running
    /// as `abandoned` (never re-run: delivery is at most once). Returns how many.
    pub async fn abandon_in_flight(&self, reason: &str) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE executions SET status = 'abandoned', finished_at = $1, error = $2
             WHERE status IN ('scheduled', 'running', 'canceling')",
        )
        .bind(now())
        .bind(reason)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() > 0 {
            self.announce(ANY_EXECUTION);
        }
        Ok(r.rows_affected())
    }

    /// Executions requested and not yet claimed.
    pub async fn queue_depth(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM executions WHERE status = 'requested'")
                .fetch_one(&self.read)
                .await?,
        )
    }

    /// Number of executions per status.
    pub async fn count_by_status(&self) -> Result<BTreeMap<String, i64>> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM executions GROUP BY status")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>("status")?, r.try_get::<i64, _>("n")?)))
            .collect()
    }

    // ---- tokens ----

    /// Stores a token by its hash, with its audit entry; returns it once committed.
    pub async fn insert_token(
        &self,
        name: &str,
        role: &str,
        hash: &str,
        actor: &str,
    ) -> Result<TokenRow> {
        let created_at = now();
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tokens (name, role, hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(name)
        .bind(role)
        .bind(hash)
        .bind(&created_at)
        .fetch_all(&mut *tx)
        .await?
        .pop()
        .ok_or_else(|| StoreError::Database("INSERT … RETURNING gave no row".into()))?;
        audit::insert(
            &mut tx,
            &AuditEntry {
                actor: actor.into(),
                kind: audit::TOKEN_CREATE.into(),
                subject: format!("token {name}"),
                detail: serde_json::json!({"id": id, "role": role}),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(TokenRow {
            id,
            name: name.into(),
            role: role.into(),
            created_at,
            last_used_at: None,
            revoked_at: None,
        })
    }

    /// The unrevoked token with this hash (looked up lately, or read; see [`TokenCache`]).
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>> {
        if let Some(row) = self.tokens.get(hash) {
            return Ok(Some(row));
        }
        let row = sqlx::query(
            "SELECT id, name, role, created_at, last_used_at, revoked_at FROM tokens
             WHERE hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.read)
        .await?;
        let token = row.as_ref().map(decode_token).transpose()?;
        if let Some(t) = &token {
            self.tokens.put(hash, t);
        }
        Ok(token)
    }

    /// Every token (revoked ones too), oldest first; never a token or its hash.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>> {
        let rows = sqlx::query(
            "SELECT id, name, role, created_at, last_used_at, revoked_at FROM tokens ORDER BY id",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(decode_token).collect()
    }

    /// Records that token `id` was used at `at`.
    pub async fn touch_token(&self, id: i64, at: &str) -> Result<()> {
        sqlx::query("UPDATE tokens SET last_used_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.tokens.touched(id, at);
        Ok(())
    }

    /// Revokes the unrevoked tokens named `name_or_id` (or with that id), with an audit
    /// entry each; returns them. Refused at once by this process, and on PostgreSQL by
    /// every API server as soon as it hears of it (see [`TokenCache`]).
    pub async fn revoke_tokens(&self, name_or_id: &str, actor: &str) -> Result<Vec<TokenRow>> {
        let at = now();
        let id = name_or_id.parse::<i64>().ok();
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND (name = $2 OR id = $3)
             RETURNING id, name, role, created_at, last_used_at, revoked_at",
        )
        .bind(&at)
        .bind(name_or_id)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let tokens = rows.iter().map(decode_token).collect::<Result<Vec<_>>>()?;
        for t in &tokens {
            audit::insert(
                &mut tx,
                &AuditEntry {
                    actor: actor.into(),
                    kind: audit::TOKEN_REVOKE.into(),
                    subject: format!("token {}", t.name),
                    detail: serde_json::json!({"id": t.id, "role": t.role}),
                },
            )
            .await?;
        }
        if self.backend == Backend::Postgres && !tokens.is_empty() {
            // Delivered with the commit: the other API servers forget their tokens.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(TOKENS_CHANNEL)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        // Forgotten after the commit: a lookup in between would read it unrevoked still.
        self.tokens.clear();
        Ok(tokens)
    }

    /// How many tokens exist.
    pub async fn token_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM tokens")
            .fetch_one(&self.read)
            .await?)
    }
}

fn decode_token(r: &AnyRow) -> Result<TokenRow> {
    Ok(TokenRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: r.try_get("role")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_payloads_with_and_without_the_status() {
        assert_eq!(
            parse_status_payload("42 running"),
            Some((42, Some(ExecutionStatus::Running)))
        );
        assert_eq!(parse_status_payload("42"), Some((42, None)));
        assert_eq!(parse_status_payload("42 hibernating"), Some((42, None)));
        assert_eq!(parse_status_payload("x running"), None);
        assert_eq!(parse_status_payload(""), None);
    }

    fn new_exec(action: &str) -> NewExecution {
        NewExecution {
            action_ref: action.into(),
            parameters: Map::new(),
            secrets: None,
            env_vars: BTreeMap::new(),
            timeout_secs: None,
            requested_by: "test".into(),
            rerun_of: None,
            secret_refs: Map::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_execution_is_claimed_once_and_transitions_are_conditional() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db.sqlite"))
            .await
            .unwrap();
        for _ in 0..50 {
            store
                .insert_execution(new_exec("core.noop"), None)
                .await
                .unwrap();
        }
        let mut tasks = Vec::new();
        for w in 0..4 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(e) = s.claim_next(&format!("w{w}")).await.unwrap() {
                    got.push(e.id);
                }
                got
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort();
        assert_eq!(all, (1..=50).collect::<Vec<i64>>());

        use ExecutionStatus::*;
        assert_eq!(
            store.get_execution(1).await.unwrap().unwrap().status,
            Running,
            "a claim starts the execution"
        );
        assert!(
            !store.transition(1, Requested, Running).await.unwrap(),
            "a second start must lose"
        );
        // A claim and a worker's outcome are written unsynced; the writer connection is
        // back to `synchronous = FULL` (2) after each, for the writes that follow.
        let synchronous = || async {
            sqlx::query_scalar::<_, i64>("PRAGMA synchronous")
                .fetch_one(&store.pool)
                .await
                .unwrap()
        };
        assert_eq!(synchronous().await, 2);
        assert!(store
            .finish_outcome(2, &[Running], Failed, &Finish::default())
            .await
            .unwrap());
        assert_eq!(synchronous().await, 2);
        assert!(store.transition(1, Running, Canceling).await.unwrap());
        let fin = Finish::default();
        assert!(
            !store.finish(1, &[Running], Succeeded, &fin).await.unwrap(),
            "finish must lose to cancel"
        );
        assert!(store
            .finish(1, &[Running, Canceling], Canceled, &fin)
            .await
            .unwrap());
        assert_eq!(
            store.get_execution(1).await.unwrap().unwrap().status,
            Canceled
        );
        assert_eq!(store.abandon_in_flight("restart").await.unwrap(), 48);
    }

    #[tokio::test]
    async fn the_audit_log_cannot_be_changed_or_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_sqlite(&dir.path().join("db.sqlite"))
            .await
            .unwrap();
        s.put_secret("global", "pw", &[1; 40], "admin")
            .await
            .unwrap();
        assert!(s
            .put_secret("global", "pw", &[2; 40], "admin")
            .await
            .is_ok());
        assert!(s.delete_secret("global", "pw", "admin").await.unwrap());
        let kinds = |v: Vec<AuditRow>| v.into_iter().map(|e| e.kind).collect::<Vec<_>>();
        let all = s
            .list_audit(&AuditFilter {
                limit: 10,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(
            kinds(all),
            ["secret.delete", "secret.update", "secret.create"]
        );
        for sql in ["UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"] {
            let e = sqlx::query(sql)
                .execute(&s.pool)
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("the audit log is append-only"), "{sql}: {e}");
        }
        let all = s
            .list_audit(&AuditFilter {
                limit: 10,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 3);
        assert!(all.iter().all(|e| e.actor == "admin"));
    }

    #[tokio::test]
    async fn migrations_run_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let s = Store::open_sqlite(&path).await.unwrap();
        s.insert_token("a", "admin", "h", "test").await.unwrap();
        drop(s);
        let s = Store::open_sqlite(&path).await.unwrap();
        assert_eq!(s.token_count().await.unwrap(), 1);
    }
}
