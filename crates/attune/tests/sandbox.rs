//! What keeps actions and other users away from the platform (DESIGN.md §3 Sandbox, §8):
//! data dir permissions whatever the umask, the runtime dir for parameter files, the
//! read-only pack cache checked against its digest, and what pack registration refuses.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

/// Makes the server start with umask 000, as a careless service manager might.
fn umask_000(cmd: &mut Command) {
    // SAFETY: umask(2) is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
}

/// Runs `attune server` on `data` expecting it to refuse to start; returns its stderr.
fn refused_start(data: &Path, env: &[(&str, &Path)]) -> String {
    let mut cmd = Command::new(bin());
    cmd.arg("--data-dir")
        .arg(data)
        .args(["server", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    stderr(&out)
}

fn write_pack(dir: &Path, pack_ref: &str, action_yaml: &str) {
    std::fs::create_dir_all(dir.join("actions")).unwrap();
    std::fs::write(dir.join("pack.yaml"), format!("ref: {pack_ref}\n")).unwrap();
    std::fs::write(dir.join("actions/act.yaml"), action_yaml).unwrap();
    std::fs::write(dir.join("actions/act.sh"), "#!/bin/bash\necho acted\n").unwrap();
    std::fs::set_permissions(
        dir.join("actions/act.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
}

const ACT: &str = "name: act\nrunner_type: shell\nentry_point: act.sh\n";

#[test]
fn a_loose_data_dir_is_tightened_and_files_are_0600_whatever_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = TestServer::start_with(&data, &["--workers", "1"], umask_000);
    let pack = tmp.path().join("p");
    write_pack(&pack, "p", ACT);
    let (st, v) = s.register(&pack);
    assert_eq!(st, 201, "{v}");
    assert_eq!(mode(&data), 0o700);
    assert!(s.log().contains("tightened to 0700"), "{}", s.log());
    for f in [
        "attune.db",
        "attune.db-wal",
        "attune.db-shm",
        "secret.key",
        "admin.token",
        "server.json",
        "server.lock",
    ] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    // The pack cache, outside the data dir: nothing in it writable, by anyone; readable by
    // the user actions run as (nobody, when the server runs as root), else by us alone.
    let cache = s.pack_cache();
    assert!(!cache.starts_with(&data), "{}", cache.display());
    // SAFETY: geteuid cannot fail.
    let (file, exec) = if unsafe { libc::geteuid() } == 0 {
        (0o444, 0o555)
    } else {
        (0o400, 0o500)
    };
    let mut stack = vec![cache.clone()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = mode(&e.path());
            if e.file_type().unwrap().is_dir() {
                assert_eq!(m, exec, "{}", e.path().display());
                stack.push(e.path());
            } else {
                files += 1;
                assert!(m == file || m == exec, "{}: {m:o}", e.path().display());
            }
        }
    }
    assert!(files >= 3, "pack files were unpacked");
    assert_eq!(
        mode(&cache) & 0o066,
        0,
        "others can at most pass through the pack cache"
    );
}

#[test]
fn a_data_dir_or_a_file_in_it_owned_by_another_user_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    let err = refused_start(&data, &[]);
    assert_eq!(
        err.trim(),
        format!(
            "attune: error: refusing to use the data dir: {} belongs to uid 65534, not to this user (uid 0); another user could read or replace what it holds",
            data.display()
        )
    );
    assert!(
        std::fs::read_dir(&data).unwrap().next().is_none(),
        "nothing was written into it"
    );

    let data = tmp.path().join("data2");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("secret.key"), [0u8; 32]).unwrap();
    std::os::unix::fs::chown(data.join("secret.key"), Some(65534), None).unwrap();
    let err = refused_start(&data, &[]);
    assert!(
        err.contains("secret.key belongs to uid 65534, not to this user"),
        "{err}"
    );
}

#[test]
fn a_squatted_runtime_dir_is_never_used_nor_silently_replaced_by_the_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let xdg = tmp.path().join("xdg");
    std::fs::create_dir(&xdg).unwrap();
    let squatted = xdg.join("attune");
    std::fs::create_dir(&squatted).unwrap();
    std::fs::set_permissions(&squatted, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&squatted, Some(65534), Some(65534)).unwrap();
    let data = tmp.path().join("data");
    let s = TestServer::start_with(&data, &["--workers", "1"], |c| {
        c.env("XDG_RUNTIME_DIR", &xdg);
    });
    let log = s.log();
    assert!(
        log.contains(&format!(
            "WARN {} is not a directory owned by this user with mode 0700",
            squatted.display()
        )),
        "{log}"
    );
    let live = format!("parameter files live in {}-", squatted.display());
    assert!(log.contains(&live), "{log}");
    // A file-delivered action's parameter file is in the fresh directory, not the squatted one.
    let pack = tmp.path().join("f");
    write_pack(
        &pack,
        "f",
        "name: act\nrunner_type: shell\nentry_point: act.sh\nparameter_delivery: file\n",
    );
    std::fs::write(
        pack.join("actions/act.sh"),
        "#!/bin/bash\necho \"$ATTUNE_PARAMETER_FILE\"\n",
    )
    .unwrap();
    assert_eq!(s.register(&pack).0, 201);
    let (st, v) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": "f.act"})),
    );
    assert_eq!(st, 201, "{v}");
    let done = s.wait_final(v["id"].as_i64().unwrap(), 20);
    let file = done["stdout"].as_str().unwrap().trim().to_string();
    assert!(
        file.starts_with(&format!("{}-", squatted.display())),
        "{file}"
    );
    assert!(
        std::fs::read_dir(&squatted).unwrap().next().is_none(),
        "something was written into the squatted dir"
    );
    assert!(!data.join("run").exists(), "parameter files moved to disk");
    // The fresh directory is this server's alone: it goes when the server stops.
    let fresh = Path::new(&file).ancestors().nth(3).unwrap().to_path_buf();
    assert!(fresh.exists(), "{}", fresh.display());
    let mut s = s;
    s.signal(libc::SIGTERM);
    assert!(s.child.take().unwrap().wait().unwrap().success());
    assert!(!fresh.exists(), "{} outlived the server", fresh.display());
}

#[test]
fn a_tampered_pack_cache_is_refused_at_the_next_start_and_other_packs_still_work() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = TestServer::start_in(&data, &["--workers", "1"]);
    let pack = tmp.path().join("t");
    write_pack(&pack, "t", ACT);
    let (st, v) = s.register(&pack);
    assert_eq!(st, 201, "{v}");
    let digest = v["digest"].as_str().unwrap().to_string();
    let cache = s.pack_cache();
    drop(s);
    let script = cache.join(&digest).join("actions/act.sh");
    std::fs::set_permissions(
        script.parent().unwrap(),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut bytes = std::fs::read(&script).unwrap();
    let last = bytes.len() - 2;
    bytes[last] = b'X'; // "acted" becomes "acteX"
    std::fs::write(&script, bytes).unwrap();

    let s = TestServer::start_in(&data, &["--workers", "1"]);
    let log = s.log();
    assert!(
        log.contains(&format!("pack t cannot be loaded and is skipped: its unpacked copy in the pack cache does not match digest {digest} (actions/act.sh was changed)")),
        "{log}"
    );
    let (st, v) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": "t.act"})),
    );
    assert_eq!(st, 404, "the tampered pack must not run: {v}");
    let (st, v) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": "core.echo", "parameters": {"message": "still here"}})),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        s.wait_final(v["id"].as_i64().unwrap(), 20)["stdout"],
        "still here\n"
    );
}

#[test]
fn pack_registration_refuses_core_duplicate_keys_and_deep_yaml_and_leaves_nothing_behind() {
    let s = TestServer::start(&["--workers", "1"]);
    let tmp = tempfile::tempdir().unwrap();
    let cache = s.pack_cache();
    let cached = || std::fs::read_dir(&cache).unwrap().count();
    let before = cached();
    let cases = [
        (
            "core",
            ACT.to_string(),
            "a pack may not call itself `core`: the bundled core pack cannot be replaced",
        ),
        (
            "dup",
            format!("{ACT}timeout: 5\ntimeout: 9\n"),
            "actions/act.yaml: malformed YAML: duplicate key `timeout`",
        ),
        (
            "dup2",
            format!("{ACT}parameters:\n  a: {{type: string}}\n  a: {{type: integer}}\n"),
            "actions/act.yaml: malformed YAML: parameters: duplicate key `a`",
        ),
        (
            "deep",
            format!(
                "{ACT}description: {}{}\n",
                "[".repeat(100_000),
                "]".repeat(100_000)
            ),
            "actions/act.yaml: malformed YAML: nested more than 64 levels deep",
        ),
    ];
    for (name, yaml, expect) in cases {
        let dir = tmp.path().join(name);
        write_pack(&dir, name, &yaml);
        let (st, v) = s.register(&dir);
        assert_eq!(st, 422, "{name}: {v}");
        let text = v.to_string();
        assert!(text.contains(expect), "{name}: {text}");
        assert!(
            !text.contains(&s.data.display().to_string()) && !text.contains("/tmp/"),
            "{name}: a server-side path in the error: {text}"
        );
        assert_eq!(cached(), before, "{name}: a failed registration left files");
    }
    // The bundled core pack is still the one that runs.
    let (_, v) = s.admin("GET", "/api/v1/actions/core.echo", None);
    assert_eq!(v["ref"], "core.echo", "{v}");
}

#[test]
fn concurrent_registrations_of_one_bundle_all_succeed() {
    let s = TestServer::start(&["--workers", "1"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("same");
    write_pack(&dir, "same", ACT);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..8).map(|_| scope.spawn(|| s.register(&dir))).collect();
        hs.into_iter()
            .map(|h| {
                let (st, v) = h.join().unwrap();
                assert!(st == 201 || st == 409, "{st}: {v}");
                st
            })
            .collect()
    });
    assert!(statuses.contains(&201), "{statuses:?}");
    let (st, v) = s.admin(
        "POST",
        "/api/v1/executions",
        Some(&json!({"action_ref": "same.act"})),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        s.wait_final(v["id"].as_i64().unwrap(), 20)["stdout"],
        "acted\n"
    );
    let owner = std::fs::metadata(s.pack_cache()).unwrap().uid();
    // SAFETY: geteuid cannot fail.
    assert_eq!(owner, unsafe { libc::geteuid() });
}
