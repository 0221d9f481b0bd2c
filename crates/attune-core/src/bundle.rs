//! A pack's files as one byte string, so a pack can be uploaded, stored by content digest
//! and unpacked on any worker (DESIGN.md §6). Only regular files are carried; paths are
//! relative and may not climb out of the pack.

use sha2::{Digest, Sha256};
use std::path::{Component, Path, PathBuf};

/// Largest bundle accepted (all files together).
pub const MAX_BUNDLE_BYTES: usize = 100 * 1024 * 1024;
/// Most files in a bundle.
pub const MAX_FILES: usize = 10_000;

/// One file of a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    /// Path relative to the pack directory, `/`-separated.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Contents.
    pub data: Vec<u8>,
}

/// A pack's files, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bundle {
    /// The files.
    pub files: Vec<BundleFile>,
}

/// Why a bundle could not be built, decoded or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not a bundle.
    #[error("not a valid pack bundle: {0}")]
    Malformed(String),
    /// A path that is absolute or climbs out of the pack.
    #[error(
        "pack file path `{0}` is not allowed: paths must be relative and stay inside the pack"
    )]
    BadPath(String),
    /// Too large.
    #[error("pack too large: more than {MAX_BUNDLE_BYTES} bytes or {MAX_FILES} files")]
    TooLarge,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn check_path(p: &str) -> Result<(), BundleError> {
    let path = Path::new(p);
    let ok = !p.is_empty()
        && !p.contains('\0')
        && !p.contains('\\')
        && path.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(BundleError::BadPath(p.to_string()))
    }
}

impl Bundle {
    /// Reads every regular file under `dir` (symlinks are followed only if they stay inside;
    /// hidden `.git` directories are skipped).
    pub fn from_dir(dir: &Path) -> Result<Bundle, BundleError> {
        use std::os::unix::fs::PermissionsExt;
        let root = dir.canonicalize().map_err(io(dir))?;
        let mut files = Vec::new();
        let mut total = 0usize;
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).map_err(io(&d))? {
                let entry = entry.map_err(io(&d))?;
                let path = entry.path();
                if entry.file_name() == ".git" {
                    continue;
                }
                let real = path.canonicalize().map_err(io(&path))?;
                if !real.starts_with(&root) {
                    continue;
                }
                let meta = std::fs::metadata(&real).map_err(io(&path))?;
                if meta.is_dir() {
                    stack.push(path);
                } else if meta.is_file() {
                    let rel = path
                        .strip_prefix(&root)
                        .map_err(|_| BundleError::BadPath(path.display().to_string()))?
                        .to_string_lossy()
                        .into_owned();
                    let data = std::fs::read(&real).map_err(io(&path))?;
                    total += data.len();
                    if total > MAX_BUNDLE_BYTES || files.len() >= MAX_FILES {
                        return Err(BundleError::TooLarge);
                    }
                    files.push(BundleFile {
                        path: rel,
                        mode: meta.permissions().mode() & 0o777,
                        data,
                    });
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Bundle { files })
    }

    /// Encodes the bundle.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for f in &self.files {
            out.extend_from_slice(&(f.path.len() as u32).to_le_bytes());
            out.extend_from_slice(f.path.as_bytes());
            out.extend_from_slice(&f.mode.to_le_bytes());
            out.extend_from_slice(&(f.data.len() as u64).to_le_bytes());
            out.extend_from_slice(&f.data);
        }
        out
    }

    /// Decodes and checks a bundle.
    pub fn from_bytes(mut b: &[u8]) -> Result<Bundle, BundleError> {
        if b.len() > MAX_BUNDLE_BYTES + MAX_FILES * 4096 {
            return Err(BundleError::TooLarge);
        }
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], BundleError> {
            if b.len() < n {
                return Err(BundleError::Malformed("truncated".into()));
            }
            let (head, tail) = b.split_at(n);
            *b = tail;
            Ok(head)
        }
        let mut files: Vec<BundleFile> = Vec::new();
        while !b.is_empty() {
            if files.len() >= MAX_FILES {
                return Err(BundleError::TooLarge);
            }
            let len = u32::from_le_bytes(take(&mut b, 4)?.try_into().unwrap_or_default()) as usize;
            let path = std::str::from_utf8(take(&mut b, len)?)
                .map_err(|_| BundleError::Malformed("a path is not UTF-8".into()))?
                .to_string();
            check_path(&path)?;
            let mode = u32::from_le_bytes(take(&mut b, 4)?.try_into().unwrap_or_default());
            let size = u64::from_le_bytes(take(&mut b, 8)?.try_into().unwrap_or_default());
            let size = usize::try_from(size).map_err(|_| BundleError::TooLarge)?;
            let data = take(&mut b, size)?.to_vec();
            if files.last().is_some_and(|prev| prev.path >= path) {
                return Err(BundleError::Malformed(
                    "files are not sorted or a path repeats".into(),
                ));
            }
            files.push(BundleFile {
                path,
                mode: mode & 0o777,
                data,
            });
        }
        Ok(Bundle { files })
    }

    /// SHA-256 of the encoded bundle, hex (first 16 bytes).
    pub fn digest(&self) -> String {
        Sha256::digest(self.to_bytes())
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Writes the files under `dir` (which must not exist yet), via a temporary directory
    /// and a rename, so a half-written pack is never seen. The copy is read-only: files
    /// 0400 (0500 if executable), directories 0500, whatever the umask; with
    /// `readable_by_others` (actions run as another user), 0444, 0555 and 0555.
    pub fn unpack_to(&self, dir: &Path, readable_by_others: bool) -> Result<(), BundleError> {
        let (file_mode, exec_mode) = if readable_by_others {
            (0o444, 0o555)
        } else {
            (0o400, 0o500)
        };
        use std::os::unix::fs::PermissionsExt;
        static UNIQUE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let parent = dir.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        // Unique per call: concurrent registrations of one bundle must not share it.
        let tmp = parent.join(format!(
            ".unpack-{}-{}-{}",
            std::process::id(),
            UNIQUE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let written = (|| {
            let mut dirs = vec![tmp.clone()];
            std::fs::create_dir(&tmp).map_err(io(&tmp))?;
            for f in &self.files {
                check_path(&f.path)?;
                let path = tmp.join(&f.path);
                if let Some(p) = path.parent() {
                    std::fs::create_dir_all(p).map_err(io(p))?;
                    let mut d = p.to_path_buf();
                    while d != tmp && !dirs.contains(&d) {
                        dirs.push(d.clone());
                        d = d.parent().map(Path::to_path_buf).unwrap_or_default();
                    }
                }
                std::fs::write(&path, &f.data).map_err(io(&path))?;
                let mode = if f.mode & 0o100 != 0 {
                    exec_mode
                } else {
                    file_mode
                };
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(io(&path))?;
            }
            for d in &dirs {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(exec_mode))
                    .map_err(io(d))?;
            }
            Ok(())
        })();
        if let Err(e) = written {
            remove_read_only_tree(&tmp);
            return Err(e);
        }
        match std::fs::rename(&tmp, dir) {
            Ok(()) => Ok(()),
            Err(_) if dir.join("pack.yaml").is_file() => {
                remove_read_only_tree(&tmp);
                Ok(())
            }
            Err(e) => {
                remove_read_only_tree(&tmp);
                Err(io(dir)(e))
            }
        }
    }

    /// Whether the files under `dir` are exactly this bundle's (paths and contents; nothing
    /// more, nothing less). Returns the first difference.
    pub fn differs_from_dir(&self, dir: &Path) -> Option<String> {
        let mut found = std::collections::BTreeMap::new();
        if let Err(e) = collect_files(dir, dir, &mut found) {
            return Some(e);
        }
        for f in &self.files {
            match found.remove(&f.path) {
                None => return Some(format!("{} is missing", f.path)),
                Some(data) if data != f.data => return Some(format!("{} was changed", f.path)),
                Some(_) => {}
            }
        }
        found
            .into_keys()
            .next()
            .map(|extra| format!("{extra} was added"))
    }
}

/// Regular files under `dir`, by path relative to `root`; anything else is an error.
fn collect_files(
    root: &Path,
    dir: &Path,
    out: &mut std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<(), String> {
    let rel = |p: &Path| {
        p.strip_prefix(root)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("{} cannot be read: {e}", rel(dir)))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{} cannot be read: {e}", rel(dir)))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| format!("{} cannot be read: {e}", rel(&path)))?;
        if meta.is_dir() {
            collect_files(root, &path, out)?;
        } else if meta.is_file() {
            let data =
                std::fs::read(&path).map_err(|e| format!("{} cannot be read: {e}", rel(&path)))?;
            out.insert(rel(&path), data);
        } else {
            return Err(format!("{} is not a regular file", rel(&path)));
        }
    }
    Ok(())
}

/// Removes a tree whose directories may be read-only (as unpacked packs are).
pub fn remove_read_only_tree(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fn writable(dir: &Path) {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    writable(&e.path());
                }
            }
        }
    }
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        writable(dir);
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_escapes() {
        let b = Bundle {
            files: vec![
                BundleFile {
                    path: "actions/a.sh".into(),
                    mode: 0o755,
                    data: b"#!/bin/sh\n".to_vec(),
                },
                BundleFile {
                    path: "pack.yaml".into(),
                    mode: 0o644,
                    data: b"ref: p\n".to_vec(),
                },
            ],
        };
        let bytes = b.to_bytes();
        assert_eq!(Bundle::from_bytes(&bytes).unwrap(), b);
        assert_eq!(b.digest().len(), 32);
        let tmp = tempfile::tempdir().unwrap();
        b.unpack_to(&tmp.path().join("p"), false).unwrap();
        assert!(tmp.path().join("p/actions/a.sh").is_file());
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            let evil = Bundle {
                files: vec![BundleFile {
                    path: bad.into(),
                    mode: 0o644,
                    data: vec![],
                }],
            };
            assert!(Bundle::from_bytes(&evil.to_bytes()).is_err(), "{bad}");
        }
        assert!(Bundle::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }
}
