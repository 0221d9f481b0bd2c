//! HTTP as clients meet it (issue 14): a request's headers must arrive within 10 s, or the
//! connection is closed; a flood of slow connections does not slow anyone else down; past
//! `--max-connections` a connection gets a 503 problem and is closed; every error is a
//! problem document, axum's own (405, a bad query string) included; the CLI does not
//! follow a redirect (its token would go along).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn addr(s: &TestServer) -> String {
    s.url.trim_start_matches("http://").to_string()
}

/// How long `GET /healthz` takes on a new connection.
fn healthz(s: &TestServer) -> Duration {
    let t = Instant::now();
    let (st, _) = s.call("GET", "/healthz", None, None);
    assert_eq!(st, 200);
    t.elapsed()
}

#[test]
fn slow_clients_are_cut_off_after_the_header_timeout_and_starve_no_one() {
    let s = TestServer::start(&["--workers", "1"]);
    let before = healthz(&s);
    // Timed from before the first connection: the server's clock starts at each accept.
    let start = Instant::now();
    // 200 clients that send their headers one byte a second (loopback only).
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let c = TcpStream::connect(addr(&s)).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
            c
        })
        .collect();
    let request =
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed_at: Vec<Option<Duration>> = vec![None; slow.len()];
    let mut worst = Duration::ZERO;
    let mut sent = 0;
    while start.elapsed() < Duration::from_secs(16) && closed_at.iter().any(Option::is_none) {
        for (i, c) in slow.iter_mut().enumerate() {
            if closed_at[i].is_some() {
                continue;
            }
            let mut buf = [0u8; 64];
            let gone = match c.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => panic!("a slow client got an answer before sending its headers"),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    false
                }
                Err(_) => true,
            };
            let gone =
                gone || (sent < request.len() && c.write_all(&request[sent..sent + 1]).is_err());
            if gone {
                closed_at[i] = Some(start.elapsed());
            }
        }
        // Never the last byte: the headers stay incomplete. Each read above waits 5 ms, so
        // a round takes about a second: a byte a second per client.
        sent = (sent + 1).min(request.len() - 1);
        worst = worst.max(healthz(&s));
    }
    let closed: Vec<Duration> = closed_at
        .iter()
        .map(|c| c.expect("a slow connection was never closed"))
        .collect();
    let first = closed.iter().min().unwrap();
    let last = closed.iter().max().unwrap();
    assert!(
        *first >= Duration::from_secs(9),
        "closed before the timeout: {first:?}"
    );
    assert!(
        *last <= Duration::from_secs(13),
        "still open after the timeout: {last:?}"
    );
    assert!(
        worst < Duration::from_secs(1),
        "/healthz took {worst:?} among slow clients (alone: {before:?})"
    );
}

#[test]
fn a_body_sent_a_byte_a_second_is_cut_off_too() {
    let s = TestServer::start(&["--workers", "1"]);
    let a = addr(&s);
    // Before any session (the console's sign-in form), and with a token (the API): each
    // declares a body of 1000 bytes and sends it a byte a second.
    let heads = [
        format!("POST /login HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n"),
        format!("POST /api/v1/executions HTTP/1.1\r\nHost: {a}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", s.token),
    ];
    let start = Instant::now();
    let mut conns: Vec<TcpStream> = heads
        .iter()
        .map(|h| {
            let mut c = TcpStream::connect(&a).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
            c.write_all(h.as_bytes()).unwrap();
            c
        })
        .collect();
    let mut ended: Vec<Option<(Duration, String)>> = vec![None; conns.len()];
    let mut worst = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(20) && ended.iter().any(Option::is_none) {
        for (i, c) in conns.iter_mut().enumerate() {
            if ended[i].is_some() {
                continue;
            }
            let mut buf = [0u8; 64];
            let answer = match c.read(&mut buf) {
                Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    None
                }
                Err(e) => Some(e.to_string()),
            };
            let answer = answer.or_else(|| c.write_all(b" ").err().map(|e| e.to_string()));
            if let Some(answer) = answer {
                ended[i] = Some((start.elapsed(), answer));
            }
        }
        worst = worst.max(healthz(&s));
        std::thread::sleep(Duration::from_millis(990));
    }
    for e in ended {
        let (at, answer) = e.expect("a connection sending its body slowly was never cut off");
        assert!(
            at >= Duration::from_secs(9),
            "cut off early ({at:?}): {answer}"
        );
        assert!(
            at <= Duration::from_secs(13),
            "cut off late ({at:?}): {answer}"
        );
        // An error answer, or the connection closed.
        assert!(
            answer.is_empty()
                || answer.starts_with("HTTP/1.1 4")
                || answer.contains("reset")
                || answer.contains("pipe"),
            "{answer}"
        );
    }
    assert!(worst < Duration::from_secs(1), "/healthz took {worst:?}");
}

#[test]
fn a_connection_past_the_cap_gets_a_503_problem_and_the_others_are_served() {
    let s = TestServer::start(&["--workers", "1", "--max-connections", "4"]);
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(addr(&s)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(addr(&s)).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    extra.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("too many open connections"), "{answer}");
    drop(held);
    // Once they are gone, everyone is served again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match try_http("GET", &format!("{}/healthz", s.url), None, None) {
            Ok((200, _)) => break,
            other => assert!(Instant::now() < deadline, "not served again: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_error_is_a_problem_document() {
    let s = TestServer::start(&["--workers", "1"]);
    for (method, path, status, detail) in [
        (
            "DELETE",
            "/api/v1/executions",
            405,
            "DELETE is not allowed on /api/v1/executions",
        ),
        (
            "GET",
            "/api/v1/executions?limit=many",
            400,
            "Failed to deserialize query string",
        ),
        (
            "GET",
            "/api/v1/executions?limit=-1",
            400,
            "Failed to deserialize query string",
        ),
        ("GET", "/api/v1/nothing", 404, "no such route"),
        (
            "GET",
            &format!("/api/v1/executions?action={}", "a".repeat(9000)),
            414,
            "the request target is 9026 bytes, at most 8192 allowed",
        ),
    ] {
        let (st, v) = s.admin(method, path, None);
        assert_eq!(st, status, "{method} {path}: {v}");
        assert_eq!(
            v["status"], status,
            "{method} {path}: not problem+json: {v}"
        );
        assert!(
            v["detail"].as_str().unwrap().starts_with(detail),
            "{method} {path}: {v}"
        );
    }
    // Headers too many or too large: 431, a problem too.
    for (count, size) in [(120, 10), (3, 30_000)] {
        let mut req = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for i in 0..count {
            req.push_str(&format!("X-Filler-{i}: {}\r\n", "v".repeat(size)));
        }
        req.push_str("\r\n");
        let mut c = TcpStream::connect(addr(&s)).unwrap();
        c.write_all(req.as_bytes()).unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        assert!(
            answer.contains("application/problem+json") && answer.contains("\"status\":431"),
            "{answer}"
        );
    }
    // An unknown action: the nearest registered one is suggested.
    let (st, v) = s.admin("GET", "/api/v1/actions/core.ecko", None);
    assert_eq!(st, 404, "{v}");
    assert_eq!(
        v["detail"],
        "no action `core.ecko`; did you mean `core.echo`?"
    );
    // A token name that cannot be one is refused, not replaced.
    for name in [json!(""), json!("x".repeat(101)), json!(7)] {
        let (st, v) = s.admin(
            "POST",
            "/api/v1/tokens",
            Some(&json!({"role": "viewer", "name": name})),
        );
        assert_eq!(st, 422, "{v}");
        assert_eq!(
            v["errors"][0],
            "`name` must be 1 to 100 letters, digits, spaces or `_.@:-`, not starting with a space"
        );
    }
}

#[test]
fn the_cli_treats_a_redirect_as_an_error_and_does_not_follow_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/steal\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let out = std::process::Command::new(bin())
        .args(["execution", "list"])
        .env("ATTUNE_URL", format!("http://127.0.0.1:{port}"))
        .env("ATTUNE_TOKEN", "atn_test")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("answered with a redirect (HTTP 302 to http://127.0.0.1:9/steal), which is not followed"),
        "{}",
        stderr(&out)
    );
}
