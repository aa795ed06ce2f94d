//! Serving the API: on the local Unix socket, where the caller's identity comes from the socket's
//! peer credentials (root, and dend's own user, are the local admin), and on HTTPS, where callers
//! present a bearer token.

use crate::{Caller, Services, Transport};
use axum::{Extension, Router};
use den_auth::conn_limit::{ConnLimits, ConnPermit};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

/// How long a client has to send a request's headers, and how long an idle keep-alive
/// connection stays open waiting for the next request.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(15);
/// HTTPS connections open at once, in all and from one address.
pub const HTTPS_MAX_CONNECTIONS: (usize, usize) = (1024, 128);

fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    router: Router,
    transport: Transport,
    permit: Option<ConnPermit>,
) {
    let svc = TowerToHyperService::new(router.layer(Extension(transport)));
    tokio::spawn(async move {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .serve_connection(TokioIo::new(stream), svc);
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%e, "API connection");
        }
        drop(permit);
    });
}

/// Binds the Unix socket (refusing if another dend answers on it).
pub async fn bind_unix(socket: &Path) -> anyhow::Result<UnixListener> {
    if tokio::net::UnixStream::connect(socket).await.is_ok() {
        anyhow::bail!("another dend is already serving {}; stop it first", socket.display());
    }
    let bound = den_net_util::unix::bind_socket(socket, 0o600).and_then(UnixListener::from_std);
    bound.map_err(|e| anyhow::anyhow!("binding {}: {e}", socket.display()))
}

/// Serves the Unix socket until the process ends.
pub async fn serve_unix(services: Services, listener: UnixListener) {
    let router = crate::router(services);
    let me = nix::unistd::geteuid().as_raw();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%e, "accept on the API socket");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
        if uid != 0 && uid != me {
            continue; // the socket is 0600; anyone else reaching it is refused outright
        }
        let user = if uid == 0 { "root".to_string() } else { format!("uid{uid}") };
        serve_connection(stream, router.clone(), Transport::Local(Caller::local_admin(&user)), None);
    }
}

/// What the HTTPS port serves: LPK apps on their host names and under `/apps/`, the API under
/// `/api/`, the web console everywhere else.
pub fn https_router(services: Services) -> Router {
    use tower::ServiceExt;
    let apps = den_lpk_host::ingress::Ingress::new(services.apps.clone(), services.accounts.clone());
    let api = crate::router(services);
    let web = Router::new().fallback(axum::routing::get(crate::web::serve));
    Router::new().fallback_service(tower::service_fn(move |req: axum::extract::Request| {
        let (apps, api, web) = (apps.clone(), api.clone(), web.clone());
        async move {
            if apps.claims(&req) {
                return Ok::<_, std::convert::Infallible>(apps.handle(req).await);
            }
            let to = if req.uri().path().starts_with("/api/") { api } else { web };
            to.oneshot(req).await
        }
    }))
}

/// Serves HTTPS on `listener` with `tls` until the process ends. A handshake gets 10 s, the
/// headers of each request [`HEAD_TIMEOUT`]; connections are capped ([`HTTPS_MAX_CONNECTIONS`]).
pub async fn serve_https(services: Services, listener: TcpListener, tls: Arc<rustls::ServerConfig>) {
    let router = https_router(services);
    let limits = ConnLimits::new(HTTPS_MAX_CONNECTIONS.0, HTTPS_MAX_CONNECTIONS.1);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, addr): (_, SocketAddr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%e, "accept on the HTTPS port");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = limits.admit(addr.ip()) else {
            tracing::debug!(%addr, "HTTPS connection over the cap: closed");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => serve_connection(stream, router, Transport::Remote(addr), Some(permit)),
                Ok(Err(e)) => tracing::debug!(%addr, %e, "TLS handshake"),
                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
            }
        });
    }
}
