//! What an action can reach and what it leaves behind (DESIGN.md §3 Sandbox, Supervision):
//! attacks on the data dir, the worker and another execution, run through a real server as
//! root and as `nobody`; and descendants (`setsid`, double fork, `nohup`) that must be gone
//! a second after the execution ends, however it ends.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn write_exec(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The attacker: tries everything it must not manage, then the normal work it must manage,
/// and prints one JSON object.
const ATTACK_PY: &str = r#"
import ctypes, json, os, subprocess
data = os.environ["DATA"]
worker = int(os.environ["WORKER"])
other = open(os.environ["OTHER_FILE"]).read().strip()
res = {}
def attempt(name, fn):
    try:
        fn()
        res[name] = "ALLOWED"
    except Exception as e:
        res[name] = "denied: " + type(e).__name__
for f in ["secret.key", "attune.db", "admin.token", "server.json", "server.lock"]:
    p = os.path.join(data, f)
    attempt("read " + f, lambda p=p: open(p, "rb").read(1))
    attempt("write " + f, lambda p=p: open(p, "ab").close())
    attempt("hard-link " + f, lambda p=p, f=f: os.link(p, "link-" + f))
    attempt("rename " + f, lambda p=p: os.rename(p, p + ".moved"))
attempt("list the data dir", lambda: os.listdir(data))
attempt("list the pack cache", lambda: os.listdir(os.path.join(data, "packs")))
attempt("create in the data dir", lambda: open(os.path.join(data, "planted"), "w").close())
for f in ["environ", "mem", "cmdline"]:
    attempt("read /proc/worker/" + f, lambda f=f: open("/proc/%d/%s" % (worker, f), "rb").read(1))
    # The action's parent is its supervisor, which shares the worker's memory.
    attempt("read /proc/parent/" + f, lambda f=f: open("/proc/%d/%s" % (os.getppid(), f), "rb").read(1))
def find_server():
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = open("/proc/%s/cmdline" % entry, "rb").read().split(b"\0")
            except OSError:
                continue
            if b"server" in argv:
                return
    raise LookupError("no server process in /proc")
attempt("find the server's command line in /proc", find_server)
attempt("read another execution's parameter file", lambda: open(other, "rb").read(1))
attempt("read another execution's /tmp file", lambda: open("/tmp/attune-other-secret").read(1))
attempt("find another execution's /tmp file", lambda: os.stat("/tmp/attune-other-secret"))
attempt("list the runtime dir", lambda: os.listdir(os.path.dirname(os.path.dirname(os.getcwd()))))
libc = ctypes.CDLL(None, use_errno=True)
def ptrace():
    if libc.ptrace(16, worker, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "ptrace")
attempt("ptrace the worker", ptrace)
def signal_worker():
    os.kill(worker, 0)
attempt("signal the worker", signal_worker)
work = {}
work["bash"] = subprocess.run(["bash", "-c", "echo hi"], capture_output=True).stdout == b"hi\n"
work["jq"] = subprocess.run(["jq", "-n", "1+1"], capture_output=True).stdout == b"2\n"
with open("own.txt", "w") as f:
    f.write("mine")
work["own dir"] = open("own.txt").read() == "mine"
probe = "/tmp/attune-probe-%d" % os.getpid()
with open(probe, "w") as f:
    f.write("x")
os.unlink(probe)
work["/tmp"] = True
work["read own pack"] = "def attempt" in open(__file__).read()
work["own /proc"] = open("/proc/self/status").read().startswith("Name:")
work["/proc/cpuinfo"] = "processor" in open("/proc/cpuinfo").read()
work["ps"] = subprocess.run(["ps", "-e"], capture_output=True).returncode == 0
print(json.dumps({"attempts": res, "work": work}))
"#;

fn attack_pack(dir: &Path) {
    std::fs::create_dir_all(dir.join("actions")).unwrap();
    std::fs::write(dir.join("pack.yaml"), "ref: probe\n").unwrap();
    std::fs::write(
        dir.join("actions/attack.yaml"),
        "name: attack\nrunner_type: python\nentry_point: attack.py\n",
    )
    .unwrap();
    write_exec(&dir.join("actions/attack.py"), ATTACK_PY);
    // Holds a parameter file open: writes where it is, then waits to be cancelled.
    std::fs::write(
        dir.join("actions/hold.yaml"),
        "name: hold\nrunner_type: shell\nentry_point: hold.sh\nparameter_delivery: file\nparameters:\n  pw: {type: string, secret: true}\n",
    )
    .unwrap();
    write_exec(
        &dir.join("actions/hold.sh"),
        "#!/bin/bash\necho hunter2-tmp > /tmp/attune-other-secret\necho \"$ATTUNE_PARAMETER_FILE\" > \"$OUT.tmp\" && mv \"$OUT.tmp\" \"$OUT\"\nexec sleep 60\n",
    );
}

fn wait_for_file(p: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn create(s: &TestServer, body: Value) -> i64 {
    let (st, v) = s.admin("POST", "/api/v1/executions", Some(&body));
    assert_eq!(st, 201, "{v}");
    v["id"].as_i64().unwrap()
}

/// Runs the attack against a server; `as_nobody` starts the server as uid 65534.
fn attack(as_nobody: bool) {
    let state = state_dir();
    let shared = shared_tempdir();
    let pack = shared.path().join("probe");
    attack_pack(&pack);
    if as_nobody {
        std::os::unix::fs::chown(state.path(), Some(65534), Some(65534)).unwrap();
    }
    let data = state.path().join("data");
    // A copy of the binary nobody can surely run, wherever the checkout is.
    let binary = shared.path().join("attune");
    std::fs::copy(bin(), &binary).unwrap();
    let s = TestServer::start_with(&data, &["--workers", "2"], |cmd| {
        if as_nobody {
            *cmd = std::process::Command::new(&binary);
            cmd.uid(65534).gid(65534).env("HOME", "/tmp");
        }
    });
    let (ready_status, ready) = s.call("GET", "/readyz", None, None);
    assert_eq!((ready_status, &ready["sandbox"]), (200, &json!("enforced")));
    let (st, v) = s.register(&pack);
    assert_eq!(st, 201, "{v}");
    let other_file = shared.path().join("other");
    let holder = create(
        &s,
        json!({"action_ref": "probe.hold", "parameters": {"pw": "hunter2-other"},
               "env_vars": {"OUT": other_file.to_str().unwrap()}}),
    );
    wait_for_file(&other_file);
    let worker = s.child.as_ref().unwrap().id();
    let id = create(
        &s,
        json!({"action_ref": "probe.attack", "env_vars": {
            "DATA": data.to_str().unwrap(),
            "WORKER": worker.to_string(),
            "OTHER_FILE": other_file.to_str().unwrap(),
        }}),
    );
    let v = s.wait_final(id, 60);
    assert_eq!(v["status"], "succeeded", "{v}");
    let report: Value = serde_json::from_str(v["stdout"].as_str().unwrap().trim()).unwrap();
    let attempts = report["attempts"].as_object().unwrap();
    assert!(attempts.len() >= 34, "{report}");
    let allowed: Vec<&String> = attempts
        .iter()
        .filter(|(_, r)| *r == "ALLOWED")
        .map(|(k, _)| k)
        .collect();
    assert!(allowed.is_empty(), "the action managed: {allowed:?}");
    for (what, ok) in report["work"].as_object().unwrap() {
        assert_eq!(ok, &json!(true), "normal work failed: {what}");
    }
    assert!(!data.join("planted").exists());
    // What the holder wrote in its /tmp stayed in it.
    assert!(!Path::new("/tmp/attune-other-secret").exists());
    let (st, _) = s.admin("POST", &format!("/api/v1/executions/{holder}/cancel"), None);
    assert_eq!(st, 202);
    assert_eq!(s.wait_final(holder, 30)["status"], "canceled");
}

#[test]
fn an_action_cannot_reach_the_data_dir_the_worker_or_another_execution_as_root() {
    attack(false);
}

#[test]
fn an_action_cannot_reach_the_data_dir_the_worker_or_another_execution_as_nobody() {
    attack(true);
}

/// An action that leaves four descendants behind (`setsid`, a double fork, `nohup`, and a
/// `setsid` one holding the parameter file open), each writing its pid to `$PIDS` and
/// then running as `attune-leftover-$PIDS` (its pid is its PID namespace's, so the test
/// finds it by name); then exits, or hangs when `MODE=hang`.
const LEAVE_SH: &str = r#"#!/bin/bash
setsid bash -c 'echo $$ >> "$PIDS"; exec -a "attune-leftover-$PIDS" sleep 300' </dev/null >/dev/null 2>&1 &
( bash -c 'echo $$ >> "$PIDS"; exec -a "attune-leftover-$PIDS" sleep 300' </dev/null >/dev/null 2>&1 & )
nohup bash -c 'echo $$ >> "$PIDS"; exec -a "attune-leftover-$PIDS" sleep 300' </dev/null >/dev/null 2>&1 &
setsid bash -c 'exec 9<"$1"; echo $$ >> "$PIDS"; exec -a "attune-leftover-$PIDS" sleep 300' _ "$ATTUNE_PARAMETER_FILE" </dev/null >/dev/null 2>&1 &
while [ "$(wc -l < "$PIDS" 2>/dev/null || echo 0)" -lt 4 ]; do sleep 0.02; done
echo ready
if [ "$MODE" = hang ]; then trap '' TERM; sleep 300; fi
exit 0
"#;

fn leave_pack(dir: &Path) {
    std::fs::create_dir_all(dir.join("actions")).unwrap();
    std::fs::write(dir.join("pack.yaml"), "ref: leave\n").unwrap();
    std::fs::write(
        dir.join("actions/leave.yaml"),
        "name: leave\nrunner_type: shell\nentry_point: leave.sh\nparameter_delivery: file\nparameters:\n  x: {type: string, default: y}\n",
    )
    .unwrap();
    write_exec(&dir.join("actions/leave.sh"), LEAVE_SH);
}

fn pids(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// The live descendants an execution left, by name.
fn survivors(file: &Path) -> Vec<i32> {
    named(&format!("attune-leftover-{}", file.display()))
}

fn assert_all_gone(case: &str, file: &Path) {
    let p = pids(file);
    assert_eq!(p.len(), 4, "{case}: {p:?}");
    std::thread::sleep(Duration::from_secs(1));
    let left = survivors(file);
    assert!(left.is_empty(), "{case}: descendants still alive: {left:?}");
}

#[test]
fn no_descendant_outlives_its_execution_however_it_ends() {
    let shared = shared_tempdir();
    let pack = shared.path().join("leave");
    leave_pack(&pack);
    let mut s = TestServer::start(&["--workers", "2", "--kill-grace", "0.5"]);
    let (st, v) = s.register(&pack);
    assert_eq!(st, 201, "{v}");
    let run = |s: &TestServer, case: &str, mode: &str, timeout: u64| {
        let file = shared.path().join(format!("{case}.pids"));
        let id = create(
            s,
            json!({"action_ref": "leave.leave", "timeout": timeout,
                   "env_vars": {"PIDS": file.to_str().unwrap(), "MODE": mode}}),
        );
        (id, file)
    };
    let (id, file) = run(&s, "success", "exit", 30);
    assert_eq!(s.wait_final(id, 30)["status"], "succeeded");
    assert_all_gone("success", &file);

    let (id, file) = run(&s, "timeout", "hang", 2);
    assert_eq!(s.wait_final(id, 30)["status"], "timeout");
    assert_all_gone("timeout", &file);

    let (id, file) = run(&s, "cancel", "hang", 60);
    wait_for_descendants(&file);
    let (st, _) = s.admin("POST", &format!("/api/v1/executions/{id}/cancel"), None);
    assert_eq!(st, 202);
    assert_eq!(s.wait_final(id, 30)["status"], "canceled");
    assert_all_gone("cancel", &file);

    let (_, file) = run(&s, "kill-9", "hang", 60);
    wait_for_descendants(&file);
    let mut child = s.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_all_gone("kill -9 of the server", &file);
}

/// Waits until the four descendants run, seen both in `file` and by name (so that
/// [`survivors`] is known to find them).
fn wait_for_descendants(file: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pids(file).len() < 4 || survivors(file).len() < 4 {
        assert!(Instant::now() < deadline, "descendants never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `attune run --local leave.leave` (descendants' pids to `file`), through `wrapper` (a
/// command the binary's path and arguments are appended to) if any.
fn run_leave_locally(
    state: &Path,
    pack: &Path,
    file: &Path,
    wrapper: Option<&[&str]>,
    extra: &[&str],
) -> std::process::Output {
    let mut cmd = match wrapper {
        Some([program, args @ ..]) => {
            let mut c = std::process::Command::new(program);
            c.args(args).arg(bin());
            c
        }
        _ => std::process::Command::new(bin()),
    };
    cmd.arg("--data-dir")
        .arg(state.join("data"))
        .args(["run", "--local", "--pack-dir"])
        .arg(pack)
        .arg("leave.leave")
        .arg("--env")
        .arg(format!("PIDS={}", file.display()))
        .args(["--env", "MODE=exit"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn run_local_leaves_no_descendant_either() {
    let shared = shared_tempdir();
    let pack = shared.path().join("leave");
    leave_pack(&pack);
    let state = state_dir();
    let file = shared.path().join("local.pids");
    let out = run_leave_locally(state.path(), &pack, &file, None, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_all_gone("run --local", &file);
}

#[test]
fn server_help_and_readyz_say_how_actions_are_confined() {
    let out = std::process::Command::new(bin())
        .args(["server", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("file-system sandbox: Landlock ABI"), "{text}");
    assert!(text.contains("descendants:"), "{text}");
    assert!(
        text.contains("processes: each execution has PID and mount namespaces of its own"),
        "{text}"
    );
    let s = TestServer::start(&["--require-sandbox"]);
    assert!(s.log().contains("sandbox: Landlock ABI"), "{}", s.log());
    assert!(s.log().contains("with a private /proc"), "{}", s.log());
}

/// Installs a seccomp filter failing every `clone` that asks for a new PID namespace with
/// EPERM, as some container runtimes do, then execs the rest of the command line.
const NO_PID_NS_PY: &str = r#"
import ctypes, os, platform, struct, sys
nr = {"x86_64": 56, "aarch64": 220}[platform.machine()]
prog = [
    (0x20, 0, 0, 0),             # ld syscall number
    (0x15, 0, 3, nr),            # clone? else allow
    (0x20, 0, 0, 16),            # ld low word of the flags
    (0x45, 0, 1, 0x20000000),    # CLONE_NEWPID? else allow
    (0x06, 0, 0, 0x00050001),    # errno EPERM
    (0x06, 0, 0, 0x7fff0000),    # allow
]
buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in prog))
fprog = struct.pack("HxxxxxxQ", len(prog), ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0
assert libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) == 0, ctypes.get_errno()
os.execv(sys.argv[1], sys.argv[1:])
"#;

#[test]
fn run_local_without_namespaces_falls_back_and_says_so() {
    let shared = shared_tempdir();
    let pack = shared.path().join("leave");
    leave_pack(&pack);
    let state = state_dir();
    let file = shared.path().join("nons.pids");
    let wrapper: &[&str] = &["python3", "-c", NO_PID_NS_PY];
    let run = |extra: &[&str]| run_leave_locally(state.path(), &pack, &file, Some(wrapper), extra);
    let out = run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("warning: processes NOT isolated: creating PID and mount namespaces failed:")
            && stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    // Without namespaces the supervisor still kills every descendant.
    assert_all_gone("run --local without namespaces", &file);
    // --require-sandbox refuses instead.
    let out = run(&["--require-sandbox"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--require-sandbox: processes NOT isolated"),
        "{}",
        stderr(&out)
    );
}
