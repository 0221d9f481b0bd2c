//! Per-execution directories (DESIGN.md §2 Deliver, §3 Working directory).
//!
//! Each worker process owns a directory under a runtime root on a memory file system
//! (`$XDG_RUNTIME_DIR/attune`, else `/dev/shm/attune-<uid>`, else `<data dir>/run`), and
//! holds an exclusive `flock` on a lock file inside it for its whole life. Each execution
//! gets a fresh 0700 directory in it: its working directory, its `TMPDIR`, and the home of
//! its 0400 parameter file. At start a worker removes the directories of workers whose
//! lock is no longer held: leftovers of runs that were killed.

use std::fs;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A worker's directory for execution directories, locked for the worker's lifetime.
#[derive(Debug)]
pub struct Workspace {
    dir: PathBuf,
    _lock: fs::File,
    notes: Vec<String>,
    /// A root made for this process alone (the usual one was squatted): removed with it.
    fresh_root: Option<PathBuf>,
}

/// The kind of file system `path` is on: memory or disk.
fn fs_kind(path: &Path) -> &'static str {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return "unknown file system";
    };
    // SAFETY: statfs writes into the zeroed struct we pass; `c` is a valid C string.
    let kind = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut st) != 0 {
            return "unknown file system";
        }
        st.f_type
    };
    const TMPFS: libc::c_long = 0x0102_1994;
    const RAMFS: libc::c_long = 0x8584_58f6_u32 as libc::c_long;
    match kind as libc::c_long {
        TMPFS => "tmpfs, in memory",
        RAMFS => "ramfs, in memory",
        _ => "on disk: no memory file system was available",
    }
}

/// Why a workspace could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// An I/O error on a path.
    #[error("cannot prepare the execution directory {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A runtime root that another user could tamper with.
    #[error("refusing to use {0} for execution directories: it is not a directory owned by this user with mode 0700")]
    Unsafe(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WorkspaceError + '_ {
    move |source| WorkspaceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The candidates for the runtime root, best first.
pub fn runtime_roots(data_dir: &Path) -> Vec<PathBuf> {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let mut roots = Vec::new();
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty()) {
        let xdg = PathBuf::from(xdg);
        if xdg.is_dir() {
            roots.push(xdg.join("attune"));
        }
    }
    if Path::new("/dev/shm").is_dir() {
        roots.push(PathBuf::from(format!("/dev/shm/attune-{uid}")));
    }
    roots.push(data_dir.join("run"));
    roots
}

/// Creates `dir` (mode 0700) if missing and checks that it is ours and private: nobody
/// else may read or write it (0711, which lets the run-as user reach its own execution
/// directory by name, is private too).
fn private_dir(dir: &Path) -> Result<(), WorkspaceError> {
    match fs::DirBuilder::new()
        .mode(0o700)
        .recursive(false)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(dir)
                .map_err(io_err(dir))?;
        }
        Err(e) => return Err(io_err(dir)(e)),
    }
    let meta = fs::symlink_metadata(dir).map_err(io_err(dir))?;
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o066 != 0 {
        return Err(WorkspaceError::Unsafe(dir.to_path_buf()));
    }
    Ok(())
}

/// Whether every directory from `/` down to `dir` lets other users through (o+x), as the
/// run-as user needs to reach its execution directory.
fn traversable_by_others(dir: &Path) -> bool {
    dir.ancestors()
        .skip(1)
        .all(|d| fs::metadata(d).is_ok_and(|m| m.mode() & 0o001 != 0))
}

/// Lets other users through `dir` (0711), without letting them list or write it.
fn open_for_traversal(dir: &Path) -> Result<(), WorkspaceError> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o711)).map_err(io_err(dir))
}

/// `bytes` random bytes in lower-case hex, for unique names (the time, should the kernel
/// have no randomness).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        // Uniqueness, not secrecy, is what matters here; O_EXCL catches any clash.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        return format!("{t:x}");
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Takes an exclusive, non-blocking flock on `file`; true if we got it.
pub fn try_lock(file: &fs::File) -> bool {
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

impl Workspace {
    /// Opens a fresh workspace for this process under the first usable runtime root,
    /// sweeping the leftovers of dead workers there first. A memory root that is not ours
    /// and private (squatted by another user, or loosened) is never used and never
    /// silently replaced by the disk: a fresh root with an unpredictable name beside it is
    /// used instead, and [`Workspace::notes`] says so. The data dir is used only where no
    /// memory file system exists.
    ///
    /// `shared`: actions run as another user, who must be able to reach (not list) their
    /// own execution directories: the root and this worker's directory become 0711, and
    /// only roots whose parents let other users through are candidates.
    pub fn open(data_dir: &Path, tag: &str, shared: bool) -> Result<Workspace, WorkspaceError> {
        let mut last_err = None;
        let mut notes = Vec::new();
        for root in runtime_roots(data_dir) {
            if shared && !traversable_by_others(&root) {
                notes.push(format!(
                    "{} is not used for execution directories: the run-as user cannot reach it",
                    root.display()
                ));
                continue;
            }
            match Workspace::open_in(&root, tag) {
                Ok(mut ws) => {
                    ws.notes = notes;
                    if shared {
                        open_for_traversal(&root)?;
                        open_for_traversal(&ws.dir)?;
                    }
                    return Ok(ws);
                }
                Err(WorkspaceError::Unsafe(bad)) if !root.starts_with(data_dir) => {
                    let name = root
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let fresh = root.with_file_name(format!("{name}-{}", random_hex(8)));
                    // mkdir fails if the name exists: nobody can have prepared it for us.
                    let made = fs::DirBuilder::new().mode(0o700).create(&fresh);
                    match made
                        .map_err(io_err(&fresh))
                        .and_then(|()| Workspace::open_in(&fresh, tag))
                    {
                        Ok(mut ws) => {
                            if shared {
                                open_for_traversal(&fresh)?;
                                open_for_traversal(&ws.dir)?;
                            }
                            notes.push(format!(
                                "{} is not a directory owned by this user with mode 0700 (squatted or loosened?); using {} instead",
                                bad.display(),
                                fresh.display()
                            ));
                            ws.notes = notes;
                            ws.fresh_root = Some(fresh);
                            return Ok(ws);
                        }
                        Err(e) => last_err = Some(e),
                    }
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or(WorkspaceError::Unsafe(data_dir.to_path_buf())))
    }

    /// What happened while choosing the runtime root, for the log.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Where parameter files live and on which file system, for the log.
    pub fn describe(&self) -> String {
        format!(
            "parameter files live in {} ({})",
            self.dir.display(),
            fs_kind(&self.dir)
        )
    }

    /// Opens a fresh workspace under `root`.
    pub fn open_in(root: &Path, tag: &str) -> Result<Workspace, WorkspaceError> {
        private_dir(root)?;
        sweep(root);
        let name = format!("w-{tag}-{}-{}", std::process::id(), random_hex(4));
        let staging = root.join(format!(".{name}"));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(io_err(&staging))?;
        let lock_path = staging.join(".lock");
        let lock = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        if !try_lock(&lock) {
            return Err(io_err(&lock_path)(io::Error::last_os_error()));
        }
        let dir = root.join(&name);
        fs::rename(&staging, &dir).map_err(io_err(&dir))?;
        Ok(Workspace {
            dir,
            _lock: lock,
            notes: Vec::new(),
            fresh_root: None,
        })
    }

    /// What no action may reach: the data dir, and the runtime root with every worker's
    /// execution directories (each action gets its own back explicitly).
    pub fn protected(&self, data_dir: &Path) -> Vec<PathBuf> {
        let mut paths = vec![data_dir.to_path_buf()];
        paths.extend(self.dir.parent().map(Path::to_path_buf));
        paths
    }

    /// The pack cache for the server on `data_dir`: beside the execution directories,
    /// outside the data dir (actions read their pack there, and must not reach the data
    /// dir), one per data dir. Created if missing, with the mode of the runtime root.
    pub fn pack_cache(&self, data_dir: &Path) -> Result<PathBuf, WorkspaceError> {
        let root = self.dir.parent().unwrap_or(&self.dir);
        let existing = data_dir.canonicalize().ok();
        let canonical = existing.clone().unwrap_or_else(|| data_dir.to_path_buf());
        // FNV-1a: a stable name per data dir; a collision would only share a
        // content-addressed cache.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in canonical.as_os_str().as_encoded_bytes() {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        let dir = root.join(format!("packs-{h:016x}"));
        private_dir(&dir)?;
        let mode = fs::metadata(root).map_err(io_err(root))?.mode() & 0o777;
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).map_err(io_err(&dir))?;
        // Whose cache it is, beside it: the sweep removes the cache once that data dir is
        // gone. Replaced atomically, so that a sweep never reads half a path. A data dir
        // that does not exist (yet: `run --local` need not make it) has none, so its cache
        // is never swept from under this process.
        let owner = root.join(format!("packs-{h:016x}{OWNER_SUFFIX}"));
        let Some(existing) = existing else {
            let _ = fs::remove_file(&owner);
            return Ok(dir);
        };
        let path = existing.as_os_str().as_bytes();
        if fs::read(&owner).ok().as_deref() != Some(path) {
            let staging = root.join(format!(".packs-{h:016x}-{}", random_hex(4)));
            fs::write(&staging, path)
                .and_then(|()| fs::rename(&staging, &owner))
                .map_err(io_err(&owner))?;
        }
        Ok(dir)
    }

    /// This worker's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory for one execution.
    pub fn exec_dir(&self, execution_id: &str) -> Result<ExecDir, WorkspaceError> {
        let safe: String = execution_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        let path = self.dir.join(format!("x-{safe}-{}", random_hex(4)));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(io_err(&path))?;
        Ok(ExecDir {
            path,
            removed: false,
            written: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = remove_tree(&self.dir);
        if let Some(root) = &self.fresh_root {
            // Its pack cache is read-only; remove_tree makes directories writable first.
            let _ = remove_tree(root);
        }
    }
}

/// Beside a pack cache `packs-<hash>`, the file naming the data dir it serves.
const OWNER_SUFFIX: &str = ".data-dir";

/// Removes the workspaces of workers that are no longer running (their lock is free),
/// staging directories and files of processes that died while starting, and the pack
/// caches of data dirs that no longer exist.
fn sweep(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if name.starts_with("w-") {
            let lock = fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(path.join(".lock"));
            let dead = match lock {
                Ok(f) => try_lock(&f),
                Err(e) => e.kind() == io::ErrorKind::NotFound,
            };
            if dead {
                let _ = remove_tree(&path);
            }
        } else if let Some(hash) = name
            .strip_prefix("packs-")
            .and_then(|n| n.strip_suffix(OWNER_SUFFIX))
        {
            if let Ok(owner) = fs::read(&path) {
                let data_dir = Path::new(std::ffi::OsStr::from_bytes(&owner));
                let gone = data_dir.is_absolute()
                    && fs::symlink_metadata(data_dir)
                        .is_err_and(|e| e.kind() == io::ErrorKind::NotFound);
                if gone {
                    let _ = remove_tree(&root.join(format!("packs-{hash}")));
                    let _ = fs::remove_file(&path);
                }
            }
        } else if name.starts_with(".w-") || name.starts_with(".packs-") {
            let old = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 60);
            if old && name.starts_with(".w-") {
                let _ = remove_tree(&path);
            } else if old {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// Removes a directory tree, first making every directory in it writable again, since an
/// action may have left read-only directories behind.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_writable(path);
            match fs::remove_dir_all(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        }
    }
}

fn make_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        if let Ok(entries) = fs::read_dir(path) {
            for e in entries.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

/// One execution's directory; removed by [`ExecDir::remove`] or on drop.
#[derive(Debug)]
pub struct ExecDir {
    path: PathBuf,
    removed: bool,
    /// Whether anything was written in it (else [`ExecDir::give_to`] need not list it).
    written: std::sync::atomic::AtomicBool,
}

impl ExecDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the parameter document to `params.<ext>`: created with O_EXCL, mode 0400.
    pub fn write_param_file(&self, ext: &str, doc: &[u8]) -> Result<PathBuf, WorkspaceError> {
        self.write_param_file_with(ext, |f| f.write_all(doc))
            .map(|(path, _)| path)
    }

    /// Like [`ExecDir::write_param_file`], with the document written by `write` as it is
    /// made, through a buffer of 64 KiB (longer pieces go to the file directly); also says
    /// how many bytes it has.
    pub fn write_param_file_with(
        &self,
        ext: &str,
        write: impl FnOnce(&mut io::BufWriter<fs::File>) -> io::Result<()>,
    ) -> Result<(PathBuf, u64), WorkspaceError> {
        let path = self.path.join(format!("params.{ext}"));
        self.written
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut out = io::BufWriter::with_capacity(64 * 1024, f);
        write(&mut out)
            .and_then(|()| out.flush())
            .map_err(io_err(&path))?;
        let len = out.get_ref().metadata().map_err(io_err(&path))?.len();
        Ok((path, len))
    }

    /// Hands the directory and everything in it (the parameter file) to the user an action
    /// runs as: that user, and no one else, can then read them.
    pub fn give_to(&self, uid: u32, gid: u32) -> Result<(), WorkspaceError> {
        std::os::unix::fs::lchown(&self.path, Some(uid), Some(gid)).map_err(io_err(&self.path))?;
        if !self.written.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        for entry in fs::read_dir(&self.path).map_err(io_err(&self.path))? {
            let path = entry.map_err(io_err(&self.path))?.path();
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(io_err(&path))?;
        }
        Ok(())
    }

    /// Removes the directory and everything in it.
    pub fn remove(mut self) -> io::Result<()> {
        self.removed = true;
        remove_tree(&self.path)
    }
}

impl Drop for ExecDir {
    fn drop(&mut self) {
        if !self.removed {
            let _ = remove_tree(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_dead_workers_but_not_live_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rt");
        let live = Workspace::open_in(&root, "t").unwrap();
        let dead = root.join("w-t-1-dead");
        fs::create_dir_all(dead.join("x-1")).unwrap();
        fs::write(dead.join(".lock"), "").unwrap();
        let other = Workspace::open_in(&root, "t").unwrap();
        assert!(!dead.exists(), "dead worker's directory was not swept");
        assert!(live.dir().exists(), "live worker's directory was swept");
        drop(other);
    }

    #[test]
    fn sweeps_the_pack_caches_of_data_dirs_that_are_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rt");
        let (kept, gone) = (tmp.path().join("kept"), tmp.path().join("gone"));
        let ws = Workspace::open_in(&root, "t").unwrap();
        let mut caches = Vec::new();
        for data in [&kept, &gone] {
            fs::create_dir(data).unwrap();
            let cache = ws.pack_cache(data).unwrap();
            fs::create_dir_all(cache.join("digest/actions")).unwrap();
            // Asked again, the same cache (and its owner file is left as it is).
            assert_eq!(ws.pack_cache(data).unwrap(), cache);
            caches.push(cache);
        }
        // A data dir that does not exist gets a cache, never swept.
        let never = ws.pack_cache(&tmp.path().join("never")).unwrap();
        fs::remove_dir(&gone).unwrap();
        let other = Workspace::open_in(&root, "t").unwrap();
        assert!(
            never.exists(),
            "the cache of a data dir not made yet was swept"
        );
        assert!(
            caches[0].join("digest/actions").exists(),
            "a live data dir's cache was swept"
        );
        assert!(!caches[1].exists(), "a removed data dir's cache was kept");
        let names: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("packs-") || n.starts_with(".packs-"))
            .collect();
        // The kept cache and its owner file, and the one without an owner.
        assert_eq!(names.len(), 3, "{names:?}");
        drop((ws, other));
    }

    #[test]
    fn param_file_is_0400_in_0700_dir_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = Workspace::open_in(&tmp.path().join("rt"), "t").unwrap();
        let d = ws.exec_dir("exec/1").unwrap();
        let f = d.write_param_file("json", b"{}\n").unwrap();
        assert_eq!(fs::metadata(&f).unwrap().mode() & 0o777, 0o400);
        assert_eq!(fs::metadata(d.path()).unwrap().mode() & 0o777, 0o700);
        assert!(d.write_param_file("json", b"{}").is_err(), "O_EXCL");
        let p = d.path().to_path_buf();
        fs::create_dir(p.join("ro")).unwrap();
        fs::set_permissions(p.join("ro"), fs::Permissions::from_mode(0o500)).unwrap();
        d.remove().unwrap();
        assert!(!p.exists());
    }

    #[test]
    fn refuses_a_root_others_can_write() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rt");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            Workspace::open_in(&root, "t"),
            Err(WorkspaceError::Unsafe(_))
        ));
    }
}
