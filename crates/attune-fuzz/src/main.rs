//! `attune-fuzz`: bounded fuzzing on stable Rust (scripts/fuzz runs it).
//!
//! ```text
//! attune-fuzz TARGET [--seconds N] [--seed S] [--attune PATH]
//! ```
//!
//! Each target feeds inputs to one of Attune's parsers: mutations of seed inputs (bit and
//! byte flips, cuts, splices, repeated and interesting bytes) and inputs generated from
//! their structure (random JSON values and YAML documents). A panic, or a broken property
//! (a bundle that does not read back what was written, a JSON document that does not parse
//! back to the parameters), is a finding: the input is saved under `target/fuzz-findings/`
//! and the run fails. Targets:
//!
//! - `metadata`: pack.yaml and action metadata files, through the loader (`Pack::open`,
//!   `load_actions`), with the parameter schema and env_vars checks.
//! - `bundle`: pack bundles (`Bundle::from_bytes`); what reads must write back the same.
//! - `formats`: parameters serialised as json, dotenv and yaml; json and yaml must parse
//!   back to the parameters (dotenv is checked against `sh` by the property tests).
//! - `api`: request bodies (executions, tokens, secrets, packs) sent to a real
//!   `attune server`; no answer may be a 5xx and the server must stay up.

#![allow(clippy::unwrap_used)]

mod api;
mod gen;

use attune_core::bundle::{Bundle, BundleFile};
use attune_core::format::Format;
use gen::Rng;
use serde_json::{Map, Value};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Args {
    target: String,
    seconds: u64,
    seed: u64,
    attune: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let target = it.next().ok_or(
        "usage: attune-fuzz metadata|bundle|formats|api [--seconds N] [--seed S] [--attune PATH]",
    )?;
    let mut args = Args {
        target,
        seconds: 20,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        attune: None,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => args.seconds = value.parse().map_err(|_| "--seconds: a number")?,
            "--seed" => args.seed = value.parse().map_err(|_| "--seed: a number")?,
            "--attune" => args.attune = Some(PathBuf::from(value)),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("attune-fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    // Findings are reported once, below; the default hook would print each panic.
    std::panic::set_hook(Box::new(|_| {}));
    let budget = Duration::from_secs(args.seconds);
    let mut rng = Rng::new(args.seed);
    let result = match args.target.as_str() {
        "metadata" => run(budget, &mut rng, &metadata_seeds(), check_metadata_input),
        "bundle" => run(budget, &mut rng, &bundle_seeds(), check_bundle),
        "formats" => run_generated(budget, &mut rng, check_formats),
        "api" => api::run(budget, &mut rng, args.attune.as_deref()),
        other => Err(format!("unknown target {other}")),
    };
    match result {
        Ok(n) => {
            println!(
                "attune-fuzz {}: {n} inputs in {}s, seed {}, no finding",
                args.target, args.seconds, args.seed
            );
            ExitCode::SUCCESS
        }
        Err(finding) => {
            eprintln!(
                "attune-fuzz {}: FINDING (seed {}): {finding}",
                args.target, args.seed
            );
            ExitCode::FAILURE
        }
    }
}

/// Runs `check` on mutations of `seeds` until `budget` is spent; the number of inputs, or
/// the first finding.
fn run(
    budget: Duration,
    rng: &mut Rng,
    seeds: &[Vec<u8>],
    check: fn(&[u8]) -> Result<(), String>,
) -> Result<u64, String> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        let input = gen::mutate(rng, seeds);
        guarded(&input, check)?;
        n += 1;
    }
    Ok(n)
}

/// Runs `check` on one input; a panic or a returned error is a finding, saved to disk.
fn guarded(input: &[u8], check: fn(&[u8]) -> Result<(), String>) -> Result<(), String> {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| check(input)));
    let why = match outcome {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e,
        Err(panic) => format!(
            "panic: {}",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        ),
    };
    Err(format!("{why}; input saved to {}", save(input).display()))
}

fn save(input: &[u8]) -> PathBuf {
    let dir = PathBuf::from(
        std::env::var("ATTUNE_FUZZ_FINDINGS").unwrap_or_else(|_| "target/fuzz-findings".into()),
    );
    let _ = std::fs::create_dir_all(&dir);
    let name = attune_core::bundle::Bundle {
        files: vec![BundleFile {
            path: "x".into(),
            mode: 0,
            data: input.to_vec(),
        }],
    }
    .digest();
    let path = dir.join(&name[..16]);
    let _ = std::fs::write(&path, input);
    path
}

// ---- metadata ----------------------------------------------------------------------

fn metadata_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = vec![
        b"name: a\nrunner_type: shell\nentry_point: a.sh\nparameters:\n  msg: {type: string, required: true}\n  pw: {type: string, secret: true, minLength: 4}\n".to_vec(),
        b"name: a\nrunner_type: python\nentry_point: a.sh\nparameter_delivery: file\nparameter_format: dotenv\ntimeout: 30\nparameters:\n  type: object\n  properties:\n    n: {type: integer, maximum: 5, default: 1}\n    tags: {type: array, items: {type: string}}\n  required: [n]\n  additionalProperties: false\noutput_schema: {type: object}\n".to_vec(),
        b"name: a\nrunner_type: native\nentry_point: a.sh\nenabled: false\nenv_vars: {LOG_LEVEL: debug}\nparameters: {e: {enum: [a, b], default: a}}\n".to_vec(),
    ];
    // The repository's own actions, where the binary runs from a checkout.
    for dir in ["packs/core/actions", "examples"] {
        collect_yaml(Path::new(dir), &mut seeds, 3);
    }
    seeds
}

fn collect_yaml(dir: &Path, out: &mut Vec<Vec<u8>>, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && depth > 0 {
            collect_yaml(&p, out, depth - 1);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            if let Ok(b) = std::fs::read(&p) {
                out.push(b);
            }
        }
    }
}

thread_local! {
    static PACK_DIR: tempfile::TempDir = {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("actions")).unwrap();
        std::fs::write(d.path().join("actions/a.sh"), "echo hi\n").unwrap();
        d
    };
}

/// Odd inputs go to pack.yaml, even ones to an action's metadata file.
fn check_metadata_input(input: &[u8]) -> Result<(), String> {
    PACK_DIR.with(|d| {
        let dir = d.path();
        let as_pack = input.first().is_some_and(|b| b % 2 == 1);
        let (pack_yaml, action_yaml): (&[u8], &[u8]) = if as_pack {
            (input, b"name: a\nrunner_type: shell\nentry_point: a.sh\n")
        } else {
            (b"ref: fz\nversion: \"1.0\"\n", input)
        };
        std::fs::write(dir.join("pack.yaml"), pack_yaml).unwrap();
        std::fs::write(dir.join("actions/a.yaml"), action_yaml).unwrap();
        let Ok(pack) = attune_core::Pack::open(dir) else {
            return Ok(());
        };
        for action in pack.load_actions().into_iter().flatten() {
            // A loaded action must summarise, and validate any parameters without panicking.
            let _ = serde_json::to_string(&action.summary());
            let _ = action.parameters.prepare(Map::new());
            let mut doc = Map::new();
            for name in action.parameters.secret_names() {
                doc.insert(name.clone(), Value::from("x"));
            }
            let _ = action.parameters.prepare(doc);
        }
        Ok(())
    })
}

// ---- bundle ------------------------------------------------------------------------

fn bundle_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        Bundle::default().to_bytes(),
        Bundle {
            files: vec![
                BundleFile {
                    path: "pack.yaml".into(),
                    mode: 0o644,
                    data: b"ref: p\n".to_vec(),
                },
                BundleFile {
                    path: "actions/a.sh".into(),
                    mode: 0o755,
                    data: b"#!/bin/sh\necho hi\n".to_vec(),
                },
            ],
        }
        .to_bytes(),
    ];
    for dir in ["packs/core", "examples/mypack"] {
        if let Ok(b) = Bundle::from_dir(Path::new(dir)) {
            seeds.push(b.to_bytes());
        }
    }
    seeds
}

fn check_bundle(input: &[u8]) -> Result<(), String> {
    let Ok(bundle) = Bundle::from_bytes(input) else {
        return Ok(());
    };
    let again = Bundle::from_bytes(&bundle.to_bytes())
        .map_err(|e| format!("a bundle that read does not read back after writing: {e}"))?;
    if again != bundle {
        return Err("a bundle reads back different after writing".into());
    }
    let _ = bundle.digest();
    Ok(())
}

// ---- formats -----------------------------------------------------------------------

fn run_generated(
    budget: Duration,
    rng: &mut Rng,
    check: fn(&[u8]) -> Result<(), String>,
) -> Result<u64, String> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        let params = gen::object(rng, 3);
        guarded(Value::Object(params).to_string().as_bytes(), check)?;
        n += 1;
    }
    Ok(n)
}

/// `input`: a JSON object of parameters, serialised in each format.
fn check_formats(input: &[u8]) -> Result<(), String> {
    let Ok(Value::Object(params)) = serde_json::from_slice::<Value>(input) else {
        return Ok(());
    };
    for format in Format::ALL {
        let Ok(bytes) = attune_core::format::serialize(&params, format) else {
            continue;
        };
        match format {
            Format::Json => {
                let back: Map<String, Value> = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("json output does not parse: {e}"))?;
                if !attune_core::json_same(&Value::Object(back), &Value::Object(params.clone())) {
                    return Err("json output parses to other parameters".into());
                }
            }
            Format::Yaml => {
                let back: Value = serde_yaml_ng::from_slice(&bytes)
                    .map_err(|e| format!("yaml output does not parse: {e}"))?;
                if !attune_core::json_same(&back, &Value::Object(params.clone())) {
                    return Err("yaml output parses to other parameters".into());
                }
            }
            Format::Dotenv => {
                if bytes.contains(&0) {
                    return Err("dotenv output holds a NUL byte".into());
                }
            }
        }
    }
    Ok(())
}
