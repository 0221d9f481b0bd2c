//! Spawning an action under a per-execution supervisor (DESIGN.md §3, Supervision).
//!
//! `PR_SET_PDEATHSIG` reaches only a direct child, and fires when the parent *thread* ends,
//! not the process, so it cannot guard the action's process group in a multi-threaded
//! worker. Instead the worker starts a small supervisor that:
//!
//! 1. makes itself a process-group leader, with every signal blocked;
//! 2. starts the action in its group; the action resets its signals and execs;
//! 3. waits on two things: the action's exit (a pidfd) and the worker's *lifeline*, a pipe
//!    whose write end only the worker holds. When the worker dies, for any reason including
//!    `kill -9`, the lifeline hangs up and the supervisor SIGKILLs the whole group, itself
//!    included;
//! 4. when the action exits, records its wait status in the spawn record and exits.
//!
//! The supervisor shares the worker's memory (`CLONE_VM`, on a stack of its own) instead of
//! being a fork: forking a large multi-threaded worker copies its page tables and makes the
//! worker take a copy-on-write fault on every page it writes while the action runs, which
//! was most of the cost of a trivial execution. Sharing memory means the supervisor and the
//! action (started with `CLONE_VM | CLONE_VFORK` until it execs) may only make raw system
//! calls: no libc function that could touch a lock or the parent thread's `errno`.
//!
//! The worker signals the group (`kill(-pgid)`) for timeouts and cancels, and SIGKILLs any
//! leftover group members after the supervisor exits, before reaping it, so the group id
//! cannot have been reused.

use std::ffi::{c_void, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::OnceLock;

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
}

/// How the supervised action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

/// The stage at which starting the action failed, and the OS error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartFailure {
    /// 1: chdir, 2: starting the action process, 3: exec.
    pub stage: i32,
    /// errno.
    pub errno: i32,
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.stage {
            1 => "entering the working directory",
            2 => "starting the action process",
            _ => "executing the program",
        };
        write!(
            f,
            "{what} failed: {}",
            io::Error::from_raw_os_error(self.errno)
        )
    }
}

/// Raw Linux system calls: no errno, no locks, nothing thread-local.
mod sys {
    /// Returns the kernel's result: a value, or `-errno`.
    #[inline(always)]
    pub unsafe fn call(n: libc::c_long, a: [usize; 6]) -> isize {
        let ret: isize;
        // SAFETY: the caller passes a valid system call and arguments.
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

    macro_rules! sc {
        ($n:expr) => { unsafe { $crate::spawn::sys::call($n, [0; 6]) } };
        ($n:expr, $($a:expr),+) => {{
            let mut args = [0usize; 6];
            let vals = [$($a as usize),+];
            let mut i = 0;
            while i < vals.len() { args[i] = vals[i]; i += 1; }
            unsafe { $crate::spawn::sys::call($n, args) }
        }};
    }
    pub(crate) use sc;
}
use sys::sc;

/// Everything the supervisor and the action read, at a stable address owned by the
/// [`Supervised`] handle until the supervisor is reaped.
#[repr(C)]
struct ChildArgs {
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    lifeline: RawFd,
    start: RawFd,
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    action_stack_top: *mut c_void,
    supervisor_pid: libc::pid_t,
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

impl Stack {
    fn new(len: usize) -> io::Result<Stack> {
        const GUARD: usize = 4096;
        // SAFETY: an anonymous private mapping we own; the guard page is made inaccessible.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                len + GUARD,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            libc::mprotect(base, GUARD, libc::PROT_NONE);
            Ok(Stack {
                base,
                len: len + GUARD,
            })
        }
    }

    fn top(&self) -> *mut c_void {
        // 16-byte aligned: mmap returns page-aligned memory and len is a page multiple.
        self.base.wrapping_byte_add(self.len)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once nothing runs on it.
        unsafe {
            libc::munmap(self.base, self.len);
        }
    }
}

/// A running, supervised action: the supervisor's pid is the process group id.
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
    // SAFETY: prctl with PR_SET_DUMPABLE takes plain integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    let fd = sc!(libc::SYS_pidfd_open, pid, 0);
    // SAFETY: the kernel returned a new descriptor that we now own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Starts `spec` under a supervisor. Returns once the supervisor exists; whether the
/// action's exec succeeded is reported through [`Supervised::start_pipe`].
pub fn spawn(spec: SpawnSpec) -> io::Result<Supervised> {
    let lifeline = lifeline_read_fd()?;
    let (stdin_r, stdin_w) = pipe_cloexec()?;
    let (stdout_r, stdout_w) = pipe_cloexec()?;
    let (stderr_r, stderr_w) = pipe_cloexec()?;
    let (start_r, start_w) = pipe_cloexec()?;

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
    let stacks = [Stack::new(64 * 1024)?, Stack::new(64 * 1024)?];
    let args = Box::new(ChildArgs {
        stdin: stdin_r.as_raw_fd(),
        stdout: stdout_w.as_raw_fd(),
        stderr: stderr_w.as_raw_fd(),
        lifeline,
        start: start_w.as_raw_fd(),
        program: spec.program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: spec.cwd.as_ptr(),
        action_stack_top: stacks[1].top(),
        supervisor_pid: 0,
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

    // SAFETY: with every signal blocked in this thread, the supervisor starts with them
    // blocked and no handler of ours can run in it. It runs `supervisor_main` on its own
    // stack, reading only `memory`, which outlives it (see `Supervised::drop`).
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            supervisor_main,
            memory.stacks[0].top(),
            libc::CLONE_VM | libc::SIGCHLD,
            arg_ptr.cast(),
        );
        let err = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(err);
        }
        pid
    };
    drop((stdin_r, stdout_w, stderr_w, start_w));
    // pidfd_open fails with ESRCH only once the supervisor has been reaped, which only we do.
    let pidfd = pidfd_open(pid);
    Ok(Supervised {
        pid,
        pidfd,
        stdin: Some(stdin_w),
        stdout: Some(stdout_r),
        stderr: Some(stderr_r),
        start_pipe: Some(start_r),
        reaped: AtomicBool::new(false),
        memory,
    })
}

const FD_LIFELINE: usize = 3;
const FD_START: usize = 4;

fn exit(code: i32) -> ! {
    loop {
        sc!(libc::SYS_exit_group, code);
    }
}

/// Reports a start failure to the worker and exits.
fn fail(stage: i32, neg_errno: isize) -> ! {
    let msg: [i32; 2] = [stage, (-neg_errno) as i32];
    sc!(
        libc::SYS_write,
        FD_START,
        msg.as_ptr(),
        std::mem::size_of_val(&msg)
    );
    exit(127)
}

/// The supervisor. Shares the worker's memory: raw system calls only.
extern "C" fn supervisor_main(arg: *mut c_void) -> libc::c_int {
    // SAFETY: `arg` is the ChildArgs the worker keeps alive until it reaps us.
    let a = unsafe { &mut *arg.cast::<ChildArgs>() };
    sc!(libc::SYS_setpgid, 0, 0);

    // Lifeline and start pipe to fixed numbers (via high numbers, so no clash), stdio, then
    // close everything else in our copy of the descriptor table: other executions' pipes,
    // the lifeline's write end, the worker's sockets and lock files.
    let l = sc!(libc::SYS_fcntl, a.lifeline, libc::F_DUPFD_CLOEXEC, 16);
    let s = sc!(libc::SYS_fcntl, a.start, libc::F_DUPFD_CLOEXEC, 16);
    if l < 0 || s < 0 {
        exit(127);
    }
    for (from, to) in [(a.stdin, 0), (a.stdout, 1), (a.stderr, 2)] {
        if sc!(libc::SYS_dup3, from, to, 0) < 0 {
            exit(127);
        }
    }
    if sc!(libc::SYS_dup3, l, FD_LIFELINE, libc::O_CLOEXEC) < 0
        || sc!(libc::SYS_dup3, s, FD_START, libc::O_CLOEXEC) < 0
    {
        exit(127);
    }
    close_from(FD_START + 1);

    if lifeline_hung_up(0) {
        exit(127);
    }
    let r = sc!(libc::SYS_chdir, a.cwd);
    if r < 0 {
        fail(1, r);
    }
    a.supervisor_pid = sc!(libc::SYS_getpid) as libc::pid_t;
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
        fail(2, -(libc::ENOMEM as isize));
    }
    // Only the action holds the stdio pipes and the start pipe now.
    for fd in [0, 1, 2, FD_START] {
        sc!(libc::SYS_close, fd);
    }

    let pidfd = sc!(libc::SYS_pidfd_open, child, 0);
    let mut status: libc::c_int = 0;
    loop {
        let mut pfds = [
            libc::pollfd {
                fd: FD_LIFELINE as RawFd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd as RawFd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Without pidfd (Linux < 5.3), poll the action's status every 50 ms.
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        };
        let (n, ts) = if pidfd >= 0 {
            (2, std::ptr::null())
        } else {
            (1, &timeout as *const _)
        };
        sc!(libc::SYS_ppoll, pfds.as_mut_ptr(), n, ts, 0, 8);
        if pfds[0].revents != 0 {
            // The worker is gone: nothing of the group may outlive it.
            sc!(libc::SYS_kill, 0, libc::SIGKILL);
            exit(137);
        }
        let done = sc!(
            libc::SYS_wait4,
            child,
            &mut status as *mut libc::c_int,
            libc::WNOHANG,
            0
        );
        if done == child as isize {
            break;
        }
    }
    a.status.store(i64::from(status), Ordering::Release);
    exit(0)
}

/// The action, until exec: default signal handling, an empty mask, and death with the
/// supervisor should the supervisor itself be SIGKILLed.
extern "C" fn action_main(arg: *mut c_void) -> libc::c_int {
    // SAFETY: see `supervisor_main`; the supervisor is suspended until we exec or exit.
    let a = unsafe { &*arg.cast::<ChildArgs>() };
    let default_action = [0u64; 4];
    for sig in 1..65usize {
        if sig != libc::SIGKILL as usize && sig != libc::SIGSTOP as usize {
            sc!(libc::SYS_rt_sigaction, sig, default_action.as_ptr(), 0, 8);
        }
    }
    sc!(
        libc::SYS_prctl,
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL,
        0,
        0,
        0
    );
    if sc!(libc::SYS_getppid) != a.supervisor_pid as isize {
        exit(127);
    }
    let empty: u64 = 0;
    sc!(
        libc::SYS_rt_sigprocmask,
        libc::SIG_SETMASK,
        &empty as *const u64,
        0,
        8
    );
    let r = sc!(libc::SYS_execve, a.program, a.argv, a.envp);
    fail(3, r)
}

fn lifeline_hung_up(timeout_ms: i64) -> bool {
    let mut p = libc::pollfd {
        fd: FD_LIFELINE as RawFd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: timeout_ms * 1_000_000,
    };
    sc!(
        libc::SYS_ppoll,
        &mut p as *mut libc::pollfd,
        1,
        &ts as *const libc::timespec,
        0,
        8
    ) > 0
        && p.revents != 0
}

fn close_from(first: usize) {
    if sc!(libc::SYS_close_range, first, u32::MAX, 0) == 0 {
        return;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let max = if sc!(
        libc::SYS_prlimit64,
        0,
        libc::RLIMIT_NOFILE,
        0,
        &mut lim as *mut libc::rlimit
    ) == 0
    {
        lim.rlim_cur.min(1 << 20) as usize
    } else {
        4096
    };
    for fd in first..max {
        sc!(libc::SYS_close, fd);
    }
}

impl Supervised {
    /// The process group id (the supervisor's pid).
    pub fn pgid(&self) -> libc::pid_t {
        self.pid
    }

    /// Sends `sig` to every process of the action's group. A no-op once reaped.
    pub fn signal_group(&self, sig: libc::c_int) {
        if !self.reaped.load(Ordering::SeqCst) {
            // SAFETY: the supervisor is not reaped, so its pid still names our group.
            unsafe {
                libc::kill(-self.pid, sig);
            }
        }
    }

    /// Waits for the supervisor to exit, kills whatever is left of the group, reaps it.
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
                if self.exited_without_reaping() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            },
        }
        Ok(self.reap())
    }

    /// Whether the supervisor has exited, leaving it unreaped (WNOWAIT).
    fn exited_without_reaping(&self) -> bool {
        // SAFETY: waitid with WNOWAIT only inspects our own child; siginfo_t is plain data.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            r == 0 && info.si_pid() == self.pid
        }
    }

    /// Kills the rest of the group, then reaps the (exited) supervisor. The action's status
    /// is what the supervisor recorded; if the supervisor itself was killed (timeout or
    /// cancel escalated to SIGKILL), it is the supervisor's.
    fn reap(&self) -> ExitStatus {
        // The supervisor is a zombie, so its pid, our group id, cannot be reused yet.
        self.signal_group(libc::SIGKILL);
        let mut status: libc::c_int = 0;
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::__WALL) };
            if r == self.pid
                || (r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR))
            {
                break;
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
            self.signal_group(libc::SIGKILL);
            self.reap();
        }
        // Only now may the children's memory (stacks, args) go away.
    }
}
