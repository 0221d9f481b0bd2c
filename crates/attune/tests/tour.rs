//! The README's five-minute tour, pasted as one block into `bash` with a fresh data dir
//! (issue 14): every command must succeed (`set -e`), with the output the README promises.
//! The build line is the one thing not run: the binary under test stands in for it.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

fn tour() -> String {
    let readme = include_str!("../../../README.md");
    let start = readme.find("## Five-minute tour").unwrap();
    let block = &readme[start..];
    let block = &block[block.find("```sh\n").unwrap() + 6..];
    block[..block.find("```").unwrap()].to_string()
}

#[test]
fn the_readme_tour_runs_pasted_as_one_block() {
    let tour = tour();
    let (build, rest) = tour.split_once('\n').unwrap();
    assert!(build.starts_with("cargo build --release"), "{build}");
    let state = state_dir();
    let bin_dir = std::path::Path::new(bin()).parent().unwrap().to_path_buf();
    let script = format!(
        "set -euo pipefail\nexport PATH={}:$PATH\n{rest}",
        bin_dir.display()
    );
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut child = std::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(&repo)
        .env("ATTUNE_DATA_DIR", state.path().join("data"))
        .env_remove("ATTUNE_URL")
        .env_remove("ATTUNE_TOKEN")
        .env("COLUMNS", "120")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: the server and web server it leaves behind go with it.
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = child.id() as i32;
    // Read both pipes to their end: the background server and web server hold them open
    // until their process group is killed, which happens once bash is done (or too slow).
    let fds: [std::os::fd::OwnedFd; 2] = [
        child.stdout.take().unwrap().into(),
        child.stderr.take().unwrap().into(),
    ];
    let mut pipes = fds
        .map(|fd| {
            let mut p = std::fs::File::from(fd);
            std::thread::spawn(move || {
                let mut text = Vec::new();
                let _ = std::io::Read::read_to_end(&mut p, &mut text);
                text
            })
        })
        .into_iter();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // SAFETY: kill(2) on the tour's own process group.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
    let out = std::process::Output {
        status: status.unwrap_or_else(|| panic!("the tour took more than 120 s")),
        stdout: pipes.next().unwrap().join().unwrap(),
        stderr: pipes.next().unwrap().join().unwrap(),
    };
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "the tour failed:\n{o}\n{e}");
    for expected in [
        "hi\n",
        "request sent\n",
        "stored secret auth_token (action:core.http_request)\n",
        "sent with the stored token\n",
        "registered pack mypack",
        "Message: hi, Count: 3\n",
        "atn_",
        "execution 2: cancel",
        "Message: hi, Count: 2\n",
    ] {
        assert!(
            o.contains(expected),
            "no {expected:?} in the tour's output:\n{o}\n{e}"
        );
    }
    // The tables: a line that starts with the first word and holds the others.
    for row in [
        &["ID", "ACTION", "STATUS", "PARAMETERS"][..],
        &["2", "core.sleep", "running", r#"{"seconds":30}"#],
        &["1", "core.echo", "succeeded", r#"{"message":"hi"}"#],
        &["auth_token", "string", "yes", "Authorization"],
        &["auth_token", "action:core.http_request", "admin"],
        &["ID", "AT", "ACTOR", "KIND", "SUBJECT"],
        &["4", "admin", "secret.create", "secret auth_token"],
        &["2", "admin", "execution.cancel", "execution 2"],
        &["2", "ci", "operator"],
    ] {
        assert!(
            o.lines()
                .any(|l| l.split_whitespace().next() == Some(row[0])
                    && row[1..].iter().all(|w| l.contains(w))),
            "no line with {row:?} in the tour's output:\n{o}\n{e}"
        );
    }
    assert!(
        !o.contains("s3cret") && !e.contains("s3cret"),
        "the secret was shown"
    );
}
