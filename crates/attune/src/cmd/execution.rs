//! `attune execution list|get|logs|cancel|rerun`: executions on the server.

use crate::cli::{ExecutionArgs, ExecutionCommand};
use crate::client::{query_value, segment, Client};
use crate::error::CliError;
use crate::output::{print_structured, OutputFormat};
use crate::table::{print_fields, print_line, show, Table};
use attune_core::ExecutionStatus;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// Runs `attune execution …`.
pub fn run(args: ExecutionArgs, data_dir: &Path) -> Result<ExitCode, CliError> {
    let out = args.output;
    match args.command {
        ExecutionCommand::List {
            status,
            action,
            limit,
            before,
        } => {
            let mut query = Vec::new();
            if let Some(s) = &status {
                if ExecutionStatus::parse(s).is_none() {
                    return Err(CliError::usage(format!(
                        "--status `{s}` is not a status; allowed values: {}",
                        ExecutionStatus::ALL.map(ExecutionStatus::as_str).join(", ")
                    )));
                }
                query.push(format!("status={}", query_value(s)));
            }
            if let Some(a) = &action {
                super::run::check_action_ref(a)?;
                query.push(format!("action={}", query_value(a)));
            }
            if let Some(n) = limit {
                query.push(format!("limit={n}"));
            }
            if let Some(id) = before {
                query.push(format!("before={id}"));
            }
            let path = if query.is_empty() {
                "/api/v1/executions".to_string()
            } else {
                format!("/api/v1/executions?{}", query.join("&"))
            };
            let client = Client::discover(data_dir)?;
            let list: Value = client.get(&path)?;
            if out != OutputFormat::Table {
                print_structured(&list, out)?;
            } else {
                print_list(&list);
            }
        }
        ExecutionCommand::Get { id } => {
            let client = Client::discover(data_dir)?;
            let exec: Value = client.get(&exec_path(&id, "")?)?;
            print_execution(&exec, out)?;
        }
        ExecutionCommand::Logs { id, follow } => {
            let client = Client::discover(data_dir)?;
            let path = exec_path(&id, "/output")?;
            let live = out == OutputFormat::Table;
            let mut captured = Captured::default();
            let last = follow_output(&client, &path, follow, live, &mut captured)?;
            // Followed to its end, the exit code is the execution's, as for `attune run`
            // (130 canceled, 124 timeout, the action's own code).
            let code = match (&last, follow) {
                (Some(f), true) if f.status.is_final() => {
                    ExitCode::from(super::run::exit_code_for(f.status, f.exit_code, f.signal))
                }
                _ => ExitCode::SUCCESS,
            };
            if live {
                if let Some(f) = last.filter(|f| f.status.is_final()) {
                    if f.status != ExecutionStatus::Succeeded {
                        eprintln!("attune: execution {id} {}", f.describe());
                    }
                }
            } else {
                let mut v = json!({"id": id_value(&id), "stdout": captured.stdout, "stderr": captured.stderr});
                if let Some(f) = last {
                    v["status"] = json!(f.status.as_str());
                    v["exit_code"] = json!(f.exit_code);
                    v["signal"] = json!(f.signal);
                    v["error"] = json!(f.error);
                }
                print_structured(&v, out)?;
            }
            return Ok(code);
        }
        ExecutionCommand::Cancel { id } => {
            let client = Client::discover(data_dir)?;
            let exec: Value = client.post_empty(&exec_path(&id, "/cancel")?)?;
            if out == OutputFormat::Table {
                print_line(&format!(
                    "execution {}: {}",
                    show(exec.get("id")),
                    show(exec.get("status"))
                ));
            } else {
                print_structured(&exec, out)?;
            }
        }
        ExecutionCommand::Rerun { id } => {
            let client = Client::discover(data_dir)?;
            let exec: Value = client.post_empty(&exec_path(&id, "/rerun")?)?;
            if out == OutputFormat::Table {
                print_line(&show(exec.get("id")));
            } else {
                print_structured(&exec, out)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `/api/v1/executions/{id}{suffix}`, after checking the id is one.
pub fn exec_path(id: &str, suffix: &str) -> Result<String, CliError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || id.len() > 19 {
        return Err(CliError::usage(format!(
            "`{id}` is not an execution id (a number, as `attune execution list` shows)"
        )));
    }
    Ok(format!("/api/v1/executions/{}{suffix}", segment(id)))
}

/// The id as JSON: a number when it is one.
fn id_value(id: &str) -> Value {
    id.parse::<u64>()
        .map(Value::from)
        .unwrap_or_else(|_| json!(id))
}

/// Executions as a table.
fn print_list(list: &Value) {
    let mut t = Table::new(&[
        "ID",
        "ACTION",
        "STATUS",
        "EXIT",
        "BY",
        "CREATED",
        "PARAMETERS",
    ]);
    for e in list.as_array().into_iter().flatten() {
        let exit = match (e.get("exit_code"), e.get("signal")) {
            (Some(Value::Number(c)), _) => c.to_string(),
            (_, Some(Value::Number(s))) => format!("sig {s}"),
            _ => "-".into(),
        };
        let params = match e.get("parameters") {
            Some(Value::Object(m)) if m.is_empty() => "-".to_string(),
            Some(p @ Value::Object(_)) => p.to_string(),
            other => show(other),
        };
        t.row(&[
            show(e.get("id")),
            show(e.get("action_ref")),
            show(e.get("status")),
            exit,
            show(e.get("requested_by")),
            show(e.get("created_at")),
            params,
        ]);
    }
    t.print();
}

/// One execution: `key: value` lines (table) or the record (json/yaml).
pub fn print_execution(exec: &Value, out: OutputFormat) -> Result<(), CliError> {
    if out != OutputFormat::Table {
        return print_structured(exec, out);
    }
    let mut fields: Vec<(&str, String)> = vec![
        ("id", show(exec.get("id"))),
        ("action", show(exec.get("action_ref"))),
        ("status", show(exec.get("status"))),
    ];
    for (label, key) in [
        ("exit code", "exit_code"),
        ("signal", "signal"),
        ("error", "error"),
        ("rerun of", "rerun_of"),
    ] {
        if exec.get(key).is_some_and(|v| !v.is_null()) {
            fields.push((label, show(exec.get(key))));
        }
    }
    fields.extend([
        ("parameters", show(exec.get("parameters"))),
        ("env vars", show(exec.get("env_vars"))),
        (
            "timeout",
            match exec.get("timeout_secs") {
                Some(Value::Number(n)) => format!("{n}s"),
                _ => "the action's".to_string(),
            },
        ),
        ("requested by", show(exec.get("requested_by"))),
        ("worker", show(exec.get("worker"))),
        ("created", show(exec.get("created_at"))),
        ("started", show(exec.get("started_at"))),
        ("finished", show(exec.get("finished_at"))),
    ]);
    if exec.get("result").is_some_and(|v| !v.is_null()) {
        fields.push(("result", show(exec.get("result"))));
    }
    for (label, key) in [("stdout", "stdout"), ("stderr", "stderr")] {
        let n = exec.get(key).and_then(Value::as_str).map_or(0, str::len);
        if n > 0 {
            fields.push((
                label,
                format!(
                    "{n} bytes (`attune execution logs {}`)",
                    show(exec.get("id"))
                ),
            ));
        }
    }
    print_fields(&fields);
    Ok(())
}

/// The last line of an output stream: how the execution ended (or where it is, when the
/// stream was not followed).
#[derive(Debug, Clone)]
pub struct Final {
    /// Status.
    pub status: ExecutionStatus,
    /// Exit code, if the process exited.
    pub exit_code: Option<i32>,
    /// Signal, if the process was killed by one.
    pub signal: Option<i32>,
    /// Why it failed outside its own exit code.
    pub error: Option<String>,
}

impl Final {
    fn from_json(v: &Value) -> Option<Final> {
        let status = ExecutionStatus::parse(v.get("status")?.as_str()?)?;
        let int = |k: &str| {
            v.get(k)
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
        };
        Some(Final {
            status,
            exit_code: int("exit_code"),
            signal: int("signal"),
            error: v
                .get("error")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        })
    }

    /// "failed: exit code 3", "canceled (killed by signal 15)" and the like.
    pub fn describe(&self) -> String {
        let how = match (self.exit_code, self.signal) {
            (Some(c), _) => Some(format!("exit code {c}")),
            (None, Some(s)) => Some(format!("killed by signal {s}")),
            _ => None,
        };
        let error = self.error.as_deref().filter(|e| *e != self.status.as_str());
        match (error, how) {
            (Some(e), Some(h)) => format!("{}: {e} ({h})", self.status),
            (Some(e), None) => format!("{}: {e}", self.status),
            (None, Some(h)) if self.status == ExecutionStatus::Failed => {
                format!("{}: {h}", self.status)
            }
            (None, Some(h)) => format!("{} ({h})", self.status),
            (None, None) => self.status.to_string(),
        }
    }

    /// The exit code `attune run` ends with.
    pub fn exit_code(&self) -> u8 {
        super::run::exit_code_for(self.status, self.exit_code, self.signal)
    }
}

/// Output collected instead of printed.
#[derive(Debug, Default)]
pub struct Captured {
    /// stdout chunks, joined.
    pub stdout: String,
    /// stderr chunks, joined.
    pub stderr: String,
}

/// Reads an execution's output stream (`path` is …/output). With `live`, chunks go to our
/// stdout and stderr as they arrive; otherwise into `captured`. Returns the last line.
pub fn follow_output(
    client: &Client,
    path: &str,
    follow: bool,
    live: bool,
    captured: &mut Captured,
) -> Result<Option<Final>, CliError> {
    let url = if follow {
        format!("{path}?follow=true")
    } else {
        path.to_string()
    };
    let mut last = None;
    for line in client.stream(&url)? {
        let line = line?;
        if let (Some(stream), Some(data)) = (
            line.get("stream").and_then(Value::as_str),
            line.get("data").and_then(Value::as_str),
        ) {
            let to_stdout = stream != "stderr";
            if live {
                // A closed pipe must not stop us following (and, for `run`, waiting).
                let _ = if to_stdout {
                    let mut o = std::io::stdout().lock();
                    o.write_all(data.as_bytes()).and_then(|()| o.flush())
                } else {
                    std::io::stderr().lock().write_all(data.as_bytes())
                };
            } else if to_stdout {
                captured.stdout.push_str(data);
            } else {
                captured.stderr.push_str(data);
            }
        } else if let Some(f) = Final::from_json(&line) {
            last = Some(f);
        }
    }
    Ok(last)
}
