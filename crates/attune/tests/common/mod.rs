//! Helpers for end-to-end tests: temporary packs and the real `attune` binary.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_attune")
}

/// A temporary pack directory plus a data dir for one test.
pub struct TestPack {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub data: PathBuf,
    pub data_tmp: tempfile::TempDir,
}

/// A temporary directory any user can write: for what actions (run as nobody when the
/// tests run as root) report back to the test. In `/dev/shm`, which actions share with
/// the system: each has a `/tmp` of its own. Made before the server starts, so that a
/// runtime dir in `/dev/shm` (which actions cannot create entries beside) leaves it
/// writable to them.
pub fn shared_tempdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("attune-test")
        .tempdir_in("/dev/shm")
        .unwrap();
    std::fs::set_permissions(
        d.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    d
}

/// A fresh directory for a data dir, outside `/tmp` and `/var/tmp`: the sandbox denies
/// actions the data dir, and a data dir inside one of those would keep them from creating
/// files directly in it (see the README's known gaps). The target dir is used unless it lies
/// there itself (a clone in /tmp) or other users (nobody) cannot reach it, then
/// `/var/lib/attune-tests`.
pub fn state_dir() -> tempfile::TempDir {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let reachable = target
        .ancestors()
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    let base = if target.starts_with("/tmp") || target.starts_with("/var/tmp") || !reachable {
        PathBuf::from("/var/lib/attune-tests")
    } else {
        target.to_path_buf()
    };
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix("state")
        .tempdir_in(base)
        .unwrap()
}

impl TestPack {
    /// A pack with ref `name`.
    pub fn new(name: &str) -> TestPack {
        let tmp = tempfile::tempdir().unwrap();
        // As a pack directory usually is: readable by the user actions run as (nobody).
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(dir.join("actions")).unwrap();
        std::fs::write(
            dir.join("pack.yaml"),
            format!("ref: {name}\nversion: \"1.0\"\n"),
        )
        .unwrap();
        let data_tmp = state_dir();
        let data = data_tmp.path().join("data");
        TestPack {
            tmp,
            dir,
            data,
            data_tmp,
        }
    }

    /// Writes actions/<file> with `content`; `exec` sets mode 0755.
    pub fn file(&self, rel: &str, content: &str, exec: bool) -> PathBuf {
        let p = self.dir.join("actions").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        let mode = if exec { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// Writes action metadata `actions/<name>.yaml` and its entry point.
    pub fn action(&self, name: &str, meta: &str, entry: &str, script: &str) {
        self.file(
            &format!("{name}.yaml"),
            &format!("name: {name}\n{meta}\nentry_point: {entry}\n"),
            false,
        );
        self.file(entry, script, true);
    }

    /// A path in the temp dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Writes a JSON params file and returns its path.
    pub fn params_file(&self, v: &serde_json::Value) -> PathBuf {
        let p = self
            .tmp
            .path()
            .join(format!("params-{}.json", rand_suffix()));
        std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
        p
    }

    /// `attune run --local --pack-dir <pack> <args>` with a clean data dir.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("run").arg("--local").arg("--pack-dir").arg(&self.dir);
        c.args(args);
        c.env("ATTUNE_DATA_DIR", &self.data);
        c.stdin(Stdio::null());
        c
    }

    /// Starts `attune` with piped output and waits for the action's first line of stdout.
    pub fn spawn_first_line(
        &self,
        args: &[&str],
    ) -> (
        std::process::Child,
        std::io::BufReader<std::process::ChildStdout>,
        String,
    ) {
        use std::io::BufRead;
        let mut child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        (child, stdout, first)
    }

    /// Runs and collects output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs with `-o json` and parses the record.
    pub fn run_json(&self, args: &[&str]) -> (Output, serde_json::Value) {
        self.run_json_env(args, &[])
    }

    /// Runs with `-o json` and extra environment variables for `attune` itself.
    pub fn run_json_env(&self, args: &[&str], env: &[(&str, &str)]) -> (Output, serde_json::Value) {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-o", "json"]);
        let mut cmd = self.cmd(&a);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let rec = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "not a JSON record ({e}): stdout={} stderr={}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out, rec)
    }
}

/// A random hex string, for unique secrets and names.
pub fn rand_suffix() -> String {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether process `pid` is gone (or a zombie that nothing will run again).
pub fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.trim_start().starts_with('Z') || rest.trim_start().starts_with('X')
            })
            .unwrap_or(true),
    }
}

/// The live processes (not zombies) whose `argv[0]` is `name`, by their pids here. An
/// action's own pids are its PID namespace's, so tests name the processes they look for
/// (`exec -a NAME`) instead.
pub fn named(name: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|b| *b == 0).next() == Some(name.as_bytes()) && !gone(pid) {
            found.push(pid);
        }
    }
    found
}

/// Waits up to `secs` until `n` processes are named `name`; true if they are.
pub fn wait_named(name: &str, n: usize, secs: f64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
    loop {
        if named(name).len() == n {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits up to `secs` for all `pids` to be gone.
pub fn wait_gone(pids: &[i32], secs: f64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
    loop {
        if pids.iter().all(|p| gone(*p)) {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Checks `dir` does not contain `needle` anywhere in file contents (recursively).
pub fn tree_contains(dir: &Path, needle: &[u8]) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    for e in entries.flatten() {
        let p = e.path();
        let meta = std::fs::symlink_metadata(&p).ok()?;
        if meta.is_dir() {
            if let Some(found) = tree_contains(&p, needle) {
                return Some(found);
            }
        } else if meta.is_file() {
            if let Ok(data) = std::fs::read(&p) {
                if data.windows(needle.len()).any(|w| w == needle) {
                    return Some(p);
                }
            }
        }
    }
    None
}

/// Reads every process's cmdline and environ; returns the pids where `needle` occurs.
pub fn proc_scan(needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return hits;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        for what in ["cmdline", "environ"] {
            if let Ok(data) = std::fs::read(e.path().join(what)) {
                if data.windows(needle.len()).any(|w| w == needle) {
                    hits.push(format!("{name}/{what}"));
                }
            }
        }
    }
    hits
}

/// Writes pack `pack` under `root` with one action `name`: `meta` (YAML lines after
/// `name:`) and its entry point `entry` holding `script`. Returns the pack directory.
pub fn one_action_pack(
    root: &Path,
    pack: &str,
    name: &str,
    meta: &str,
    entry: &str,
    script: &str,
) -> PathBuf {
    let dir = root.join(pack);
    std::fs::create_dir_all(dir.join("actions")).unwrap();
    std::fs::write(dir.join("pack.yaml"), format!("ref: {pack}\n")).unwrap();
    std::fs::write(
        dir.join(format!("actions/{name}.yaml")),
        format!("name: {name}\nentry_point: {entry}\n{meta}"),
    )
    .unwrap();
    std::fs::write(dir.join("actions").join(entry), script).unwrap();
    dir
}

/// A real `attune server` in a temporary data dir on a free port; killed on drop.
pub struct TestServer {
    pub child: Option<std::process::Child>,
    pub data: PathBuf,
    pub url: String,
    pub token: String,
    pub tmp_dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server with `extra` arguments in a fresh data dir.
    pub fn start(extra: &[&str]) -> TestServer {
        let tmp = state_dir();
        let data = tmp.path().join("data");
        let mut s = TestServer::start_in(&data, extra);
        s.tmp_dir = Some(tmp);
        s
    }

    /// Starts a server on an existing data dir (e.g. to restart one).
    pub fn start_in(data: &Path, extra: &[&str]) -> TestServer {
        TestServer::start_with(data, extra, |_| {})
    }

    /// Like [`TestServer::start_in`], with `customize` applied to the command first.
    pub fn start_with(
        data: &Path,
        extra: &[&str],
        customize: impl FnOnce(&mut Command),
    ) -> TestServer {
        let _ = std::fs::remove_file(data.join("server.json"));
        let mut cmd = Command::new(bin());
        // Every test's traffic is logged at the most verbose level, and the log is searched
        // for tokens when the server is dropped.
        cmd.env("ATTUNE_LOG", "trace");
        customize(&mut cmd);
        cmd.arg("--data-dir")
            .arg(data)
            .arg("server")
            .args(["--listen", "127.0.0.1:0"])
            .args(extra);
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(std::fs::File::create(data.with_extension("log")).unwrap());
        let mut child = cmd.spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let url = loop {
            if let Ok(text) = std::fs::read_to_string(data.join("server.json")) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    break v["url"].as_str().unwrap().to_string();
                }
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "server exited early ({status}): {}",
                    std::fs::read_to_string(data.with_extension("log")).unwrap_or_default()
                );
            }
            assert!(std::time::Instant::now() < deadline, "server did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let token = std::fs::read_to_string(data.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        TestServer {
            child: Some(child),
            data: data.to_path_buf(),
            url,
            token,
            tmp_dir: None,
        }
    }

    /// The server's pack cache, as `server.json` gives it.
    pub fn pack_cache(&self) -> PathBuf {
        let text = std::fs::read_to_string(self.data.join("server.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        PathBuf::from(v["pack_cache"].as_str().unwrap())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
    }

    /// An HTTP request; returns the status and the body parsed as JSON (Null if empty).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        http(
            method,
            &format!("{}{path}", self.url),
            token,
            body.map(|b| ("application/json", b.to_string().into_bytes())),
        )
    }

    /// Same, with the admin token.
    pub fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.call(method, path, Some(&self.token), body)
    }

    /// Creates a token with `role` and returns it.
    pub fn token_for(&self, role: &str) -> String {
        let (s, v) = self.admin(
            "POST",
            "/api/v1/tokens",
            Some(&serde_json::json!({"name": role, "role": role})),
        );
        assert_eq!(s, 201, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    /// Registers the pack in `dir`.
    pub fn register(&self, dir: &Path) -> (u16, serde_json::Value) {
        let bytes = attune_core::bundle::Bundle::from_dir(dir)
            .unwrap()
            .to_bytes();
        http(
            "POST",
            &format!("{}/api/v1/packs", self.url),
            Some(&self.token),
            Some(("application/octet-stream", bytes)),
        )
    }

    /// Every execution matching `filter` (e.g. `status=succeeded`), newest first, read page
    /// by page as a client does: 200 at a time, following the `before` cursor.
    pub fn all_executions(&self, filter: &str) -> Vec<serde_json::Value> {
        let mut all: Vec<serde_json::Value> = Vec::new();
        loop {
            let cursor = all
                .last()
                .map(|e| format!("&before={}", e["id"]))
                .unwrap_or_default();
            let (st, page) = self.admin(
                "GET",
                &format!("/api/v1/executions?limit=200&{filter}{cursor}"),
                None,
            );
            assert_eq!(st, 200, "{page}");
            let page = page.as_array().unwrap().clone();
            let done = page.len() < 200;
            all.extend(page);
            if done {
                return all;
            }
        }
    }

    /// Creates an execution (`POST /api/v1/executions` with `body`) as admin; its id.
    pub fn submit(&self, body: &serde_json::Value) -> i64 {
        let (st, v) = self.admin("POST", "/api/v1/executions", Some(body));
        assert_eq!(st, 201, "{v}");
        v["id"].as_i64().unwrap()
    }

    /// Waits until execution `id` has a final status; returns it.
    pub fn wait_final(&self, id: i64, secs: u64) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let (s, v) = self.admin("GET", &format!("/api/v1/executions/{id}"), None);
            assert_eq!(s, 200, "{v}");
            if ["succeeded", "failed", "timeout", "canceled", "abandoned"]
                .contains(&v["status"].as_str().unwrap())
            {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "execution {id} not final: {v}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Waits until execution `id` has `status`.
    pub fn wait_status(&self, id: i64, status: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self
            .admin("GET", &format!("/api/v1/executions/{id}"), None)
            .1["status"]
            != status
        {
            assert!(
                std::time::Instant::now() < deadline,
                "execution {id} never became {status}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Sends `sig` to the server.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            if let Some(at) = find_token(&self.log()) {
                panic!("an API token in the server's log: …{at}…");
            }
        }
    }
}

/// Where text holds something shaped like an API token (`atn_` and 64 hex digits): the
/// text around it, the token's digits hidden.
pub fn find_token(text: &str) -> Option<String> {
    text.match_indices("atn_").find_map(|(i, _)| {
        let digits = text.get(i + 4..i + 68)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| text[i.saturating_sub(60)..i].to_string())
    })
}

/// One HTTP request with ureq; any status is returned, not turned into an error.
pub fn http(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> (u16, serde_json::Value) {
    try_http(method, url, token, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// Like [`http`], but a transport failure (server gone) is an error, not a panic.
pub fn try_http(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Result<(u16, serde_json::Value), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    if let Some((ct, _)) = &body {
        req = req.header("Content-Type", *ct);
    }
    let req = req.body(body.map(|(_, b)| b).unwrap_or_default()).unwrap();
    let mut resp = agent.run(req)?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let v = if text.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    Ok((status, v))
}

/// The `attune` client against a [`TestServer`].
impl TestServer {
    /// Starts a server with 2 workers and waits until `GET /healthz` answers.
    pub fn ready() -> TestServer {
        let s = TestServer::start(&["--workers", "2"]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(std::time::Duration::from_secs(5)))
                .build()
                .into();
            if let Ok(r) = agent.get(format!("{}/healthz", s.url)).call() {
                if r.status().as_u16() == 200 {
                    return s;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no /healthz: {}",
                s.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// `attune --data-dir <the server's> <args>`: the client finds the server through
    /// server.json and admin.token. Inherited ATTUNE_* variables are removed; tables are
    /// 200 columns wide.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--data-dir").arg(&self.data).args(args);
        for v in [
            "ATTUNE_URL",
            "ATTUNE_TOKEN",
            "ATTUNE_DATA_DIR",
            "ATTUNE_INTERPRETERS",
        ] {
            c.env_remove(v);
        }
        c.env("COLUMNS", "200");
        c.stdin(Stdio::null());
        c
    }

    /// Runs a client command and collects its output.
    pub fn cli_out(&self, args: &[&str]) -> Output {
        self.cli(args).output().unwrap()
    }

    /// Runs a client command with `-o json`, expects exit `code`, and parses stdout.
    pub fn cli_json(&self, args: &[&str], code: i32) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.cli_out(&a);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: stderr={}",
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", stdout(&out)))
    }
}

/// A pack `mark` whose action appends its execution id to the file named by env var MARK.
pub fn marker_pack(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("actions")).unwrap();
    std::fs::write(dir.join("pack.yaml"), "ref: mark\n").unwrap();
    std::fs::write(
        dir.join("actions/mark.yaml"),
        "name: mark\nrunner_type: shell\nentry_point: mark.sh\nparameters:\n  pause: {type: number, default: 0}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("actions/mark.sh"),
        "#!/bin/bash\nIFS= read -r p\necho \"$ATTUNE_EXECUTION_ID\" >> \"$MARK\" || exit 3\n[[ $p =~ \\\"pause\\\":([0-9.]+) ]] && sleep \"${BASH_REMATCH[1]}\"\nexit 0\n",
    )
    .unwrap();
}

/// How many times each execution id appears in a marker file.
pub fn marks(path: &std::path::Path) -> BTreeMap<i64, usize> {
    let mut m = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        *m.entry(line.trim().parse::<i64>().unwrap()).or_insert(0) += 1;
    }
    m
}

/// A fresh PostgreSQL database, dropped at the end.
pub struct PgDatabase {
    /// The database it was made from.
    pub admin_url: String,
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

/// Runs `sql` with `psql` on `url`; its output.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-Atc", sql])
        .output()
        .expect("psql (PostgreSQL's client) must be installed");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl PgDatabase {
    /// A new database next to `ATTUNE_TEST_DATABASE_URL`'s (the test fails without it).
    pub fn new() -> PgDatabase {
        let admin_url = std::env::var("ATTUNE_TEST_DATABASE_URL").expect(
            "ATTUNE_TEST_DATABASE_URL must name a PostgreSQL database to create test databases from (scripts/test sets it)",
        );
        let name = format!("attune_e2e_{}_{}", std::process::id(), rand_suffix());
        psql(&admin_url, &format!("CREATE DATABASE {name}"));
        let base = admin_url.rsplit_once('/').unwrap().0;
        PgDatabase {
            url: format!("{base}/{name}"),
            admin_url,
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                self.admin_url.as_str(),
                "-Atc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// An `attune worker` process on `pg`, in a data dir of its own; killed on drop.
pub struct Worker {
    pub child: std::process::Child,
    /// Its data dir; its log is `worker.log` there.
    pub dir: tempfile::TempDir,
}

impl Worker {
    pub fn start(pg: &PgDatabase, name: &str, concurrency: u32) -> Worker {
        Worker::start_with(pg, name, &["--concurrency", &concurrency.to_string()])
    }

    /// `attune worker --database-url … --name NAME EXTRA…` in a data dir of its own.
    pub fn start_with(pg: &PgDatabase, name: &str, extra: &[&str]) -> Worker {
        let dir = state_dir();
        let child = Command::new(bin())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["worker", "--database-url", &pg.url, "--name", name])
            .args(extra)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("worker.log")).unwrap())
            .spawn()
            .unwrap();
        Worker { child, dir }
    }
}

impl Worker {
    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("worker.log")).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
