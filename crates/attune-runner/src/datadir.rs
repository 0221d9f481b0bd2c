//! The data dir (DESIGN.md §3 Sandbox): database, `secret.key`, `admin.token`,
//! `server.json`. It is 0700 and its files 0600 whatever the umask. One that is looser and
//! ours is tightened (and said so); one that belongs to another user is refused, never used.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the data dir cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// An I/O error on a path.
    #[error("cannot prepare the data dir {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Not a directory.
    #[error("the data dir {0} is not a directory")]
    NotADir(PathBuf),
    /// The data dir, or something in it, belongs to another user.
    #[error("refusing to use the data dir: {path} belongs to uid {owner}, not to this user (uid {me}); another user could read or replace what it holds")]
    Foreign {
        /// The offending path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        me: u32,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (0700) if missing, or checks and tightens an existing one and what is in
/// it (files 0600, directories 0700). Returns one line per change made, for the log.
pub fn prepare_data_dir(dir: &Path) -> Result<Vec<String>, DataDirError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    mkdir_0700(dir)?;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    let mut changed = Vec::new();
    let meta = fs::metadata(dir).map_err(io_err(dir))?;
    if !meta.is_dir() {
        return Err(DataDirError::NotADir(dir.to_path_buf()));
    }
    tighten(dir, &meta, me, 0o700, &mut changed)?;
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        if meta.is_file() {
            tighten(&path, &meta, me, 0o600, &mut changed)?;
        } else if meta.is_dir() {
            tighten(&path, &meta, me, 0o700, &mut changed)?;
        } else if meta.uid() != me {
            return Err(DataDirError::Foreign {
                path,
                owner: meta.uid(),
                me,
            });
        }
    }
    Ok(changed)
}

/// Creates `dir` with mode exactly 0700 (mkdir's mode is masked by the umask); an existing
/// one is left for the checks that follow.
fn mkdir_0700(dir: &Path) -> Result<(), DataDirError> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// Refuses `path` if another user owns it; clears any permission bits beyond `max`.
fn tighten(
    path: &Path,
    meta: &fs::Metadata,
    me: u32,
    max: u32,
    changed: &mut Vec<String>,
) -> Result<(), DataDirError> {
    if meta.uid() != me {
        return Err(DataDirError::Foreign {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & !max != 0 {
        let new = mode & max;
        fs::set_permissions(path, fs::Permissions::from_mode(new)).map_err(io_err(path))?;
        changed.push(format!(
            "{} had mode {mode:04o}; tightened to {new:04o}",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_0700_and_tightens_what_is_looser() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("a/b/data");
        assert!(prepare_data_dir(&d).unwrap().is_empty());
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o7777, 0o700);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(d.join("attune.db"), "x").unwrap();
        fs::set_permissions(d.join("attune.db"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::create_dir(d.join("old")).unwrap();
        fs::set_permissions(d.join("old"), fs::Permissions::from_mode(0o777)).unwrap();
        let changed = prepare_data_dir(&d).unwrap();
        assert_eq!(changed.len(), 3, "{changed:?}");
        assert_eq!(fs::metadata(d.join("old")).unwrap().mode() & 0o7777, 0o700);
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o7777, 0o700);
        assert_eq!(
            fs::metadata(d.join("attune.db")).unwrap().mode() & 0o7777,
            0o600
        );
    }
}
