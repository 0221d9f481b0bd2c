//! Secrets (DESIGN.md §5), sealed and opened here and nowhere else: the secret parameters
//! of an execution, and the values of the secret store. AES-256-GCM with a fresh random
//! nonce per value; the associated data binds each value to its use (an execution's
//! parameters, or one stored secret's scope and name), so a sealed value copied elsewhere
//! does not open. The key is a 0600 file, generated at first start or given by path.
//!
//! Resolution (DESIGN.md §2 step 2) lives here too: a `secret: true` parameter not given
//! is filled from the store by its name, nearest scope first (action → pack → global);
//! `{"$secret": "name"}` asks for one explicitly, and only a parameter declared
//! `secret: true` may.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use attune_core::Action;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Binds an execution's sealed parameters to that purpose.
const PARAMETERS_AAD: &[u8] = b"attune/execution/secret-parameters/v1";

/// Why the key or a sealed value is unusable. Never contains key or plaintext bytes.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file could not be read or created.
    #[error("secret key file {path}: {detail}")]
    KeyFile {
        /// The path.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// An execution's sealed parameters failed authentication: wrong key or tampered data.
    #[error(
        "cannot decrypt the secret parameters: wrong key (--secret-key-file) or tampered data"
    )]
    Decrypt,
    /// A stored secret failed authentication.
    #[error("cannot decrypt stored secret `{name}` ({scope}): wrong key (--secret-key-file) or tampered data")]
    Stored {
        /// Its scope.
        scope: String,
        /// Its name.
        name: String,
    },
    /// The system gave no randomness for a nonce.
    #[error("no randomness for a nonce")]
    NoRandomness,
    /// This process was started without the key (`attune worker` without
    /// `--secret-key-file`).
    #[error("this worker has no secret key (--secret-key-file): it cannot open secret parameters")]
    NoKey,
}

/// Seals and opens values with the server's key.
pub struct SecretBox {
    cipher: Option<Aes256Gcm>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// Loads the 32-byte key at `path`, creating it (mode 0600) if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<SecretBox, SecretError> {
        SecretBox::load_key(path, true)
    }

    /// Loads the 32-byte key at `path`, which must exist (`--secret-key-file`: a typo
    /// must not quietly start a new key that opens nothing stored).
    pub fn load(path: &Path) -> Result<SecretBox, SecretError> {
        SecretBox::load_key(path, false)
    }

    fn load_key(path: &Path, create: bool) -> Result<SecretBox, SecretError> {
        let err = |detail: String| SecretError::KeyFile {
            path: path.display().to_string(),
            detail,
        };
        let key = match std::fs::read(path) {
            Ok(k) => {
                let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
                if meta.mode() & 0o077 != 0 {
                    return Err(err(format!(
                        "mode {:o} lets other users read it; chmod 600 it",
                        meta.mode() & 0o777
                    )));
                }
                k
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut k = vec![0u8; 32];
                getrandom::fill(&mut k).map_err(|e| err(format!("no randomness: {e}")))?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| err(e.to_string()))?;
                f.write_all(&k)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| err(e.to_string()))?;
                k
            }
            Err(e) => return Err(err(e.to_string())),
        };
        if key.len() != 32 {
            return Err(err(format!("expected 32 bytes, found {}", key.len())));
        }
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| err("invalid key".into()))?;
        Ok(SecretBox {
            cipher: Some(cipher),
        })
    }

    /// No key: every seal and open fails with [`SecretError::NoKey`] (a worker started
    /// without `--secret-key-file`, which leaves secret-bearing executions to others).
    pub fn absent() -> SecretBox {
        SecretBox { cipher: None }
    }

    /// Whether this box has a key.
    pub fn has_key(&self) -> bool {
        self.cipher.is_some()
    }

    /// Encrypts `plaintext`; the output is the 12-byte nonce followed by the ciphertext.
    fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|_| SecretError::NoRandomness)?;
        let ct = self
            .cipher
            .as_ref()
            .ok_or(SecretError::NoKey)?
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| SecretError::NoRandomness)?;
        let mut out = nonce.to_vec();
        out.extend(ct);
        Ok(out)
    }

    /// Decrypts what [`SecretBox::seal`] produced with the same `aad`; `None` if it does
    /// not authenticate.
    fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 12 {
            return None;
        }
        let (nonce, ct) = sealed.split_at(12);
        self.cipher
            .as_ref()?
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .ok()
    }

    /// Seals an execution's secret parameters.
    pub fn seal_parameters(&self, secrets: &Map<String, Value>) -> Result<Vec<u8>, SecretError> {
        let plain = Value::Object(secrets.clone()).to_string();
        self.seal(plain.as_bytes(), PARAMETERS_AAD)
    }

    /// Opens an execution's secret parameters.
    pub fn open_parameters(&self, sealed: &[u8]) -> Result<Map<String, Value>, SecretError> {
        if !self.has_key() {
            return Err(SecretError::NoKey);
        }
        let plain = self
            .open(sealed, PARAMETERS_AAD)
            .ok_or(SecretError::Decrypt)?;
        serde_json::from_slice(&plain).map_err(|_| SecretError::Decrypt)
    }

    /// Seals the value of the stored secret `name` in `scope`.
    pub fn seal_stored(
        &self,
        scope: &Scope,
        name: &str,
        value: &Value,
    ) -> Result<Vec<u8>, SecretError> {
        self.seal(
            value.to_string().as_bytes(),
            &stored_aad(&scope.as_str(), name),
        )
    }

    /// Opens the value of the stored secret `name` in `scope` (as the store names it).
    pub fn open_stored(
        &self,
        scope: &str,
        name: &str,
        sealed: &[u8],
    ) -> Result<Value, SecretError> {
        if !self.has_key() {
            return Err(SecretError::NoKey);
        }
        let stored = || SecretError::Stored {
            scope: scope.to_string(),
            name: name.to_string(),
        };
        let plain = self
            .open(sealed, &stored_aad(scope, name))
            .ok_or_else(stored)?;
        serde_json::from_slice(&plain).map_err(|_| stored())
    }
}

fn stored_aad(scope: &str, name: &str) -> Vec<u8> {
    let mut aad = b"attune/secret/v1\0".to_vec();
    aad.extend_from_slice(scope.as_bytes());
    aad.push(0);
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// Where a stored secret applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every action.
    Global,
    /// The actions of one pack.
    Pack(String),
    /// One action, `<pack>.<action>`.
    Action(String),
}

impl Scope {
    /// The pattern of a scope as requests give it (and [`Scope::as_str`] writes it).
    pub const PATTERN: &'static str = "^(global|pack:[a-z0-9_]+|action:[a-z0-9_]+[.][a-z0-9_]+)$";

    /// Parses `global`, `pack:<pack>` or `action:<pack>.<action>`.
    pub fn parse(s: &str) -> Result<Scope, String> {
        let bad = || {
            format!(
                "`{}` is not a scope: use global, pack:<pack> or action:<pack>.<action> (names of [a-z0-9_])",
                s.chars().take(100).collect::<String>()
            )
        };
        match s.split_once(':') {
            None if s == "global" => Ok(Scope::Global),
            Some(("pack", p)) if attune_core::is_valid_name(p) => Ok(Scope::Pack(p.to_string())),
            Some(("action", a)) => match a.split_once('.') {
                Some((p, n)) if attune_core::is_valid_name(p) && attune_core::is_valid_name(n) => {
                    Ok(Scope::Action(a.to_string()))
                }
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }

    /// `global`, `pack:<pack>` or `action:<pack>.<action>`.
    pub fn as_str(&self) -> String {
        match self {
            Scope::Global => "global".into(),
            Scope::Pack(p) => format!("pack:{p}"),
            Scope::Action(a) => format!("action:{a}"),
        }
    }

    /// The scopes searched for `action`'s secrets, nearest first.
    pub fn search_order(action: &Action) -> [String; 3] {
        [
            Scope::Action(action.action_ref.clone()).as_str(),
            Scope::Pack(action.pack_ref.clone()).as_str(),
            Scope::Global.as_str(),
        ]
    }
}

/// Checks a secret's name: 1 to 128 of `[A-Za-z0-9_.-]` (parameter names, mostly).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(format!(
            "`{}` is not a secret name: use 1 to 128 letters, digits, `_`, `.` or `-`",
            name.chars().take(140).collect::<String>()
        ));
    }
    Ok(())
}

/// The name in a `{"$secret": "name"}` reference, if `v` is one.
pub fn reference(v: &Value) -> Option<Result<&str, String>> {
    let Value::Object(m) = v else { return None };
    let r = m.get("$secret")?;
    Some(match (r, m.len()) {
        (Value::String(name), 1) => check_name(name).map(|()| name.as_str()),
        _ => Err("a secret reference is {\"$secret\": \"<name>\"} and nothing else".into()),
    })
}

/// Parameters with their secrets resolved from the store.
#[derive(Debug, Default)]
pub struct Resolved {
    /// The parameters, with stored values in place of references and missing secrets.
    pub parameters: Map<String, Value>,
    /// For each parameter filled from the store: `{name, scope, explicit}`.
    pub refs: Map<String, Value>,
}

/// Why resolution failed: a 422 (the request is wrong) or a 500 (a stored value does not
/// open). Messages name parameters and secrets, never values.
#[derive(Debug)]
pub enum ResolveError {
    /// The request cannot be honoured; every reason.
    Invalid(Vec<String>),
    /// A stored secret cannot be opened.
    Sealed(SecretError),
    /// The store failed.
    Store(attune_store::StoreError),
}

/// Resolves the secrets of a request for `action` (DESIGN.md §2 step 2).
pub async fn resolve(
    store: &attune_store::Store,
    secrets: &SecretBox,
    action: &Action,
    mut parameters: Map<String, Value>,
) -> Result<Resolved, ResolveError> {
    let scopes = Scope::search_order(action);
    let mut refs = Map::new();
    let mut wanted: Vec<(String, String, bool)> = Vec::new();
    let mut errors = Vec::new();
    for (param, value) in &parameters {
        match reference(value) {
            None => {}
            Some(Err(e)) => errors.push(format!("`{param}`: {e}")),
            Some(Ok(_)) if !action.parameters.is_secret(param) => errors.push(format!(
                "`{param}` is not declared `secret: true` by {}, so it cannot be given a stored secret",
                action.action_ref
            )),
            Some(Ok(name)) => wanted.push((param.clone(), name.to_string(), true)),
        }
    }
    for name in action.parameters.secret_names() {
        if !parameters.contains_key(name) {
            wanted.push((name.clone(), name.clone(), false));
        }
    }
    for (param, name, explicit) in wanted {
        match store
            .find_secret(&name, &scopes)
            .await
            .map_err(ResolveError::Store)?
        {
            Some((scope, sealed)) => {
                let value = secrets
                    .open_stored(&scope, &name, &sealed)
                    .map_err(ResolveError::Sealed)?;
                parameters.insert(param.clone(), value);
                refs.insert(
                    param,
                    json!({"name": name, "scope": scope, "explicit": explicit}),
                );
            }
            // A missing implicit one is left to validation (required or not).
            None if !explicit => {}
            None => errors.push(format!(
                "`{param}`: no stored secret `{name}` for {} (looked in {})",
                action.action_ref,
                scopes.join(", ")
            )),
        }
    }
    if errors.is_empty() {
        Ok(Resolved { parameters, refs })
    } else {
        Err(ResolveError::Invalid(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_detects_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let b = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let sealed = b.seal(b"hunter2", b"ctx").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(b.open(&sealed, b"ctx").unwrap(), b"hunter2");
        assert!(b.open(&sealed, b"other").is_none());
        let mut bad = sealed.clone();
        bad[15] ^= 1;
        assert!(b.open(&bad, b"ctx").is_none());
        let again = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(again.open(&sealed, b"ctx").unwrap(), b"hunter2");
    }

    #[test]
    fn a_stored_value_opens_only_under_its_own_scope_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let b = SecretBox::load_or_create(&dir.path().join("key")).unwrap();
        let v = json!({"user": "u", "password": "hunter2"});
        let sealed = b.seal_stored(&Scope::Pack("ops".into()), "db", &v).unwrap();
        assert_eq!(b.open_stored("pack:ops", "db", &sealed).unwrap(), v);
        let moved = b
            .open_stored("global", "db", &sealed)
            .unwrap_err()
            .to_string();
        assert_eq!(
            moved,
            "cannot decrypt stored secret `db` (global): wrong key (--secret-key-file) or tampered data"
        );
        assert!(b.open_stored("pack:ops", "db2", &sealed).is_err());
        assert!(
            b.open_parameters(&sealed).is_err(),
            "a stored value is not an execution's parameters"
        );
        // A missing key file given by path is refused, not created.
        let missing = dir.path().join("nope.key");
        let e = SecretBox::load(&missing).unwrap_err().to_string();
        assert!(e.contains("nope.key") && e.contains("No such file"), "{e}");
        assert!(!missing.exists());
    }
}
