//! End-to-end tests of the example packs in `examples/`: every example action runs through the
//! real `attune` binary (`attune run --local --pack-dir examples …`), each run in a fresh data
//! dir, and the tests check what a user sees — exit code, output, the `-o json` record — and
//! that a secret given to an action never shows up in what `attune` prints.
//!
//! The examples need `jq`, kislyuk's `yq` and PyYAML. Nothing is skipped: a missing tool fails
//! the test that needs it, saying what to install.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Every example action; `every_example_action_is_tested` keeps this list honest.
const TESTED: &[&str] = &[
    "formats.dotenv_file",
    "formats.dotenv_stdin",
    "formats.json_stdin",
    "formats.yaml_file",
    "mypack.process_config",
    "mypack.python_yaml_file",
    "mypack.secure_action",
    "mypack.shell_json_stdin",
];

/// Upper bound for one run, so that a hung action fails the test instead of hanging it.
const RUN_TIMEOUT: &str = "30";

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// What one `attune` invocation showed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Fails if `secret` appears in anything `attune` printed.
    fn assert_hides(&self, secret: &str) {
        assert!(
            !self.stdout.contains(secret),
            "secret leaked on stdout:\n{}",
            self.stdout
        );
        assert!(
            !self.stderr.contains(secret),
            "secret leaked on stderr:\n{}",
            self.stderr
        );
    }

    /// The `-o json` execution record.
    fn record(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not a JSON record ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `attune run --local --pack-dir examples ACTION ARGS…` with a fresh data dir and a fresh
/// `XDG_RUNTIME_DIR` (where the per-execution directory goes). `params`, if given, goes in a
/// `--params-file` (the only way to pass a secret parameter). Afterwards no file may be left in
/// the runtime dir (the parameter file is removed with the process), and when `secret` is given,
/// no file in the data or runtime dir may hold it.
fn attune(action: &str, args: &[&str], params: Option<&Value>, secret: Option<&str>) -> Run {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data_dir = tmp.path().join("data");
    let runtime_dir = tmp.path().join("runtime");
    std::fs::create_dir(&runtime_dir).expect("create runtime dir");
    std::fs::set_permissions(&runtime_dir, std::fs::Permissions::from_mode(0o700))
        .expect("chmod runtime dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_attune"));
    cmd.env("ATTUNE_DATA_DIR", &data_dir)
        .env("XDG_RUNTIME_DIR", &runtime_dir)
        .args(["run", "--local", "--timeout", RUN_TIMEOUT, "--pack-dir"])
        .arg(examples_dir())
        .arg(action)
        .args(args)
        .stdin(Stdio::null());
    if let Some(params) = params {
        let file = tmp.path().join("params.json");
        std::fs::write(&file, params.to_string()).expect("write params file");
        cmd.arg("--params-file").arg(&file);
    }
    let out = cmd.output().expect("run attune");
    let left = files_under(&runtime_dir);
    assert!(
        left.is_empty(),
        "files left behind in XDG_RUNTIME_DIR: {left:?}"
    );
    if let Some(secret) = secret {
        for file in files_under(&data_dir) {
            let bytes = std::fs::read(&file).unwrap_or_default();
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "the secret is stored in {}", file.display());
        }
    }
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// Runs an example as a user would, then again with `-o json`, and returns both. The record's
/// stdout must be what the first run streamed.
fn run_example(
    action: &str,
    args: &[&str],
    params: Option<&Value>,
    secret: Option<&str>,
) -> (Run, Value) {
    let live = attune(action, args, params, secret);
    let mut json_args = args.to_vec();
    json_args.extend(["-o", "json"]);
    let structured = attune(action, &json_args, params, secret);
    if let Some(secret) = secret {
        live.assert_hides(secret);
        structured.assert_hides(secret);
    }
    assert_eq!(
        live.code, structured.code,
        "-o json changed the exit code:\n{live:?}\n{structured:?}"
    );
    let record = structured.record();
    assert_eq!(record["action_ref"], action);
    assert_eq!(
        record["stdout"],
        live.stdout.as_str(),
        "stored stdout differs from streamed stdout"
    );
    // On failure attune adds a line of its own after the action's stderr.
    let stored_stderr = record["stderr"].as_str().expect("stderr in the record");
    assert!(
        live.stderr.starts_with(stored_stderr),
        "stored stderr differs from streamed stderr:\n{live:?}\n{structured:?}"
    );
    (live, record)
}

/// Every file (not directory) under `dir`; none if `dir` does not exist.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for path in entries.flatten().map(|e| e.path()) {
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The first 12 hex digits of the SHA-256 of `s`, as the format examples print it.
fn fingerprint(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..12]
        .to_string()
}

/// Fails, saying what to install, unless `program args…` runs and succeeds on `input`.
fn require(program: &str, args: &[&str], input: &str, install: &str) {
    let ok = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .expect("piped stdin")
                .write_all(input.as_bytes())?;
            child.wait()
        })
        .is_ok_and(|status| status.success());
    assert!(
        ok,
        "`{program} {}` failed: the examples need it; {install}",
        args.join(" ")
    );
}

fn require_jq() {
    require(
        "jq",
        &["-r", ".a"],
        r#"{"a":1}"#,
        "install jq (Debian: apt-get install jq)",
    );
}

fn require_yq() {
    // `-y` (print YAML) is kislyuk's yq, the jq wrapper the example is written for; mikefarah's
    // yq has no such flag.
    require(
        "yq",
        &["-y", "."],
        "a: 1\n",
        "install kislyuk's yq (Debian: apt-get install yq, or pip install yq), not mikefarah's",
    );
}

fn require_pyyaml() {
    require(
        "python3",
        &["-c", "import yaml"],
        "",
        "install PyYAML for python3 (Debian: apt-get install python3-yaml, or pip install pyyaml)",
    );
}

/// A request received by the test HTTP server.
struct Request {
    request_line: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Value,
}

/// Starts an HTTP server on a free port of 127.0.0.1 that answers `count` requests with
/// `status` and a JSON body `{"authorization": <the Authorization header>, "received": <the
/// request body>}`, and reports each request on the returned channel. It echoes the header on
/// purpose: an endpoint that reflects the token must not make `attune` print it.
fn http_server(status: &'static str, count: usize) -> (String, mpsc::Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let url = format!(
        "http://{}/tickets",
        listener.local_addr().expect("local addr")
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..count {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("read timeout");
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            reader.read_line(&mut request_line).expect("request line");
            let (mut authorization, mut content_type, mut length) = (None, None, 0);
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("header line");
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').expect("header has a colon");
                let value = value.trim().to_string();
                match name.to_ascii_lowercase().as_str() {
                    "authorization" => authorization = Some(value),
                    "content-type" => content_type = Some(value),
                    "content-length" => length = value.parse().expect("content-length"),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("request body");
            let body: Value = serde_json::from_slice(&body).expect("request body is JSON");
            let answer = json!({"authorization": authorization, "received": body}).to_string();
            let mut stream = reader.into_inner();
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            stream
                .write_all(response.as_bytes())
                .expect("write response");
            let request = Request {
                request_line: request_line.trim_end().to_string(),
                authorization,
                content_type,
                body,
            };
            if tx.send(request).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

fn received(rx: &mpsc::Receiver<Request>) -> Request {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the action sent no request to the test server")
}

#[test]
fn every_example_action_is_tested() {
    let mut found = Vec::new();
    for pack in std::fs::read_dir(examples_dir()).expect("examples/") {
        let pack = pack.expect("dir entry").path();
        let Ok(actions) = std::fs::read_dir(pack.join("actions")) else {
            continue;
        };
        let pack_name = pack
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for action in actions {
            let path = action.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let name = path
                    .file_stem()
                    .expect("stem")
                    .to_string_lossy()
                    .into_owned();
                found.push(format!("{pack_name}.{name}"));
            }
        }
    }
    found.sort();
    assert_eq!(
        found, TESTED,
        "an example action was added or removed: test it here"
    );
}

// ---- mypack.secure_action: python, stdin/json, the delimiter-splitting reader ----

#[test]
fn secure_action_posts_data_with_the_bearer_token() {
    let token = "tok-5fW9qLx2RmZ8";
    let (url, rx) = http_server("200 OK", 2);
    let params =
        json!({"api_token": token, "endpoint": url, "data": {"ticket": 42, "note": "disk full"}});
    let (live, record) = run_example("mypack.secure_action", &[], Some(&params), Some(token));

    for _ in 0..2 {
        let request = received(&rx);
        assert_eq!(request.request_line, "POST /tickets HTTP/1.1");
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {token}").as_str())
        );
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
        assert_eq!(request.body, json!({"ticket": 42, "note": "disk full"}));
    }

    assert_eq!(live.code, Some(0), "{live:?}");
    // The server echoed the Authorization header; attune masked the token in the output.
    let expected = json!({
        "status_code": 200,
        "response": {"authorization": "Bearer ***", "received": {"ticket": 42, "note": "disk full"}},
        "success": true,
    });
    let printed: Value =
        serde_json::from_str(live.stdout.trim_end()).expect("one JSON line on stdout");
    assert_eq!(printed, expected);
    assert_eq!(live.stderr, "");

    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["exit_code"], 0);
    assert_eq!(record["result"], expected);
    assert_eq!(
        record["parameters"],
        json!({"api_token": "********", "endpoint": url, "data": {"ticket": 42, "note": "disk full"}})
    );
}

#[test]
fn secure_action_fails_when_the_endpoint_refuses() {
    let token = "tok-Rejected-77aa";
    let (url, rx) = http_server("401 Unauthorized", 2);
    let params = json!({"api_token": token, "endpoint": url});
    let (live, record) = run_example("mypack.secure_action", &[], Some(&params), Some(token));
    assert_eq!(received(&rx).body, json!({}), "data defaults to {{}}");

    assert_eq!(live.code, Some(1), "{live:?}");
    let expected = json!({"status_code": 401, "response": null, "success": false});
    assert_eq!(
        serde_json::from_str::<Value>(live.stdout.trim_end()).expect("JSON line"),
        expected
    );
    assert!(
        live.stderr
            .contains("mypack.secure_action failed: exit code 1"),
        "{live:?}"
    );
    assert_eq!(record["status"], "failed");
    assert_eq!(record["exit_code"], 1);
    assert_eq!(record["result"], expected);
    assert_eq!(record["parameters"]["api_token"], "********");
}

#[test]
fn secure_action_still_reads_the_old_delimited_document() {
    // Attune sends one document, but the reader was written for parameters and secrets split by
    // ---ATTUNE_PARAMS_END---; fed that form directly, it must merge the two halves.
    let token = "tok-Delimited-0042";
    let (url, rx) = http_server("200 OK", 1);
    let stdin = format!(
        "{}\n---ATTUNE_PARAMS_END---\n{}\n",
        json!({"endpoint": url, "data": {"via": "delimiter"}}),
        json!({"api_token": token})
    );
    let mut child = Command::new("python3")
        .arg(examples_dir().join("mypack/actions/secure_action.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let request = received(&rx);
    assert_eq!(request.authorization, Some(format!("Bearer {token}")));
    assert_eq!(request.body, json!({"via": "delimiter"}));
}

#[test]
fn secure_action_is_refused_before_it_runs_without_its_required_parameters() {
    let token = "tok-NeverSent-9x";
    let run = attune(
        "mypack.secure_action",
        &[],
        Some(&json!({"api_token": token})),
        Some(token),
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("parameter `endpoint` is required"),
        "{run:?}"
    );
    run.assert_hides(token);

    // A secret on the command line is refused without being repeated.
    let arg = format!("api_token={token}");
    let run = attune(
        "mypack.secure_action",
        &["endpoint=http://127.0.0.1:9/", &arg],
        None,
        None,
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("parameter `api_token` is secret"),
        "{run:?}"
    );
    assert!(run.stderr.contains("--params-file"), "{run:?}");
    run.assert_hides(token);
}

// ---- mypack.shell_json_stdin: bash, `read -r PARAMS_JSON` + jq ----

#[test]
fn shell_json_stdin_reads_one_json_line_with_jq() {
    require_jq();
    let message = r#"it's "quoted", a \backslash, $HOME and ünïcode"#;
    let (live, record) = run_example(
        "mypack.shell_json_stdin",
        &["count=7"],
        Some(&json!({"message": message})),
        None,
    );
    assert_eq!(live.code, Some(0), "{live:?}");
    assert_eq!(live.stdout, format!("Message: {message}, Count: 7\n"));
    assert_eq!(live.stderr, "");
    assert_eq!(record["status"], "succeeded");
    assert_eq!(
        record["parameters"],
        json!({"message": message, "count": 7})
    );
    assert_eq!(
        record["result"],
        Value::Null,
        "plain text output is no result"
    );
}

#[test]
fn shell_json_stdin_falls_back_to_jq_defaults() {
    require_jq();
    let (live, record) = run_example("mypack.shell_json_stdin", &[], None, None);
    assert_eq!(live.code, Some(0), "{live:?}");
    assert_eq!(live.stdout, "Message: default, Count: 0\n");
    assert_eq!(record["parameters"], json!({}));
}

// ---- mypack.python_yaml_file: python, file/yaml, yaml.safe_load ----

#[test]
fn python_yaml_file_reads_the_parameter_file() {
    require_pyyaml();
    // "yes" and "1.0" are strings, and must reach the script as strings through YAML.
    let (live, record) = run_example(
        "mypack.python_yaml_file",
        &["message=yes", "count=3"],
        None,
        None,
    );
    assert_eq!(live.code, Some(0), "{live:?}");
    assert_eq!(live.stdout, "Message: yes, Count: 3\n");
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["parameters"], json!({"message": "yes", "count": 3}));

    let (live, _) = run_example("mypack.python_yaml_file", &["message=1.0"], None, None);
    assert_eq!(live.stdout, "Message: 1.0, Count: 0\n");
}

// ---- mypack.process_config: bash, file/yaml, yq ----

#[test]
fn process_config_reads_the_yaml_file_with_yq() {
    require_yq();
    let config = json!({"replicas": 3, "image": "nginx:1.27", "labels": {"tier": "web"}});
    let params = json!({"config": config, "environment": "staging"});
    let (live, record) = run_example("mypack.process_config", &[], Some(&params), None);
    assert_eq!(live.code, Some(0), "{live:?}");
    assert_eq!(
        live.stdout,
        // In the order the request gave (DESIGN.md §2), not sorted.
        "Processing configuration for environment: staging\n\
         Config: replicas: 3\n\
         image: nginx:1.27\n\
         labels:\n  tier: web\n\
         Configuration processed successfully\n"
    );
    assert_eq!(live.stderr, "");
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["parameters"], params);
}

#[test]
fn process_config_defaults_to_dev_and_rejects_unknown_environments() {
    require_yq();
    let (live, _) = run_example("mypack.process_config", &["config={}"], None, None);
    assert_eq!(live.code, Some(0), "{live:?}");
    assert!(
        live.stdout
            .starts_with("Processing configuration for environment: dev\nConfig: {}\n"),
        "{live:?}"
    );

    let run = attune(
        "mypack.process_config",
        &["config={}", "environment=qa"],
        None,
        None,
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains(
            r#"`environment` must be one of: "dev", "staging", "prod", got the string "qa""#
        ),
        "{run:?}"
    );
    assert_eq!(run.stdout, "");
}

// ---- formats: one small action per format ----

#[test]
fn format_json_stdin() {
    let key = "key-JsonStdin-31337";
    let (live, record) = run_example(
        "formats.json_stdin",
        &["name=Ada Lovelace", "count=2"],
        Some(&json!({"api_key": key})),
        Some(key),
    );
    assert_eq!(live.code, Some(0), "{live:?}");
    let result = json!({"greeted": "Ada Lovelace", "key_fingerprint": fingerprint(key)});
    let lines: Vec<&str> = live.stdout.lines().collect();
    assert_eq!(
        lines[..2],
        ["Hello, Ada Lovelace!", "Hello, Ada Lovelace!"],
        "{live:?}"
    );
    assert_eq!(lines.len(), 3, "{live:?}");
    assert_eq!(
        serde_json::from_str::<Value>(lines[2]).expect("JSON result line"),
        result
    );
    assert_eq!(live.stderr, "");
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["result"], result);
    assert_eq!(
        record["parameters"],
        json!({"name": "Ada Lovelace", "count": 2, "api_key": "********"})
    );
}

#[test]
fn format_yaml_file() {
    require_pyyaml();
    let key = "key-YamlFile-27182";
    let params = json!({
        "version": "1.10",
        "hosts": ["a.example", "b.example"],
        "settings": {"debug": "yes", "workers": 4, "ratio": null},
        "api_key": key,
    });
    let (live, record) = run_example("formats.yaml_file", &[], Some(&params), Some(key));
    assert_eq!(live.code, Some(0), "{live:?}");
    let result = json!({"version": "1.10", "hosts": 2, "key_fingerprint": fingerprint(key)});
    let last = live.stdout.lines().last().expect("output");
    assert_eq!(
        serde_json::from_str::<Value>(last).expect("JSON result line"),
        result
    );
    assert!(
        live.stdout.starts_with(
            "Deploying version 1.10 to 2 host(s): a.example, b.example\n  \
             debug = 'yes'\n  ratio = None\n  workers = 4\n"
        ),
        "{live:?}"
    );
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["result"], result);
    assert_eq!(record["parameters"]["api_key"], "********");
    assert_eq!(record["parameters"]["version"], "1.10");
}

#[test]
fn format_dotenv_stdin() {
    let token = "tok-DotenvStdin-1618";
    // Sourcing the dotenv lines must run nothing and keep every byte.
    let name = "O'Brien $(echo injected) `id`\nsecond line";
    let (live, record) = run_example(
        "formats.dotenv_stdin",
        &[],
        Some(&json!({"name": name, "api_token": token})),
        Some(token),
    );
    assert_eq!(live.code, Some(0), "{live:?}");
    assert_eq!(
        live.stdout,
        format!("Hello, {name}!\nkey fingerprint: {}\n", fingerprint(token))
    );
    assert_eq!(live.stderr, "");
    assert_eq!(record["status"], "succeeded");
    assert_eq!(
        record["parameters"],
        json!({"name": name, "greeting": "Hello", "api_token": "********"})
    );
}

#[test]
fn format_dotenv_file() {
    let token = "tok-DotenvFile-1414";
    let secrets = json!({"api_token": token});
    let (live, record) = run_example(
        "formats.dotenv_file",
        &["target=db1", "dry_run=true"],
        Some(&secrets),
        Some(token),
    );
    assert_eq!(live.code, Some(0), "{live:?}");
    assert_eq!(
        live.stdout,
        format!(
            "Syncing db1 (dry run, up to 3 retries)\nkey fingerprint: {}\n",
            fingerprint(token)
        )
    );
    assert_eq!(live.stderr, "");
    assert_eq!(record["status"], "succeeded");
    assert_eq!(
        record["parameters"],
        json!({"target": "db1", "retries": 3, "dry_run": true, "api_token": "********"})
    );

    let (live, _) = run_example(
        "formats.dotenv_file",
        &["target=db2", "retries=5"],
        Some(&secrets),
        Some(token),
    );
    assert_eq!(
        live.stdout.lines().next(),
        Some("Syncing db2 (live, up to 5 retries)")
    );
}
