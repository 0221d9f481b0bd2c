//! Helpers for end-to-end tests: temporary packs and the real `attune` binary.
#![allow(dead_code, clippy::unwrap_used)]

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
}

impl TestPack {
    /// A pack with ref `name`.
    pub fn new(name: &str) -> TestPack {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(dir.join("actions")).unwrap();
        std::fs::write(
            dir.join("pack.yaml"),
            format!("ref: {name}\nversion: \"1.0\"\n"),
        )
        .unwrap();
        let data = tmp.path().join("data");
        TestPack { tmp, dir, data }
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
