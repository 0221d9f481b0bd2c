//! `attune worker`: a worker process on a shared PostgreSQL database; `attune worker list`:
//! the worker processes the server knows.

use crate::cli::{WorkerArgs, WorkerCommand};
use crate::client::Client;
use crate::error::CliError;
use crate::output::{print_structured, OutputFormat};
use crate::table::{show, Table};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Runs `attune worker …`.
pub fn run(args: WorkerArgs, data_dir: PathBuf) -> Result<ExitCode, CliError> {
    if let Some(WorkerCommand::List) = args.command {
        return list(&data_dir, args.output);
    }
    let Some(url) = args.database_url else {
        return Err(CliError::usage(
            "attune worker needs --database-url postgres://… (or ATTUNE_DATABASE_URL): the database its server uses",
        ));
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(CliError::usage(
            "--database-url: workers share a PostgreSQL database (postgres://…); a SQLite server runs its own workers",
        ));
    }
    super::server::init_log(&args.log_format)?;
    let config = attune_server::ServerConfig {
        data_dir,
        // Unused: a worker serves no HTTP.
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        workers: args.concurrency as usize,
        max_body_bytes: 0,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        runner: super::server::runner_config(&args.engine)?,
        bundled: crate::bundled::bundles(),
        secret_key_file: args.secret_key_file,
        database_url: Some(url),
        max_connections: 0,
        worker_name: args.name,
    };
    super::server::block_on(attune_server::run_worker(config))
}

fn list(data_dir: &std::path::Path, out: OutputFormat) -> Result<ExitCode, CliError> {
    let client = Client::discover(data_dir)?;
    let list: Value = client.get("/api/v1/workers")?;
    if out != OutputFormat::Table {
        print_structured(&list, out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&[
        "NAME",
        "HOST",
        "CONCURRENCY",
        "RUNNING",
        "LAST HEARTBEAT",
        "STATE",
        "SECRETS",
    ]);
    for w in list.as_array().into_iter().flatten() {
        t.row(&[
            show(w.get("name")),
            show(w.get("host")),
            show(w.get("concurrency")),
            show(w.get("running")),
            show(w.get("heartbeat_at")),
            show(w.get("state")),
            match w.get("holds_key").and_then(Value::as_bool) {
                Some(false) => "no key".to_string(),
                _ => "yes".to_string(),
            },
        ]);
    }
    t.print();
    Ok(ExitCode::SUCCESS)
}
