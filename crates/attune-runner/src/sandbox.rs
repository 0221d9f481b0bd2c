//! What confines an action (DESIGN.md §3, Sandbox): a Landlock ruleset, a cgroup per
//! execution, and the credentials it runs with. Everything here runs in the worker, before
//! the spawn; the children only enforce what was prepared (see [`crate::spawn`]).
//!
//! Landlock is used through its three system calls directly rather than the `landlock`
//! crate: the ruleset must be *enforced* in the pre-exec action, which shares the worker's
//! memory and may only make raw system calls, so what the worker needs is the ruleset's
//! descriptor, built once per execution from rules opened once per worker.

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::spawn::{Confinement, Namespaces, PrivateTmp, SpawnSpec, Stage, StartFailure};

// Landlock access rights for files and directories (include/uapi/linux/landlock.h).
const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
const TRUNCATE: u64 = 1 << 14;
const IOCTL_DEV: u64 = 1 << 15;
/// Every right of ABI 1 (execute … make_sym).
const ABI1: u64 = (1 << 13) - 1;
const REFER: u64 = 1 << 13;
/// The rights a rule on a file (not a directory) may carry.
const FILE_RIGHTS: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;
/// Read and run: what the action gets on the system and on its own pack.
const READ_RUN: u64 = EXECUTE | READ_FILE | READ_DIR;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;
/// The most entries a directory is split into (see [`grant`]).
const MAX_SPLIT: usize = 64;
/// The device nodes (and directories of them) an action may use.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/console",
    "/dev/mqueue",
];
const CREATE_RULESET_VERSION: u32 = 1;
/// The directories each execution gets a private copy of (in its mount namespace).
const TMP_ROOTS: [&str; 2] = ["/tmp", "/var/tmp"];

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// The Landlock ABI the kernel offers, or why there is none.
fn landlock_abi() -> Result<i32, io::Error> {
    // SAFETY: the version query takes no attribute pointer.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(v as i32)
    }
}

/// The worker's half of the Landlock policy: the rights this kernel can enforce and the
/// system rules, opened once. Each execution adds its own directory and pack.
#[derive(Debug)]
struct Landlock {
    abi: i32,
    handled: u64,
    scoped: u64,
    rules: Vec<(OwnedFd, u64)>,
}

impl Landlock {
    fn new(abi: i32, protected: &[PathBuf]) -> Landlock {
        let mut handled = ABI1;
        if abi >= 2 {
            handled |= REFER;
        }
        if abi >= 3 {
            handled |= TRUNCATE;
        }
        if abi >= 5 {
            handled |= IOCTL_DEV;
        }
        let scoped = if abi >= 6 {
            SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        } else {
            0
        };
        let mut rules = Vec::new();
        // The system, read-only: programs, libraries, configuration, /proc. /dev is left to
        // the list below: splitting it around a runtime root in /dev/shm would take one
        // rule per device node.
        let mut system = protected.to_vec();
        system.push(PathBuf::from("/dev"));
        grant(Path::new("/"), READ_RUN, &system, &mut rules);
        // The devices programs use, read, written and ioctl'd (terminals).
        let device = READ_RUN | WRITE_FILE | TRUNCATE | IOCTL_DEV;
        // One listing of /dev rather than a stat per device.
        if let Ok(entries) = fs::read_dir("/dev") {
            let wanted = entries
                .flatten()
                .filter(|e| DEVICES.iter().any(|d| Path::new(d) == e.path()))
                .collect();
            grant_entries(wanted, device, protected, &mut rules);
        }
        // /tmp and /var/tmp get no more than the rest of the system: an action in
        // namespaces has its own (see `PrivateTmp`), covering these; one without them must
        // not share files through them. /dev/shm stays shared and writable (split around
        // the runtime root).
        grant(Path::new("/dev/shm"), handled, protected, &mut rules);
        Landlock {
            abi,
            handled,
            scoped,
            rules,
        }
    }

    /// A ruleset for one execution: the system rules, plus everything in `exec_dir` and
    /// read-and-run in `pack_dir`.
    fn ruleset(&self, exec_dir: &Path, pack_dir: Option<&Path>) -> io::Result<OwnedFd> {
        let attr = RulesetAttr {
            handled_access_fs: self.handled,
            handled_access_net: 0,
            scoped: self.scoped,
        };
        let size = match self.abi {
            ..=3 => 8,
            4 | 5 => 16,
            _ => std::mem::size_of::<RulesetAttr>(),
        };
        // SAFETY: `attr` is a valid attribute of at least `size` bytes, read during the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                size,
                0u32,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel returned a new descriptor that we now own.
        let ruleset = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        for (fd, rights) in &self.rules {
            self.add(&ruleset, fd.as_raw_fd(), *rights)?;
        }
        let own = open_path(exec_dir)?;
        self.add(&ruleset, own.0.as_raw_fd(), self.handled)?;
        if let Some(pack) = pack_dir {
            let (fd, is_dir) = open_path(pack)?;
            let rights = if is_dir {
                READ_RUN
            } else {
                READ_RUN & FILE_RIGHTS
            };
            self.add(&ruleset, fd.as_raw_fd(), rights)?;
        }
        Ok(ruleset)
    }

    fn add(&self, ruleset: &OwnedFd, parent: RawFd, rights: u64) -> io::Result<()> {
        crate::spawn::sys::landlock_allow_beneath(
            ruleset.as_raw_fd(),
            parent,
            rights & self.handled,
        )
        .map_err(|e| io::Error::from_raw_os_error(e.0))
    }
}

/// Opens `path` (not following a final symlink) for use as a rule's anchor; also says
/// whether it is a directory.
fn open_path(path: &Path) -> io::Result<(OwnedFd, bool)> {
    let fd = open_anchor(path, false)?;
    // SAFETY: fstat fills the zeroed struct, which outlives the call.
    let mode = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd.as_raw_fd(), &mut st) != 0 {
            return Err(io::Error::last_os_error());
        }
        st.st_mode & libc::S_IFMT
    };
    if mode == libc::S_IFLNK {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a symlink"));
    }
    Ok((fd, mode == libc::S_IFDIR))
}

/// An `O_PATH` descriptor of `path` itself (a final symlink is not followed); with `dir`,
/// only if it is a directory.
fn open_anchor(path: &Path, dir: bool) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
    // SAFETY: `c` is a valid C string for the call.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH
                | libc::O_CLOEXEC
                | libc::O_NOFOLLOW
                | if dir { libc::O_DIRECTORY } else { 0 },
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Grants `rights` beneath `path`, except beneath any protected path: a directory that
/// holds one is split into its entries, each granted alone (none if there are more than
/// [`MAX_SPLIT`]: denying is the safe side, and each rule costs every execution). Symlinks
/// are skipped: access is checked on what they resolve to.
fn grant(path: &Path, rights: u64, protected: &[PathBuf], rules: &mut Vec<(OwnedFd, u64)>) {
    if let Ok((fd, is_dir)) = open_path(path) {
        grant_opened(path, fd, is_dir, rights, protected, rules);
    }
}

/// [`grant`] for `path`, already open as `fd`.
fn grant_opened(
    path: &Path,
    fd: OwnedFd,
    is_dir: bool,
    rights: u64,
    protected: &[PathBuf],
    rules: &mut Vec<(OwnedFd, u64)>,
) {
    if protected.iter().any(|p| p == path) {
        return;
    }
    if !protected.iter().any(|p| p.starts_with(path)) {
        rules.push((fd, if is_dir { rights } else { rights & FILE_RIGHTS }));
        return;
    }
    drop(fd);
    let Ok(entries) = fs::read_dir(path) else {
        return;
    };
    let entries: Vec<fs::DirEntry> = entries.flatten().take(MAX_SPLIT + 1).collect();
    if entries.len() > MAX_SPLIT {
        return;
    }
    grant_entries(entries, rights, protected, rules);
}

/// [`grant`] for each of `entries` of one directory.
fn grant_entries(
    entries: Vec<fs::DirEntry>,
    rights: u64,
    protected: &[PathBuf],
    rules: &mut Vec<(OwnedFd, u64)>,
) {
    for entry in entries {
        // The entry's type comes with the listing: no stat per entry. Should an entry be
        // replaced after the listing, a directory's open fails (O_DIRECTORY), and what
        // replaced a file gets file rights only (less, never more).
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_symlink() {
            continue;
        }
        let path = entry.path();
        if let Ok(fd) = open_anchor(&path, kind.is_dir()) {
            grant_opened(&path, fd, kind.is_dir(), rights, protected, rules);
        }
    }
}

/// The cgroup v2 directory this process lives in, if the unified hierarchy is mounted.
fn own_cgroup() -> Option<PathBuf> {
    let cgroup = fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    // The usual places first: /proc/self/mountinfo is long on a busy host, and reading
    // it was the largest part of `run --local`'s cgroup cost. A mount there whose root
    // is not the namespace's root would not hold our cgroup's directory; then mountinfo
    // says where it is.
    for mount in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if is_cgroup2(Path::new(mount)) {
            let dir = Path::new(mount).join(rel.trim_start_matches('/'));
            if dir.join("cgroup.procs").exists() {
                return Some(dir);
            }
        }
    }
    let mounts = fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in mounts.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split(' ').next() != Some("cgroup2") {
            continue;
        }
        let fields: Vec<&str> = left.split(' ').collect();
        let (Some(root), Some(mount)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        let inner = rel.strip_prefix(root)?.trim_start_matches('/');
        let mount = Path::new(mount);
        return Some(if inner.is_empty() {
            mount.to_path_buf()
        } else {
            mount.join(inner)
        });
    }
    None
}

/// Whether a cgroup v2 file system is mounted at `path`.
fn is_cgroup2(path: &Path) -> bool {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid C string and `st` a zeroed struct, both outliving the call.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == CGROUP2_SUPER_MAGIC
    }
}

/// This worker's cgroup for executions, `attune-<pid>-<n>` beside the worker in its own
/// cgroup; removed with everything in it when dropped.
#[derive(Debug)]
pub struct CgroupParent {
    dir: PathBuf,
    next: AtomicU64,
    /// One execution only (`run --local`): it gets this cgroup itself, one level less.
    single: bool,
    /// Execution cgroups left empty by their execution, for the next ones: creating and
    /// removing a cgroup for every execution costs more than the rest of its confinement.
    free: Arc<Mutex<Vec<PathBuf>>>,
}

/// How many empty execution cgroups a worker keeps for reuse.
const KEPT_CGROUPS: usize = 64;

impl CgroupParent {
    /// Creates it, if the worker's cgroup is writable (root, or a delegated subtree).
    /// Leftovers of dead workers are removed first.
    pub fn create() -> io::Result<CgroupParent> {
        CgroupParent::create_for(false)
    }

    /// Like [`CgroupParent::create`]; `single`: for one execution, which gets it directly.
    pub fn create_for(single: bool) -> io::Result<CgroupParent> {
        let base = own_cgroup().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "no cgroup v2 hierarchy is mounted")
        })?;
        sweep_cgroups(&base);
        let dir = base.join(format!(
            "attune-{}-{}",
            std::process::id(),
            crate::workdir::random_hex(4)
        ));
        fs::create_dir(&dir)?;
        if !dir.join("cgroup.kill").exists() {
            let _ = fs::remove_dir(&dir);
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "cgroup.kill is missing (Linux < 5.14)",
            ));
        }
        Ok(CgroupParent {
            dir,
            next: AtomicU64::new(0),
            single,
            free: Arc::default(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An empty cgroup for one execution: one an earlier execution left empty, or a new one.
    pub fn exec_cgroup(&self) -> io::Result<ExecCgroup> {
        if self.single {
            // The one execution is started again if its namespaces fail: the cgroup that
            // ended with the first start is made anew.
            if self.next.fetch_add(1, Ordering::Relaxed) > 0 {
                fs::create_dir(&self.dir)?;
            }
            return Ok(ExecCgroup {
                dir: self.dir.clone(),
                free: None,
            });
        }
        let kept = self.free.lock().ok().and_then(|mut f| f.pop());
        let dir = match kept {
            Some(dir) => dir,
            None => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                let dir = self.dir.join(format!("x{n}"));
                fs::create_dir(&dir)?;
                dir
            }
        };
        Ok(ExecCgroup {
            dir,
            free: Some(self.free.clone()),
        })
    }
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        remove_cgroup_tree(&self.dir);
    }
}

/// Kills everything in a cgroup tree and removes it.
fn remove_cgroup_tree(dir: &Path) {
    match fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_cgroup_tree(&e.path());
                }
            }
        }
        // Gone already (`run --local`'s one execution removed it).
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(_) => {}
    }
    kill_and_remove(dir);
}

fn kill_and_remove(dir: &Path) {
    // An empty cgroup (the usual case: the supervisor killed every descendant) is simply
    // removed; one with processes left refuses with EBUSY, and they are killed.
    match fs::remove_dir(dir) {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
        _ => return,
    }
    if let Ok(mut f) = fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.kill"))
    {
        let _ = f.write_all(b"1");
    }
    // The killed (or just reaped) processes leave the cgroup asynchronously; rmdir succeeds
    // once the last is gone, usually within microseconds, so the first retries are quick.
    for attempt in 0..500 {
        match fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(std::time::Duration::from_micros(if attempt < 100 {
                    50
                } else {
                    5000
                }))
            }
            _ => return,
        }
    }
}

/// Removes the `attune-<pid>-*` cgroups of workers that no longer run.
fn sweep_cgroups(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("attune-"))
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            remove_cgroup_tree(&e.path());
        }
    }
}

/// One execution's cgroup: everything in it is killed and the cgroup removed on drop.
#[derive(Debug)]
pub struct ExecCgroup {
    dir: PathBuf,
    /// Where it goes back when its execution leaves it empty (none: removed).
    free: Option<Arc<Mutex<Vec<PathBuf>>>>,
}

impl ExecCgroup {
    /// Its directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Its directory, open: the action is started in it (`clone3` with
    /// `CLONE_INTO_CGROUP`), or joins it through its `cgroup.procs` where that is not
    /// available.
    pub fn open(&self) -> io::Result<OwnedFd> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&self.dir)?;
        Ok(OwnedFd::from(f))
    }
}

impl Drop for ExecCgroup {
    /// Once its execution has ended: kept for another if no process is left in it (its
    /// `cgroup.events` says `populated 0`), else everything in it is killed and it is
    /// removed.
    fn drop(&mut self) {
        if let Some(free) = &self.free {
            if is_empty_cgroup(&self.dir) {
                if let Ok(mut f) = free.lock() {
                    if f.len() < KEPT_CGROUPS {
                        f.push(std::mem::take(&mut self.dir));
                        return;
                    }
                }
            }
        }
        kill_and_remove(&self.dir);
    }
}

/// Whether no process is in the cgroup `dir` or below it, and it is not frozen (an action
/// that could write its cgroup's files, unconfined, must not freeze the next one).
fn is_empty_cgroup(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events")).is_ok_and(|events| {
        let mut lines = events.lines();
        lines.clone().any(|l| l == "populated 0") && !lines.any(|l| l == "frozen 1")
    })
}

/// Protects the worker's own memory (secrets, decrypted parameters) from core dumps and
/// from other processes; call it first thing, before any secret is loaded.
///
/// A root worker becomes undumpable (`PR_SET_DUMPABLE` 0: no core dumps, no ptrace, its
/// `/proc` files owned by root). An unprivileged one stays dumpable with `RLIMIT_CORE` 0
/// when Landlock is there: it must write its supervisors' user-namespace id maps, which
/// `/proc` makes root's for an undumpable process; and such a worker gains little from
/// being undumpable, since any other process of its user can read the data dir anyway,
/// while its actions cannot ptrace it (Landlock scopes ptrace) nor see it (private
/// `/proc`). Without Landlock, or when the namespaces prove impossible (see
/// [`Sandbox::new`]), it is made undumpable after all.
pub fn protect_worker() {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root || landlock_abi().is_err() {
        crate::spawn::make_undumpable();
        return;
    }
    // Failure leaves core dumps as the system has them, which PR_SET_DUMPABLE would not
    // improve on here.
    let _ = crate::spawn::sys::no_core_dumps();
}

/// Those of [`TMP_ROOTS`] that are real directories here (not symlinks).
fn existing_tmp_roots() -> Vec<PathBuf> {
    TMP_ROOTS
        .iter()
        .map(PathBuf::from)
        .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
        .collect()
}

/// Whether this process can give its actions private namespaces (see
/// [`crate::spawn::Namespaces`]), found by starting a supervisor in them for a program that
/// does not exist: a start that fails at exec has passed every namespace step.
pub fn probe_namespaces(ns: Namespaces) -> Result<Namespaces, String> {
    let spec = SpawnSpec {
        program: c"/nonexistent/attune-namespace-probe".into(),
        argv: vec![c"probe".into()],
        envp: Vec::new(),
        cwd: c"/".into(),
        confinement: Confinement {
            namespaces: Some(ns),
            private_tmp: PrivateTmp::covering(&existing_tmp_roots(), &[], 0),
            ..Confinement::default()
        },
    };
    let mut child = crate::spawn::spawn(spec).map_err(|e| {
        format!("this kernel or its policy refuses new PID and mount namespaces: {e}")
    })?;
    let mut report = [0u8; 8];
    let read = child
        .start_pipe
        .take()
        .map(|fd| io::Read::read_exact(&mut fs::File::from(fd), &mut report));
    // Reaps the supervisor, which has exited already.
    drop(child);
    match read {
        Some(Ok(())) => match StartFailure::decode(report) {
            f if f.stage == Stage::Exec => Ok(ns),
            f => Err(f.to_string()),
        },
        _ => Err("the namespace probe gave no report".into()),
    }
}

const WITHOUT_LANDLOCK: &str = "an unprivileged server isolates processes only with Landlock";

/// The namespaces this worker's actions get (see [`protect_worker`]).
fn namespaces_for_worker(landlock: bool) -> Result<Namespaces, String> {
    let ns = Namespaces::for_this_process();
    if let Namespaces::User { .. } = ns {
        if !landlock {
            return Err(WITHOUT_LANDLOCK.into());
        }
    }
    let probed = probe_namespaces(ns);
    if probed.is_err() {
        crate::spawn::make_undumpable();
    }
    probed
}

fn processes_line(namespaces: &Result<Namespaces, String>) -> String {
    match namespaces {
        Ok(ns) => format!(
            "processes: each execution has PID and mount namespaces of its own{}, with a private /proc (hidepid=2) and a private /tmp: an action sees its own processes only, not the worker's command line, and its own /tmp and /var/tmp",
            match ns {
                Namespaces::Privileged => "",
                Namespaces::User { .. } => " (in a user namespace mapping only the server's uid and gid)",
            }
        ),
        Err(why) => format!(
            "processes NOT isolated: {why}; actions can read every process's command line in /proc, and /tmp is the system's (read-only to them under Landlock)"
        ),
    }
}

/// How actions would be confined on this machine, without setting anything up: one line
/// per aspect, for `attune server --help`.
pub fn probe() -> Vec<String> {
    let landlock = match landlock_abi() {
        Ok(abi) if abi >= 1 => format!("  file-system sandbox: Landlock ABI {abi} (enforced)"),
        Ok(_) | Err(_) => "  file-system sandbox: DEGRADED, this kernel has no Landlock (--require-sandbox refuses to start)".to_string(),
    };
    let writable = own_cgroup().and_then(|dir| {
        let c = CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: access(2) reads the C string during the call.
        (unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0).then_some(dir)
    });
    let descendants = match writable {
        Some(dir) => format!(
            "  descendants: a cgroup per execution under {} (cgroup.kill) and the supervisor's sweep (child subreaper)",
            dir.display()
        ),
        None => "  descendants: the supervisor's sweep (child subreaper); no writable cgroup v2 subtree".to_string(),
    };
    let processes = format!(
        "  {}",
        processes_line(&probe_namespaces(Namespaces::for_this_process()))
    );
    vec![landlock, processes, descendants]
}

/// The first path on the way to `file` (a directory it cannot pass, or the file itself)
/// that `user` cannot get through or read, judging by owner, group and mode bits.
pub fn unreadable_by(file: &Path, user: &RunAs) -> Option<PathBuf> {
    inaccessible_to(file, user, 0o4)
}

/// Like [`unreadable_by`], for `want` (0o4 read, 0o1 execute) on the file itself.
pub fn inaccessible_to(file: &Path, user: &RunAs, want: u32) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let allowed = |m: &fs::Metadata, bit: u32| {
        if m.uid() == user.uid {
            m.mode() & (bit << 6) != 0
        } else if m.gid() == user.gid {
            m.mode() & (bit << 3) != 0
        } else {
            m.mode() & bit != 0
        }
    };
    let mut dirs: Vec<&Path> = file.ancestors().skip(1).collect();
    dirs.reverse();
    for d in dirs {
        if !fs::metadata(d).is_ok_and(|m| allowed(&m, 0o1)) {
            return Some(d.to_path_buf());
        }
    }
    (!fs::metadata(file).is_ok_and(|m| allowed(&m, want))).then(|| file.to_path_buf())
}

/// How actions are confined, decided once per worker.
#[derive(Debug)]
pub struct Sandbox {
    landlock: Option<Landlock>,
    landlock_missing: Option<String>,
    cgroup: Option<CgroupParent>,
    run_as: Option<RunAs>,
    /// The namespaces actions get, or why none.
    namespaces: std::sync::Mutex<Result<Namespaces, String>>,
    /// False until a start in them succeeded (or the probe did): until then a failure to
    /// set them up falls back to none (see [`Sandbox::namespaces_failed`]).
    namespaces_proven: std::sync::atomic::AtomicBool,
    /// Those of [`TMP_ROOTS`] that are real directories here: each execution in
    /// namespaces gets its own.
    tmp_roots: Vec<PathBuf>,
}

/// The user actions run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// The name given.
    pub name: String,
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
}

impl RunAs {
    /// Looks a user up by name or number: in `/etc/passwd` first (the common case, without
    /// NSS daemons to ask), then in the password database.
    pub fn lookup(user: &str) -> Result<RunAs, String> {
        if let Ok(passwd) = fs::read_to_string("/etc/passwd") {
            for line in passwd.lines() {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() >= 4 && (f[0] == user || f[2] == user) {
                    if let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) {
                        return Ok(RunAs {
                            name: user.to_string(),
                            uid,
                            gid,
                        });
                    }
                }
            }
        }
        let c = CString::new(user).map_err(|_| format!("bad user name {user:?}"))?;
        // SAFETY: getpwnam/getpwuid return a pointer to static storage or NULL; we copy
        // what we need before any other call. The worker is single-threaded at start.
        unsafe {
            let mut pw = libc::getpwnam(c.as_ptr());
            if pw.is_null() {
                if let Ok(uid) = user.parse::<u32>() {
                    pw = libc::getpwuid(uid);
                }
            }
            if pw.is_null() {
                return Err(format!("no user {user:?} in the password database"));
            }
            Ok(RunAs {
                name: user.to_string(),
                uid: (*pw).pw_uid,
                gid: (*pw).pw_gid,
            })
        }
    }
}

impl Sandbox {
    /// Sets up confinement for a worker. `protected` are the paths no action may reach (the
    /// data dir, the runtime root); `run_as` is the user actions run as, if not ours.
    pub fn new(protected: &[PathBuf], run_as: Option<RunAs>) -> Sandbox {
        Sandbox::build(protected, run_as, false, true)
    }

    /// Like [`Sandbox::new`], for a single execution (`run --local`). Unless `probe`, the
    /// namespaces are not probed first: the execution falls back to none if they fail.
    pub fn for_one_execution(protected: &[PathBuf], run_as: Option<RunAs>, probe: bool) -> Sandbox {
        Sandbox::build(protected, run_as, true, probe)
    }

    fn build(protected: &[PathBuf], run_as: Option<RunAs>, single: bool, probe: bool) -> Sandbox {
        let protected: Vec<PathBuf> = protected
            .iter()
            .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
            .collect();
        let (landlock, landlock_missing): (Option<Landlock>, _) = match landlock_abi() {
            Ok(abi) if abi >= 1 => (Some(Landlock::new(abi, &protected)), None),
            Ok(_) => (None, Some("the kernel reports no Landlock ABI".to_string())),
            Err(e) => (None, Some(format!("Landlock is unavailable: {e}"))),
        };
        // A server probes once; `run --local` does not pay for a probe that costs as much
        // as its one execution, and falls back if the namespaces fail (see `confine`).
        let namespaces = match (probe, Namespaces::for_this_process()) {
            (false, Namespaces::User { .. }) if landlock.is_none() => Err(WITHOUT_LANDLOCK.into()),
            (false, ns) => Ok(ns),
            (true, _) => namespaces_for_worker(landlock.is_some()),
        };
        let cgroup = CgroupParent::create_for(single).ok();
        Sandbox {
            landlock,
            landlock_missing,
            cgroup,
            run_as,
            namespaces_proven: std::sync::atomic::AtomicBool::new(probe),
            namespaces: std::sync::Mutex::new(namespaces),
            tmp_roots: existing_tmp_roots(),
        }
    }

    /// A sandbox that confines nothing (tests of the engine alone).
    pub fn none() -> Sandbox {
        Sandbox {
            landlock: None,
            landlock_missing: Some("disabled".into()),
            cgroup: None,
            run_as: None,
            namespaces: std::sync::Mutex::new(Err("disabled".into())),
            namespaces_proven: std::sync::atomic::AtomicBool::new(true),
            tmp_roots: Vec::new(),
        }
    }

    /// True when a part of the sandbox is missing: the file system (actions can reach the
    /// data dir) or the private `/proc` (actions can see other processes).
    pub fn degraded(&self) -> bool {
        !self.shortfalls().is_empty()
    }

    /// What is missing from the sandbox, a line each (empty when nothing is).
    pub fn shortfalls(&self) -> Vec<String> {
        let mut missing = Vec::new();
        if self.landlock.is_none() {
            missing.push(self.confinement_line());
        }
        if self.namespaces().is_err() {
            missing.push(self.processes_line());
        }
        missing
    }

    fn namespaces(&self) -> Result<Namespaces, String> {
        self.namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// An execution started in the namespaces: they work here.
    pub fn namespaces_worked(&self) {
        self.namespaces_proven.store(true, Ordering::Relaxed);
    }

    /// Setting up the namespaces failed for an execution (`why`), before its action
    /// started. Unless they have worked before, they are given up for good (the worker
    /// is made undumpable, see [`protect_worker`]) and true says to start it again
    /// without them.
    pub fn namespaces_failed(&self, why: &str) -> bool {
        if self.namespaces_proven.load(Ordering::Relaxed) {
            return false;
        }
        let mut ns = self
            .namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if ns.is_ok() {
            *ns = Err(why.to_string());
            crate::spawn::make_undumpable();
        }
        true
    }

    /// The user actions run as, if not the worker's.
    pub fn run_as(&self) -> Option<&RunAs> {
        self.run_as.as_ref()
    }

    /// The file-system sandbox in one line: enforced, or degraded and why.
    pub fn confinement_line(&self) -> String {
        match (&self.landlock, &self.landlock_missing) {
            (Some(l), _) => format!(
                "sandbox: Landlock ABI {} confines each action to its own directory, its pack (read-only), its private /tmp and the read-only system; the data dir and other executions are out of reach",
                l.abi
            ),
            (None, why) => format!(
                "sandbox DEGRADED: {}; actions can reach everything the run-as user can",
                why.as_deref().unwrap_or("no Landlock")
            ),
        }
    }

    /// What actions see of other processes, in one line.
    pub fn processes_line(&self) -> String {
        processes_line(&self.namespaces())
    }

    /// One line per aspect, for the log (the [`Sandbox::shortfalls`] among them are
    /// warnings).
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![self.confinement_line(), self.processes_line()];
        match &self.cgroup {
            Some(c) => lines.push(format!(
                "descendants: each execution gets a cgroup under {} (ended with cgroup.kill), and its supervisor kills every leftover descendant",
                c.dir().display()
            )),
            None => lines.push(
                "descendants: the supervisor (a child subreaper) kills every leftover descendant; no writable cgroup v2 subtree, so no per-execution cgroup".to_string(),
            ),
        }
        lines.push(match &self.run_as {
            Some(r) => format!("actions run as {} (uid {}, gid {})", r.name, r.uid, r.gid),
            None => "actions run as the server's own user".to_string(),
        });
        lines
    }

    /// The confinement of one execution, and its cgroup (kept until the supervisor is
    /// reaped, then dropped to kill whatever is left and remove it).
    pub fn confine(
        &self,
        exec_dir: &Path,
        pack_dir: Option<&Path>,
    ) -> io::Result<(crate::spawn::Confinement, Option<ExecCgroup>)> {
        let landlock = match &self.landlock {
            Some(l) => Some(l.ruleset(exec_dir, pack_dir)?),
            None => None,
        };
        let cgroup = match &self.cgroup {
            Some(c) => Some(c.exec_cgroup()?),
            None => None,
        };
        let cgroup_dir = match &cgroup {
            Some(c) => Some(c.open()?),
            None => None,
        };
        let namespaces = self.namespaces().ok();
        let private_tmp = namespaces.and_then(|_| self.private_tmp(exec_dir, pack_dir));
        Ok((
            crate::spawn::Confinement {
                proc_access: self.landlock.as_ref().map_or(0, |l| READ_RUN & l.handled),
                landlock,
                cgroup_dir,
                run_as: self.run_as.as_ref().map(|r| (r.uid, r.gid)),
                namespaces,
                private_tmp,
            },
            cgroup,
        ))
    }

    /// The private `/tmp` of an execution whose directory is `exec_dir` and pack
    /// `pack_dir` (see [`PrivateTmp::covering`]).
    fn private_tmp(&self, exec_dir: &Path, pack_dir: Option<&Path>) -> Option<Box<PrivateTmp>> {
        let access = self.landlock.as_ref().map_or(0, |l| l.handled);
        let needed: Vec<&Path> = [Some(exec_dir), pack_dir].into_iter().flatten().collect();
        PrivateTmp::covering(&self.tmp_roots, &needed, access)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An execution's cgroup it left empty serves the next one; one with a process left in
    /// it is emptied (the process killed) and removed, never given to another execution.
    #[test]
    fn empty_execution_cgroups_are_reused_and_occupied_ones_are_not() {
        let Ok(parent) = CgroupParent::create() else {
            // SAFETY: geteuid cannot fail.
            assert_ne!(unsafe { libc::geteuid() }, 0, "root can make a cgroup here");
            return;
        };
        let first = parent.exec_cgroup().expect("a cgroup");
        let path = first.path().to_path_buf();
        drop(first);
        let second = parent.exec_cgroup().expect("a cgroup");
        assert_eq!(second.path(), path, "the empty one is reused");

        let mut left = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        fs::write(path.join("cgroup.procs"), left.id().to_string()).expect("join");
        drop(second);
        let status = left.wait().expect("wait");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        assert!(!path.exists(), "an occupied cgroup is removed");
        let third = parent.exec_cgroup().expect("a cgroup");
        assert_ne!(third.path(), path);

        // One left frozen is not reused either.
        let frozen = third.path().to_path_buf();
        fs::write(frozen.join("cgroup.freeze"), "1").expect("freeze");
        drop(third);
        assert!(!frozen.exists(), "a frozen cgroup is removed");
        assert_ne!(parent.exec_cgroup().expect("a cgroup").path(), frozen);
    }

    /// Without namespaces there is no private `/tmp`: the system's is read-only to an
    /// action under Landlock, so it cannot leave a file there for another execution,
    /// while its own directory stays writable.
    #[test]
    fn without_namespaces_the_system_tmp_is_read_only() {
        if !landlock_abi().is_ok_and(|v| v >= 1) {
            eprintln!("skipped: no Landlock here");
            return;
        }
        let sandbox = Sandbox::for_one_execution(&[], None, false);
        assert!(sandbox.namespaces_failed("off for this test"));
        let exec = tempfile::tempdir().expect("tempdir");
        let left = PathBuf::from(format!("/tmp/attune-left-{}", std::process::id()));
        let (confinement, _cgroup) = sandbox.confine(exec.path(), None).expect("confine");
        assert!(confinement.private_tmp.is_none());
        let script = format!("echo x > '{}'; echo y > own", left.display());
        let c = |s: &str| CString::new(s).expect("no NUL");
        let spec = SpawnSpec {
            program: c("/bin/sh"),
            argv: vec![c("sh"), c("-c"), c(&script)],
            envp: vec![c("PATH=/usr/bin:/bin")],
            cwd: c(&exec.path().display().to_string()),
            confinement,
        };
        let child = crate::spawn::spawn(spec).expect("spawn");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(child.wait()).expect("wait");
        assert!(
            exec.path().join("own").exists(),
            "its own directory is writable"
        );
        assert!(!left.exists(), "the action wrote in the system's /tmp");
    }
}
