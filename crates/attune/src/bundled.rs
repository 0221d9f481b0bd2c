//! The packs compiled into the binary (the `core` pack), extracted on first use into a
//! content-addressed directory under the data dir, so every run uses exactly the bundled
//! version and concurrent first runs do not trip over each other.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The refs (directory names) of the bundled packs.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUNDLED.iter().map(|(name, _, _)| *name)
}

/// The directory of bundled pack `name`, extracted under `cache` if not already there.
pub fn extract(name: &str, cache: &Path) -> io::Result<Option<PathBuf>> {
    let Some((_, digest, files)) = BUNDLED.iter().find(|(n, _, _)| *n == name) else {
        return Ok(None);
    };
    let dir = cache.join(format!("{name}-{digest}"));
    if dir.join("pack.yaml").is_file() {
        return Ok(Some(dir));
    }
    fs::create_dir_all(cache)?;
    let tmp = cache.join(format!(".{name}-tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    for (rel, mode, data) in files.iter() {
        let path = tmp.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, data)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode & 0o755))?;
    }
    match fs::rename(&tmp, &dir) {
        Ok(()) => {}
        // Another process extracted it first: theirs is identical.
        Err(_) if dir.join("pack.yaml").is_file() => {
            let _ = fs::remove_dir_all(&tmp);
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    }
    Ok(Some(dir))
}
