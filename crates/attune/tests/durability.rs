//! Durability under kill -9: a 201 means the execution is committed, a claim means it is
//! committed, and delivery stays at most once across any number of crashes and restarts.
//!
//! Each test runs 30 cycles on one data dir: start `attune server`, send a burst of
//! concurrent `POST /api/v1/executions` of an action that appends its execution id to a
//! file, `kill -9` the server at a random moment, and start it again. The seed of the
//! random moments is printed, so a failing run can be repeated with `ATTUNE_TEST_SEED`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const CYCLES: usize = 30;
const CLIENTS: usize = 4;

/// xorshift64*: enough randomness for kill moments, and repeatable from a seed.
struct Rng(u64);

impl Rng {
    fn from_env_or_clock() -> Rng {
        let seed = std::env::var("ATTUNE_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("durability: ATTUNE_TEST_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [lo, hi).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// Executions listed with `status`.
fn with_status(s: &TestServer, status: &str) -> Vec<i64> {
    s.all_executions(&format!("status={status}"))
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

/// Sends executions from `CLIENTS` threads, each waiting `gap` between requests, until the
/// server dies; `pauses` gives each execution its sleep in seconds. Returns the ids
/// answered 201.
fn burst_until_killed(
    s: &TestServer,
    mark: &Path,
    pauses: &[f64],
    gap: Duration,
    kill_after: Duration,
) -> Vec<i64> {
    let acknowledged = Mutex::new(Vec::new());
    let dead = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for c in 0..CLIENTS {
            let (acknowledged, dead, url, token) = (&acknowledged, &dead, &s.url, &s.token);
            scope.spawn(move || {
                let mut n = c;
                while !dead.load(Ordering::SeqCst) {
                    let body = json!({
                        "action_ref": "mark.mark",
                        "parameters": {"pause": pauses[n % pauses.len()]},
                        "env_vars": {"MARK": mark.to_str().unwrap()},
                    });
                    n += CLIENTS;
                    match try_http(
                        "POST",
                        &format!("{url}/api/v1/executions"),
                        Some(token),
                        Some(("application/json", body.to_string().into_bytes())),
                    ) {
                        Ok((201, v)) => {
                            acknowledged.lock().unwrap().push(v["id"].as_i64().unwrap())
                        }
                        Ok((st, v)) => panic!("POST answered {st}: {v}"),
                        Err(_) => break, // the server is gone
                    }
                    std::thread::sleep(gap);
                }
            });
        }
        std::thread::sleep(kill_after);
        s.signal(libc::SIGKILL);
        dead.store(true, Ordering::SeqCst);
    });
    acknowledged.into_inner().unwrap()
}

/// What a torture run saw.
struct Outcome {
    acknowledged: usize,
    abandoned: usize,
    succeeded: usize,
}

/// Runs the cycles, then checks every acknowledged execution, the marker file and that
/// nothing is left in a non-final status.
fn torture(workers: &str, pauses: &[f64], gap: Duration, kill_window_ms: (u64, u64)) -> Outcome {
    let mut rng = Rng::from_env_or_clock();
    let tmp = shared_tempdir();
    let state = state_dir();
    let data = state.path().join("data");
    marker_pack(&tmp.path().join("mark"));
    let mark = tmp.path().join("marks.txt");
    let mut acknowledged: Vec<i64> = Vec::new();
    // For each execution abandoned at a restart: what had run before that restart.
    let mut abandoned_seen: BTreeSet<i64> = BTreeSet::new();
    let mut ran_before_abandon: BTreeMap<i64, bool> = BTreeMap::new();
    let mut before_restart: BTreeMap<i64, usize> = BTreeMap::new();
    for cycle in 0..=CYCLES {
        let mut s = TestServer::start_in(&data, &["--workers", workers]);
        // Executions the killed server had claimed are abandoned before the server listens.
        for id in with_status(&s, "abandoned") {
            if abandoned_seen.insert(id) {
                ran_before_abandon.insert(id, before_restart.contains_key(&id));
            }
        }
        if cycle == 0 {
            let (st, v) = s.register(&tmp.path().join("mark"));
            assert_eq!(st, 201, "{v}");
        }
        if cycle == CYCLES {
            // The last start only finishes what is queued, then everything is checked.
            return check(&s, &acknowledged, &mark, &ran_before_abandon);
        }
        let kill_after = Duration::from_millis(rng.range(kill_window_ms.0, kill_window_ms.1));
        let ids = burst_until_killed(&s, &mark, pauses, gap, kill_after);
        s.child.as_mut().unwrap().wait().unwrap();
        s.child = None;
        acknowledged.extend(&ids);
        // The killed server's actions die with it (the supervisor's lifeline); give an
        // action that was starting the moment to be killed before taking the snapshot.
        std::thread::sleep(Duration::from_millis(300));
        before_restart = marks(&mark);
    }
    unreachable!()
}

fn check(
    s: &TestServer,
    acknowledged: &[i64],
    mark: &Path,
    ran_before_abandon: &BTreeMap<i64, bool>,
) -> Outcome {
    let mut abandoned = 0;
    let mut succeeded = 0;
    let mut statuses = BTreeMap::new();
    for id in acknowledged {
        // wait_final fails on a 404: an acknowledged execution that was lost.
        let v = s.wait_final(*id, 120);
        let status = v["status"].as_str().unwrap().to_string();
        match status.as_str() {
            "succeeded" => succeeded += 1,
            "abandoned" => abandoned += 1,
            other => panic!("execution {id} ended {other}: {v}"),
        }
        statuses.insert(*id, status);
    }
    let m = marks(mark);
    let twice: Vec<_> = m.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "executions that ran twice: {twice:?}");
    for (id, status) in &statuses {
        if status == "succeeded" {
            assert!(m.contains_key(id), "{id} succeeded without running");
        }
    }
    for (id, ran_before) in ran_before_abandon {
        assert!(
            !m.contains_key(id) || *ran_before,
            "execution {id} was abandoned at a restart, then run after it"
        );
    }
    for st in ["requested", "scheduled", "running", "canceling"] {
        let stuck = with_status(s, st);
        assert!(stuck.is_empty(), "executions stuck in {st}: {stuck:?}");
    }
    Outcome {
        acknowledged: acknowledged.len(),
        abandoned,
        succeeded,
    }
}

#[test]
fn thirty_kill_9_cycles_during_bursts_lose_no_acknowledged_execution() {
    let o = torture("2", &[0.0], Duration::ZERO, (30, 500));
    eprintln!(
        "durability: {} acknowledged, {} succeeded, {} abandoned",
        o.acknowledged, o.succeeded, o.abandoned
    );
    assert!(
        o.acknowledged >= CYCLES * 5,
        "too few executions acknowledged ({}) to mean anything",
        o.acknowledged
    );
}

#[test]
fn thirty_kill_9_cycles_with_executions_in_flight_abandon_them_and_rerun_none() {
    // About as many arrive as 4 workers can run, so most cycles are killed mid-run.
    let pauses = [0.2, 0.45, 0.7, 1.0, 0.3, 0.85];
    let o = torture("4", &pauses, Duration::from_millis(600), (300, 1200));
    eprintln!(
        "durability: {} acknowledged, {} succeeded, {} abandoned",
        o.acknowledged, o.succeeded, o.abandoned
    );
    assert!(
        o.abandoned >= CYCLES / 2,
        "kills during running executions should abandon them; only {} of {}",
        o.abandoned,
        o.acknowledged
    );
}

#[test]
fn a_second_server_on_the_same_data_dir_refuses_and_abandons_nothing() {
    let s = TestServer::start(&["--workers", "1"]);
    let (st, v) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": "core.sleep", "parameters": {"seconds": 1}})),
    );
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    s.wait_status(id, "running");
    let mut second = std::process::Command::new(bin())
        .arg("--data-dir")
        .arg(&s.data)
        .args(["server", "--listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while second.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!(
                "a second server started on a data dir in use; execution {id}: {}",
                s.admin("GET", &format!("/api/v1/executions/{id}"), None).1
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = second.wait_with_output().unwrap();
    let pid = s.child.as_ref().unwrap().id();
    assert_eq!(
        stderr(&second).trim(),
        format!(
            "attune: error: another attune server (pid {pid}) is already running on the data dir {}",
            s.data.display()
        )
    );
    assert_eq!(s.wait_final(id, 20)["status"], "succeeded");
}

/// When the disk cannot be flushed, nothing is acknowledged and nothing runs. The WAL's
/// path is made to name a device that cannot be synced, as a failing disk answers (SQLite
/// keeps writing the file it has open): a new execution gets a 503 instead of a 201, the
/// worker that claims it does not start it, and every later one is refused as well. After
/// a restart on the intact WAL, the record says why it did not run.
#[test]
fn when_the_wal_cannot_be_flushed_nothing_is_acknowledged_and_nothing_starts() {
    use std::os::unix::fs::PermissionsExt;
    let shared = shared_tempdir();
    let marker = shared.path().join("ran");
    let pack = one_action_pack(
        shared.path(),
        "flushp",
        "touch",
        "runner_type: shell\n",
        "touch.sh",
        &format!("#!/bin/bash\ntouch {}\n", marker.display()),
    );
    let script = pack.join("actions/touch.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut s = TestServer::start(&["--workers", "1"]);
    assert_eq!(s.register(&pack).0, 201);
    let ok = s.submit(&json!({"action_ref": "flushp.touch"}));
    assert_eq!(s.wait_final(ok, 30)["status"], "succeeded");
    std::fs::remove_file(&marker).unwrap();

    let wal = s.data.join("attune.db-wal");
    let real = s.data.join("attune.db-wal.real");
    std::fs::rename(&wal, &real).unwrap();
    std::os::unix::fs::symlink("/dev/null", &wal).unwrap();
    for _ in 0..2 {
        let (st, v) = s.admin(
            "POST",
            "/api/v1/executions",
            Some(&json!({"action_ref": "flushp.touch"})),
        );
        assert_eq!(st, 503, "{v}");
    }
    // The worker claimed them (committed, not flushed) and refused to start them.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while s.log().matches("not started: ").count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not refuse: {}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A crash, and the disk works again: the records are there, and say why.
    s.signal(libc::SIGKILL);
    let _ = s.child.take().unwrap().wait();
    let keep = s.tmp_dir.take();
    std::fs::remove_file(&wal).unwrap();
    std::fs::rename(&real, &wal).unwrap();
    let s = TestServer::start_in(&s.data, &["--workers", "1"]);
    let refused: Vec<_> = s
        .all_executions("action_ref=flushp.touch")
        .into_iter()
        .filter(|e| e["id"].as_i64() != Some(ok))
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    for e in &refused {
        assert_eq!(e["status"], "failed", "{e}");
        let error = e["error"].as_str().unwrap();
        assert!(
            error.starts_with("not started: ") && error.contains("cannot flush"),
            "{error}"
        );
    }
    assert!(
        !marker.exists(),
        "an execution ran although its claim was not on disk"
    );
    drop(keep);
}
