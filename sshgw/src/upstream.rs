//! The gateway's own SSH connection to a guest's sshd: an `sshd -i` started through the agent
//! for each connection (no guest port is involved at all), logged in with the gateway's
//! key (installed at first boot), accepting only the host key Den pinned from the guest's file.
//! When the login or the key check fails, the guest side is set up again through the agent
//! (key re-installed, sshd reloaded, host key re-read) and the connection tried once more.
//! Agent-forwarding channels the guest opens are passed back to the user's client.

use den_agent_proto::{AgentClient, ExecRequest};
use den_core::vm::VmRecord;
use den_vms::Den;
use russh::client::{self, ChannelOpenHandle, Msg};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::Channel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why there is no upstream connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// The guest has no sshd (or it does not listen): use agent exec instead.
    #[error("the guest has no sshd listening on 127.0.0.1:22")]
    NoSshd,
    /// The guest's sshd showed another host key than the one read through the agent.
    #[error("the guest's sshd presented host key {presented}, but its key file says {pinned}; refusing")]
    HostKey {
        /// What the server showed.
        presented: String,
        /// What Den expected.
        pinned: String,
    },
    /// Anything else, with what went wrong.
    #[error("{0}")]
    Failed(String),
}

/// A live upstream connection.
pub(crate) struct Upstream {
    handle: client::Handle<Client>,
}

impl Upstream {
    /// Opens a session channel on the guest's sshd.
    pub(crate) async fn session(&self) -> Result<Channel<Msg>, UpstreamError> {
        self.handle.channel_open_session().await.map_err(|e| UpstreamError::Failed(format!("guest sshd: {e}")))
    }

    /// Whether the connection is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }
}

/// The russh client side: checks the host key, passes agent channels on.
struct Client {
    pinned: PublicKey,
    presented: Arc<Mutex<Option<String>>>,
    user: russh::server::Handle,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else { return Ok(false) };
        if let Ok(mut p) = self.presented.lock() {
            *p = key.to_openssh().ok();
        }
        Ok(key.key_data() == self.pinned.key_data())
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        match self.user.channel_open_agent().await {
            Ok(to_user) => {
                reply.accept().await;
                tokio::spawn(async move {
                    let (mut a, mut b) = (channel.into_stream(), to_user.into_stream());
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                });
            }
            Err(e) => tracing::debug!(%e, "the client refused an agent channel"),
        }
        Ok(())
    }
}

/// Connects to `vm`'s sshd as `guest_user`, setting the guest side up again once if needed.
pub(crate) async fn connect(
    den: &Den,
    vm: &VmRecord,
    agent: &AgentClient,
    guest_user: &str,
    key: Arc<PrivateKey>,
    user: russh::server::Handle,
) -> Result<Upstream, UpstreamError> {
    let login = Login { agent, guest_user, key, user };
    let pinned = match den.store.guest_host_key(&vm.id).map_err(|e| UpstreamError::Failed(e.to_string()))? {
        Some(k) => k,
        None => prepare(den, vm, agent).await?,
    };
    match login.once(&pinned).await {
        Err(e @ (UpstreamError::Failed(_) | UpstreamError::HostKey { .. })) => {
            tracing::info!(vm = %vm.spec.name, %e, "setting the guest's sshd up again");
            let pinned = prepare(den, vm, agent).await?;
            login.retry(&pinned).await
        }
        // A pinned key means this guest has an sshd: it may be reloading.
        Err(UpstreamError::NoSshd) => login.retry(&pinned).await,
        other => other,
    }
}

/// Sets the guest's sshd up and returns its host key (read through the agent).
async fn prepare(den: &Den, vm: &VmRecord, agent: &AgentClient) -> Result<String, UpstreamError> {
    match den.prepare_guest_sshd(&vm.id, agent, false).await {
        Ok(Some(k)) => Ok(k),
        Ok(None) => Err(UpstreamError::NoSshd),
        Err(e) => Err(UpstreamError::Failed(e)),
    }
}

/// How long the guest's sshd may take for the handshake and the login (TCG guests are slow).
const SETUP_WAIT: Duration = Duration::from_secs(60);

/// How to log into one guest.
struct Login<'a> {
    agent: &'a AgentClient,
    guest_user: &'a str,
    key: Arc<PrivateKey>,
    /// The user's connection, for agent forwarding.
    user: russh::server::Handle,
}

impl Login<'_> {
    /// A few attempts while a reloading sshd comes back.
    async fn retry(&self, pinned: &str) -> Result<Upstream, UpstreamError> {
        let mut last = UpstreamError::NoSshd;
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            match self.once(pinned).await {
                Ok(u) => return Ok(u),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// One connection attempt, within [`SETUP_WAIT`].
    async fn once(&self, pinned: &str) -> Result<Upstream, UpstreamError> {
        tokio::time::timeout(SETUP_WAIT, self.attempt(pinned)).await.unwrap_or_else(|_| {
            Err(UpstreamError::Failed(format!(
                "the guest's sshd did not finish the SSH handshake and login within {} s",
                SETUP_WAIT.as_secs()
            )))
        })
    }

    async fn attempt(&self, pinned: &str) -> Result<Upstream, UpstreamError> {
        let pinned_key = PublicKey::from_openssh(pinned)
            .map_err(|e| UpstreamError::Failed(format!("the pinned host key does not parse: {e}")))?;
        let io = self.agent.exec_io(sshd_inetd()).await.map_err(|_| UpstreamError::NoSshd)?;
        let presented = Arc::new(Mutex::new(None));
        let handler = Client { pinned: pinned_key, presented: presented.clone(), user: self.user.clone() };
        let config = Arc::new(client::Config {
            preferred: upstream_algorithms(),
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            nodelay: true,
            ..Default::default()
        });
        let mut handle = match client::connect_stream(config, io, handler).await {
            Ok(h) => h,
            Err(e) => {
                let shown = presented.lock().ok().and_then(|p| p.clone());
                return Err(match shown {
                    Some(s) if !same_key(&s, pinned) => UpstreamError::HostKey { presented: s, pinned: pinned.into() },
                    _ => UpstreamError::Failed(format!("SSH handshake with the guest's sshd: {e}")),
                });
            }
        };
        let key = PrivateKeyWithHashAlg::new(self.key.clone(), None::<HashAlg>);
        let auth = handle
            .authenticate_publickey(self.guest_user, key)
            .await
            .map_err(|e| UpstreamError::Failed(format!("guest sshd login: {e}")))?;
        if !auth.success() {
            let who = self.guest_user;
            return Err(UpstreamError::Failed(format!("the guest's sshd refused the gateway's key for `{who}`")));
        }
        Ok(Upstream { handle })
    }
}

/// The guest's sshd in inetd mode, one per connection, speaking on the exec's stdio: no port
/// is involved, a stopped or reloading sshd service does not matter, and each run reads the
/// current configuration. (Its privilege-separation directory is made when the guest side is
/// set up, which a failed login triggers.)
fn sshd_inetd() -> ExecRequest {
    ExecRequest { argv: vec!["/usr/sbin/sshd".into(), "-i".into()], ..Default::default() }
}

/// Algorithms for the guest side, where the guest's CPU is the bottleneck (and may be
/// emulated): AES-GCM first, which guests run with AES-NI (TCG emulates it with fast helpers)
/// where ChaCha20 needs many vector instructions; plain X25519 key exchange.
fn upstream_algorithms() -> russh::Preferred {
    use russh::cipher;
    use std::borrow::Cow;
    russh::Preferred {
        kex: Cow::Borrowed(&[
            russh::kex::CURVE25519,
            russh::kex::CURVE25519_PRE_RFC_8731,
            russh::kex::EXTENSION_SUPPORT_AS_CLIENT,
            russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
        ]),
        cipher: Cow::Borrowed(&[
            cipher::AES_128_GCM,
            cipher::AES_256_GCM,
            cipher::CHACHA20_POLY1305,
            cipher::AES_256_CTR,
        ]),
        ..russh::Preferred::DEFAULT
    }
}

/// Whether two OpenSSH public key lines hold the same key (comments aside).
fn same_key(a: &str, b: &str) -> bool {
    let fields = |s: &str| s.split_whitespace().take(2).map(str::to_string).collect::<Vec<_>>();
    fields(a) == fields(b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn compares_keys_without_comments() {
        assert!(super::same_key("ssh-ed25519 AAAA root@a", "ssh-ed25519 AAAA"));
        assert!(!super::same_key("ssh-ed25519 AAAA", "ssh-ed25519 BBBB"));
    }
}
