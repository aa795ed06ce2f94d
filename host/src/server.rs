//! Serving the API on the local Unix socket. The caller's identity comes from the socket's peer
//! credentials: root (and dend's own user) is the local admin.

use crate::api::{self, Caller};
use crate::vms::Den;
use axum::Extension;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::path::Path;
use std::sync::Arc;
use tokio::net::UnixListener;

/// Binds the socket (refusing if another dend answers on it) and serves until the process ends.
pub async fn serve(den: Arc<Den>, socket: &Path) -> anyhow::Result<()> {
    if tokio::net::UnixStream::connect(socket).await.is_ok() {
        anyhow::bail!("another dend is already serving {}; stop it first", socket.display());
    }
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket).map_err(|e| anyhow::anyhow!("binding {}: {e}", socket.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    let router = api::router(den);
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%e, "accept on the API socket");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
        if uid != 0 && uid != me {
            continue; // the socket is 0600; anyone else reaching it is refused outright
        }
        let user = if uid == 0 { "root".to_string() } else { format!("uid{uid}") };
        let svc = TowerToHyperService::new(router.clone().layer(Extension(Caller { user })));
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%e, "API connection");
            }
        });
    }
}
