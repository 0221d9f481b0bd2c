//! `attune run`: run an action and wait for it. With `--local`, through the engine in this
//! process, with no server.

use super::params::{collect_env, collect_params};
use crate::cli::RunArgs;
use crate::error::CliError;
use crate::output::{print_structured, OutputFormat};
use attune_core::{Action, ExecutionStatus, Pack};
use attune_runner::{CancelToken, OutputSink, Runner, Stream, Workspace};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Exit code when the action timed out (as timeout(1)).
const EXIT_TIMEOUT: u8 = 124;
/// Exit code when the action was cancelled (as for SIGINT).
const EXIT_CANCELED: u8 = 130;
/// Exit code when the action's program could not be started.
const EXIT_CANNOT_START: u8 = 127;

/// Runs `attune run`.
pub fn run(args: RunArgs, data_dir: &Path) -> Result<ExitCode, CliError> {
    if !args.local {
        return super::run_remote::run(args, data_dir);
    }
    attune_runner::sandbox::protect_worker();
    let config = super::server::runner_config(&args.engine)?;
    let shared = config.run_as.is_some();
    let workspace = Workspace::open(data_dir, "local", shared).map_err(CliError::failure)?;
    let action = Arc::new(find_action(&args.action, &args.pack_dir, &|| {
        workspace
            .pack_cache(data_dir)
            .map(|c| (c, shared))
            .map_err(CliError::failure)
    })?);
    let params = collect_params(
        &action.parameters,
        args.params_file.as_deref(),
        &args.params,
    )?;
    let env_vars = collect_env(&args.env)?;

    let id = attune_runner::new_execution_id("local");
    let mut job = attune_runner::prepare_job(id, action, params, env_vars, args.timeout, &[])?;
    // The record (-o json|yaml) shows them redacted; the run takes them.
    let shown = match args.output {
        OutputFormat::Table => serde_json::Map::new(),
        _ => job.action.parameters.redact(&job.parameters),
    };
    // --require-sandbox must know before the run that every part of it works.
    let sandbox = attune_runner::Sandbox::for_one_execution(
        &workspace.protected(data_dir),
        config.run_as.clone(),
        config.require_sandbox,
    );
    let shortfalls = sandbox.shortfalls();
    if !shortfalls.is_empty() && config.require_sandbox {
        return Err(CliError::failure(format!(
            "--require-sandbox: {}",
            shortfalls.join("; ")
        )));
    }
    for line in &shortfalls {
        eprintln!("attune: warning: {line}");
    }
    let runner = Runner::new(config, workspace, sandbox);

    let rt = super::runtime()?;
    let outcome = rt.block_on(async {
        let cancel = CancelToken::new();
        let watcher = watch_signals(cancel.clone());
        let mut live = LiveSink;
        let mut null = attune_runner::NullSink;
        let sink: &mut dyn OutputSink = if args.output == OutputFormat::Table {
            &mut live
        } else {
            &mut null
        };
        let r = runner.run(&mut job, sink, &cancel).await;
        drop(watcher);
        r
    });
    // The namespaces, unprobed, may have failed and been left out.
    for line in runner.sandbox().shortfalls() {
        if !shortfalls.contains(&line) {
            eprintln!("attune: warning: {line}");
        }
    }
    let outcome = outcome.map_err(|e| match e {
        attune_runner::RunError::InterpreterNotFound { .. }
        | attune_runner::RunError::Unreadable { .. }
        | attune_runner::RunError::Format { .. } => CliError::usage(e),
        other => CliError::failure(other),
    })?;
    if args.output == OutputFormat::Table {
        if outcome.status != ExecutionStatus::Succeeded {
            let why = match (&outcome.error, outcome.exit_code(), outcome.signal()) {
                (Some(e), _, _) => e.clone(),
                (None, Some(c), _) => format!("exit code {c}"),
                (None, None, Some(s)) => format!("killed by signal {s}"),
                _ => "no exit status".into(),
            };
            eprintln!(
                "attune: {} {}: {why}",
                job.action.action_ref, outcome.status
            );
        }
    } else {
        let record = attune_runner::record(&job, shown, &outcome, args.timeout);
        print_structured(&record, args.output)?;
    }
    Ok(ExitCode::from(exit_code(&outcome)))
}

fn exit_code(outcome: &attune_runner::Outcome) -> u8 {
    exit_code_for(outcome.status, outcome.exit_code(), outcome.signal())
}

/// The exit code of `attune run` for how an execution ended, here or on a server: 0 when
/// it succeeded, 124 on timeout, 130 when canceled, else the action's own exit code
/// (1 if that was 0), 128 + the signal that killed it, 127 if it could not start, 1 for
/// anything else (e.g. abandoned).
pub fn exit_code_for(status: ExecutionStatus, exit_code: Option<i32>, signal: Option<i32>) -> u8 {
    match status {
        ExecutionStatus::Succeeded => 0,
        ExecutionStatus::Timeout => EXIT_TIMEOUT,
        ExecutionStatus::Canceled => EXIT_CANCELED,
        ExecutionStatus::Failed => match (exit_code, signal) {
            (Some(0), _) => 1,
            (Some(c), _) => c.clamp(1, 255) as u8,
            (None, Some(s)) => (128 + s).clamp(0, 255) as u8,
            (None, None) => EXIT_CANNOT_START,
        },
        _ => 1,
    }
}

/// Streams the action's output to ours as it arrives.
struct LiveSink;

impl OutputSink for LiveSink {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        // A closed terminal or pipe must not stop the action; its output is still captured.
        let _ = match stream {
            Stream::Stdout => {
                let mut o = std::io::stdout().lock();
                o.write_all(data).and_then(|()| o.flush())
            }
            Stream::Stderr => std::io::stderr().lock().write_all(data),
        };
    }
}

/// Cancels on SIGINT, SIGTERM or SIGHUP. The action runs in its own process group, so a
/// Ctrl-C at the terminal reaches only us, and we stop the action's group properly.
fn watch_signals(cancel: CancelToken) -> Option<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).ok()?;
    let mut term = signal(SignalKind::terminate()).ok()?;
    let mut hup = signal(SignalKind::hangup()).ok()?;
    Some(tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        cancel.cancel();
    }))
}

/// Splits `<pack>.<action>`, refusing anything that is not one.
pub fn check_action_ref(action_ref: &str) -> Result<(&str, &str), CliError> {
    let Some((pack_ref, name)) = action_ref.split_once('.') else {
        return Err(CliError::usage(format!(
            "`{action_ref}` is not an action ref; use <pack>.<action>, e.g. core.echo"
        )));
    };
    if !attune_core::is_valid_name(pack_ref) || !attune_core::is_valid_name(name) {
        return Err(CliError::usage(format!(
            "`{action_ref}` is not a valid action ref: pack and action names are [a-z0-9_]+"
        )));
    }
    Ok((pack_ref, name))
}

/// Finds `<pack>.<action>` in the given pack directories, then in the bundled packs.
/// Finds the action in `pack_dirs`, else among the bundled packs, unpacked into the pack
/// cache that `cache` gives (with whether it must be readable by the run-as user).
fn find_action(
    action_ref: &str,
    pack_dirs: &[PathBuf],
    cache: &dyn Fn() -> Result<(PathBuf, bool), CliError>,
) -> Result<Action, CliError> {
    let (pack_ref, name) = check_action_ref(action_ref)?;
    let mut seen = Vec::new();
    for dir in pack_dirs {
        let candidates = [dir.to_path_buf(), dir.join(pack_ref)];
        let mut any = false;
        for cand in candidates {
            if !cand.join("pack.yaml").is_file() {
                continue;
            }
            any = true;
            let pack = Pack::open(&cand)?;
            if pack.pack_ref == pack_ref {
                return Ok(pack.load_action(name)?);
            }
            seen.push(format!("{} (pack `{}`)", cand.display(), pack.pack_ref));
        }
        if !any {
            if !dir.exists() {
                return Err(CliError::usage(format!(
                    "--pack-dir {}: no such directory",
                    dir.display()
                )));
            }
            seen.push(format!("{} (no pack.yaml)", dir.display()));
        }
    }
    if crate::bundled::names().any(|n| n == pack_ref) {
        let (cache, shared) = cache()?;
        let dir = crate::bundled::unpack(pack_ref, &cache, shared)
            .map_err(|e| {
                CliError::failure(format!("cannot unpack the bundled {pack_ref} pack: {e}"))
            })?
            .ok_or_else(|| CliError::failure("bundled pack vanished"))?;
        let pack = Pack::open(&dir)?;
        return Ok(pack.load_action(name)?);
    }
    let looked = if seen.is_empty() {
        "no --pack-dir given".to_string()
    } else {
        format!("looked in {}", seen.join(", "))
    };
    Err(CliError::usage(format!(
        "pack `{pack_ref}` not found ({looked}; bundled packs: {})",
        crate::bundled::names().collect::<Vec<_>>().join(", ")
    )))
}
