//! Spawning an action under a per-execution supervisor (DESIGN.md §3, Supervision and
//! Sandbox).
//!
//! `PR_SET_PDEATHSIG` reaches only a direct child, and fires when the parent *thread* ends,
//! not the process, so it cannot guard an action in a multi-threaded worker. Instead the
//! worker starts a small supervisor that starts the action and outlives it:
//!
//! - The supervisor is a *child subreaper*: whatever the action leaves behind (`setsid`,
//!   double fork, `nohup`) is re-parented to it once its parent dies. When the action ends,
//!   for any reason, the supervisor kills and reaps every descendant left, then exits.
//! - The action runs in a process group of its own. The worker never signals it directly:
//!   it writes a request (`T`: SIGTERM + SIGCONT, `K`: SIGKILL) on the *control* pipe, and
//!   the supervisor signals the action's group, which the supervisor alone can know to be
//!   still the action's (it reaps the action only after signalling).
//! - The worker's *lifeline* is a pipe whose write end only the worker holds. When the
//!   worker dies, for any reason including `kill -9`, it hangs up and the supervisor kills
//!   the action and every descendant.
//!
//! The supervisor shares the worker's memory (`CLONE_VM`, on a stack of its own) instead of
//! being a fork: forking a large multi-threaded worker copies its page tables and makes the
//! worker take a copy-on-write fault on every page it writes while the action runs, which
//! was most of the cost of a trivial execution. Sharing memory means the supervisor and the
//! action (started with `CLONE_VM | CLONE_VFORK` until it execs) may only make raw system
//! calls, through the typed wrappers in [`sys`]: no libc function that could touch a lock or
//! the parent thread's `errno`, and no allocation. Everything they need (paths, argv, envp,
//! the Landlock ruleset, the cgroup, the credentials) is prepared by the worker beforehand.
//!
//! Every step of the two children is checked. A step that fails is reported to the worker
//! as its [`Stage`] with the OS error, and the child exits without ever reaching `execve`:
//! a failed `setresuid` can never run the action with the worker's credentials.

use std::ffi::{c_void, CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Mutex, OnceLock};

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
compile_error!("attune-runner supports Linux on x86_64 and aarch64");

/// What to execute, prepared in the parent so the children never allocate.
#[derive(Debug)]
pub struct SpawnSpec {
    /// Absolute path of the program to exec.
    pub program: CString,
    /// argv, argv[0] included.
    pub argv: Vec<CString>,
    /// The complete environment, `NAME=value` each.
    pub envp: Vec<CString>,
    /// Working directory.
    pub cwd: CString,
    /// How the action is confined.
    pub confinement: Confinement,
}

/// The confinement of one action, prepared by the worker.
#[derive(Debug, Default)]
pub struct Confinement {
    /// A Landlock ruleset to enforce in the action before exec.
    pub landlock: Option<OwnedFd>,
    /// The Landlock rights the action gets on its private `/proc`, which the supervisor
    /// adds to the ruleset once it has mounted it: a rule on the system's `/proc`, made by
    /// the worker, does not reach a `/proc` mounted over it.
    pub proc_access: u64,
    /// The execution's cgroup directory: the action is started in it.
    pub cgroup_dir: Option<OwnedFd>,
    /// Credentials to run the action with (uid, gid; supplementary groups are dropped).
    pub run_as: Option<(u32, u32)>,
    /// Private PID and mount namespaces with a `/proc` of their own, in which the action
    /// sees only its own processes.
    pub namespaces: Option<Namespaces>,
    /// In those namespaces, a `/tmp` (and `/var/tmp`) of the execution's own.
    pub private_tmp: Option<Box<PrivateTmp>>,
}

/// The most paths a [`PrivateTmp`] keeps (the execution directory and the pack).
pub const MAX_KEPT: usize = 4;

/// A private `/tmp`, as systemd's `PrivateTmp=` gives a service: in the execution's mount
/// namespace each of `roots` is covered by an empty tmpfs of its own, gone with the
/// namespace. What the action needs that lives under one of them (`run --local` of a pack
/// in `/tmp`, a runtime dir there) is mounted back at its own path; nothing else of the
/// system's `/tmp` is visible.
#[derive(Debug, Default)]
pub struct PrivateTmp {
    /// The directories to cover (absolute, real directories, not symlinks).
    pub roots: Vec<CString>,
    /// The Landlock rights the action gets on each new tmpfs (0 without Landlock).
    pub access: u64,
    /// At most [`MAX_KEPT`] paths to mount back.
    pub keep: Vec<KeptPath>,
}

impl PrivateTmp {
    /// Covers each of `roots` except those that are, or lie inside, one of `needed`;
    /// each of `needed` under a covered root is kept. `None` when nothing is covered, or
    /// more than [`MAX_KEPT`] paths would have to be kept.
    pub fn covering(roots: &[PathBuf], needed: &[&Path], access: u64) -> Option<Box<PrivateTmp>> {
        let mut needed: Vec<(PathBuf, bool)> = needed
            .iter()
            .filter_map(|p| {
                let real = p.canonicalize().ok()?;
                let dir = std::fs::metadata(&real).ok()?.is_dir();
                Some((real, dir))
            })
            .collect();
        // Outer paths first: one inside another is then mounted on the real directory the
        // outer one brought back, never hidden under it.
        needed.sort_by_key(|(p, _)| p.components().count());
        let roots: Vec<&PathBuf> = roots
            .iter()
            .filter(|r| !needed.iter().any(|(p, _)| r.starts_with(p)))
            .collect();
        let mut keep = Vec::new();
        for (path, dir) in &needed {
            let Some(root) = roots.iter().position(|r| path.starts_with(r)) else {
                continue;
            };
            let parents = path
                .ancestors()
                .skip(1)
                .take_while(|a| *a != roots[root].as_path())
                .map(c_path)
                .collect::<Option<Vec<CString>>>()?;
            keep.push(KeptPath {
                root,
                path: c_path(path)?,
                dir: *dir,
                parents: parents.into_iter().rev().collect(),
            });
        }
        if roots.is_empty() || keep.len() > MAX_KEPT {
            return None;
        }
        Some(Box::new(PrivateTmp {
            roots: roots
                .into_iter()
                .map(|r| c_path(r))
                .collect::<Option<_>>()?,
            access,
            keep,
        }))
    }
}

/// `path` as a C string (`None` if it holds a NUL, which no real path does).
fn c_path(path: &Path) -> Option<CString> {
    CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())).ok()
}

/// A path under a [`PrivateTmp`] root that stays reachable.
#[derive(Debug)]
pub struct KeptPath {
    /// Index of its root in [`PrivateTmp::roots`].
    pub root: usize,
    /// The path itself (canonical).
    pub path: CString,
    /// Whether it is a directory (else a file).
    pub dir: bool,
    /// The directories between the root and it, outermost first, created (0755) to mount it on.
    pub parents: Vec<CString>,
}

/// How the supervisor gets its private PID and mount namespaces. Either way it is the
/// namespace's init, and mounts a `/proc` (`hidepid=2`) showing only the execution's
/// processes: not the worker, not other executions, not the supervisor itself (whose
/// memory, shared with the worker, holds the worker's command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespaces {
    /// A privileged worker (root) creates them directly.
    Privileged,
    /// An unprivileged worker needs a user namespace too, in which only its own uid and
    /// gid are mapped (to themselves); the action keeps no capability across exec.
    User {
        /// The worker's effective uid.
        uid: u32,
        /// The worker's effective gid.
        gid: u32,
    },
}

impl Namespaces {
    /// The namespaces this worker can create: privileged as root, else with a user
    /// namespace.
    pub fn for_this_process() -> Namespaces {
        // SAFETY: geteuid and getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if uid == 0 {
            Namespaces::Privileged
        } else {
            Namespaces::User { uid, gid }
        }
    }

    fn clone_flags(self) -> i32 {
        let both = libc::CLONE_NEWPID | libc::CLONE_NEWNS;
        match self {
            Namespaces::Privileged => both,
            Namespaces::User { .. } => both | libc::CLONE_NEWUSER,
        }
    }
}

/// One line of `uid_map`/`gid_map` mapping an id to itself, formatted by the worker.
#[derive(Clone, Copy)]
struct IdMap {
    buf: [u8; 40],
    len: usize,
}

impl IdMap {
    fn identity(id: u32) -> IdMap {
        let mut buf = [0u8; 40];
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        // 3 × 10 digits, 2 spaces and a newline always fit in 40 bytes.
        let _ = std::io::Write::write_fmt(&mut cursor, format_args!("{id} {id} 1\n"));
        let len = cursor.position() as usize;
        IdMap { buf, len }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// How the supervised action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

/// One step of starting an action, in the order the children take them. The first seven are
/// the supervisor's, the rest the action's before it execs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Stage {
    /// The supervisor's own process group (`setpgid`).
    SupervisorGroup = 1,
    /// Moving descriptors to their fixed numbers and closing the rest.
    Descriptors,
    /// Mapping the worker's uid and gid in the supervisor's user namespace (unprivileged
    /// workers only).
    IdMapping,
    /// Making every mount in the supervisor's mount namespace a slave, so that nothing
    /// mounted there reaches the rest of the system.
    MountPropagation,
    /// Mounting the private `/proc`.
    PrivateProc,
    /// Mounting the private `/tmp` (see [`PrivateTmp`]).
    PrivateTmp,
    /// Becoming the child subreaper (`PR_SET_CHILD_SUBREAPER`).
    Subreaper,
    /// Entering the working directory.
    WorkingDirectory,
    /// Starting the action process (`clone`).
    StartAction,
    /// The action's own process group (`setpgid`).
    ActionGroup,
    /// Resetting signal handlers to their defaults (`rt_sigaction`).
    Signals,
    /// Joining the execution's cgroup.
    Cgroup,
    /// Disabling core dumps (`RLIMIT_CORE` 0).
    CoreLimit,
    /// Dropping supplementary groups (`setgroups`).
    Groups,
    /// Switching group (`setresgid`).
    Gid,
    /// Switching user (`setresuid`).
    Uid,
    /// Dying with the supervisor (`PR_SET_PDEATHSIG`, after the credentials change, which
    /// clears it).
    DeathSignal,
    /// `PR_SET_NO_NEW_PRIVS`, which Landlock requires first.
    NoNewPrivs,
    /// Enforcing the Landlock ruleset.
    Landlock,
    /// Unblocking every signal (`rt_sigprocmask`).
    SignalMask,
    /// Executing the program.
    Exec,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 21] = [
        Stage::SupervisorGroup,
        Stage::Descriptors,
        Stage::IdMapping,
        Stage::MountPropagation,
        Stage::PrivateProc,
        Stage::PrivateTmp,
        Stage::Subreaper,
        Stage::WorkingDirectory,
        Stage::StartAction,
        Stage::ActionGroup,
        Stage::Signals,
        Stage::Cgroup,
        Stage::CoreLimit,
        Stage::Groups,
        Stage::Gid,
        Stage::Uid,
        Stage::DeathSignal,
        Stage::NoNewPrivs,
        Stage::Landlock,
        Stage::SignalMask,
        Stage::Exec,
    ];

    /// Whether this is one of the supervisor's namespace steps, which fail before the
    /// action exists.
    pub fn sets_up_namespaces(self) -> bool {
        matches!(
            self,
            Stage::IdMapping | Stage::MountPropagation | Stage::PrivateProc | Stage::PrivateTmp
        )
    }

    fn from_code(code: i32) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| *s as i32 == code)
    }

    /// What the step does, for the error message.
    pub fn describe(self) -> &'static str {
        match self {
            Stage::SupervisorGroup => "giving the supervisor its process group",
            Stage::Descriptors => "setting up the supervisor's descriptors",
            Stage::IdMapping => "mapping the worker's uid and gid in the user namespace",
            Stage::MountPropagation => "isolating the supervisor's mount namespace",
            Stage::PrivateProc => "mounting the execution's private /proc",
            Stage::PrivateTmp => "mounting the execution's private /tmp",
            Stage::Subreaper => "making the supervisor a child subreaper",
            Stage::WorkingDirectory => "entering the working directory",
            Stage::StartAction => "starting the action process",
            Stage::ActionGroup => "giving the action its process group",
            Stage::Signals => "resetting the action's signal handlers",
            Stage::Cgroup => "moving the action into its cgroup",
            Stage::CoreLimit => "disabling core dumps",
            Stage::Groups => "dropping supplementary groups",
            Stage::Gid => "switching to the run-as group",
            Stage::Uid => "switching to the run-as user",
            Stage::DeathSignal => "tying the action's life to its supervisor",
            Stage::NoNewPrivs => "setting no_new_privs",
            Stage::Landlock => "enforcing the Landlock sandbox",
            Stage::SignalMask => "unblocking the action's signals",
            Stage::Exec => "executing the program",
        }
    }
}

/// The stage at which starting the action failed, and the OS error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartFailure {
    /// The step that failed.
    pub stage: Stage,
    /// errno.
    pub errno: i32,
}

impl StartFailure {
    /// Decodes the 8-byte report a child writes on the start pipe.
    pub fn decode(buf: [u8; 8]) -> StartFailure {
        let code = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
        match Stage::from_code(code) {
            Some(stage) => StartFailure { stage, errno },
            // Only our own children write here; a garbled report still must not look like
            // success.
            None => StartFailure {
                stage: Stage::Exec,
                errno: libc::EPROTO,
            },
        }
    }
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} failed: {}",
            self.stage.describe(),
            io::Error::from_raw_os_error(self.errno)
        )
    }
}

/// Raw Linux system calls behind typed, checked wrappers: no errno, no locks, nothing
/// thread-local, no allocation, so the supervisor and the pre-exec action (which share the
/// worker's memory) may call them.
pub mod sys {
    use std::ffi::CStr;
    use std::os::fd::RawFd;

    /// An OS error number.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Errno(pub i32);

    /// A system call's outcome.
    pub type SysResult<T = ()> = Result<T, Errno>;

    /// Makes system call `n`; returns the kernel's result, a value or `-errno`.
    ///
    /// # Safety
    /// `n` and `a` must form a valid call: every pointer argument must be valid for what
    /// the call does with it (read or write, and for how long).
    #[inline(always)]
    unsafe fn raw(n: libc::c_long, a: [usize; 6]) -> isize {
        let ret: isize;
        // SAFETY: the instruction itself is always sound; what the call does with its
        // arguments is the caller's obligation (see above).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
                in("r10") a[3], in("r8") a[4], in("r9") a[5],
                lateout("rcx") _, lateout("r11") _,
                options(nostack),
            );
        }
        // SAFETY: as above.
        #[cfg(target_arch = "aarch64")]
        unsafe {
            std::arch::asm!(
                "svc 0",
                in("x8") n,
                inlateout("x0") a[0] as isize => ret,
                in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
                options(nostack),
            );
        }
        ret
    }

    fn check(ret: isize) -> SysResult<usize> {
        if ret < 0 {
            Err(Errno(-ret as i32))
        } else {
            Ok(ret as usize)
        }
    }

    /// A call whose arguments are all plain integers.
    fn int_call(n: libc::c_long, args: &[usize]) -> SysResult<usize> {
        let mut a = [0usize; 6];
        a[..args.len()].copy_from_slice(args);
        // SAFETY: no argument is a pointer, so the kernel dereferences nothing of ours.
        check(unsafe { raw(n, a) })
    }

    /// `setpgid(pid, pgid)`.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn setpgid(pid: libc::pid_t, pgid: libc::pid_t) -> SysResult {
        int_call(libc::SYS_setpgid, &[pid as usize, pgid as usize]).map(drop)
    }

    /// `fcntl(fd, F_DUPFD_CLOEXEC, min)`: a close-on-exec copy at `min` or above.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn dup_above(fd: RawFd, min: RawFd) -> SysResult<RawFd> {
        int_call(
            libc::SYS_fcntl,
            &[fd as usize, libc::F_DUPFD_CLOEXEC as usize, min as usize],
        )
        .map(|f| f as RawFd)
    }

    /// `dup3(from, to, flags)`.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn dup3(from: RawFd, to: RawFd, flags: i32) -> SysResult {
        int_call(
            libc::SYS_dup3,
            &[from as usize, to as usize, flags as usize],
        )
        .map(drop)
    }

    /// `close(fd)`.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn close(fd: RawFd) -> SysResult {
        int_call(libc::SYS_close, &[fd as usize]).map(drop)
    }

    /// `close_range(first, ~0, 0)`.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn close_range(first: RawFd) -> SysResult {
        int_call(
            libc::SYS_close_range,
            &[first as usize, u32::MAX as usize, 0],
        )
        .map(drop)
    }

    /// `prctl(option, arg)`, the options that take one integer.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn prctl(option: i32, arg: usize) -> SysResult<usize> {
        int_call(libc::SYS_prctl, &[option as usize, arg, 0, 0, 0])
    }

    /// `kill(pid, sig)`.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn kill(pid: libc::pid_t, sig: i32) -> SysResult {
        int_call(libc::SYS_kill, &[pid as usize, sig as usize]).map(drop)
    }

    /// `getpid()`.
    pub fn getpid() -> libc::pid_t {
        int_call(libc::SYS_getpid, &[]).unwrap_or(0) as libc::pid_t
    }

    /// `getppid()`.
    pub fn getppid() -> libc::pid_t {
        int_call(libc::SYS_getppid, &[]).unwrap_or(0) as libc::pid_t
    }

    /// `pidfd_open(pid, 0)`.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn pidfd_open(pid: libc::pid_t) -> SysResult<RawFd> {
        int_call(libc::SYS_pidfd_open, &[pid as usize, 0]).map(|f| f as RawFd)
    }

    /// `setgroups(0, NULL)`: no supplementary groups.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn drop_groups() -> SysResult {
        int_call(libc::SYS_setgroups, &[0, 0]).map(drop)
    }

    /// `setresgid(gid, gid, gid)`.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn setresgid(gid: u32) -> SysResult {
        let g = gid as usize;
        int_call(libc::SYS_setresgid, &[g, g, g]).map(drop)
    }

    /// `setresuid(uid, uid, uid)`.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn setresuid(uid: u32) -> SysResult {
        let u = uid as usize;
        int_call(libc::SYS_setresuid, &[u, u, u]).map(drop)
    }

    /// `landlock_add_rule(ruleset, LANDLOCK_RULE_PATH_BENEATH, {rights, parent}, 0)`.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn landlock_allow_beneath(ruleset: RawFd, parent: RawFd, rights: u64) -> SysResult {
        #[repr(C, packed)]
        struct PathBeneath {
            allowed_access: u64,
            parent_fd: i32,
        }
        let attr = PathBeneath {
            allowed_access: rights,
            parent_fd: parent,
        };
        // SAFETY: `attr` is a valid path-beneath attribute, read during the call.
        check(unsafe {
            raw(
                libc::SYS_landlock_add_rule,
                [
                    ruleset as usize,
                    1,
                    &attr as *const PathBeneath as usize,
                    0,
                    0,
                    0,
                ],
            )
        })
        .map(drop)
    }

    /// `landlock_restrict_self(ruleset, 0)`.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn landlock_restrict_self(ruleset: RawFd) -> SysResult {
        int_call(libc::SYS_landlock_restrict_self, &[ruleset as usize, 0]).map(drop)
    }

    /// Resets `sig` to its default disposition.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn default_signal(sig: i32) -> SysResult {
        // The kernel's `struct sigaction`: handler SIG_DFL, no flags, no restorer, empty mask.
        let action = [0u64; 4];
        // SAFETY: `action` is a valid kernel sigaction, read during the call only; the old
        // action pointer is NULL; 8 is the size of the kernel's sigset.
        check(unsafe {
            raw(
                libc::SYS_rt_sigaction,
                [sig as usize, action.as_ptr() as usize, 0, 8, 0, 0],
            )
        })
        .map(drop)
    }

    /// Unblocks every signal.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn unblock_all_signals() -> SysResult {
        let empty: u64 = 0;
        // SAFETY: `empty` is a valid kernel sigset read during the call; no old set.
        check(unsafe {
            raw(
                libc::SYS_rt_sigprocmask,
                [
                    libc::SIG_SETMASK as usize,
                    &empty as *const u64 as usize,
                    0,
                    8,
                    0,
                    0,
                ],
            )
        })
        .map(drop)
    }

    /// Sets `RLIMIT_CORE` to 0 (soft and hard).
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn no_core_dumps() -> SysResult {
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `zero` is a valid rlimit read during the call; no old limit is returned.
        check(unsafe {
            raw(
                libc::SYS_prlimit64,
                [
                    0,
                    libc::RLIMIT_CORE as usize,
                    &zero as *const libc::rlimit as usize,
                    0,
                    0,
                    0,
                ],
            )
        })
        .map(drop)
    }

    /// The soft `RLIMIT_NOFILE`.
    pub fn max_files() -> usize {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: the kernel writes the current limit into `lim`, which outlives the call.
        let r = unsafe {
            raw(
                libc::SYS_prlimit64,
                [
                    0,
                    libc::RLIMIT_NOFILE as usize,
                    0,
                    &mut lim as *mut libc::rlimit as usize,
                    0,
                    0,
                ],
            )
        };
        if r == 0 {
            lim.rlim_cur.min(1 << 20) as usize
        } else {
            4096
        }
    }

    /// `chdir(path)`.
    ///
    /// # Safety
    /// `path` must point to a NUL-terminated string that stays valid for the call.
    #[must_use = "a failed step must be reported, never ignored"]
    pub unsafe fn chdir(path: *const libc::c_char) -> SysResult {
        // SAFETY: the caller guarantees `path`.
        check(unsafe { raw(libc::SYS_chdir, [path as usize, 0, 0, 0, 0, 0]) }).map(drop)
    }

    /// `execve(program, argv, envp)`; returns only on failure.
    ///
    /// # Safety
    /// `program` must be a NUL-terminated string; `argv` and `envp` NULL-terminated arrays
    /// of NUL-terminated strings; all valid for the call.
    #[must_use = "a failed step must be reported, never ignored"]
    pub unsafe fn execve(
        program: *const libc::c_char,
        argv: *const *const libc::c_char,
        envp: *const *const libc::c_char,
    ) -> Errno {
        // SAFETY: the caller guarantees the three pointers.
        let r = unsafe {
            raw(
                libc::SYS_execve,
                [program as usize, argv as usize, envp as usize, 0, 0, 0],
            )
        };
        Errno(-r as i32)
    }

    /// `open(path, flags)` of a static path.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn open(path: &CStr, flags: i32) -> SysResult<RawFd> {
        openat(libc::AT_FDCWD, path, flags)
    }

    /// `openat(dir, path, flags)`.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn openat(dir: RawFd, path: &CStr, flags: i32) -> SysResult<RawFd> {
        // SAFETY: `path` is a NUL-terminated string borrowed for the call.
        check(unsafe {
            raw(
                libc::SYS_openat,
                [
                    dir as usize,
                    path.as_ptr() as usize,
                    flags as usize,
                    0,
                    0,
                    0,
                ],
            )
        })
        .map(|f| f as RawFd)
    }

    /// `mount(source, target, fstype, flags, data)`.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn mount(
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: u64,
        data: Option<&CStr>,
    ) -> SysResult {
        let ptr = |s: Option<&CStr>| s.map_or(0, |s| s.as_ptr() as usize);
        // SAFETY: every pointer is NULL or a NUL-terminated string borrowed for the call.
        check(unsafe {
            raw(
                libc::SYS_mount,
                [
                    ptr(source),
                    target.as_ptr() as usize,
                    ptr(fstype),
                    flags as usize,
                    ptr(data),
                    0,
                ],
            )
        })
        .map(drop)
    }

    /// `open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)`: a
    /// detached copy of the mount tree at `path`, to be attached elsewhere by [`move_mount`].
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn open_tree_clone(path: &CStr) -> SysResult<RawFd> {
        const OPEN_TREE_CLONE: usize = 1;
        const AT_RECURSIVE: usize = 0x8000;
        // SAFETY: `path` is a NUL-terminated string borrowed for the call.
        check(unsafe {
            raw(
                libc::SYS_open_tree,
                [
                    libc::AT_FDCWD as usize,
                    path.as_ptr() as usize,
                    OPEN_TREE_CLONE | libc::O_CLOEXEC as usize | AT_RECURSIVE,
                    0,
                    0,
                    0,
                ],
            )
        })
        .map(|f| f as RawFd)
    }

    /// `move_mount(tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`: attaches the
    /// detached tree `tree` (from [`open_tree_clone`]) at `target`.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn move_mount(tree: RawFd, target: &CStr) -> SysResult {
        const MOVE_MOUNT_F_EMPTY_PATH: usize = 4;
        // SAFETY: both strings are NUL-terminated and borrowed for the call.
        check(unsafe {
            raw(
                libc::SYS_move_mount,
                [
                    tree as usize,
                    c"".as_ptr() as usize,
                    libc::AT_FDCWD as usize,
                    target.as_ptr() as usize,
                    MOVE_MOUNT_F_EMPTY_PATH,
                    0,
                ],
            )
        })
        .map(drop)
    }

    /// `mkdir(path, mode)`, then `chmod(path, mode)` (the umask does not apply); a
    /// directory already there is left as it is.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn make_dir(path: &CStr, mode: u32) -> SysResult {
        // SAFETY: `path` is a NUL-terminated string borrowed for the call.
        let made = check(unsafe {
            raw(
                libc::SYS_mkdirat,
                [
                    libc::AT_FDCWD as usize,
                    path.as_ptr() as usize,
                    mode as usize,
                    0,
                    0,
                    0,
                ],
            )
        });
        match made {
            Err(Errno(libc::EEXIST)) => Ok(()),
            Err(e) => Err(e),
            // SAFETY: as above.
            Ok(_) => check(unsafe {
                raw(
                    libc::SYS_fchmodat,
                    [
                        libc::AT_FDCWD as usize,
                        path.as_ptr() as usize,
                        mode as usize,
                        0,
                        0,
                        0,
                    ],
                )
            })
            .map(drop),
        }
    }

    /// Creates the empty file `path` (mode 0444) if it is not there, to mount a file on.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn make_file(path: &CStr) -> SysResult {
        // SAFETY: `path` is a NUL-terminated string borrowed for the call.
        let fd = check(unsafe {
            raw(
                libc::SYS_openat,
                [
                    libc::AT_FDCWD as usize,
                    path.as_ptr() as usize,
                    (libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC) as usize,
                    0o444,
                    0,
                    0,
                ],
            )
        })?;
        close(fd as RawFd)
    }

    /// Writes `data` to the existing file `path` in one `write`, as `/proc` files want.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn write_file(path: &CStr, data: &[u8]) -> SysResult {
        let fd = open(path, libc::O_WRONLY | libc::O_CLOEXEC)?;
        let written = write(fd, data);
        let closed = close(fd);
        match written? {
            n if n == data.len() => closed,
            _ => Err(Errno(libc::EIO)),
        }
    }

    /// `read(fd, buf)`.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn read(fd: RawFd, buf: &mut [u8]) -> SysResult<usize> {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, borrowed mutably.
        check(unsafe {
            raw(
                libc::SYS_read,
                [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0],
            )
        })
    }

    /// `write(fd, buf)`.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn write(fd: RawFd, buf: &[u8]) -> SysResult<usize> {
        // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`, borrowed.
        check(unsafe {
            raw(
                libc::SYS_write,
                [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0],
            )
        })
    }

    /// `ppoll(fds, timeout, NULL)`.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn ppoll(fds: &mut [libc::pollfd], timeout: Option<&libc::timespec>) -> SysResult<usize> {
        let ts = timeout.map_or(0, |t| t as *const libc::timespec as usize);
        // SAFETY: the kernel updates `revents` within `fds` (borrowed mutably) and reads
        // the optional timeout (borrowed); no signal mask is passed.
        check(unsafe {
            raw(
                libc::SYS_ppoll,
                [fds.as_mut_ptr() as usize, fds.len(), ts, 0, 8, 0],
            )
        })
    }

    /// `wait4(pid, &status, options, NULL)`: the pid reaped (0 with `WNOHANG` and none) and
    /// its wait status.
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn wait4(pid: libc::pid_t, options: i32) -> SysResult<(libc::pid_t, i32)> {
        let mut status: libc::c_int = 0;
        // SAFETY: the kernel writes the status into `status`, which outlives the call.
        let r = check(unsafe {
            raw(
                libc::SYS_wait4,
                [
                    pid as usize,
                    &mut status as *mut libc::c_int as usize,
                    options as usize,
                    0,
                    0,
                    0,
                ],
            )
        })?;
        Ok((r as libc::pid_t, status))
    }

    /// Whether child `pid` has exited, without reaping it (`waitid` with `WNOWAIT`).
    #[must_use = "a failed step must be reported, never ignored"]
    pub fn has_exited(pid: libc::pid_t) -> SysResult<bool> {
        // SAFETY: siginfo_t is plain data; all-zero is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: the kernel fills `info`, which outlives the call; no rusage.
        check(unsafe {
            raw(
                libc::SYS_waitid,
                [
                    libc::P_PID as usize,
                    pid as usize,
                    &mut info as *mut libc::siginfo_t as usize,
                    (libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) as usize,
                    0,
                    0,
                ],
            )
        })?;
        // SAFETY: after a successful waitid the pid field is initialised (0 if none).
        Ok(unsafe { info.si_pid() } == pid)
    }

    /// Sleeps for `ms` milliseconds.
    pub fn sleep_ms(ms: i64) {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: ms * 1_000_000,
        };
        // SAFETY: `ts` is read during the call; no remainder is returned.
        let _ = check(unsafe {
            raw(
                libc::SYS_nanosleep,
                [&ts as *const libc::timespec as usize, 0, 0, 0, 0, 0],
            )
        });
    }

    /// `exit_group(code)`.
    pub fn exit(code: i32) -> ! {
        loop {
            let _ = int_call(libc::SYS_exit_group, &[code as usize]);
        }
    }
}

use sys::{Errno, SysResult};

/// Everything the supervisor and the action read, at a stable address owned by the
/// [`Supervised`] handle until the supervisor is reaped.
#[repr(C)]
struct ChildArgs {
    /// Descriptors in the worker's table, copied into the supervisor's by `clone`.
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    lifeline: RawFd,
    start: RawFd,
    control: RawFd,
    landlock: RawFd,
    proc_access: u64,
    /// The private `/tmp` (NULL: none), in the spec the worker keeps alive.
    private_tmp: *const PrivateTmp,
    cgroup_dir: RawFd,
    /// Set by the supervisor when the action is started outside its cgroup (no `clone3`
    /// here): the action then joins it itself.
    join_cgroup: bool,
    run_as: bool,
    uid: u32,
    gid: u32,
    namespaces: Option<Namespaces>,
    uid_map: IdMap,
    gid_map: IdMap,
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    action_stack_top: *mut c_void,
    action_stack_len: usize,
    supervisor_pid: libc::pid_t,
    /// A stage to fail on purpose (0: none); tests only.
    inject: i32,
    /// The action's wait status, written by the supervisor before it exits (-1: none).
    status: AtomicI64,
}

/// Owns what the children use: the spec, pointer arrays, args and stacks.
struct ChildMemory {
    _spec: SpawnSpec,
    _argv: Vec<*const libc::c_char>,
    _envp: Vec<*const libc::c_char>,
    args: Box<ChildArgs>,
    stacks: [Stack; 2],
}

// SAFETY: the raw pointers point into `_spec` and the pointer vectors, owned alongside.
unsafe impl Send for ChildMemory {}
// SAFETY: after the children exec or exit nothing mutates it but the atomic status.
unsafe impl Sync for ChildMemory {}

/// An mmap'd stack with a guard page below it.
struct Stack {
    base: *mut c_void,
    len: usize,
}

/// The stacks of reaped children (base address and length of each mapping), kept for the
/// next executions: mapping two stacks and unmapping them again for every execution costs
/// a TLB shootdown across the worker's threads each time.
static FREE_STACKS: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// How many free stacks are kept at most (2 per execution; more are unmapped).
const KEPT_STACKS: usize = 128;

impl Stack {
    const GUARD: usize = 4096;

    /// A free stack of `len` usable bytes, else a new one.
    fn take(len: usize) -> io::Result<Stack> {
        let kept = FREE_STACKS.lock().ok().and_then(|mut free| {
            let i = free.iter().position(|&(_, l)| l == len + Stack::GUARD)?;
            Some(free.swap_remove(i))
        });
        match kept {
            Some((base, len)) => Ok(Stack {
                base: base as *mut c_void,
                len,
            }),
            None => Stack::new(len),
        }
    }

    fn new(len: usize) -> io::Result<Stack> {
        const GUARD: usize = Stack::GUARD;
        // SAFETY: an anonymous private mapping we own.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len + GUARD,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack {
            base,
            len: len + GUARD,
        };
        // SAFETY: the guard page is the first page of the mapping we just made.
        if unsafe { libc::mprotect(base, GUARD, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// Its size without the guard page.
    fn usable(&self) -> usize {
        self.len - Stack::GUARD
    }

    fn top(&self) -> *mut c_void {
        // 16-byte aligned: mmap returns page-aligned memory and len is a page multiple.
        self.base.wrapping_byte_add(self.len)
    }
}

impl Drop for Stack {
    /// Runs once nothing runs on the stack (its child was reaped): kept for another
    /// child, or unmapped.
    fn drop(&mut self) {
        if let Ok(mut free) = FREE_STACKS.lock() {
            if free.len() < KEPT_STACKS {
                free.push((self.base as usize, self.len));
                return;
            }
        }
        // SAFETY: unmapping our own mapping once nothing runs on it.
        unsafe {
            libc::munmap(self.base, self.len);
        }
    }
}

/// A request to the supervisor about the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGTERM, then SIGCONT (so a stopped action can act on it), to the action's group.
    Terminate,
    /// SIGKILL to the action's group; the supervisor then kills every descendant.
    Kill,
}

/// A running, supervised action.
pub struct Supervised {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
    /// Write end of the action's stdin.
    pub stdin: Option<OwnedFd>,
    /// Read end of the action's stdout.
    pub stdout: Option<OwnedFd>,
    /// Read end of the action's stderr.
    pub stderr: Option<OwnedFd>,
    /// Read end of the start-failure pipe: EOF once the action has exec'd.
    pub start_pipe: Option<OwnedFd>,
    control: OwnedFd,
    reaped: AtomicBool,
    memory: ChildMemory,
}

impl std::fmt::Debug for Supervised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervised")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

fn lifeline_read_fd() -> io::Result<RawFd> {
    static LIFELINE: OnceLock<Result<(OwnedFd, OwnedFd), i32>> = OnceLock::new();
    match LIFELINE.get_or_init(|| pipe_cloexec().map_err(|e| e.raw_os_error().unwrap_or(libc::EIO)))
    {
        Ok((r, _w)) => Ok(r.as_raw_fd()),
        Err(e) => Err(io::Error::from_raw_os_error(*e)),
    }
}

fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are fresh and owned by us.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Marks this process as not dumpable (no core dumps, no ptrace by other users, /proc
/// files owned by root), as a worker must be.
pub fn make_undumpable() {
    // Best effort: only fails on kernels without PR_SET_DUMPABLE, which we do not support.
    let _ = sys::prctl(libc::PR_SET_DUMPABLE, 0);
}

#[cfg(test)]
thread_local! {
    /// The stage the next `spawn` on this thread fails on purpose.
    static INJECT: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

fn injected_stage() -> i32 {
    #[cfg(test)]
    return INJECT.with(|c| c.replace(0));
    #[cfg(not(test))]
    0
}

/// Starts `spec` under a supervisor. Returns once the supervisor exists; whether the
/// action's exec succeeded is reported through [`Supervised::start_pipe`].
pub fn spawn(spec: SpawnSpec) -> io::Result<Supervised> {
    let lifeline = lifeline_read_fd()?;
    let (stdin_r, stdin_w) = pipe_cloexec()?;
    let (stdout_r, stdout_w) = pipe_cloexec()?;
    let (stderr_r, stderr_w) = pipe_cloexec()?;
    let (start_r, start_w) = pipe_cloexec()?;
    let (control_r, control_w) = pipe_cloexec()?;
    // SAFETY: fcntl on a descriptor we own: a request must never block the worker.
    unsafe { libc::fcntl(control_w.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    if let Some((uid, gid)) = spec.confinement.run_as {
        // The action may reopen its stdio (`/dev/stdin` is /proc/self/fd/0), which checks
        // the pipe's owner: make its pipes its own.
        for fd in [&stdin_r, &stdout_w, &stderr_w] {
            // SAFETY: fchown on a pipe descriptor we own.
            if unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }

    let argv: Vec<*const libc::c_char> = spec
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = spec
        .envp
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let stacks = [Stack::take(64 * 1024)?, Stack::take(64 * 1024)?];
    let raw = |fd: &Option<OwnedFd>| fd.as_ref().map_or(-1, |f| f.as_raw_fd());
    let c = &spec.confinement;
    let args = Box::new(ChildArgs {
        stdin: stdin_r.as_raw_fd(),
        stdout: stdout_w.as_raw_fd(),
        stderr: stderr_w.as_raw_fd(),
        lifeline,
        start: start_w.as_raw_fd(),
        control: control_r.as_raw_fd(),
        landlock: raw(&c.landlock),
        proc_access: c.proc_access,
        private_tmp: match (&c.private_tmp, c.namespaces) {
            (Some(t), Some(_)) if t.keep.len() <= MAX_KEPT => &**t,
            _ => std::ptr::null(),
        },
        cgroup_dir: raw(&c.cgroup_dir),
        join_cgroup: false,
        run_as: c.run_as.is_some(),
        uid: c.run_as.map_or(0, |(u, _)| u),
        gid: c.run_as.map_or(0, |(_, g)| g),
        namespaces: c.namespaces,
        uid_map: IdMap::identity(match c.namespaces {
            Some(Namespaces::User { uid, .. }) => uid,
            _ => 0,
        }),
        gid_map: IdMap::identity(match c.namespaces {
            Some(Namespaces::User { gid, .. }) => gid,
            _ => 0,
        }),
        program: spec.program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: spec.cwd.as_ptr(),
        action_stack_top: stacks[1].top(),
        action_stack_len: stacks[1].usable(),
        supervisor_pid: 0,
        inject: injected_stage(),
        status: AtomicI64::new(-1),
    });
    let mut memory = ChildMemory {
        _spec: spec,
        _argv: argv,
        _envp: envp,
        args,
        stacks,
    };
    let arg_ptr: *mut ChildArgs = &mut *memory.args;
    let ns_flags = memory.args.namespaces.map_or(0, Namespaces::clone_flags);

    // SAFETY: with every signal blocked in this thread, the supervisor starts with them
    // blocked and no handler of ours can run in it. It runs `supervisor_main` on its own
    // stack, reading only `memory`, which outlives it (see `Supervised::drop`). The sets
    // are plain data for the libc calls to read and fill.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            supervisor_main,
            memory.stacks[0].top(),
            libc::CLONE_VM | libc::SIGCHLD | ns_flags,
            arg_ptr.cast(),
        );
        let err = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(err);
        }
        pid
    };
    // The supervisor has its own copies now; the confinement descriptors go with `memory`.
    drop((stdin_r, stdout_w, stderr_w, start_w, control_r));
    // pidfd_open fails with ESRCH only once the supervisor has been reaped, which only we do.
    // SAFETY: on success the kernel returned a new descriptor that we now own.
    let pidfd = sys::pidfd_open(pid)
        .ok()
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(Supervised {
        pid,
        pidfd,
        stdin: Some(stdin_w),
        stdout: Some(stdout_r),
        stderr: Some(stderr_r),
        start_pipe: Some(start_r),
        control: control_w,
        reaped: AtomicBool::new(false),
        memory,
    })
}

// The supervisor's descriptor table: stdio, then these, nothing else.
const FD_LIFELINE: RawFd = 3;
const FD_START: RawFd = 4;
const FD_CONTROL: RawFd = 5;
const FD_LANDLOCK: RawFd = 6;
const FD_CGROUP: RawFd = 7;
const FD_FIRST_FREE: RawFd = 8;
/// Where descriptors are parked while they are moved to their fixed numbers.
const FD_PARK: RawFd = 64;

/// Reports a failed `stage` on the start pipe and exits; never returns to the step after.
fn fail(report_fd: RawFd, stage: Stage, errno: Errno) -> ! {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&(stage as i32).to_ne_bytes());
    msg[4..].copy_from_slice(&errno.0.to_ne_bytes());
    // Nothing more can be done if the worker cannot be told: exit 127 says it anyway.
    let _ = sys::write(report_fd, &msg);
    sys::exit(127)
}

/// Checks one step: on failure (or a failure injected by a test) reports it and exits.
fn step<T>(a: &ChildArgs, report_fd: RawFd, stage: Stage, r: SysResult<T>) -> T {
    if a.inject == stage as i32 {
        fail(report_fd, stage, Errno(libc::EPERM));
    }
    match r {
        Ok(v) => v,
        Err(e) => fail(report_fd, stage, e),
    }
}

/// Moves the descriptors the supervisor keeps to their fixed numbers (via parked copies
/// above `FD_PARK`, so no move clobbers a source) and closes every other one: other
/// executions' pipes, the lifeline's write end, the worker's sockets and lock files.
fn move_descriptors(a: &ChildArgs) -> SysResult {
    let moves: [(RawFd, RawFd, i32); 8] = [
        (a.stdin, 0, 0),
        (a.stdout, 1, 0),
        (a.stderr, 2, 0),
        (a.lifeline, FD_LIFELINE, libc::O_CLOEXEC),
        (a.start, FD_START, libc::O_CLOEXEC),
        (a.control, FD_CONTROL, libc::O_CLOEXEC),
        (a.landlock, FD_LANDLOCK, libc::O_CLOEXEC),
        (a.cgroup_dir, FD_CGROUP, libc::O_CLOEXEC),
    ];
    let mut parked = [-1 as RawFd; 8];
    for (i, (from, _, _)) in moves.iter().enumerate() {
        if *from >= 0 {
            parked[i] = sys::dup_above(*from, FD_PARK)?;
        }
    }
    for (i, (_, to, flags)) in moves.iter().enumerate() {
        if parked[i] >= 0 {
            sys::dup3(parked[i], *to, *flags)?;
        }
    }
    close_from(FD_FIRST_FREE);
    Ok(())
}

/// The supervisor. Shares the worker's memory: [`sys`] calls only. Its steps, in order:
/// 1. its own process group, so nothing aimed at the worker's group reaches it;
/// 2. its descriptors (see [`move_descriptors`]);
/// 3. with [`Namespaces`] (it is then pid 1 of a new PID namespace): its id maps (in a
///    user namespace), its mounts made slaves, then the private `/proc` (see
///    [`private_proc`]);
/// 4. child subreaper, so the action's orphans come to it (implied for pid 1);
/// 5. the working directory, which the action inherits;
/// 6. the action, then supervision until the action ends or the worker dies.
extern "C" fn supervisor_main(arg: *mut c_void) -> libc::c_int {
    // SAFETY: `arg` is the ChildArgs the worker keeps alive until it reaps us.
    let a = unsafe { &mut *arg.cast::<ChildArgs>() };
    step(a, a.start, Stage::SupervisorGroup, sys::setpgid(0, 0));
    // Until the move succeeds the start pipe is still at its original number.
    let moved = move_descriptors(a);
    let report = if moved.is_ok() { FD_START } else { a.start };
    step(a, report, Stage::Descriptors, moved);
    if let Some(ns) = a.namespaces {
        private_proc(a, ns);
    }
    step(
        a,
        FD_START,
        Stage::Subreaper,
        sys::prctl(libc::PR_SET_CHILD_SUBREAPER, 1),
    );
    if lifeline_hung_up() {
        sys::exit(127);
    }
    // SAFETY: `cwd` points into the spec the worker keeps alive.
    step(a, FD_START, Stage::WorkingDirectory, unsafe {
        sys::chdir(a.cwd)
    });
    a.supervisor_pid = sys::getpid();
    // Checked before the clone, the only place a failure of this stage can be (after it, the
    // action has already exec'd).
    step(a, FD_START, Stage::StartAction, Ok(()));
    let child = start_action(a, arg);
    // Only the action holds the stdio pipes, the start pipe and its confinement now.
    for fd in [0, 1, 2, FD_START, FD_LANDLOCK, FD_CGROUP] {
        // EBADF for the confinement descriptors not in use is expected.
        let _ = sys::close(fd);
    }
    supervise(a, child)
}

/// Sets up the supervisor's namespaces, created by the clone. The maps are written through
/// the system's `/proc`, which is still mounted; then the mount tree is made a slave of
/// the system's *before* anything is mounted (a shared `/` would otherwise carry the new
/// `/proc` to the whole system); then `/proc` is mounted over with `hidepid=2`, so that
/// the action sees its own processes and nothing else: not even the supervisor, which it
/// may not ptrace; and the action's Landlock ruleset is given read access to it.
fn private_proc(a: &ChildArgs, ns: Namespaces) {
    if let Namespaces::User { .. } = ns {
        // An unprivileged process may map only its own ids, and gid_map only once
        // setgroups is denied.
        let mapped = sys::write_file(c"/proc/self/setgroups", b"deny")
            .and_then(|()| sys::write_file(c"/proc/self/uid_map", a.uid_map.bytes()))
            .and_then(|()| sys::write_file(c"/proc/self/gid_map", a.gid_map.bytes()));
        step(a, FD_START, Stage::IdMapping, mapped);
    }
    step(
        a,
        FD_START,
        Stage::MountPropagation,
        sys::mount(None, c"/", None, libc::MS_REC | libc::MS_SLAVE, None),
    );
    let mounted = sys::mount(
        Some(c"proc"),
        c"/proc",
        Some(c"proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(c"hidepid=2"),
    );
    step(a, FD_START, Stage::PrivateProc, mounted);
    if a.landlock >= 0 && a.proc_access != 0 {
        // Landlock skips the directory a mount hides: the rule must be on the new /proc.
        step(
            a,
            FD_START,
            Stage::PrivateProc,
            allow_beneath(c"/proc", a.proc_access),
        );
    }
    // SAFETY: NULL or the PrivateTmp in the spec the worker keeps alive.
    if let Some(t) = unsafe { a.private_tmp.as_ref() } {
        for (i, root) in t.roots.iter().enumerate() {
            step(a, FD_START, Stage::PrivateTmp, private_tmp(a, t, i, root));
        }
    }
}

/// Gives the Landlock ruleset `rights` beneath `dir`, as mounted now.
fn allow_beneath(dir: &CStr, rights: u64) -> SysResult {
    let fd = sys::open(dir, libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)?;
    let added = sys::landlock_allow_beneath(FD_LANDLOCK, fd, rights);
    let _ = sys::close(fd);
    added
}

/// Covers `root` (the `i`th of `t`'s roots) with a fresh tmpfs, mounts back what is kept
/// under it, and gives the action's ruleset `t.access` on it.
fn private_tmp(a: &ChildArgs, t: &PrivateTmp, i: usize, root: &CStr) -> SysResult {
    // What is kept is cloned before the tmpfs hides it, then attached at the same path.
    let mut trees = [-1 as RawFd; MAX_KEPT];
    for (k, kept) in t.keep.iter().enumerate().filter(|(_, k)| k.root == i) {
        trees[k] = sys::open_tree_clone(&kept.path)?;
    }
    sys::mount(
        Some(c"tmpfs"),
        root,
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(c"mode=1777"),
    )?;
    for (k, kept) in t.keep.iter().enumerate().filter(|(_, k)| k.root == i) {
        for parent in &kept.parents {
            sys::make_dir(parent, 0o755)?;
        }
        match kept.dir {
            true => sys::make_dir(&kept.path, 0o755)?,
            false => sys::make_file(&kept.path)?,
        }
        sys::move_mount(trees[k], &kept.path)?;
        let _ = sys::close(trees[k]);
    }
    if a.landlock >= 0 && t.access != 0 {
        allow_beneath(root, t.access)?;
    }
    Ok(())
}

/// Waits for the action's end, passing the worker's requests on; then kills what is left
/// and exits.
fn supervise(a: &ChildArgs, child: libc::pid_t) -> ! {
    // Without a pidfd (Linux < 5.3), the action's state is polled every 50 ms.
    let pidfd = sys::pidfd_open(child).unwrap_or(-1);
    let mut control = FD_CONTROL;
    let mut worker_gone = false;
    loop {
        let mut pfds = [
            libc::pollfd {
                fd: FD_LIFELINE,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: control,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let tick = libc::timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        };
        // An error (only EINTR or ENOMEM can happen) just means another round.
        let _ = sys::ppoll(&mut pfds, (pidfd < 0).then_some(&tick));
        if pfds[0].revents != 0 {
            // The worker is gone: nothing of the action may outlive it.
            let _ = sys::kill(-child, libc::SIGKILL);
            worker_gone = true;
            break;
        }
        if pfds[1].revents != 0 {
            let mut buf = [0u8; 16];
            match sys::read(control, &mut buf) {
                Ok(n) if n > 0 => {
                    for b in &buf[..n] {
                        // Delivery to a group already gone (ESRCH) is no error.
                        let _ = match b {
                            b'T' => sys::kill(-child, libc::SIGTERM)
                                .and_then(|()| sys::kill(-child, libc::SIGCONT)),
                            _ => sys::kill(-child, libc::SIGKILL),
                        };
                    }
                }
                Err(Errno(libc::EINTR | libc::EAGAIN)) => {}
                _ => {
                    // The worker dropped its handle without a word: the action must end.
                    let _ = sys::kill(-child, libc::SIGKILL);
                    control = -1;
                }
            }
        }
        if matches!(sys::has_exited(child), Ok(true) | Err(_)) {
            break;
        }
    }
    // The action is a zombie (or SIGKILLed), so its group id cannot have been reused: kill
    // what is left of the group, then reap the action.
    let _ = sys::kill(-child, libc::SIGKILL);
    if let Ok((pid, status)) = sys::wait4(child, libc::__WALL) {
        if pid == child {
            a.status.store(i64::from(status), Ordering::Release);
        }
    }
    kill_descendants();
    sys::exit(if worker_gone { 137 } else { 0 })
}

/// Kills and reaps every remaining descendant. The action's orphans were re-parented to
/// us (we are the subreaper), so each round kills our children as `/proc` lists them and
/// reaps those that died, until no child is left. Gives up after about ten seconds (a
/// process stuck in the kernel), or after 100 ms when `/proc` cannot be read.
fn kill_descendants() {
    for round in 0..10_000 {
        let listed = kill_children();
        loop {
            match sys::wait4(-1, libc::WNOHANG | libc::__WALL) {
                Ok((0, _)) => break,
                Ok(_) | Err(Errno(libc::EINTR)) => continue,
                // ECHILD: nothing left.
                Err(_) => return,
            }
        }
        if !listed && round >= 100 {
            return;
        }
        sys::sleep_ms(1);
    }
}

/// SIGKILLs every child listed in `/proc/thread-self/children`; false if it can't be read.
fn kill_children() -> bool {
    let Ok(fd) = sys::open(
        c"/proc/thread-self/children",
        libc::O_RDONLY | libc::O_CLOEXEC,
    ) else {
        return false;
    };
    let mut buf = [0u8; 512];
    let mut pid: i32 = 0;
    let mut ok = true;
    loop {
        let n = match sys::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(Errno(libc::EINTR)) => continue,
            Err(_) => {
                ok = false;
                break;
            }
        };
        for &b in &buf[..n] {
            if b.is_ascii_digit() {
                pid = pid.saturating_mul(10).saturating_add(i32::from(b - b'0'));
            } else {
                if pid > 0 {
                    let _ = sys::kill(pid, libc::SIGKILL);
                }
                pid = 0;
            }
        }
    }
    if pid > 0 {
        let _ = sys::kill(pid, libc::SIGKILL);
    }
    let _ = sys::close(fd);
    ok
}

/// An injected "stage" that makes the action join its cgroup itself, as where `clone3` is
/// missing.
const WITHOUT_CLONE3: i32 = -1;

/// Starts the action on its own stack, sharing our memory until it execs (CLONE_VFORK
/// suspends us meanwhile). With a cgroup, the kernel creates it inside (`clone3` with
/// `CLONE_INTO_CGROUP`): moving a running process into a cgroup takes a system-wide lock
/// whose writer waits for an RCU grace period, 7-13 ms for about one execution in twelve
/// when measured under load. Where `clone3` is missing, the action joins by itself.
fn start_action(a: &mut ChildArgs, arg: *mut c_void) -> libc::pid_t {
    if a.cgroup_dir >= 0 {
        // Checked here too: with `clone3`, this is where the cgroup can fail.
        step(a, FD_START, Stage::Cgroup, Ok(()));
        // Tests take the other way with this "stage".
        let cloned = match a.inject {
            WITHOUT_CLONE3 => Err(Errno(libc::ENOSYS)),
            _ => clone_into_cgroup(a, arg),
        };
        match cloned {
            Ok(pid) => return pid,
            Err(Errno(libc::ENOSYS | libc::E2BIG | libc::EINVAL)) => a.join_cgroup = true,
            Err(Errno(e @ (libc::EAGAIN | libc::ENOMEM))) => {
                fail(FD_START, Stage::StartAction, Errno(e))
            }
            Err(e) => fail(FD_START, Stage::Cgroup, e),
        }
    }
    // SAFETY: the action runs on its own stack and shares our memory until it execs
    // (CLONE_VFORK suspends us meanwhile); it reads only `a`.
    let child = unsafe {
        libc::clone(
            action_main,
            a.action_stack_top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            arg,
        )
    };
    if child < 0 {
        // libc's errno is the worker thread's; EAGAIN is what clone fails with in practice.
        fail(FD_START, Stage::StartAction, Errno(libc::EAGAIN));
    }
    child
}

/// `clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP)` running [`action_main`] on the
/// action's stack. The raw system call: the child starts on a fresh stack, where no Rust
/// code may return to, so the child's side is a few instructions calling `action_main`.
#[cfg(target_arch = "x86_64")]
fn clone_into_cgroup(a: &ChildArgs, arg: *mut c_void) -> SysResult<libc::pid_t> {
    /// `struct clone_args` (linux/sched.h), as far as `cgroup` (CLONE_ARGS_SIZE_VER2).
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        // The lowest address; the kernel starts the child at stack + stack_size.
        stack: a.action_stack_top.wrapping_byte_sub(a.action_stack_len) as u64,
        stack_size: a.action_stack_len as u64,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: FD_CGROUP as u64,
    };
    let entry: extern "C" fn(*mut c_void) -> libc::c_int = action_main;
    let ret: isize;
    // SAFETY: the kernel reads `args` (valid for the call). The parent returns from the
    // system call with the child's pid or -errno and touches no stack. The child returns
    // from it with 0 on the action's stack (16-byte aligned top, see `Stack::top`), where it
    // calls `action_main(arg)`, which execs or exits; were it to return, the child exits
    // with its value. r12 and r13 survive the system call in both processes.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "mov edi, eax",
            "mov eax, 60",
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") &raw const args,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") arg,
            in("r13") entry as usize,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if ret < 0 {
        Err(Errno(-ret as i32))
    } else {
        Ok(ret as libc::pid_t)
    }
}

/// Elsewhere the action joins its cgroup itself.
#[cfg(not(target_arch = "x86_64"))]
fn clone_into_cgroup(_: &ChildArgs, _: *mut c_void) -> SysResult<libc::pid_t> {
    Err(Errno(libc::ENOSYS))
}

/// The action, until exec. Its steps, in order (each one checked, see [`Stage`]):
/// 1. its own process group, which the worker's requests address;
/// 2. default signal handlers (the supervisor's mask stays until step 11);
/// 3. its cgroup, while it still has the privilege to move itself;
/// 4. no core dumps;
/// 5. dropping supplementary groups, 6. the run-as gid, 7. the run-as uid;
/// 8. death with the supervisor; after step 7, since a credential change clears it; then
///    a check that the supervisor has not died already;
/// 9. no_new_privs, which Landlock requires;
/// 10. the Landlock ruleset;
/// 11. an empty signal mask;
/// 12. exec.
extern "C" fn action_main(arg: *mut c_void) -> libc::c_int {
    // SAFETY: see `supervisor_main`; the supervisor is suspended until we exec or exit.
    let a = unsafe { &*arg.cast::<ChildArgs>() };
    let r = FD_START;
    step(a, r, Stage::ActionGroup, sys::setpgid(0, 0));
    for sig in 1..65 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            step(a, r, Stage::Signals, sys::default_signal(sig));
        }
    }
    if a.join_cgroup {
        let joined = sys::openat(FD_CGROUP, c"cgroup.procs", libc::O_WRONLY | libc::O_CLOEXEC)
            .and_then(|fd| sys::write(fd, b"0"));
        step(a, r, Stage::Cgroup, joined);
    }
    step(a, r, Stage::CoreLimit, sys::no_core_dumps());
    if a.run_as {
        step(a, r, Stage::Groups, sys::drop_groups());
        step(a, r, Stage::Gid, sys::setresgid(a.gid));
        step(a, r, Stage::Uid, sys::setresuid(a.uid));
    }
    step(
        a,
        r,
        Stage::DeathSignal,
        sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as usize),
    );
    if sys::getppid() != a.supervisor_pid {
        fail(r, Stage::DeathSignal, Errno(libc::ESRCH));
    }
    step(
        a,
        r,
        Stage::NoNewPrivs,
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1),
    );
    if a.landlock >= 0 {
        step(
            a,
            r,
            Stage::Landlock,
            sys::landlock_restrict_self(FD_LANDLOCK),
        );
    }
    step(a, r, Stage::SignalMask, sys::unblock_all_signals());
    let exec = if a.inject == Stage::Exec as i32 {
        Errno(libc::EPERM)
    } else {
        // SAFETY: program, argv and envp point into the spec the worker keeps alive.
        unsafe { sys::execve(a.program, a.argv, a.envp) }
    };
    fail(r, Stage::Exec, exec)
}

fn lifeline_hung_up() -> bool {
    let mut p = [libc::pollfd {
        fd: FD_LIFELINE,
        events: libc::POLLIN,
        revents: 0,
    }];
    let now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(sys::ppoll(&mut p, Some(&now)), Ok(n) if n > 0) && p[0].revents != 0
}

fn close_from(first: RawFd) {
    if sys::close_range(first).is_ok() {
        return;
    }
    // Linux < 5.9: one by one; EBADF for the gaps is expected.
    for fd in first..sys::max_files() as RawFd {
        let _ = sys::close(fd);
    }
}

impl Supervised {
    /// The supervisor's pid.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Asks the supervisor to signal the action's group. A no-op once the supervisor is
    /// gone.
    pub fn request(&self, request: Request) {
        let byte = match request {
            Request::Terminate => b"T",
            Request::Kill => b"K",
        };
        // EPIPE or EAGAIN: the supervisor is gone or has a backlog of requests already.
        let _ = sys::write(self.control.as_raw_fd(), byte);
    }

    /// Waits for the supervisor to exit (after it has killed every descendant), reaps it.
    pub async fn wait(&self) -> io::Result<ExitStatus> {
        if self.reaped.load(Ordering::SeqCst) {
            return Err(io::Error::other("already reaped"));
        }
        match &self.pidfd {
            Some(fd) => {
                // SAFETY: the pidfd is owned by `self` and outlives this registration.
                let afd = unsafe {
                    tokio::io::unix::AsyncFd::register_with_interest(
                        fd.as_raw_fd(),
                        tokio::io::Interest::READABLE,
                    )
                }?;
                let _ = afd.readable().await?;
            }
            None => loop {
                // No pidfd (Linux < 5.3): poll the supervisor's state.
                if matches!(sys::has_exited(self.pid), Ok(true)) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            },
        }
        Ok(self.reap())
    }

    /// Reaps the supervisor, blocking until it exits. The action's status is what the
    /// supervisor recorded; if the supervisor itself was killed, it is the supervisor's.
    fn reap(&self) -> ExitStatus {
        let mut status: libc::c_int = 0;
        loop {
            match sys::wait4(self.pid, libc::__WALL) {
                Ok((pid, st)) if pid == self.pid => {
                    status = st;
                    break;
                }
                Err(Errno(libc::EINTR)) | Ok(_) => continue,
                Err(_) => break,
            }
        }
        self.reaped.store(true, Ordering::SeqCst);
        let recorded = self.memory.args.status.load(Ordering::Acquire);
        let status = if recorded >= 0 {
            recorded as libc::c_int
        } else {
            status
        };
        if libc::WIFEXITED(status) {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        } else {
            ExitStatus::Signaled(libc::WTERMSIG(status))
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if !self.reaped.load(Ordering::SeqCst) {
            self.request(Request::Kill);
            self.reap();
        }
        // Only now may the children's memory (stacks, args) go away.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cstr(s: &str) -> CString {
        CString::new(s).expect("no NUL")
    }

    /// A Landlock ruleset that restricts nothing the test program needs (making sockets).
    fn harmless_ruleset() -> Option<OwnedFd> {
        #[repr(C)]
        struct Attr {
            fs: u64,
        }
        let attr = Attr { fs: 1 << 9 };
        // SAFETY: `attr` is a valid ruleset attribute of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const Attr,
                std::mem::size_of::<Attr>(),
                0u32,
            )
        };
        // SAFETY: a new descriptor we own.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }

    fn run(
        dir: &Path,
        confinement: Confinement,
        inject: Option<Stage>,
    ) -> (ExitStatus, Option<StartFailure>) {
        let marker = dir.join("ran");
        let spec = SpawnSpec {
            program: cstr("/bin/sh"),
            argv: vec![
                cstr("sh"),
                cstr("-c"),
                cstr(&format!("echo yes > '{}'", marker.display())),
            ],
            envp: vec![cstr("PATH=/usr/bin:/bin")],
            cwd: cstr(&dir.display().to_string()),
            confinement,
        };
        INJECT.with(|c| c.set(inject.map_or(0, |s| s as i32)));
        spawn_and_wait(spec)
    }

    /// Spawns `spec`, waits for it; returns how it ended and the start failure, if any.
    fn spawn_and_wait(spec: SpawnSpec) -> (ExitStatus, Option<StartFailure>) {
        let mut child = spawn(spec).expect("spawn");
        let start = child.start_pipe.take().expect("start pipe");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let exit = rt.block_on(child.wait()).expect("wait");
        let mut buf = [0u8; 8];
        let mut file = std::fs::File::from(start);
        let got = std::io::Read::read(&mut file, &mut buf).expect("read start pipe");
        (exit, (got == 8).then(|| StartFailure::decode(buf)))
    }

    /// The action runs in its execution's cgroup from its start: created there by
    /// `clone3`, or, without it, joining by itself.
    #[test]
    fn the_action_runs_in_its_cgroup() {
        let Ok(cg) = crate::sandbox::CgroupParent::create() else {
            // SAFETY: geteuid cannot fail.
            assert_ne!(
                unsafe { libc::geteuid() },
                0,
                "root can always make a cgroup here"
            );
            return;
        };
        for inject in [0, WITHOUT_CLONE3] {
            let dir = tempfile::tempdir().expect("tempdir");
            let exec_cg = cg.exec_cgroup().expect("exec cgroup");
            let out = dir.path().join("cgroup");
            let spec = SpawnSpec {
                program: cstr("/bin/sh"),
                argv: vec![
                    cstr("sh"),
                    cstr("-c"),
                    cstr(&format!("cat /proc/self/cgroup > '{}'", out.display())),
                ],
                envp: vec![cstr("PATH=/usr/bin:/bin")],
                cwd: cstr(&dir.path().display().to_string()),
                confinement: Confinement {
                    cgroup_dir: Some(exec_cg.open().expect("cgroup dir")),
                    ..Confinement::default()
                },
            };
            INJECT.with(|c| c.set(inject));
            let (exit, failure) = spawn_and_wait(spec);
            assert_eq!((exit, failure), (ExitStatus::Exited(0), None), "{inject}");
            let text = std::fs::read_to_string(&out).expect("the action's /proc/self/cgroup");
            let path = text
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .expect("a cgroup v2 line");
            let path = path.trim_start_matches('/');
            assert!(
                !path.is_empty() && exec_cg.path().ends_with(path),
                "{inject}: the action is in {path}, not in {}",
                exec_cg.path().display()
            );
        }
    }

    /// Every stage, made to fail, is reported as itself, and the program never runs. As
    /// root every stage is reached (run-as, Landlock, both kinds of namespaces, a cgroup
    /// when one can be made).
    #[test]
    fn every_stage_fails_alone_and_never_execs() {
        let root = unsafe { libc::geteuid() } == 0;
        let cg = crate::sandbox::CgroupParent::create().ok();
        let mut modes = vec![None];
        if root {
            modes.push(Some(Namespaces::Privileged));
        }
        if crate::sandbox::probe_namespaces(Namespaces::for_this_process()).is_ok() || root {
            // SAFETY: geteuid and getegid cannot fail.
            let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
            modes.push(Some(Namespaces::User { uid, gid }));
        }
        let mut reached = std::collections::BTreeSet::new();
        for namespaces in modes {
            for stage in Stage::ALL {
                let dir = tempfile::tempdir().expect("tempdir");
                let exec_cg = cg.as_ref().map(|c| c.exec_cgroup().expect("exec cgroup"));
                let user_ns = matches!(namespaces, Some(Namespaces::User { .. }));
                let confinement = Confinement {
                    landlock: harmless_ruleset(),
                    // The one right the harmless ruleset handles.
                    proc_access: 1 << 9,
                    cgroup_dir: exec_cg.as_ref().map(|c| c.open().expect("cgroup dir")),
                    // setgroups is denied in a user namespace.
                    run_as: (root && !user_ns).then(|| unsafe { (libc::getuid(), libc::getgid()) }),
                    namespaces,
                    // The program writes in `dir`, kept if it lies under /tmp.
                    private_tmp: PrivateTmp::covering(&tmp_roots(), &[dir.path()], 1 << 9),
                };
                let optional = match stage {
                    Stage::IdMapping => user_ns,
                    Stage::MountPropagation | Stage::PrivateProc | Stage::PrivateTmp => {
                        namespaces.is_some()
                    }
                    Stage::Cgroup => confinement.cgroup_dir.is_some(),
                    Stage::Groups | Stage::Gid | Stage::Uid => confinement.run_as.is_some(),
                    Stage::Landlock => confinement.landlock.is_some(),
                    _ => true,
                };
                let (exit, failure) = run(dir.path(), confinement, Some(stage));
                if !optional {
                    continue;
                }
                reached.insert(stage as i32);
                assert_eq!(
                    failure,
                    Some(StartFailure {
                        stage,
                        errno: libc::EPERM
                    }),
                    "{stage:?} {namespaces:?}"
                );
                assert_eq!(exit, ExitStatus::Exited(127), "{stage:?}");
                // A program that did start (the bug this guards against) gets time to
                // show it.
                std::thread::sleep(std::time::Duration::from_millis(20));
                assert!(
                    !dir.path().join("ran").exists(),
                    "{stage:?}: the program ran"
                );
                assert!(
                    failure
                        .expect("failure")
                        .to_string()
                        .starts_with(stage.describe()),
                    "{stage:?}"
                );
            }
            // And without an injected failure, the program runs.
            let dir = tempfile::tempdir().expect("tempdir");
            let confinement = Confinement {
                namespaces,
                private_tmp: PrivateTmp::covering(&tmp_roots(), &[dir.path()], 0),
                ..Confinement::default()
            };
            let (exit, failure) = run(dir.path(), confinement, None);
            assert_eq!(
                (exit, failure),
                (ExitStatus::Exited(0), None),
                "{namespaces:?}"
            );
            assert!(dir.path().join("ran").exists());
        }
        if root {
            let cgroup = usize::from(cg.is_none());
            assert_eq!(reached.len(), Stage::ALL.len() - cgroup, "{reached:?}");
        }
    }

    fn tmp_roots() -> Vec<PathBuf> {
        vec![PathBuf::from("/tmp")]
    }

    /// What a private `/tmp` keeps: what lies under a covered root, outer paths first,
    /// with the directories to create on the way; a root that is needed itself (or lies
    /// inside what is needed) is not covered.
    #[test]
    fn a_private_tmp_keeps_what_the_action_needs_under_it() {
        let t = tempfile::Builder::new()
            .tempdir_in("/tmp")
            .expect("tempdir");
        let inner = t.path().join("a/b");
        std::fs::create_dir_all(&inner).expect("mkdir");
        let file = t.path().join("a/f");
        std::fs::write(&file, "").expect("file");
        let roots = [PathBuf::from("/tmp"), PathBuf::from("/var/tmp")];
        let c = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
        let p = PrivateTmp::covering(&roots, &[&inner, t.path(), &file], 7).expect("covered");
        assert_eq!((p.roots.len(), p.access), (2, 7));
        let kept: Vec<(&CString, bool, usize)> =
            p.keep.iter().map(|k| (&k.path, k.dir, k.root)).collect();
        let outer = c(t.path());
        let (f, i) = (c(&file), c(&inner));
        assert_eq!(kept, [(&outer, true, 0), (&i, true, 0), (&f, false, 0)]);
        assert_eq!(p.keep[1].parents, [c(t.path()), c(&t.path().join("a"))]);
        assert!(p.keep[0].parents.is_empty());
        // /tmp itself needed: only /var/tmp is covered, and nothing kept under it.
        let p = PrivateTmp::covering(&roots, &[Path::new("/tmp")], 0).expect("covered");
        assert_eq!((p.roots, p.keep.len()), (vec![c(Path::new("/var/tmp"))], 0));
        assert!(PrivateTmp::covering(&roots[..1], &[Path::new("/")], 0).is_none());
    }

    /// In its namespaces the action has a `/tmp` of its own: what it writes there is gone
    /// with it, and it sees nothing of the system's `/tmp` or of another execution's,
    /// but the directory it was given there (a pack, for `run --local`) is still at its
    /// path, writable if it was.
    #[test]
    fn the_action_has_a_tmp_of_its_own() {
        let Ok(ns) = crate::sandbox::probe_namespaces(Namespaces::for_this_process()) else {
            eprintln!("skipped: this machine cannot create the namespaces");
            return;
        };
        let dir = tempfile::Builder::new()
            .tempdir_in("/tmp")
            .expect("tempdir in /tmp");
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).expect("mkdir");
        let host = tempfile::NamedTempFile::new_in("/tmp").expect("a file in /tmp");
        std::fs::write(host.path(), "host").expect("write");
        let out = nested.join("out");
        let script = format!(
            "cat '{host}' 2>/dev/null && echo SEEN-HOST >> '{o}'; \
             ls /tmp/.attune-mine 2>/dev/null && echo SEEN-OTHER >> '{o}'; \
             echo mine > /tmp/.attune-mine && echo wrote >> '{o}'; \
             stat -c %a /tmp >> '{o}'",
            host = host.path().display(),
            o = out.display()
        );
        for _ in 0..2 {
            let spec = SpawnSpec {
                program: cstr("/bin/sh"),
                argv: vec![cstr("sh"), cstr("-c"), cstr(&script)],
                envp: vec![cstr("PATH=/usr/bin:/bin")],
                cwd: cstr("/"),
                confinement: Confinement {
                    namespaces: Some(ns),
                    private_tmp: PrivateTmp::covering(&tmp_roots(), &[&nested], 0),
                    ..Confinement::default()
                },
            };
            let (exit, failure) = spawn_and_wait(spec);
            assert_eq!((exit, failure), (ExitStatus::Exited(0), None));
        }
        // Both ran, neither saw the system's file nor the other's, each wrote its own.
        let text = std::fs::read_to_string(&out).expect("output");
        assert_eq!(text, "wrote\n1777\nwrote\n1777\n");
        assert!(!Path::new("/tmp/.attune-mine").exists());
    }

    /// In its namespaces the action sees its own processes only, in a `/proc` of its own
    /// that the rest of the system never sees.
    #[test]
    fn the_action_sees_only_its_own_processes() {
        let Ok(ns) = crate::sandbox::probe_namespaces(Namespaces::for_this_process()) else {
            eprintln!("skipped: this machine cannot create the namespaces");
            return;
        };
        let proc_mounts = || {
            std::fs::read_to_string("/proc/self/mountinfo")
                .expect("mountinfo")
                .lines()
                .filter(|l| l.split(' ').nth(4) == Some("/proc"))
                .count()
        };
        let before = proc_mounts();
        let dir = tempfile::tempdir().expect("tempdir");
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            // hidepid hides the supervisor from another user only: run as nobody.
            std::fs::set_permissions(
                dir.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o777),
            )
            .expect("chmod");
        }
        let out = dir.path().join("out");
        let script = format!(
            "sleep 5 & echo \"$$ $PPID\" > '{o}'; ls /proc >> '{o}'",
            o = out.display()
        );
        let spec = SpawnSpec {
            program: cstr("/bin/sh"),
            argv: vec![cstr("sh"), cstr("-c"), cstr(&script)],
            envp: vec![cstr("PATH=/usr/bin:/bin")],
            cwd: cstr(&dir.path().display().to_string()),
            confinement: Confinement {
                namespaces: Some(ns),
                run_as: root.then_some((65534, 65534)),
                ..Confinement::default()
            },
        };
        let (exit, failure) = spawn_and_wait(spec);
        assert_eq!((exit, failure), (ExitStatus::Exited(0), None));
        let text = std::fs::read_to_string(&out).expect("output");
        let mut lines = text.lines();
        // The action is pid 2, its parent the supervisor (pid 1, hidden from it); the
        // `sleep` (3) and the `ls` (4) are the only other processes it sees.
        assert_eq!(lines.next(), Some("2 1"), "{text}");
        let pids: Vec<&str> = lines
            .filter(|l| l.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        assert_eq!(pids, ["2", "3", "4"], "{text}");
        // Nothing was mounted on the system's /proc.
        assert_eq!(proc_mounts(), before);
    }

    #[test]
    fn a_real_failure_names_its_stage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = SpawnSpec {
            program: cstr("/nonexistent/program"),
            argv: vec![cstr("x")],
            envp: vec![],
            cwd: cstr(&dir.path().display().to_string()),
            confinement: Confinement::default(),
        };
        let (exit, failure) = spawn_and_wait(spec);
        assert_eq!(exit, ExitStatus::Exited(127));
        let f = failure.expect("a start failure");
        assert_eq!((f.stage, f.errno), (Stage::Exec, libc::ENOENT));
        assert_eq!(
            f.to_string(),
            "executing the program failed: No such file or directory (os error 2)"
        );
    }
}
