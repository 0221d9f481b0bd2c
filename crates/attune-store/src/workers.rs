//! Worker processes: registration, heartbeats, and leases. A process claims executions in
//! its own name; its heartbeat is its lease on them. When the heartbeat is older than the
//! lease, the executions it had in flight are abandoned (never run again: at most once).
//! Times here are the database's clock, so workers on other hosts with skewed clocks
//! neither lose their lease early nor keep it late.

use crate::{Backend, Result, Store};
use sqlx::Row;

/// A worker process, as `GET /api/v1/workers` shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WorkerRow {
    /// Its name (`--name`, else host and pid).
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// How many executions it runs at once.
    pub concurrency: i64,
    /// How many it was running at its last heartbeat.
    pub running: i64,
    /// When it started.
    pub started_at: String,
    /// Its last heartbeat.
    pub heartbeat_at: String,
    /// When it stopped, if it stopped cleanly.
    pub stopped_at: Option<String>,
    /// `live`, `lost` (no heartbeat within the lease) or `stopped`.
    #[schema(pattern = "^(live|lost|stopped)$")]
    pub state: String,
    /// Whether it holds the key that opens secret parameters; one that does not leaves
    /// executions with secrets to those that do.
    pub holds_key: bool,
}

impl Store {
    /// The database's clock as RFC 3339 UTC with milliseconds, `secs_ago` seconds back
    /// (a `$n` placeholder or a literal).
    fn db_time(&self, secs_ago: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!(
                "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || ({secs_ago}) || ' seconds')"
            ),
            Backend::Postgres => format!(
                "to_char((clock_timestamp() - make_interval(secs => ({secs_ago}))) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
            ),
        }
    }

    /// Registers worker process `name` (again, after a restart): what an earlier run of
    /// the same name left in flight is abandoned first. Returns how many were.
    /// `holds_key`: whether it can open secret parameters.
    pub async fn worker_start(
        &self,
        name: &str,
        host: &str,
        concurrency: i64,
        holds_key: bool,
    ) -> Result<u64> {
        let now = self.db_time("0");
        let mut tx = self.begin_write().await?;
        let swept = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE executions SET status = 'abandoned', finished_at = {now},
               error = 'its worker ' || worker || ' restarted while it was in flight; it was not run again (at-most-once delivery)'
             WHERE worker = $1 AND status IN ('scheduled', 'running', 'canceling')"
        )))
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO workers (name, host, concurrency, running, started_at, heartbeat_at, stopped_at, holds_key)
             VALUES ($1, $2, $3, 0, {now}, {now}, NULL, $4)
             ON CONFLICT (name) DO UPDATE SET host = excluded.host, concurrency = excluded.concurrency,
               running = 0, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
               stopped_at = NULL, holds_key = excluded.holds_key"
        )))
        .bind(name)
        .bind(host)
        .bind(concurrency)
        .bind(i64::from(holds_key))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if swept > 0 {
            self.announce(crate::ANY_EXECUTION);
        }
        Ok(swept)
    }

    /// Renews worker `name`'s lease; returns the ids of its executions that were asked
    /// to cancel (the API marks them `canceling`; the worker holds the processes).
    pub async fn worker_heartbeat(&self, name: &str, running: i64) -> Result<Vec<i64>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE workers SET heartbeat_at = {}, running = $2 WHERE name = $1",
            self.db_time("0")
        )))
        .bind(name)
        .bind(running)
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query_scalar(
            "SELECT id FROM executions WHERE worker = $1 AND status = 'canceling'",
        )
        .bind(name)
        .fetch_all(&self.read)
        .await?)
    }

    /// Worker `name` stopped cleanly (after finishing or cancelling its executions).
    pub async fn worker_stop(&self, name: &str) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE workers SET stopped_at = {0}, heartbeat_at = {0}, running = 0 WHERE name = $1",
            self.db_time("0")
        )))
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Abandons the executions in flight on workers whose last heartbeat is older than
    /// `lease_secs`. Returns how many. Nothing is abandoned while PostgreSQL has been up
    /// for less than a lease: after a restart of the database, live workers have not had
    /// the time to renew their leases yet.
    pub async fn reap_lost_workers(&self, lease_secs: u64) -> Result<u64> {
        let cutoff = self.db_time("$1");
        let now = self.db_time("0");
        let db_up_long_enough = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => {
                "AND clock_timestamp() - pg_postmaster_start_time() > make_interval(secs => $1)"
            }
        };
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE executions SET status = 'abandoned', finished_at = {now},
               error = 'its worker ' || worker || ' stopped sending heartbeats while it was in flight; it was not run again (at-most-once delivery)'
             WHERE status IN ('scheduled', 'running', 'canceling')
               AND worker IN (SELECT name FROM workers WHERE stopped_at IS NULL AND heartbeat_at < {cutoff})
               {db_up_long_enough}"
        )))
        .bind(lease_secs as i64)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() > 0 {
            self.announce(crate::ANY_EXECUTION);
        }
        Ok(r.rows_affected())
    }

    /// How many executions with secret parameters wait while no live worker (lease of
    /// `lease_secs`) holds the key that opens them.
    pub async fn waiting_for_key(&self, lease_secs: u64) -> Result<i64> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM executions WHERE status = 'requested' AND secrets IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM workers WHERE holds_key = 1 AND stopped_at IS NULL
                                 AND heartbeat_at >= {})",
            self.db_time("$1")
        )))
        .bind(lease_secs as i64)
        .fetch_one(&self.read)
        .await?)
    }

    /// Every worker process known, newest heartbeat first, with its state for a lease of
    /// `lease_secs`.
    pub async fn list_workers(&self, lease_secs: u64) -> Result<Vec<WorkerRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT name, host, concurrency, running, started_at, heartbeat_at, stopped_at, holds_key,
               CASE WHEN stopped_at IS NOT NULL THEN 'stopped'
                    WHEN heartbeat_at < {} THEN 'lost' ELSE 'live' END AS state
             FROM workers ORDER BY heartbeat_at DESC, name",
            self.db_time("$1")
        )))
        .bind(lease_secs as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WorkerRow {
                    name: r.try_get("name")?,
                    host: r.try_get("host")?,
                    concurrency: r.try_get("concurrency")?,
                    running: r.try_get("running")?,
                    started_at: r.try_get("started_at")?,
                    heartbeat_at: r.try_get("heartbeat_at")?,
                    stopped_at: r.try_get("stopped_at")?,
                    state: r.try_get("state")?,
                    holds_key: r.try_get::<i64, _>("holds_key")? != 0,
                })
            })
            .collect()
    }

    /// Appends output chunks of execution `id`, numbered from `first_seq` (already masked).
    pub async fn append_output(
        &self,
        id: i64,
        first_seq: i64,
        chunks: &[(&str, &[u8])],
    ) -> Result<()> {
        for (n, batch) in chunks.chunks(100).enumerate() {
            let mut sql =
                String::from("INSERT INTO output_chunks (execution_id, seq, stream, data) VALUES ");
            for i in 0..batch.len() {
                let p = 3 * i + 2;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("($1, ${p}, ${}, ${})", p + 1, p + 2));
            }
            sql.push_str(" ON CONFLICT (execution_id, seq) DO NOTHING");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id);
            for (i, (stream, data)) in batch.iter().enumerate() {
                q = q
                    .bind(first_seq + (n * 100 + i) as i64)
                    .bind(*stream)
                    .bind(data.to_vec());
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Execution `id`'s output chunks numbered `from` on (at most 1,000): (seq, stream, data).
    pub async fn output_since(&self, id: i64, from: i64) -> Result<Vec<(i64, String, Vec<u8>)>> {
        let rows = sqlx::query(
            "SELECT seq, stream, data FROM output_chunks WHERE execution_id = $1 AND seq >= $2
             ORDER BY seq LIMIT 1000",
        )
        .bind(id)
        .bind(from)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("seq")?, r.try_get("stream")?, r.try_get("data")?)))
            .collect()
    }

    /// Removes the output chunks of executions that ended more than `secs` ago.
    pub async fn sweep_output(&self, secs: u64) -> Result<u64> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM output_chunks WHERE execution_id IN
               (SELECT id FROM executions WHERE id IN (SELECT DISTINCT execution_id FROM output_chunks)
                  AND finished_at IS NOT NULL AND finished_at < {})",
            self.db_time("$1")
        )))
        .bind(secs as i64)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Each stored pack's ref and digest: what a worker compares its catalog with.
    pub async fn pack_digests(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT ref, digest FROM packs ORDER BY ref")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("ref")?, r.try_get("digest")?)))
            .collect()
    }
}
