//! Embeds the bundled packs (`packs/` at the repository root) into the binary, so the core
//! pack is found wherever `attune` is installed.

use sha2::{Digest, Sha256};
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
    // Packed relative relocations: the loader applies the binary's ~13k relative
    // relocations from a compact table instead of 24-byte records (faster start, still PIE).
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let packs = manifest.join("../../packs");
    println!("cargo:rerun-if-changed={}", packs.display());
    let mut code = String::from("/// Bundled packs: (pack directory name, content digest, [(relative path, mode, contents)]).\n#[allow(clippy::type_complexity)]\npub static BUNDLED: &[(&str, &str, &[(&str, u32, &[u8])])] = &[\n");
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
        // The content digest names the extracted directory; computed here, not per run.
        let mut h = Sha256::new();
        for (rel, path, mode) in &files {
            let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            h.update((rel.len() as u64).to_le_bytes());
            h.update(rel.as_bytes());
            h.update(mode.to_le_bytes());
            h.update((data.len() as u64).to_le_bytes());
            h.update(&data);
        }
        let digest: String = h
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        let _ = writeln!(code, "    ({name:?}, {digest:?}, &[");
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
