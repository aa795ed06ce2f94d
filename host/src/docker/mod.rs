//! The Docker bridge: a Docker API socket on the host (`<run>/docker.sock`) in front of a
//! dockerd sandboxed in a VM. Callers are known by their Unix peer credentials (`peer`);
//! requests are checked by a policy that reads their bodies (`policy`, `endpoint`) and
//! forwarded over the agent channel (`proxy`) to the sandbox VM, which is made and started on
//! first use (`sandbox`).

pub mod endpoint;
pub mod peer;
pub mod policy;
pub mod proxy;
pub mod reply;
pub mod sandbox;

use crate::config::DockerConfig;
use crate::vms::Den;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::UnixListener;

/// The body type the bridge sends and forwards.
pub type Body = http_body_util::combinators::BoxBody<hyper::body::Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The bridge's state.
pub struct Bridge {
    den: Arc<Den>,
    /// The policy.
    pub policy: policy::Policy,
    sandbox: sandbox::Sandbox,
    /// Unix seconds of the last request (for the resource saver).
    last_use: AtomicU64,
}

impl Bridge {
    /// A bridge for `den` as `cfg` says.
    pub fn new(den: Arc<Den>, cfg: &DockerConfig) -> Arc<Bridge> {
        let policy = policy::Policy { relaxed: cfg.allow.iter().cloned().collect(), shared: cfg.share.clone() };
        Arc::new(Bridge { den, policy, sandbox: sandbox::Sandbox::new(cfg.clone()), last_use: AtomicU64::new(0) })
    }

    fn touch(&self) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        self.last_use.store(now, Ordering::Relaxed);
    }
}

/// What the API tells about the bridge.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// The socket.
    pub socket: PathBuf,
    /// The sandbox VM's name.
    pub vm: String,
    /// Relaxed rules.
    pub allow: Vec<String>,
    /// Shared host folders.
    pub share: Vec<PathBuf>,
    /// Idle time before the sandbox stops (0: never).
    pub idle_stop_secs: u64,
}

impl Status {
    /// The status of a bridge configured by `cfg` on `socket`.
    pub fn new(cfg: &DockerConfig, socket: &Path) -> Status {
        Status {
            socket: socket.into(),
            vm: cfg.vm.clone(),
            allow: cfg.allow.clone(),
            share: cfg.share.clone(),
            idle_stop_secs: cfg.idle_stop_secs,
        }
    }
}

/// The socket path: the configured one, else `<run>/docker.sock`.
pub fn socket_path(cfg: &DockerConfig, run: &Path) -> PathBuf {
    cfg.socket.clone().unwrap_or_else(|| run.join("docker.sock"))
}

/// Binds the socket, open to every local user (who they are decides what they may do).
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// Serves the socket until the process ends.
pub async fn serve(bridge: Arc<Bridge>, listener: UnixListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(%e, "accept on the Docker socket");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let caller = peer::identify(&bridge.den, &stream);
        let upstream: proxy::Upstream = Default::default();
        let b = bridge.clone();
        let svc = hyper::service::service_fn(move |req| {
            let (b, caller, upstream) = (b.clone(), caller.clone(), upstream.clone());
            async move { Ok::<_, std::convert::Infallible>(proxy::handle(b, caller, upstream, req).await) }
        });
        tokio::spawn(async move {
            // A client may shut its write side after a request and still wait for the answer.
            let conn =
                hyper::server::conn::http1::Builder::new().half_close(true).serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%e, "Docker socket connection");
            }
        });
    }
}
