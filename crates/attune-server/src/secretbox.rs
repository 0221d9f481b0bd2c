//! Encryption at rest of secret parameter values (DESIGN.md §5): AES-256-GCM with a fresh
//! random nonce per value and associated data binding the value to its use; the key lives
//! in a 0600 file generated at first start.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

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
    /// A sealed value failed authentication: wrong key or tampered data.
    #[error("cannot decrypt secret parameters: wrong key or tampered data")]
    Decrypt,
}

/// Seals and opens values with the server's key.
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// Loads the 32-byte key at `path`, creating it (mode 0600) if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<SecretBox, SecretError> {
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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
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
        Ok(SecretBox { cipher })
    }

    /// Encrypts `plaintext`; the output is the 12-byte nonce followed by the ciphertext.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|_| SecretError::Decrypt)?;
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| SecretError::Decrypt)?;
        let mut out = nonce.to_vec();
        out.extend(ct);
        Ok(out)
    }

    /// Decrypts what [`SecretBox::seal`] produced with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < 12 {
            return Err(SecretError::Decrypt);
        }
        let (nonce, ct) = sealed.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| SecretError::Decrypt)
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
        assert!(b.open(&sealed, b"other").is_err());
        let mut bad = sealed.clone();
        bad[15] ^= 1;
        assert!(b.open(&bad, b"ctx").is_err());
        let again = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(again.open(&sealed, b"ctx").unwrap(), b"hunter2");
    }
}
