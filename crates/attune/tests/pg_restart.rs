//! PostgreSQL restarted under load (`pg_ctlcluster … restart`): the server and the workers
//! log it, retry, and carry on; every execution the API acknowledged (201) runs exactly
//! once and ends. Its own test binary: restarting the shared PostgreSQL must not disturb
//! other tests.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// The tests here take the shared PostgreSQL down: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `pg_ctlcluster <version> main <what>` (restart, stop, start) on the local cluster.
fn pg_ctlcluster(what: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("this test restarts the local PostgreSQL cluster (/etc/postgresql)")
        .flatten()
        .next()
        .unwrap()
        .file_name();
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect"])
        .arg(&version)
        .args(["main", what])
        .status()
        .expect("pg_ctlcluster must be installed");
    assert!(status.success(), "pg_ctlcluster {what} failed");
}

fn restart_postgresql() {
    pg_ctlcluster("restart");
}

/// Lines of `log` that say the database went away.
fn outage_lines(log: &str) -> usize {
    log.matches("the database is unavailable").count()
}

/// PostgreSQL down for longer than a worker's lease (15 s) while an execution runs: when it
/// is back, the reapers must not abandon the work of workers that are alive but could not
/// renew their leases; the execution ends `succeeded`, having run once.
#[test]
fn an_outage_longer_than_the_lease_abandons_nothing_that_still_runs() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pg = PgDatabase::new();
    let s = TestServer::start(&["--workers", "0", "--database-url", &pg.url]);
    let tmp = shared_tempdir();
    marker_pack(&tmp.path().join("mark"));
    assert_eq!(s.register(&tmp.path().join("mark")).0, 201);
    let mark = tmp.path().join("marks.txt");
    let worker = Worker::start(&pg, "long0", 2);
    let id = s.submit(&serde_json::json!({
        "action_ref": "mark.mark",
        "parameters": {"pause": 25},
        "env_vars": {"MARK": mark.to_str().unwrap()},
    }));
    s.wait_status(id, "running");

    pg_ctlcluster("stop");
    std::thread::sleep(Duration::from_secs(18));
    pg_ctlcluster("start");

    let deadline = Instant::now() + Duration::from_secs(60);
    let last = loop {
        let (st, v) = s.admin("GET", &format!("/api/v1/executions/{id}"), None);
        if st == 200
            && !["requested", "scheduled", "running"].contains(&v["status"].as_str().unwrap())
        {
            break v;
        }
        assert!(Instant::now() < deadline, "execution {id}: {st} {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(last["status"], "succeeded", "{last}");
    assert_eq!(marks(&mark).get(&id), Some(&1));
    let log = worker.log();
    let n = outage_lines(&log);
    assert!(
        (1..=2).contains(&n),
        "the worker says it once or twice, not {n} times:\n{log}"
    );
    let server_log = s.log();
    let n = outage_lines(&server_log);
    assert!(
        (1..=2).contains(&n),
        "the server says it once or twice, not {n} times:\n{server_log}"
    );
    assert!(server_log.contains("the database is back"), "{server_log}");
}

#[test]
fn a_postgresql_restart_loses_no_acknowledged_execution() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pg = PgDatabase::new();
    let url = pg.url.clone();
    let s = TestServer::start(&["--workers", "0", "--database-url", &url]);
    let tmp = shared_tempdir();
    marker_pack(&tmp.path().join("mark"));
    assert_eq!(s.register(&tmp.path().join("mark")).0, 201);
    let mark = tmp.path().join("marks.txt");
    let workers: Vec<Worker> = (0..2)
        .map(|i| Worker::start(&pg, &format!("r{i}"), 4))
        .collect();

    // Submit for ~6 s; PostgreSQL restarts 2 s in. Refused submissions are not
    // acknowledged; every 201 is.
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let start = Instant::now();
    let restart = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(2));
        let t = Instant::now();
        restart_postgresql();
        t.elapsed()
    });
    while start.elapsed() < Duration::from_secs(6) {
        let body = serde_json::json!({
            "action_ref": "mark.mark",
            "env_vars": {"MARK": mark.to_str().unwrap()},
        });
        match try_http(
            "POST",
            &format!("{}/api/v1/executions", s.url),
            Some(&s.token),
            Some(("application/json", body.to_string().into_bytes())),
        ) {
            Ok((201, v)) => acknowledged.push(v["id"].as_i64().unwrap()),
            Ok((503, _)) => refused += 1,
            Ok((st, v)) => panic!("POST answered {st}: {v}"),
            Err(e) => panic!("the server went away: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let restarted = restart.join().unwrap();
    assert!(
        acknowledged.len() > 50,
        "{} acknowledged",
        acknowledged.len()
    );

    // Every acknowledged execution ends, succeeded, and ran exactly once.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let all = s.all_executions("");
        let pending: Vec<_> = all
            .iter()
            .filter(|e| {
                !["succeeded", "failed", "abandoned"].contains(&e["status"].as_str().unwrap())
            })
            .collect();
        if pending.is_empty() {
            let ids: std::collections::BTreeSet<i64> =
                all.iter().map(|e| e["id"].as_i64().unwrap()).collect();
            for id in &acknowledged {
                assert!(ids.contains(id), "acknowledged execution {id} is gone");
            }
            let failed: Vec<_> = all.iter().filter(|e| e["status"] != "succeeded").collect();
            assert!(failed.is_empty(), "{failed:?}");
            break;
        }
        assert!(Instant::now() < deadline, "still pending: {pending:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let marks = marks(&mark);
    for id in &acknowledged {
        assert_eq!(marks.get(id), Some(&1), "execution {id}");
    }
    // Each process said so once, not once per retry.
    for w in &workers {
        let log = w.log();
        let outages = outage_lines(&log);
        assert!(outages <= 2, "{outages} outage lines:\n{log}");
        assert!(!log.contains("panicked"), "{log}");
    }
    // The server answered 503 to the submissions it could not store, and logged them
    // in a line or two, not one per request.
    let errors = s.log().matches("ERROR").count();
    assert!(errors <= 4, "{errors} error lines:\n{}", s.log());
    drop(s);
    eprintln!(
        "{} acknowledged, {refused} refused while PostgreSQL restarted (restart took {:?})",
        acknowledged.len(),
        restarted
    );
}
