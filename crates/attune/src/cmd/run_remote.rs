//! `attune run` against a server: create the execution, follow its output live, and exit
//! with the action's exit code. Ctrl-C cancels the execution and keeps following it until
//! it has stopped.

use super::execution::{exec_path, follow_output, print_execution, Captured, Final};
use super::params::{collect_env, collect_params};
use crate::cli::RunArgs;
use crate::client::{segment, Client};
use crate::error::CliError;
use crate::output::OutputFormat;
use crate::table::{print_line, show};
use attune_core::ParamSchema;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::process::ExitCode;

/// Runs `attune run` (without `--local`).
pub fn run(args: RunArgs, data_dir: &Path) -> Result<ExitCode, CliError> {
    if !args.pack_dir.is_empty() {
        return Err(CliError::usage(
            "--pack-dir applies only with --local; to run a pack's actions on the server, register it with `attune pack register DIR`",
        ));
    }
    super::run::check_action_ref(&args.action)?;
    let client = Client::discover(data_dir)?;
    let action: Value = client.get(&format!("/api/v1/actions/{}", segment(&args.action)))?;
    let schema = schema_of(&args.action, &action)?;
    let params = collect_params(&schema, args.params_file.as_deref(), &args.params)?;
    let env_vars = collect_env(&args.env)?;

    let mut body = Map::new();
    body.insert("action_ref".into(), json!(args.action));
    body.insert("parameters".into(), Value::Object(params));
    if !env_vars.is_empty() {
        body.insert("env_vars".into(), json!(env_vars.as_map()));
    }
    if let Some(t) = args.timeout {
        body.insert("timeout".into(), json!(t));
    }
    // Signals are caught from before the execution exists, so that none is lost in between.
    let (id_tx, id_rx) = std::sync::mpsc::channel::<String>();
    if !args.no_wait {
        cancel_on_signal(client.clone(), id_rx);
    }
    let exec: Value = client.post("/api/v1/executions", &body)?;
    let id = match exec.get("id") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(CliError::failure(
                "the server created the execution but did not say its id",
            ))
        }
    };
    if args.no_wait {
        if args.output == OutputFormat::Table {
            print_line(&id);
        } else {
            print_execution(&exec, args.output)?;
        }
        return Ok(ExitCode::SUCCESS);
    }

    let _ = id_tx.send(id.clone());
    let live = args.output == OutputFormat::Table;
    let mut captured = Captured::default();
    let streamed = follow_output(
        &client,
        &exec_path(&id, "/output")?,
        true,
        live,
        &mut captured,
    )?;
    let end = match streamed.filter(|f| f.status.is_final()) {
        Some(f) => f,
        // The stream ended early (the server restarted, a proxy cut it): wait by polling.
        None => wait_final(&client, &id)?,
    };
    if live {
        if end.status != attune_core::ExecutionStatus::Succeeded {
            eprintln!("attune: {} {}", args.action, end.describe());
        }
    } else {
        let record: Value = client.get(&exec_path(&id, "")?)?;
        print_execution(&record, args.output)?;
    }
    Ok(ExitCode::from(end.exit_code()))
}

/// The action's parameter schema as the server reports it. Names in `secret_parameters`
/// are marked secret even if the schema itself does not say so.
fn schema_of(action_ref: &str, action: &Value) -> Result<ParamSchema, CliError> {
    let mut parameters = action.get("parameters").cloned().unwrap_or(Value::Null);
    let secrets = action
        .get("secret_parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    for name in secrets {
        if let Some(prop) = parameters
            .get_mut("properties")
            .and_then(|p| p.get_mut(name))
            .and_then(Value::as_object_mut)
        {
            prop.insert("secret".into(), Value::Bool(true));
        }
    }
    ParamSchema::from_metadata(Some(&parameters).filter(|p| !p.is_null())).map_err(|e| {
        CliError::failure(format!(
            "the server's parameter schema of {action_ref} is not usable here: {e}"
        ))
    })
}

/// Waits until the execution has ended: long polls of 20 s, answered as soon as it ends.
fn wait_final(client: &Client, id: &str) -> Result<Final, CliError> {
    let path = format!("{}?wait=20", exec_path(id, "")?);
    loop {
        let exec: Value = client.get(&path)?;
        let status = exec
            .get("status")
            .and_then(Value::as_str)
            .and_then(attune_core::ExecutionStatus::parse)
            .ok_or_else(|| {
                CliError::failure(format!(
                    "execution {id} has status {}, which this client does not know",
                    show(exec.get("status"))
                ))
            })?;
        if status.is_final() {
            let int = |k: &str| {
                exec.get(k)
                    .and_then(Value::as_i64)
                    .and_then(|n| i32::try_from(n).ok())
            };
            return Ok(Final {
                status,
                exit_code: int("exit_code"),
                signal: int("signal"),
                error: exec
                    .get("error")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            });
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP, asks the server to cancel the execution whose id arrives
/// on `id` (waiting for it if the signal came while the execution was being created); we
/// keep following its output until it has stopped. A second signal stops waiting (exit 130).
fn cancel_on_signal(client: Client, id: std::sync::mpsc::Receiver<String>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let signals = {
        let _guard = rt.enter();
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        )
    };
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = signals else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("cancel-on-signal".into())
        .spawn(move || {
            let mut next = || {
                rt.block_on(async {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                        _ = hup.recv() => {}
                    }
                })
            };
            next();
            // No id: creating the execution failed, and the main thread reports why.
            let Ok(id) = id.recv() else {
                std::process::exit(130);
            };
            eprintln!("attune: canceling execution {id} (interrupt again to stop waiting)");
            match exec_path(&id, "/cancel").and_then(|p| client.post_empty::<Value>(&p)) {
                Ok(_) => {}
                // 409: it has already finished; the stream says how.
                Err(e) if e.http_status() == Some(409) => {}
                Err(e) => e.print(),
            }
            next();
            eprintln!("attune: not waiting for execution {id}; see `attune execution get {id}`");
            std::process::exit(130);
        });
    drop(spawned);
}
