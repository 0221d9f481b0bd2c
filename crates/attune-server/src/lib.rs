//! Attune's server (DESIGN.md §4, §6): the REST API, the scheduler and N embedded workers on
//! one store. Executions are stored before the API acknowledges them; workers claim them
//! with a conditional update and run them through the one engine, `attune_runner`.

pub mod api;
pub mod api_admin;
pub mod auth;
pub mod catalog;
pub mod console;
pub mod http;
pub mod log;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod secrets;
pub mod worker;

use attune_core::bundle::Bundle;
use attune_runner::{Runner, RunnerConfig, Workspace};
use attune_store::Store;
use catalog::Catalog;
use secrets::SecretBox;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use worker::RunningExec;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data directory: database, key, admin token, pack cache.
    pub data_dir: PathBuf,
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Embedded workers.
    pub workers: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// On SIGTERM, how long running executions may finish before they are cancelled.
    pub shutdown_grace: Duration,
    /// The engine's settings.
    pub runner: RunnerConfig,
    /// Packs compiled into the binary (the core pack), registered at start.
    pub bundled: Vec<Bundle>,
    /// The key that seals secrets; `None`: `<data dir>/secret.key`, made at first start.
    pub secret_key_file: Option<PathBuf>,
    /// The most HTTP connections served at once; more get a 503.
    pub max_connections: usize,
    /// A PostgreSQL URL (`postgres://…`); `None`: the SQLite file `<data dir>/attune.db`.
    pub database_url: Option<String>,
    /// The name this process's workers claim executions under (`None`: host and pid).
    pub worker_name: Option<String>,
}

/// How often a worker process renews its lease (and picks up cancels asked of it).
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a worker process's lease lasts without a heartbeat: past it, what it had in
/// flight is abandoned.
pub const LEASE: Duration = Duration::from_secs(15);

/// Waits between retries against a database that refuses: doubling from 50 ms up to 5 s,
/// back to the start once it answers again.
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);
    const MOST: Duration = Duration::from_secs(5);

    pub(crate) fn new() -> Backoff {
        Backoff(Self::FIRST)
    }

    /// Sleeps for the current delay, then doubles it.
    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Self::MOST);
    }

    pub(crate) fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}

/// Which process this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `attune server`: the API, and `workers` embedded workers (0: API only).
    Server,
    /// `attune worker`: workers only, on a shared PostgreSQL database.
    Worker,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data dir, key file or admin token could not be prepared.
    #[error("{0}")]
    Setup(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] attune_store::StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Shared state of the server.
#[derive(Debug)]
pub struct App {
    /// The store.
    pub store: Store,
    /// Registered packs and actions.
    pub catalog: Arc<Catalog>,
    /// Encrypts secret parameters at rest.
    pub secrets: SecretBox,
    /// The engine.
    pub runner: Runner,
    /// Configuration.
    pub config: ServerConfig,
    /// What `GET /metrics` reports.
    pub metrics: metrics::Metrics,
    /// Wakes an idle worker slot when work arrives.
    pub wake: Wake,
    /// On PostgreSQL, which worker process a new execution is announced to.
    pub targets: WorkTargets,
    /// Wakes everything at shutdown.
    pub shutdown: Notify,
    shutting_down: AtomicBool,
    running: Mutex<Running>,
    /// The web console's sessions.
    pub console: console::Sessions,
}

/// The executions this process's workers are running, and the cancels that found none
/// of them: a claim starts an execution, so a cancel can come between the claim and the
/// worker registering it here.
#[derive(Debug, Default)]
struct Running {
    map: HashMap<i64, RunningExec>,
    unmatched: std::collections::VecDeque<(i64, std::time::Instant)>,
}

impl Running {
    /// How long an unmatched cancel is kept: far longer than a claim takes to register.
    const UNMATCHED_FOR: Duration = Duration::from_secs(10);

    fn remember_unmatched(&mut self, id: i64) {
        let now = std::time::Instant::now();
        while let Some((_, at)) = self.unmatched.front() {
            if now.duration_since(*at) < Self::UNMATCHED_FOR && self.unmatched.len() < 4096 {
                break;
            }
            self.unmatched.pop_front();
        }
        self.unmatched.push_back((id, now));
    }

    fn insert(&mut self, id: i64, r: RunningExec) {
        if self.take_unmatched(id) {
            r.cancel.cancel();
        }
        self.map.insert(id, r);
    }

    fn cancel(&mut self, id: i64) {
        match self.map.get(&id) {
            Some(r) => r.cancel.cancel(),
            None => self.remember_unmatched(id),
        }
    }

    fn take_unmatched(&mut self, id: i64) -> bool {
        match self.unmatched.iter().position(|(i, _)| *i == id) {
            Some(pos) => {
                self.unmatched.remove(pos);
                true
            }
            None => false,
        }
    }
}

impl App {
    /// Whether the server is shutting down (workers stop claiming).
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Registers an execution a worker of this process has claimed; a cancel that came
    /// for it since the claim, before this, takes effect now.
    fn running_insert(&self, id: i64, r: RunningExec) {
        if let Ok(mut m) = self.running.lock() {
            m.insert(id, r);
        }
    }

    fn running_remove(&self, id: i64) -> Option<RunningExec> {
        self.running.lock().ok()?.map.remove(&id)
    }

    fn running_get(&self, id: i64) -> Option<RunningExec> {
        self.running.lock().ok()?.map.get(&id).cloned()
    }

    /// How many executions this process's workers are running.
    pub fn running_count(&self) -> usize {
        self.running.lock().map(|m| m.map.len()).unwrap_or(0)
    }

    /// Whether `digest` is one of the packs compiled into the binary.
    pub fn is_bundled(&self, digest: &str) -> bool {
        self.config.bundled.iter().any(|b| b.digest() == digest)
    }

    /// Signals the cancel token of a running execution. One this process does not know
    /// (yet) is remembered for a while: its worker may have claimed it and not registered
    /// it yet.
    pub fn cancel_running(&self, id: i64) {
        if let Ok(mut m) = self.running.lock() {
            m.cancel(id);
        }
    }

    fn cancel_all(&self) {
        if let Ok(m) = self.running.lock() {
            for r in m.map.values() {
                r.cancel.cancel();
            }
        }
    }
}

fn setup(msg: impl std::fmt::Display) -> StartError {
    StartError::Setup(msg.to_string())
}

/// Writes `contents` to `path` with mode 0600, replacing it atomically.
fn write_private(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Takes an exclusive lock on `<data dir>/server.lock` for the server's life (the kernel
/// releases it when the process dies, even by kill -9), so two servers never share one
/// store. Refuses with the other server's pid when the lock is held.
fn lock_data_dir(data: &std::path::Path, role: Role) -> Result<std::fs::File, StartError> {
    use std::io::{Read, Seek, Write};
    let what = match role {
        Role::Server => "server",
        Role::Worker => "worker",
    };
    let path = data.join(format!("{what}.lock"));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| setup(format!("cannot open {}: {e}", path.display())))?;
    if !attune_runner::workdir::try_lock(&f) {
        let mut pid = String::new();
        let _ = f.read_to_string(&mut pid);
        let pid = pid.trim();
        let who = if pid.is_empty() {
            String::new()
        } else {
            format!(" (pid {pid})")
        };
        return Err(setup(format!(
            "another attune {what}{who} is already running on the data dir {}",
            data.display()
        )));
    }
    let pid = std::process::id().to_string();
    let written = f
        .set_len(0)
        .and_then(|()| f.rewind())
        .and_then(|()| f.write_all(pid.as_bytes()));
    written.map_err(|e| setup(format!("cannot write {}: {e}", path.display())))?;
    Ok(f)
}

/// Runs the server until SIGTERM or SIGINT; returns once shut down.
pub async fn run(config: ServerConfig) -> Result<(), StartError> {
    run_as(config, Role::Server).await
}

/// Runs a worker process (`attune worker`) until SIGTERM or SIGINT: it claims executions
/// from the shared database, runs them, and stops after finishing or cancelling them.
pub async fn run_worker(config: ServerConfig) -> Result<(), StartError> {
    run_as(config, Role::Worker).await
}

/// This host's name, for worker names and `GET /api/v1/workers`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

async fn run_as(config: ServerConfig, role: Role) -> Result<(), StartError> {
    let data = config.data_dir.clone();
    for change in attune_runner::datadir::prepare_data_dir(&data).map_err(setup)? {
        tracing::info!("data dir: {change}");
    }
    attune_runner::sandbox::protect_worker();
    // Before the store is touched: a second server on this data dir would mark the first
    // one's running executions abandoned at its start.
    let _data_lock = lock_data_dir(&data, role)?;
    let store = match &config.database_url {
        Some(url) => Store::open(url).await?,
        None => Store::open_sqlite(&data.join("attune.db")).await?,
    };
    let host = host_name();
    let worker_name = config
        .worker_name
        .clone()
        .unwrap_or_else(|| format!("{host}-{}", std::process::id()));
    // On SQLite this server is the only process: whatever was in flight was its own. On
    // PostgreSQL other processes' executions are left to their leases (the reaper below).
    if store.backend() == attune_store::Backend::Sqlite && role == Role::Server {
        let abandoned = store
            .abandon_in_flight("the server stopped while this execution was in flight; it was not run again (at-most-once delivery)")
            .await?;
        if abandoned > 0 {
            tracing::info!(
                "{abandoned} execution(s) in flight when the server last stopped are now abandoned"
            );
        }
    }
    let secrets = match (&config.secret_key_file, role) {
        (Some(path), _) => SecretBox::load(path).map_err(setup)?,
        (None, Role::Server) => {
            SecretBox::load_or_create(&data.join("secret.key")).map_err(setup)?
        }
        (None, Role::Worker) => {
            tracing::warn!("no --secret-key-file: executions with secret parameters are left to workers that have the key");
            SecretBox::absent()
        }
    };
    if role == Role::Server && store.token_count().await? == 0 {
        let token = auth::new_token().map_err(|p| setup(p.detail))?;
        store
            .insert_token("admin", "admin", &auth::hash_token(&token), "attune")
            .await?;
        let path = data.join("admin.token");
        write_private(&path, format!("{token}\n").as_bytes())
            .map_err(|e| setup(format!("cannot write {}: {e}", path.display())))?;
        tracing::info!(
            "first start: an admin token was written to {} (mode 0600)",
            path.display()
        );
    }
    // Leftover execution directories of killed runs are swept here.
    let shared = config.runner.run_as.is_some();
    let workspace_name = match role {
        Role::Server => "server",
        Role::Worker => "worker",
    };
    let workspace = Workspace::open(&data, workspace_name, shared).map_err(setup)?;
    for note in workspace.notes() {
        tracing::warn!("{note}");
    }
    tracing::info!("{}", workspace.describe());
    let sandbox =
        attune_runner::Sandbox::new(&workspace.protected(&data), config.runner.run_as.clone());
    let shortfalls = sandbox.shortfalls();
    if !shortfalls.is_empty() && config.runner.require_sandbox {
        return Err(setup(format!(
            "--require-sandbox: {}",
            shortfalls.join("; ")
        )));
    }
    for line in sandbox.describe() {
        if shortfalls.contains(&line) {
            tracing::warn!("{line}");
        } else {
            tracing::info!("{line}");
        }
    }
    let pack_cache = workspace.pack_cache(&data).map_err(setup)?;
    let runner = Runner::new(config.runner.clone(), workspace, sandbox);
    tracing::info!(
        "pack cache: {} (read-only, checked against each pack's digest)",
        pack_cache.display()
    );
    let catalog = Arc::new(Catalog::new(pack_cache, shared));
    let app = Arc::new(App {
        store,
        catalog,
        secrets,
        runner,
        config: config.clone(),
        metrics: metrics::Metrics::new(),
        wake: Wake::default(),
        targets: WorkTargets::default(),
        shutdown: Notify::new(),
        shutting_down: AtomicBool::new(false),
        running: Mutex::new(Running::default()),
        console: console::Sessions::default(),
    });
    load_packs(&app, role == Role::Server).await?;

    // This process's workers: registered under one name, their lease renewed by a
    // heartbeat that also brings the cancels asked of them and new or changed packs.
    let workers_wanted = config.workers;
    if workers_wanted > 0 {
        let swept = app
            .store
            .worker_start(
                &worker_name,
                &host,
                workers_wanted as i64,
                app.secrets.has_key(),
            )
            .await?;
        if swept > 0 {
            tracing::info!("{swept} execution(s) this worker left in flight when it last stopped are now abandoned");
        }
    }
    let background = background_tasks(
        app.clone(),
        worker_name.clone(),
        workers_wanted > 0,
        role == Role::Server,
    );
    // SQLite: the WAL is copied into the database file here, off the requests' path.
    let checkpoints = tokio::spawn(checkpoints(app.clone()));
    // On PostgreSQL: new work wakes this process's workers, and the API server hears of
    // every status change, whoever made it, for the clients waiting on one.
    let db_listener = tokio::spawn(listen(
        app.clone(),
        workers_wanted > 0,
        role == Role::Server,
        worker_name.clone(),
    ));
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..workers_wanted {
        workers.spawn(worker::worker_loop(
            app.clone(),
            worker_name.clone(),
            format!("{worker_name}/{i}"),
        ));
    }
    let database = match app.store.backend() {
        attune_store::Backend::Sqlite => "SQLite in the data dir",
        attune_store::Backend::Postgres => "PostgreSQL",
    };
    if role == Role::Worker {
        tracing::info!(
            "worker {worker_name} running {workers_wanted} at once; database: {database}; runtime in {}",
            data.display()
        );
        stop_signal().await;
        drain_executions(&app).await;
        while workers.join_next().await.is_some() {}
        background.abort();
        db_listener.abort();
        checkpoints.abort();
        if let Err(e) = app.store.worker_stop(&worker_name).await {
            tracing::warn!("cannot record that worker {worker_name} stopped: {e}");
        }
        tracing::info!("stopped");
        return Ok(());
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen,
        source,
    })?;
    let url = format!("http://{addr}");
    write_private(
        &data.join("server.json"),
        serde_json::json!({"url": url, "pid": std::process::id(), "pack_cache": app.catalog.cache_dir()})
            .to_string()
            .as_bytes(),
    )
    .map_err(|e| setup(format!("cannot write server.json: {e}")))?;

    tracing::info!(
        "listening on {url} with {workers_wanted} worker(s); data in {}; database: {database}",
        data.display()
    );

    // On SIGTERM/SIGINT the drain starts at once, alongside the HTTP server's own graceful
    // shutdown: clients following an execution's output keep their connection open until it
    // ends, so executions must finish or be cancelled for the server to stop.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let drain = {
        let app = app.clone();
        tokio::spawn(async move {
            stop_signal().await;
            let _ = stop_tx.send(true);
            drain_executions(&app).await;
        })
    };
    http::serve(
        listener,
        api::router(app.clone()),
        app.config.max_connections,
        stop_rx,
    )
    .await;
    let _ = drain.await;
    while workers.join_next().await.is_some() {}
    background.abort();
    db_listener.abort();
    checkpoints.abort();
    if workers_wanted > 0 {
        if let Err(e) = app.store.worker_stop(&worker_name).await {
            tracing::warn!("cannot record that worker {worker_name} stopped: {e}");
        }
    }
    let _ = std::fs::remove_file(data.join("server.json"));
    tracing::info!("stopped");
    Ok(())
}

/// Stops claiming work, lets running executions finish within the grace period, then
/// cancels the rest and waits until they are recorded.
async fn drain_executions(app: &App) {
    tracing::info!(
        "shutting down: {} execution(s) running, waiting up to {}s",
        app.running_count(),
        app.config.shutdown_grace.as_secs()
    );
    app.shutting_down.store(true, Ordering::SeqCst);
    app.shutdown.notify_waiters();
    let deadline = tokio::time::Instant::now() + app.config.shutdown_grace;
    while app.running_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if app.running_count() > 0 {
        tracing::info!("grace period over: cancelling the remaining executions");
        app.cancel_all();
    }
    while app.running_count() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Wakes a worker slot when work arrives, if one is looking for work. A slot looks from
/// before its claim until it has one: woken while it claims, it claims once more (the
/// permit is kept); while every slot runs an execution, nothing is kept, since each claims
/// as soon as its execution ends. Without that, every announcement to a busy process left
/// a permit behind, and with it a claim that found nothing: on PostgreSQL, a round trip
/// for each process and each execution.
#[derive(Debug, Default)]
pub struct Wake {
    notify: Notify,
    looking: std::sync::atomic::AtomicUsize,
}

impl Wake {
    /// Work was stored: one slot looking for work is woken. True if one was looking.
    pub fn work_arrived(&self) -> bool {
        // SeqCst with the increment in `looking`: either this sees the slot, or the slot's
        // claim, which comes after its increment, comes after this and finds the work.
        let looking = self.looking.load(Ordering::SeqCst) > 0;
        if looking {
            self.notify.notify_one();
        }
        looking
    }

    /// A slot starts looking for work, until the guard is dropped.
    pub fn looking(&self) -> Looking<'_> {
        self.looking.fetch_add(1, Ordering::SeqCst);
        Looking(self)
    }

    /// Resolves once work arrives (or arrived while this slot was claiming).
    pub async fn notified(&self) {
        self.notify.notified().await
    }
}

/// On PostgreSQL, which worker process a new execution is announced to: the live ones in
/// turn (those that hold the key, for an execution with secrets), read from the workers
/// table at most once a second. Announced to every process, each would wake a slot that
/// claims, and all but one claim would find nothing: with N processes, N−1 round trips
/// per execution. The process named claims it if one of its slots looks for work, else
/// announces it to all ([`listen`]); and if nobody has claimed it after
/// [`UNCLAIMED_AFTER`] (the process died, say), the API server announces it to all.
#[derive(Debug, Default)]
pub struct WorkTargets {
    live: Mutex<LiveWorkers>,
    turn: std::sync::atomic::AtomicUsize,
}

/// When the live worker processes were read, and their names with whether each holds the
/// key.
type LiveWorkers = (Option<std::time::Instant>, Vec<(String, bool)>);

/// How long a new execution announced to one worker process may stay unclaimed before it
/// is announced to all.
pub const UNCLAIMED_AFTER: Duration = Duration::from_millis(50);

impl WorkTargets {
    /// The worker process to announce a new execution to (`needs_key`: it has secrets);
    /// None to announce it to all (none known live).
    pub async fn pick(&self, store: &attune_store::Store, needs_key: bool) -> Option<String> {
        let stale = {
            let g = self.live.lock().unwrap_or_else(|p| p.into_inner());
            g.0.is_none_or(|at| at.elapsed() > Duration::from_secs(1))
        };
        if stale {
            // Live: a heartbeat within two of them, and not stopped.
            let fresh = (2 * HEARTBEAT).as_secs() + 1;
            let live = match store.list_workers(fresh).await {
                Ok(rows) => rows
                    .into_iter()
                    .filter(|w| w.state == "live")
                    .map(|w| (w.name, w.holds_key))
                    .collect(),
                Err(_) => Vec::new(),
            };
            *self.live.lock().unwrap_or_else(|p| p.into_inner()) =
                (Some(std::time::Instant::now()), live);
        }
        let g = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let able: Vec<&String> =
            g.1.iter()
                .filter(|(_, key)| *key || !needs_key)
                .map(|(n, _)| n)
                .collect();
        if able.is_empty() {
            return None;
        }
        let i = self.turn.fetch_add(1, Ordering::Relaxed) % able.len();
        Some(able[i].clone())
    }
}

/// A worker slot looking for work (see [`Wake::looking`]).
#[derive(Debug)]
pub struct Looking<'a>(&'a Wake);

impl Drop for Looking<'_> {
    fn drop(&mut self) {
        self.0.looking.fetch_sub(1, Ordering::SeqCst);
    }
}

/// On PostgreSQL, wakes this process's idle workers when any server stores an execution
/// for any worker process or for this one, `name` (`work`; their one-second poll is the
/// fallback while the listener reconnects), loads packs registered or replaced through
/// other servers, and passes status changes on to the clients waiting for them
/// (`status`). Nothing on SQLite. An execution announced to this process while none of its
/// workers looks for work is announced again to all.
async fn listen(app: Arc<App>, work: bool, status: bool, name: String) {
    if !work && !status {
        return;
    }
    let mut listener = None;
    let mut backoff = Backoff::new();
    loop {
        if listener.is_none() {
            match app.store.listener(work, status).await {
                Ok(Some(l)) => {
                    listener = Some(l);
                    backoff.reset();
                }
                Ok(None) => return,
                Err(_) => {
                    backoff.wait().await;
                    continue;
                }
            }
        }
        if let Some(l) = listener.as_mut() {
            match l.next().await {
                Ok(attune_store::Heard::Work(None)) => {
                    app.wake.work_arrived();
                }
                Ok(attune_store::Heard::Work(Some(to))) => {
                    if to == name && !app.wake.work_arrived() {
                        if let Err(e) = app.store.announce_work().await {
                            tracing::debug!("cannot pass work on to the other workers: {e}");
                        }
                    }
                }
                Ok(attune_store::Heard::Status | attune_store::Heard::Tokens) => {}
                // Loaded before the work that may follow it is claimed (same connection,
                // commit order).
                Ok(attune_store::Heard::Packs) => {
                    if let Err(e) = refresh_packs(&app).await {
                        tracing::warn!("cannot load the changed packs yet: {e}");
                    }
                }
                Err(_) => listener = None,
            }
        }
    }
}

/// The heartbeat (when this process has workers), the reaper of lost workers' leases and,
/// on an API server (`watch_keys`), a warning when executions with secrets wait for a
/// worker that holds the key and none is live.
fn background_tasks(
    app: Arc<App>,
    name: String,
    heartbeat: bool,
    watch_keys: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut outage = false;
        let mut back_at: Option<std::time::Instant> = None;
        let mut packs_seen: Vec<(String, String)> = Vec::new();
        let mut sweep_round = 0u64;
        let mut stuck_on_key = 0i64;
        loop {
            tick.tick().await;
            let mut failed = None;
            if heartbeat {
                match app
                    .store
                    .worker_heartbeat(&name, app.running_count() as i64)
                    .await
                {
                    Ok(cancels) => {
                        for id in cancels {
                            app.cancel_running(id);
                        }
                    }
                    Err(e) => failed = Some(e),
                }
                // Packs registered or replaced through another server.
                match app.store.pack_digests().await {
                    Ok(digests) if digests != packs_seen => {
                        // Also on the first tick: a pack registered between this
                        // process's start and now is loaded here. Retried until it works.
                        match sync_packs(&app, &digests).await {
                            Ok(()) => packs_seen = digests,
                            Err(e) => tracing::warn!("cannot load the changed packs yet: {e}"),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => failed = Some(e),
                }
            }
            // About every 10 s: secret-bearing executions that no live worker can open,
            // said when their number changes.
            if watch_keys && sweep_round % 5 == 2 {
                match app.store.waiting_for_key(LEASE.as_secs()).await {
                    Ok(n) if n == stuck_on_key => {}
                    Ok(0) => stuck_on_key = 0,
                    Ok(n) => {
                        stuck_on_key = n;
                        tracing::warn!(
                            "{n} execution(s) with secret parameters are waiting, and no live worker holds the secret key: start one with `attune worker --secret-key-file …` (the servers' key)"
                        );
                    }
                    Err(e) => failed = Some(e),
                }
            }
            // Output chunks of executions that ended ten minutes ago, about once a minute.
            sweep_round += 1;
            if sweep_round % 30 == 0 {
                if let Err(e) = app.store.sweep_output(600).await {
                    failed = Some(e);
                }
            }
            // Not within a lease of this process's own outage: the workers' heartbeats
            // failed as its queries did, and have not had the time to land again.
            let reaped = match back_at.is_some_and(|t| t.elapsed() < LEASE) {
                true => Ok(0),
                false => app.store.reap_lost_workers(LEASE.as_secs()).await,
            };
            match reaped {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    "{n} execution(s) of workers that stopped sending heartbeats are now abandoned"
                ),
                Err(e) => failed = Some(e),
            }
            match failed {
                Some(e) if !outage => {
                    tracing::error!("the database is unavailable, retrying: {e}");
                    outage = true;
                }
                None if outage => {
                    tracing::info!("the database is back");
                    outage = false;
                    back_at = Some(std::time::Instant::now());
                }
                _ => {}
            }
        }
    })
}

/// Checkpoints SQLite's WAL every second (see [`attune_store::Store::checkpoint`]); a
/// failure is retried at the next tick (the WAL only grows meanwhile).
async fn checkpoints(app: Arc<App>) {
    if app.store.backend() != attune_store::Backend::Sqlite {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = app.store.checkpoint().await {
            tracing::debug!("WAL checkpoint: {e}");
        }
    }
}

/// Loads the stored packs this process does not have yet (or has another version of):
/// a worker calls it when it claims an execution of an action it does not know, which
/// happens when the pack was registered through a server since its last heartbeat.
pub(crate) async fn refresh_packs(app: &Arc<App>) -> Result<(), StartError> {
    let digests = app.store.pack_digests().await?;
    sync_packs(app, &digests).await
}

/// Brings the catalog in line with the stored packs: loads new and changed ones, drops
/// removed ones.
async fn sync_packs(app: &Arc<App>, digests: &[(String, String)]) -> Result<(), StartError> {
    let gone: Vec<String> = app
        .catalog
        .packs()
        .into_iter()
        .map(|p| p.pack.pack_ref)
        .filter(|r| !digests.iter().any(|(d, _)| d == r))
        .collect();
    if !gone.is_empty() {
        // `digests` may predate a registration that has since reached the catalog: the
        // removal is checked against a fresh read, and skipped if the catalog changed
        // after that read began (the next round looks again).
        let generation = app.catalog.generation();
        let now = app.store.pack_digests().await?;
        for r in gone.iter().filter(|r| !now.iter().any(|(d, _)| d == *r)) {
            app.catalog.remove_unless_changed(r, generation);
        }
    }
    let changed: Vec<&String> = digests
        .iter()
        .filter(|(r, d)| {
            !app.catalog
                .packs()
                .iter()
                .any(|p| p.pack.pack_ref == *r && p.digest == *d)
        })
        .map(|(r, _)| r)
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    for row in app.store.list_packs().await? {
        if changed.contains(&&row.pack_ref) {
            load_pack_row(app, &row);
        }
    }
    Ok(())
}

fn load_pack_row(app: &Arc<App>, row: &attune_store::PackRow) {
    let loaded = Bundle::from_bytes(&row.bundle)
        .map_err(|e| e.to_string())
        .and_then(|b| match b.digest() == row.digest {
            true => Ok(b),
            false => Err(format!(
                "the stored bundle does not match its digest {}; refusing to load it",
                row.digest
            )),
        })
        .and_then(|b| {
            let bundled = app.is_bundled(&row.digest);
            app.catalog
                .load(&b, &row.digest, &row.registered_at, bundled)
        });
    match loaded {
        Ok(p) => app.catalog.insert(p),
        Err(e) => tracing::error!("pack {} cannot be loaded and is skipped: {e}", row.pack_ref),
    }
}

/// Registers the bundled packs (if new or changed; the server only) and loads every
/// stored pack.
async fn load_packs(app: &Arc<App>, register_bundled: bool) -> Result<(), StartError> {
    let stored = app.store.list_packs().await?;
    for bundle in app.config.bundled.iter().filter(|_| register_bundled) {
        let digest = bundle.digest();
        if !stored.iter().any(|p| p.digest == digest) {
            api::register(app, &bundle.to_bytes()).await.map_err(|p| {
                setup(format!(
                    "bundled pack is invalid: {} {}",
                    p.detail,
                    p.errors.join("; ")
                ))
            })?;
        }
    }
    for row in app.store.list_packs().await? {
        load_pack_row(app, &row);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Wake;
    use std::time::Duration;

    async fn woken(wake: &Wake) -> bool {
        tokio::time::timeout(Duration::from_millis(100), wake.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn work_that_arrives_while_every_slot_runs_leaves_no_wake_up_behind() {
        let wake = Wake::default();
        wake.work_arrived();
        let _looking = wake.looking();
        assert!(!woken(&wake).await, "a stale wake-up was kept");
    }

    #[tokio::test]
    async fn work_that_arrives_while_a_slot_claims_wakes_it_after_its_claim() {
        let wake = Wake::default();
        let looking = wake.looking();
        // The slot is claiming (not waiting yet) when the work is announced.
        wake.work_arrived();
        assert!(woken(&wake).await, "the announcement was lost");
        drop(looking);
        assert!(!woken(&wake).await, "one announcement woke twice");
    }
}

#[cfg(test)]
mod running_tests {
    use super::*;

    fn exec() -> RunningExec {
        RunningExec {
            cancel: attune_runner::CancelToken::new(),
            log: Arc::new(worker::LiveLog::default()),
        }
    }

    #[test]
    fn a_cancel_that_comes_before_the_worker_registers_the_execution_still_cancels_it() {
        let mut r = Running::default();
        r.cancel(7);
        let (early, other) = (exec(), exec());
        r.insert(8, other.clone());
        r.insert(7, early.clone());
        assert!(early.cancel.is_canceled());
        assert!(!other.cancel.is_canceled());
        // Taken once: the cancel does not outlive its execution.
        assert!(r.unmatched.is_empty());
        r.cancel(8);
        assert!(other.cancel.is_canceled());
        assert!(r.unmatched.is_empty());
    }

    #[test]
    fn unmatched_cancels_are_bounded() {
        let mut r = Running::default();
        for id in 0..10_000 {
            r.cancel(id);
        }
        assert!(r.unmatched.len() <= 4097, "{}", r.unmatched.len());
        let last = exec();
        r.insert(9_999, last.clone());
        assert!(last.cancel.is_canceled());
    }
}
