//! What bad input gets (DESIGN.md §7): one clear line on stderr, a non-zero exit code,
//! never a panic, never a secret in the message, and nothing run.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;

const SECRET: &str = "s3cret-Value-that-must-not-leak";

struct Case {
    name: &'static str,
    /// (file under actions/, content, executable)
    files: Vec<(&'static str, String, bool)>,
    args: Vec<String>,
    /// Parameters written to a --params-file, if any.
    params: Option<serde_json::Value>,
    expect: &'static str,
}

fn meta(extra: &str) -> String {
    format!("name: act\nrunner_type: shell\nentry_point: act.sh\n{extra}")
}

fn script() -> (&'static str, String, bool) {
    ("act.sh", "#!/bin/bash\ntouch \"$HOME/ran\"\n".into(), true)
}

fn cases() -> Vec<Case> {
    let a = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        Case { name: "malformed yaml", files: vec![("act.yaml", "name: act\n  runner_type: [shell\n".into(), false), script()], args: a(&["p.act"]), params: None, expect: "malformed YAML" },
        Case { name: "unknown key", files: vec![("act.yaml", meta("colour: blue"), false), script()], args: a(&["p.act"]), params: None, expect: "unknown key `colour`; allowed keys: name, ref" },
        Case { name: "wrong type", files: vec![("act.yaml", meta("timeout: soon"), false), script()], args: a(&["p.act"]), params: None, expect: "key `timeout`: expected a whole number of seconds" },
        Case { name: "bad runner", files: vec![("act.yaml", "name: act\nrunner_type: ruby\nentry_point: act.sh\n".into(), false), script()], args: a(&["p.act"]), params: None, expect: "`ruby` is not supported; allowed values: shell, python, node, native" },
        Case { name: "delivery env", files: vec![("act.yaml", meta("parameter_delivery: env"), false), script()], args: a(&["p.act"]), params: None, expect: "parameters never go into the environment" },
        Case { name: "bad format", files: vec![("act.yaml", meta("parameter_format: xml"), false), script()], args: a(&["p.act"]), params: None, expect: "allowed values: json, dotenv, yaml" },
        Case { name: "entry point escapes", files: vec![("act.yaml", "name: act\nrunner_type: shell\nentry_point: ../../outside.sh\n".into(), false)], args: a(&["p.act"]), params: None, expect: "outside the pack" },
        Case { name: "unknown action", files: vec![("act.yaml", meta(""), false), script()], args: a(&["p.akt"]), params: None, expect: "action `p.akt` not found in pack" },
        Case { name: "unknown action hint", files: vec![("act.yaml", meta(""), false), script()], args: a(&["p.akt"]), params: None, expect: "; did you mean `p.act`? (it has: p.act)" },
        Case { name: "entry point missing", files: vec![("act.yaml", meta(""), false)], args: a(&["p.act"]), params: None, expect: "key `entry_point`: `act.sh` cannot be opened" },
        Case { name: "native not executable", files: vec![("act.yaml", "name: act\nrunner_type: native\nentry_point: act.sh\n".into(), false), ("act.sh", "#!/bin/sh\n".into(), false)], args: a(&["p.act"]), params: None, expect: "is not executable" },
        Case { name: "dotenv collision", files: vec![("act.yaml", meta("parameter_format: dotenv\nparameters:\n  a-b: {type: string}\n  a_b: {type: string}"), false), script()], args: a(&["p.act"]), params: None, expect: "both become the dotenv key A_B" },
        Case { name: "dotenv shell variable", files: vec![("act.yaml", meta("parameter_format: dotenv\nparameters:\n  path: {type: string}"), false), script()], args: a(&["p.act"]), params: None, expect: "would replace the shell's own PATH" },
        Case { name: "ref mismatch", files: vec![("act.yaml", meta("ref: other.act"), false), script()], args: a(&["p.act"]), params: None, expect: "it must be `p.act`" },
        Case { name: "bad schema", files: vec![("act.yaml", meta("parameters:\n  n: {type: integr}"), false), script()], args: a(&["p.act"]), params: None, expect: "not a valid JSON Schema" },
        Case { name: "invalid parameters, all listed", files: vec![("act.yaml", meta("parameters:\n  n: {type: integer, maximum: 5}\n  m: {type: string, required: true}\n  pw: {type: string, secret: true, minLength: 100}"), false), script()], args: a(&["p.act", "n=9", "extra=1"]), params: Some(json!({"pw": SECRET})), expect: "invalid parameters for p.act" },
        Case { name: "uncoercible value", files: vec![("act.yaml", meta("parameters:\n  n: {type: integer}"), false), script()], args: a(&["p.act", "n=abc"]), params: None, expect: "parameter `n`: `abc` is not an integer" },
        Case { name: "secret on argv", files: vec![("act.yaml", meta("parameters:\n  pw: {type: string, secret: true}"), false), script()], args: vec!["p.act".into(), format!("pw={SECRET}")], params: None, expect: "is secret: do not put it on the command line" },
        Case { name: "NUL in dotenv value", files: vec![("act.yaml", meta("parameter_format: dotenv\nparameters:\n  pw: {type: string, secret: true}"), false), script()], args: a(&["p.act"]), params: Some(json!({"pw": format!("{SECRET}\u{0}x")})), expect: "contains a NUL byte" },
        Case { name: "env LD_PRELOAD", files: vec![("act.yaml", meta(""), false), script()], args: a(&["p.act", "--env", "LD_PRELOAD=/tmp/x.so"]), params: None, expect: "env var `LD_PRELOAD` is not allowed" },
        Case { name: "env ATTUNE_", files: vec![("act.yaml", meta(""), false), script()], args: a(&["p.act", "--env", "ATTUNE_EXECUTION_ID=1"]), params: None, expect: "ATTUNE_ prefix is reserved" },
        Case { name: "env bad name", files: vec![("act.yaml", meta(""), false), script()], args: a(&["p.act", "--env", "1BAD=x"]), params: None, expect: "env var name `1BAD` is invalid" },
        Case { name: "env BASH_ENV", files: vec![("act.yaml", meta(""), false), script()], args: a(&["p.act", "--env", "BASH_ENV=/tmp/x"]), params: None, expect: "env var `BASH_ENV` is not allowed" },
        Case { name: "env PATH", files: vec![("act.yaml", meta(""), false), script()], args: a(&["p.act", "--env", "PATH=/tmp/evil:/usr/bin:/bin"]), params: None, expect: "env var `PATH` is not allowed: Attune sets PATH itself" },
        Case { name: "env HOME", files: vec![("act.yaml", meta(""), false), script()], args: a(&["p.act", "--env", "HOME=/tmp/evil"]), params: None, expect: "env var `HOME` is not allowed: Attune sets HOME itself" },
        Case { name: "env LANG", files: vec![("act.yaml", meta(""), false), script()], args: a(&["p.act", "--env", "LANG=C"]), params: None, expect: "env var `LANG` is not allowed" },
        Case { name: "env TMPDIR", files: vec![("act.yaml", meta(""), false), script()], args: a(&["p.act", "--env", "TMPDIR=/tmp"]), params: None, expect: "env var `TMPDIR` is not allowed" },
        Case { name: "env https_proxy", files: vec![("act.yaml", meta(""), false), script()], args: a(&["p.act", "--env", "https_proxy=http://127.0.0.1:3128"]), params: None, expect: "env var `https_proxy` is not allowed: it would redirect the action's network traffic" },
        Case { name: "env ALL_PROXY", files: vec![("act.yaml", meta(""), false), script()], args: a(&["p.act", "--env", "ALL_PROXY=socks5://127.0.0.1:1080"]), params: None, expect: "env var `ALL_PROXY` is not allowed" },
        Case { name: "env SSL_CERT_FILE", files: vec![("act.yaml", meta(""), false), script()], args: a(&["p.act", "--env", "SSL_CERT_FILE=/tmp/ca.pem"]), params: None, expect: "env var `SSL_CERT_FILE` is not allowed: it would redirect the action's network traffic or what it trusts" },
        Case { name: "env GIT_SSL_NO_VERIFY", files: vec![("act.yaml", meta(""), false), script()], args: a(&["p.act", "--env", "GIT_SSL_NO_VERIFY=1"]), params: None, expect: "env var `GIT_SSL_NO_VERIFY` is not allowed" },
        Case { name: "missing interpreter", files: vec![("act.yaml", meta(""), false), script()], args: a(&["p.act", "--interpreter", "shell=/nonexistent/bash"]), params: None, expect: "interpreter `/nonexistent/bash` does not exist or is not executable" },
        Case { name: "interpreter not in PATH", files: vec![("act.yaml", "name: act\nrunner_type: node\nentry_point: act.sh\n".into(), false), script()], args: a(&["p.act", "--interpreter", "node=no-such-node-binary"]), params: None, expect: "interpreter `no-such-node-binary` not found in PATH" },
        Case { name: "unknown action", files: vec![("act.yaml", meta(""), false), script()], args: a(&["p.nope"]), params: None, expect: "action `p.nope` not found in pack" },
        Case { name: "unknown pack", files: vec![], args: a(&["nopack.act"]), params: None, expect: "pack `nopack` not found" },
        Case { name: "bad ref", files: vec![], args: a(&["Not-A-Ref"]), params: None, expect: "is not an action ref" },
        Case { name: "timeout above the action's", files: vec![("act.yaml", meta("timeout: 10"), false), script()], args: a(&["p.act", "--timeout", "11"]), params: None, expect: "exceeds the action's limit of 10s" },
        Case { name: "disabled action", files: vec![("act.yaml", meta("enabled: false"), false), script()], args: a(&["p.act"]), params: None, expect: "action `p.act` is disabled" },
        Case { name: "params file not a mapping", files: vec![("act.yaml", meta(""), false), script()], args: a(&["p.act"]), params: Some(json!([1, 2])), expect: "expected a mapping of parameter names" },
        Case { name: "no key=value", files: vec![("act.yaml", meta(""), false), script()], args: a(&["p.act", "novalue"]), params: None, expect: "is not of the form key=value" },
    ]
}

#[test]
fn every_bad_input_gets_one_clear_line_and_a_non_zero_exit() {
    let mut failures = Vec::new();
    for case in cases() {
        let p = TestPack::new("p");
        for (rel, content, exec) in &case.files {
            p.file(rel, content, *exec);
        }
        std::fs::write(
            p.tmp.path().join("outside.sh"),
            "#!/bin/bash\ntouch \"$HOME/ran\"\n",
        )
        .unwrap();
        let mut args: Vec<String> = case.args.clone();
        if let Some(v) = &case.params {
            args.push("--params-file".into());
            args.push(p.params_file(v).to_string_lossy().into_owned());
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let home = p.path("home");
        std::fs::create_dir_all(&home).unwrap();
        let out = p.cmd(&argv).env("HOME", &home).output().unwrap();
        let err = stderr(&out);
        let code = out.status.code();
        let problems: Vec<String> = [
            (code == Some(0) || code.is_none() || code == Some(101))
                .then(|| format!("exit code {code:?}")),
            (err.lines().count() != 1).then(|| "not exactly one line".to_string()),
            (!err.starts_with("attune: error: ")).then(|| "no `attune: error:` prefix".to_string()),
            (!err.contains(case.expect)).then(|| format!("does not contain {:?}", case.expect)),
            err.contains(SECRET)
                .then(|| "contains the secret".to_string()),
            err.contains("panicked").then(|| "panicked".to_string()),
            home.join("ran")
                .exists()
                .then(|| "the action ran".to_string()),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n    stderr: {err}",
                case.name,
                problems.join(", ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_violation_is_listed_and_secrets_are_hidden() {
    let p = TestPack::new("p");
    p.file("act.yaml", &meta("parameters:\n  n: {type: integer, maximum: 5}\n  m: {type: string, required: true}\n  pw: {type: string, secret: true, minLength: 100}"), false);
    let (rel, content, exec) = script();
    p.file(rel, &content, exec);
    let file = p.params_file(&json!({ "pw": SECRET }));
    let out = p.run(&[
        "p.act",
        "n=9",
        "extra=1",
        "--params-file",
        file.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    for want in [
        "`n` must be at most 5, got 9",
        "parameter `m` is required",
        "unknown parameter `extra`; allowed: ",
        "`pw` must be at least 100 characters long, got a string (a secret's value is not shown)",
    ] {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
    assert!(!err.contains(SECRET), "{err}");
    assert_eq!(out.status.code(), Some(2));
}
