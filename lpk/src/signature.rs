//! Package signatures. `META/release.lock` is a JSON list of `{path, digest, size}` for every
//! file outside `META/` (`digest` is `sha256:<hex>`); `META/signatures/<key>.sig` is an ed25519
//! signature (64 raw bytes, or their base64) over the exact bytes of `release.lock`, made by the
//! key named `<key>`. Den checks the lock against the files it hashed while reading the package,
//! and the signature with the public key it trusts under that name.

use crate::LpkError;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Size and digest of one file, as hashed while the package was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Bytes.
    pub size: u64,
    /// `sha256:<hex>`.
    pub digest: String,
}

/// One line of `release.lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockEntry {
    /// Path in the package.
    pub path: String,
    /// `sha256:<hex>` (a bare hex digest is accepted).
    pub digest: String,
    /// Bytes.
    pub size: u64,
}

/// Public keys Den trusts, by the name packages sign with.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<String, VerifyingKey>,
}

impl Keyring {
    /// Adds a key given as base64 or hex of its 32 bytes.
    pub fn add(&mut self, name: &str, text: &str) -> Result<(), String> {
        let t = text.trim();
        let bytes = hex::decode(t)
            .ok()
            .or_else(|| base64::engine::general_purpose::STANDARD.decode(t).ok())
            .ok_or_else(|| format!("key `{name}` is neither base64 nor hex"))?;
        let arr: [u8; 32] =
            bytes.try_into().map_err(|_| format!("key `{name}` is not 32 bytes (an ed25519 public key)"))?;
        let key =
            VerifyingKey::from_bytes(&arr).map_err(|_| format!("key `{name}` is not a valid ed25519 public key"))?;
        self.keys.insert(name.to_string(), key);
        Ok(())
    }

    /// Loads `<name>.pub` files from a directory (missing directory: empty keyring).
    pub fn load_dir(dir: &std::path::Path) -> Result<Keyring, LpkError> {
        let mut ring = Keyring::default();
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ring),
            Err(e) => return Err(LpkError::io(dir, e)),
        };
        for e in rd.flatten() {
            let p = e.path();
            let Some(name) = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".pub")) else {
                continue;
            };
            let text = std::fs::read_to_string(&p).map_err(|e| LpkError::io(&p, e))?;
            ring.add(name, &text).map_err(|r| LpkError::io(&p, std::io::Error::other(r)))?;
        }
        Ok(ring)
    }

    /// Names of the keys.
    pub fn names(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }
}

/// What the signature check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "state", content = "signers", rename_all = "snake_case")]
pub enum Signed {
    /// No `META/` signature.
    Unsigned,
    /// Signed by these trusted keys, and every file matches.
    Verified(Vec<String>),
    /// Signed only by keys Den does not know: files match the lock, but who made it is unproven.
    UnknownSigner(Vec<String>),
}

fn sig_err(r: impl Into<String>) -> LpkError {
    LpkError::Signature(r.into())
}

/// Checks the lock against the hashed files and the signatures against the keyring.
pub fn check(
    lock: Option<&[u8]>,
    sigs: &BTreeMap<String, Vec<u8>>,
    files: &BTreeMap<String, FileDigest>,
    keys: &Keyring,
) -> Result<Signed, LpkError> {
    let Some(lock) = lock else {
        if let Some(name) = sigs.keys().next() {
            return Err(sig_err(format!(
                "META/signatures/{name}.sig is there but META/release.lock, what it signs, is not"
            )));
        }
        return Ok(Signed::Unsigned);
    };
    let entries: Vec<LockEntry> = serde_json::from_slice(lock)
        .map_err(|e| sig_err(format!("META/release.lock is not a JSON list of {{path, digest, size}}: {e}")))?;
    let mut listed = BTreeMap::new();
    for e in &entries {
        let want = if e.digest.starts_with("sha256:") { e.digest.clone() } else { format!("sha256:{}", e.digest) };
        let Some(have) = files.get(&e.path) else {
            return Err(sig_err(format!("META/release.lock lists `{}`, which the package does not have", e.path)));
        };
        if have.size != e.size || !have.digest.eq_ignore_ascii_case(&want) {
            return Err(sig_err(format!("`{}` does not match META/release.lock (changed after signing)", e.path)));
        }
        if listed.insert(e.path.as_str(), ()).is_some() {
            return Err(sig_err(format!("META/release.lock lists `{}` twice", e.path)));
        }
    }
    if let Some(extra) = files.keys().find(|p| !listed.contains_key(p.as_str())) {
        return Err(sig_err(format!("`{extra}` is not in META/release.lock (added after signing)")));
    }
    if sigs.is_empty() {
        return Ok(Signed::Unsigned);
    }
    let (mut good, mut unknown) = (Vec::new(), Vec::new());
    for (name, raw) in sigs {
        let Some(key) = keys.keys.get(name) else {
            unknown.push(name.clone());
            continue;
        };
        let bytes = if raw.len() == 64 {
            raw.clone()
        } else {
            let text = String::from_utf8_lossy(raw);
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| sig_err(format!("META/signatures/{name}.sig is neither 64 bytes nor their base64")))?
        };
        let sig = Signature::from_slice(&bytes)
            .map_err(|_| sig_err(format!("META/signatures/{name}.sig is not an ed25519 signature")))?;
        key.verify_strict(lock, &sig).map_err(|_| {
            sig_err(format!(
                "META/signatures/{name}.sig does not match: the package was not signed by `{name}`, or was changed"
            ))
        })?;
        good.push(name.clone());
    }
    Ok(if good.is_empty() { Signed::UnknownSigner(unknown) } else { Signed::Verified(good) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn setup() -> (Vec<u8>, BTreeMap<String, FileDigest>, SigningKey, Keyring) {
        let files: BTreeMap<String, FileDigest> =
            [("manifest.yml".to_string(), FileDigest { size: 3, digest: "sha256:ab".into() })].into();
        let lock =
            serde_json::to_vec(&[LockEntry { path: "manifest.yml".into(), digest: "sha256:AB".into(), size: 3 }])
                .unwrap();
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let mut ring = Keyring::default();
        ring.add("acme", &hex::encode(key.verifying_key().as_bytes())).unwrap();
        (lock, files, key, ring)
    }

    #[test]
    fn good_bad_and_unknown_signatures() {
        let (lock, files, key, ring) = setup();
        let sig = key.sign(&lock).to_bytes().to_vec();
        let sigs: BTreeMap<_, _> = [("acme".to_string(), sig.clone())].into();
        assert_eq!(check(Some(&lock), &sigs, &files, &ring).unwrap(), Signed::Verified(vec!["acme".into()]));
        let b64: BTreeMap<_, _> =
            [("acme".to_string(), base64::engine::general_purpose::STANDARD.encode(&sig).into_bytes())].into();
        assert!(matches!(check(Some(&lock), &b64, &files, &ring).unwrap(), Signed::Verified(_)));
        let other = SigningKey::from_bytes(&[8u8; 32]).sign(&lock).to_bytes().to_vec();
        let forged: BTreeMap<_, _> = [("acme".to_string(), other)].into();
        assert!(check(Some(&lock), &forged, &files, &ring).unwrap_err().to_string().contains("does not match"));
        let unknown: BTreeMap<_, _> = [("stranger".to_string(), sig)].into();
        assert_eq!(
            check(Some(&lock), &unknown, &files, &ring).unwrap(),
            Signed::UnknownSigner(vec!["stranger".into()])
        );
        assert_eq!(check(None, &BTreeMap::new(), &files, &ring).unwrap(), Signed::Unsigned);
        assert!(check(None, &unknown, &files, &ring).unwrap_err().to_string().contains("release.lock"));
    }

    #[test]
    fn the_lock_must_match_the_files() {
        let (lock, mut files, _, ring) = setup();
        files.insert("extra".into(), FileDigest { size: 1, digest: "sha256:00".into() });
        assert!(check(Some(&lock), &BTreeMap::new(), &files, &ring)
            .unwrap_err()
            .to_string()
            .contains("added after signing"));
        files.remove("extra");
        files.get_mut("manifest.yml").unwrap().size = 4;
        assert!(check(Some(&lock), &BTreeMap::new(), &files, &ring)
            .unwrap_err()
            .to_string()
            .contains("changed after signing"));
        assert!(check(Some(b"{}"), &BTreeMap::new(), &files, &ring).unwrap_err().to_string().contains("JSON list"));
    }
}
