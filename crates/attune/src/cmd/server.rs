//! `attune server`: the API, scheduler and embedded workers on the data dir's SQLite store.

use crate::cli::{EngineArgs, ServerArgs};
use crate::error::CliError;
use attune_runner::RunnerConfig;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The engine settings from the command line.
pub fn runner_config(args: &EngineArgs) -> Result<RunnerConfig, CliError> {
    let mut config = RunnerConfig::default();
    for spec in &args.interpreter {
        let (runner, program) = spec.split_once('=').ok_or_else(|| {
            CliError::usage(format!(
                "--interpreter `{spec}`: expected RUNNER=PROGRAM, e.g. python=/usr/bin/python3"
            ))
        })?;
        config
            .interpreters
            .set(runner, program)
            .map_err(|e| CliError::usage(format!("--interpreter: {e}")))?;
    }
    if !(args.kill_grace.is_finite() && (0.0..=3600.0).contains(&args.kill_grace)) {
        return Err(CliError::usage(
            "--kill-grace must be between 0 and 3600 seconds",
        ));
    }
    config.kill_grace = Duration::from_secs_f64(args.kill_grace);
    config.output_limit = args.output_limit;
    config.require_sandbox = args.require_sandbox;
    config.run_as = run_as(args.run_as.as_deref())?;
    Ok(config)
}

/// The user actions run as: `nobody` by default when we are root, no one else otherwise;
/// naming our own user (`--run-as root` as root) is the explicit opt-out.
fn run_as(user: Option<&str>) -> Result<Option<attune_runner::RunAs>, CliError> {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    let name = match user {
        Some(u) => u,
        None if euid == 0 => "nobody",
        None => return Ok(None),
    };
    let user = attune_runner::RunAs::lookup(name).map_err(|e| {
        CliError::usage(format!(
            "--run-as: {e}{}",
            if user.is_none() {
                " (actions run as nobody by default when attune runs as root; name another user, or `--run-as root` to opt out)"
            } else {
                ""
            }
        ))
    })?;
    if user.uid == euid {
        return Ok(None);
    }
    if euid != 0 {
        return Err(CliError::usage(format!(
            "--run-as {name}: only root can run actions as another user"
        )));
    }
    Ok(Some(user))
}

/// Runs `attune server`.
pub fn server(args: ServerArgs, data_dir: PathBuf) -> Result<ExitCode, CliError> {
    if args.workers > 1024 {
        return Err(CliError::usage("--workers must be between 0 and 1024"));
    }
    init_log(&args.log_format)?;
    let config = attune_server::ServerConfig {
        data_dir,
        listen: args.listen,
        workers: args.workers,
        max_body_bytes: args.max_body_mib.saturating_mul(1024 * 1024),
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        runner: runner_config(&args.engine)?,
        bundled: crate::bundled::bundles(),
        secret_key_file: args.secret_key_file,
        database_url: args.database_url,
        max_connections: args.max_connections as usize,
        worker_name: None,
    };
    block_on(attune_server::run(config))
}

/// Sets up the log on stderr: `text` or `json`, filtered by ATTUNE_LOG or RUST_LOG.
pub fn init_log(format: &str) -> Result<(), CliError> {
    let format = if format == "json" {
        attune_server::log::LogFormat::Json
    } else {
        attune_server::log::LogFormat::Text
    };
    attune_server::log::init(format).map_err(CliError::usage)
}

/// Runs a server or worker process on a multi-threaded runtime until it stops.
pub fn block_on(
    process: impl std::future::Future<Output = Result<(), attune_server::StartError>>,
) -> Result<ExitCode, CliError> {
    return_large_blocks_to_the_system();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(process).map_err(CliError::failure)?;
    Ok(ExitCode::SUCCESS)
}

/// Blocks of 256 KiB or more are mapped on their own and unmapped when freed, from the
/// first one on. glibc would otherwise raise that threshold as large blocks are freed (up
/// to 32 MiB) and keep freed blocks below it in its arenas, resident long after a large
/// request (`attune bench --payload 64MiB`: peak RSS 3.3–4.4× the payload, 2.6× with
/// this). The store's parameter chunks stay under it, so their buffers are reused; small
/// executions allocate nothing that large on their path.
fn return_large_blocks_to_the_system() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's parameters; called before any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}
