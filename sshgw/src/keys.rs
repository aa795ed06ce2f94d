//! The gateway's two Ed25519 keys, each made once and kept in `<data>/ssh/`: the host key that
//! clients see, and the client key the gateway logs into guests' sshd with (its public half is
//! installed in every guest at first boot).

use russh::keys::PrivateKey;
use std::path::{Path, PathBuf};

/// Gateway errors at start.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key could not be made, read or written.
    #[error("SSH key {path}: {why}")]
    Key {
        /// The key file.
        path: String,
        /// What went wrong.
        why: String,
    },
}

/// Where the host key lives.
pub fn host_key_path(data: &Path) -> PathBuf {
    data.join("ssh").join("ssh_host_ed25519_key")
}

/// Where the key for guests' sshd lives.
pub fn client_key_path(data: &Path) -> PathBuf {
    data.join("ssh").join("gateway_ed25519_key")
}

/// The gateway's host key, made on first use.
pub fn host_key(data: &Path) -> Result<PrivateKey, KeyError> {
    load_or_make(&host_key_path(data))
}

/// The key the gateway logs into guests with, made on first use.
pub fn client_key(data: &Path) -> Result<PrivateKey, KeyError> {
    load_or_make(&client_key_path(data))
}

/// The OpenSSH public line of `key` (`ssh-ed25519 AAAA... den-gateway`).
pub fn public_line(key: &PrivateKey) -> String {
    let mut public = key.public_key().clone();
    public.set_comment("den-gateway");
    public.to_openssh().unwrap_or_default()
}

/// Reads an OpenSSH private key file, or makes a new Ed25519 key there (mode 0600).
fn load_or_make(path: &Path) -> Result<PrivateKey, KeyError> {
    let err = |why: String| KeyError::Key { path: path.display().to_string(), why };
    if path.exists() {
        return PrivateKey::read_openssh_file(path).map_err(|e| err(e.to_string()));
    }
    let mut seed = [0u8; 32];
    den_auth::token::getrandom(&mut seed).map_err(err)?;
    let key = PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let pem = key.to_openssh(russh::keys::ssh_key::LineEnding::LF).map_err(|e| err(e.to_string()))?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| err(e.to_string()))?;
    f.write_all(pem.as_bytes()).map_err(|e| err(e.to_string()))?;
    tracing::info!(key = %path.display(), "made an SSH key for the gateway");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = host_key(dir.path()).unwrap();
        let b = host_key(dir.path()).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        let c = client_key(dir.path()).unwrap();
        assert_ne!(a.public_key(), c.public_key(), "two different keys");
        assert!(public_line(&c).starts_with("ssh-ed25519 AAAA") && public_line(&c).ends_with(" den-gateway"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(client_key_path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
