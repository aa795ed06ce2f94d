//! dend's TLS certificate: `<data>/tls/dend.crt` and `dend.key` (PEM). Generated self-signed on
//! first start (for `localhost`, this host's name and its loopback addresses); replace both files
//! with your own and restart `dend` to use them.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Certificate problems.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The certificate or key is unusable.
    #[error("TLS certificate {path}: {why}; fix or delete both files to get a new self-signed pair")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Where the pair lives under `data`.
pub fn paths(data: &Path) -> (PathBuf, PathBuf) {
    let dir = data.join("tls");
    (dir.join("dend.crt"), dir.join("dend.key"))
}

/// Loads the pair, generating a self-signed one first when there is none.
pub fn server_config(data: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (crt, key) = paths(data);
    if !crt.exists() || !key.exists() {
        generate(&crt, &key)?;
    }
    let bad = |path: &Path, why: String| TlsError::Bad { path: path.into(), why };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&crt)
        .map_err(|e| bad(&crt, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&crt, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(&crt, "no certificate in the file".into()));
    }
    let pk = PrivateKeyDer::from_pem_file(&key).map_err(|e| bad(&key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&crt, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, pk)
        .map_err(|e| bad(&crt, e.to_string()))?;
    Ok(Arc::new(cfg))
}

fn generate(crt: &Path, key: &Path) -> Result<(), TlsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if let Ok(h) = nix::unistd::gethostname() {
        names.push(h.to_string_lossy().into_owned());
    }
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| TlsError::Bad { path: crt.into(), why: e.to_string() })?;
    if let Some(dir) = crt.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(key).map_err(io(key))?;
    f.write_all(ck.signing_key.serialize_pem().as_bytes()).map_err(io(key))?;
    std::fs::write(crt, ck.cert.pem()).map_err(io(crt))?;
    tracing::info!(cert = %crt.display(), "generated a self-signed TLS certificate; replace it with your own if you like");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        server_config(dir.path()).unwrap();
        let (crt, key) = paths(dir.path());
        let first = std::fs::read(&crt).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        server_config(dir.path()).unwrap();
        assert_eq!(std::fs::read(&crt).unwrap(), first, "kept across restarts");
        std::fs::write(&crt, "garbage").unwrap();
        let e = server_config(dir.path()).unwrap_err().to_string();
        assert!(e.contains("dend.crt"), "{e}");
    }
}
