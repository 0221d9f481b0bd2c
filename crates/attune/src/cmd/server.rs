//! `attune server`: the API, scheduler and embedded workers on the data dir's SQLite store.

use crate::cli::{EngineArgs, ServerArgs};
use crate::error::CliError;
use attune_core::bundle::{Bundle, BundleFile};
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
    Ok(config)
}

/// The packs compiled into this binary, as bundles.
fn bundled_packs() -> Vec<Bundle> {
    crate::bundled::BUNDLED
        .iter()
        .map(|(_, _, files)| Bundle {
            files: files
                .iter()
                .map(|(path, mode, data)| BundleFile {
                    path: (*path).to_string(),
                    mode: *mode,
                    data: data.to_vec(),
                })
                .collect(),
        })
        .collect()
}

/// Runs `attune server`.
pub fn server(args: ServerArgs, data_dir: PathBuf) -> Result<ExitCode, CliError> {
    if args.workers == 0 || args.workers > 1024 {
        return Err(CliError::usage("--workers must be between 1 and 1024"));
    }
    let config = attune_server::ServerConfig {
        data_dir,
        listen: args.listen,
        workers: args.workers,
        max_body_bytes: args.max_body_mib.saturating_mul(1024 * 1024),
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        runner: runner_config(&args.engine)?,
        bundled: bundled_packs(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(attune_server::run(config))
        .map_err(CliError::failure)?;
    Ok(ExitCode::SUCCESS)
}
