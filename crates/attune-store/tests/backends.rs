//! The store's contract, run on both backends: SQLite (a file in a temp dir) and PostgreSQL
//! (a fresh database per test, made from `ATTUNE_TEST_DATABASE_URL`; the test fails, not
//! skips, when that server cannot be reached).
#![allow(clippy::unwrap_used)]

use attune_core::ExecutionStatus::{self, *};
use attune_store::{
    AuditEntry, AuditFilter, Backend, ExecutionFilter, Finish, NewExecution, PackRow, Store,
};
use serde_json::{json, Map};

use sqlx::Connection;

mod common;
use common::PgDatabase;

/// Runs `check` on a fresh SQLite store, then on a fresh PostgreSQL one.
macro_rules! on_both {
    ($check:ident) => {{
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Store::open_sqlite(&dir.path().join("attune.db"))
            .await
            .unwrap();
        assert_eq!(sqlite.backend(), Backend::Sqlite);
        $check(&sqlite).await;
        let pg = PgDatabase::new().await;
        let postgres = Store::open(&pg.url).await.unwrap();
        assert_eq!(postgres.backend(), Backend::Postgres);
        $check(&postgres).await;
        // Opening again applies nothing twice and loses nothing.
        let tokens = postgres.token_count().await.unwrap();
        drop(postgres);
        let again = Store::open(&pg.url).await.unwrap();
        assert_eq!(again.token_count().await.unwrap(), tokens);
    }};
}

fn new_exec(action: &str) -> NewExecution {
    NewExecution {
        action_ref: action.into(),
        parameters: json!({"message": "hi", "nested": {"b": 1, "a": [1, 2]}})
            .as_object()
            .unwrap()
            .clone(),
        secrets: Some(vec![0, 1, 2, 255]),
        env_vars: [("LOG_LEVEL".to_string(), "debug".to_string())].into(),
        timeout_secs: Some(30),
        requested_by: "tester".into(),
        rerun_of: None,
        secret_refs: Map::new(),
    }
}

async fn executions(s: &Store) {
    let a = s
        .insert_execution(new_exec("core.echo"), None)
        .await
        .unwrap();
    assert_eq!(a.status, Requested);
    assert_eq!(a.parameters["nested"], json!({"b": 1, "a": [1, 2]}));
    assert_eq!(a.secrets.as_deref(), Some(&[0u8, 1, 2, 255][..]));
    let b = s
        .insert_execution(
            NewExecution {
                rerun_of: Some(a.id),
                ..new_exec("core.sleep")
            },
            Some(&AuditEntry {
                actor: "tester".into(),
                kind: "execution.secrets".into(),
                subject: String::new(),
                detail: json!({"secrets": ["pw"]}),
            }),
        )
        .await
        .unwrap();
    assert!(b.id > a.id);
    // What an insert returns is what is stored (it is not read back).
    for e in [&a, &b] {
        let stored = s.get_execution(e.id).await.unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(e).unwrap(),
            serde_json::to_value(&stored).unwrap()
        );
        assert_eq!(e.secrets, stored.secrets);
    }
    // A worker without the secret key leaves executions with secrets to others.
    assert!(s.claim_next_for("keyless", false).await.unwrap().is_none());
    // Claims go oldest first, each once.
    let c1 = s.claim_next("w1").await.unwrap().unwrap();
    let c2 = s.claim_next("w2").await.unwrap().unwrap();
    assert_eq!((c1.id, c2.id), (a.id, b.id));
    // A claim starts the execution: one write, from requested only.
    assert_eq!(c1.status, Running);
    assert!(c1.started_at.is_some());
    assert_eq!(c1.worker.as_deref(), Some("w1"));
    assert!(s.claim_next("w3").await.unwrap().is_none());
    // Conditional transitions: only from the expected status.
    assert!(!s.transition(a.id, Requested, Running).await.unwrap());
    assert!(!s.transition(a.id, Scheduled, Running).await.unwrap());
    let f = Finish {
        exit_code: Some(3),
        signal: None,
        result: Some(json!({"ok": false})),
        stdout: "out\n".into(),
        stderr: "err\n".into(),
        error: None,
        started_at: Some(attune_core::execution::rfc3339(std::time::SystemTime::now())),
    };
    // A worker's outcome (flushed lazily): conditional like every other write.
    assert!(s
        .finish_outcome(a.id, &[Running, Canceling], Failed, &f)
        .await
        .unwrap());
    assert!(!s
        .finish_outcome(a.id, &[Running], Succeeded, &f)
        .await
        .unwrap());
    assert!(!s.finish(a.id, &[Running], Succeeded, &f).await.unwrap());
    let done = s.get_execution(a.id).await.unwrap().unwrap();
    assert_eq!(done.status, Failed);
    assert_eq!(done.exit_code, Some(3));
    assert_eq!(done.result, Some(json!({"ok": false})));
    assert_eq!(done.stdout.as_deref(), Some("out\n"));
    assert!(done.duration_ms.is_some());
    // The process's start replaces the claim's.
    assert_eq!(done.started_at, f.started_at);
    assert_ne!(done.started_at, c1.started_at);
    // Lists: newest first, filters, cursor, no output.
    let all = s
        .list_executions(&ExecutionFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), [b.id, a.id]);
    assert!(all.iter().all(|e| e.stdout.is_none()));
    let failed = s
        .list_executions(&ExecutionFilter {
            status: Some(ExecutionStatus::Failed),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    let older = s
        .list_executions(&ExecutionFilter {
            before: Some(b.id),
            action_ref: Some("core.echo".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(s.abandon_in_flight("test").await.unwrap(), 1);
    assert_eq!(
        s.get_execution(b.id).await.unwrap().unwrap().status,
        Abandoned
    );
    let counts = s.count_by_status().await.unwrap();
    assert_eq!(counts.get("failed"), Some(&1));
    assert!(s.get_execution(9_999_999).await.unwrap().is_none());
    // An execution whose process never started has no start time, though its claim had.
    let mut e = new_exec("core.echo");
    e.secrets = None;
    let c = s.insert_execution(e, None).await.unwrap();
    let claimed = s.claim_next("w1").await.unwrap().unwrap();
    assert_eq!(claimed.id, c.id);
    assert!(claimed.started_at.is_some());
    assert!(s
        .finish_outcome(c.id, &[Running], Failed, &Finish::default())
        .await
        .unwrap());
    assert_eq!(
        s.get_execution(c.id).await.unwrap().unwrap().started_at,
        None
    );
}

#[tokio::test]
async fn executions_are_claimed_once_and_change_status_only_as_expected() {
    on_both!(executions);
}

async fn tokens_packs_secrets_audit(s: &Store) {
    let t = s
        .insert_token("ci", "operator", "hash-1", "admin")
        .await
        .unwrap();
    s.insert_token("ci", "viewer", "hash-2", "admin")
        .await
        .unwrap();
    assert_eq!(s.token_by_hash("hash-1").await.unwrap().unwrap().id, t.id);
    s.touch_token(t.id, "2026-11-25T07:00:00.000Z")
        .await
        .unwrap();
    assert_eq!(
        s.list_tokens().await.unwrap()[0].last_used_at.as_deref(),
        Some("2026-11-25T07:00:00.000Z")
    );
    assert_eq!(s.revoke_tokens("ci", "admin").await.unwrap().len(), 2);
    assert!(s.token_by_hash("hash-1").await.unwrap().is_none());
    assert_eq!(s.token_count().await.unwrap(), 2);

    let p = PackRow {
        pack_ref: "p".into(),
        version: Some("1.0".into()),
        description: None,
        digest: "d1".into(),
        bundle: vec![0, 159, 146, 150],
        registered_at: "2026-11-25T07:00:00.000Z".into(),
    };
    s.put_pack(&p).await.unwrap();
    s.put_pack(&PackRow {
        digest: "d2".into(),
        ..p.clone()
    })
    .await
    .unwrap();
    let packs = s.list_packs().await.unwrap();
    assert_eq!(packs.len(), 1);
    assert_eq!(
        (packs[0].digest.as_str(), &packs[0].bundle),
        ("d2", &p.bundle)
    );
    assert!(s.delete_pack("p").await.unwrap());
    assert!(!s.delete_pack("p").await.unwrap());

    assert!(s
        .put_secret("global", "pw", b"sealed-1", "admin")
        .await
        .unwrap());
    assert!(!s
        .put_secret("global", "pw", b"sealed-2", "admin")
        .await
        .unwrap());
    assert!(s
        .put_secret("pack:p", "pw", b"sealed-3", "admin")
        .await
        .unwrap());
    let scopes = ["action:p.a".to_string(), "pack:p".into(), "global".into()];
    let (scope, value) = s.find_secret("pw", &scopes).await.unwrap().unwrap();
    assert_eq!(
        (scope.as_str(), value.as_slice()),
        ("pack:p", &b"sealed-3"[..])
    );
    assert_eq!(s.list_secrets(None).await.unwrap().len(), 2);
    assert_eq!(s.list_secrets(Some("global")).await.unwrap().len(), 1);
    assert!(s.delete_secret("pack:p", "pw", "admin").await.unwrap());
    assert!(!s.delete_secret("pack:p", "pw", "admin").await.unwrap());

    let all = s
        .list_audit(&AuditFilter {
            limit: 200,
            ..Default::default()
        })
        .await
        .unwrap();
    // 2 tokens made, 2 revoked, 3 secret writes, 1 delete; newest first.
    assert_eq!(all.len(), 8, "{all:?}");
    assert_eq!(all[0].kind, "secret.delete");
    let secret = s
        .list_audit(&AuditFilter {
            kind: Some("secret".into()),
            since: Some(all[7].at.clone()),
            limit: 200,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(secret.len(), 4);
    assert!(secret.iter().all(|e| e.kind.starts_with("secret.")));
}

#[tokio::test]
async fn tokens_packs_secrets_and_the_audit_log_behave_alike() {
    on_both!(tokens_packs_secrets_audit);
}

/// Tries to change and to remove the audit log behind the store's back; what succeeded.
async fn tamper(url: &str) -> (bool, bool) {
    let mut c = sqlx::AnyConnection::connect(url).await.unwrap();
    let update = sqlx::query("UPDATE audit SET actor = 'someone else'")
        .execute(&mut c)
        .await
        .is_ok();
    let delete = sqlx::query("DELETE FROM audit")
        .execute(&mut c)
        .await
        .is_ok();
    (update, delete)
}

#[tokio::test]
async fn the_audit_log_refuses_update_and_delete_on_both() {
    let entry = AuditEntry {
        actor: "a".into(),
        kind: "pack.register".into(),
        subject: "pack p".into(),
        detail: json!({}),
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("attune.db");
    let sqlite = Store::open_sqlite(&db).await.unwrap();
    sqlite.audit(&entry).await.unwrap();
    assert_eq!(
        tamper(&format!("sqlite://{}", db.display())).await,
        (false, false)
    );
    let pg = PgDatabase::new().await;
    let postgres = Store::open(&pg.url).await.unwrap();
    postgres.audit(&entry).await.unwrap();
    assert_eq!(tamper(&pg.url).await, (false, false));
    for s in [&sqlite, &postgres] {
        let log = s
            .list_audit(&AuditFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].actor, "a");
    }
}

async fn workers_and_leases(s: &Store) {
    assert_eq!(s.worker_start("w-a", "host-a", 4, true).await.unwrap(), 0);
    s.worker_start("w-b", "host-b", 2, false).await.unwrap();
    let a = s
        .insert_execution(new_exec("core.echo"), None)
        .await
        .unwrap();
    let b = s
        .insert_execution(new_exec("core.echo"), None)
        .await
        .unwrap();
    let c = s
        .insert_execution(new_exec("core.echo"), None)
        .await
        .unwrap();
    assert_eq!(s.claim_next("w-a").await.unwrap().unwrap().id, a.id);
    assert_eq!(s.claim_next("w-b").await.unwrap().unwrap().id, b.id);
    assert_eq!(s.claim_next("w-b").await.unwrap().unwrap().id, c.id);
    // A cancel asked for through the API reaches the worker holding the process.
    assert!(s.transition(b.id, Running, Canceling).await.unwrap());
    assert_eq!(s.worker_heartbeat("w-b", 1).await.unwrap(), vec![b.id]);
    assert!(s.worker_heartbeat("w-a", 1).await.unwrap().is_empty());
    let workers = s.list_workers(60).await.unwrap();
    assert_eq!(workers.len(), 2);
    assert!(workers.iter().all(|w| w.state == "live"), "{workers:?}");
    // Nothing is lost within the lease.
    assert_eq!(s.reap_lost_workers(60).await.unwrap(), 0);
    // w-a stops cleanly; w-b goes silent past a (tiny) lease: its two are abandoned.
    s.worker_stop("w-a").await.unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(s.reap_lost_workers(1).await.unwrap(), 2);
    for id in [b.id, c.id] {
        let e = s.get_execution(id).await.unwrap().unwrap();
        assert_eq!(e.status, Abandoned);
        assert!(e.error.unwrap().contains("w-b stopped sending heartbeats"));
    }
    assert_eq!(
        s.get_execution(a.id).await.unwrap().unwrap().status,
        Running
    );
    let listed = s.list_workers(1).await.unwrap();
    let key_of = |n: &str| listed.iter().find(|w| w.name == n).unwrap().holds_key;
    assert!(key_of("w-a") && !key_of("w-b"), "{listed:?}");
    let states: Vec<(String, String)> = listed
        .iter()
        .map(|w| (w.name.clone(), w.state.clone()))
        .collect();
    assert!(
        states.contains(&("w-a".into(), "stopped".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("w-b".into(), "lost".into())),
        "{states:?}"
    );
    // A worker that starts again under its name sweeps what it left in flight.
    assert_eq!(s.worker_start("w-a", "host-a", 4, true).await.unwrap(), 1);
    assert_eq!(
        s.get_execution(a.id).await.unwrap().unwrap().status,
        Abandoned
    );
}

#[tokio::test]
async fn a_worker_that_stops_heartbeating_loses_its_executions_once() {
    on_both!(workers_and_leases);
}

/// A claim returns the parameters as stored, whether they come with the claimed row (up
/// to 65,536 characters) or are read by themselves after it (larger), keys in their
/// order; and the status alone reads as the record's.
async fn claims_return_the_stored_parameters(s: &Store) {
    // Two- and three-byte characters: bytes and characters differ, and a document stored
    // in chunks (1 MiB and more) has characters across the chunks' edges, whatever the
    // prefix's length. Inline (up to 64 KiB in a claim), read by itself, and in chunks.
    let sizes = [
        10,
        64 * 1024 - 40,
        128 * 1024 + 2,
        300_000,
        (1 << 20) - 200,
        (1 << 20) + 1,
        (3 << 20) + 7,
    ];
    for (i, size) in sizes.into_iter().enumerate() {
        let mut e = new_exec("core.echo");
        e.secrets = None;
        let unit = if i % 2 == 0 { "é" } else { "é€" };
        e.parameters
            .insert("blob".into(), json!(unit.repeat(size / unit.len())));
        let stored = e.parameters.clone();
        let id = s.insert_execution(e, None).await.unwrap().id;
        assert_eq!(s.execution_status(id).await.unwrap(), Some(Requested));
        let claimed = s.claim_next_for("w", false).await.unwrap().unwrap();
        assert_eq!(claimed.id, id);
        assert_eq!(claimed.parameters, stored, "size {size}");
        assert_eq!(
            claimed.parameters.keys().collect::<Vec<_>>(),
            ["message", "nested", "blob"]
        );
        assert_eq!(s.execution_status(id).await.unwrap(), Some(Running));
        // Read back whole, and in a list, alike.
        let got = s.get_execution(id).await.unwrap().unwrap();
        assert_eq!(got.parameters, stored, "size {size}");
        let listed = s
            .list_executions(&ExecutionFilter {
                limit: 1,
                before: Some(id + 1),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, id);
        assert_eq!(listed[0].parameters, stored, "size {size}");
    }
    assert_eq!(s.execution_status(9_999_999).await.unwrap(), None);
}

#[tokio::test]
async fn claims_return_large_and_small_parameters_alike() {
    on_both!(claims_return_the_stored_parameters);
}

/// An insert the database refuses (here: a rerun of an execution that does not exist)
/// leaves nothing behind, and the writer takes the next one as before: no transaction is
/// left open on it, small or chunked, with or without an audit entry.
async fn refused_inserts_leave_nothing(s: &Store) {
    let before = s.count_by_status().await.unwrap();
    for size in [10, 2 << 20] {
        let mut e = new_exec("core.echo");
        e.rerun_of = Some(9_999_999);
        e.secrets = None;
        e.parameters.insert("blob".into(), json!("x".repeat(size)));
        assert!(s.insert_execution(e, None).await.is_err(), "size {size}");
    }
    assert_eq!(s.count_by_status().await.unwrap(), before);
    let ok = s
        .insert_execution(new_exec("core.echo"), None)
        .await
        .unwrap();
    assert_eq!(s.execution_status(ok.id).await.unwrap(), Some(Requested));
    let claimed = s.claim_next_for("w", true).await.unwrap().unwrap();
    assert_eq!(claimed.id, ok.id);
    assert_eq!(claimed.parameters, new_exec("core.echo").parameters);
}

#[tokio::test]
async fn a_refused_insert_leaves_nothing_and_the_next_one_goes_through() {
    on_both!(refused_inserts_leave_nothing);
}

/// PostgreSQL: every stored execution wakes the listening workers, whichever way it was
/// inserted (small in one statement; large in chunks; with an audit entry).
async fn inserts_wake_listening_workers(s: &Store) {
    let Some(mut l) = s.listener(true, false).await.unwrap() else {
        return; // SQLite: the process's own workers are woken directly.
    };
    let audit = AuditEntry {
        actor: "tester".into(),
        kind: "execution.secrets".into(),
        subject: String::new(),
        detail: json!({}),
    };
    for (size, audited) in [(10, false), (2 << 20, false), (10, true)] {
        let mut e = new_exec("core.echo");
        e.parameters.insert("blob".into(), json!("x".repeat(size)));
        s.insert_execution(e, audited.then_some(&audit))
            .await
            .unwrap();
        let heard = tokio::time::timeout(std::time::Duration::from_secs(5), l.next())
            .await
            .unwrap_or_else(|_| panic!("no work announced (size {size}, audit {audited})"))
            .unwrap();
        assert_eq!(heard, attune_store::Heard::Work(None));
        // The same, announced to one worker process: the workers hear which.
        let mut e = new_exec("core.echo");
        e.parameters.insert("blob".into(), json!("x".repeat(size)));
        s.insert_execution_then(e, audited.then_some(&audit), Some("w-7"), || false)
            .await
            .unwrap();
        let heard = tokio::time::timeout(std::time::Duration::from_secs(5), l.next())
            .await
            .unwrap_or_else(|_| panic!("no work announced to w-7 (size {size}, audit {audited})"))
            .unwrap();
        assert_eq!(heard, attune_store::Heard::Work(Some("w-7".into())));
    }
    // Passed on to all.
    s.announce_work().await.unwrap();
    let heard = tokio::time::timeout(std::time::Duration::from_secs(5), l.next())
        .await
        .expect("no work announced to all")
        .unwrap();
    assert_eq!(heard, attune_store::Heard::Work(None));
}

#[tokio::test]
async fn every_insert_wakes_listening_workers() {
    on_both!(inserts_wake_listening_workers);
}

/// PostgreSQL: a status change made by another process reaches this one's waiters with
/// whether it is final (migration 0009), so they need not read it back.
#[tokio::test]
async fn another_processes_status_changes_arrive_with_their_status() {
    let pg = PgDatabase::new().await;
    let here = Store::open(&pg.url).await.unwrap();
    let there = Store::open(&pg.url).await.unwrap();
    let mut listener = here.listener(false, true).await.unwrap().unwrap();
    let listening = tokio::spawn(async move { while listener.next().await.is_ok() {} });
    let mut e = new_exec("core.echo");
    e.secrets = None;
    let id = there.insert_execution(e, None).await.unwrap().id;
    let mut changes = here.status_changes(id);
    let poll = std::time::Duration::from_secs(10);
    assert!(there.claim_next_for("w", false).await.unwrap().is_some());
    assert_eq!(changes.changed(poll).await, attune_store::Change::NotFinal);
    assert!(there
        .finish(id, &[Running], Succeeded, &Finish::default())
        .await
        .unwrap());
    assert_eq!(changes.changed(poll).await, attune_store::Change::Final);
    listening.abort();
}

/// PostgreSQL: a token revoked through another server is refused here as soon as the
/// revocation is heard, though this server looked it up a moment before (and keeps the
/// tokens it looked up for a second).
#[tokio::test]
async fn a_token_revoked_by_another_server_is_refused_once_heard() {
    let pg = PgDatabase::new().await;
    let here = Store::open(&pg.url).await.unwrap();
    let there = Store::open(&pg.url).await.unwrap();
    let mut listener = here.listener(false, true).await.unwrap().unwrap();
    there
        .insert_token("ci", "operator", "hash-r", "admin")
        .await
        .unwrap();
    assert!(here.token_by_hash("hash-r").await.unwrap().is_some());
    assert_eq!(there.revoke_tokens("ci", "admin").await.unwrap().len(), 1);
    let wait = std::time::Duration::from_secs(5);
    loop {
        let heard = tokio::time::timeout(wait, listener.next())
            .await
            .expect("the revocation was not announced")
            .unwrap();
        if heard == attune_store::Heard::Tokens {
            break;
        }
    }
    assert!(here.token_by_hash("hash-r").await.unwrap().is_none());
}

/// SQLite: a token revoked by another process on the same file is refused here within a
/// second (there is no announcement to hear; looked-up tokens are read again after 1 s).
#[tokio::test]
async fn a_token_revoked_by_another_process_on_the_file_is_refused_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("attune.db");
    let here = Store::open_sqlite(&file).await.unwrap();
    let there = Store::open_sqlite(&file).await.unwrap();
    here.insert_token("ci", "operator", "hash-r", "admin")
        .await
        .unwrap();
    assert!(here.token_by_hash("hash-r").await.unwrap().is_some());
    assert_eq!(there.revoke_tokens("ci", "admin").await.unwrap().len(), 1);
    // Refused at once by the process that revoked it.
    assert!(there.token_by_hash("hash-r").await.unwrap().is_none());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(here.token_by_hash("hash-r").await.unwrap().is_none());
}

/// SQLite: a new execution and a claim are on disk when the calls that promise it return:
/// each waited for a flush of the WAL (the group commit), and a claim taken unflushed has
/// not until the worker waits for it.
#[tokio::test]
async fn inserts_and_claims_wait_for_a_flush_of_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_sqlite(&dir.path().join("attune.db"))
        .await
        .unwrap();
    let flushes = s.wal_flushes();
    s.insert_execution(new_exec("core.echo"), None)
        .await
        .unwrap();
    assert_eq!(
        s.wal_flushes(),
        flushes + 1,
        "the insert waited for a flush"
    );
    s.insert_execution(new_exec("core.echo"), None)
        .await
        .unwrap();
    assert!(s.claim_next("w1").await.unwrap().is_some());
    assert_eq!(s.wal_flushes(), flushes + 3, "the claim waited for a flush");
    let (_, on_disk) = s.claim_next_unflushed("w1", true).await.unwrap().unwrap();
    assert_eq!(s.wal_flushes(), flushes + 3, "not yet");
    s.flushed(on_disk).await.unwrap();
    assert_eq!(s.wal_flushes(), flushes + 4);
    // Nothing to claim: nothing to flush.
    assert!(s.claim_next_unflushed("w1", true).await.unwrap().is_none());
    assert_eq!(s.wal_flushes(), flushes + 4);
}
