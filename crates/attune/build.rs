//! Embeds the bundled packs (`packs/` at the repository root) into the binary, so the core
//! pack is found wherever `attune` is installed.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf, u32)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if meta.is_dir() {
            walk(root, &path, out);
        } else if meta.is_file() {
            let rel = path
                .strip_prefix(root)
                .expect("inside root")
                .to_string_lossy()
                .into_owned();
            out.push((
                rel,
                path.canonicalize().expect("canonical"),
                meta.permissions().mode() & 0o777,
            ));
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let packs = manifest.join("../../packs");
    println!("cargo:rerun-if-changed={}", packs.display());
    let mut code = String::from("/// Bundled packs: (pack directory name, [(relative path, mode, contents)]).\n#[allow(clippy::type_complexity)]\npub static BUNDLED: &[(&str, &[(&str, u32, &[u8])])] = &[\n");
    let mut names: Vec<_> = std::fs::read_dir(&packs)
        .expect("packs/ exists")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let dir = packs.join(&name);
        let mut files = Vec::new();
        walk(&dir, &dir, &mut files);
        for (_, p, _) in &files {
            println!("cargo:rerun-if-changed={}", p.display());
        }
        let _ = writeln!(code, "    ({name:?}, &[");
        for (rel, path, mode) in files {
            let _ = writeln!(
                code,
                "        ({rel:?}, 0o{mode:o}, include_bytes!({:?})),",
                path.display().to_string()
            );
        }
        let _ = writeln!(code, "    ]),");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("bundled.rs");
    std::fs::write(out, code).expect("write bundled.rs");
}
