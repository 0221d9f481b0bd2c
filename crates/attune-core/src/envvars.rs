//! An execution's `env_vars` (DESIGN.md §3): execution context an operator sets for an
//! action, stored apart from parameters. Names that would let a caller hijack the
//! interpreter or the dynamic loader are refused.

use serde_json::Value;
use std::collections::BTreeMap;

/// At most this many variables per execution.
pub const MAX_VARS: usize = 256;
/// At most this many bytes of names and values in all.
pub const MAX_TOTAL_BYTES: usize = 64 * 1024;

/// Exact names refused, each a hook that makes a shell or interpreter run code or load
/// modules the action did not ask for.
const DENIED_NAMES: &[&str] = &[
    "BASH_ENV",
    "ENV",
    "IFS",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "CDPATH",
    "GLOBIGNORE",
    "PYTHONSTARTUP",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONINSPECT",
    "PYTHONWARNINGS",
    "PYTHONBREAKPOINT",
    "PYTHONUSERBASE",
    "PYTHONEXECUTABLE",
    "PYTHONPLATLIBDIR",
    "NODE_OPTIONS",
    "NODE_PATH",
    "NODE_REPL_EXTERNAL_MODULE",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "PERL5DB",
    "RUBYOPT",
    "RUBYLIB",
    "GCONV_PATH",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LOCPATH",
    "NLSPATH",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
];

/// Prefixes refused: Attune's own namespace, the dynamic loader, exported bash functions.
const DENIED_PREFIXES: &[(&str, &str)] = &[
    (
        "ATTUNE_",
        "the ATTUNE_ prefix is reserved for variables Attune sets itself",
    ),
    (
        "LD_",
        "LD_* variables change how the dynamic loader loads code into the action",
    ),
    (
        "BASH_FUNC_",
        "BASH_FUNC_* variables define bash functions inside the action",
    ),
    (
        "DYLD_",
        "DYLD_* variables change how the dynamic loader loads code into the action",
    ),
];

/// What the platform sets itself; a request may not replace it.
const PLATFORM_NAMES: &[(&str, &str)] = &[
    (
        "PATH",
        "Attune sets PATH itself; replacing it would choose which programs the action runs",
    ),
    (
        "HOME",
        "Attune sets HOME itself; programs read their configuration from it",
    ),
    ("LANG", "Attune sets LANG itself"),
    (
        "TMPDIR",
        "Attune sets TMPDIR to the execution's own private directory",
    ),
];

/// Variables that would send the action's traffic, or its trust, somewhere the caller
/// chooses: an operator who may run an action must not be able to redirect its secrets.
const TRAFFIC_NAMES: &[&str] = &[
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "SSLKEYLOGFILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "CURL_HOME",
    "WGETRC",
    "NODE_EXTRA_CA_CERTS",
    "NODE_TLS_REJECT_UNAUTHORIZED",
    "PYTHONHTTPSVERIFY",
    "GIT_PROXY_COMMAND",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_ASKPASS",
];

/// Prefixes of the same kind: git's TLS settings and config given by environment.
const TRAFFIC_PREFIXES: &[&str] = &["GIT_SSL_", "GIT_CONFIG"];

const TRAFFIC_WHY: &str =
    "it would redirect the action's network traffic or what it trusts, and with it the action's secrets";

/// Why `env_vars` were refused. Messages name variables, never values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvVarError {
    /// A name outside `[A-Za-z_][A-Za-z0-9_]*`.
    #[error("env var name `{0}` is invalid: names must match [A-Za-z_][A-Za-z0-9_]*")]
    BadName(String),
    /// A reserved or dangerous name.
    #[error("env var `{0}` is not allowed: {1}")]
    Denied(String, String),
    /// A value that is not a string.
    #[error("env var `{0}` must be a string, got {1}")]
    NotString(String, &'static str),
    /// A value with a NUL byte.
    #[error("env var `{0}` contains a NUL byte")]
    Nul(String),
    /// Too many variables.
    #[error("too many env vars: {0} given, at most {MAX_VARS} allowed")]
    TooMany(usize),
    /// Too many bytes.
    #[error(
        "env vars too large: {0} bytes of names and values, at most {MAX_TOTAL_BYTES} allowed"
    )]
    TooLarge(usize),
    /// `env_vars` was not a mapping.
    #[error("env_vars must be a mapping of names to strings, got {0}")]
    NotAMap(&'static str),
}

/// A validated set of environment variables for one execution.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EnvVars(BTreeMap<String, String>);

impl EnvVars {
    /// Validates name/value pairs.
    pub fn new(vars: BTreeMap<String, String>) -> Result<EnvVars, EnvVarError> {
        if vars.len() > MAX_VARS {
            return Err(EnvVarError::TooMany(vars.len()));
        }
        let mut total = 0usize;
        for (name, value) in &vars {
            check_name(name)?;
            if value.contains('\0') {
                return Err(EnvVarError::Nul(name.clone()));
            }
            total += name.len() + value.len();
        }
        if total > MAX_TOTAL_BYTES {
            return Err(EnvVarError::TooLarge(total));
        }
        Ok(EnvVars(vars))
    }

    /// Validates a JSON mapping such as the API's `env_vars` field (`null` means none).
    pub fn from_json(v: &Value) -> Result<EnvVars, EnvVarError> {
        let map = match v {
            Value::Null => return Ok(EnvVars::default()),
            Value::Object(m) => m,
            other => return Err(EnvVarError::NotAMap(crate::json_type_name(other))),
        };
        let mut vars = BTreeMap::new();
        for (k, v) in map {
            match v {
                Value::String(s) => {
                    vars.insert(k.clone(), s.clone());
                }
                other => {
                    check_name(k)?;
                    return Err(EnvVarError::NotString(
                        k.clone(),
                        crate::json_type_name(other),
                    ));
                }
            }
        }
        EnvVars::new(vars)
    }

    /// Iterates over the variables in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether no variable is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The variables as a map.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

fn check_name(name: &str) -> Result<(), EnvVarError> {
    let mut bytes = name.bytes();
    let first_ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_');
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(EnvVarError::BadName(name.to_string()));
    }
    for (prefix, why) in DENIED_PREFIXES {
        if name.starts_with(prefix) {
            return Err(EnvVarError::Denied(name.to_string(), (*why).to_string()));
        }
    }
    if let Some((_, why)) = PLATFORM_NAMES.iter().find(|(n, _)| *n == name) {
        return Err(EnvVarError::Denied(name.to_string(), (*why).to_string()));
    }
    // Proxies in any case: curl reads http_proxy, others HTTPS_PROXY, ALL_PROXY, no_proxy...
    let redirects = name.to_ascii_lowercase().ends_with("_proxy")
        || TRAFFIC_NAMES.contains(&name)
        || TRAFFIC_PREFIXES.iter().any(|p| name.starts_with(p));
    if redirects {
        return Err(EnvVarError::Denied(name.to_string(), TRAFFIC_WHY.into()));
    }
    if DENIED_NAMES.contains(&name) {
        return Err(EnvVarError::Denied(
            name.to_string(),
            "it makes the shell or interpreter run or load code the action did not ask for".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_plain_vars() {
        let e = EnvVars::from_json(&json!({"LOG_LEVEL": "debug", "_x1": ""})).unwrap();
        assert_eq!(e.iter().count(), 2);
    }

    #[test]
    fn refuses_hooks_and_bad_names() {
        for name in [
            "LD_PRELOAD",
            "ATTUNE_X",
            "BASH_ENV",
            "NODE_OPTIONS",
            "BASH_FUNC_f%%",
        ] {
            let err = EnvVars::from_json(&json!({ name: "x" })).unwrap_err();
            assert!(
                matches!(err, EnvVarError::Denied(..) | EnvVarError::BadName(_)),
                "{name}: {err}"
            );
        }
        for name in ["1A", "A-B", "", "A B"] {
            assert_eq!(
                EnvVars::from_json(&json!({ name: "x" })).unwrap_err(),
                EnvVarError::BadName(name.into())
            );
        }
    }

    #[test]
    fn refuses_what_the_platform_sets_and_what_redirects_traffic_or_trust() {
        let cases = [
            ("PATH", "Attune sets PATH itself"),
            ("HOME", "Attune sets HOME itself"),
            ("LANG", "Attune sets LANG itself"),
            ("TMPDIR", "Attune sets TMPDIR"),
            ("http_proxy", "redirect the action's network traffic"),
            ("HTTP_PROXY", "redirect"),
            ("https_proxy", "redirect"),
            ("HTTPS_PROXY", "redirect"),
            ("Https_Proxy", "redirect"),
            ("ALL_PROXY", "redirect"),
            ("all_proxy", "redirect"),
            ("no_proxy", "redirect"),
            ("NO_PROXY", "redirect"),
            ("ftp_proxy", "redirect"),
            ("SSL_CERT_FILE", "what it trusts"),
            ("SSL_CERT_DIR", "what it trusts"),
            ("REQUESTS_CA_BUNDLE", "what it trusts"),
            ("CURL_CA_BUNDLE", "what it trusts"),
            ("NODE_EXTRA_CA_CERTS", "what it trusts"),
            ("GIT_SSL_CAINFO", "what it trusts"),
            ("GIT_SSL_NO_VERIFY", "what it trusts"),
            ("SSLKEYLOGFILE", "what it trusts"),
            ("NODE_TLS_REJECT_UNAUTHORIZED", "what it trusts"),
            ("GIT_CONFIG_COUNT", "what it trusts"),
        ];
        for (name, why) in cases {
            let err = EnvVars::from_json(&json!({ name: "http://evil.example:3128" })).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, EnvVarError::Denied(..)),
                "{name} must be refused: {text}"
            );
            assert!(
                text.starts_with(&format!("env var `{name}` is not allowed: ")),
                "{text}"
            );
            assert!(text.contains(why), "{name}: {text}");
            assert!(!text.contains("evil"), "the value leaked: {text}");
        }
        // Near misses are ordinary variables.
        let ok = EnvVars::from_json(
            &json!({"PATHS": "a", "MY_HOME_DIR": "b", "PROXY_MODE": "c", "path": "d"}),
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn refuses_nul_size_and_types() {
        assert_eq!(
            EnvVars::from_json(&json!({"A": "a\u{0}b"})).unwrap_err(),
            EnvVarError::Nul("A".into())
        );
        assert!(matches!(
            EnvVars::from_json(&json!({"A": 1})).unwrap_err(),
            EnvVarError::NotString(..)
        ));
        let many: serde_json::Map<String, Value> =
            (0..257).map(|i| (format!("V{i}"), json!("x"))).collect();
        assert_eq!(
            EnvVars::from_json(&Value::Object(many)).unwrap_err(),
            EnvVarError::TooMany(257)
        );
        let big = "x".repeat(MAX_TOTAL_BYTES);
        assert!(matches!(
            EnvVars::from_json(&json!({"A": big})).unwrap_err(),
            EnvVarError::TooLarge(_)
        ));
    }
}
