//! `attune server --database-url postgres://…`: the same API and CLI on PostgreSQL, with a
//! fresh database made from `ATTUNE_TEST_DATABASE_URL` (the test fails, not skips, when that
//! server cannot be reached).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::process::Command;

#[test]
fn the_server_runs_on_postgresql_and_keeps_its_data_across_restarts() {
    let pg = PgDatabase::new();
    let s = TestServer::start(&["--workers", "2", "--database-url", &pg.url]);
    assert!(s.log().contains("database: PostgreSQL"), "{}", s.log());
    let out = s.cli_out(&["run", "core.echo", "message=hello from postgres"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello from postgres\n");

    // A secret stored, given to an action by reference, never shown.
    let tmp = tempfile::tempdir().unwrap();
    let pack = one_action_pack(
        tmp.path(),
        "pgp",
        "act",
        "runner_type: shell\nparameters:\n  pw: {type: string, secret: true, required: true}\n",
        "act.sh",
        "read -r line\n[ \"$line\" = '{\"pw\":\"pg-secret-7f3a\"}' ] && echo got-it\n",
    );
    assert_eq!(s.register(&pack).0, 201);
    let mut set = s.cli(&["secret", "set", "pw", "--pack", "pgp"]);
    set.stdin(std::process::Stdio::piped());
    let mut child = set.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"pg-secret-7f3a")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let rec = s.cli_json(&["run", "pgp.act"], 0);
    assert_eq!(rec["stdout"], "got-it\n", "{rec}");
    assert_eq!(rec["parameters"]["pw"], "********");

    // Paging, cancel, audit: the same answers as on SQLite.
    let sleep = s.cli_json(&["run", "core.sleep", "seconds=30", "--no-wait"], 0);
    let id = sleep["id"].as_i64().unwrap().to_string();
    let out = s.cli_out(&["execution", "cancel", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let done = s.wait_final(sleep["id"].as_i64().unwrap(), 20);
    assert_eq!(done["status"], "canceled");
    let (st, audit) = s.admin("GET", "/api/v1/audit?kind=secret", None);
    assert_eq!(st, 200);
    assert_eq!(audit.as_array().unwrap().len(), 1, "{audit}");
    assert!(!audit.to_string().contains("pg-secret-7f3a"));
    let stored = psql(
        &pg.url,
        "SELECT string_agg(p.parameters || coalesce(e.stdout, ''), '')
         FROM executions e JOIN execution_parameters p ON p.execution_id = e.id",
    );
    // What is searched is what was stored: the first execution's parameter is in it.
    assert!(stored.contains("hello from postgres"), "{stored}");
    assert!(!stored.contains("pg-secret-7f3a"));

    // Another server, another data dir, the same database: the records are there. It
    // writes no admin.token (the database has tokens): its users bring their own.
    drop(s);
    let token = viewer_token_in(&pg);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(bin())
        .arg("--data-dir")
        .arg(&data)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &pg.url,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let url = loop {
        if let Ok(text) = std::fs::read_to_string(data.join("server.json")) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                break v["url"].as_str().unwrap().to_string();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!data.join("admin.token").exists());
    let (st, v) = http(
        "GET",
        &format!("{url}/api/v1/executions?limit=10"),
        Some(&token),
        None,
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(st, 200, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 3, "{v}");
}

/// A viewer token put straight into the database (SHA-256, as the server stores them).
fn viewer_token_in(pg: &PgDatabase) -> String {
    let token = format!("atn_{}", "ab".repeat(32));
    let hash: String = {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    psql(
        &pg.url,
        &format!("INSERT INTO tokens (name, role, hash, created_at) VALUES ('e2e', 'viewer', '{hash}', '2026-11-25T00:00:00.000Z')"),
    );
    token
}

fn workers_by_state(s: &TestServer) -> Vec<(String, String)> {
    let (st, v) = s.admin("GET", "/api/v1/workers", None);
    assert_eq!(st, 200, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_string(),
                w["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A fresh database, an API-only server on it (`--workers 0`) and the marker pack
/// registered (its directory in the returned temp dir, `mark`).
fn api_server_with_marker_pack() -> (PgDatabase, TestServer, tempfile::TempDir) {
    let pg = PgDatabase::new();
    let s = TestServer::start(&["--workers", "0", "--database-url", &pg.url]);
    let tmp = shared_tempdir();
    marker_pack(&tmp.path().join("mark"));
    assert_eq!(s.register(&tmp.path().join("mark")).0, 201);
    (pg, s, tmp)
}

#[test]
fn three_workers_share_a_thousand_executions_and_a_killed_one_loses_only_its_own() {
    let (pg, s, tmp) = api_server_with_marker_pack();
    let mark = tmp.path().join("marks.txt");
    let workers: Vec<Worker> = ["wa", "wb", "wc"]
        .iter()
        .map(|n| Worker::start(&pg, n, 4))
        .collect();
    wait_for("three live workers", 30, || {
        workers_by_state(&s)
            .iter()
            .filter(|(_, st)| st == "live")
            .count()
            == 3
    });

    // 1,000 executions from 16 clients: each runs exactly once, all three take part.
    let ids = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..16 {
            let (ids, s, mark) = (&ids, &s, &mark);
            scope.spawn(move || {
                for _ in 0..1000 / 16 + 1 {
                    if ids.lock().unwrap().len() >= 1000 {
                        break;
                    }
                    let (st, v) = s.admin(
                        "POST",
                        "/api/v1/executions",
                        Some(&serde_json::json!({"action_ref": "mark.mark", "env_vars": {"MARK": mark.to_str().unwrap()}})),
                    );
                    assert_eq!(st, 201, "{v}");
                    ids.lock().unwrap().push(v["id"].as_i64().unwrap());
                }
            });
        }
    });
    let ids = ids.into_inner().unwrap();
    assert!(ids.len() >= 1000);
    wait_for("every execution final", 300, || {
        s.all_executions("")
            .iter()
            .all(|e| ["succeeded", "failed", "abandoned"].contains(&e["status"].as_str().unwrap()))
    });
    let all = s.all_executions("");
    let by_worker = |w: &str| all.iter().filter(|e| e["worker"] == w).count();
    assert!(
        ["wa", "wb", "wc"].iter().all(|w| by_worker(w) > 0),
        "not all workers took part: {:?}",
        ["wa", "wb", "wc"].map(by_worker)
    );
    assert!(all.iter().all(|e| e["status"] == "succeeded"), "{all:?}");
    let marks = marks(&mark);
    for id in &ids {
        assert_eq!(
            marks.get(id),
            Some(&1),
            "execution {id} ran {:?} times",
            marks.get(id)
        );
    }

    // kill -9 of one worker with executions in flight: those are abandoned within the
    // lease, nothing runs twice, the other workers go on, no process of the dead one lives.
    let mut workers = workers;
    let mut long = Vec::new();
    for _ in 0..12 {
        let (st, v) = s.admin(
            "POST",
            "/api/v1/executions",
            Some(&serde_json::json!({"action_ref": "mark.mark", "parameters": {"pause": 120}, "env_vars": {"MARK": mark.to_str().unwrap()}})),
        );
        assert_eq!(st, 201, "{v}");
        long.push(v["id"].as_i64().unwrap());
    }
    wait_for("all twelve running", 30, || {
        long.iter()
            .all(|id| execution(&s, *id)["status"] == "running")
    });
    let victim = workers.remove(0);
    let victim_pid = victim.child.id();
    let on_victim: Vec<i64> = long
        .iter()
        .copied()
        .filter(|id| execution(&s, *id)["worker"] == "wa")
        .collect();
    assert!(!on_victim.is_empty());
    assert!(Command::new("kill")
        .args(["-9", &victim_pid.to_string()])
        .status()
        .unwrap()
        .success());
    drop(victim);
    let killed_at = std::time::Instant::now();
    // Work queued now waits for a free slot on the survivors (theirs are all taken).
    let queued: Vec<i64> = (0..8)
        .map(|_| {
            s.submit(&serde_json::json!({"action_ref": "mark.mark", "env_vars": {"MARK": mark.to_str().unwrap()}}))
        })
        .collect();
    wait_for("the dead worker's executions abandoned", 40, || {
        on_victim
            .iter()
            .all(|id| execution(&s, *id)["status"] == "abandoned")
    });
    assert!(killed_at.elapsed() < std::time::Duration::from_secs(25));
    assert!(workers_by_state(&s).contains(&("wa".into(), "lost".into())));
    // The others' executions still run; cancel them (remote cancel): the first with
    // `attune execution cancel`, the rest through the API.
    for (i, id) in long.iter().filter(|id| !on_victim.contains(id)).enumerate() {
        assert_eq!(execution(&s, *id)["status"], "running");
        if i == 0 {
            let out = s.cli_out(&["execution", "cancel", &id.to_string()]);
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            assert!(
                stdout(&out).starts_with(&format!("execution {id}: cancel")),
                "{}",
                stdout(&out)
            );
        } else {
            let (st, v) = s.admin("POST", &format!("/api/v1/executions/{id}/cancel"), None);
            assert_eq!(st, 202, "{v}");
        }
    }
    // Canceled within the grace period (5 s) and a heartbeat or two.
    let cancel_at = std::time::Instant::now();
    wait_for("remote cancels done", 30, || {
        long.iter()
            .filter(|id| !on_victim.contains(id))
            .all(|id| execution(&s, *id)["status"] == "canceled")
    });
    assert!(cancel_at.elapsed() < std::time::Duration::from_secs(12));
    // The survivors then run what was queued, each once.
    for id in &queued {
        let done = s.wait_final(*id, 60);
        assert_eq!(done["status"], "succeeded", "{done}");
        assert!(
            ["wb", "wc"].contains(&done["worker"].as_str().unwrap()),
            "{done}"
        );
    }
    assert!(super_marks(&mark, &queued).iter().all(|n| *n == 1));
    // No process of the dead worker's executions is left (each marked once, none twice).
    // (A killed process may take a moment to be reaped.)
    let mut leftovers = proc_scan(b"sleep\x00120");
    for _ in 0..50 {
        if leftovers.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        leftovers = proc_scan(b"sleep\x00120");
    }
    let ps = |hits: &[String]| {
        let pids: Vec<&str> = hits.iter().filter_map(|h| h.split('/').next()).collect();
        let out = Command::new("ps")
            .args(["-o", "pid,ppid,user,etime,stat,cmd", "-p", &pids.join(",")])
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        // Where it lives: namespaces, cgroup, and its parent chain.
        for pid in pids {
            for f in ["status", "cgroup", "environ"] {
                let v = std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default();
                let v = String::from_utf8_lossy(&v).replace('\0', " ");
                let keep: Vec<&str> = v
                    .lines()
                    .filter(|l| {
                        f != "status"
                            || ["NSpid", "Uid", "PPid", "NStgid"]
                                .iter()
                                .any(|k| l.starts_with(k))
                    })
                    .collect();
                text.push_str(&format!("{pid}/{f}: {}\n", keep.join(" | ")));
            }
            let mut p = pid.to_string();
            for _ in 0..4 {
                let st = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
                let ppid = st
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .to_string();
                let cmd = std::fs::read(format!("/proc/{ppid}/cmdline")).unwrap_or_default();
                text.push_str(&format!(
                    "parent {ppid}: {}\n",
                    String::from_utf8_lossy(&cmd).replace('\0', " ")
                ));
                p = ppid;
            }
        }
        text
    };
    assert!(leftovers.is_empty(), "{}", ps(&leftovers));
    let marks = super_marks(&mark, &long);
    assert!(marks.iter().all(|n| *n <= 1), "{marks:?}");
    let list = s.cli_out(&["worker", "list"]);
    let table = stdout(&list);
    assert!(
        table.lines().any(|l| l.starts_with("wa ")
            && l.contains(" lost ")
            && l.trim_end().ends_with("no key")),
        "{table}"
    );

    // These workers have no secret key: an execution with a secret waits for one that has.
    let pack = one_action_pack(
        tmp.path(),
        "sec",
        "act",
        "runner_type: shell\nparameters:\n  pw: {type: string, secret: true, required: true}\n",
        "act.sh",
        "read -r line\n[ \"$line\" = '{\"pw\":\"k3y-only\"}' ] && echo opened\n",
    );
    assert_eq!(s.register(&pack).0, 201);
    let (st, v) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&serde_json::json!({"action_ref": "sec.act", "parameters": {"pw": "k3y-only"}})),
    );
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    // The server says why it waits; the workers' list says which hold the key.
    wait_for("the server's warning about the key", 30, || {
        s.log().contains("1 execution(s) with secret parameters are waiting, and no live worker holds the secret key")
    });
    assert_eq!(execution(&s, id)["status"], "requested");
    let key = tmp.path().join("secret.key");
    std::fs::copy(s.data.join("secret.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut keyed = Worker::start_with(&pg, "wkey", &["--secret-key-file", key.to_str().unwrap()]);
    let done = s.wait_final(id, 30);
    let (_, workers) = s.admin("GET", "/api/v1/workers", None);
    let holds = |n: &str| {
        workers
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == n)
            .map(|w| w["holds_key"].clone())
    };
    assert_eq!(holds("wkey"), Some(serde_json::json!(true)), "{workers}");
    assert_eq!(holds("wb"), Some(serde_json::json!(false)), "{workers}");
    let _ = keyed.child.kill();
    let _ = keyed.child.wait();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["worker"], "wkey");
    assert_eq!(done["stdout"], "opened\n");
}

fn execution(s: &TestServer, id: i64) -> serde_json::Value {
    let (st, v) = s.admin("GET", &format!("/api/v1/executions/{id}"), None);
    assert_eq!(st, 200, "{v}");
    v
}

fn super_marks(mark: &std::path::Path, ids: &[i64]) -> Vec<usize> {
    let m = marks(mark);
    ids.iter()
        .map(|id| m.get(id).copied().unwrap_or(0))
        .collect()
}

#[test]
fn a_pack_registered_after_a_worker_started_runs_on_it_at_once() {
    let pg = PgDatabase::new();
    let s = TestServer::start(&["--workers", "0", "--database-url", &pg.url]);
    let _worker = Worker::start(&pg, "wfresh", 2);
    wait_for("a live worker", 30, || {
        workers_by_state(&s).iter().any(|(_, st)| st == "live")
    });
    // Registered through the API server after the worker loaded its packs, and run before
    // the worker's next heartbeat: the worker must not call it unregistered.
    let tmp = tempfile::tempdir().unwrap();
    let pack = one_action_pack(
        tmp.path(),
        "fresh",
        "act",
        "runner_type: shell\n",
        "act.sh",
        "echo fresh\n",
    );
    assert_eq!(s.register(&pack).0, 201);
    let out = s.cli(&["run", "fresh.act"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "fresh\n");
    // Replaced, and run at once: the new version runs, not the one the worker had.
    std::fs::write(pack.join("actions/act.sh"), "echo replaced\n").unwrap();
    assert_eq!(s.register(&pack).0, 201);
    let out = s.cli(&["run", "fresh.act"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "replaced\n");
}

#[test]
fn output_of_a_remote_worker_streams_live_through_the_cli() {
    let pg = PgDatabase::new();
    let s = TestServer::start(&["--workers", "0", "--database-url", &pg.url]);
    let tmp = tempfile::tempdir().unwrap();
    let pack = one_action_pack(
        tmp.path(),
        "live",
        "act",
        "runner_type: shell\n",
        "act.sh",
        "echo first\nsleep 3\necho second\n",
    );
    assert_eq!(s.register(&pack).0, 201);
    let _worker = Worker::start(&pg, "wlive", 2);
    wait_for("a live worker", 30, || {
        workers_by_state(&s).iter().any(|(_, st)| st == "live")
    });
    let mut run = s.cli(&["run", "live.act"]);
    run.stdout(std::process::Stdio::piped());
    let mut child = run.spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    assert_eq!(first, "first\n");
    // The first line arrived while the action still ran on the remote worker.
    let list = s.all_executions("");
    assert_eq!(list[0]["status"], "running", "{list:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "second\n");
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_server_restart_leaves_remote_work_alone_and_sigterm_drains_a_worker() {
    let (pg, s, tmp) = api_server_with_marker_pack();
    let mark = tmp.path().join("marks.txt");
    let mut worker = Worker::start_with(&pg, "wt", &["--shutdown-grace", "2"]);
    wait_for("a live worker", 30, || {
        workers_by_state(&s).iter().any(|(_, st)| st == "live")
    });
    let submit = |s: &TestServer, pause: f64| {
        s.submit(&serde_json::json!({"action_ref": "mark.mark", "parameters": {"pause": pause}, "env_vars": {"MARK": mark.to_str().unwrap()}}))
    };
    // The API server restarts while the worker runs two executions: they go on and finish.
    let a = submit(&s, 4.0);
    let b = submit(&s, 4.0);
    wait_for("both running", 30, || {
        [a, b]
            .iter()
            .all(|id| execution(&s, *id)["status"] == "running")
    });
    let data = s.data.clone();
    let mut s = s;
    let keep = s.tmp_dir.take();
    drop(s);
    let s = TestServer::start_in(&data, &["--workers", "0", "--database-url", &pg.url]);
    for id in [a, b] {
        assert_eq!(s.wait_final(id, 30)["status"], "succeeded");
    }
    // SIGTERM: the worker stops claiming, lets what runs finish within its grace, cancels
    // the rest, and exits 0.
    let short = submit(&s, 0.5);
    let long = submit(&s, 60.0);
    wait_for("both running", 30, || {
        [short, long]
            .iter()
            .all(|id| execution(&s, *id)["status"] == "running")
    });
    assert!(Command::new("kill")
        .args(["-TERM", &worker.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let queued = submit(&s, 0.0);
    let status = worker.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(execution(&s, short)["status"], "succeeded");
    assert_eq!(execution(&s, long)["status"], "canceled");
    assert_eq!(execution(&s, queued)["status"], "requested");
    assert!(workers_by_state(&s).contains(&("wt".into(), "stopped".into())));
    drop(keep);
}

/// A new execution is announced to one worker process at a time (the others are spared
/// a claim that finds nothing); one announced to a process whose slots are all busy is
/// passed on to the others at once, and run by an idle one without waiting for its poll.
#[test]
fn work_announced_to_a_busy_worker_is_run_by_an_idle_one_at_once() {
    let (pg, s, tmp) = api_server_with_marker_pack();
    let mark = tmp.path().join("marks.txt");
    let run = |pause: u32| {
        let (st, v) = s.admin(
            "POST",
            "/api/v1/executions",
            Some(&serde_json::json!({"action_ref": "mark.mark", "parameters": {"pause": pause}, "env_vars": {"MARK": mark.to_str().unwrap()}})),
        );
        assert_eq!(st, 201, "{v}");
        v["id"].as_i64().unwrap()
    };
    // One slot of one process busy for the whole test.
    let _busy = Worker::start(&pg, "wbusy", 1);
    wait_for("the first worker live", 30, || {
        workers_by_state(&s).iter().any(|(_, st)| st == "live")
    });
    let long = run(120);
    s.wait_status(long, "running");
    let _idle = Worker::start(&pg, "widle", 1);
    wait_for("both workers live", 30, || {
        workers_by_state(&s)
            .iter()
            .filter(|(_, st)| st == "live")
            .count()
            == 2
    });
    // The API server reads the live workers at most once a second.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // In turn, about half are announced to the busy process.
    let mut waits = Vec::new();
    for _ in 0..12 {
        let id = run(0);
        let e = s.wait_final(id, 30);
        assert_eq!(e["status"], "succeeded", "{e}");
        assert_eq!(e["worker"], "widle", "{e}");
        let ms =
            |k: &str| attune_core::execution::parse_rfc3339_ms(e[k].as_str().unwrap()).unwrap();
        waits.push(ms("started_at") - ms("created_at"));
    }
    // Without passing them on, those would wait for the idle worker's one-second poll.
    let slow = waits.iter().filter(|w| **w >= 400).count();
    assert!(slow <= 1, "waits before start (ms): {waits:?}");
    assert!(marks(&mark).values().all(|n| *n == 1));
}
