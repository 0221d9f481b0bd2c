//! Embedded workers: each claims the oldest requested execution, runs it through the one
//! engine (`attune_runner`), streams its output to followers and writes the outcome with a
//! conditional update.

use crate::App;
use attune_core::{EnvVars, ExecutionStatus};
use attune_runner::{CancelToken, OutputSink, Stream};
use attune_store::{ExecutionRow, Finish, Unflushed};
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Output of a running execution, for followers.
#[derive(Debug, Default)]
pub struct LiveLog {
    inner: Mutex<LiveInner>,
    /// Woken on every new chunk and at the end.
    pub notify: Notify,
}

#[derive(Debug, Default)]
struct LiveInner {
    chunks: Vec<(Stream, Vec<u8>)>,
    bytes: usize,
    done: bool,
}

impl LiveLog {
    /// Chunks from index `from` on, and whether the log is complete.
    pub fn since(&self, from: usize) -> (Vec<(Stream, Vec<u8>)>, bool) {
        match self.inner.lock() {
            Ok(g) => (
                g.chunks.get(from..).map(<[_]>::to_vec).unwrap_or_default(),
                g.done,
            ),
            Err(_) => (Vec::new(), true),
        }
    }

    fn finish(&self) {
        if let Ok(mut g) = self.inner.lock() {
            g.done = true;
        }
        self.notify.notify_waiters();
    }
}

/// Feeds a LiveLog, keeping at most `cap` bytes for followers.
struct LiveSink {
    log: Arc<LiveLog>,
    cap: usize,
}

impl OutputSink for LiveSink {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        if let Ok(mut g) = self.log.inner.lock() {
            if g.bytes + data.len() <= self.cap {
                g.bytes += data.len();
                g.chunks.push((stream, data.to_vec()));
            }
        }
        self.log.notify.notify_waiters();
    }
}

/// What a worker keeps about an execution it is running.
#[derive(Debug, Clone)]
pub struct RunningExec {
    /// Cancels it.
    pub cancel: CancelToken,
    /// Its live output.
    pub log: Arc<LiveLog>,
}

/// Runs one worker slot until shutdown: `process` is the name executions are claimed under
/// (the lease holder), `name` this slot's, for the log.
pub async fn worker_loop(app: Arc<App>, process: String, name: String) {
    let takes_secrets = app.secrets.has_key();
    let mut outage = false;
    let mut backoff = crate::Backoff::new();
    loop {
        if app.is_shutting_down() {
            return;
        }
        let looking = app.wake.looking();
        let claimed = app
            .store
            .claim_next_unflushed(&process, takes_secrets)
            .await;
        if outage && claimed.is_ok() {
            tracing::debug!("worker {name}: claiming again");
            outage = false;
            backoff.reset();
        }
        match claimed {
            Ok(Some((exec, on_disk))) => {
                drop(looking);
                let span = tracing::info_span!(
                    "execution",
                    id = exec.id,
                    action = %exec.action_ref,
                    worker = %name
                );
                tracing::Instrument::instrument(run_one(&app, &name, exec, on_disk), span).await
            }
            Ok(None) => {
                tokio::select! {
                    _ = app.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = app.shutdown.notified() => {}
                }
            }
            Err(e) => {
                // The process's heartbeat task says it once per outage; each slot only
                // at debug level, once per outage.
                if !outage {
                    tracing::debug!("worker {name}: cannot claim work, retrying: {e}");
                    outage = true;
                }
                tokio::select! {
                    _ = backoff.wait() => {}
                    _ = app.shutdown.notified() => {}
                }
            }
        }
    }
}

/// Records why a claimed execution (started by its claim) could not be run.
async fn fail(app: &App, exec: &ExecutionRow, error: String) {
    end_unstarted(app, exec, ExecutionStatus::Failed, error).await
}

/// Ends a claimed execution whose process was never started, with `status` and why.
async fn end_unstarted(app: &App, exec: &ExecutionRow, status: ExecutionStatus, error: String) {
    use ExecutionStatus::*;
    app.metrics.ended(&exec.action_ref, status);
    let f = Finish {
        error: Some(error),
        ..Finish::default()
    };
    record_outcome(app, exec.id, &[Running, Canceling], status, &f).await;
    if let Some(r) = app.running_remove(exec.id) {
        r.log.finish();
    }
}

/// Writes an execution's outcome, retrying with backoff while the database refuses: an
/// execution must never stay `running` after its process has ended.
async fn record_outcome(
    app: &App,
    id: i64,
    from: &[ExecutionStatus],
    status: ExecutionStatus,
    finish: &Finish,
) {
    let mut backoff = crate::Backoff::new();
    let mut logged = false;
    loop {
        match app.store.finish_outcome(id, from, status, finish).await {
            Ok(_) => return,
            Err(e) => {
                if !logged {
                    tracing::error!("execution {id}: cannot record the outcome yet, retrying: {e}");
                    logged = true;
                }
                backoff.wait().await;
            }
        }
    }
}

/// The parameters of `exec` as they are delivered: the sealed secret values opened and
/// merged into the redacted ones. Also the names of the sealed parameters: a value that
/// was secret when it was stored stays secret, whatever the action says now. The
/// parameters are taken out of `exec` (a large document is not copied).
pub fn full_parameters(
    app: &App,
    exec: &mut ExecutionRow,
) -> Result<(Map<String, Value>, Vec<String>), crate::secrets::SecretError> {
    let mut params = std::mem::take(&mut exec.parameters);
    let mut sealed_names = Vec::new();
    if let Some(sealed) = &exec.secrets {
        let secrets = app.secrets.open_parameters(sealed)?;
        sealed_names.extend(secrets.keys().cloned());
        params.extend(secrets);
    }
    Ok((params, sealed_names))
}

/// Copies execution `id`'s live output to the database every 100 ms, and all of it once
/// `stop` fires. A write that fails is retried on the next round.
fn forward_output(
    app: Arc<App>,
    id: i64,
    log: Arc<LiveLog>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut sent = 0usize;
        loop {
            let stopping = tokio::select! {
                _ = &mut rx => true,
                _ = tokio::time::sleep(Duration::from_millis(100)) => false,
            };
            let (chunks, _) = log.since(sent);
            if !chunks.is_empty() {
                let rows: Vec<(&str, &[u8])> = chunks
                    .iter()
                    .map(|(stream, data)| (stream_name(*stream), data.as_slice()))
                    .collect();
                match app.store.append_output(id, sent as i64, &rows).await {
                    Ok(()) => sent += chunks.len(),
                    Err(e) if stopping => {
                        tracing::warn!("execution {id}: its last output could not be stored for followers: {e}");
                    }
                    Err(_) => {}
                }
            }
            if stopping {
                return;
            }
        }
    });
    (tx, task)
}

/// `stdout` or `stderr`.
pub fn stream_name(stream: Stream) -> &'static str {
    match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    }
}

/// Runs claimed execution `exec`, once its claim is on disk (`on_disk`): what can be
/// prepared before is prepared while the disk works.
async fn run_one(app: &Arc<App>, worker: &str, mut exec: ExecutionRow, on_disk: Unflushed) {
    use ExecutionStatus::*;
    let id = exec.id;
    // The claim started it: from now on a cancel must find it (one that came since the
    // claim was kept for it), and a follower its live output.
    let running = RunningExec {
        cancel: CancelToken::new(),
        log: Arc::new(LiveLog::default()),
    };
    app.running_insert(id, running.clone());
    app.store.announce_running(id);
    let mut known = app.catalog.action(&exec.action_ref);
    if known.is_none() {
        // Registered through another server since this one last looked.
        if let Err(e) = crate::refresh_packs(app).await {
            tracing::warn!("execution {id}: cannot load the stored packs: {e}");
        }
        known = app.catalog.action(&exec.action_ref);
    }
    let Some(action) = known else {
        fail(
            app,
            &exec,
            format!("action {} is no longer registered", exec.action_ref),
        )
        .await;
        return;
    };
    let (params, sealed_names) = match full_parameters(app, &mut exec) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("execution {id}: {e}");
            return fail(app, &exec, e.to_string()).await;
        }
    };
    let env = match EnvVars::new(exec.env_vars.clone()) {
        Ok(e) => e,
        Err(e) => return fail(app, &exec, e.to_string()).await,
    };
    let mut job = match attune_runner::prepare_job(
        id.to_string(),
        action,
        params,
        env,
        exec.timeout_secs,
        &sealed_names,
    ) {
        Ok(j) => j,
        Err(e) => return fail(app, &exec, e.to_string()).await,
    };
    if let Err(e) = app.store.flushed(on_disk).await {
        // Run now, it could run again after a crash of the machine: not at all instead.
        tracing::error!("execution {id}: not started: {e}");
        return end_unstarted(app, &exec, Failed, format!("not started: {e}")).await;
    }
    if running.cancel.is_canceled() {
        // Canceled since the claim, before its process started: it never will.
        let why = "canceled before it started".to_string();
        return end_unstarted(app, &exec, Canceled, why).await;
    }
    tracing::debug!("execution {id} started");
    let mut sink = LiveSink {
        log: running.log.clone(),
        cap: 2 * app.runner.config().output_limit,
    };
    // On PostgreSQL, other servers may be following: the output goes to the database too.
    let forward = (app.store.backend() == attune_store::Backend::Postgres)
        .then(|| forward_output(app.clone(), id, running.log.clone()));
    let outcome = app.runner.run(&mut job, &mut sink, &running.cancel).await;
    if let Some((stop, task)) = forward {
        // All of it is stored before the outcome, so a follower that sees the final
        // status finds every chunk.
        let _ = stop.send(());
        let _ = task.await;
    }
    let created_ms = attune_core::execution::parse_rfc3339_ms(&exec.created_at);
    match &outcome {
        Ok(o) => app.metrics.ran(&job.action, created_ms, o),
        Err(_) => app.metrics.ended(&exec.action_ref, Failed),
    }
    let (status, finish) = match outcome {
        Ok(o) => (
            o.status,
            Finish {
                exit_code: o.exit_code(),
                signal: o.signal(),
                result: o.result.clone(),
                stdout: o.stdout.text.clone(),
                stderr: o.stderr.text.clone(),
                error: o.error.clone(),
                started_at: Some(attune_core::execution::rfc3339(o.started_at)),
            },
        ),
        Err(e) => (
            Failed,
            Finish {
                error: Some(e.to_string()),
                ..Finish::default()
            },
        ),
    };
    record_outcome(app, id, &[Running, Canceling], status, &finish).await;
    tracing::info!(%status, "execution {id} ({}) {status} on {worker}", exec.action_ref);
    running.log.finish();
    app.running_remove(id);
}
