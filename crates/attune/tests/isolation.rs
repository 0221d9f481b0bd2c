//! Adversarial tests of the child process contract (DESIGN.md §2 Deliver, §3): secrets
//! appear in no process's argv or environment, the environment is exactly the documented
//! set, the parameter file is 0400 in a 0700 directory and both vanish in every outcome,
//! and nothing of the action's process group survives a timeout, a cancel or the death
//! of the runner.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const SECRET_ACTION: &str = r#"#!/usr/bin/env python3
import json, os, stat, sys, time
if os.environ["ATTUNE_PARAMETER_DELIVERY"] == "file":
    path = os.environ["ATTUNE_PARAMETER_FILE"]
    params = json.load(open(path))
    st, dst = os.stat(path), os.stat(os.path.dirname(path))
    print(json.dumps({"file": path, "mode": oct(stat.S_IMODE(st.st_mode)), "dir_mode": oct(stat.S_IMODE(dst.st_mode)),
                      "cwd": os.getcwd(), "tmpdir": os.environ["TMPDIR"]}), flush=True)
else:
    params = json.loads(sys.stdin.readline())
    print(json.dumps({"cwd": os.getcwd()}), flush=True)
# A child process that inherits everything the action has.
os.system("sleep " + str(params["hold"]))
sys.exit(params.get("exit", 0))
"#;

fn secret_pack() -> TestPack {
    let p = TestPack::new("sec");
    for d in ["stdin", "file"] {
        p.action(
            &format!("hold_{d}"),
            &format!(
                "runner_type: python\nparameter_delivery: {d}\nparameters:\n  password: {{type: string, secret: true, required: true}}\n  hold: {{type: number}}\n  exit: {{type: integer}}"
            ),
            &format!("hold_{d}.py"),
            SECRET_ACTION,
        );
    }
    p
}

#[test]
fn a_secret_is_in_no_process_cmdline_or_environ_while_the_action_runs() {
    let p = secret_pack();
    for d in ["stdin", "file"] {
        let secret = format!("pw-{}", rand_suffix());
        let file = p.params_file(&json!({"password": secret, "hold": 1.5}));
        let (mut child, _stdout, first) = p.spawn_first_line(&[
            &format!("sec.hold_{d}"),
            "--params-file",
            file.to_str().unwrap(),
        ]);
        assert!(first.contains("cwd"), "action did not start: {first}");
        let mut samples = 0;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(1000) {
            let hits = proc_scan(secret.as_bytes());
            assert!(hits.is_empty(), "{d}: secret found in /proc: {hits:?}");
            samples += 1;
        }
        let status = child.wait().unwrap();
        assert!(status.success());
        assert!(samples >= 5, "only {samples} samples");
    }
}

#[test]
fn the_parameter_file_is_private_and_removed_in_every_outcome() {
    let p = secret_pack();
    // success, failure, timeout, cancel (SIGINT to attune)
    for outcome in ["succeeded", "failed", "timeout", "canceled"] {
        let secret = format!("pw-{}", rand_suffix());
        let (hold, exit) = match outcome {
            "succeeded" => (0.1, 0),
            "failed" => (0.1, 3),
            _ => (30.0, 0),
        };
        let file = p.params_file(&json!({"password": secret, "hold": hold, "exit": exit}));
        let mut args = vec![
            "sec.hold_file",
            "--params-file",
            file.to_str().unwrap(),
            "--kill-grace",
            "1",
        ];
        if outcome == "timeout" {
            args.extend(["--timeout", "1"]);
        }
        let (mut child, mut stdout, first) = p.spawn_first_line(&args);
        let info: serde_json::Value =
            serde_json::from_str(&first).unwrap_or_else(|e| panic!("{outcome}: {e}: {first}"));
        assert_eq!(info["mode"], "0o400", "{outcome}");
        assert_eq!(info["dir_mode"], "0o700", "{outcome}");
        let path = std::path::PathBuf::from(info["file"].as_str().unwrap());
        let dir = path.parent().unwrap().to_path_buf();
        assert_eq!(
            info["cwd"].as_str().unwrap(),
            dir.to_str().unwrap(),
            "cwd is the execution dir"
        );
        assert_eq!(
            info["tmpdir"].as_str().unwrap(),
            dir.to_str().unwrap(),
            "TMPDIR is the execution dir"
        );
        assert!(
            dir.starts_with("/dev/shm") || std::env::var_os("XDG_RUNTIME_DIR").is_some(),
            "not on a memory file system: {}",
            dir.display()
        );
        if outcome == "canceled" {
            // SAFETY: signalling the child we spawned.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        }
        let status = child.wait().unwrap();
        let want_code = match outcome {
            "succeeded" => 0,
            "failed" => 3,
            "timeout" => 124,
            _ => 130,
        };
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(want_code), "{outcome}: {rest} {err}");
        assert!(!path.exists(), "{outcome}: parameter file left behind");
        assert!(!dir.exists(), "{outcome}: execution directory left behind");
    }
}

#[test]
fn the_child_environment_is_exactly_the_documented_set() {
    let p = TestPack::new("envp");
    // bash's own /proc/$$/environ is exactly what it was exec'd with (python3 may be a
    // wrapper script that adds variables of its own).
    let script = "#!/bin/bash\ntr '\\0' '\\n' < /proc/$$/environ\n";
    for d in ["stdin", "file"] {
        p.action(
            &format!("env_{d}"),
            &format!("runner_type: shell\nparameter_delivery: {d}"),
            &format!("env_{d}.sh"),
            script,
        );
    }
    for d in ["stdin", "file"] {
        let (out, rec) = p.run_json_env(
            &[
                &format!("envp.env_{d}"),
                "--env",
                "LOG_LEVEL=debug",
                "--env",
                "RETRY_COUNT=3",
            ],
            &[
                ("DATABASE_URL", "postgres://user:hunter2@db/x"),
                ("ATTUNE_TOKEN", "tok"),
                ("AWS_SECRET_ACCESS_KEY", "k"),
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let env: serde_json::Map<String, serde_json::Value> = rec["stdout"]
            .as_str()
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let mut names: Vec<&str> = env.keys().map(String::as_str).collect();
        names.sort();
        let mut want = vec![
            "ATTUNE_ACTION_REF",
            "ATTUNE_EXECUTION_ID",
            "ATTUNE_PARAMETER_DELIVERY",
            "ATTUNE_PARAMETER_FORMAT",
            "HOME",
            "LANG",
            "LOG_LEVEL",
            "PATH",
            "RETRY_COUNT",
            "TMPDIR",
        ];
        if d == "file" {
            want.push("ATTUNE_PARAMETER_FILE");
        }
        want.sort();
        assert_eq!(names, want, "{d}");
        assert_eq!(env["ATTUNE_ACTION_REF"], json!(format!("envp.env_{d}")));
        assert_eq!(env["ATTUNE_PARAMETER_DELIVERY"], json!(d));
        assert_eq!(env["ATTUNE_PARAMETER_FORMAT"], "json");
        // A local run is not stored: its record's id is 0, the action sees a unique one.
        assert_eq!(rec["id"], 0);
        assert!(env["ATTUNE_EXECUTION_ID"]
            .as_str()
            .is_some_and(|id| id.starts_with("local-")));
        assert_eq!(
            env["PATH"].as_str().unwrap(),
            std::env::var("PATH").unwrap()
        );
        assert_eq!(env["LOG_LEVEL"], "debug");
    }
}

/// An action that ignores SIGTERM and leaves a grandchild that ignores it too, both named
/// `$MARK`; prints `ready`.
const STUBBORN: &str = r#"#!/usr/bin/env bash
trap '' TERM
bash -c "trap '' TERM; exec -a \"\$MARK\" sleep 1000" &
echo ready
exec -a "$MARK" sleep 1000
"#;

fn stubborn_pack() -> TestPack {
    let p = TestPack::new("stub");
    p.action("born", "runner_type: shell", "born.sh", STUBBORN);
    p
}

/// Starts the stubborn action; returns the runner and the name of its two processes,
/// once both run.
fn start_stubborn(p: &TestPack, extra: &[&str]) -> (std::process::Child, String) {
    let mark = format!("attune-stubborn-{}", rand_suffix());
    let env = format!("MARK={mark}");
    let mut args = vec!["stub.born", "--env", &env];
    args.extend_from_slice(extra);
    let (child, _stdout, line) = p.spawn_first_line(&args);
    assert_eq!(line, "ready\n");
    assert!(wait_named(&mark, 2, 10.0), "{:?}", named(&mark));
    (child, mark)
}

#[test]
fn a_timeout_kills_the_whole_group_within_the_grace_period() {
    let p = stubborn_pack();
    let t0 = Instant::now();
    let (mut child, mark) = start_stubborn(&p, &["--timeout", "1", "--kill-grace", "1"]);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(124));
    assert!(
        wait_named(&mark, 0, 0.0),
        "group survived the timeout: {:?}",
        named(&mark)
    );
    assert!(
        t0.elapsed() < Duration::from_secs(1 + 1 + 1),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn ctrl_c_cancels_and_kills_the_whole_group() {
    let p = stubborn_pack();
    let (mut child, mark) = start_stubborn(&p, &["--kill-grace", "1"]);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        wait_named(&mark, 0, 0.0),
        "group survived the cancel: {:?}",
        named(&mark)
    );
}

#[test]
fn the_group_dies_with_the_runner_even_on_kill_9() {
    let p = stubborn_pack();
    let (mut child, mark) = start_stubborn(&p, &[]);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert!(
        wait_named(&mark, 0, 2.0),
        "action processes outlived the runner: {:?}",
        named(&mark)
    );
}

#[test]
fn leftover_background_processes_are_killed_when_the_action_exits() {
    let p = TestPack::new("bg");
    p.action(
        "leave",
        "runner_type: shell",
        "leave.sh",
        // Exits once its background process runs under its name.
        "#!/bin/bash\nbash -c 'exec -a \"$MARK\" sleep 1000' &\nuntil grep -qs \"$MARK\" /proc/$!/cmdline; do sleep 0.01; done\n",
    );
    let mark = format!("attune-bg-{}", rand_suffix());
    let (out, _) = p.run_json(&["bg.leave", "--env", &format!("MARK={mark}")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_named(&mark, 0, 1.0),
        "background process survived: {:?}",
        named(&mark)
    );
}

#[test]
fn secrets_printed_by_the_action_are_masked_live_and_in_the_record() {
    let p = TestPack::new("mask");
    p.action(
        "leak",
        "runner_type: python\nparameters:\n  token: {type: string, secret: true}",
        "leak.py",
        "#!/usr/bin/env python3\nimport base64, json, sys\nt = json.loads(sys.stdin.readline())['token']\nprint('plain', t)\nprint('b64', base64.b64encode(t.encode()).decode())\nprint('json', json.dumps(t))\nsys.stderr.write('x' * 4090 + t + '\\n')\n",
    );
    let secret = format!("tok\"{}/+", rand_suffix());
    let file = p.params_file(&json!({ "token": secret }));
    for output in ["table", "json"] {
        let out = p.run(&[
            "mask.leak",
            "--params-file",
            file.to_str().unwrap(),
            "-o",
            output,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let all = [out.stdout.clone(), out.stderr.clone()].concat();
        assert!(
            !all.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{output}: secret leaked"
        );
        let mut text = String::from_utf8_lossy(&all).into_owned();
        if output == "json" {
            let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            text = format!(
                "{} {} {}",
                rec["stdout"].as_str().unwrap(),
                rec["stderr"].as_str().unwrap(),
                rec["parameters"]
            );
        }
        assert!(text.contains("plain ***"), "{output}: {text}");
        assert!(text.contains("b64 ***"), "{output}");
        assert!(text.contains("json \"***\""), "{output}");
        if output == "json" {
            assert!(
                text.contains("\"token\":\"********\""),
                "{output}: redaction: {text}"
            );
        }
    }
}

#[test]
fn stdout_is_capped_and_the_last_json_line_is_the_result() {
    let p = TestPack::new("cap");
    p.action(
        "loud",
        "runner_type: python\noutput_schema:\n  type: object\n  required: [ok]",
        "loud.py",
        "#!/usr/bin/env python3\nimport sys\nsys.stdout.write('y' * 100000 + '\\n')\nprint('{\"ok\": true}')\n",
    );
    p.action(
        "wrong",
        "runner_type: python\noutput_schema:\n  type: object\n  required: [ok]",
        "wrong.py",
        "#!/usr/bin/env python3\nprint('{\"nope\": 1}')\n",
    );
    let (out, rec) = p.run_json(&["cap.loud", "--output-limit", "1000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rec["result"], json!({"ok": true}));
    let s = rec["stdout"].as_str().unwrap();
    assert!(
        s.len() < 1200 && s.contains("output truncated at 1000 bytes; 100014 bytes in all"),
        "{s}"
    );
    let (out, rec) = p.run_json(&["cap.wrong"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(rec["status"], "failed");
    assert!(
        rec["error"].as_str().unwrap().contains("output_schema"),
        "{rec}"
    );
}
