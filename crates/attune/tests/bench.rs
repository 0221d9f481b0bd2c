//! `attune bench` end to end: it starts its own server (SQLite, or PostgreSQL with worker
//! processes), runs the executions and the direct-spawn baseline, and reports both. Only
//! that it measures what it says is checked here: figures are for the note, never asserted.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::process::Command;

fn bench(args: &[&str]) -> serde_json::Value {
    let dir = state_dir();
    let out = Command::new(bin())
        .arg("bench")
        .args(args)
        .args(["-o", "json"])
        .env("ATTUNE_BENCH_DIR", dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // It leaves nothing behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn check(r: &serde_json::Value, n: u64) {
    for side in ["direct_spawn", "attune"] {
        assert_eq!(r[side]["count"], n, "{r}");
        assert_eq!(r[side]["failed"], 0, "{r}");
        let (p50, p99) = (
            r[side]["p50_ms"].as_f64().unwrap(),
            r[side]["p99_ms"].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && p50 <= p99, "{r}");
        assert!(r[side]["per_second"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(r["throughput_ratio"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["server_side"]["run_p50_ms"].as_i64().is_some(), "{r}");
    // Where the CPU went, per execution: the scripts run directly, and the actions and the
    // started processes (counted in clock ticks: 30 executions are well above one).
    let cpu = &r["cpu_per_execution"];
    for k in [
        "direct_ms",
        "attune_ms",
        "direct_script_ms",
        "attune_actions_ms",
        "attune_server_ms",
        "attune_client_ms",
    ] {
        assert!(cpu[k].as_f64().unwrap() > 0.0, "{k}: {r}");
    }
}

#[test]
fn bench_measures_the_api_against_direct_spawns_on_sqlite_with_a_payload_file() {
    let r = bench(&[
        "-n",
        "30",
        "-c",
        "2",
        "--cli-runs",
        "2",
        "--delivery",
        "file",
        "--format",
        "yaml",
        "--payload",
        "4k",
        "--rounds",
        "7",
    ]);
    // 30 of each in 7 alternating rounds (5, 5, 4, 4, 4, 4, 4).
    check(&r, 30);
    assert_eq!(r["rounds"], 7);
    assert_eq!(r["delivery"], "file");
    assert_eq!(r["format"], "yaml");
    assert_eq!(r["payload_bytes"], 4096);
    assert!(r["document_bytes"].as_u64().unwrap() > 4096);
    assert_eq!(r["server"], "SQLite, embedded workers");
    assert!(r["server_peak_rss_mib"].as_f64().unwrap() > 1.0, "{r}");
    // The peak as a multiple of the document: the same figure.
    let per_doc = r["server_peak_rss_mib"].as_f64().unwrap() * 1048576.0
        / r["document_bytes"].as_f64().unwrap();
    assert!((r["server_peak_rss_to_document"].as_f64().unwrap() - per_doc).abs() < 1e-6);
    assert_eq!(r["cli"]["runs"], 2);
    assert!(r["cli"]["remote_p50_ms"].as_f64().unwrap() > 0.0);
    // The floor of `run --local`: attune-spawn-floor, built next to attune.
    assert!(r["cli"]["floor_p50_ms"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["cli"]["local_to_floor"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_runs_on_postgresql_with_worker_processes() {
    let pg = PgDatabase::new();
    let r = bench(&[
        "-n",
        "30",
        "-c",
        "3",
        "--cli-runs",
        "0",
        "--database-url",
        &pg.url,
        "--workers",
        "2",
    ]);
    check(&r, 30);
    assert_eq!(r["server"], "PostgreSQL, 2 worker processes");
    assert!(r["cli"].is_null());
    // Both worker processes took part, and nothing else ran the bench's executions.
    let by_worker = psql(
        &pg.url,
        "SELECT COUNT(DISTINCT worker) FROM executions WHERE action_ref = 'attune_bench.trivial'",
    );
    assert_eq!(by_worker.trim(), "2");
}

#[test]
fn bench_refuses_bad_arguments_in_one_line() {
    for (args, says) in [
        (&["--payload", "3X"][..], "unit must be k, M or G"),
        (&["--url", "http://127.0.0.1:1"][..], "ATTUNE_TOKEN"),
        (&["-c", "0"][..], "0 is not in 1..=1024"),
        (&["--rounds", "0"][..], "0 is not in 1..=1000"),
    ] {
        let out = Command::new(bin())
            .arg("bench")
            .args(args)
            .env_remove("ATTUNE_TOKEN")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}
