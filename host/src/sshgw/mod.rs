//! The SSH gateway (first slice): one port (2222) in front of every VM. The SSH user name
//! picks the VM (`ssh web1@host -p 2222`, or `ssh alice+web1@host` to name the Den user); the
//! key picks the Den user (keys from `den user key add`); the user needs the operator role on
//! the VM. Commands (`ssh web1@host cmd`) run through the guest agent, so no guest port is open
//! to the network; their output and exit status come back. The gateway's host key is made once
//! (`<data>/ssh/ssh_host_ed25519_key`) and kept.

mod session;

use crate::vms::Den;
use russh::keys::PrivateKey;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Gateway errors at start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The host key could not be made, read or written.
    #[error("SSH host key {path}: {why}")]
    HostKey {
        /// The key file.
        path: String,
        /// What went wrong.
        why: String,
    },
}

/// Loads the gateway's host key, making it on first use.
pub fn host_key(data: &Path) -> Result<PrivateKey, GatewayError> {
    let path = data.join("ssh").join("ssh_host_ed25519_key");
    let err = |why: String| GatewayError::HostKey { path: path.display().to_string(), why };
    if path.exists() {
        return PrivateKey::read_openssh_file(&path).map_err(|e| err(e.to_string()));
    }
    let mut seed = [0u8; 32];
    crate::auth::token::getrandom(&mut seed).map_err(err)?;
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
        .open(&path)
        .map_err(|e| err(e.to_string()))?;
    f.write_all(pem.as_bytes()).map_err(|e| err(e.to_string()))?;
    tracing::info!(key = %path.display(), "made the SSH gateway's host key");
    Ok(key)
}

/// Serves SSH on `listener` until the process ends.
pub async fn serve(den: Arc<Den>, listener: tokio::net::TcpListener, key: PrivateKey) {
    let config = Arc::new(russh::server::Config {
        keys: vec![key],
        auth_rejection_time: Duration::from_secs(1),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        ..Default::default()
    });
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%e, "accept on the SSH port");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let handler = session::Gateway::new(den.clone(), peer);
        let config = config.clone();
        tokio::spawn(async move {
            match russh::server::run_stream(config, tcp, handler).await {
                Ok(running) => {
                    if let Err(e) = running.await {
                        tracing::debug!(%peer, %e, "SSH session ended");
                    }
                }
                Err(e) => tracing::debug!(%peer, %e, "SSH handshake"),
            }
        });
    }
}
