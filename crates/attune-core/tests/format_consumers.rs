//! The parameter serialisers (DESIGN.md §2 step 3) checked against the programs that really
//! read their output: python3's `json.loads`, PyYAML's `yaml.safe_load`, bash's
//! `read -r PARAMS_JSON` and `sh`'s `set -a; . file`.
//!
//! Every test draws all its cases first (hand-written adversarial ones plus random ones from a
//! seeded proptest runner), writes them to a temporary directory and checks them with ONE
//! consumer process, so the suite stays fast. A failure prints the failing cases' inputs and
//! the seed; `ATTUNE_FORMAT_SEED=<seed>` replays a run.

use attune_core::format::{
    check_dotenv_keys, dotenv_key, is_shell_variable, serialize, to_yaml, Format, FormatError,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Map, Number, Value};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Random cases per consumer test, on top of the hand-written ones (`ATTUNE_FORMAT_CASES`
/// overrides it for a longer soak).
fn random_cases() -> usize {
    std::env::var("ATTUNE_FORMAT_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}

/// Strings that YAML 1.1, JSON, or `sh` might reinterpret, plus characters that readers treat
/// specially (line breaks, BOM, non-characters, controls).
const NASTY: &[&str] = &[
    "yes",
    "Yes",
    "YES",
    "no",
    "No",
    "NO",
    "on",
    "On",
    "off",
    "OFF",
    "y",
    "Y",
    "n",
    "N",
    "true",
    "True",
    "FALSE",
    "null",
    "Null",
    "NULL",
    "~",
    "",
    "=",
    "<<",
    "1",
    "-1",
    "+1",
    "0",
    "00",
    "017",
    "0o17",
    "0x1F",
    "0b101",
    "1_000",
    "1,000",
    "1:20",
    "190:20:30.15",
    "1.0",
    "-1.5",
    "+.5",
    "1e3",
    "1.0e+3",
    "6.8523015e+5",
    ".inf",
    "-.inf",
    "+.INF",
    ".nan",
    ".NaN",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "2001-12-14 21:59:43.10 -5",
    "-",
    "--",
    "---",
    "...",
    "?",
    "? x",
    ":",
    ": x",
    "- x",
    "x: y",
    "x:y",
    "[",
    "]",
    "{",
    "}",
    "{}",
    "[]",
    ",",
    "#",
    " #x",
    "&a",
    "*a",
    "!tag",
    "!!str",
    "%YAML 1.1",
    "|",
    ">",
    "@",
    "`",
    "'",
    "\"",
    "\\",
    "\\n",
    "''",
    "'\\''",
    "$HOME",
    "${x}",
    "$(id)",
    "`id`",
    "$'x'",
    "\\$",
    "!",
    ";",
    "&&",
    "|x",
    "*",
    "\0",
    "\u{1}",
    "\u{7}",
    "\u{8}",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "\u{b}",
    "\u{c}",
    "\u{1b}",
    "\u{1f}",
    "\u{7f}",
    "\u{80}",
    "\u{85}",
    "\u{9f}",
    "\u{a0}",
    "\u{ad}",
    "\u{2028}",
    "\u{2029}",
    "\u{200b}",
    "\u{feff}",
    "\u{fffd}",
    "\u{fffe}",
    "\u{ffff}",
    "\u{e000}",
    "\u{10000}",
    "\u{10ffff}",
    "é",
    "ß",
    "ǅ",
    "😀",
    "日本",
    " ",
    "  ",
    " x",
    "x ",
    " x ",
    "\tx",
    "x\t",
    "x\n",
    "\nx",
    "\n\n",
    "x\r",
    " \n ",
];

/// Sh variables a dotenv key must not clobber in the test shell (the filter keeps the test
/// about the serialiser, not about which names a shell reserves).
const SH_RESERVED: &[&str] = &[
    "_",
    "PATH",
    "IFS",
    "PS1",
    "PS2",
    "PS3",
    "PS4",
    "OPTIND",
    "OPTARG",
    "OPTERR",
    "HOME",
    "PWD",
    "OLDPWD",
    "ENV",
    "CDPATH",
    "MAIL",
    "MAILCHECK",
    "MAILPATH",
    "LINENO",
    "PPID",
    "HISTSIZE",
    "HISTFILE",
    "HISTFILESIZE",
    "TERM",
    "FCEDIT",
    "LANG",
    "LANGUAGE",
    "NLSPATH",
    "TMPDIR",
    "SHELL",
    "SHELLOPTS",
    "BASHOPTS",
    "EUID",
    "UID",
    "GROUPS",
    "RANDOM",
    "SECONDS",
    "FUNCNAME",
    "HOSTNAME",
    "POSIXLY_CORRECT",
    "SRANDOM",
    "EPOCHSECONDS",
    "EPOCHREALTIME",
    "PIPESTATUS",
];

fn is_sh_reserved(key: &str) -> bool {
    SH_RESERVED.contains(&key)
        || key.starts_with("LC_")
        || key.starts_with("BASH")
        // Keys the serialiser refuses on purpose (tested in its unit tests).
        || is_shell_variable(key)
}

// ---------------------------------------------------------------------------------------------
// Strategies

fn nasty_piece() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(NASTY).prop_map(str::to_string),
        2 => any::<char>().prop_map(String::from),
        1 => "[ -~]{1,4}",
    ]
    .boxed()
}

/// Any unicode, biased towards the characters and words consumers reinterpret.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => vec(nasty_piece(), 0..6).prop_map(|v| v.concat()),
        2 => any::<String>(),
        2 => vec(any::<char>(), 0..16).prop_map(|v| v.into_iter().collect()),
        2 => select(NASTY).prop_map(str::to_string),
        1 => (nasty_piece(), 1..3000usize).prop_map(|(p, n)| p.chars().cycle().take(n).collect()),
    ]
    .boxed()
}

/// Object keys: mostly like values, sometimes around PyYAML's 1024-character limit for
/// implicit keys (both in characters and in bytes once escaped).
fn key() -> BoxedStrategy<String> {
    prop_oneof![
        12 => text(),
        1 => (nasty_piece(), 990..1100usize)
            .prop_map(|(p, n)| p.chars().cycle().take(n).collect()),
        1 => (330..520usize).prop_map(|n| "\u{1}".repeat(n)),
    ]
    .boxed()
}

const SPECIAL_FLOATS: &[f64] = &[
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.1,
    1.5e-7,
    1e-5,
    1e-6,
    1e-7,
    1e15,
    1e16,
    1e17,
    1e21,
    1e300,
    -1e300,
    1e-300,
    5e-324,
    f64::MAX,
    f64::MIN,
    f64::MIN_POSITIVE,
    f64::EPSILON,
    9007199254740993.0,
    123456789.125,
];

fn number() -> BoxedStrategy<Value> {
    let finite = prop::num::f64::POSITIVE
        | prop::num::f64::NEGATIVE
        | prop::num::f64::NORMAL
        | prop::num::f64::SUBNORMAL
        | prop::num::f64::ZERO;
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        select(&[i64::MIN, i64::MAX, -1, 0, 1, 1 << 53][..]).prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        finite.prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        select(SPECIAL_FLOATS)
            .prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
    ]
    .boxed()
}

/// Arbitrary JSON, nested up to depth 5.
fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        3 => number(),
        5 => text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(key(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn params() -> BoxedStrategy<Map<String, Value>> {
    btree_map(key(), json_value(), 0..8)
        .prop_map(|m| m.into_iter().collect())
        .boxed()
}

/// Parameter names for dotenv: mostly the safe pattern, some with characters that become `_`
/// or a leading digit.
fn dotenv_name() -> BoxedStrategy<String> {
    prop_oneof![
        8 => "[a-z][a-z0-9_-]{0,12}",
        2 => "[a-zA-Z0-9_. é€-]{1,8}",
    ]
    .boxed()
}

/// A dotenv case: parameters, whether top-level strings keep their NUL bytes, and whether to
/// add a second name for the first key (a deliberate collision).
fn dotenv_params() -> BoxedStrategy<(Map<String, Value>, bool, bool)> {
    (
        btree_map(dotenv_name(), json_value(), 0..8),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(m, keep_nul, collide)| (m.into_iter().collect(), keep_nul, collide))
        .boxed()
}

fn seeded_runner() -> (TestRunner, u64) {
    let seed = match std::env::var("ATTUNE_FORMAT_SEED") {
        Ok(s) => s.parse().expect("ATTUNE_FORMAT_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..].copy_from_slice(&(seed ^ 0x9E37_79B9_7F4A_7C15).to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::XorShift, &bytes);
    (TestRunner::new_with_rng(Config::default(), rng), seed)
}

fn draw<T: std::fmt::Debug>(
    runner: &mut TestRunner,
    strategy: &BoxedStrategy<T>,
    n: usize,
) -> Vec<T> {
    (0..n)
        .map(|_| strategy.new_tree(runner).expect("draw a case").current())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Hand-written adversarial cases

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn nested(depth: usize) -> Value {
    let mut v = json!("bottom");
    for d in 0..depth {
        v = if d % 2 == 0 {
            json!([v, d, []])
        } else {
            json!({ "k": v, "e": {} })
        };
    }
    v
}

fn float(f: f64) -> Value {
    Value::Number(Number::from_f64(f).expect("finite"))
}

fn hand_written() -> Vec<(String, Map<String, Value>)> {
    let mut cases = Vec::new();
    let mut add = |label: &str, m: Map<String, Value>| cases.push((label.to_string(), m));

    add("empty", Map::new());
    add(
        "nasty words as keys and values",
        NASTY
            .iter()
            .map(|w| (w.to_string(), Value::from(*w)))
            .collect(),
    );
    add(
        "nasty words in a list",
        obj(json!({ "l": NASTY.iter().map(|w| Value::from(*w)).collect::<Vec<_>>() })),
    );
    add(
        "every character below U+0100, one string",
        obj(json!({ "s": (0u32..0x100).filter_map(char::from_u32).collect::<String>() })),
    );
    add(
        "every character below U+0100, one each",
        (0u32..0x100)
            .filter_map(char::from_u32)
            .map(|c| (format!("k{:02x}{c}", c as u32), Value::from(c.to_string())))
            .collect(),
    );
    add(
        "floats",
        SPECIAL_FLOATS
            .iter()
            .enumerate()
            .map(|(i, f)| (format!("f{i}"), float(*f)))
            .collect(),
    );
    add(
        "integers",
        obj(json!({
            "u64max": u64::MAX, "i64min": i64::MIN, "i64max": i64::MAX, "zero": 0, "neg": -1,
            "list": [u64::MAX, i64::MIN, 0, 1.0, -0.0, 1e300, 1.5e-7]
        })),
    );
    let mut long_keys = Map::new();
    for n in [
        997, 998, 999, 1000, 1001, 1022, 1023, 1024, 1025, 1026, 2000,
    ] {
        long_keys.insert("k".repeat(n), json!(n));
    }
    for n in [499, 500, 501, 512, 513] {
        long_keys.insert("é".repeat(n), json!([n]));
        long_keys.insert("\"".repeat(n), json!({ "n": n }));
        long_keys.insert("😀".repeat(n / 2), json!("v"));
    }
    long_keys.insert("\u{1}".repeat(300), json!(null));
    long_keys.insert(format!("{} ", " ".repeat(1100)), json!({}));
    add("long keys", long_keys);
    add(
        "long key with nested values",
        obj(json!({ "x".repeat(1500): [{ "y".repeat(1030): [1, [2, []], {}] }] })),
    );
    add(
        "deep nesting",
        obj(json!({ "deep": nested(40), "deeper": [nested(25)] })),
    );
    add(
        "empty collections everywhere",
        obj(json!({
            "a": [], "o": {}, "aa": [[]], "ao": [{}], "oa": { "x": [] }, "oo": { "x": {} },
            "mixed": [[], {}, [[], [{}]], { "": [] }], "": "", " ": " "
        })),
    );
    add(
        "whitespace and line breaks",
        obj(json!({
            " lead": " lead", "trail ": "trail ", "\ttab": "\t", "cr": "\r", "crlf": "a\r\nb",
            "nl": "\n", "nls": "a\n\n", "nel": "a\u{85}b", "ls": "a\u{2028}b", "ps": "\u{2029}",
            "bom": "\u{feff}x", "nonchars": "\u{fffe}\u{ffff}", "esc": "\u{1b}[0m", "del": "\u{7f}",
            "nul": "a\u{0}b", "spaces": "   ", "mid  spaces": "a  b  c"
        })),
    );
    add(
        "yaml indicators as keys",
        obj(json!({
            "<<": { "a": 1 }, "=": "=", "? x": "- y", "- z": ": w", "&a": "*a", "!t": "!!str",
            "%YAML": "---", "...": "#", "[": "]", "{": "}", "|": ">", "null": null, "true": true,
            "1": 1, "1.0": 1.0, "~": "~"
        })),
    );
    cases
}

// ---------------------------------------------------------------------------------------------
// Process helpers

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success() || out.status.code().is_some(),
        "{cmd:?} was killed: {out:?}"
    );
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap_or_else(|e| panic!("write {name}: {e}"));
}

fn read(dir: &Path, name: &str) -> Option<Vec<u8>> {
    std::fs::read(dir.join(name)).ok()
}

fn show(s: &str) -> String {
    const MAX: usize = 4000;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

// ---------------------------------------------------------------------------------------------
// json and yaml against python3

/// Loads every case's json and yaml document with the real python readers and compares the
/// result, strictly typed (`1` is not `1.0` is not `True`; `-0.0` is not `0.0`), with the
/// value the case was made from (carried as serde_json's pretty text, a different code path
/// from the compact document).
const PY_CHECK: &str = r#"
import json, math, sys, yaml
base, n = sys.argv[1], int(sys.argv[2])
CLoader = getattr(yaml, "CSafeLoader", None)

def diff(got, want, path="$"):
    """Where `got` first differs from `want`, strictly typed, or None."""
    if type(got) is not type(want):
        return "at %s: got %s %s, want %s %s" % (
            path, type(got).__name__, show(repr(got)), type(want).__name__, show(repr(want)))
    if isinstance(want, dict):
        if got.keys() != want.keys():
            return "at %s: extra keys %s, missing keys %s" % (path,
                show(repr(sorted(got.keys() - want.keys(), key=repr))),
                show(repr(sorted(want.keys() - got.keys(), key=repr))))
        for k in want:
            d = diff(got[k], want[k], "%s[%s]" % (path, show(repr(k))))
            if d:
                return d
        return None
    if isinstance(want, list):
        if len(got) != len(want):
            return "at %s: got %d items, want %d" % (path, len(got), len(want))
        for i, (g, w) in enumerate(zip(got, want)):
            d = diff(g, w, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    if isinstance(want, float):
        ok = got == want and math.copysign(1.0, got) == math.copysign(1.0, want)
    else:
        ok = got == want
    return None if ok else "at %s: got %s, want %s" % (path, show(repr(got)), show(repr(want)))

def show(x):
    r = x if isinstance(x, str) else repr(x)
    return r if len(r) <= 2000 else r[:2000] + "... (%d chars)" % len(r)

def rd(name):
    with open("%s/%s" % (base, name), "rb") as f:
        return f.read()

failed = 0
for i in range(n):
    problems = []
    expect_text = rd("c%d.expect" % i)
    expected = json.loads(expect_text)
    jdoc = rd("c%d.json" % i)
    if not jdoc.endswith(b"\n") or jdoc.count(b"\n") != 1:
        problems.append("json: not exactly one line ending in \\n")
    loaders = [("json.loads", lambda: json.loads(jdoc))]
    ydoc = rd("c%d.yaml" % i)
    loaders.append(("yaml.safe_load(bytes)", lambda: yaml.safe_load(ydoc)))
    loaders.append(("yaml.safe_load(str)", lambda: yaml.safe_load(ydoc.decode("utf-8"))))
    if CLoader is not None:
        loaders.append(("yaml.load(CSafeLoader)", lambda: yaml.load(ydoc, Loader=CLoader)))
    for label, load in loaders:
        try:
            got = load()
        except Exception as e:
            problems.append("%s raised %s" % (label, show(repr(e))))
            continue
        d = diff(got, expected)
        if d:
            problems.append("%s differs %s" % (label, d))
    if problems:
        failed += 1
        print("case %d (%s) FAILED:" % (i, rd("c%d.label" % i).decode()))
        for p in problems:
            print("  " + p)
        print("  value: " + show(expect_text.decode()))
        print("  yaml document: " + show(ydoc.decode()))
print("%d/%d cases passed" % (n - failed, n))
sys.exit(1 if failed else 0)
"#;

/// Reads every json document as the spec's bash consumer does and writes what it got back.
const BASH_READ: &str = r#"
i=0
while [ "$i" -lt "$1" ]; do
  read -r PARAMS_JSON < "./c$i.json"
  printf '%s' "$PARAMS_JSON" > "./c$i.read"
  i=$((i + 1))
done
"#;

#[test]
fn json_and_yaml_round_trip_through_python_and_bash() {
    let (mut runner, seed) = seeded_runner();
    let mut cases = hand_written();
    for (i, p) in draw(&mut runner, &params(), random_cases())
        .into_iter()
        .enumerate()
    {
        cases.push((format!("random #{i}, ATTUNE_FORMAT_SEED={seed}"), p));
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let mut json_docs = Vec::new();
    for (i, (label, p)) in cases.iter().enumerate() {
        let jdoc = serialize(p, Format::Json).expect("json never fails");
        let ydoc = serialize(p, Format::Yaml).expect("yaml never fails");
        assert_eq!(
            ydoc,
            to_yaml(p).into_bytes(),
            "{label}: serialize(Yaml) is to_yaml"
        );
        let expect = serde_json::to_string_pretty(p).expect("pretty json");
        write(dir.path(), &format!("c{i}.label"), label.as_bytes());
        write(dir.path(), &format!("c{i}.expect"), expect.as_bytes());
        write(dir.path(), &format!("c{i}.json"), &jdoc);
        write(dir.path(), &format!("c{i}.yaml"), &ydoc);
        json_docs.push(jdoc);
    }
    let n = cases.len().to_string();

    let py = run(Command::new("python3")
        .arg("-c")
        .arg(PY_CHECK)
        .arg(dir.path())
        .arg(&n));
    assert!(
        py.status.success(),
        "python3's json.loads / yaml.safe_load disagree with the serialisers (seed {seed}):\n{}\n{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );

    let bash = run(Command::new("bash")
        .arg("-c")
        .arg(BASH_READ)
        .arg("bash")
        .arg(&n)
        .current_dir(dir.path()));
    assert!(bash.status.success(), "bash: {bash:?}");
    for (i, jdoc) in json_docs.iter().enumerate() {
        let got = read(dir.path(), &format!("c{i}.read")).unwrap_or_default();
        assert_eq!(
            got,
            jdoc[..jdoc.len() - 1],
            "case {i} ({}): bash `read -r PARAMS_JSON` did not get the whole json document",
            cases[i].0
        );
    }
}

// ---------------------------------------------------------------------------------------------
// dotenv against sh

/// The spec's key rule, written independently of `dotenv_key`.
fn reference_key(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' => c.to_ascii_uppercase(),
            'A'..='Z' | '0'..='9' | '_' => c,
            _ => '_',
        })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{mapped}")
    } else {
        mapped
    }
}

/// What `sh` must hold in the variable for a parameter value.
fn dotenv_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) | Value::Object(_) => serde_json::to_string(v).expect("compact json"),
    }
}

/// The error the spec demands for `params`, if any.
fn expected_dotenv_error(params: &Map<String, Value>) -> Option<&'static str> {
    if params.contains_key("") {
        return Some("bad key");
    }
    let mut keys: Vec<String> = params.keys().map(|k| reference_key(k)).collect();
    keys.sort();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        return Some("collision");
    }
    params
        .values()
        .any(|v| matches!(v, Value::String(s) if s.contains('\0')))
        .then_some("nul")
}

fn check_dotenv_error(label: &str, params: &Map<String, Value>, kind: &str, err: &FormatError) {
    let ok = match (kind, err) {
        ("bad key", FormatError::BadKey(name)) => name.is_empty(),
        ("collision", FormatError::KeyCollision(a, b, key)) => {
            a < b
                && params.contains_key(a)
                && params.contains_key(b)
                && reference_key(a) == *key
                && reference_key(b) == *key
        }
        ("nul", FormatError::NulInDotenv(name)) => {
            matches!(params.get(name), Some(Value::String(s)) if s.contains('\0'))
        }
        _ => false,
    };
    assert!(
        ok,
        "{label}: expected a {kind} error, got {err:?} for {params:?}"
    );
}

fn dotenv_hand_written() -> Vec<(String, Map<String, Value>)> {
    let mut cases = Vec::new();
    let mut add = |label: &str, m: Map<String, Value>| cases.push((label.to_string(), m));
    add("empty", Map::new());
    add(
        "quotes and shell syntax",
        obj(json!({
            "a": "it's", "b": "'", "c": "''\\''", "d": "\"", "e": "`id`", "f": "$HOME $(id) ${x}",
            "g": "a\nb\n\n", "h": "\\", "i": "\\\n", "j": "", "k": null, "l": true, "m": 1.5e-7,
            "n": u64::MAX, "o": [1, "x'y\n", null], "p": { "q": "a\u{0}b", "'": "\"" },
            "r": "é😀\u{85}\u{2028}\r\t", "s": "=", "t": "#comment", "u": " lead and trail ",
            "v": "x=y z", "w": "\n", "x": "'\n'", "y": "\u{1}\u{7f}\u{ff}", "z": -0.0,
            "aa": "; touch pwned #", "ab": "' ; touch pwned ; '", "ac": false, "ad": i64::MIN,
            "ae": 1e300, "af": [], "ag": {}, "ah": "\\'", "ai": "a\\", "aj": "\r\n",
        })),
    );
    add(
        "names that need mapping",
        obj(json!({
            "my-param": "1", "1st": "2", "a.b": "3", "é": "4", "x y": "5", "9": "6",
            "mixedCase": "7", "trailing-": "8", "__x": "9", "_": "10",
        })),
    );
    add(
        "nasty words",
        NASTY
            .iter()
            .enumerate()
            .filter(|(_, w)| !w.contains('\0'))
            .map(|(i, w)| (format!("w{i}"), Value::from(*w)))
            .collect(),
    );
    add(
        "every byte-sized character but NUL",
        obj(json!({ "all": (1u32..0x100).filter_map(char::from_u32).collect::<String>() })),
    );
    // Under Linux's 128 KiB limit for one environment string: the child `sh` must be exec'd.
    add("long value", obj(json!({ "big": "x'\n".repeat(40_000) })));
    add(
        "nul at top level",
        obj(json!({ "a": "ok", "b": "x\u{0}y" })),
    );
    add("nul alone", obj(json!({ "nul": "\u{0}" })));
    add("collision -/_", obj(json!({ "a-b": 1, "a_b": 2 })));
    add("collision case", obj(json!({ "x": 1, "X": 2 })));
    add("collision digit", obj(json!({ "1a": 1, "_1a": 2 })));
    add(
        "collision unicode",
        obj(json!({ "xé": 1, "xß": 2, "b": 3 })),
    );
    add(
        "collision before nul",
        obj(json!({ "a.": "\u{0}", "a-": "x" })),
    );
    add("empty name", obj(json!({ "": 1, "a": 2 })));
    cases
}

/// A dotenv document `sh` must source: case index, label, and every key with the bytes its
/// variable must hold.
struct ShCheck {
    i: usize,
    label: String,
    expected: Vec<(String, String)>,
}

#[test]
fn dotenv_round_trips_through_sh() {
    let (mut runner, seed) = seeded_runner();
    let mut cases = dotenv_hand_written();
    for (i, (mut p, keep_nul, collide)) in draw(&mut runner, &dotenv_params(), random_cases())
        .into_iter()
        .enumerate()
    {
        if !keep_nul {
            for v in p.values_mut() {
                if let Value::String(s) = v {
                    *s = s.replace('\0', "");
                }
            }
        }
        if collide {
            if let Some(first) = p.keys().next().cloned() {
                let twin: String = if first.chars().any(|c| c.is_ascii_alphabetic()) {
                    first
                        .chars()
                        .map(|c| {
                            if c.is_ascii_lowercase() {
                                c.to_ascii_uppercase()
                            } else {
                                c.to_ascii_lowercase()
                            }
                        })
                        .collect()
                } else {
                    first.replace('_', ".")
                };
                p.insert(twin, json!("twin"));
            }
        }
        cases.push((format!("random #{i}, ATTUNE_FORMAT_SEED={seed}"), p));
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let mut checks: Vec<ShCheck> = Vec::new();
    let mut counts = [0usize; 2];
    for (i, (label, p)) in cases.iter().enumerate() {
        // Names whose key the test shell itself relies on are left out (see SH_RESERVED).
        let p: Map<String, Value> = p
            .iter()
            .filter(|(k, _)| !is_sh_reserved(&reference_key(k)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for name in p.keys().filter(|k| !k.is_empty()) {
            assert_eq!(
                dotenv_key(name).as_deref(),
                Ok(reference_key(name).as_str()),
                "{label}: dotenv_key({name:?})"
            );
        }
        let result = serialize(&p, Format::Dotenv);
        match (expected_dotenv_error(&p), result) {
            (Some(kind), Err(e)) => {
                check_dotenv_error(label, &p, kind, &e);
                counts[1] += 1;
            }
            (Some(kind), Ok(doc)) => panic!(
                "{label}: expected a {kind} error, got a document for {p:?}:\n{}",
                show(&String::from_utf8_lossy(&doc))
            ),
            (None, Err(e)) => panic!("{label}: unexpected {e:?} for {p:?}"),
            (None, Ok(doc)) => {
                counts[0] += 1;
                write(dir.path(), &format!("d{i}.env"), &doc);
                let expected = p
                    .iter()
                    .map(|(name, value)| (reference_key(name), dotenv_text(value)))
                    .collect();
                checks.push(ShCheck {
                    i,
                    label: label.clone(),
                    expected,
                });
            }
        }
    }
    // The checks must really exercise both paths.
    assert!(
        counts[0] >= random_cases() / 2,
        "too few sh cases: {counts:?}"
    );
    assert!(counts[1] >= 5, "too few error cases: {counts:?}");

    // `sh` is the spec's consumer; bash (what `sh` is on many systems, and what most
    // scripts use) must agree too.
    let mut failures = Vec::new();
    for shell in ["sh", "bash"] {
        // Each case is sourced in its own subshell, which then execs a child shell that sees
        // only exported variables (so `set -a` is checked too) and writes each value to a
        // file: byte-exact, no `$(...)` stripping trailing newlines.
        let mut script = String::new();
        for ShCheck { i, expected, .. } in &checks {
            let mut inner = String::new();
            for (j, (key, _)) in expected.iter().enumerate() {
                inner.push_str(&format!("printf %s \"${key}\" > ./d{i}.{shell}.v{j}; "));
            }
            script.push_str(&format!(
                "( set -a; . ./d{i}.env || exit 97; exec {shell} -c '{inner}' ) 2> ./d{i}.{shell}.err\n\
                 printf %s \"$?\" > ./d{i}.{shell}.rc\n"
            ));
        }
        let file = format!("check-{shell}.sh");
        write(dir.path(), &file, script.as_bytes());
        let out = run(Command::new(shell)
            .arg(format!("./{file}"))
            .current_dir(dir.path()));
        assert!(out.status.success(), "{shell}: {out:?}");

        for ShCheck { i, label, expected } in &checks {
            let rc = read(dir.path(), &format!("d{i}.{shell}.rc")).unwrap_or_default();
            let err = read(dir.path(), &format!("d{i}.{shell}.err")).unwrap_or_default();
            let doc = read(dir.path(), &format!("d{i}.env")).unwrap_or_default();
            let doc = String::from_utf8_lossy(&doc);
            if rc != b"0" || !err.is_empty() {
                failures.push(format!(
                    "case {i} ({label}): {shell} exited {} with stderr {:?}\n  document: {}",
                    String::from_utf8_lossy(&rc),
                    String::from_utf8_lossy(&err),
                    show(&doc)
                ));
                continue;
            }
            for (j, (key, want)) in expected.iter().enumerate() {
                let got = read(dir.path(), &format!("d{i}.{shell}.v{j}"));
                if got.as_deref() != Some(want.as_bytes()) {
                    failures.push(format!(
                        "case {i} ({label}): {shell} has ${key} = {:?}, want {:?}\n  document: {}",
                        got.as_deref().map(String::from_utf8_lossy),
                        show(want),
                        show(&doc)
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "`set -a; . file` does not reproduce {} value(s) (seed {seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        !dir.path().join("pwned").exists(),
        "a dotenv value ran a command"
    );
}

proptest! {
    /// `dotenv_key` follows the spec's rule, and `check_dotenv_keys` rejects exactly the name
    /// sets with two names on one key.
    #[test]
    fn dotenv_keys_follow_the_spec(names in vec(prop_oneof![text(), dotenv_name()], 0..6)) {
        for name in &names {
            if name.is_empty() {
                prop_assert_eq!(dotenv_key(name), Err(FormatError::BadKey(String::new())));
            } else {
                let key = dotenv_key(name).expect("non-empty name");
                prop_assert_eq!(&key, &reference_key(name));
                prop_assert!(key.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'));
                prop_assert!(!key.starts_with(|c: char| c.is_ascii_digit()));
            }
        }
        let mut unique: Vec<&String> = names.iter().collect();
        unique.sort();
        unique.dedup();
        let mut keys: Vec<String> = unique.iter().map(|n| reference_key(n)).collect();
        keys.sort();
        let clash = keys.windows(2).any(|w| w[0] == w[1]);
        let shell = keys.iter().any(|k| is_shell_variable(k));
        let result = check_dotenv_keys(unique.iter().map(|n| n.as_str()));
        if unique.iter().any(|n| n.is_empty()) {
            prop_assert!(result.is_err());
        } else if clash && shell {
            prop_assert!(
                matches!(result, Err(FormatError::KeyCollision(..) | FormatError::ShellVariable(..))),
                "{:?}", result
            );
        } else if clash {
            prop_assert!(matches!(result, Err(FormatError::KeyCollision(..))), "{:?}", result);
        } else if shell {
            prop_assert!(matches!(&result, Err(FormatError::ShellVariable(_, k)) if is_shell_variable(k)), "{:?}", result);
        } else {
            prop_assert_eq!(result, Ok(()));
        }
    }
}
