//! SSH public keys of Den users (for the SSH gateway): parsing an OpenSSH `authorized_keys`
//! line and its SHA-256 fingerprint, as `ssh-keygen -l` prints it.

use base64::Engine;
use sha2::{Digest, Sha256};

/// Key types accepted.
const TYPES: [&str; 8] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-dss",
];

/// The SHA-256 fingerprint of a key's wire-format blob, as `ssh-keygen -l` prints it
/// (`SHA256:` and unpadded base64). The one function for stored keys and for keys the SSH gateway
/// is offered, so both always match.
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

/// A parsed public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey {
    /// Type (`ssh-ed25519`, ...).
    pub kind: String,
    /// The key blob, base64 as in the line.
    pub blob: String,
    /// The comment (may be empty).
    pub comment: String,
    /// `SHA256:...`.
    pub fingerprint: String,
}

impl SshKey {
    /// Parses `type base64 [comment]`; the blob must decode and start with its own type.
    pub fn parse(line: &str) -> Result<SshKey, String> {
        let line = line.trim();
        let mut parts = line.splitn(3, char::is_whitespace);
        let (kind, blob) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let comment = parts.next().unwrap_or("").trim().to_string();
        if !TYPES.contains(&kind) {
            return Err(format!("`{kind}` is not an SSH public key type (ssh-ed25519, ssh-rsa, ecdsa-sha2-*, sk-*)"));
        }
        if line.contains(['\n', '\r', '\0']) || line.len() > 16 * 1024 {
            return Err("an SSH public key is one line, at most 16 KiB".into());
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|_| "the key's base64 part does not decode; paste the whole .pub line".to_string())?;
        // The blob starts with the type as an SSH string: a 4-byte big-endian length, then it.
        let inner = raw.get(4..4 + kind.len()).map(|b| b == kind.as_bytes()).unwrap_or(false);
        let len_ok = raw.get(..4).map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize == kind.len());
        if !inner || len_ok != Some(true) {
            return Err(format!("the key data is not a {kind} key"));
        }
        Ok(SshKey { kind: kind.into(), blob: blob.into(), comment, fingerprint: fingerprint(&raw) })
    }

    /// The `authorized_keys` line.
    pub fn line(&self) -> String {
        if self.comment.is_empty() {
            format!("{} {}", self.kind, self.blob)
        } else {
            format!("{} {} {}", self.kind, self.blob, self.comment)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ed25519 public key and the fingerprint `ssh-keygen -lf` prints for it.
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop";

    #[test]
    fn parses_and_fingerprints() {
        let k = SshKey::parse(KEY).unwrap();
        assert_eq!((k.kind.as_str(), k.comment.as_str()), ("ssh-ed25519", "me@laptop"));
        assert!(k.fingerprint.starts_with("SHA256:") && k.fingerprint.len() == 50, "{}", k.fingerprint);
        assert_eq!(k.line(), KEY);
        assert!(SshKey::parse("ssh-ed25519 !!!notbase64").is_err());
        assert!(
            SshKey::parse("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl").is_err(),
            "type mismatch"
        );
        assert!(SshKey::parse("pgp-key AAAA").is_err());
        assert!(SshKey::parse("").is_err());
    }
}
