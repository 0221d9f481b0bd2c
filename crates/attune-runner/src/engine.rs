//! The execution engine: from a validated job to a finished outcome.

use crate::cancel::CancelToken;
use crate::capture::{parse_result, Capture, Captured};
use crate::sandbox::Sandbox;
use crate::spawn::{self, ExitStatus, Request, SpawnSpec, StartFailure, Supervised};
use crate::workdir::{Workspace, WorkspaceError};
use attune_core::format::FormatError;
use attune_core::schema::Violations;
use attune_core::{Action, Delivery, EnvVars, ExecutionStatus, Format, Masker, RunnerType};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::unix::AsyncFd;

/// Default cap on each captured stream.
pub const DEFAULT_OUTPUT_LIMIT: usize = 4 * 1024 * 1024;
/// Default time between SIGTERM and SIGKILL.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);
/// How long output is still drained after the action's group is gone (a process that
/// escaped the group with setsid may hold the pipes open).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
const FALLBACK_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The interpreter used for each interpreted runner type: a name looked up in `PATH`, or
/// an absolute path.
#[derive(Debug, Clone)]
pub struct Interpreters {
    /// For `shell` actions.
    pub shell: String,
    /// For `python` actions.
    pub python: String,
    /// For `node` actions.
    pub node: String,
}

impl Default for Interpreters {
    fn default() -> Self {
        Interpreters {
            shell: "bash".into(),
            python: "python3".into(),
            node: "node".into(),
        }
    }
}

impl Interpreters {
    /// Sets the interpreter for `runner` (`shell`, `python` or `node`).
    pub fn set(&mut self, runner: &str, program: &str) -> Result<(), String> {
        let slot = match runner {
            "shell" => &mut self.shell,
            "python" => &mut self.python,
            "node" => &mut self.node,
            other => {
                return Err(format!(
                    "no interpreter to configure for `{other}`; use shell, python or node"
                ))
            }
        };
        if program.is_empty() {
            return Err(format!("empty interpreter for `{runner}`"));
        }
        *slot = program.to_string();
        Ok(())
    }

    fn for_runner(&self, r: RunnerType) -> Option<&str> {
        match r {
            RunnerType::Shell => Some(&self.shell),
            RunnerType::Python => Some(&self.python),
            RunnerType::Node => Some(&self.node),
            RunnerType::Native => None,
        }
    }
}

/// How the runner runs actions.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Interpreters per runner type.
    pub interpreters: Interpreters,
    /// `PATH` given to actions (and used to find interpreters); `None`: the worker's own.
    pub action_path: Option<String>,
    /// Bytes kept of each of stdout and stderr.
    pub output_limit: usize,
    /// Time between SIGTERM and SIGKILL on timeout or cancel.
    pub kill_grace: Duration,
    /// Refuse to run actions unconfined where the kernel lacks Landlock.
    pub require_sandbox: bool,
    /// The user actions run as, if not the worker's.
    pub run_as: Option<crate::sandbox::RunAs>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            interpreters: Interpreters::default(),
            action_path: None,
            output_limit: DEFAULT_OUTPUT_LIMIT,
            kill_grace: DEFAULT_KILL_GRACE,
            require_sandbox: false,
            run_as: None,
        }
    }
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Receives an action's output as it is produced, already masked.
pub trait OutputSink: Send {
    /// One chunk of masked output.
    fn output(&mut self, stream: Stream, data: &[u8]);
}

/// A sink that discards output (it is still captured in the outcome).
#[derive(Debug, Default)]
pub struct NullSink;

impl OutputSink for NullSink {
    fn output(&mut self, _: Stream, _: &[u8]) {}
}

/// One execution, validated and ready to run.
#[derive(Debug, Clone)]
pub struct Job {
    /// Execution id, given to the action as `ATTUNE_EXECUTION_ID`.
    pub execution_id: String,
    /// The action.
    pub action: Arc<Action>,
    /// Validated parameters, defaults applied, secrets resolved.
    pub parameters: Map<String, Value>,
    /// Validated env_vars.
    pub env_vars: EnvVars,
    /// Effective timeout.
    pub timeout: Duration,
    /// Masks the secret values delivered to this execution.
    pub masker: Arc<Masker>,
}

/// Why a job could not be prepared. Messages never contain secret values.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The action is disabled.
    #[error("action `{0}` is disabled")]
    Disabled(String),
    /// Parameters violate the schema.
    #[error("invalid parameters for {action}: {violations}")]
    Invalid {
        /// Action ref.
        action: String,
        /// Every violation.
        violations: Violations,
    },
    /// A timeout above the action's own.
    #[error("timeout {requested}s exceeds the action's limit of {limit}s; a request may lower the timeout, never raise it")]
    TimeoutTooLong {
        /// Requested seconds.
        requested: u64,
        /// The action's timeout.
        limit: u64,
    },
    /// A zero timeout.
    #[error("timeout must be at least 1 second")]
    ZeroTimeout,
}

/// Checks that `action` may run with these parameters and timeout: defaults applied, the
/// schema satisfied, the timeout no longer than the action's. Returns the parameters as
/// they will be delivered and the effective timeout. The values of the parameters named
/// in `also_secret` (secret once, though the action no longer says so) stay out of the
/// messages, as the action's secret parameters' do.
pub fn validate_request(
    action: &Action,
    parameters: Map<String, Value>,
    timeout: Option<u64>,
    also_secret: &[String],
) -> Result<(Map<String, Value>, Duration), PrepareError> {
    if !action.enabled {
        return Err(PrepareError::Disabled(action.action_ref.clone()));
    }
    let timeout = match timeout {
        None => action.timeout_secs,
        Some(0) => return Err(PrepareError::ZeroTimeout),
        Some(t) if t > action.timeout_secs => {
            return Err(PrepareError::TimeoutTooLong {
                requested: t,
                limit: action.timeout_secs,
            })
        }
        Some(t) => t,
    };
    let invalid = |violations| PrepareError::Invalid {
        action: action.action_ref.clone(),
        violations,
    };
    let parameters = action
        .parameters
        .prepare_hiding(parameters, also_secret)
        .map_err(invalid)?;
    // Refused now, not when the action is about to run.
    attune_core::format::check_deliverable(&parameters, action.format)
        .map_err(|e| invalid(attune_core::schema::Violations(vec![e.to_string()])))?;
    Ok((parameters, Duration::from_secs(timeout)))
}

/// Validates the request (see [`validate_request`]) and builds the job, with the masker for
/// the secret values this execution receives: the action's secret parameters and those
/// named in `also_secret`.
pub fn prepare_job(
    execution_id: String,
    action: Arc<Action>,
    parameters: Map<String, Value>,
    env_vars: EnvVars,
    timeout: Option<u64>,
    also_secret: &[String],
) -> Result<Job, PrepareError> {
    let (parameters, timeout) = validate_request(&action, parameters, timeout, also_secret)?;
    let secrets = secret_values(&action, &parameters, also_secret);
    let masker = Arc::new(Masker::new(secrets.iter().map(String::as_str)));
    Ok(Job {
        execution_id,
        action,
        parameters,
        env_vars,
        timeout,
        masker,
    })
}

/// The texts to mask for the secret parameters (the action's and `also_secret`): a string
/// as it is; every string leaf of an object or array (not their whole JSON text: masking
/// that would turn a result line holding them into invalid JSON, while their leaves are
/// masked anyway); other values as their JSON text.
pub fn secret_values(
    action: &Action,
    params: &Map<String, Value>,
    also_secret: &[String],
) -> Vec<String> {
    fn leaves(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| leaves(i, out)),
            Value::Object(m) => m.values().for_each(|i| leaves(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let names = action.parameters.secret_names().iter().chain(also_secret);
    for value in names.filter_map(|name| params.get(name)) {
        match value {
            Value::Null => {}
            Value::String(s) => out.push(s.clone()),
            Value::Array(_) | Value::Object(_) => leaves(value, &mut out),
            other => out.push(other.to_string()),
        }
    }
    out
}

/// Why an execution could not be started. Messages never contain parameter values.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Parameters could not be serialised in the action's format.
    #[error("cannot deliver parameters to {action}: {source}")]
    Format {
        /// Action ref.
        action: String,
        /// The format error.
        source: FormatError,
    },
    /// The interpreter is not installed.
    #[error("{runner} action {action}: interpreter `{program}` {}; install it or configure another with --interpreter {runner}=/path/to/it", if program.contains('/') { "does not exist or is not executable".to_string() } else { format!("not found in PATH ({path})") })]
    InterpreterNotFound {
        /// Runner type.
        runner: &'static str,
        /// Action ref.
        action: String,
        /// The configured interpreter.
        program: String,
        /// The PATH searched.
        path: String,
    },
    /// The run-as user cannot read the action's entry point.
    #[error("{action}: {user} (the user actions run as) cannot read {path}; make the pack readable by it, or choose another user with --run-as")]
    Unreadable {
        /// Action ref.
        action: String,
        /// The run-as user.
        user: String,
        /// The entry point, or the directory on its way that blocks it.
        path: PathBuf,
    },
    /// The execution directory could not be prepared.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// The process could not be started.
    #[error("cannot start {action}: {source}")]
    Spawn {
        /// Action ref.
        action: String,
        /// The OS error.
        source: io::Error,
    },
}

/// How an execution ended.
#[derive(Debug)]
pub struct Outcome {
    /// Final status: succeeded, failed, timeout or canceled.
    pub status: ExecutionStatus,
    /// The process's exit status, if it ran.
    pub exit: Option<ExitStatus>,
    /// Captured stdout.
    pub stdout: Captured,
    /// Captured stderr.
    pub stderr: Captured,
    /// The JSON object on stdout's last non-empty line.
    pub result: Option<Value>,
    /// Why the execution failed, beyond its exit code.
    pub error: Option<String>,
    /// When the process was started.
    pub started_at: SystemTime,
    /// When it ended.
    pub finished_at: SystemTime,
    /// Wall time.
    pub duration: Duration,
    /// Size of the delivered parameter document.
    pub parameter_bytes: usize,
    /// How long serialising the parameters and writing their file took (stdin: the
    /// serialising; the pipe is written while the action starts).
    pub delivery_time: Duration,
    /// Whether the execution directory (and parameter file) was removed.
    pub cleanup_ok: bool,
}

impl Outcome {
    /// The exit code, when the process exited normally.
    pub fn exit_code(&self) -> Option<i32> {
        match self.exit {
            Some(ExitStatus::Exited(c)) => Some(c),
            _ => None,
        }
    }

    /// The signal, when the process was killed by one.
    pub fn signal(&self) -> Option<i32> {
        match self.exit {
            Some(ExitStatus::Signaled(s)) => Some(s),
            _ => None,
        }
    }
}

/// Runs jobs. One per worker process: it owns the workspace whose lock marks the worker
/// as alive.
#[derive(Debug)]
pub struct Runner {
    config: RunnerConfig,
    workspace: Workspace,
    sandbox: Sandbox,
    path: String,
    home: String,
    lang: String,
}

impl Runner {
    /// A runner with `config`, creating execution directories in `workspace` and confining
    /// actions in `sandbox`.
    pub fn new(config: RunnerConfig, workspace: Workspace, sandbox: Sandbox) -> Runner {
        let path = config
            .action_path
            .clone()
            .or_else(|| std::env::var("PATH").ok())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| FALLBACK_PATH.to_string());
        let home = std::env::var("HOME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "/".into());
        let lang = std::env::var("LANG")
            .ok()
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| "C.UTF-8".into());
        Runner {
            config,
            workspace,
            sandbox,
            path,
            home,
            lang,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    /// How actions are confined.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Resolves the program and argv for an action.
    fn command(&self, action: &Action) -> Result<(PathBuf, Vec<String>), RunError> {
        let entry = action.entry_path.to_string_lossy().into_owned();
        let Some(interp) = self.config.interpreters.for_runner(action.runner_type) else {
            return Ok((action.entry_path.clone(), vec![entry]));
        };
        let program =
            resolve_program_for(interp, &self.path, self.sandbox.run_as()).ok_or_else(|| {
                RunError::InterpreterNotFound {
                    runner: action.runner_type.as_str(),
                    action: action.action_ref.clone(),
                    program: interp.to_string(),
                    path: self.path.clone(),
                }
            })?;
        let arg0 = program.to_string_lossy().into_owned();
        let argv = match action.runner_type {
            // Unbuffered, so output streams as the action writes it.
            RunnerType::Python => vec![arg0, "-u".into(), entry],
            _ => vec![arg0, entry],
        };
        Ok((program, argv))
    }

    fn environment(
        &self,
        job: &Job,
        dir: &Path,
        param_file: Option<&Path>,
    ) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("PATH".to_string(), self.path.clone());
        env.insert("HOME".to_string(), self.home.clone());
        env.insert("LANG".to_string(), self.lang.clone());
        env.insert("TMPDIR".to_string(), dir.to_string_lossy().into_owned());
        for (k, v) in job.env_vars.iter() {
            env.insert(k.to_string(), v.to_string());
        }
        env.insert("ATTUNE_EXECUTION_ID".into(), job.execution_id.clone());
        env.insert("ATTUNE_ACTION_REF".into(), job.action.action_ref.clone());
        env.insert(
            "ATTUNE_PARAMETER_DELIVERY".into(),
            job.action.delivery.as_str().into(),
        );
        env.insert(
            "ATTUNE_PARAMETER_FORMAT".into(),
            job.action.format.as_str().into(),
        );
        if let Some(f) = param_file {
            env.insert(
                "ATTUNE_PARAMETER_FILE".into(),
                f.to_string_lossy().into_owned(),
            );
        }
        env
    }

    /// Runs `job` to completion, streaming masked output to `sink`. Timeout and `cancel`
    /// stop the action's whole process group: SIGTERM, the grace period, SIGKILL. The
    /// job's parameters are taken once they are serialised: a large document is not held
    /// twice while the action runs.
    pub async fn run(
        &self,
        job: &mut Job,
        sink: &mut dyn OutputSink,
        cancel: &CancelToken,
    ) -> Result<Outcome, RunError> {
        let action = &job.action;
        let spawn_err = |source: io::Error| RunError::Spawn {
            action: action.action_ref.clone(),
            source,
        };
        let delivery_start = Instant::now();
        let parameters = std::mem::take(&mut job.parameters);
        // A JSON file is written as it is serialised; any other document is made whole
        // first, and the parameters dropped before it is delivered: a large document is
        // never held twice while the action runs.
        let (doc, streamed) =
            if action.delivery == Delivery::File && action.format == Format::Json {
                (Vec::new(), Some(parameters))
            } else {
                let doc = attune_core::format::serialize(&parameters, action.format).map_err(
                    |source| RunError::Format {
                        action: action.action_ref.clone(),
                        source,
                    },
                )?;
                drop(parameters);
                (doc, None)
            };
        let (program, argv) = self.command(action)?;
        if let Some(user) = self.sandbox.run_as() {
            if let Some(path) = crate::sandbox::unreadable_by(&action.entry_path, user) {
                return Err(RunError::Unreadable {
                    action: action.action_ref.clone(),
                    user: user.name.clone(),
                    path,
                });
            }
        }
        let exec_dir = self.workspace.exec_dir(&job.execution_id)?;
        let ext = action.format.file_extension();
        let (param_file, parameter_bytes) = match (action.delivery, streamed) {
            (Delivery::File, Some(p)) => {
                let (path, len) = exec_dir
                    .write_param_file_with(ext, |w| attune_core::format::write_json_line(w, &p))?;
                (Some(path), len as usize)
            }
            (Delivery::File, None) => (Some(exec_dir.write_param_file(ext, &doc)?), doc.len()),
            (Delivery::Stdin, _) => (None, doc.len()),
        };
        let delivery_time = delivery_start.elapsed();
        let env = self.environment(job, exec_dir.path(), param_file.as_deref());
        if let Some(user) = self.sandbox.run_as() {
            exec_dir.give_to(user.uid, user.gid)?;
        }
        let started_at = SystemTime::now();
        let t0 = Instant::now();
        let stdin_doc = (action.delivery == Delivery::Stdin).then_some(&doc[..]);
        // At most twice: once more without namespaces if they cannot be set up here.
        let (child, cgroup, (exit, initiated, stdout, stderr, start_failure)) = loop {
            let (confinement, cgroup) = self
                .sandbox
                .confine(exec_dir.path(), Some(&action.pack_dir))
                .map_err(spawn_err)?;
            let namespaced = confinement.namespaces.is_some();
            let spec = SpawnSpec {
                program: cstring(program.as_os_str().as_encoded_bytes()).map_err(spawn_err)?,
                argv: argv
                    .iter()
                    .map(|a| cstring(a.as_bytes()))
                    .collect::<io::Result<_>>()
                    .map_err(spawn_err)?,
                envp: env
                    .iter()
                    .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
                    .collect::<io::Result<_>>()
                    .map_err(spawn_err)?,
                cwd: cstring(exec_dir.path().as_os_str().as_encoded_bytes()).map_err(spawn_err)?,
                confinement,
            };
            let mut child = match spawn::spawn(spec) {
                Err(e)
                    if namespaced
                        && self.sandbox.namespaces_failed(&format!(
                            "creating PID and mount namespaces failed: {e}"
                        )) =>
                {
                    continue
                }
                r => r.map_err(spawn_err)?,
            };
            let r = self
                .supervise(&mut child, job, stdin_doc, sink, cancel)
                .await
                .map_err(spawn_err)?;
            match r.4 {
                Some(f)
                    if f.stage.sets_up_namespaces()
                        && self.sandbox.namespaces_failed(&f.to_string()) =>
                {
                    continue
                }
                _ if namespaced => self.sandbox.namespaces_worked(),
                _ => {}
            }
            break (child, cgroup, r);
        };
        let duration = t0.elapsed();
        let finished_at = SystemTime::now();
        drop(child);
        // Whatever escaped the supervisor's sweep (nothing, unless it was killed) dies here.
        drop(cgroup);
        let cleanup_ok = exec_dir.remove().is_ok();

        // Parsed from the masked text; string leaves masked again, in case an escape no
        // encoder above writes decoded to a secret.
        let result = parse_result(stdout.last_line.as_deref()).map(|r| job.masker.mask_json(r));
        let mut error = None;
        let mut status = match (initiated, start_failure, exit) {
            (Some(s), _, _) => s,
            (None, Some(f), _) => {
                error = Some(format!("cannot start {}: {f}", program.display()));
                ExecutionStatus::Failed
            }
            (None, None, ExitStatus::Exited(0)) => ExecutionStatus::Succeeded,
            (None, None, _) => ExecutionStatus::Failed,
        };
        match status {
            ExecutionStatus::Timeout => {
                error = Some(format!("timed out after {}s", job.timeout.as_secs()))
            }
            ExecutionStatus::Canceled => error = Some("canceled".into()),
            _ => {}
        }
        if let Some((_, validator)) = &action.output_schema {
            if status == ExecutionStatus::Succeeded {
                let problem = match &result {
                    None => Some("stdout's last line is not a JSON object, but the action declares an output_schema".to_string()),
                    Some(r) => {
                        let errs: Vec<String> = validator.iter_errors(r).map(|e| {
                            let p = e.instance_path().to_string();
                            if p.is_empty() { e.to_string() } else { format!("{p}: {e}") }
                        }).collect();
                        (!errs.is_empty()).then(|| format!("result does not match output_schema: {}", errs.join("; ")))
                    }
                };
                if let Some(p) = problem {
                    status = ExecutionStatus::Failed;
                    error = Some(p);
                }
            }
        }
        Ok(Outcome {
            status,
            exit: (start_failure.is_none()).then_some(exit),
            stdout,
            stderr,
            result,
            error,
            started_at,
            finished_at,
            duration,
            parameter_bytes,
            delivery_time,
            cleanup_ok,
        })
    }

    #[allow(clippy::type_complexity)]
    async fn supervise(
        &self,
        child: &mut Supervised,
        job: &Job,
        stdin_doc: Option<&[u8]>,
        sink: &mut dyn OutputSink,
        cancel: &CancelToken,
    ) -> io::Result<(
        ExitStatus,
        Option<ExecutionStatus>,
        Captured,
        Captured,
        Option<StartFailure>,
    )> {
        let stdin = async_fd(child.stdin.take())?;
        let stdout = async_fd(child.stdout.take())?;
        let stderr = async_fd(child.stderr.take())?;
        let start = async_fd(child.start_pipe.take())?;
        if let (Some(fd), Some(doc)) = (&stdin, stdin_doc) {
            if doc.len() > 64 * 1024 {
                // Fewer wake-ups for large documents; the kernel caps it for us.
                // SAFETY: fcntl on a pipe descriptor we own.
                unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
            }
        }
        let (exited_tx, exited_rx) = tokio::sync::watch::channel(false);
        let drain_deadline = || {
            let mut rx = exited_rx.clone();
            async move {
                let _ = rx.wait_for(|v| *v).await;
                tokio::time::sleep(DRAIN_AFTER_EXIT).await;
            }
        };
        let grace = self.config.kill_grace;
        let child_ref: &Supervised = child;

        let waiter = async {
            let mut initiated = None;
            let exit = tokio::select! {
                st = child_ref.wait() => st,
                _ = tokio::time::sleep(job.timeout) => {
                    initiated = Some(ExecutionStatus::Timeout);
                    terminate(child_ref, grace).await
                }
                _ = cancel.canceled() => {
                    initiated = Some(ExecutionStatus::Canceled);
                    terminate(child_ref, grace).await
                }
            };
            let _ = exited_tx.send(true);
            exit.map(|e| (e, initiated))
        };

        let writer = async {
            if let (Some(fd), Some(doc)) = (stdin, stdin_doc) {
                tokio::select! {
                    _ = write_all(&fd, doc) => {}
                    _ = drain_deadline() => {}
                }
            }
        };

        let start_check = async {
            let fd = start?;
            let mut buf = [0u8; 8];
            let mut got = 0;
            loop {
                tokio::select! {
                    r = read_some(&fd, &mut buf[got..]) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => { got += n; if got == buf.len() { break; } }
                    },
                    _ = drain_deadline() => break,
                }
            }
            (got == 8).then(|| StartFailure::decode(buf))
        };

        let limit = self.config.output_limit;
        let masker = &job.masker;
        let io = async {
            let mut caps = [Capture::new(limit), Capture::new(limit)];
            let mut masks = [masker.stream(), masker.stream()];
            // Grown on first use: most actions print little, and zeroing 128 KiB up front is
            // a measurable part of a trivial run.
            let mut bufs = [vec![0u8; 4096], vec![0u8; 4096]];
            let fds = [stdout, stderr];
            let mut open = [fds[0].is_some(), fds[1].is_some()];
            let streams = [Stream::Stdout, Stream::Stderr];
            let deadline = drain_deadline();
            tokio::pin!(deadline);
            while open[0] || open[1] {
                let [b0, b1] = &mut bufs;
                let (i, r) = tokio::select! {
                    r = read_opt(fds[0].as_ref(), b0), if open[0] => (0, r),
                    r = read_opt(fds[1].as_ref(), b1), if open[1] => (1, r),
                    _ = &mut deadline => break,
                };
                match r {
                    Ok(0) | Err(_) => open[i] = false,
                    Ok(n) => {
                        if n == bufs[i].len() && n < 64 * 1024 {
                            bufs[i].resize(64 * 1024, 0);
                        }
                        let masked = masks[i].push(&bufs[i][..n]);
                        if !masked.is_empty() {
                            sink.output(streams[i], &masked);
                            caps[i].push(&masked);
                        }
                    }
                }
            }
            for i in 0..2 {
                let tail = masks[i].finish();
                if !tail.is_empty() {
                    sink.output(streams[i], &tail);
                    caps[i].push(&tail);
                }
            }
            let [c0, c1] = caps;
            (c0.finish(), c1.finish())
        };

        let (waited, (), start_failure, (out, err)) = tokio::join!(waiter, writer, start_check, io);
        let (exit, initiated) = waited?;
        Ok((exit, initiated, out, err, start_failure))
    }
}

/// SIGTERM (and SIGCONT, so a stopped group can act on it) to the action's group, then
/// SIGKILL after `grace`; either way the supervisor then kills every descendant left.
async fn terminate(child: &Supervised, grace: Duration) -> io::Result<ExitStatus> {
    child.request(Request::Terminate);
    tokio::select! {
        st = child.wait() => st,
        _ = tokio::time::sleep(grace) => {
            child.request(Request::Kill);
            child.wait().await
        }
    }
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "NUL byte in a path or variable",
        )
    })
}

fn async_fd(fd: Option<OwnedFd>) -> io::Result<Option<AsyncFd<OwnedFd>>> {
    let Some(fd) = fd else { return Ok(None) };
    // SAFETY: fcntl on a descriptor we own; only our end becomes non-blocking.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    // SAFETY: the AsyncFd takes ownership of the descriptor, which stays open until it drops.
    Ok(Some(unsafe { AsyncFd::register(fd) }?))
}

async fn read_opt(fd: Option<&AsyncFd<OwnedFd>>, buf: &mut [u8]) -> io::Result<usize> {
    match fd {
        Some(fd) => read_some(fd, buf).await,
        None => Ok(0),
    }
}

/// The byte count of a read(2)/write(2) result, or the OS error.
fn syscall_len(n: isize) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

async fn read_some(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        // SAFETY: reading into a buffer we own from a descriptor we own.
        let r = guard.try_io(|inner| {
            syscall_len(unsafe {
                libc::read(inner.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
            })
        });
        match r {
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(res) => return res,
            Err(_would_block) => continue,
        }
    }
}

async fn write_all(fd: &AsyncFd<OwnedFd>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let mut guard = fd.writable().await?;
        // SAFETY: writing from a buffer we own to a descriptor we own.
        let r = guard.try_io(|inner| {
            syscall_len(unsafe { libc::write(inner.as_raw_fd(), data.as_ptr().cast(), data.len()) })
        });
        match r {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            // EPIPE: the action closed its stdin without reading it all, which is its
            // right.
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
    Ok(())
}

/// Finds `program` in `path` (or checks it, if it contains a `/`): an executable file.
pub fn resolve_program(program: &str, path: &str) -> Option<PathBuf> {
    resolve_program_for(program, path, None)
}

/// Like [`resolve_program`], as `user` would: a program that user cannot run is skipped.
pub fn resolve_program_for(
    program: &str,
    path: &str,
    user: Option<&crate::sandbox::RunAs>,
) -> Option<PathBuf> {
    let executable = |p: &Path| -> bool {
        let Ok(c) = CString::new(p.as_os_str().as_encoded_bytes()) else {
            return false;
        };
        // SAFETY: access() on a NUL-terminated path.
        p.is_file()
            && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0
            && user.is_none_or(|u| crate::sandbox::inaccessible_to(p, u, 0o1).is_none())
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| executable(p))
}

/// A new execution id: `<prefix>-` and 16 random hex digits.
pub fn new_execution_id(prefix: &str) -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        b = t.to_le_bytes();
    }
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{prefix}-{hex}")
}

/// The record of a finished local execution (`attune run --local`), in the shape the
/// server shows (id 0: it is not stored). `parameters`: the job's, secret ones redacted
/// (taken before the run, which consumes them); `timeout`: the timeout the request asked
/// for, if any.
pub fn record(
    job: &Job,
    parameters: Map<String, Value>,
    outcome: &Outcome,
    timeout: Option<u64>,
) -> attune_core::Execution {
    let started = attune_core::execution::rfc3339(outcome.started_at);
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("uid {uid}"));
    attune_core::Execution {
        id: 0,
        action_ref: job.action.action_ref.clone(),
        status: outcome.status,
        parameters,
        env_vars: job.env_vars.as_map().clone(),
        timeout_secs: timeout,
        requested_by: user,
        worker: Some("local".into()),
        created_at: started.clone(),
        started_at: Some(started),
        finished_at: Some(attune_core::execution::rfc3339(outcome.finished_at)),
        duration_ms: Some(outcome.duration.as_millis() as u64),
        exit_code: outcome.exit_code(),
        signal: outcome.signal(),
        result: outcome.result.clone(),
        stdout: Some(outcome.stdout.text.clone()),
        stderr: Some(outcome.stderr.text.clone()),
        error: outcome.error.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod send_check {
    /// The server runs jobs on a multi-threaded runtime, so `Runner::run` must be `Send`.
    #[allow(dead_code)]
    fn run_future_is_send(
        r: &super::Runner,
        j: &mut super::Job,
        s: &mut dyn super::OutputSink,
        c: &super::CancelToken,
    ) {
        fn is_send<T: Send>(_: T) {}
        is_send(r.run(j, s, c));
    }
}
