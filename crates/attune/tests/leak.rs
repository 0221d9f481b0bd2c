//! The leak test of issue 13: actions receive secrets from the store and given directly,
//! in all 6 delivery/format combinations, in bash and python; they print each secret raw,
//! in every encoding the masker must know (by the real encoders: Python, node, jq), split
//! over writes and across a 4096-byte boundary, object members one by one. Then the
//! value is searched for, byte for byte: the database file and its WAL, the server's log,
//! every API response and CLI output of the run, every process's cmdline and environ
//! while the actions run, the runtime and data dirs. The only place it may be is the
//! action's own input.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const FORMATS: [&str; 3] = ["json", "yaml", "dotenv"];
const DELIVERIES: [&str; 2] = ["stdin", "file"];

/// The `leak` pack: one action per runtime, format and delivery.
fn leak_pack(root: &std::path::Path) -> std::path::PathBuf {
    let dir = root.join("leak");
    let actions = dir.join("actions");
    std::fs::create_dir_all(&actions).unwrap();
    std::fs::write(dir.join("pack.yaml"), "ref: leak\n").unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/leak");
    for f in ["emit.py", "leak.py", "leak.sh"] {
        std::fs::copy(src.join(f), actions.join(f)).unwrap();
    }
    for (runner, entry, short) in [("python", "leak.py", "py"), ("shell", "leak.sh", "sh")] {
        for fmt in FORMATS {
            for delivery in DELIVERIES {
                let name = format!("{short}_{fmt}_{delivery}");
                std::fs::write(
                    actions.join(format!("{name}.yaml")),
                    format!(
                        "name: {name}\nrunner_type: {runner}\nentry_point: {entry}\nparameter_format: {fmt}\nparameter_delivery: {delivery}\n\
                         parameters:\n  stored: {{type: string, secret: true, required: true}}\n  direct: {{type: string, secret: true, required: true}}\n  creds: {{type: object, secret: true, required: true}}\n"
                    ),
                )
                .unwrap();
            }
        }
    }
    dir
}

/// Lines of emitted output that carried a secret: each must now hold `***`.
const TAGS: &[&str] = &[
    "raw ",
    "split ",
    "xxxxxxxx",
    "b64 ",
    "Authorization",
    "quote ",
    "quote_plus ",
    "quote_safe ",
    "dumps ",
    "dumps_utf8 ",
    "uri ",
    "stringify ",
    "nodeb64 ",
    "jquri ",
    "jqjson ",
    "jqb64 ",
    "member ",
    "err ",
];

#[test]
fn no_secret_appears_anywhere_but_in_the_actions_own_input() {
    let s = TestServer::ready();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    assert_eq!(s.register(&leak_pack(tmp.path())).0, 201);
    let r = rand_suffix();
    let stored = format!("st0red/Pässwörd!*'()~ü😀-{r}");
    let direct = format!("d1rect 'q' \"dq\" $(x) `y` \\ /+= ö-{r}");
    let password = format!("cr3d-pässwörd/!*() {r}");
    let key = format!("k3y-{r}/ü");
    let values = [&stored, &direct, &password, &key];

    // Watch every process while the actions run.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let watcher = {
        let (stop, seen) = (stop.clone(), seen.clone());
        let needles: Vec<Vec<u8>> = values.iter().map(|v| v.as_bytes().to_vec()).collect();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for n in &needles {
                    seen.lock().unwrap().extend(proc_scan(n));
                }
            }
        })
    };

    let mut outputs = String::new();
    // The stored one, through the CLI's stdin.
    let mut set = s
        .cli(&["secret", "set", "stored", "--pack", "leak"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    set.stdin
        .take()
        .unwrap()
        .write_all(stored.as_bytes())
        .unwrap();
    let out = set.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    outputs += &format!("{}{}", stdout(&out), stderr(&out));

    let params = tmp.path().join("params.json");
    std::fs::write(
        &params,
        json!({"direct": direct, "creds": {"password": password, "keys": [key, "other"]}})
            .to_string(),
    )
    .unwrap();
    let mut ids = Vec::new();
    for runtime in ["py", "sh"] {
        for fmt in FORMATS {
            for delivery in DELIVERIES {
                let action = format!("leak.{runtime}_{fmt}_{delivery}");
                let out = s.cli_out(&[
                    "run",
                    &action,
                    "--params-file",
                    params.to_str().unwrap(),
                    "--env",
                    &format!("LEAK_FMT={fmt}"),
                    "--env",
                    &format!("LEAK_WHERE={delivery}"),
                ]);
                let (o, e) = (stdout(&out), stderr(&out));
                assert!(out.status.success(), "{action}: {e}\n{o}");
                outputs += &format!("{o}{e}");
                // Every line that carried a secret now holds *** instead.
                for l in o.lines().filter(|l| TAGS.iter().any(|t| l.starts_with(t))) {
                    assert!(l.contains("***"), "{action}: unmasked line: {l}");
                }
                let masked = o.lines().filter(|l| l.contains("***")).count();
                assert!(
                    masked >= 4 * 41,
                    "{action}: only {masked} masked lines:\n{o}"
                );
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();

    // Every API response of the run: the list, each record, each output.
    let list = Value::from(s.all_executions(""));
    let mut api = list.to_string();
    for e in list.as_array().unwrap() {
        let id = e["id"].as_i64().unwrap();
        ids.push(id);
        let (_, rec) = s.admin("GET", &format!("/api/v1/executions/{id}"), None);
        assert_eq!(rec["status"], "succeeded", "{rec}");
        assert_eq!(rec["result"]["stored"], "***", "{rec}");
        assert_eq!(rec["result"]["creds"]["password"], "***", "{rec}");
        assert_eq!(
            rec["result"]["creds"]["keys"],
            json!(["***", "***"]),
            "{rec}"
        );
        for p in ["stored", "direct", "creds"] {
            assert_eq!(rec["parameters"][p], "********", "{rec}");
        }
        let out = s.cli_out(&["execution", "logs", &id.to_string()]);
        outputs += &format!("{}{}", stdout(&out), stderr(&out));
        let url = format!("{}/api/v1/executions/{id}/output", s.url);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let body = agent
            .get(&url)
            .header("Authorization", format!("Bearer {}", s.token))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        api += &format!("{rec}{body}");
    }
    assert_eq!(ids.len(), 12);
    let (_, audit) = s.admin("GET", "/api/v1/audit?limit=200", None);
    api += &audit.to_string();
    outputs += &stdout(&s.cli_out(&["execution", "list"]));

    let runtime_root = std::path::PathBuf::from(
        serde_json::from_str::<Value>(
            &std::fs::read_to_string(s.data.join("server.json")).unwrap(),
        )
        .unwrap()["pack_cache"]
            .as_str()
            .unwrap(),
    )
    .parent()
    .unwrap()
    .to_path_buf();
    let log = s.log();
    // The log was written at the most verbose level (the test servers' default), with a
    // span for every request and execution.
    assert!(
        log.contains(" DEBUG ") && log.contains(" TRACE "),
        "not a trace-level log"
    );
    assert!(
        log.contains("request{") && log.contains("execution{"),
        "no spans in the log"
    );
    assert_eq!(find_token(&log), None, "a token in the server's log");
    for v in values {
        let b = v.as_bytes();
        assert!(!api.contains(v.as_str()), "a secret in an API response");
        assert!(!outputs.contains(v.as_str()), "a secret in a CLI output");
        assert!(!log.contains(v.as_str()), "a secret in the server's log");
        for f in ["attune.db", "attune.db-wal"] {
            if let Ok(bytes) = std::fs::read(s.data.join(f)) {
                assert!(!bytes.windows(b.len()).any(|w| w == b), "a secret in {f}");
            }
        }
        assert_eq!(tree_contains(&s.data, b), None, "a secret in the data dir");
        assert_eq!(
            tree_contains(&runtime_root, b),
            None,
            "a secret in the runtime dir"
        );
    }
    let hits = seen.lock().unwrap();
    assert!(hits.is_empty(), "a secret in /proc: {hits:?}");
}
