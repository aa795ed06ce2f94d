//! Package signatures. `META/release.lock` is a JSON list with one line for every entry of the
//! package (files, directories, symlinks, hard links) but the lock and the signatures
//! themselves: `{path, type, ...}` where `type` is `file` (with `digest` `sha256:<hex>`,
//! `size` and `mode`, the permission bits in octal), `dir`, `symlink` or `hardlink` (both with
//! `target`). `META/signatures/<key>.sig` is an ed25519 signature (64 raw bytes, or their
//! base64) over the exact bytes of `release.lock`, made by the key named `<key>`. Den checks the
//! lock against the entries it read, so no entry, link target or mode can be added or changed
//! after signing, and the signature with the public key it trusts under that name.

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

/// One entry of the package as the signature covers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EntryDigest {
    /// A regular file.
    File {
        /// Its bytes' size and digest.
        #[serde(flatten)]
        content: FileDigest,
        /// Permission bits (`0o7777`).
        mode: u32,
    },
    /// A directory.
    Dir,
    /// A symbolic link, with its target as written.
    Symlink {
        /// The target.
        target: String,
    },
    /// A hard link to an earlier file, by its clean name.
    Hardlink {
        /// The file it links to.
        target: String,
    },
}

/// One line of `release.lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockEntry {
    /// Path in the package.
    pub path: String,
    /// `file`, `dir`, `symlink` or `hardlink`.
    #[serde(rename = "type", default = "file_type")]
    pub kind: String,
    /// Files: `sha256:<hex>` (a bare hex digest is accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Files: bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Files: permission bits, in octal (`"0644"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Links: the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

fn file_type() -> String {
    "file".into()
}

impl LockEntry {
    /// The lock line of `entry` at `path`.
    pub fn of(path: &str, entry: &EntryDigest) -> LockEntry {
        let mut line = LockEntry {
            path: path.into(),
            kind: kind_name(entry).into(),
            digest: None,
            size: None,
            mode: None,
            target: None,
        };
        match entry {
            EntryDigest::File { content, mode } => {
                line.digest = Some(content.digest.clone());
                line.size = Some(content.size);
                line.mode = Some(format!("{:04o}", mode & 0o7777));
            }
            EntryDigest::Dir => {}
            EntryDigest::Symlink { target } | EntryDigest::Hardlink { target } => line.target = Some(target.clone()),
        }
        line
    }

    /// Whether this line says what `have` is; `Err` says how it differs.
    fn matches(&self, have: &EntryDigest) -> Result<(), String> {
        let missing = |field: &str| {
            format!("META/release.lock lists `{}` without its {field}; sign the package again", self.path)
        };
        match (self.kind.as_str(), have) {
            ("file", EntryDigest::File { content, mode }) => {
                let digest = self.digest.as_deref().ok_or_else(|| missing("digest"))?;
                let want = if digest.starts_with("sha256:") { digest.to_string() } else { format!("sha256:{digest}") };
                let size = self.size.ok_or_else(|| missing("size"))?;
                let lock_mode = self.mode.as_deref().ok_or_else(|| missing("mode"))?;
                let lock_mode = u32::from_str_radix(lock_mode, 8)
                    .map_err(|_| format!("gives `{}` the mode `{lock_mode}`, which is not octal", self.path))?;
                if size != content.size || !content.digest.eq_ignore_ascii_case(&want) {
                    return Err(format!("`{}` does not match META/release.lock (changed after signing)", self.path));
                }
                if lock_mode & 0o7777 != mode & 0o7777 {
                    return Err(format!(
                        "`{}` has the mode {:04o}, META/release.lock says {lock_mode:04o} (changed after signing)",
                        self.path,
                        mode & 0o7777
                    ));
                }
                Ok(())
            }
            ("dir", EntryDigest::Dir) => Ok(()),
            ("symlink", EntryDigest::Symlink { target }) | ("hardlink", EntryDigest::Hardlink { target }) => {
                if self.target.as_deref() != Some(target.as_str()) {
                    return Err(format!(
                        "`{}` links to `{target}`, META/release.lock says `{}` (changed after signing)",
                        self.path,
                        self.target.as_deref().unwrap_or("")
                    ));
                }
                Ok(())
            }
            (kind, have) if ["file", "dir", "symlink", "hardlink"].contains(&kind) => Err(format!(
                "`{}` is a {}, META/release.lock says a {kind} (changed after signing)",
                self.path,
                kind_name(have)
            )),
            (kind, _) => Err(format!("META/release.lock gives `{}` the unknown type `{kind}`", self.path)),
        }
    }
}

fn kind_name(e: &EntryDigest) -> &'static str {
    match e {
        EntryDigest::File { .. } => "file",
        EntryDigest::Dir => "dir",
        EntryDigest::Symlink { .. } => "symlink",
        EntryDigest::Hardlink { .. } => "hardlink",
    }
}

/// Entries the lock does not list: the `META/` folders, the lock, and the signatures.
pub fn unsigned_entry(name: &str) -> bool {
    name == "META"
        || name == "META/signatures"
        || name == "META/release.lock"
        || name.strip_prefix("META/signatures/").is_some_and(|k| k.ends_with(".sig") && !k.contains('/'))
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

/// Checks the lock against the package's entries and the signatures against the keyring.
pub fn check(
    lock: Option<&[u8]>,
    sigs: &BTreeMap<String, Vec<u8>>,
    entries: &BTreeMap<String, EntryDigest>,
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
    let lines: Vec<LockEntry> = serde_json::from_slice(lock)
        .map_err(|e| sig_err(format!("META/release.lock is not a JSON list of {{path, type, ...}}: {e}")))?;
    let mut listed = BTreeMap::new();
    for line in &lines {
        let Some(have) = entries.get(&line.path) else {
            return Err(sig_err(format!("META/release.lock lists `{}`, which the package does not have", line.path)));
        };
        line.matches(have).map_err(sig_err)?;
        if listed.insert(line.path.as_str(), ()).is_some() {
            return Err(sig_err(format!("META/release.lock lists `{}` twice", line.path)));
        }
    }
    if let Some(extra) = entries.keys().find(|p| !unsigned_entry(p) && !listed.contains_key(p.as_str())) {
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

    fn manifest() -> EntryDigest {
        EntryDigest::File { content: FileDigest { size: 3, digest: "sha256:ab".into() }, mode: 0o644 }
    }

    fn setup() -> (Vec<u8>, BTreeMap<String, EntryDigest>, SigningKey, Keyring) {
        let files: BTreeMap<String, EntryDigest> = [
            ("manifest.yml".to_string(), manifest()),
            ("bin".to_string(), EntryDigest::Dir),
            ("bin/l".to_string(), EntryDigest::Symlink { target: "../manifest.yml".into() }),
            ("META".to_string(), EntryDigest::Dir),
        ]
        .into();
        let mut line = LockEntry::of("manifest.yml", &manifest());
        line.digest = Some("sha256:AB".into());
        let lines = [line, LockEntry::of("bin", &EntryDigest::Dir), LockEntry::of("bin/l", &files["bin/l"])];
        let lock = serde_json::to_vec(&lines).unwrap();
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
    fn the_lock_must_match_every_entry() {
        let (lock, files, _, ring) = setup();
        let refused = |files: &BTreeMap<String, EntryDigest>| {
            check(Some(&lock), &BTreeMap::new(), files, &ring).map(|_| String::new()).unwrap_or_else(|e| e.to_string())
        };
        assert_eq!(refused(&files), "");
        let changed = |name: &str, e: EntryDigest| {
            let mut f = files.clone();
            f.insert(name.into(), e);
            refused(&f)
        };
        let file = |size, mode| EntryDigest::File { content: FileDigest { size, digest: "sha256:ab".into() }, mode };
        assert!(changed("extra", EntryDigest::Dir).contains("added after signing"));
        assert!(changed("l2", EntryDigest::Symlink { target: "x".into() }).contains("added after signing"));
        assert!(changed("manifest.yml", file(4, 0o644)).contains("changed after signing"));
        assert!(changed("manifest.yml", file(3, 0o755)).contains("mode 0755"));
        assert!(changed("bin/l", EntryDigest::Symlink { target: "/etc".into() }).contains("links to `/etc`"));
        assert!(changed("bin", EntryDigest::Symlink { target: "/".into() }).contains("is a symlink"));
        assert_eq!(changed("META/signatures/x.sig", file(64, 0o644)), "", "signatures are not in the lock");
        assert!(changed("META/other", file(1, 0o644)).contains("added after signing"));
        assert!(check(Some(b"{}"), &BTreeMap::new(), &files, &ring).unwrap_err().to_string().contains("JSON list"));
        let old = br#"[{"path": "manifest.yml", "digest": "sha256:ab", "size": 3}]"#;
        let e = check(Some(old), &BTreeMap::new(), &files, &ring).unwrap_err().to_string();
        assert!(e.contains("without its mode"), "{e}");
    }
}
