//! The Docker bridge: a Docker API socket on the host (`<run>/docker.sock`) in front of a
//! dockerd sandboxed in a VM. Callers are known by their Unix peer credentials (`peer`);
//! requests are checked by a policy that reads their bodies (`policy`, `endpoint`) and
//! forwarded over the agent channel (`proxy`) to the sandbox VM, which is made and started on
//! first use (`sandbox`) and stopped when idle (`saver`); published container ports appear on
//! the host's loopback (`ports`).

mod config;
pub mod endpoint;
pub mod load;
pub mod owners;
pub mod peer;
pub mod pending;
pub mod policy;
pub mod ports;
pub mod proxy;
pub mod reply;
pub mod sandbox;
pub mod saver;
pub mod upstream;

pub use config::DockerConfig;
use den_auth::Caller;
use den_vms::Den;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::UnixListener;

/// The body type the bridge sends and forwards.
pub type Body = http_body_util::combinators::BoxBody<hyper::body::Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The bridge's state.
pub struct Bridge {
    den: Arc<Den>,
    accounts: Arc<den_auth::Accounts>,
    /// The policy.
    pub policy: policy::Policy,
    sandbox: sandbox::Sandbox,
    /// Unix seconds of the last request (for the resource saver).
    last_use: AtomicU64,
    /// Client connections open now.
    open_connections: AtomicUsize,
    /// Client connections open now, by the client's uid.
    per_uid: PerUser,
    /// dockerd's answers replayed while the sandbox sleeps.
    cache: saver::Cache,
    idle_stop: std::time::Duration,
    /// Den users by local uid (`[docker] users`).
    users: std::collections::BTreeMap<String, String>,
    /// Set when dend is shutting down: streaming answers end cleanly.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Tags that requests under way may still set.
    pending: Arc<pending::Pending>,
}

fn unix_now() -> u64 {
    u64::try_from(den_store::now()).unwrap_or(0)
}

impl Bridge {
    /// A bridge for `den` as `cfg` says.
    pub fn new(den: Arc<Den>, accounts: Arc<den_auth::Accounts>, cfg: &DockerConfig) -> Arc<Bridge> {
        let policy = policy::Policy {
            relaxed: cfg.allow.iter().cloned().collect(),
            shared: cfg.share.clone(),
            shares_need_admin: false,
        };
        let cache = saver::Cache::in_file(den.paths.data.join("docker-answers.json"));
        Arc::new(Bridge {
            den,
            accounts,
            policy,
            sandbox: sandbox::Sandbox::new(cfg.clone()),
            last_use: AtomicU64::new(0),
            open_connections: AtomicUsize::new(0),
            per_uid: Default::default(),
            cache,
            idle_stop: std::time::Duration::from_secs(cfg.idle_stop_secs),
            users: cfg.users.clone(),
            stopping: tokio::sync::watch::channel(false).0,
            pending: Default::default(),
        })
    }

    /// Ends every streaming answer cleanly (`docker logs -f` and `docker events` see their
    /// stream end rather than a broken connection); for dend's shutdown.
    pub fn shut_down(&self) {
        self.stopping.send_replace(true);
    }

    fn touch(&self) {
        self.last_use.store(unix_now(), Ordering::Relaxed);
    }

    /// Time since the last forwarded request.
    fn idle_for(&self) -> std::time::Duration {
        std::time::Duration::from_secs(unix_now().saturating_sub(self.last_use.load(Ordering::Relaxed)))
    }

    fn connections(&self) -> usize {
        self.open_connections.load(Ordering::Relaxed)
    }

    /// Whether the sandbox VM exists and is stopped (asleep).
    fn asleep(&self) -> bool {
        self.den.store.vm(self.sandbox.name()).is_ok_and(|v| v.state == den_core::vm::VmState::Stopped)
    }

    /// The policy for `caller`: only admins may bind shared folders, and only those the running
    /// sandbox has mounted (a `share` added since it started is not there yet: dockerd would make
    /// an empty folder inside the sandbox instead).
    fn policy_for(&self, caller: &Caller) -> std::borrow::Cow<'_, policy::Policy> {
        use std::borrow::Cow;
        if self.policy.shared.is_empty() {
            return Cow::Borrowed(&self.policy);
        }
        if !caller.is_admin() {
            return Cow::Owned(policy::Policy { shared: vec![], shares_need_admin: true, ..self.policy.clone() });
        }
        match self.den.store.vm(self.sandbox.name()) {
            Ok(vm) if vm.state == den_core::vm::VmState::Running => {
                let mounted: Vec<_> = vm.spec.shares.iter().map(|s| s.host.clone()).collect();
                if mounted == self.policy.shared {
                    return Cow::Borrowed(&self.policy);
                }
                let shared = self.policy.shared.iter().filter(|p| mounted.contains(p)).cloned().collect();
                Cow::Owned(policy::Policy { shared, ..self.policy.clone() })
            }
            _ => Cow::Borrowed(&self.policy),
        }
    }

    /// Whether `caller` may change (or read the files of) `object`, asked of the one
    /// authorization function with what dockerd says of the object: `Ok` with the object's
    /// full id (`None` for an admin, who is not asked, and for an object dockerd does not
    /// know, which is let through: dockerd then answers that it does not exist, and a tag
    /// that names nothing yet is anyone's to set).
    async fn may_touch(self: &Arc<Self>, caller: &Caller, object: &owners::Object) -> Result<Option<String>, String> {
        if caller.is_admin() {
            return Ok(None);
        }
        let agent = self.sandbox.ready(&self.den).await.map_err(|e| format!("den: the Docker sandbox: {e}"))?;
        let mut target = object.clone();
        if let owners::Object::Exec(_) = object {
            let Some(exec) = upstream::get_json_opt(&agent, &owners::inspect_path(object)).await? else {
                return Ok(None);
            };
            let container = exec.get("ContainerID").and_then(|v| v.as_str()).unwrap_or_default();
            target = owners::Object::Container(container.to_string());
        }
        let Some(inspect) = upstream::get_json_opt(&agent, &owners::inspect_path(&target)).await? else {
            return Ok(None);
        };
        let id = inspect.get("Id").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        if let owners::Object::Image(reference) = &target {
            if owners::could_be_id_prefix(reference) && !id.starts_with(&format!("sha256:{reference}")) {
                return Err(format!(
                    "den: the image name `{reference}` is also an image id prefix; name the image with a tag \
                     (`{reference}:latest`) or by its full id"
                ));
            }
        }
        let owned = owners::owned_from(&target, &inspect);
        let binds_shares =
            owned.binds.iter().any(|b| self.policy.shared.iter().any(|s| std::path::Path::new(b).starts_with(s)));
        let what = target.describe();
        let action = den_auth::policy::Action::DockerObject {
            what: &what,
            owner: owned.owner.as_deref(),
            shared: owned.shared_image,
            binds_shares,
        };
        den_auth::policy::authorize(caller, &action).map_err(|d| format!("den: {d}"))?;
        Ok(Some(id).filter(|i| !i.is_empty()))
    }

    /// Makes the named volume `name` as `caller`'s (a create that mounts a volume that is not
    /// there yet; dockerd would make it with no owner).
    async fn make_volume(self: &Arc<Self>, caller: &Caller, name: &str) -> Result<(), String> {
        let agent = self.sandbox.ready(&self.den).await.map_err(|e| format!("den: the Docker sandbox: {e}"))?;
        let body = serde_json::json!({"Name": name, "Labels": {owners::OWNER_LABEL: caller.user}});
        upstream::post_json(&agent, "/volumes/create", &body).await.map_err(|e| format!("den: volume `{name}`: {e}"))
    }

    /// The sandbox's agent when it runs (never starts it).
    async fn running_agent(&self) -> Option<den_agent_proto::AgentClient> {
        let vm = self.den.store.vm(self.sandbox.name()).ok()?;
        if vm.state != den_core::vm::VmState::Running {
            return None;
        }
        self.den.agent(&vm).await.ok()
    }
}

/// At most this many connections open at once per local user (root is not limited; dend's own
/// user is root).
pub const MAX_CONNECTIONS_PER_USER: usize = 256;
/// A client must send a request's head within this long (also ends idle keep-alive connections).
const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// One open client connection, counted while it lives (an upgraded connection's splice holds
/// it too).
pub struct Open(Arc<Bridge>, Option<u32>);

impl Open {
    /// Counts a client connection of `uid`: `Err` with the reason when that user has too many open.
    fn for_user(bridge: Arc<Bridge>, uid: Option<u32>) -> Result<Open, String> {
        let uid = uid.filter(|u| *u != 0);
        if let Some(uid) = uid {
            bridge
                .per_uid
                .enter(uid, MAX_CONNECTIONS_PER_USER)
                .map_err(|n| format!("uid {uid} has {n} connections open to the Docker socket already; close some"))?;
        }
        bridge.open_connections.fetch_add(1, Ordering::Relaxed);
        Ok(Open(bridge, uid))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
        if let Some(uid) = self.1 {
            self.0.per_uid.leave(uid);
        }
    }
}

/// Open connections by uid.
#[derive(Default)]
struct PerUser(std::sync::Mutex<std::collections::HashMap<u32, usize>>);

impl PerUser {
    /// One more for `uid`, unless it has `max` already (`Err` with that count).
    fn enter(&self, uid: u32, max: usize) -> Result<(), usize> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(uid).or_default();
        if *n >= max {
            return Err(*n);
        }
        *n += 1;
        Ok(())
    }

    /// One fewer for `uid`.
    fn leave(&self, uid: u32) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&uid);
            }
        }
    }
}

#[cfg(test)]
#[test]
fn connections_are_limited_per_user() {
    let p = PerUser::default();
    assert_eq!((p.enter(1000, 2), p.enter(1000, 2), p.enter(1000, 2)), (Ok(()), Ok(()), Err(2)));
    assert_eq!(p.enter(1001, 2), Ok(()), "another user has a limit of their own");
    p.leave(1000);
    assert_eq!(p.enter(1000, 2), Ok(()));
    p.leave(1001);
    assert!(!p.0.lock().unwrap().contains_key(&1001), "a user with none open is forgotten");
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
    UnixListener::from_std(den_net_util::unix::bind_socket(path, 0o666)?)
}

/// Serves the socket until the process ends, with the port publisher and the resource saver.
pub async fn serve(bridge: Arc<Bridge>, listener: UnixListener) {
    tokio::spawn(ports::run(bridge.clone()));
    tokio::spawn(saver::run(bridge.clone(), bridge.idle_stop));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(%e, "accept on the Docker socket");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let uid = stream.peer_cred().ok().map(|c| c.uid());
        let (caller, open) = match Open::for_user(bridge.clone(), uid) {
            Ok(open) => (peer::identify(&bridge.den, &bridge.accounts, &bridge.users, &stream), Some(Arc::new(open))),
            Err(why) => (Err(why), None),
        };
        let over_cap = open.is_none();
        let upstream: proxy::Upstream = Default::default();
        let b = bridge.clone();
        let held = open.clone();
        let svc = hyper::service::service_fn(move |req| {
            let (b, caller, upstream, held) = (b.clone(), caller.clone(), upstream.clone(), held.clone());
            async move { Ok::<_, std::convert::Infallible>(proxy::handle(b, caller, upstream, held, req).await) }
        });
        tokio::spawn(async move {
            // A client may shut its write side after a request and still wait for the answer.
            // A connection over its user's cap gets its one answer, then is closed.
            let conn = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .keep_alive(!over_cap)
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%e, "Docker socket connection");
            }
            drop(open);
        });
    }
}
