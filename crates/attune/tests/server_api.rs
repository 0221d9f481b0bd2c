//! The server through its REST API: auth on every route, validation that creates no record,
//! exactly-once execution under concurrent load, durability across kill -9, graceful
//! SIGTERM, and secrets encrypted at rest.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;

#[test]
fn every_route_in_the_openapi_document_needs_a_token_and_the_right_role() {
    let s = TestServer::start(&["--workers", "1"]);
    let (status, doc) = s.admin("GET", "/api/v1/openapi.json", None);
    assert_eq!(status, 200);
    let viewer = s.token_for("viewer");
    let operator = s.token_for("operator");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 9, "{paths:?}");
    let mut checked = 0;
    for (path, ops) in paths {
        let concrete = path
            .replace("{id}", "1")
            .replace("{action_ref}", "core.echo")
            .replace("{pack_ref}", "nopack")
            .replace("{name}", "nosecret")
            .replace("{token}", "notoken");
        for (method, op) in ops.as_object().unwrap() {
            let m = method.to_uppercase();
            if op["security"] == json!([{}]) {
                // Open to all: only the probes.
                assert!(
                    ["/healthz", "/readyz"].contains(&path.as_str()),
                    "{m} {path}"
                );
                let (st, v) = s.call(&m, &concrete, None, None);
                assert_eq!(st, 200, "{m} {path}: {v}");
                continue;
            }
            let role = op["x-attune-role"]
                .as_str()
                .unwrap_or_else(|| panic!("{m} {path} has no x-attune-role"));
            let body = (m == "POST" || m == "PUT").then(|| json!({}));
            let (st, v) = s.call(&m, &concrete, None, body.as_ref());
            assert_eq!(st, 401, "{m} {path} without a token: {v}");
            assert_eq!(v["status"], 401, "{m} {path}: not problem+json: {v}");
            let (st, _) = s.call(&m, &concrete, Some("atn_not-a-real-token"), body.as_ref());
            assert_eq!(st, 401, "{m} {path} with an unknown token");
            let (st, v) = s.call(&m, &concrete, Some(&viewer), body.as_ref());
            if role == "viewer" {
                assert_ne!(st, 403, "{m} {path} refused a viewer: {v}");
            } else {
                assert_eq!(st, 403, "{m} {path} allowed a viewer: {v}");
            }
            if role == "admin" {
                let (st, v) = s.call(&m, &concrete, Some(&operator), body.as_ref());
                assert_eq!(st, 403, "{m} {path} allowed an operator: {v}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 19, "only {checked} operations");
}

fn execution_count(s: &TestServer) -> usize {
    s.all_executions("").len()
}

#[test]
fn bad_requests_get_problem_json_and_create_no_record() {
    let s = TestServer::start(&["--workers", "1", "--max-body-mib", "1"]);
    let (st, v) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": "core.echo", "parameters": {"message": 5, "extra": true}})),
    );
    assert_eq!(st, 422, "{v}");
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "every violation listed: {v}");
    let (st, v) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": "core.nope"})),
    );
    assert_eq!(st, 404, "{v}");
    let (st, v) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": "core.noop", "env_vars": {"LD_PRELOAD": "/x.so"}, "timeout": 0, "bogus": 1})),
    );
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["errors"].as_array().unwrap().len(), 3, "{v}");
    for name in [
        "PATH",
        "HOME",
        "TMPDIR",
        "https_proxy",
        "NO_PROXY",
        "REQUESTS_CA_BUNDLE",
    ] {
        let (st, v) = s.admin(
            "POST",
            "/api/v1/executions",
            Some(&json!({"action_ref": "core.noop", "env_vars": {name: "/tmp/attacker"}})),
        );
        assert_eq!(st, 422, "{name}: {v}");
        let why = v["errors"][0].as_str().unwrap();
        assert!(
            why.starts_with(&format!("env var `{name}` is not allowed: ")),
            "{why}"
        );
        assert!(
            !v.to_string().contains("/tmp/attacker"),
            "value echoed: {v}"
        );
    }
    let (st, v) = http(
        "POST",
        &format!("{}/api/v1/executions", s.url),
        Some(&s.token),
        Some(("application/json", b"{\"action_ref\": ".to_vec())),
    );
    assert_eq!(st, 400, "{v}");
    let big = json!({"action_ref": "core.echo", "parameters": {"message": "x".repeat(2 << 20)}});
    let (st, v) = s.admin("POST", "/api/v1/executions", Some(&big));
    assert_eq!(st, 413, "{v}");
    assert_eq!(v["status"], 413, "problem+json: {v}");
    assert_eq!(execution_count(&s), 0, "a bad request created a record");
    let (st, _) = s.admin("GET", "/api/v1/executions/999", None);
    assert_eq!(st, 404);
    let (st, _) = s.admin("GET", "/api/v1/nowhere", None);
    assert_eq!(st, 404);
}

#[test]
fn five_hundred_executions_from_twenty_clients_each_run_exactly_once() {
    // Made first: what the server's sandbox splits /dev/shm around is fixed at its start.
    let tmp = shared_tempdir();
    let s = TestServer::start(&["--workers", "4"]);
    marker_pack(&tmp.path().join("mark"));
    let (st, v) = s.register(&tmp.path().join("mark"));
    assert_eq!(st, 201, "{v}");
    let mark = tmp.path().join("marks.txt");
    let ids: Vec<i64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                scope.spawn(|| {
                    (0..25)
                        .map(|_| {
                            let body = json!({"action_ref": "mark.mark", "env_vars": {"MARK": mark.to_str().unwrap()}});
                            let (st, v) = s.admin("POST", "/api/v1/executions", Some(&body));
                            assert_eq!(st, 201, "{v}");
                            v["id"].as_i64().unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(ids.len(), 500);
    for id in &ids {
        let v = s.wait_final(*id, 120);
        assert_eq!(v["status"], "succeeded", "{v}");
    }
    let m = marks(&mark);
    assert_eq!(m.len(), 500, "not every execution ran");
    assert!(
        m.values().all(|n| *n == 1),
        "some ran twice: {:?}",
        m.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    // Paged, 200 at a time: every one listed once, newest first, with no output in the list.
    let list = s.all_executions("status=succeeded");
    assert_eq!(list.len(), 500);
    assert!(list
        .windows(2)
        .all(|w| w[0]["id"].as_i64() > w[1]["id"].as_i64()));
    assert!(list
        .iter()
        .all(|e| e.get("stdout").is_none() && e.get("stderr").is_none()));
    let (st, v) = s.admin("GET", "/api/v1/executions?limit=201", None);
    assert_eq!(st, 422, "{v}");
}

#[test]
fn after_kill_9_every_acknowledged_execution_finishes_or_runs_and_none_runs_twice() {
    let tmp = shared_tempdir();
    let state = state_dir();
    let data = state.path().join("data");
    marker_pack(&tmp.path().join("mark"));
    let mark = tmp.path().join("marks.txt");
    let s = TestServer::start_in(&data, &["--workers", "2"]);
    let (st, v) = s.register(&tmp.path().join("mark"));
    assert_eq!(st, 201, "{v}");
    let url = s.url.clone();
    let token = s.token.clone();
    let acknowledged = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..100 {
                    let body = json!({"action_ref": "mark.mark", "parameters": {"pause": 0.05}, "env_vars": {"MARK": mark.to_str().unwrap()}});
                    let sent = try_http(
                        "POST",
                        &format!("{url}/api/v1/executions"),
                        Some(&token),
                        Some(("application/json", body.to_string().into_bytes())),
                    );
                    match sent {
                        Ok((201, v)) => acknowledged.lock().unwrap().push(v["id"].as_i64().unwrap()),
                        _ => break, // the server is gone
                    }
                }
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(700));
        s.signal(9);
    });
    let dead_pid = s.child.as_ref().unwrap().id();
    drop(s);
    // The killed server's workspace (execution dirs, parameter files) is still there...
    let workspaces = |pid: u32| -> Vec<std::path::PathBuf> {
        std::fs::read_dir("/dev/shm")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("attune-"))
            .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("w-server-{pid}-"))
            })
            .collect()
    };
    let leftovers = workspaces(dead_pid);
    let acknowledged = acknowledged.into_inner().unwrap();
    assert!(
        acknowledged.len() > 10,
        "too few submissions before the kill: {}",
        acknowledged.len()
    );
    // The dead server's supervisors kill its actions when they see it gone; one that was
    // starting may still print its mark in that moment. Look only once none is left (each
    // has the marker file's path in its environment).
    let needle = format!("MARK={}", mark.display()).into_bytes();
    let quiet = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !proc_scan(&needle).is_empty() {
        assert!(
            std::time::Instant::now() < quiet,
            "the killed server's actions outlived it: {:?}",
            proc_scan(&needle)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let before_restart = marks(&mark);
    let s = TestServer::start_in(&data, &["--workers", "2"]);
    // ...until the next start sweeps it.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        assert!(
            !leftovers.is_empty(),
            "expected the killed server's workspace under /dev/shm"
        );
        assert!(
            workspaces(dead_pid).is_empty(),
            "the killed server's workspace was not swept"
        );
    }
    let mut abandoned = 0;
    for id in &acknowledged {
        let v = s.wait_final(*id, 120);
        match v["status"].as_str().unwrap() {
            "succeeded" => {}
            "abandoned" => {
                abandoned += 1;
            }
            other => panic!("execution {id} ended {other}: {v}"),
        }
    }
    let m = marks(&mark);
    assert!(m.values().all(|n| *n == 1), "an execution ran twice: {m:?}");
    for id in &acknowledged {
        let ran_before = before_restart.contains_key(id);
        let v = s.admin("GET", &format!("/api/v1/executions/{id}"), None).1;
        if v["status"] == "succeeded" {
            assert!(m.contains_key(id), "{id} succeeded without running");
        } else {
            assert!(
                !m.contains_key(id) || ran_before,
                "abandoned {id} was run again after restart"
            );
        }
    }
    assert!(abandoned <= 2, "more abandoned than workers: {abandoned}");
    assert!(s.log().contains("listening"), "{}", s.log());
}

#[test]
fn sigterm_lets_running_work_finish_then_exits_0() {
    let (s, id) = server_with_running_sleep(&["--workers", "2", "--shutdown-grace", "10"], 1);
    let s = sigterm_and_restart(s);
    assert_eq!(s.wait_final(id, 10)["status"], "succeeded");
}

#[test]
fn cancel_works_queued_and_running() {
    let s = TestServer::start(&["--workers", "1", "--kill-grace", "1"]);
    let (_, running) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": "core.sleep", "parameters": {"seconds": 30}})),
    );
    let (_, queued) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": "core.noop"})),
    );
    let (rid, qid) = (
        running["id"].as_i64().unwrap(),
        queued["id"].as_i64().unwrap(),
    );
    s.wait_status(rid, "running");
    let (st, v) = s.admin("POST", &format!("/api/v1/executions/{qid}/cancel"), None);
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["status"], "canceled");
    let (st, v) = s.admin("POST", &format!("/api/v1/executions/{rid}/cancel"), None);
    assert_eq!(st, 202, "{v}");
    assert_eq!(s.wait_final(rid, 10)["status"], "canceled");
    assert_eq!(s.wait_final(qid, 10)["status"], "canceled");
    assert!(s.admin("GET", &format!("/api/v1/executions/{qid}"), None).1["started_at"].is_null());
    let (st, _) = s.admin("POST", &format!("/api/v1/executions/{rid}/cancel"), None);
    assert_eq!(st, 409);
}

#[test]
fn secret_parameters_are_encrypted_at_rest_and_redacted_everywhere() {
    let s = TestServer::start(&["--workers", "1"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sec");
    std::fs::create_dir_all(dir.join("actions")).unwrap();
    std::fs::write(dir.join("pack.yaml"), "ref: sec\n").unwrap();
    std::fs::write(
        dir.join("actions/use.yaml"),
        "name: use\nrunner_type: python\nentry_point: use.py\nparameters:\n  token: {type: string, secret: true, required: true}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("actions/use.py"),
        "import json, sys, hashlib\nt = json.loads(sys.stdin.readline())['token']\nprint('got', t)\nprint(json.dumps({'sha': hashlib.sha256(t.encode()).hexdigest()}))\n",
    )
    .unwrap();
    assert_eq!(s.register(&dir).0, 201);
    let secret = format!("sv-{}", rand_suffix());
    let (st, v) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": "sec.use", "parameters": {"token": secret}})),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["parameters"]["token"], "********");
    let id = v["id"].as_i64().unwrap();
    let done = s.wait_final(id, 20);
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["stdout"].as_str().unwrap().lines().next(),
        Some("got ***")
    );
    let (st, rerun) = s.admin("POST", &format!("/api/v1/executions/{id}/rerun"), None);
    assert_eq!(st, 201, "{rerun}");
    let again = s.wait_final(rerun["id"].as_i64().unwrap(), 20);
    assert_eq!(again["result"], done["result"], "rerun got the same secret");
    let everything = format!(
        "{v}{done}{rerun}{again}{}",
        s.admin("GET", "/api/v1/executions", None).1
    );
    assert!(!everything.contains(&secret), "secret in an API response");
    for f in ["attune.db", "attune.db-wal", "attune.db-shm"] {
        let p = s.data.join(f);
        if let Ok(bytes) = std::fs::read(&p) {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "secret in {f}"
            );
        }
    }
    assert!(
        tree_contains(&s.data, secret.as_bytes()).is_none(),
        "secret in the data dir"
    );
    assert!(!s.log().contains(&secret), "secret in the log");
}

#[test]
fn sigterm_cancels_what_outlasts_the_grace_period() {
    let grace = [
        "--workers",
        "1",
        "--shutdown-grace",
        "1",
        "--kill-grace",
        "1",
    ];
    let (s, id) = server_with_running_sleep(&grace, 60);
    let s = sigterm_and_restart(s);
    assert_eq!(s.wait_final(id, 10)["status"], "canceled");
}

#[test]
fn sigterm_is_not_held_up_by_a_client_following_output() {
    let grace = [
        "--workers",
        "1",
        "--shutdown-grace",
        "1",
        "--kill-grace",
        "1",
    ];
    let (s, id) = server_with_running_sleep(&grace, 60);
    let (url, token) = (s.url.clone(), s.token.clone());
    let follower = std::thread::spawn(move || {
        try_http(
            "GET",
            &format!("{url}/api/v1/executions/{id}/output?follow=true"),
            Some(&token),
            None,
        )
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    let _restarted = sigterm_and_restart(s);
    let (st, last) = follower.join().unwrap().unwrap();
    assert_eq!(st, 200);
    // The follower saw the end: NDJSON whose last line is the final status.
    let text = last
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| last.to_string());
    assert!(text.contains("\"status\":\"canceled\""), "{text}");
}

/// A server with one running `core.sleep`; returns the server and the execution id.
fn server_with_running_sleep(extra: &[&str], seconds: u32) -> (TestServer, i64) {
    let s = TestServer::start(extra);
    let (st, v) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": "core.sleep", "parameters": {"seconds": seconds}})),
    );
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    s.wait_status(id, "running");
    (s, id)
}

/// SIGTERM, then expects exit 0 within 10 s; restarts on the same data dir.
fn sigterm_and_restart(mut s: TestServer) -> TestServer {
    let t0 = std::time::Instant::now();
    s.signal(libc::SIGTERM);
    let status = s.child.as_mut().unwrap().wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", s.log());
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(10),
        "shutdown took {:?}",
        t0.elapsed()
    );
    s.child = None;
    let data = s.data.clone();
    let mut restarted = TestServer::start_in(&data, &[]);
    // The temporary data dir now belongs to the restarted server.
    restarted.tmp_dir = s.tmp_dir.take();
    restarted
}

/// The value of the sample `name{labels…}` in a Prometheus text exposition (0 if absent).
fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

#[test]
fn metrics_count_what_ran_by_action_status_and_delivery_and_never_show_a_value() {
    let s = TestServer::ready();
    let tmp = shared_tempdir();
    let pack = one_action_pack(
        tmp.path(),
        "met",
        "fy",
        "runner_type: shell\nparameter_delivery: file\nparameter_format: yaml\nparameters:\n  pw: {type: string, secret: true}\n  n: {type: integer}\n",
        "fy.sh",
        "grep -Eq '^\"?n\"?: 3$' \"$ATTUNE_PARAMETER_FILE\" && exit 3\ngrep -Eq '^\"?pw\"?: ' \"$ATTUNE_PARAMETER_FILE\"\n",
    );
    let (st, v) = s.register(&pack);
    assert_eq!(st, 201, "{v}");
    let viewer = s.token_for("viewer");
    let run = |body: serde_json::Value| s.wait_final(s.submit(&body), 30);
    let secret = "m3tr1cs-s3cr3t-value";
    for n in [1, 2, 3] {
        let e = run(json!({"action_ref": "met.fy", "parameters": {"pw": secret, "n": n}}));
        let ok = if n == 3 { "failed" } else { "succeeded" };
        assert_eq!(e["status"], ok, "{e}");
    }
    run(json!({"action_ref": "core.noop", "parameters": {}}));

    let (st, _) = s.call("GET", "/metrics", None, None);
    assert_eq!(st, 401);
    let resp = ureq::get(&format!("{}/metrics", s.url))
        .header("Authorization", format!("Bearer {viewer}"))
        .call()
        .unwrap();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = resp.into_body().read_to_string().unwrap();
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    let get = |k: &str| sample(&text, k);
    // The script fails when n is 3, and succeeds when its YAML file holds pw.
    assert_eq!(
        get(r#"attune_executions_total{action="met.fy",status="succeeded"}"#),
        2.0,
        "{text}"
    );
    assert_eq!(
        get(r#"attune_executions_total{action="met.fy",status="failed"}"#),
        1.0
    );
    assert_eq!(
        get(r#"attune_executions_total{action="core.noop",status="succeeded"}"#),
        1.0
    );
    assert_eq!(
        get(r#"attune_parameter_deliveries_total{method="file",format="yaml"}"#),
        3.0
    );
    assert_eq!(
        get(r#"attune_parameter_deliveries_total{method="stdin",format="json"}"#),
        1.0
    );
    assert_eq!(get(r#"attune_parameter_cleanups_total{result="ok"}"#), 4.0);
    assert_eq!(
        get(r#"attune_parameter_cleanups_total{result="failed"}"#),
        0.0
    );
    assert_eq!(get("attune_queue_wait_seconds_count"), 4.0);
    assert_eq!(get("attune_parameter_size_bytes_count"), 4.0);
    assert_eq!(
        get(r#"attune_execution_duration_seconds_count{action="met.fy"}"#),
        3.0
    );
    assert_eq!(get("attune_queue_depth"), 0.0);
    assert_eq!(get("attune_live_workers"), 1.0);
    assert_eq!(
        get(r#"attune_sandbox{mode="enforced"}"#) + get(r#"attune_sandbox{mode="degraded"}"#),
        1.0
    );
    assert!(!text.contains(secret));
    // The metrics route is in the OpenAPI document, for viewers.
    let (_, doc) = s.admin("GET", "/api/v1/openapi.json", None);
    assert_eq!(doc["paths"]["/metrics"]["get"]["x-attune-role"], "viewer");
}

#[test]
fn a_long_poll_answers_when_the_execution_ends() {
    let s = TestServer::ready();
    let id = s.submit(&json!({"action_ref": "core.sleep", "parameters": {"seconds": 1}}));
    // Without wait: at once, not yet ended.
    let (st, v) = s.admin("GET", &format!("/api/v1/executions/{id}"), None);
    assert_eq!(st, 200);
    assert!(["requested", "scheduled", "running"].contains(&v["status"].as_str().unwrap()));
    // With wait: the final record, in one request.
    let (st, v) = s.admin("GET", &format!("/api/v1/executions/{id}?wait=30"), None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "succeeded", "{v}");
    // A wait that ends first answers with the status then.
    let id = s.submit(&json!({"action_ref": "core.sleep", "parameters": {"seconds": 30}}));
    let (st, v) = s.admin("GET", &format!("/api/v1/executions/{id}?wait=1"), None);
    assert_eq!(st, 200);
    assert!(["requested", "scheduled", "running"].contains(&v["status"].as_str().unwrap()));
    let (st, v) = s.admin("GET", &format!("/api/v1/executions/{id}?wait=61"), None);
    assert_eq!(st, 422, "{v}");
    assert!(v["errors"][0].as_str().unwrap().contains("0 to 60"), "{v}");
    s.admin("POST", &format!("/api/v1/executions/{id}/cancel"), None);
}

/// `--log-format json`: every line is one JSON object; a request's line carries its span
/// (method, route template, caller, status) and the filter comes from RUST_LOG when
/// ATTUNE_LOG is not set.
#[test]
fn json_logs_are_one_object_per_line_with_the_request_span() {
    let tmp = state_dir();
    let s = TestServer::start_with(&tmp.path().join("data"), &["--log-format", "json"], |c| {
        c.env_remove("ATTUNE_LOG").env("RUST_LOG", "debug");
    });
    let (st, _) = s.admin("GET", "/api/v1/executions/12345", None);
    assert_eq!(st, 404);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let line = loop {
        let log = s.log();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect();
        if let Some(v) = lines
            .into_iter()
            .find(|v| v.to_string().contains("answered 404"))
        {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no request line:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let span = &line["span"];
    assert_eq!(span["method"], "GET", "{line}");
    assert_eq!(span["route"], "/api/v1/executions/{id}", "{line}");
    assert_eq!(span["caller"], "admin", "{line}");
    assert_eq!(span["status"], 404, "{line}");
    // RUST_LOG=debug was honoured: debug events are there.
    assert!(s.log().contains("\"level\":\"DEBUG\""), "{}", s.log());
}
