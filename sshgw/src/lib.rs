//! The SSH gateway: one port (2222) in front of every VM, with one set of keys.
//!
//! - [`keys`]: the gateway's host key and the key it logs into guests with, made once;
//! - [`route`]: the SSH user name picks the VM (`web1`, `alice+web1`, `web1:dev`), and the Den
//!   user needs the operator role on it;
//! - `session`: one connection: authentication (Den users' keys or passwords, failures
//!   rate-limited per address and user), session channels and `ssh -L` forwards;
//! - `launch`: starting a session channel: refusals, the menu, reaching the VM, recording;
//! - `upstream`: the gateway's SSH connection to the guest's sshd through the agent, with the
//!   guest's host key pinned;
//! - `proxy`: a started session channel, to the guest's sshd or (guests without sshd) to an
//!   agent exec with a PTY;
//! - `menu`: the VM menu of a plain `ssh host -p 2222`, and the offer to start a stopped VM;
//! - `record`: asciicast v2 recordings of interactive sessions.

mod grace;
pub mod keys;
mod launch;
mod menu;
mod proxy;
mod record;
pub mod route;
mod session;
mod upstream;

pub use keys::{client_key, host_key, public_line, KeyError};

use den_auth::conn_limit::ConnLimits;
use den_vms::Den;
use russh::keys::PrivateKey;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// How long a connection has to log in (OpenSSH's `LoginGraceTime`).
pub const LOGIN_GRACE: Duration = Duration::from_secs(30);
/// How long a connection may send nothing at all, not even an answer to a keepalive.
pub const INACTIVITY_TIMEOUT: Duration = Duration::from_secs(300);
/// SSH connections open at once, in all and from one address.
pub const MAX_CONNECTIONS: (usize, usize) = (256, 32);

/// Serves SSH on `listener` until the process ends: `host_key` identifies the gateway,
/// `client_key` logs it into guests.
pub async fn serve(
    den: Arc<Den>,
    accounts: Arc<den_auth::Accounts>,
    listener: tokio::net::TcpListener,
    host_key: PrivateKey,
    client_key: PrivateKey,
) {
    let config = Arc::new(russh::server::Config {
        keys: vec![host_key],
        auth_rejection_time: Duration::from_secs(1),
        auth_rejection_time_initial: Some(Duration::ZERO),
        // No packet at all (keepalive answers count) for this long ends a connection.
        inactivity_timeout: Some(INACTIVITY_TIMEOUT),
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 4,
        nodelay: true,
        ..Default::default()
    });
    let limits = ConnLimits::new(MAX_CONNECTIONS.0, MAX_CONNECTIONS.1);
    if let Err(e) = den.store.end_open_ssh_sessions() {
        tracing::warn!(%e, "closing the SSH sessions of the previous dend");
    }
    let client_key = Arc::new(client_key);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%e, "accept on the SSH port");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = limits.admit(peer.ip()) else {
            tracing::debug!(%peer, "SSH connection over the cap: closed");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let logged_in = Arc::new(AtomicBool::new(false));
        let handler = session::Gateway::new(den.clone(), accounts.clone(), peer, client_key.clone(), logged_in.clone());
        let config = config.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + LOGIN_GRACE;
            let stream = grace::GraceStream::new(tcp, deadline, logged_in);
            let started = tokio::time::timeout_at(deadline, russh::server::run_stream(config, stream, handler)).await;
            match started {
                Ok(Ok(running)) => {
                    if let Err(e) = running.await {
                        tracing::debug!(%peer, %e, "SSH session ended");
                    }
                }
                Ok(Err(e)) => tracing::debug!(%peer, %e, "SSH handshake"),
                Err(_) => tracing::debug!(%peer, "SSH handshake timed out"),
            }
            drop(permit);
        });
    }
}
