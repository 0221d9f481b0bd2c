//! Embeds each backend's migrations folder (`migrations/sqlite`, `migrations/postgres`) in
//! the binary: every `NNNN_description.sql` file, in version order, so a new migration is a
//! new file and nothing else. sqlx's `migrate!` macro would do the same, but it needs sqlx's
//! `macros` feature, which builds both database drivers (bundled SQLite's C included) a
//! second time for the proc-macro.
//!
//! Both backends must have the same versions: a migration added to one only is a build error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// (version, description, absolute path) of each migration in `dir`, by version.
fn migrations(dir: &Path) -> Vec<(i64, String, PathBuf)> {
    let mut found = Vec::new();
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".sql") else {
            continue;
        };
        let (version, description) = stem
            .split_once('_')
            .and_then(|(v, d)| Some((v.parse::<i64>().ok()?, d)))
            .unwrap_or_else(|| {
                panic!(
                    "{}: a migration is named NNNN_description.sql",
                    path.display()
                )
            });
        found.push((
            version,
            description.replace('_', " "),
            path.canonicalize().expect("an existing file"),
        ));
    }
    found.sort_by_key(|m| m.0);
    for pair in found.windows(2) {
        assert!(
            pair[0].0 != pair[1].0,
            "{} and {} have the same version",
            pair[0].2.display(),
            pair[1].2.display()
        );
    }
    found
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let mut out = String::new();
    let mut versions = Vec::new();
    for backend in ["sqlite", "postgres"] {
        let dir = manifest.join("migrations").join(backend);
        println!("cargo:rerun-if-changed={}", dir.display());
        let list = migrations(&dir);
        versions.push((backend, list.iter().map(|m| m.0).collect::<Vec<_>>()));
        writeln!(
            out,
            "/// `migrations/{backend}`, by version.\nconst {}: Embedded = &[",
            backend.to_uppercase()
        )
        .expect("a String");
        for (version, description, path) in list {
            writeln!(
                out,
                "    ({version}, {description:?}, include_str!({:?})),",
                path.to_string_lossy()
            )
            .expect("a String");
        }
        out.push_str("];\n");
    }
    assert!(
        versions[0].1 == versions[1].1,
        "the migrations folders differ: sqlite has versions {:?}, postgres {:?}",
        versions[0].1,
        versions[1].1
    );
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("migrations.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
}
