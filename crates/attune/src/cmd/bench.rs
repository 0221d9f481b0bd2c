//! `attune bench`: end-to-end throughput and latency of a trivial bash action through the
//! real REST API, against the floor measured in the same run: the same script spawned
//! directly with the same parameter bytes at the same concurrency. Optionally (on by
//! default) also `attune run core.noop` against the server next to `attune run --local`.
//!
//! The server is one this command starts in a temporary data dir (SQLite, or PostgreSQL
//! with `attune worker` processes), or a running one (`--url`).

use crate::cli::BenchArgs;
use crate::client::Client;
use crate::error::CliError;
use crate::output::{print_structured, OutputFormat};
use crate::table::Table;
use attune_core::{Delivery, Format};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The bench pack's ref and its action.
const PACK: &str = "attune_bench";
const ACTION: &str = "attune_bench.trivial";

/// A size such as `0`, `512`, `4k`, `64MiB` (k/M/G are powers of 1024, with or without
/// `iB`/`B`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a size such as 0, 4k or 64MiB"))?;
    let unit = unit.trim().trim_end_matches("iB").trim_end_matches('B');
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => {
            return Err(format!(
                "`{s}`: the unit must be k, M or G (powers of 1024)"
            ))
        }
    };
    n.checked_mul(mult)
        .filter(|b| *b <= 1 << 30)
        .ok_or_else(|| format!("`{s}` is more than 1 GiB"))
}

/// The directory this run works in, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, CliError> {
        use std::os::unix::fs::DirBuilderExt;
        // Not under /tmp itself: a data dir there would keep actions from writing in /tmp.
        let base = std::env::var_os("ATTUNE_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp"));
        let dir = base.join(format!(
            "attune-bench-{}-{}",
            std::process::id(),
            attune_runner::workdir::random_hex(6)
        ));
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&dir)
            .map_err(|e| CliError::failure(format!("cannot create {}: {e}", dir.display())))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Processes this run started (server, workers): SIGTERM, then waited for, at the end.
#[derive(Default)]
struct Started(Vec<Child>);

impl Drop for Started {
    fn drop(&mut self) {
        for c in &self.0 {
            // SAFETY: kill has no memory effects; the pid is our own child's, not yet reaped.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

fn spawn_attune(args: &[&str], log: &Path) -> Result<Child, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::failure(format!("cannot find the attune binary: {e}")))?;
    let log = std::fs::File::create(log)
        .map_err(|e| CliError::failure(format!("cannot create {}: {e}", log.display())))?;
    Command::new(exe)
        .args(args)
        .env_remove("ATTUNE_URL")
        .env_remove("ATTUNE_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| CliError::failure(format!("cannot start attune {}: {e}", args.join(" "))))
}

/// Starts the server (and workers) for the run; returns its URL and admin token.
fn start_server(
    args: &BenchArgs,
    dir: &Path,
    started: &mut Started,
) -> Result<(String, String), CliError> {
    let data = dir.join("server");
    let data_s = data.to_string_lossy().into_owned();
    let body_mib = (args.payload / (1 << 20) * 2 + 16).to_string();
    let concurrency = args.concurrency.to_string();
    let mut server = vec![
        "--data-dir",
        &data_s,
        "server",
        "--listen",
        "127.0.0.1:0",
        "--max-body-mib",
        &body_mib,
        "--max-connections",
        "4096",
    ];
    match &args.database_url {
        Some(url) => server.extend(["--workers", "0", "--database-url", url]),
        None => server.extend(["--workers", &concurrency]),
    }
    started
        .0
        .push(spawn_attune(&server, &dir.join("server.log"))?);
    let deadline = Instant::now() + Duration::from_secs(60);
    let info: Value = loop {
        if let Ok(text) = std::fs::read_to_string(data.join("server.json")) {
            if let Ok(v) = serde_json::from_str(&text) {
                break v;
            }
        }
        if let Some(Ok(Some(status))) = started.0.last_mut().map(Child::try_wait) {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            return Err(CliError::failure(format!(
                "the bench server exited ({status}): {}",
                log.lines().last().unwrap_or("")
            )));
        }
        if Instant::now() > deadline {
            return Err(CliError::failure(
                "the bench server did not start within 60 s",
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let url = info["url"].as_str().unwrap_or_default().to_string();
    let token = std::fs::read_to_string(data.join("admin.token"))
        .map_err(|e| CliError::failure(format!("cannot read the bench server's token: {e}")))?
        .trim()
        .to_string();
    if let Some(db) = &args.database_url {
        let key = data.join("secret.key");
        let key_s = key.to_string_lossy().into_owned();
        let per = args.concurrency.div_ceil(args.workers).max(1).to_string();
        for i in 0..args.workers {
            let wdata = dir.join(format!("worker{i}"));
            let wdata_s = wdata.to_string_lossy().into_owned();
            let name = format!("bench-{}-{i}", std::process::id());
            let w = [
                "--data-dir",
                &wdata_s,
                "worker",
                "--database-url",
                db,
                "--name",
                &name,
                "--concurrency",
                &per,
                "--secret-key-file",
                &key_s,
            ];
            started
                .0
                .push(spawn_attune(&w, &dir.join(format!("worker{i}.log")))?);
        }
    }
    Ok((url, token))
}

/// Writes the bench pack (one bash action reading its parameters) and registers it.
fn register_pack(
    client: &Client,
    dir: &Path,
    delivery: Delivery,
    format: Format,
) -> Result<(), CliError> {
    let pack = dir.join("pack");
    let actions = pack.join("actions");
    std::fs::create_dir_all(&actions).map_err(CliError::failure)?;
    let write = |p: PathBuf, s: String| std::fs::write(&p, s).map_err(CliError::failure);
    write(
        pack.join("pack.yaml"),
        format!("ref: {PACK}\ndescription: attune bench\n"),
    )?;
    write(
        actions.join("trivial.yaml"),
        format!(
            "name: trivial\nrunner_type: shell\nentry_point: trivial.sh\nparameter_delivery: {}\nparameter_format: {}\nparameters:\n  data: {{type: string}}\n",
            delivery.as_str(),
            format.as_str()
        ),
    )?;
    write(actions.join("trivial.sh"), script(delivery).into())?;
    let bundle = attune_core::bundle::Bundle::from_dir(&pack)
        .map_err(|e| CliError::failure(format!("bench pack: {e}")))?;
    let _: Value = client.post_bytes("/api/v1/packs", &bundle.to_bytes())?;
    Ok(())
}

/// The action's script: it reads its parameters, as `cat` would.
fn script(delivery: Delivery) -> &'static str {
    match delivery {
        Delivery::Stdin => "cat >/dev/null\n",
        Delivery::File => "cat \"$ATTUNE_PARAMETER_FILE\" >/dev/null\n",
    }
}

/// What one execution took, as the client saw it and as the record says.
struct Sample {
    latency: Duration,
    /// Why it failed; `None` if it succeeded.
    failure: Option<String>,
    /// created → started, started → finished, finished → the client knew (ms).
    phases: Option<(i64, i64, i64)>,
}

fn ms_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn phases(record: &Value, known_ms: i64) -> Option<(i64, i64, i64)> {
    let t = |k: &str| {
        record
            .get(k)
            .and_then(Value::as_str)
            .and_then(attune_core::execution::parse_rfc3339_ms)
    };
    let (c, s, f) = (t("created_at")?, t("started_at")?, t("finished_at")?);
    Some((s - c, f - s, known_ms - f))
}

fn progress(n: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(n),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {per_sec}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_string());
    bar
}

/// Runs `n` jobs on `c` threads; each job's sample from `job`.
fn on_threads<F>(
    n: usize,
    c: usize,
    bar: &indicatif::ProgressBar,
    job: F,
) -> (Vec<Sample>, Duration)
where
    F: Fn() -> Sample + Sync,
{
    let next = AtomicUsize::new(0);
    let samples = Mutex::new(Vec::with_capacity(n));
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..c {
            s.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let sample = job();
                    bar.inc(1);
                    if let Ok(mut v) = samples.lock() {
                        v.push(sample);
                    }
                }
            });
        }
    });
    let wall = t0.elapsed();
    (samples.into_inner().unwrap_or_default(), wall)
}

/// The baseline: the same script, spawned directly by bash with the same bytes.
fn direct_spawn(script: &Path, doc: &[u8], delivery: Delivery, dir: &Path) -> Sample {
    use std::os::unix::fs::OpenOptionsExt;
    static FILES: AtomicUsize = AtomicUsize::new(0);
    let t0 = Instant::now();
    let mut cmd = Command::new("bash");
    cmd.arg(script).stdout(Stdio::null()).stderr(Stdio::null());
    let file = (delivery == Delivery::File).then(|| {
        let p = dir.join(format!("params-{}", FILES.fetch_add(1, Ordering::Relaxed)));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&p)
            .and_then(|mut f| f.write_all(doc));
        (p, written.is_ok())
    });
    let ok = match &file {
        Some((p, written)) => {
            cmd.env("ATTUNE_PARAMETER_FILE", p).stdin(Stdio::null());
            *written && cmd.status().map(|s| s.success()).unwrap_or(false)
        }
        None => {
            cmd.stdin(Stdio::piped());
            match cmd.spawn() {
                Ok(mut child) => {
                    let fed = child
                        .stdin
                        .take()
                        .map(|mut i| i.write_all(doc).is_ok())
                        .unwrap_or(false);
                    child.wait().map(|s| s.success()).unwrap_or(false) && fed
                }
                Err(_) => false,
            }
        }
    };
    if let Some((p, _)) = file {
        let _ = std::fs::remove_file(p);
    }
    Sample {
        latency: t0.elapsed(),
        failure: (!ok).then(|| "a direct `bash` spawn of the script failed".to_string()),
        phases: None,
    }
}

/// One execution through the API: created, then waited for with long polls.
fn through_api(client: &Client, body: &[u8]) -> Sample {
    let t0 = Instant::now();
    let done = (|| -> Result<Value, CliError> {
        let created: Value = client.post_json_bytes("/api/v1/executions", body)?;
        let id = created["id"].as_i64().unwrap_or(0);
        loop {
            let r: Value = client.get(&format!("/api/v1/executions/{id}?wait=60"))?;
            let status = r["status"]
                .as_str()
                .and_then(attune_core::ExecutionStatus::parse);
            if status.is_some_and(attune_core::ExecutionStatus::is_final) {
                return Ok(r);
            }
        }
    })();
    let latency = t0.elapsed();
    let known = ms_now();
    match done {
        Ok(r) => Sample {
            latency,
            failure: (r["status"] != "succeeded").then(|| {
                format!(
                    "execution {} {}: {}",
                    r["id"],
                    r["status"].as_str().unwrap_or("?"),
                    r["error"].as_str().unwrap_or("no error recorded")
                )
            }),
            phases: phases(&r, known),
        },
        Err(e) => Sample {
            latency,
            failure: Some(e.message().to_string()),
            phases: None,
        },
    }
}

/// The p-th percentile (0–100) of sorted durations, in ms.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(samples: &[Sample], wall: Duration) -> Value {
    let mut ms: Vec<f64> = samples
        .iter()
        .map(|s| s.latency.as_secs_f64() * 1e3)
        .collect();
    ms.sort_by(f64::total_cmp);
    let failed = samples.iter().filter(|s| s.failure.is_some()).count();
    json!({
        "count": samples.len(),
        "failed": failed,
        "seconds": wall.as_secs_f64(),
        "per_second": samples.len() as f64 / wall.as_secs_f64().max(1e-9),
        "p50_ms": pct(&ms, 50.0),
        "p95_ms": pct(&ms, 95.0),
        "p99_ms": pct(&ms, 99.0),
    })
}

fn median_i64(mut v: Vec<i64>) -> Option<i64> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// The peak resident memory of process `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// CPU time used so far, in ms: by this process (`RUSAGE_SELF`) or by its children it has
/// reaped (`RUSAGE_CHILDREN`).
fn rusage_ms(who: libc::c_int) -> f64 {
    // SAFETY: getrusage fills the zeroed struct, which outlives the call.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(who, &mut ru) != 0 {
            return f64::NAN;
        }
        ru
    };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(ru.ru_utime) + ms(ru.ru_stime)
}

/// CPU time used so far by process `pid`, in ms: its own (user + system), and that of the
/// children it has reaped (for a server: the supervisors, and through them the actions).
fn process_cpu_ms(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which ends at the last ')': state is the first,
    // utime, stime, cutime and cstime the 12th to the 15th.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // SAFETY: sysconf has no memory effects.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ms = |i: usize| -> Option<f64> {
        Some(fields.get(i)?.parse::<f64>().ok()? * 1e3 / tick.max(1) as f64)
    };
    Some((ms(11)? + ms(12)?, ms(13)? + ms(14)?))
}

/// The CPU time, in ms, of the started processes: their own, and their reaped children's.
fn started_cpu_ms(started: &Started) -> Option<(f64, f64)> {
    if started.0.is_empty() {
        return None;
    }
    started.0.iter().try_fold((0.0, 0.0), |(own, kids), c| {
        let (o, k) = process_cpu_ms(c.id())?;
        Some((own + o, kids + k))
    })
}

/// `attune run core.noop` against the server, `attune run --local core.noop`, and the floor
/// of the latter (`attune-spawn-floor`: the same script and stdin, spawned by a minimal
/// program), in turn.
fn cli_runs(n: u32, url: &str, token: &str, dir: &Path) -> Result<Value, CliError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Remote,
        Local,
        Floor,
    }
    let exe = std::env::current_exe()
        .map_err(|e| CliError::failure(format!("cannot find the attune binary: {e}")))?;
    let floor_exe = Some(exe.with_file_name("attune-spawn-floor")).filter(|f| f.is_file());
    // core.noop's script and the document it is given.
    let noop = dir.join("noop.sh");
    let doc = dir.join("noop.json");
    std::fs::write(&noop, "#!/usr/bin/env bash\nexit 0\n").map_err(CliError::failure)?;
    std::fs::write(&doc, "{}\n").map_err(CliError::failure)?;
    let local_data = dir.join("local");
    let time = |kind: Kind| -> Result<f64, CliError> {
        let mut cmd = Command::new(match (kind, &floor_exe) {
            (Kind::Floor, Some(f)) => f,
            _ => &exe,
        });
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let what = match kind {
            Kind::Remote => {
                cmd.args(["run", "core.noop"])
                    .env("ATTUNE_URL", url)
                    .env("ATTUNE_TOKEN", token);
                "attune run core.noop"
            }
            Kind::Local => {
                cmd.arg("--data-dir")
                    .arg(&local_data)
                    .args(["run", "--local", "core.noop"]);
                "attune run --local core.noop"
            }
            Kind::Floor => {
                cmd.arg(&noop).arg(&doc);
                "attune-spawn-floor"
            }
        };
        let t0 = Instant::now();
        if !cmd.status().map(|s| s.success()).unwrap_or(false) {
            return Err(CliError::failure(format!(
                "`{what}` failed during the bench"
            )));
        }
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    };
    let kinds: Vec<Kind> = [Kind::Remote, Kind::Local, Kind::Floor]
        .into_iter()
        .filter(|k| *k != Kind::Floor || floor_exe.is_some())
        .collect();
    let bar = progress(u64::from(n) * kinds.len() as u64, "cli");
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    for _ in 0..n {
        for (i, k) in kinds.iter().enumerate() {
            times[i].push(time(*k)?);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let mut p50 = |i: usize| {
        times.get_mut(i).map(|v| {
            v.sort_by(f64::total_cmp);
            pct(v, 50.0)
        })
    };
    let (r, l, floor) = (p50(0), p50(1), p50(2));
    let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
    Ok(json!({
        "runs": n,
        "remote_p50_ms": r,
        "local_p50_ms": l,
        "ratio": ratio(r, l),
        "floor_p50_ms": floor,
        "local_to_floor": ratio(l, floor),
    }))
}

/// Runs `attune bench`.
pub fn run(args: BenchArgs) -> Result<ExitCode, CliError> {
    let delivery = match args.delivery.as_str() {
        "file" => Delivery::File,
        _ => Delivery::Stdin,
    };
    let format = Format::parse(&args.format).unwrap_or_default();
    let n = args.executions as usize;
    let c = args.concurrency as usize;
    let scratch = Scratch::new()?;
    let dir = scratch.0.clone();
    let mut started = Started::default();
    let (url, token) = match &args.url {
        Some(u) => {
            let token = std::env::var("ATTUNE_TOKEN").map_err(|_| {
                CliError::usage("--url needs ATTUNE_TOKEN: an admin token of that server (the bench registers its pack there)")
            })?;
            (u.clone(), token)
        }
        None => start_server(&args, &dir, &mut started)?,
    };
    let client = Client::new(&url, &token)?;
    register_pack(&client, &dir, delivery, format)?;

    // The parameters, and the exact bytes the action is given.
    let mut params = Map::new();
    params.insert(
        "data".into(),
        Value::String("x".repeat(args.payload as usize)),
    );
    let doc = attune_core::format::serialize(&params, format)
        .map_err(|e| CliError::failure(format!("cannot serialise the bench parameters: {e}")))?;
    let body = serde_json::to_vec(&json!({"action_ref": ACTION, "parameters": params}))
        .map_err(CliError::failure)?;
    drop(params);
    let script_path = dir.join("pack/actions/trivial.sh");

    // Warm up both paths (page cache, connections, the server's first execution).
    for _ in 0..c.min(8) {
        direct_spawn(&script_path, &doc, delivery, &dir);
        through_api(&client, &body);
    }
    // The two phases alternate in rounds (ABBA…): a drift of the machine's speed during
    // the run weighs on both alike. CPU time of each phase: for the direct spawns, the
    // scripts' (reaped children) and this process's (spawning them); for the API, the
    // started processes' own and their actions', and this process's (the client).
    let rounds = (args.rounds as usize).clamp(1, n.max(1));
    let bars = indicatif::MultiProgress::new();
    let direct_bar = bars.add(progress(n as u64, "direct spawn"));
    let api_bar = bars.add(progress(n as u64, "attune"));
    let api_client = Arc::new(client.clone());
    let (mut direct, mut api) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut direct_wall, mut api_wall) = (Duration::ZERO, Duration::ZERO);
    let (mut kids_ms, mut spawner_ms, mut client_ms) = (0.0, 0.0, 0.0);
    let mut by_started: Option<(f64, f64)> = Some((0.0, 0.0));
    for round in 0..rounds {
        let k = n / rounds + usize::from(round < n % rounds);
        for api_phase in [round % 2 == 1, round % 2 == 0] {
            let (self0, kids0) = (
                rusage_ms(libc::RUSAGE_SELF),
                rusage_ms(libc::RUSAGE_CHILDREN),
            );
            if api_phase {
                let server0 = started_cpu_ms(&started);
                let (samples, wall) =
                    on_threads(k, c, &api_bar, || through_api(&api_client, &body));
                let server1 = started_cpu_ms(&started);
                by_started = by_started
                    .zip(server0.zip(server1))
                    .map(|((a, s), (b0, b1))| (a + b1.1 - b0.1, s + b1.0 - b0.0));
                client_ms += rusage_ms(libc::RUSAGE_SELF) - self0;
                api.extend(samples);
                api_wall += wall;
            } else {
                let (samples, wall) = on_threads(k, c, &direct_bar, || {
                    direct_spawn(&script_path, &doc, delivery, &dir)
                });
                kids_ms += rusage_ms(libc::RUSAGE_CHILDREN) - kids0;
                spawner_ms += rusage_ms(libc::RUSAGE_SELF) - self0;
                direct.extend(samples);
                direct_wall += wall;
            }
        }
    }
    direct_bar.finish_and_clear();
    api_bar.finish_and_clear();
    let per = |ms: f64| ms / n.max(1) as f64;
    let (script, spawner, client) = (per(kids_ms), per(spawner_ms), per(client_ms));
    let by_started = by_started.map(|(actions, server)| (per(actions), per(server)));
    let cpu = json!({
        "direct_ms": script + spawner,
        "direct_script_ms": script,
        "direct_spawner_ms": spawner,
        "attune_ms": by_started.map(|(actions, server)| actions + server + client),
        "attune_actions_ms": by_started.map(|(actions, _)| actions),
        "attune_server_ms": by_started.map(|(_, server)| server),
        "attune_client_ms": client,
    });
    let cli = match args.cli_runs {
        0 => Value::Null,
        k => cli_runs(k, &url, &token, &dir)?,
    };
    // The started server's peak memory (kernel accounting: VmHWM), before it stops.
    let server_rss = started.0.first().and_then(|c| peak_rss_mib(c.id()));
    drop(started);

    let d = summary(&direct, direct_wall);
    let a = summary(&api, api_wall);
    let ph: Vec<(i64, i64, i64)> = api.iter().filter_map(|s| s.phases).collect();
    let server_side = json!({
        "queue_and_start_p50_ms": median_i64(ph.iter().map(|p| p.0).collect()),
        "run_p50_ms": median_i64(ph.iter().map(|p| p.1).collect()),
        "finish_to_client_p50_ms": median_i64(ph.iter().map(|p| p.2).collect()),
        "added_p50_ms": a["p50_ms"].as_f64().unwrap_or(f64::NAN) - d["p50_ms"].as_f64().unwrap_or(f64::NAN),
    });
    let store = match (&args.url, &args.database_url) {
        (Some(_), _) => "the server at --url".to_string(),
        (None, Some(_)) => format!("PostgreSQL, {} worker processes", args.workers),
        (None, None) => "SQLite, embedded workers".to_string(),
    };
    let report = json!({
        "action": ACTION,
        "executions": n,
        "concurrency": c,
        "rounds": rounds,
        "delivery": delivery.as_str(),
        "format": format.as_str(),
        "payload_bytes": args.payload,
        "document_bytes": doc.len(),
        "server": store,
        "direct_spawn": d,
        "attune": a,
        "throughput_ratio": a["per_second"].as_f64().unwrap_or(0.0) / d["per_second"].as_f64().unwrap_or(1.0).max(1e-9),
        "server_side": server_side,
        "server_peak_rss_mib": server_rss,
        "server_peak_rss_to_document": server_rss.map(|m| m * 1048576.0 / doc.len().max(1) as f64),
        "delivery_ratio": if args.payload > 0 { delivery_ratio(&server_side, &d) } else { Value::Null },
        "cpu_per_execution": cpu,
        "cli": cli,
    });
    if args.output != OutputFormat::Table {
        print_structured(&report, args.output)?;
    } else {
        print_report(&report);
    }
    let failed = a["failed"].as_u64().unwrap_or(0) + d["failed"].as_u64().unwrap_or(0);
    let first = direct.iter().chain(&api).find_map(|s| s.failure.as_deref());
    if let (true, Some(first)) = (failed > 0, first) {
        return Err(CliError::failure(format!(
            "{failed} of the runs failed; the first: {first}"
        )));
    }
    Ok(ExitCode::SUCCESS)
}

/// With a payload: how the action's run (from the records: delivery, the script reading
/// it, its exit) compares with the direct spawn of the same script with the same bytes.
fn delivery_ratio(server_side: &Value, direct: &Value) -> Value {
    match (
        server_side["run_p50_ms"].as_f64(),
        direct["p50_ms"].as_f64(),
    ) {
        (Some(run), Some(spawn)) if spawn >= 10.0 => json!(run / spawn),
        // Below 10 ms the records' millisecond resolution says nothing.
        _ => Value::Null,
    }
}

fn print_report(r: &Value) {
    let f = |v: &Value| match v.as_f64() {
        Some(x) if x.is_finite() => format!("{x:.2}"),
        _ => "-".into(),
    };
    println!(
        "{} × {} at concurrency {} ({} delivery, {}, {} parameter bytes); {}",
        r["executions"],
        ACTION,
        r["concurrency"],
        r["delivery"].as_str().unwrap_or(""),
        r["format"].as_str().unwrap_or(""),
        r["document_bytes"],
        r["server"].as_str().unwrap_or("")
    );
    let mut t = Table::new(&["", "PER SECOND", "P50 MS", "P95 MS", "P99 MS", "FAILED"]);
    for (name, k) in [("direct spawn", "direct_spawn"), ("attune (API)", "attune")] {
        let s = &r[k];
        t.row(&[
            name.to_string(),
            format!("{:.0}", s["per_second"].as_f64().unwrap_or(0.0)),
            f(&s["p50_ms"]),
            f(&s["p95_ms"]),
            f(&s["p99_ms"]),
            s["failed"].to_string(),
        ]);
    }
    t.print();
    let s = &r["server_side"];
    println!(
        "throughput ratio (attune / direct spawn): {}",
        f(&r["throughput_ratio"])
    );
    println!(
        "added latency p50: {} ms; from the records (ms resolution), p50: queue and start {} ms, run {} ms, finish to client {} ms",
        f(&s["added_p50_ms"]),
        s["queue_and_start_p50_ms"],
        s["run_p50_ms"],
        s["finish_to_client_p50_ms"]
    );
    let cpu = &r["cpu_per_execution"];
    if !cpu["attune_server_ms"].is_null() {
        let server = match r["server"].as_str() {
            Some(s) if s.starts_with("PostgreSQL") => {
                "server and workers (PostgreSQL's not counted)"
            }
            _ => "server",
        };
        println!(
            "CPU per execution: direct spawn {} ms (script {} + spawner {}); attune {} ms (actions {} + {server} {} + client {})",
            f(&cpu["direct_ms"]),
            f(&cpu["direct_script_ms"]),
            f(&cpu["direct_spawner_ms"]),
            f(&cpu["attune_ms"]),
            f(&cpu["attune_actions_ms"]),
            f(&cpu["attune_server_ms"]),
            f(&cpu["attune_client_ms"]),
        );
    }
    if let Some(rss) = r["server_peak_rss_mib"].as_f64() {
        match r["document_bytes"].as_u64() {
            Some(b) if b >= 1 << 20 => println!(
                "server peak RSS: {rss:.1} MiB, {} × the {:.1} MiB document",
                f(&r["server_peak_rss_to_document"]),
                b as f64 / 1048576.0
            ),
            _ => println!("server peak RSS: {rss:.1} MiB"),
        }
    }
    if !r["delivery_ratio"].is_null() {
        println!(
            "delivery: the action's run p50 {} ms against {} ms for the script spawned directly with the same bytes (ratio {})",
            s["run_p50_ms"],
            f(&r["direct_spawn"]["p50_ms"]),
            f(&r["delivery_ratio"])
        );
    }
    let c = &r["cli"];
    if !c.is_null() {
        println!(
            "attune run core.noop: p50 {} ms against the server, {} ms with --local (ratio {}, {} runs each)",
            f(&c["remote_p50_ms"]),
            f(&c["local_p50_ms"]),
            f(&c["ratio"]),
            c["runs"]
        );
        if !c["floor_p50_ms"].is_null() {
            println!(
                "attune run --local core.noop against a minimal spawner of the same script and stdin: p50 {} ms / {} ms (ratio {})",
                f(&c["local_p50_ms"]),
                f(&c["floor_p50_ms"]),
                f(&c["local_to_floor"])
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("2G").is_err());
        assert!(parse_size("12q").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(pct(&v, 50.0), 51.0);
        assert_eq!(pct(&v, 99.0), 99.0);
        assert_eq!(pct(&v, 100.0), 100.0);
        assert!(pct(&[], 50.0).is_nan());
    }
}
