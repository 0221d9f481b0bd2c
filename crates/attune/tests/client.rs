//! The `attune` client commands end to end, against a real `attune server` on a free port:
//! run (streamed output, exit codes, --no-wait, Ctrl-C), execution list|get|logs|cancel|rerun,
//! action list|show, pack register|list|remove, token create and roles, -o json|yaml, and the
//! one-line errors when the server refuses or cannot be reached.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::BufRead;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The single line `attune` printed on stderr for an error, checking there is exactly one.
fn one_error_line(out: &std::process::Output) -> String {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {err:?}");
    assert!(lines[0].starts_with("attune: error: "), "{err:?}");
    lines[0].to_string()
}

/// Waits until some execution of `action` is running; returns its id.
fn wait_running(s: &TestServer, action: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = s.cli_json(
            &[
                "execution",
                "list",
                "--status",
                "running",
                "--action",
                action,
            ],
            0,
        );
        if let Some(e) = list.as_array().and_then(|a| a.first()) {
            return e["id"].as_i64().unwrap();
        }
        assert!(Instant::now() < deadline, "{action} never ran: {}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A pack `tpk` with: `greet` (name → "hello NAME"), `fail` (stderr, exit 3), `die` (killed
/// by SIGTERM), `secret` (prints the length of its secret parameter `pw`).
fn test_pack() -> TestPack {
    let p = TestPack::new("tpk");
    p.action(
        "greet",
        "runner_type: shell\nparameter_format: dotenv\nparameters:\n  name: {type: string, required: true}\n  times: {type: integer, default: 1}",
        "greet.sh",
        "#!/bin/bash\nset -a; . /dev/stdin; set +a\nfor ((i=0; i<TIMES; i++)); do echo \"hello $NAME\"; done\n",
    );
    p.action(
        "fail",
        "runner_type: shell",
        "fail.sh",
        "#!/bin/bash\necho 'about to fail'\necho 'something broke' >&2\nexit 3\n",
    );
    p.action(
        "die",
        "runner_type: shell",
        "die.sh",
        "#!/bin/bash\nkill -TERM $$\n",
    );
    p.action(
        "secret",
        "runner_type: python\nparameters:\n  pw: {type: string, secret: true, required: true}",
        "secret.py",
        "import json, sys\np = json.load(sys.stdin)\nprint('len=%d' % len(p['pw']))\n",
    );
    p
}

fn register(s: &TestServer, p: &TestPack) {
    let out = s.cli_out(&["pack", "register", p.dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn run_streams_the_output_and_exits_with_the_actions_code() {
    let s = TestServer::ready();
    let out = s.cli_out(&["run", "core.echo", "message=hello from the server"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello from the server\n");
    assert_eq!(stderr(&out), "");

    let p = test_pack();
    register(&s, &p);
    let out = s.cli_out(&["run", "tpk.fail"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), "about to fail\n");
    let err = stderr(&out);
    assert!(err.contains("something broke\n"), "{err}");
    assert!(
        err.contains("attune: tpk.fail failed: exit code 3"),
        "{err}"
    );

    let out = s.cli_out(&["run", "tpk.die"]);
    assert_eq!(out.status.code(), Some(128 + 15), "{}", stderr(&out));

    // Timeout: 124, as timeout(1).
    let out = s.cli_out(&["run", "core.sleep", "seconds=30", "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("core.sleep timeout"),
        "{}",
        stderr(&out)
    );

    // key=value strings are coerced by the schema the server reports (times is an integer).
    let out = s.cli_out(&["run", "tpk.greet", "name=world", "times=2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello world\nhello world\n");
}

#[test]
fn json_and_yaml_print_the_final_record_with_the_same_exit_code() {
    let s = TestServer::ready();
    let rec = s.cli_json(&["run", "core.echo", "message=as json"], 0);
    assert_eq!(rec["status"], "succeeded");
    assert_eq!(rec["stdout"], "as json\n");
    assert_eq!(rec["exit_code"], 0);
    assert!(rec["id"].as_i64().is_some());

    // One record: `run --local` prints the same fields, with the same types, as the server.
    let local = s.cli_json(&["run", "--local", "core.echo", "message=as json"], 0);
    let shape = |v: &serde_json::Value| -> Vec<(String, &'static str)> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let t = match v {
                    serde_json::Value::Null => "null",
                    serde_json::Value::Number(_) => "number",
                    serde_json::Value::String(_) => "string",
                    serde_json::Value::Object(_) => "object",
                    _ => "other",
                };
                (k.clone(), t)
            })
            .collect()
    };
    assert_eq!(shape(&local), shape(&rec), "local: {local}\nserver: {rec}");
    assert_eq!(local["id"], 0);
    assert_eq!(local["worker"], "local");
    assert_eq!(local["stdout"], rec["stdout"]);
    assert!(rec["duration_ms"].as_u64().is_some(), "{rec}");

    let p = test_pack();
    register(&s, &p);
    let rec = s.cli_json(&["run", "tpk.fail"], 3);
    assert_eq!(rec["status"], "failed");
    assert_eq!(rec["stderr"], "something broke\n");

    let out = s.cli_out(&["run", "core.echo", "message=as yaml", "-o", "yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rec: Value = serde_yaml_ng::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["stdout"], "as yaml\n");

    for args in [
        &["action", "list"][..],
        &["action", "show", "core.echo"],
        &["pack", "list"],
        &["execution", "list"],
        &["execution", "get", "1"],
        &["execution", "logs", "1"],
    ] {
        let v = s.cli_json(args, 0);
        assert!(v.is_array() || v.is_object(), "{args:?}: {v}");
    }
}

#[test]
fn no_wait_then_get_and_logs() {
    let s = TestServer::ready();
    let out = s.cli_out(&["run", "core.sleep", "seconds=1", "--no-wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert!(id.parse::<i64>().is_ok(), "not an id: {id:?}");

    let out = s.cli_out(&["run", "core.echo", "message=later", "--no-wait"]);
    let echo_id = stdout(&out).trim().to_string();

    // -f waits for the end of the sleep.
    let t = Instant::now();
    let out = s.cli_out(&["execution", "logs", &id, "-f"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let rec = s.cli_json(&["execution", "get", &id], 0);
    assert_eq!(
        rec["status"],
        "succeeded",
        "{rec} (waited {:?})",
        t.elapsed()
    );

    let out = s.cli_out(&["execution", "logs", &echo_id, "--follow"]);
    assert_eq!(stdout(&out), "later\n");
    let logs = s.cli_json(&["execution", "logs", &echo_id], 0);
    assert_eq!(logs["stdout"], "later\n");
    assert_eq!(logs["status"], "succeeded");

    let out = s.cli_out(&["execution", "get", &echo_id]);
    let text = stdout(&out);
    assert!(text.contains("action:       core.echo"), "{text}");
    assert!(text.contains("status:       succeeded"), "{text}");
    assert!(
        text.contains("parameters:   {\"message\":\"later\"}"),
        "{text}"
    );

    // --no-wait -o json: the record as created.
    let rec = s.cli_json(&["run", "core.noop", "--no-wait"], 0);
    assert!(rec["id"].as_i64().is_some(), "{rec}");
    assert_eq!(rec["action_ref"], "core.noop");

    let out = s.cli_out(&["execution", "get", "99999"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("99999"));
    let out = s.cli_out(&["execution", "get", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("not an execution id"));
}

#[test]
fn execution_list_filters() {
    let s = TestServer::ready();
    for m in ["one", "two"] {
        let out = s.cli_out(&["run", "core.echo", &format!("message={m}")]);
        assert_eq!(out.status.code(), Some(0));
    }
    assert_eq!(s.cli_out(&["run", "core.noop"]).status.code(), Some(0));
    let out = s.cli_out(&["run", "core.sleep", "seconds=5", "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(124));

    let all = s.cli_json(&["execution", "list"], 0);
    assert_eq!(all.as_array().unwrap().len(), 4);
    // Newest first.
    assert_eq!(all[0]["action_ref"], "core.sleep");

    let echo = s.cli_json(&["execution", "list", "--action", "core.echo"], 0);
    let echo = echo.as_array().unwrap();
    assert_eq!(echo.len(), 2);
    assert!(echo.iter().all(|e| e["action_ref"] == "core.echo"));
    assert_eq!(echo[0]["parameters"]["message"], "two");

    let one = s.cli_json(
        &["execution", "list", "--status", "succeeded", "--limit", "1"],
        0,
    );
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["action_ref"], "core.noop");

    let timeouts = s.cli_json(&["execution", "list", "--status", "timeout"], 0);
    assert_eq!(timeouts.as_array().unwrap().len(), 1);

    let none = s.cli_json(&["execution", "list", "--status", "running"], 0);
    assert_eq!(none, json!([]));

    let out = s.cli_out(&["execution", "list", "--action", "core.echo"]);
    let text = stdout(&out);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("ID  ACTION     STATUS"), "{text}");
    assert_eq!(
        lines.filter(|l| l.contains("core.echo")).count(),
        2,
        "{text}"
    );

    let out = s.cli_out(&["execution", "list", "--status", "finished"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("allowed values: requested, scheduled"));
    let out = s.cli_out(&["execution", "list", "--limit", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn cancel_stops_a_running_action_and_the_waiting_run_exits_130() {
    let s = TestServer::ready();
    let run = s
        .cli(&["run", "core.sleep", "seconds=60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = wait_running(&s, "core.sleep").to_string();
    let t = Instant::now();
    let out = s.cli_out(&["execution", "cancel", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("execution {id}: cancel")),
        "{}",
        stdout(&out)
    );
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(t.elapsed() < Duration::from_secs(30));
    assert!(
        stderr(&out).contains("core.sleep canceled"),
        "{}",
        stderr(&out)
    );
    let rec = s.cli_json(&["execution", "get", &id], 0);
    assert_eq!(rec["status"], "canceled");
    // Following its logs ends as `run` does: 130 for canceled.
    let out = s.cli_out(&["execution", "logs", &id, "-f"]);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("canceled"), "{}", stderr(&out));

    // Once it has ended, cancel is refused (409) with one line, exit 2.
    let out = s.cli_out(&["execution", "cancel", &id]);
    assert_eq!(out.status.code(), Some(2));
    one_error_line(&out);
}

#[test]
fn ctrl_c_cancels_the_execution_and_waits_for_it_to_stop() {
    let s = TestServer::ready();
    let mut run = s
        .cli(&["run", "core.sleep", "seconds=60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = wait_running(&s, "core.sleep").to_string();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
    let mut err = std::io::BufReader::new(run.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(
        first.contains(&format!("canceling execution {id}")),
        "{first}"
    );
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let rec = s.cli_json(&["execution", "get", &id], 0);
    assert_eq!(rec["status"], "canceled", "{rec}");
}

#[test]
fn rerun_makes_a_new_execution_with_the_same_parameters() {
    let s = TestServer::ready();
    let first = s.cli_json(&["run", "core.echo", "message=again"], 0);
    let id = first["id"].as_i64().unwrap().to_string();
    let out = s.cli_out(&["execution", "rerun", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let new_id = stdout(&out).trim().to_string();
    assert_ne!(new_id, id);
    let out = s.cli_out(&["execution", "logs", &new_id, "-f"]);
    assert_eq!(stdout(&out), "again\n");
    let rec = s.cli_json(&["execution", "get", &new_id], 0);
    assert_eq!(rec["rerun_of"].as_i64().unwrap().to_string(), id);
    assert_eq!(rec["parameters"], json!({"message": "again"}));
    assert_eq!(rec["status"], "succeeded");

    let rec = s.cli_json(&["execution", "rerun", &id], 0);
    assert_eq!(rec["action_ref"], "core.echo");
}

#[test]
fn action_list_and_show() {
    let s = TestServer::ready();
    let out = s.cli_out(&["action", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("REF "), "{text}");
    for a in ["core.echo", "core.noop", "core.sleep", "core.http_request"] {
        assert!(
            text.lines().any(|l| l.starts_with(a)),
            "{a} missing: {text}"
        );
    }
    let list = s.cli_json(&["action", "list"], 0);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["ref"] == "core.echo"));

    let out = s.cli_out(&["action", "show", "core.http_request"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("delivery:"), "{text}");
    assert!(text.contains("format:"), "{text}");
    assert!(text.contains("PARAMETER"), "{text}");
    let row = |name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name}: {text}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    // PARAMETER TYPE REQUIRED DEFAULT SECRET …
    assert_eq!(row("url")[1..5], ["string", "yes", "-", "no"]);
    assert_eq!(row("auth_token")[1..5], ["string", "no", "-", "yes"]);
    assert_eq!(row("method")[3], "\"GET\"");

    let a = s.cli_json(&["action", "show", "core.http_request"], 0);
    assert_eq!(a["secret_parameters"], json!(["auth_token"]));

    let out = s.cli_out(&["action", "show", "core.nothing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("core.nothing"));
    let out = s.cli_out(&["action", "show", "Not-A-Ref"]);
    assert_eq!(out.status.code(), Some(2));
    one_error_line(&out);
}

#[test]
fn pack_register_run_list_remove() {
    let s = TestServer::ready();
    let p = test_pack();
    let out = s.cli_out(&["pack", "register", p.dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("registered pack tpk 1.0 (4 actions: "),
        "{text}"
    );

    let out = s.cli_out(&["run", "tpk.greet", "name=pack"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello pack\n");

    // A secret parameter: refused on argv (without showing it), accepted from a file,
    // redacted in the record.
    let secret = format!("pw-{}", rand_suffix());
    let out = s.cli_out(&["run", "tpk.secret", &format!("pw={secret}")]);
    assert_eq!(out.status.code(), Some(2));
    let line = one_error_line(&out);
    assert!(line.contains("is secret"), "{line}");
    assert!(!line.contains(&secret));
    let file = p.params_file(&json!({"pw": secret}));
    let rec = s.cli_json(
        &["run", "tpk.secret", "--params-file", file.to_str().unwrap()],
        0,
    );
    assert_eq!(rec["stdout"], format!("len={}\n", secret.len()));
    assert_eq!(rec["parameters"]["pw"], "********");

    let list = s.cli_json(&["pack", "list"], 0);
    let tpk = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ref"] == "tpk")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(tpk["actions"].as_array().unwrap().len(), 4);
    let out = s.cli_out(&["pack", "list"]);
    let text = stdout(&out);
    assert!(text.lines().any(|l| l.starts_with("core ")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("tpk ")), "{text}");

    // Not a pack directory / an invalid pack: one line, exit 2.
    let out = s.cli_out(&["pack", "register", p.tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("no pack.yaml"));
    p.file(
        "bad.yaml",
        "name: bad\nrunner_type: ruby\nentry_point: greet.sh\n",
        false,
    );
    let out = s.cli_out(&["pack", "register", p.dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(one_error_line(&out).contains("ruby"));
    std::fs::remove_file(p.dir.join("actions/bad.yaml")).unwrap();

    let out = s.cli_out(&["pack", "remove", "tpk"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "removed pack tpk\n");
    let out = s.cli_out(&["run", "tpk.greet", "name=gone"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("tpk.greet"));
    let out = s.cli_out(&["pack", "remove", "tpk"]);
    assert_eq!(out.status.code(), Some(2));
    one_error_line(&out);
    let out = s.cli_out(&["pack", "remove", "core"]);
    assert_eq!(out.status.code(), Some(2));
    one_error_line(&out);
}

#[test]
fn tokens_by_role_through_attune_url_and_attune_token() {
    let s = TestServer::ready();
    let out = s.cli_out(&["token", "create", "--role", "viewer", "--name", "watcher"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let viewer = stdout(&out).trim().to_string();
    assert_eq!(stdout(&out).lines().count(), 1);
    assert!(!stderr(&out).contains(&viewer));
    assert!(
        stderr(&out).contains("viewer token `watcher`"),
        "{}",
        stderr(&out)
    );
    let op = s.cli_json(&["token", "create", "--role", "operator"], 0);
    let operator = op["token"].as_str().unwrap().to_string();
    assert_eq!(op["role"], "operator");

    // A client elsewhere: an empty data dir, the server from the environment.
    let elsewhere = tempfile::tempdir().unwrap();
    let client = |token: &str, args: &[&str]| {
        let mut c = std::process::Command::new(bin());
        c.arg("--data-dir").arg(elsewhere.path()).args(args);
        c.env("ATTUNE_URL", &s.url).env("ATTUNE_TOKEN", token);
        c.stdin(Stdio::null());
        c.output().unwrap()
    };
    let out = client(&viewer, &["action", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = client(&viewer, &["run", "core.echo", "message=no"]);
    assert_eq!(out.status.code(), Some(2));
    let line = one_error_line(&out);
    assert!(line.contains("permission denied"), "{line}");
    assert!(line.contains("operator"), "{line}");
    assert!(!line.contains(&viewer));
    let out = client(&viewer, &["token", "create", "--role", "admin"]);
    assert_eq!(out.status.code(), Some(2));
    one_error_line(&out);

    let out = client(&operator, &["run", "core.echo", "message=yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "yes\n");
    let list = s.cli_json(&["execution", "list", "--action", "core.echo"], 0);
    assert_eq!(list[0]["requested_by"], "operator-token", "{list}");

    let out = client("not-a-token", &["action", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let line = one_error_line(&out);
    assert!(line.contains("ATTUNE_TOKEN"), "{line}");
    assert!(!line.contains("not-a-token"));

    // No token at all: a clear line before any request.
    let mut c = std::process::Command::new(bin());
    c.arg("--data-dir")
        .arg(elsewhere.path())
        .args(["action", "list"]);
    c.env("ATTUNE_URL", &s.url).env_remove("ATTUNE_TOKEN");
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("no API token"));

    // The local admin token is sent only to the server of this data dir, never to
    // whatever ATTUNE_URL names.
    let out = s
        .cli(&["action", "list"])
        .env("ATTUNE_URL", &s.url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let decoy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let decoy_url = format!("http://{}", decoy.local_addr().unwrap());
    let out = s
        .cli(&["action", "list"])
        .env("ATTUNE_URL", &decoy_url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("ATTUNE_TOKEN is not"));
}

#[test]
fn an_unreachable_server_is_one_clear_line() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    for args in [
        &["run", "core.echo", "message=x"][..],
        &["execution", "list"],
        &["action", "list", "-o", "json"],
    ] {
        let out = std::process::Command::new(bin())
            .arg("--data-dir")
            .arg(tmp.path())
            .args(args)
            .env("ATTUNE_URL", &url)
            .env("ATTUNE_TOKEN", "whatever-token")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert_eq!(
            one_error_line(&out),
            format!("attune: error: cannot reach the Attune server at {url}: connection refused (is `attune server` running?)")
        );
        assert_eq!(stdout(&out), "");
    }

    // No ATTUNE_URL and no server.json: says how to start or point at one.
    let out = std::process::Command::new(bin())
        .arg("--data-dir")
        .arg(tmp.path())
        .args(["execution", "list"])
        .env_remove("ATTUNE_URL")
        .env_remove("ATTUNE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let line = one_error_line(&out);
    assert!(
        line.contains("server.json") && line.contains("ATTUNE_URL"),
        "{line}"
    );
}

#[test]
fn invalid_parameters_are_listed_in_one_line() {
    let s = TestServer::ready();
    let out = s.cli_out(&["run", "core.echo", "bogus=1"]);
    assert_eq!(out.status.code(), Some(2));
    let line = one_error_line(&out);
    assert!(line.contains("invalid parameters for core.echo"), "{line}");
    assert!(line.contains("bogus"), "{line}");
    assert!(line.contains("message"), "{line}");

    // Coercion by the server's schema happens here, before any request.
    let out = s.cli_out(&["run", "core.sleep", "seconds=soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("`soon` is not"));

    let out = s.cli_out(&["run", "core.echo", "message=x", "--pack-dir", "/tmp"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("--local"));

    let out = s.cli_out(&["run", "core.echo", "message=x", "--env", "LD_PRELOAD=/x.so"]);
    assert_eq!(out.status.code(), Some(2));
    one_error_line(&out);

    // Nothing of the above was created.
    assert_eq!(s.cli_json(&["execution", "list"], 0), json!([]));
}

/// Every client command's help says where it finds its server: ATTUNE_URL and
/// ATTUNE_TOKEN; `attune worker` (which talks to the database, not a server) does not.
#[test]
fn client_help_names_attune_url_and_attune_token() {
    for args in [
        &["run", "--help"][..],
        &["execution", "--help"],
        &["execution", "list", "--help"],
        &["execution", "logs", "--help"],
        &["action", "show", "--help"],
        &["pack", "register", "--help"],
        &["token", "create", "--help"],
        &["secret", "set", "--help"],
        &["audit", "--help"],
        &["worker", "list", "--help"],
    ] {
        let out = std::process::Command::new(bin())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let text = stdout(&out);
        assert!(
            text.contains("ATTUNE_URL") && text.contains("ATTUNE_TOKEN"),
            "{args:?}:\n{text}"
        );
    }
    let out = std::process::Command::new(bin())
        .args(["worker", "--help"])
        .output()
        .unwrap();
    assert!(!stdout(&out).contains("ATTUNE_URL"), "{}", stdout(&out));
}
