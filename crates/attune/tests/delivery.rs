//! Every delivery method × format × runtime, through the real binary: the action parses
//! what it receives with the real consumer (json.loads, PyYAML, sh, jq, JSON.parse) and
//! reports it back; it must equal what was sent.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const PY_READER: &str = r#"#!/usr/bin/env python3
import json, os, shlex, sys
fmt = os.environ["ATTUNE_PARAMETER_FORMAT"]
if os.environ["ATTUNE_PARAMETER_DELIVERY"] == "file":
    with open(os.environ["ATTUNE_PARAMETER_FILE"], "rb") as f:
        raw = f.read()
else:
    raw = sys.stdin.buffer.read()
text = raw.decode("utf-8")
if fmt == "json":
    assert text.endswith("\n") and text.count("\n") == 1, "json must be one line"
    params = json.loads(text)
elif fmt == "yaml":
    import yaml
    params = yaml.safe_load(text)
else:
    params = dict(tok.partition("=")[::2] for tok in shlex.split(text))
print(json.dumps({"params": params}))
"#;

const SH_READER: &str = r#"#!/usr/bin/env bash
set -euo pipefail
if [ "$ATTUNE_PARAMETER_DELIVERY" = file ]; then src="$ATTUNE_PARAMETER_FILE"; else src=/dev/stdin; fi
case "$ATTUNE_PARAMETER_FORMAT" in
  json)
    IFS= read -r PARAMS_JSON < "$src"
    printf '%s' "$PARAMS_JSON" | jq -c '{params: .}' ;;
  yaml)
    yq -c '{params: .}' < "$src" ;;
  dotenv)
    set -a; . "$src"; set +a
    out='{}'
    for k in ${KEYS//,/ }; do
      out=$(jq -c --arg k "$k" --arg v "$(printf '%s' "${!k}" | base64 -w0)" '.[$k]=$v' <<<"$out")
    done
    printf '{"b64":%s}\n' "$out" ;;
esac
"#;

const NODE_READER: &str = r#"const fs = require('fs');
const cp = require('child_process');
const fmt = process.env.ATTUNE_PARAMETER_FORMAT;
const raw = process.env.ATTUNE_PARAMETER_DELIVERY === 'file'
  ? fs.readFileSync(process.env.ATTUNE_PARAMETER_FILE) : fs.readFileSync(0);
let params;
if (fmt === 'json') {
  params = JSON.parse(raw.toString('utf8'));
} else {
  const py = fmt === 'yaml'
    ? 'import sys,yaml,json;print(json.dumps(yaml.safe_load(sys.stdin.buffer.read().decode())))'
    : 'import sys,shlex,json;print(json.dumps(dict(t.partition("=")[::2] for t in shlex.split(sys.stdin.buffer.read().decode()))))';
  params = JSON.parse(cp.execFileSync('python3', ['-c', py], {input: raw}).toString());
}
console.log(JSON.stringify({params}));
"#;

const RUNTIMES: [&str; 4] = ["python", "shell", "node", "native"];
const COMBOS: [(&str, &str); 6] = [
    ("stdin", "json"),
    ("stdin", "yaml"),
    ("stdin", "dotenv"),
    ("file", "json"),
    ("file", "yaml"),
    ("file", "dotenv"),
];

fn matrix_pack() -> TestPack {
    let p = TestPack::new("matrix");
    for runtime in RUNTIMES {
        let (ext, script) = match runtime {
            "python" | "native" => ("py", PY_READER),
            "shell" => ("sh", SH_READER),
            _ => ("js", NODE_READER),
        };
        for (delivery, format) in COMBOS {
            let name = format!("{runtime}_{delivery}_{format}");
            p.action(
                &name,
                &format!(
                    "runner_type: {runtime}\nparameter_delivery: {delivery}\nparameter_format: {format}\nparameters:\n  type: object\n  additionalProperties: true"
                ),
                &format!("{name}.{ext}"),
                script,
            );
        }
    }
    p
}

/// The dotenv text of a value: strings as-is, null empty, everything else its JSON text.
fn dotenv_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn dotenv_key(k: &str) -> String {
    attune_core_key(k)
}

// Written independently of the implementation, from DESIGN.md §2.
fn attune_core_key(name: &str) -> String {
    let mut key: String = name
        .chars()
        .map(|c| {
            let u = c.to_ascii_uppercase();
            if u.is_ascii_uppercase() || u.is_ascii_digit() || u == '_' {
                u
            } else {
                '_'
            }
        })
        .collect();
    if key.starts_with(|c: char| c.is_ascii_digit()) {
        key.insert(0, '_');
    }
    key
}

fn base64_decode(s: &str) -> Vec<u8> {
    let out = std::process::Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    out.stdout
}

use attune_core::json_same as same;

/// Runs one action with `params` and checks what it read back.
fn check(
    p: &TestPack,
    runtime: &str,
    delivery: &str,
    format: &str,
    params: &Map<String, Value>,
) -> Result<(), String> {
    let action = format!("matrix.{runtime}_{delivery}_{format}");
    let file = p.params_file(&Value::Object(params.clone()));
    let keys: Vec<String> = params.keys().map(|k| dotenv_key(k)).collect();
    let env = format!("KEYS={}", keys.join(","));
    let (out, rec) = p.run_json(&[
        &action,
        "--params-file",
        file.to_str().unwrap(),
        "--env",
        &env,
    ]);
    if !out.status.success() || rec["status"] != "succeeded" {
        return Err(format!("{action}: {} {}", rec, stderr(&out)));
    }
    let result = &rec["result"];
    if format == "dotenv" {
        for (k, v) in params {
            let key = dotenv_key(k);
            let got = if runtime == "shell" {
                base64_decode(
                    result["b64"][&key]
                        .as_str()
                        .ok_or(format!("{action}: no {key} in {result}"))?,
                )
            } else {
                result["params"][&key]
                    .as_str()
                    .ok_or(format!("{action}: no {key} in {result}"))?
                    .as_bytes()
                    .to_vec()
            };
            let want = dotenv_text(v);
            let ok = match v {
                Value::Array(_) | Value::Object(_) => {
                    serde_json::from_slice::<Value>(&got).is_ok_and(|g| same(&g, v))
                }
                _ => got == want.as_bytes(),
            };
            if !ok {
                return Err(format!(
                    "{action}: {key}: got {:?}, want {want:?}",
                    String::from_utf8_lossy(&got)
                ));
            }
        }
    } else if !same(&result["params"], &Value::Object(params.clone())) {
        return Err(format!(
            "{action}: got {}, want {}",
            result["params"],
            Value::Object(params.clone())
        ));
    }
    Ok(())
}

fn adversarial() -> Map<String, Value> {
    json!({
        "message": "hé said \"it's\" `x` $HOME \\n real\nnewline\n",
        "eq": "a=b=c",
        "empty": "",
        "yes": "yes",
        "on": "on",
        "num": 42,
        "neg": -1.5e-7,
        "big": 1e300,
        "flag": true,
        "nothing": null,
        "list": ["a", 1, [true, null], {"k": "v"}],
        "nested": {"a": {"b": {"c": [1, {"d": "~"}]}}},
        "tilde": "~",
        "nullstr": "null",
        "float_str": "1.0",
        "date": "2001-12-14",
        "unicode": "日本語 🎉 \u{2028} \u{85} \u{feff}",
        "ctrl": "\t\r\u{1}\u{7f}",
        "dollar": "$(touch /tmp/attune-pwned) ${x} '; exit 1; '",
        "my-param": "dash",
        "1st": "digit first"
    })
    .as_object()
    .unwrap()
    .clone()
}

#[test]
fn every_runtime_delivery_and_format_reads_back_what_was_sent() {
    let p = matrix_pack();
    let params = adversarial();
    let mut failures = Vec::new();
    for runtime in RUNTIMES {
        for (delivery, format) in COMBOS {
            if let Err(e) = check(&p, runtime, delivery, format, &params) {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 24 failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(!std::path::Path::new("/tmp/attune-pwned").exists());
}

const SH_SPECIAL: &[&str] = &[
    "PATH",
    "HOME",
    "IFS",
    "PS1",
    "PS2",
    "PS4",
    "PWD",
    "OLDPWD",
    "ENV",
    "OPTIND",
    "OPTARG",
    "SHELL",
    "UID",
    "EUID",
    "PPID",
    "RANDOM",
    "SECONDS",
    "LINENO",
    "SHLVL",
    "HOSTNAME",
    "GROUPS",
    "KEYS",
    "SRC",
    "OUT",
    "K",
    "TMPDIR",
    "LANG",
    "BASHPID",
    "FUNCNAME",
    "PIPESTATUS",
    "SRANDOM",
    "EPOCHSECONDS",
    "EPOCHREALTIME",
    "BASH_ARGV0",
    "COLUMNS",
    "LINES",
    "HISTCMD",
    "DIRSTACK",
    "MAILCHECK",
    "TERM",
    "PARAMS_JSON",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e15f64..1e15).prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::String),
        "[ -~\n\t'\"`$\\\\=]{0,16}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_params() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map(
        "[a-z][a-z0-9_]{0,8}".prop_filter("sh special", |k| {
            let u = k.to_ascii_uppercase();
            !SH_SPECIAL.contains(&u.as_str())
                && !u.starts_with("BASH")
                // Refused for dotenv actions on purpose (tested in attune-core).
                && attune_core::format::check_dotenv_keys([k.as_str()]).is_ok()
        }),
        arb_json(),
        0..6,
    )
    .prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_parameters_round_trip(params in arb_params()) {
        let p = matrix_pack();
        let mut failures = Vec::new();
        for (delivery, format) in COMBOS {
            if let Err(e) = check(&p, "python", delivery, format, &params) {
                failures.push(e);
            }
            if format == "dotenv" {
                if let Err(e) = check(&p, "shell", delivery, format, &params) {
                    failures.push(e);
                }
            }
        }
        prop_assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

fn big_pack() -> TestPack {
    let p = TestPack::new("big");
    let script = r#"#!/usr/bin/env python3
import hashlib, json, os, sys
if os.environ["ATTUNE_PARAMETER_DELIVERY"] == "file":
    raw = open(os.environ["ATTUNE_PARAMETER_FILE"], "rb").read()
else:
    raw = sys.stdin.buffer.read()
blob = json.loads(raw)["blob"]
print(json.dumps({"len": len(blob), "sha": hashlib.sha256(blob.encode()).hexdigest()}))
"#;
    for d in ["stdin", "file"] {
        p.action(
            &format!("read_{d}"),
            &format!("runner_type: python\nparameter_delivery: {d}\nparameters:\n  blob: {{type: string}}"),
            &format!("read_{d}.py"),
            script,
        );
    }
    p.action(
        "ignore_stdin",
        "runner_type: shell\nparameters:\n  blob: {type: string}",
        "ignore.sh",
        "#!/bin/bash\necho done\n",
    );
    p
}

#[test]
fn a_64_mib_payload_is_delivered_on_stdin_and_in_a_file() {
    let p = big_pack();
    let blob: String = (0..64 * 1024 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let sha = {
        let out = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(blob.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        String::from_utf8_lossy(&out.stdout)[..64].to_string()
    };
    let file = p.params_file(&json!({ "blob": blob }));
    for d in ["stdin", "file"] {
        let (out, rec) = p.run_json(&[
            &format!("big.read_{d}"),
            "--params-file",
            file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{d}: {}", stderr(&out));
        assert_eq!(rec["result"]["len"], json!(blob.len()), "{d}");
        assert_eq!(rec["result"]["sha"], json!(sha), "{d}");
    }
}

#[test]
fn an_action_that_never_reads_stdin_is_not_an_error() {
    let p = big_pack();
    let file = p.params_file(&json!({ "blob": "x".repeat(4 << 20) }));
    let (out, rec) = p.run_json(&["big.ignore_stdin", "--params-file", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rec["status"], "succeeded");
    assert_eq!(rec["stdout"], "done\n");
}

/// Objects reach the action with the keys in the order the request gave them, at every
/// depth, in JSON and YAML (DESIGN.md §2 Serialise); here and through the server.
#[test]
fn objects_keep_their_key_order_from_request_to_action() {
    let p = TestPack::new("ord");
    for fmt in ["json", "yaml"] {
        p.action(
            &format!("echo_{fmt}"),
            &format!("runner_type: shell\nparameter_format: {fmt}\nparameters:\n  obj: {{type: object}}\n  zz: {{type: string}}\n  aa: {{type: string}}"),
            "echo.sh",
            "#!/bin/bash\ncat\n",
        );
    }
    let request = r#"{"zz": "1", "obj": {"z": 1, "a": {"y": 2, "b": [{"q": 1, "c": 2}]}, "m": 3}, "aa": "2"}"#;
    let params = p.path("ordered.json");
    std::fs::write(&params, request).unwrap();
    let expected_json =
        r#"{"zz":"1","obj":{"z":1,"a":{"y":2,"b":[{"q":1,"c":2}]},"m":3},"aa":"2"}"#;
    let out = p.run(&["ord.echo_json", "--params-file", params.to_str().unwrap()]);
    assert_eq!(stdout(&out).trim_end(), expected_json, "{}", stderr(&out));
    let out = p.run(&["ord.echo_yaml", "--params-file", params.to_str().unwrap()]);
    let yaml = stdout(&out);
    let order: Vec<&str> = [
        "zz", "obj", "\"z\"", "\"a\"", "\"y\"", "\"b\"", "\"q\"", "\"c\"", "\"m\"", "aa",
    ]
    .into_iter()
    .collect();
    let positions: Vec<usize> = order
        .iter()
        .map(|k| {
            yaml.find(k)
                .unwrap_or_else(|| panic!("{k} missing in {yaml}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "keys out of order: {yaml}"
    );

    let s = TestServer::ready();
    assert_eq!(s.register(&p.dir).0, 201);
    let body = format!(r#"{{"action_ref": "ord.echo_json", "parameters": {request}}}"#);
    let (st, v) = http(
        "POST",
        &format!("{}/api/v1/executions", s.url),
        Some(&s.token),
        Some(("application/json", body.into_bytes())),
    );
    assert_eq!(st, 201, "{v}");
    let done = s.wait_final(v["id"].as_i64().unwrap(), 20);
    assert_eq!(done["stdout"].as_str().unwrap().trim_end(), expected_json);
}
