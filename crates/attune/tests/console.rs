//! The web console (issue 17) end to end: the real `attune server`, driven in a real
//! headless Chromium (chromedriver), and over plain HTTP for the cookie, CSRF and role
//! checks. Screenshots of the main pages at 1280 and 400 px go to
//! `target/console-screenshots/`.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "console/webdriver.rs"]
mod webdriver;

use common::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use webdriver::Browser;

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("console-screenshots")
}

/// A pack whose action takes a secret and prints it (masked to `***` in its output).
fn secret_pack(root: &std::path::Path) -> PathBuf {
    one_action_pack(
        root,
        "consoletest",
        "secret_echo",
        "description: Print a secret (masked) and a count.\nrunner_type: shell\n\
         parameter_format: dotenv\nparameters:\n  token:\n    type: string\n    secret: true\n    required: true\n\
         \x20 count:\n    type: integer\n    minimum: 1\n    default: 1\n\
         \x20 mode:\n    type: string\n    enum: [fast, slow]\n    default: fast\n\
         \x20 verbose:\n    type: boolean\n    default: false\n\
         \x20 extra:\n    type: object\n    default: {}\n",
        "secret_echo.sh",
        "#!/usr/bin/env bash\nset -eu\n. /dev/stdin\nprintf 'the token is %s\\n' \"$TOKEN\"\nprintf 'count %s mode %s\\n' \"$COUNT\" \"$MODE\"\n",
    )
}

fn sign_in(b: &Browser, url: &str, token: &str) {
    b.goto(&format!("{url}/"));
    b.wait_for(10, "the sign-in page", |b| b.url().ends_with("/login"));
    let label = b.el("label[for=token]");
    assert_eq!(b.text(&label), "API token");
    b.fill("#token", token);
    let button = b.el("form.login button[type=submit]");
    assert_eq!(b.text(&button), "Sign in");
    b.click(&button);
    b.wait_for(10, "the executions page", |b| {
        b.url().ends_with("/executions")
    });
}

fn click_button(b: &Browser, label: &str) {
    let found = b
        .all("button")
        .into_iter()
        .find(|e| b.text(e) == label)
        .unwrap_or_else(|| panic!("no `{label}` button on {}", b.url()));
    b.click(&found);
}

fn has_button(b: &Browser, label: &str) -> bool {
    b.all("button").iter().any(|e| b.text(e) == label)
}

/// The id of the execution page the browser is on, once it is there.
fn on_execution(b: &Browser) -> i64 {
    b.wait_for(15, "an execution page", |b| {
        b.url()
            .rsplit_once("/executions/")
            .is_some_and(|(_, id)| id.parse::<i64>().is_ok())
    });
    b.url().rsplit_once('/').unwrap().1.parse().unwrap()
}

/// Waits until the execution page shows `status`; for a final one, until the page has been
/// rendered again as final (its live parts gone), so nothing reloads it afterwards.
fn wait_status(b: &Browser, status: &str) {
    let is_final = !["requested", "scheduled", "running", "canceling"].contains(&status);
    b.wait_for(30, &format!("status {status}"), |b| {
        let html = b.source();
        html.contains(&format!("class=\"status status-{status}\""))
            && (!is_final || !html.contains("data-live-status"))
    });
}

/// Every response the page loaded (itself, its script and style, what the script
/// fetched), fetched again in the page with its cookie, concatenated.
fn page_and_responses(b: &Browser) -> String {
    let v = b.exec_async(
        "const done = arguments[arguments.length - 1];
         const urls = [location.href].concat(performance.getEntriesByType('resource').map(e => e.name));
         // A followed output stream ends when the execution has: it has here.
         Promise.all(urls.map(u => fetch(u, {credentials: 'same-origin'}).then(r => r.text()).catch(e => 'ERR ' + e)))
           .then(texts => done(urls.join('\\n') + '\\n' + texts.join('\\n')));",
        json!([]),
    );
    v.as_str().unwrap().to_string()
}

#[test]
fn console_in_a_browser() {
    let s = TestServer::start(&[]);
    let packs = tempfile::tempdir().unwrap();
    let (code, v) = s.register(&secret_pack(packs.path()));
    assert_eq!(code, 201, "{v}");
    let shots = screenshots();
    let b = Browser::start();
    let url = s.url.clone();

    // Signed out: every page leads to the sign-in page.
    b.goto(&format!("{url}/executions"));
    b.wait_for(10, "the sign-in page", |b| b.url().ends_with("/login"));
    b.screenshot(&shots, "login-1280");
    b.width(400, 800);
    b.screenshot(&shots, "login-400");
    b.width(1280, 900);
    sign_in(&b, &url, &s.token);
    for nav in [
        "Executions",
        "Actions",
        "Packs",
        "Secrets",
        "Tokens",
        "Workers",
        "Audit",
    ] {
        assert!(
            b.all("nav a").iter().any(|e| b.text(e) == nav),
            "admin sees {nav}"
        );
    }

    // core.echo from its form: the new execution's page shows its output.
    b.goto(&format!("{url}/actions/core.echo"));
    assert!(b.source().contains("Print a message on stdout."));
    b.fill("#p-message", "hello from the console");
    click_button(&b, "Run");
    let echo_id = on_execution(&b);
    b.wait_for(30, "the echoed message", |b| {
        b.text_of("#output")
            .is_some_and(|t| t.contains("hello from the console"))
    });
    wait_status(&b, "succeeded");
    assert!(has_button(&b, "Rerun") && !has_button(&b, "Cancel"));
    b.screenshot(&shots, "execution-1280");
    b.width(400, 800);
    b.screenshot(&shots, "execution-400");
    b.width(1280, 900);

    // Rerun: a new execution of the same request.
    click_button(&b, "Rerun");
    b.wait_for(15, "the rerun's page", |b| {
        !b.url().ends_with(&format!("/executions/{echo_id}"))
    });
    let rerun_id = on_execution(&b);
    assert!(rerun_id > echo_id);
    b.wait_for(30, "the rerun's output", |b| {
        b.text_of("#output")
            .is_some_and(|t| t.contains("hello from the console"))
    });

    // A secret parameter: a 422 first (next to `count`, the secret not sent back), then a
    // run; the secret is nowhere in the pages or anything they load.
    let secret = format!("s3cret-{}", rand_suffix());
    b.goto(&format!("{url}/actions/consoletest.secret_echo"));
    assert_eq!(
        b.exec("return document.getElementById('p-token').type", json!([])),
        json!("password")
    );
    assert_eq!(
        b.exec(
            "return document.getElementById('p-mode').tagName",
            json!([])
        ),
        json!("SELECT")
    );
    assert_eq!(
        b.exec(
            "return document.getElementById('p-verbose').type",
            json!([])
        ),
        json!("checkbox")
    );
    assert_eq!(
        b.exec(
            "return document.getElementById('p-extra').tagName",
            json!([])
        ),
        json!("TEXTAREA")
    );
    assert_eq!(
        b.exec("return document.getElementById('p-count').value", json!([])),
        json!("1"),
        "defaults are filled"
    );
    assert!(b.text(&b.el("label[for=p-token]")).contains("required"));
    b.fill("#p-token", &secret);
    b.fill("#p-count", "0");
    click_button(&b, "Run");
    b.wait_for(15, "the form's errors", |b| {
        !b.all("#p-count-error").is_empty()
    });
    let err = b.text(&b.el("#p-count-error"));
    assert!(err.contains("count"), "{err}");
    assert!(b.all("#p-token-error").is_empty());
    assert!(b.all("#p-mode-error").is_empty());
    assert_eq!(
        b.exec(
            "return document.getElementById('p-count').getAttribute('aria-invalid')",
            json!([])
        ),
        json!("true")
    );
    let html = b.source();
    assert!(!html.contains(&secret), "the secret came back in the form");
    assert_eq!(
        b.exec("return document.getElementById('p-token').value", json!([])),
        json!("")
    );
    b.screenshot(&shots, "run-form-422-1280");
    b.width(400, 800);
    b.screenshot(&shots, "run-form-422-400");
    b.width(1280, 900);
    b.fill("#p-token", &secret);
    b.fill("#p-count", "2");
    // Env var rows: one more on demand.
    assert_eq!(b.all(".env-row").len(), 3);
    click_button(&b, "Add a variable");
    assert_eq!(b.all(".env-row").len(), 4);
    assert_eq!(b.text(&b.el("label[for=env-name-3]")), "Variable 4 name");
    b.fill("#env-name-3", "GREETING");
    b.fill("#env-value-3", "hi");
    click_button(&b, "Run");
    let secret_id = on_execution(&b);
    wait_status(&b, "succeeded");
    let out = b.text(&b.el("#output"));
    assert!(out.contains("the token is ***"), "{out}");
    assert!(out.contains("count 2 mode fast"), "{out}");
    assert!(b.text(&b.el("#parameters")).contains("********"));
    let everything = page_and_responses(&b);
    assert!(
        everything.contains("the token is ***"),
        "the responses were read"
    );
    assert!(!everything.contains(&secret), "the secret in a response");
    b.goto(&format!("{url}/executions"));
    assert!(!page_and_responses(&b).contains(&secret));
    let (_, rec) = s.admin("GET", &format!("/api/v1/executions/{secret_id}"), None);
    assert_eq!(rec["parameters"]["token"], json!("********"));
    assert_eq!(rec["env_vars"]["GREETING"], json!("hi"));
    assert!(!s.log().contains(&secret), "the secret in the server's log");

    // Cancel a core.sleep while it runs.
    b.goto(&format!("{url}/actions/core.sleep"));
    b.fill("#p-seconds", "60");
    click_button(&b, "Run");
    let sleep_id = on_execution(&b);
    // The page's status follows the execution without a reload.
    b.exec("window.__stay = 7; return null", json!([]));
    wait_status(&b, "running");
    assert_eq!(b.exec("return window.__stay", json!([])), json!(7));
    assert!(!has_button(&b, "Rerun"));
    click_button(&b, "Cancel");
    wait_status(&b, "canceled");
    assert!(has_button(&b, "Rerun") && !has_button(&b, "Cancel"));
    let (_, rec) = s.admin("GET", &format!("/api/v1/executions/{sleep_id}"), None);
    assert_eq!(rec["status"], json!("canceled"));

    // The list changes status without a reload.
    let id = s.submit(&json!({"action_ref": "core.sleep", "parameters": {"seconds": 2}}));
    b.goto(&format!("{url}/executions?action=core.sleep"));
    b.exec("window.__stay = 42; return null", json!([]));
    let row = format!("href=\"/executions/{id}\"");
    b.wait_for(30, "the sleep's row to say succeeded", |b| {
        let html = b.source();
        html.split("<tr>")
            .any(|r| r.contains(&row) && r.contains("status-succeeded"))
    });
    assert_eq!(
        b.exec("return window.__stay", json!([])),
        json!(42),
        "no reload"
    );
    // Filters: by status.
    b.goto(&format!("{url}/executions?status=canceled"));
    let html = b.source();
    assert!(html.contains(&format!("href=\"/executions/{sleep_id}\"")));
    assert!(!html.contains(&format!("href=\"/executions/{echo_id}\"")));

    // The other pages, at both widths.
    s.admin(
        "PUT",
        "/api/v1/secrets/db_password",
        Some(&json!({"value": "hunter2-not-shown", "scope": "pack:consoletest"})),
    );
    for (name, path) in [
        ("executions", "/executions"),
        ("actions", "/actions"),
        ("action", "/actions/core.http_request"),
        ("packs", "/packs"),
        ("secrets", "/secrets"),
        ("tokens", "/tokens"),
        ("workers", "/workers"),
        ("audit", "/audit"),
    ] {
        b.goto(&format!("{url}{path}"));
        let html = b.source();
        assert!(!html.contains("hunter2-not-shown"), "{path}");
        assert!(html.contains("<h1>"), "{path}");
        b.screenshot(&shots, &format!("{name}-1280"));
        b.width(400, 800);
        b.screenshot(&shots, &format!("{name}-400"));
        b.width(1280, 900);
    }
    // Search the actions.
    b.goto(&format!("{url}/actions"));
    b.fill("#q", "sleep");
    click_button(&b, "Search");
    b.wait_for(10, "the search", |b| b.url().contains("q=sleep"));
    let html = b.source();
    assert!(html.contains("core.sleep") && !html.contains("href=\"/actions/core.echo\""));

    // Secrets: set (write-only) and delete from the page.
    b.goto(&format!("{url}/secrets"));
    b.fill("#secret-name", "console_key");
    b.fill("#secret-value", "value-typed-in-the-console");
    click_button(&b, "Set secret");
    b.wait_for(10, "the secret in the list", |b| {
        b.source().contains("console_key")
    });
    assert!(!b.source().contains("value-typed-in-the-console"));
    let del = b.el("button[aria-label='Delete secret console_key (global)']");
    b.click(&del);
    b.wait_for(10, "the secret gone", |b| {
        !b.source().contains("console_key")
    });

    // Packs: one registered from a tar of its directory, then removed.
    let up = one_action_pack(
        packs.path(),
        "uploaded",
        "hello",
        "runner_type: shell\n",
        "hello.sh",
        "#!/usr/bin/env bash\necho hello\n",
    );
    let tarball = packs.path().join("uploaded.tar");
    let ok = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(up.parent().unwrap())
        .arg("uploaded")
        .status()
        .unwrap();
    assert!(ok.success());
    b.goto(&format!("{url}/packs"));
    b.send("#bundle", tarball.to_str().unwrap());
    click_button(&b, "Register");
    b.wait_for(15, "the uploaded pack", |b| {
        b.source().contains("href=\"/actions/uploaded.hello\"")
    });
    let (code, _) = s.admin("GET", "/api/v1/actions/uploaded.hello", None);
    assert_eq!(code, 200);
    b.click(&b.el("button[aria-label='Remove pack uploaded']"));
    b.wait_for(15, "the pack removed", |b| {
        !b.source().contains("uploaded.hello")
    });
    // Not a pack: the API's 422, on the page.
    let junk = packs.path().join("junk.bin");
    std::fs::write(&junk, b"not a bundle").unwrap();
    b.send("#bundle", junk.to_str().unwrap());
    click_button(&b, "Register");
    b.wait_for(15, "the refusal", |b| b.source().contains("invalid pack"));

    // Tokens: one made here is shown once; revoked here.
    b.goto(&format!("{url}/tokens"));
    b.fill("#token-name", "made-in-console");
    click_button(&b, "Create token");
    b.wait_for(10, "the new token", |b| !b.all("#new-token").is_empty());
    let shown = b
        .exec(
            "return document.getElementById('new-token').value",
            json!([]),
        )
        .as_str()
        .unwrap()
        .to_string();
    assert!(shown.starts_with("atn_"));
    b.goto(&format!("{url}/tokens"));
    assert!(!b.source().contains(&shown), "shown once only");
    b.click(&b.el("button[aria-label='Revoke token made-in-console']"));
    b.wait_for(10, "the revoke", |b| {
        b.all("button[aria-label='Revoke token made-in-console']")
            .is_empty()
    });
    let (code, _) = http("GET", &format!("{url}/api/v1/actions"), Some(&shown), None);
    assert_eq!(code, 401, "the revoked token no longer works");

    // A cross-site form posting to the console is refused (no execution is made).
    let forged = format!(
        "data:text/html,<form method=post action='{url}/actions/core.echo/run'>\
         <input name='p.message' value='forged-post'></form>\
         <script>document.forms[0].submit()</script>"
    );
    b.goto(&forged);
    b.wait_for(10, "the forged post's answer", |b| {
        b.url().starts_with(&url)
    });
    assert!(b.source().contains("Forbidden"), "{}", b.source());
    let all = s.all_executions("action=core.echo");
    assert!(all
        .iter()
        .all(|e| e["parameters"]["message"] != json!("forged-post")));

    // Sign out: the session ends on the server.
    b.goto(&format!("{url}/executions"));
    click_button(&b, "Sign out");
    b.wait_for(10, "the sign-in page", |b| b.url().ends_with("/login"));
    b.goto(&format!("{url}/executions"));
    b.wait_for(10, "the sign-in page again", |b| {
        b.url().ends_with("/login")
    });

    // A viewer sees no Run or Cancel, and a POST anyway gets 403.
    let viewer = s.token_for("viewer");
    let running = s.submit(&json!({"action_ref": "core.sleep", "parameters": {"seconds": 30}}));
    // By keyboard alone: Tab to the skip link, then to the token field, type, Enter.
    b.goto(&format!("{url}/login"));
    b.press("\u{E004}");
    assert_eq!(b.focused(), "Skip to content");
    b.press("\u{E004}");
    b.press("\u{E004}");
    assert_eq!(
        b.exec("return document.activeElement.id", json!([])),
        json!("token")
    );
    b.send("#token", &viewer);
    b.press("\u{E007}");
    b.wait_for(10, "the executions page", |b| {
        b.url().ends_with("/executions")
    });
    for hidden in ["Secrets", "Tokens", "Audit"] {
        assert!(
            !b.all("nav a").iter().any(|e| b.text(e) == hidden),
            "a viewer does not see {hidden}"
        );
    }
    b.goto(&format!("{url}/actions/core.echo"));
    assert!(!has_button(&b, "Run"));
    assert!(b.all("form.run").is_empty());
    b.goto(&format!("{url}/executions/{running}"));
    assert!(!has_button(&b, "Cancel") && !has_button(&b, "Rerun"));
    b.screenshot(&shots, "execution-viewer-1280");
    let statuses = b.exec_async(
        "const done = arguments[arguments.length - 1];
         const csrf = document.querySelector('input[name=csrf]').value;
         const post = (path, body) => fetch(path, {method: 'POST', credentials: 'same-origin',
             headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: body}).then(r => r.status);
         Promise.all([
           post('/actions/core.echo/run', 'csrf=' + csrf + '&p.message=viewer'),
           post('/executions/' + arguments[0] + '/cancel', 'csrf=' + csrf),
           post('/secrets', 'csrf=' + csrf + '&name=x&value=y'),
         ]).then(done);",
        json!([running]),
    );
    assert_eq!(statuses, json!([403, 403, 403]));
    let (_, rec) = s.admin("GET", &format!("/api/v1/executions/{running}"), None);
    assert_ne!(rec["status"], json!("canceled"));
    s.admin(
        "POST",
        &format!("/api/v1/executions/{running}/cancel"),
        None,
    );
}

/// A request with ureq that keeps the answer's headers and does not follow redirects.
/// The status of the answer to a POST of `len` bytes of which only the headers are sent
/// (the server must answer without the body; a client still writing it could otherwise
/// see the connection closed under it).
fn headers_only(url: &str, path: &str, len: usize) -> u16 {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {len}\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head).into_owned();
    head.strip_prefix("HTTP/1.1 ")
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {head}"))
}

fn raw(
    method: &str,
    url: &str,
    cookie: Option<&str>,
    form: Option<&str>,
    extra: &[(&str, &str)],
) -> (u16, Vec<String>, String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    if form.is_some() {
        req = req.header("Content-Type", "application/x-www-form-urlencoded");
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let req = req
        .body(form.unwrap_or_default().as_bytes().to_vec())
        .unwrap();
    let mut resp = agent.run(req).unwrap();
    let cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    (status, cookies, location, body)
}

fn login(url: &str, token: &str) -> String {
    let (status, cookies, location, _) = raw(
        "POST",
        &format!("{url}/login"),
        None,
        Some(&format!("token={token}")),
        &[],
    );
    assert_eq!((status, location.as_str()), (303, "/executions"));
    let c = cookies
        .iter()
        .find(|c| c.starts_with("attune_session="))
        .unwrap();
    c.split(';').next().unwrap().to_string()
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").unwrap() + 19;
    html[at..at + 64].to_string()
}

#[test]
fn console_over_plain_http() {
    let s = TestServer::start(&[]);
    let url = s.url.clone();

    // The session cookie: HttpOnly, SameSite=Strict, Path=/, and never the token.
    let (_, cookies, _, _) = raw(
        "POST",
        &format!("{url}/login"),
        None,
        Some(&format!("token={}", s.token)),
        &[],
    );
    let c = cookies
        .iter()
        .find(|c| c.starts_with("attune_session="))
        .unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(c.contains(flag), "{c}");
    }
    assert!(!c.contains(&s.token) && !c.contains("atn_"), "{c}");
    // A wrong token: no session.
    let (status, cookies, _, body) = raw(
        "POST",
        &format!("{url}/login"),
        None,
        Some("token=atn_nope"),
        &[],
    );
    assert_eq!(status, 401);
    assert!(cookies.is_empty());
    assert!(body.contains("unknown or revoked"));

    // A sign-in form is small; other posts need a session before their body is read.
    let big = format!("token={}", "a".repeat(100_000));
    let (status, _, _, _) = raw("POST", &format!("{url}/login"), None, Some(&big), &[]);
    assert_eq!(status, 413);
    // Only the headers of a 1 MiB upload are sent: the answer comes without the body.
    assert_eq!(headers_only(&url, "/packs", 1 << 20), 403);

    let admin = login(&url, &s.token);
    let (status, _, _, page) = raw(
        "GET",
        &format!("{url}/actions/core.echo"),
        Some(&admin),
        None,
        &[],
    );
    assert_eq!(status, 200);
    assert!(!page.contains(&s.token), "the token is never in a page");
    let csrf = csrf_of(&page);
    let run = format!("{url}/actions/core.echo/run");
    // Without the CSRF token, with a wrong one, or from another origin: 403, nothing runs.
    for (form, extra) in [
        ("p.message=no-csrf".to_string(), vec![]),
        (
            format!("csrf={}&p.message=wrong-csrf", "0".repeat(64)),
            vec![],
        ),
        (
            format!("csrf={csrf}&p.message=other-origin"),
            vec![("Origin", "http://evil.example")],
        ),
        (
            format!("csrf={csrf}&p.message=cross-site"),
            vec![("Sec-Fetch-Site", "cross-site")],
        ),
    ] {
        let (status, _, _, body) = raw("POST", &run, Some(&admin), Some(&form), &extra);
        assert_eq!(status, 403, "{form}: {body}");
        assert!(body.contains("<html"), "an HTML page");
    }
    assert!(s.all_executions("action=core.echo").is_empty());
    // With it: 303 to the new execution.
    let (status, _, location, _) = raw(
        "POST",
        &run,
        Some(&admin),
        Some(&format!("csrf={csrf}&p.message=ok")),
        &[("Origin", url.as_str())],
    );
    assert_eq!(status, 303);
    assert!(location.starts_with("/executions/"), "{location}");
    // A 422 names the field; the form comes back as HTML.
    let (status, _, _, body) = raw(
        "POST",
        &format!("{url}/actions/core.sleep/run"),
        Some(&admin),
        Some(&format!("csrf={csrf}&p.seconds=-5")),
        &[],
    );
    assert_eq!(status, 422);
    assert!(body.contains("id=\"p-seconds-error\""), "{body}");

    // A viewer: no Run form, and 403 for what it posts anyway.
    let viewer = login(&url, &s.token_for("viewer"));
    let (_, _, _, page) = raw(
        "GET",
        &format!("{url}/actions/core.echo"),
        Some(&viewer),
        None,
        &[],
    );
    assert!(!page.contains("form class=\"run\""));
    assert!(!page.contains(">Run<"));
    let vcsrf = csrf_of(&page);
    let (status, _, _, _) = raw(
        "POST",
        &run,
        Some(&viewer),
        Some(&format!("csrf={vcsrf}&p.message=viewer")),
        &[],
    );
    assert_eq!(status, 403);
    for path in ["/tokens", "/audit", "/secrets"] {
        let (status, _, _, _) = raw("GET", &format!("{url}{path}"), Some(&viewer), None, &[]);
        assert_eq!(status, 403, "{path}");
    }
    // Not signed in: pages lead to the sign-in page; POSTs are refused.
    let (status, _, location, _) = raw("GET", &format!("{url}/executions"), None, None, &[]);
    assert_eq!((status, location.as_str()), (303, "/login"));
    let (status, _, _, _) = raw("POST", &run, None, Some("p.message=x"), &[]);
    assert_eq!(status, 403);

    // Sign-out ends the session on the server: the old cookie no longer works.
    let (status, cookies, _, _) = raw(
        "POST",
        &format!("{url}/logout"),
        Some(&admin),
        Some(&format!("csrf={csrf}")),
        &[],
    );
    assert_eq!(status, 303);
    assert!(cookies.iter().any(|c| c.contains("Max-Age=0")));
    let (status, _, location, _) =
        raw("GET", &format!("{url}/executions"), Some(&admin), None, &[]);
    assert_eq!((status, location.as_str()), (303, "/login"));

    // The API is unchanged: unknown API routes are problems, and the console's routes are
    // not in the OpenAPI document.
    let (status, v) = s.admin("GET", "/api/v1/nope", None);
    assert_eq!(status, 404);
    assert_eq!(v["status"], json!(404));
    let (_, doc) = s.admin("GET", "/api/v1/openapi.json", None);
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert!(paths
        .iter()
        .all(|p| !p.starts_with("/executions") && *p != "/login" && *p != "/"));
    let _: Value = doc;
}
