//! A write the store has returned is committed: a process killed (SIGKILL) the instant a
//! store call returns leaves that call's effect in the database.
//!
//! The test re-runs its own binary as a child for each call. The child opens the store,
//! makes one call, prints what the call returned and kills itself with SIGKILL before
//! anything else can run (no destructor, no later statement that might commit for it).
//! The parent then opens the same database and checks the effect is there. On SQLite
//! (a file) and on PostgreSQL (a fresh database).
#![allow(clippy::unwrap_used)]

mod common;

use attune_core::ExecutionStatus;
use attune_store::{AuditEntry, AuditFilter, Finish, NewExecution, PackRow, Store};
use serde_json::{json, Map};
use std::collections::BTreeMap;
use std::process::Command;

const CHILD_OP: &str = "ATTUNE_STORE_CRASH_OP";
const CHILD_DB: &str = "ATTUNE_STORE_CRASH_DB";
/// How often each call is tried: the loss this guards against was intermittent.
const ROUNDS: usize = 12;

fn new_exec() -> NewExecution {
    NewExecution {
        action_ref: "core.noop".into(),
        parameters: Map::new(),
        secrets: Some(vec![1, 2, 3]),
        env_vars: BTreeMap::new(),
        timeout_secs: None,
        requested_by: "crash-test".into(),
        rerun_of: None,
        secret_refs: Map::new(),
    }
}

fn secrets_audit() -> AuditEntry {
    AuditEntry {
        actor: "crash-test".into(),
        kind: "execution.secrets".into(),
        subject: String::new(),
        detail: json!({"secrets": [{"parameter": "p", "source": "request"}]}),
    }
}

fn pack(name: &str) -> PackRow {
    PackRow {
        pack_ref: name.into(),
        version: Some("1".into()),
        description: None,
        digest: format!("sha256:{name}"),
        bundle: vec![7; 64],
        registered_at: "2026-01-01T00:00:00Z".into(),
    }
}

/// The child: one call, print its result, SIGKILL.
async fn child(op: &str, db: &str) {
    use ExecutionStatus::*;
    let store = Store::open(db).await.unwrap();
    let arg = |i: usize| op.split(':').nth(i).unwrap_or_default().to_string();
    let id = || arg(1).parse::<i64>().unwrap();
    let out = match arg(0).as_str() {
        "insert_execution" => json!(
            store
                .insert_execution(new_exec(), Some(&secrets_audit()))
                .await
                .unwrap()
                .id
        ),
        "insert_execution_plain" => {
            json!(store.insert_execution(new_exec(), None).await.unwrap().id)
        }
        "claim_next" => json!(store.claim_next("w-crash").await.unwrap().map(|e| e.id)),
        "finish" => {
            let f = Finish {
                exit_code: Some(0),
                stdout: "done".into(),
                ..Finish::default()
            };
            json!(store
                .finish_outcome(id(), &[Running], Succeeded, &f)
                .await
                .unwrap())
        }
        "cancel" => json!(store
            .finish(id(), &[Requested, Running], Canceled, &Finish::default())
            .await
            .unwrap()),
        "insert_token" => json!(
            store
                .insert_token(&arg(1), "operator", &arg(1), "crash-test")
                .await
                .unwrap()
                .id
        ),
        "put_pack" => {
            store.put_pack(&pack(&arg(1))).await.unwrap();
            json!(true)
        }
        "delete_pack" => json!(store.delete_pack(&arg(1)).await.unwrap()),
        "put_secret" => json!(store
            .put_secret("global", &arg(1), &[9; 40], "crash-test")
            .await
            .unwrap()),
        "revoke_token" => json!(store
            .revoke_tokens(&arg(1), "crash-test")
            .await
            .unwrap()
            .len()),
        "abandon_in_flight" => json!(store.abandon_in_flight("crash test").await.unwrap()),
        other => panic!("unknown op {other}"),
    };
    println!("RESULT:{out}");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    // SAFETY: kill(2) on our own pid; nothing is passed by pointer.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL did not stop the child");
}

/// Runs `op` in a child that dies by SIGKILL right after the call returns; returns what
/// the call returned.
fn in_child(db: &str, test: &str, op: &str) -> serde_json::Value {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_OP, op)
        .env(CHILD_DB, db)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.split_once("RESULT:").map(|(_, r)| r))
        .unwrap_or_else(|| {
            panic!(
                "{op}: the child printed no result: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{op}: {text}");
    serde_json::from_str(line).unwrap()
}

fn status(rt: &tokio::runtime::Runtime, db: &str, id: i64) -> ExecutionStatus {
    rt.block_on(async {
        let s = Store::open(db).await.unwrap();
        s.get_execution(id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("execution {id} was returned, but is gone after the kill"))
            .status
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// In a child: the one call it was started for. Returns whether this is one.
fn as_child(rt: &tokio::runtime::Runtime) -> bool {
    match (std::env::var(CHILD_OP), std::env::var(CHILD_DB)) {
        (Ok(op), Ok(db)) => {
            rt.block_on(child(&op, &db));
            true
        }
        _ => false,
    }
}

#[test]
fn a_returned_write_survives_sigkill_right_after_the_call() {
    let rt = runtime();
    if as_child(&rt) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("attune.db");
    crash_rounds(
        &rt,
        db.to_str().unwrap(),
        "a_returned_write_survives_sigkill_right_after_the_call",
        ROUNDS,
    );
}

#[test]
fn a_returned_write_survives_sigkill_right_after_the_call_on_postgresql() {
    let rt = runtime();
    if as_child(&rt) {
        return;
    }
    let pg = rt.block_on(common::PgDatabase::new());
    crash_rounds(
        &rt,
        &pg.url,
        "a_returned_write_survives_sigkill_right_after_the_call_on_postgresql",
        4,
    );
}

/// `rounds` rounds of every durable call, each in a child killed right after it returns.
fn crash_rounds(rt: &tokio::runtime::Runtime, db: &str, test: &str, rounds: usize) {
    let open = || rt.block_on(Store::open(db)).unwrap();
    let in_child = |op: &str| in_child(db, test, op);
    let status = |id: i64| status(rt, db, id);
    drop(open());
    for round in 0..rounds {
        // An acknowledged execution exists, in status requested.
        let id = in_child("insert_execution").as_i64().unwrap();
        assert_eq!(
            status(id),
            ExecutionStatus::Requested,
            "round {round}: insert_execution returned {id}, which is gone after the kill"
        );
        // And its audit entry with it.
        let audit = rt
            .block_on(open().list_audit(&AuditFilter {
                kind: Some("execution.secrets".into()),
                limit: 1000,
                ..AuditFilter::default()
            }))
            .unwrap();
        assert!(
            audit.iter().any(|e| e.subject == format!("execution {id}")),
            "round {round}: execution {id} kept, its audit entry lost"
        );
        // Without an audit entry (one statement on SQLite) likewise.
        let plain = in_child("insert_execution_plain").as_i64().unwrap();
        assert_eq!(
            status(plain),
            ExecutionStatus::Requested,
            "round {round}: insert_execution returned {plain}, which is gone after the kill"
        );
        // A claim the worker acts on (it starts the execution) is committed: after a
        // crash the execution is running (and so abandoned at the next start), never
        // requested again.
        let claimed = in_child("claim_next").as_i64().unwrap();
        assert_eq!(claimed, id, "round {round}");
        let s = status(id);
        assert_eq!(
            s,
            ExecutionStatus::Running,
            "round {round}: claim of {id} lost by the kill: a restart would run it again"
        );
        // The newer one next; then it is done with.
        assert_eq!(
            in_child("claim_next").as_i64(),
            Some(plain),
            "round {round}"
        );
        assert_eq!(status(plain), ExecutionStatus::Running, "round {round}");
        // A cancel the API acknowledged (the synced finish) stays.
        assert_eq!(in_child(&format!("cancel:{plain}")), json!(true));
        assert_eq!(status(plain), ExecutionStatus::Canceled, "round {round}");
        // A worker's outcome (committed, flushed lazily) survives the kill too.
        assert_eq!(in_child(&format!("finish:{id}")), json!(true));
        assert_eq!(status(id), ExecutionStatus::Succeeded, "round {round}");

        let name = format!("tok{round}");
        let tid = in_child(&format!("insert_token:{name}")).as_i64().unwrap();
        let row = rt
            .block_on(open().token_by_hash(&name))
            .unwrap()
            .unwrap_or_else(|| panic!("round {round}: token {tid} lost by the kill"));
        assert_eq!(row.id, tid);
        assert_eq!(in_child(&format!("revoke_token:{name}")), json!(1));
        assert!(
            rt.block_on(open().token_by_hash(&name)).unwrap().is_none(),
            "round {round}: a revocation was lost by the kill"
        );

        let secret = format!("s{round}");
        assert_eq!(in_child(&format!("put_secret:{secret}")), json!(true));
        let found = rt
            .block_on(open().find_secret(&secret, &["global".into()]))
            .unwrap();
        assert!(
            found.is_some(),
            "round {round}: a stored secret was lost by the kill"
        );

        let p = format!("pack{round}");
        in_child(&format!("put_pack:{p}"));
        let packs = rt.block_on(open().list_packs()).unwrap();
        assert!(packs.iter().any(|r| r.pack_ref == p), "round {round}");
        assert_eq!(in_child(&format!("delete_pack:{p}")), json!(true));
        let packs = rt.block_on(open().list_packs()).unwrap();
        assert!(!packs.iter().any(|r| r.pack_ref == p), "round {round}");
    }
    // In flight at a crash: abandoned, and that too is durable.
    let a = rt
        .block_on(open().insert_execution(new_exec(), None))
        .unwrap()
        .id;
    let b = rt
        .block_on(open().insert_execution(new_exec(), None))
        .unwrap()
        .id;
    rt.block_on(open().claim_next("w")).unwrap();
    assert_eq!(in_child("abandon_in_flight"), json!(1));
    assert_eq!(status(a), ExecutionStatus::Abandoned);
    assert_eq!(status(b), ExecutionStatus::Requested);
}
