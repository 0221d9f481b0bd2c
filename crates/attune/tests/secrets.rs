//! The secret store end to end (issue 13), through the real binary and its API: scopes
//! and least-privilege resolution, write-only values, the admin's audited reveal, reruns
//! that resolve again and keep what was secret sealed, tokens, the audit log, and key
//! trouble that fails one execution with a clear error while the server keeps serving.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

fn sha(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A pack `name` whose `show` reports the sha256 of its secret parameter `pw` (never the
/// value), and whose `plain` reports its ordinary parameter `pw`'s.
fn secret_pack(root: &Path, name: &str, pw_secret_in_show: bool) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("actions")).unwrap();
    std::fs::write(dir.join("pack.yaml"), format!("ref: {name}\n")).unwrap();
    let report = "import json, sys, hashlib\np = json.loads(sys.stdin.readline())\nv = p.get('pw')\nprint(json.dumps({'sha': hashlib.sha256(v.encode()).hexdigest() if isinstance(v, str) else None, 'given': sorted(p)}))\n";
    for (action, secret) in [("show", pw_secret_in_show), ("plain", false)] {
        std::fs::write(
            dir.join(format!("actions/{action}.yaml")),
            format!("name: {action}\nrunner_type: python\nentry_point: report.py\nparameters:\n  pw: {{type: string, secret: {secret}}}\n"),
        )
        .unwrap();
    }
    std::fs::write(dir.join("actions/report.py"), report).unwrap();
    dir
}

/// `attune secret set` with `value` on stdin.
fn set_secret(s: &TestServer, args: &[&str], value: &str) -> Output {
    let mut a = vec!["secret", "set"];
    a.extend(args);
    let mut child = s
        .cli(&a)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{value}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Runs `action` with `params` through the API; returns its final record.
fn run(s: &TestServer, action: &str, params: Value) -> Value {
    let (st, v) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": action, "parameters": params})),
    );
    assert_eq!(st, 201, "{action}: {v}");
    s.wait_final(v["id"].as_i64().unwrap(), 30)
}

fn got(record: &Value) -> Value {
    assert_eq!(record["status"], "succeeded", "{record}");
    record["result"]["sha"].clone()
}

#[test]
fn a_stored_secret_reaches_only_the_actions_that_declare_it_nearest_scope_first() {
    let s = TestServer::ready();
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(s.register(&secret_pack(tmp.path(), "sa", true)).0, 201);
    assert_eq!(s.register(&secret_pack(tmp.path(), "sb", true)).0, 201);
    let (global, pack_a, action_a) = ("global-pw-1", "pack-a-pw-2", "action-a-pw-3");
    for (args, value) in [
        (vec!["pw"], global),
        (vec!["pw", "--pack", "sa"], pack_a),
        (vec!["pw", "--action", "sa.show"], action_a),
    ] {
        let out = set_secret(&s, &args, value);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            stdout(&out).starts_with("stored secret pw ("),
            "{}",
            stdout(&out)
        );
    }
    // Nearest scope first; pack A's secrets never reach pack B.
    assert_eq!(got(&run(&s, "sa.show", json!({}))), sha(action_a));
    assert_eq!(got(&run(&s, "sb.show", json!({}))), sha(global));
    let out = s.cli_out(&["secret", "delete", "pw", "--action", "sa.show"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(got(&run(&s, "sa.show", json!({}))), sha(pack_a));
    // Explicitly, by reference; a value in the request wins over the store.
    assert_eq!(
        got(&run(&s, "sb.show", json!({"pw": {"$secret": "pw"}}))),
        sha(global)
    );
    assert_eq!(
        got(&run(&s, "sb.show", json!({"pw": "given"}))),
        sha("given")
    );
    // A parameter not declared secret never gets a stored secret: not by name...
    let r = run(&s, "sa.plain", json!({}));
    assert_eq!(r["result"]["given"], json!([]), "{r}");
    assert_eq!(
        got(&run(&s, "sa.plain", json!({"pw": "literal"}))),
        sha("literal")
    );
    // ...and not by reference: 422, naming the parameter, creating nothing.
    let (st, v) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": "sa.plain", "parameters": {"pw": {"$secret": "pw"}}})),
    );
    assert_eq!(st, 422, "{v}");
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("`pw` is not declared `secret: true`"),
        "{v}"
    );
    // A reference to a secret that does not exist says where it looked.
    let (st, v) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": "sb.show", "parameters": {"pw": {"$secret": "nope"}}})),
    );
    assert_eq!(st, 422, "{v}");
    assert_eq!(
        v["errors"][0],
        "`pw`: no stored secret `nope` for sb.show (looked in action:sb.show, pack:sb, global)"
    );
    // The record says where each came from, and shows no value.
    let r = run(&s, "sa.show", json!({}));
    assert_eq!(r["parameters"]["pw"], "********");
    assert_eq!(
        r["secret_refs"]["pw"],
        json!({"name": "pw", "scope": "pack:sa", "explicit": false})
    );
    let everything = format!("{}{}", Value::from(s.all_executions("")), s.log());
    for v in [global, pack_a, action_a] {
        assert!(
            !everything.contains(v),
            "a stored secret in an API response or the log"
        );
    }
}

#[test]
fn values_are_write_only_reveal_is_for_admins_and_everything_is_audited() {
    let s = TestServer::ready();
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(s.register(&secret_pack(tmp.path(), "sc", true)).0, 201);
    let value = format!("v-{}", rand_suffix());

    // Never on the command line: refused with the reason, the value not repeated.
    let out = s.cli_out(&["secret", "set", "pw", &value]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("visible to every process"), "{err}");
    assert!(
        !err.contains(&value),
        "the refusal repeats the value: {err}"
    );

    assert!(set_secret(&s, &["pw", "--pack", "sc"], "first-value-9f3c")
        .status
        .success());
    assert!(set_secret(&s, &["pw", "--pack", "sc"], &value)
        .status
        .success());
    // The list: names and scopes, never a value.
    let list = s.cli_json(&["secret", "list"], 0);
    assert_eq!(list[0]["name"], "pw");
    assert_eq!(list[0]["scope"], "pack:sc");
    assert!(!list.to_string().contains(&value));
    let table = stdout(&s.cli_out(&["secret", "list"]));
    assert!(
        table.contains("pack:sc") && !table.contains(&value),
        "{table}"
    );

    // Reading one back: --reveal, admin only.
    let out = s.cli_out(&["secret", "get", "pw", "--pack", "sc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--reveal"), "{}", stderr(&out));
    let operator = s.token_for("operator");
    let (st, v) = s.call(
        "POST",
        "/api/v1/secrets/pw/reveal?scope=pack:sc",
        Some(&operator),
        None,
    );
    assert_eq!(st, 403, "{v}");
    let (st, _) = s.call(
        "PUT",
        "/api/v1/secrets/pw",
        Some(&operator),
        Some(&json!({"value": "x"})),
    );
    assert_eq!(st, 403, "an operator set a secret");
    let out = s.cli_out(&["secret", "get", "pw", "--pack", "sc", "--reveal"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{value}\n"));

    // An execution given it, a cancel, a token revoked, a pack removed.
    let r = run(&s, "sc.show", json!({}));
    assert_eq!(got(&r), sha(&value));
    let (st, q) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": "core.sleep", "parameters": {"seconds": 30}})),
    );
    assert_eq!(st, 201);
    let (st, _) = s.admin(
        "POST",
        &format!("/api/v1/executions/{}/cancel", q["id"]),
        None,
    );
    assert_eq!(st, 202);
    let out = s.cli_out(&["token", "revoke", "operator"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.cli_out(&["secret", "delete", "pw", "--pack", "sc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.cli_out(&["pack", "remove", "sc"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let audit = s.cli_json(&["audit", "list"], 0);
    let kinds: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in [
        "secret.create",
        "secret.update",
        "secret.reveal",
        "secret.delete",
        "execution.secrets",
        "execution.cancel",
        "token.create",
        "token.revoke",
        "pack.register",
        "pack.remove",
    ] {
        assert!(kinds.contains(&k), "no {k} entry in {kinds:?}");
    }
    let given = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "execution.secrets")
        .unwrap();
    assert_eq!(given["subject"], format!("execution {}", r["id"]));
    assert_eq!(
        given["detail"]["secrets"],
        json!([{"parameter": "pw", "source": "store", "name": "pw", "scope": "pack:sc"}])
    );
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .all(|e| ["admin", "attune"].contains(&e["actor"].as_str().unwrap())),
        "an entry without its actor: {audit}"
    );
    // Filters: a family, a time.
    let secrets_only = s.cli_json(&["audit", "list", "--kind", "secret"], 0);
    assert!(secrets_only
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["kind"].as_str().unwrap().starts_with("secret.")));
    assert_eq!(secrets_only.as_array().unwrap().len(), 4);
    assert!(
        s.cli_json(&["audit", "list", "--since", "1h"], 0)
            .as_array()
            .unwrap()
            .len()
            >= 10
    );
    let out = s.cli_out(&["audit", "list", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Append-only: the API has no way to change it, and the database refuses.
    let (st, _) = s.admin("DELETE", "/api/v1/audit", None);
    assert_eq!(st, 405);
    let text = format!("{audit}{}", stdout(&s.cli_out(&["audit", "list"])));
    assert!(
        !text.contains(&value) && !text.contains("first-value-9f3c"),
        "a value in the audit log"
    );
    assert!(!s.log().contains(&value), "the value in the server log");
}

#[test]
fn a_rerun_resolves_stored_secrets_again_and_what_was_secret_stays_sealed() {
    let s = TestServer::ready();
    let tmp = tempfile::tempdir().unwrap();
    let dir = secret_pack(tmp.path(), "sd", true);
    assert_eq!(s.register(&dir).0, 201);
    // From the store: the rerun gets the value the store has now.
    assert!(set_secret(&s, &["pw"], "old-stored").status.success());
    let first = run(&s, "sd.show", json!({}));
    assert_eq!(got(&first), sha("old-stored"));
    assert!(set_secret(&s, &["pw"], "new-stored").status.success());
    let (st, again) = s.admin(
        "POST",
        &format!("/api/v1/executions/{}/rerun", first["id"]),
        None,
    );
    assert_eq!(st, 201, "{again}");
    assert_eq!(
        got(&s.wait_final(again["id"].as_i64().unwrap(), 30)),
        sha("new-stored")
    );

    // Given in the request, then the pack stops calling it secret: the rerun delivers the
    // same value and keeps it sealed and redacted.
    let direct = format!("direct-{}", rand_suffix());
    let first = run(&s, "sd.show", json!({"pw": direct}));
    assert_eq!(got(&first), sha(&direct));
    let dir = secret_pack(&tmp.path().join("v2"), "sd", false);
    assert_eq!(s.register(&dir).0, 201);
    let (st, again) = s.admin(
        "POST",
        &format!("/api/v1/executions/{}/rerun", first["id"]),
        None,
    );
    assert_eq!(st, 201, "{again}");
    assert_eq!(again["parameters"]["pw"], "********", "{again}");
    let done = s.wait_final(again["id"].as_i64().unwrap(), 30);
    assert_eq!(got(&done), sha(&direct));
    for f in ["attune.db", "attune.db-wal"] {
        if let Ok(bytes) = std::fs::read(s.data.join(f)) {
            assert!(
                !bytes.windows(direct.len()).any(|w| w == direct.as_bytes()),
                "the once-secret value is in {f} in plain text"
            );
        }
    }
    let (_, all) = s.admin("GET", "/api/v1/executions?limit=100", None);
    assert!(!all.to_string().contains(&direct));
}

#[test]
fn tokens_are_listed_without_their_secret_and_a_revoked_one_is_refused_at_once() {
    let s = TestServer::ready();
    let viewer = s.token_for("viewer");
    let (st, _) = s.call("GET", "/api/v1/actions", Some(&viewer), None);
    assert_eq!(st, 200);
    let list = s.cli_json(&["token", "list"], 0);
    let text = list.to_string();
    assert!(
        !text.contains(&viewer) && !text.contains(&s.token),
        "a token in the list"
    );
    let v = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "viewer")
        .unwrap();
    assert_eq!(v["role"], "viewer");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while s.cli_json(&["token", "list"], 0)[1]["last_used_at"].is_null() {
        assert!(
            std::time::Instant::now() < deadline,
            "last use never recorded"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let table = stdout(&s.cli_out(&["token", "list"]));
    assert!(
        table.contains("LAST USED") && table.contains("viewer"),
        "{table}"
    );
    let out = s.cli_out(&["token", "revoke", &v["id"].to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("revoked viewer token `viewer`"),
        "{}",
        stdout(&out)
    );
    let (st, body) = s.call("GET", "/api/v1/actions", Some(&viewer), None);
    assert_eq!(st, 401, "{body}");
    let out = s.cli_out(&["token", "revoke", "viewer"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no unrevoked token named `viewer`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_wrong_key_fails_that_execution_clearly_and_the_server_keeps_serving() {
    let tmp = state_dir();
    let data = tmp.path().join("data");
    let packs = tempfile::tempdir().unwrap();
    let key = tmp.path().join("other.key");
    {
        let s = TestServer::start_in(&data, &["--workers", "1"]);
        assert_eq!(s.register(&secret_pack(packs.path(), "se", true)).0, 201);
        assert!(set_secret(&s, &["pw"], "sealed-with-the-first-key")
            .status
            .success());
        assert_eq!(
            got(&run(&s, "se.show", json!({}))),
            sha("sealed-with-the-first-key")
        );
    }
    // A key file given by path must exist: no new key is made for a typo.
    let out = std::process::Command::new(bin())
        .arg("--data-dir")
        .arg(&data)
        .args(["server", "--listen", "127.0.0.1:0", "--secret-key-file"])
        .arg(&key)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("other.key"), "{}", stderr(&out));
    assert!(!key.exists());
    // Another key: what the first sealed does not open; everything else works.
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let s = TestServer::start_in(
        &data,
        &["--workers", "1", "--secret-key-file", key.to_str().unwrap()],
    );
    let (st, v) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": "se.show", "parameters": {}})),
    );
    assert_eq!(st, 500, "{v}");
    assert_eq!(
        v["detail"],
        "cannot decrypt stored secret `pw` (global): wrong key (--secret-key-file) or tampered data"
    );
    let (st, v) = s.admin("POST", "/api/v1/secrets/pw/reveal", None);
    assert_eq!(st, 500, "{v}");
    assert_eq!(
        got(&run(&s, "se.show", json!({"pw": "given"}))),
        sha("given")
    );
    assert_eq!(run(&s, "core.noop", json!({}))["status"], "succeeded");
    // Set again under the new key: it works again, and nothing old was overwritten unasked.
    assert!(set_secret(&s, &["pw"], "resealed").status.success());
    assert_eq!(got(&run(&s, "se.show", json!({}))), sha("resealed"));

    // A tampered ciphertext: one bit flipped in the stored row. The same clear error;
    // nothing is delivered, the row is left as it is.
    let flip = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nv = bytearray(c.execute(\"SELECT value FROM secrets WHERE name = 'pw'\").fetchone()[0])\nv[20] ^= 1\nc.execute(\"UPDATE secrets SET value = ? WHERE name = 'pw'\", (bytes(v),))\nc.commit()\n";
    let out = std::process::Command::new("python3")
        .args(["-c", flip])
        .arg(data.join("attune.db"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let before = Value::from(s.all_executions(""));
    let (st, v) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": "se.show", "parameters": {}})),
    );
    assert_eq!(st, 500, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("tampered data"),
        "{v}"
    );
    assert_eq!(
        Value::from(s.all_executions("")),
        before,
        "a record was made"
    );
    assert_eq!(run(&s, "core.noop", json!({}))["status"], "succeeded");
}

#[test]
fn a_nul_byte_for_a_dotenv_action_is_refused_when_the_request_is_made() {
    let s = TestServer::ready();
    let tmp = tempfile::tempdir().unwrap();
    let dir = one_action_pack(
        tmp.path(),
        "sn",
        "env",
        "runner_type: shell\nparameter_format: dotenv\nparameters:\n  v: {type: string}\n",
        "env.sh",
        "#!/bin/bash\ncat >/dev/null\n",
    );
    assert_eq!(s.register(&dir).0, 201);
    let before = Value::from(s.all_executions(""));
    let (st, v) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": "sn.env", "parameters": {"v": "a\u{0}b"}})),
    );
    assert_eq!(st, 422, "{v}");
    assert_eq!(
        v["errors"][0],
        "parameter `v` contains a NUL byte, which the dotenv format cannot carry; use json or yaml"
    );
    assert_eq!(Value::from(s.all_executions("")), before);
}

#[test]
fn a_misspelt_key_in_a_parameter_is_refused_at_registration_naming_file_and_key() {
    let s = TestServer::ready();
    let tmp = tempfile::tempdir().unwrap();
    let dir = one_action_pack(
        tmp.path(),
        "sm",
        "login",
        "runner_type: shell\nparameters:\n  pw: {type: string, secrte: true}\n",
        "login.sh",
        "#!/bin/bash\ncat\n",
    );
    let (st, v) = s.register(&dir);
    assert_eq!(st, 422, "{v}");
    let e = v["errors"][0].as_str().unwrap();
    assert!(
        e.contains("actions/login.yaml")
            && e.contains("`parameters.pw`: unknown key `secrte` (did you mean `secret`?)"),
        "{e}"
    );
    assert!(
        !e.contains(tmp.path().to_str().unwrap()),
        "a server-side path: {e}"
    );
    // And locally, before anything runs or takes the would-be secret on argv.
    let out = std::process::Command::new(bin())
        .args(["run", "--local", "--pack-dir"])
        .arg(&dir)
        .args(["sm.login", "pw=hunter2"])
        .env("ATTUNE_DATA_DIR", s.data.join("local"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown key `secrte`"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("hunter2"));
}

/// A tiny HTTP server on 127.0.0.1: answers each request with `respond(path)` and records
/// the request's head.
fn http_server(
    respond: impl Fn(&str) -> String + Send + 'static,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
            log.lock().unwrap().push(head);
            let mut conn = conn;
            let _ = conn.write_all(respond(&path).as_bytes());
        }
    });
    (port, seen)
}

#[test]
fn http_request_never_sends_the_token_to_another_origin() {
    let (other, other_seen) = http_server(|_| {
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nother".into()
    });
    let (first, first_seen) = http_server(move |path| {
        match path {
        "/elsewhere" => format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{other}/landing\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        "/same" => "HTTP/1.1 302 Found\r\nLocation: /landed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        _ => "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nhere".into(),
    }
    });
    let token = format!("tok-{}", rand_suffix());
    let p = TestPack::new("unused");
    for (path, body) in [("/elsewhere", "other"), ("/same", "here")] {
        let params = p.params_file(&json!({
            "url": format!("http://127.0.0.1:{first}{path}"),
            "auth_token": token,
            "headers": {"Cookie": "session=abc"}
        }));
        let out = std::process::Command::new(bin())
            .args(["run", "--local", "core.http_request", "--params-file"])
            .arg(&params)
            .args(["-o", "json"])
            .env("ATTUNE_DATA_DIR", &p.data)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{path}: {}", stderr(&out));
        let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rec["result"]["body"], body, "{rec}");
    }
    let auth = format!("authorization: bearer {token}");
    let first_seen = first_seen.lock().unwrap().join("\n").to_lowercase();
    let other_seen = other_seen.lock().unwrap().join("\n").to_lowercase();
    // Same origin: the token follows the redirect to /landed.
    assert_eq!(first_seen.matches(&auth).count(), 3, "{first_seen}");
    assert!(first_seen.contains("get /landed"), "{first_seen}");
    // Another port is another origin: neither the token nor the cookie goes there.
    assert!(other_seen.contains("get /landing"), "{other_seen}");
    assert!(
        !other_seen.contains(&token.to_lowercase()),
        "the token went to another origin: {other_seen}"
    );
    assert!(
        !other_seen.contains("authorization") && !other_seen.contains("session=abc"),
        "{other_seen}"
    );
}

#[test]
fn at_a_terminal_the_value_is_typed_at_a_prompt_that_does_not_echo_it() {
    let s = TestServer::ready();
    let value = format!("typed-{}", rand_suffix());
    // A pseudo-terminal, driven by Python's pty module: wait for the prompt, type, read.
    let driver = r#"
import os, pty, sys, termios, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:4] + ["secret", "set", "typed"])
seen = b""
deadline = time.time() + 20
while b"(not shown): " not in seen and time.time() < deadline:
    seen += os.read(fd, 1024)
# Type only once the terminal has stopped echoing, as a person would (the master reads the
# terminal's settings).
while termios.tcgetattr(fd)[3] & termios.ECHO and time.time() < deadline:
    time.sleep(0.01)
os.write(fd, sys.argv[4].encode() + b"\r")
while True:
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", driver, bin(), "--data-dir"])
        .arg(&s.data)
        .arg(&value)
        .env_remove("ATTUNE_TOKEN")
        .env_remove("ATTUNE_URL")
        .output()
        .unwrap();
    let terminal = stdout(&out);
    assert!(out.status.success(), "{terminal} {}", stderr(&out));
    assert!(
        terminal.contains("value of secret typed (not shown): "),
        "{terminal}"
    );
    assert!(
        terminal.contains("stored secret typed (global)"),
        "{terminal}"
    );
    assert!(
        !terminal.contains(&value),
        "the typed value was echoed: {terminal}"
    );
    let out = s.cli_out(&["secret", "get", "typed", "--reveal"]);
    assert_eq!(stdout(&out), format!("{value}\n"), "{}", stderr(&out));
}
