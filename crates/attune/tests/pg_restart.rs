//! PostgreSQL restarted under load (`pg_ctlcluster … restart`): the server and the workers
//! log it, retry, and carry on; every execution the API acknowledged (201) runs exactly
//! once and ends. Its own test binary: restarting the shared PostgreSQL must not disturb
//! other tests.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// `pg_ctlcluster <version> main restart` on the local cluster.
fn restart_postgresql() {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("this test restarts the local PostgreSQL cluster (/etc/postgresql)")
        .flatten()
        .next()
        .unwrap()
        .file_name();
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect"])
        .arg(&version)
        .args(["main", "restart"])
        .status()
        .expect("pg_ctlcluster must be installed");
    assert!(status.success(), "pg_ctlcluster restart failed");
}

#[test]
fn a_postgresql_restart_loses_no_acknowledged_execution() {
    let pg = PgDatabase::new();
    let url = pg.url.clone();
    let s = TestServer::start(&["--workers", "0", "--database-url", &url]);
    let tmp = shared_tempdir();
    marker_pack(&tmp.path().join("mark"));
    assert_eq!(s.register(&tmp.path().join("mark")).0, 201);
    let mark = tmp.path().join("marks.txt");
    let dirs: Vec<_> = (0..2).map(|_| state_dir()).collect();
    let mut workers: Vec<_> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Command::new(bin())
                .arg("--data-dir")
                .arg(d.path().join("data"))
                .args(["worker", "--database-url", &url, "--name", &format!("r{i}")])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(d.path().join("worker.log")).unwrap())
                .spawn()
                .unwrap()
        })
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
    for (d, w) in dirs.iter().zip(workers.iter_mut()) {
        let _ = w.kill();
        let _ = w.wait();
        let log = std::fs::read_to_string(d.path().join("worker.log")).unwrap();
        let outages = log.matches("the database is unavailable").count();
        assert!(outages <= 2, "{outages} outage lines:\n{log}");
        assert!(!log.contains("panicked"), "{log}");
    }
    drop(s);
    eprintln!(
        "{} acknowledged, {refused} refused while PostgreSQL restarted (restart took {:?})",
        acknowledged.len(),
        restarted
    );
}
