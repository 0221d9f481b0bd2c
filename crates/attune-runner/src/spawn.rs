//! Spawning an action under a per-execution supervisor (DESIGN.md §3, Supervision).
//!
//! `PR_SET_PDEATHSIG` reaches only a direct child, and fires when the parent *thread* ends,
//! not the process, so it cannot guard the action's process group in a multi-threaded
//! worker. Instead the worker forks a small supervisor (no exec: it runs only
//! async-signal-safe system calls) that:
//!
//! 1. makes itself a process-group leader and blocks every signal;
//! 2. forks the action into its group, which resets its signals and execs;
//! 3. waits on two things: the action's exit (a pidfd) and the worker's *lifeline*, a pipe
//!    whose write end only the worker holds. When the worker dies, for any reason including
//!    `kill -9`, the lifeline hangs up and the supervisor SIGKILLs the whole group, itself
//!    included;
//! 4. when the action exits, exits with the same status (re-raising a fatal signal).
//!
//! The worker signals the group (`kill(-pgid)`) for timeouts and cancels, and SIGKILLs any
//! leftover group members after the supervisor exits, before reaping it, so the group id
//! cannot have been reused.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// What to execute, prepared in the parent so the forked children never allocate.
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
    /// 1: chdir, 2: fork, 3: exec.
    pub stage: i32,
    /// errno.
    pub errno: i32,
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.stage {
            1 => "entering the working directory",
            2 => "forking the action process",
            _ => "executing the program",
        };
        write!(
            f,
            "{what} failed: {}",
            io::Error::from_raw_os_error(self.errno)
        )
    }
}

/// A running, supervised action: the supervisor's pid is the process group id.
#[derive(Debug)]
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
    reaped: std::sync::atomic::AtomicBool,
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
    // SAFETY: pidfd_open takes a pid and flags; a negative result is an error.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        None
    } else {
        // SAFETY: the kernel returned a new descriptor that we now own.
        Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

/// Starts `spec` under a supervisor. Returns once the supervisor is forked; whether the
/// action's exec succeeded is reported through [`Supervised::start_pipe`].
pub fn spawn(spec: &SpawnSpec) -> io::Result<Supervised> {
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
    let fds = ChildFds {
        stdin: stdin_r.as_raw_fd(),
        stdout: stdout_w.as_raw_fd(),
        stderr: stderr_w.as_raw_fd(),
        lifeline,
        start: start_w.as_raw_fd(),
    };

    // SAFETY: fork in a possibly multi-threaded process; the child only runs
    // async-signal-safe system calls on data prepared above, then execs or _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child; see `supervise`.
        unsafe {
            supervise(
                &fds,
                spec.program.as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
                spec.cwd.as_ptr(),
            )
        }
    }
    drop((stdin_r, stdout_w, stderr_w, start_w));
    // Close the race where the supervisor is already gone: pidfd_open then fails with
    // ESRCH only once it has been reaped, which only we do.
    let pidfd = pidfd_open(pid);
    Ok(Supervised {
        pid,
        pidfd,
        stdin: Some(stdin_w),
        stdout: Some(stdout_r),
        stderr: Some(stderr_r),
        start_pipe: Some(start_r),
        reaped: std::sync::atomic::AtomicBool::new(false),
    })
}

struct ChildFds {
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    lifeline: RawFd,
    start: RawFd,
}

const FD_LIFELINE: RawFd = 3;
const FD_START: RawFd = 4;

/// Reports a start failure to the worker and exits.
unsafe fn fail(stage: i32) -> ! {
    let errno = io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO);
    let msg: [i32; 2] = [stage, errno];
    // SAFETY: writing 8 bytes from a local array to our start-failure pipe; then exit
    // without running any destructors or atexit handlers.
    unsafe {
        libc::write(FD_START, msg.as_ptr().cast(), std::mem::size_of_val(&msg));
        libc::_exit(127)
    }
}

/// The supervisor: runs in the forked child, never returns.
unsafe fn supervise(
    fds: &ChildFds,
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
) -> ! {
    // SAFETY (whole function): only async-signal-safe system calls on memory prepared
    // before the fork; every path ends in execve or _exit.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        libc::setpgid(0, 0);

        // Lifeline and start pipe to fixed numbers (via high numbers, so no clash), then
        // stdio, then close everything else: other executions' pipes, the lifeline's write
        // end, the worker's sockets and lock files.
        let l = libc::fcntl(fds.lifeline, libc::F_DUPFD_CLOEXEC, 16);
        let s = libc::fcntl(fds.start, libc::F_DUPFD_CLOEXEC, 16);
        if l < 0 || s < 0 {
            libc::_exit(127);
        }
        if libc::dup2(fds.stdin, 0) < 0
            || libc::dup2(fds.stdout, 1) < 0
            || libc::dup2(fds.stderr, 2) < 0
        {
            libc::_exit(127);
        }
        if libc::dup3(l, FD_LIFELINE, libc::O_CLOEXEC) < 0
            || libc::dup3(s, FD_START, libc::O_CLOEXEC) < 0
        {
            libc::_exit(127);
        }
        close_from(FD_START + 1);

        // The worker may already be gone.
        if lifeline_hung_up(0) {
            libc::_exit(127);
        }
        if libc::chdir(cwd) != 0 {
            fail(1);
        }
        let me = libc::getpid();
        // Not glibc's fork(): it takes the malloc locks, which another thread of the worker
        // may have held when we were forked, and which nobody here will ever release. The
        // raw system call takes no lock.
        let child = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0)
            as libc::pid_t;
        if child < 0 {
            fail(2);
        }
        if child == 0 {
            // The action: default signal handling, an empty mask, and death with the
            // supervisor should the supervisor itself be SIGKILLed.
            for sig in 1..libc::SIGRTMAX() {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() != me {
                libc::_exit(127);
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::execve(program, argv, envp);
            fail(3);
        }
        // Only the action holds the stdio pipes and the start pipe now.
        libc::close(0);
        libc::close(1);
        libc::close(2);
        libc::close(FD_START);

        let pidfd = libc::syscall(libc::SYS_pidfd_open, child, 0) as RawFd;
        let mut status: libc::c_int = 0;
        loop {
            let mut pfds = [
                libc::pollfd {
                    fd: FD_LIFELINE,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: pidfd,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // Without pidfd (Linux < 5.3), poll the child's status every 50 ms.
            let (n, timeout) = if pidfd >= 0 { (2, -1) } else { (1, 50) };
            let r = libc::poll(pfds.as_mut_ptr(), n, timeout);
            if r < 0 && *libc::__errno_location() != libc::EINTR {
                libc::_exit(127);
            }
            if pfds[0].revents != 0 {
                // The worker is gone: nothing of the group may outlive it.
                libc::kill(0, libc::SIGKILL);
                libc::_exit(137);
            }
            let done = libc::waitpid(child, &mut status, libc::WNOHANG);
            if done == child {
                break;
            }
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        let sig = libc::WTERMSIG(status);
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(sig, libc::SIG_DFL);
        let mut one: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut one);
        libc::sigaddset(&mut one, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &one, std::ptr::null_mut());
        libc::kill(me, sig);
        libc::_exit(128 + sig)
    }
}

unsafe fn lifeline_hung_up(timeout_ms: libc::c_int) -> bool {
    let mut p = libc::pollfd {
        fd: FD_LIFELINE,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polling one valid pollfd.
    unsafe { libc::poll(&mut p, 1, timeout_ms) > 0 && p.revents != 0 }
}

unsafe fn close_from(first: RawFd) {
    // SAFETY: close_range/close only close descriptors of this (child) process.
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0,
        ) == 0
        {
            return;
        }
        let mut lim: libc::rlimit = std::mem::zeroed();
        let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur.min(1 << 20) as RawFd
        } else {
            4096
        };
        for fd in first..max {
            libc::close(fd);
        }
    }
}

impl Supervised {
    /// The process group id (the supervisor's pid).
    pub fn pgid(&self) -> libc::pid_t {
        self.pid
    }

    /// Sends `sig` to every process of the action's group. A no-op once reaped.
    pub fn signal_group(&self, sig: libc::c_int) {
        if !self.reaped.load(std::sync::atomic::Ordering::SeqCst) {
            // SAFETY: the supervisor is not reaped, so its pid still names our group.
            unsafe {
                libc::kill(-self.pid, sig);
            }
        }
    }

    /// Waits for the supervisor to exit, kills whatever is left of the group, reaps it.
    pub async fn wait(&self) -> io::Result<ExitStatus> {
        if self.reaped.load(std::sync::atomic::Ordering::SeqCst) {
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

    /// Kills the rest of the group, then reaps the (exited) supervisor.
    fn reap(&self) -> ExitStatus {
        // The supervisor is a zombie, so its pid, our group id, cannot be reused yet.
        self.signal_group(libc::SIGKILL);
        let mut status: libc::c_int = 0;
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid
                || (r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR))
            {
                break;
            }
        }
        self.reaped.store(true, std::sync::atomic::Ordering::SeqCst);
        if libc::WIFEXITED(status) {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        } else {
            ExitStatus::Signaled(libc::WTERMSIG(status))
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if !self.reaped.load(std::sync::atomic::Ordering::SeqCst) {
            self.signal_group(libc::SIGKILL);
            self.reap();
        }
    }
}
