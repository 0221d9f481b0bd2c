//! The packs compiled into the binary (the `core` pack). The server registers them at
//! start; `run --local` unpacks one into the pack cache (read-only, checked against its
//! digest like every cached pack), so every run uses exactly the bundled version.

use attune_core::bundle::{Bundle, BundleFile};
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The refs (directory names) of the bundled packs.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUNDLED.iter().map(|(name, _, _)| *name)
}

/// Every bundled pack, as a bundle.
pub fn bundles() -> Vec<Bundle> {
    BUNDLED
        .iter()
        .map(|(_, _, files)| to_bundle(files))
        .collect()
}

fn to_bundle(files: &[(&str, u32, &[u8])]) -> Bundle {
    Bundle {
        files: files
            .iter()
            .map(|(path, mode, data)| BundleFile {
                path: (*path).to_string(),
                mode: *mode,
                data: data.to_vec(),
            })
            .collect(),
    }
}

/// The directory of bundled pack `name` in `cache`, unpacked if not already there.
pub fn unpack(
    name: &str,
    cache: &Path,
    readable_by_others: bool,
) -> Result<Option<PathBuf>, String> {
    let Some((_, _, files)) = BUNDLED.iter().find(|(n, _, _)| *n == name) else {
        return Ok(None);
    };
    let bundle = to_bundle(files);
    let dir = cache.join(bundle.digest());
    if dir.exists() {
        if let Some(diff) = bundle.differs_from_dir(&dir) {
            return Err(format!(
                "the cached copy of the bundled {name} pack in {} was changed ({diff}); remove it to have it unpacked again",
                dir.display()
            ));
        }
    } else {
        bundle
            .unpack_to(&dir, readable_by_others)
            .map_err(|e| e.to_string())?;
    }
    Ok(Some(dir))
}
