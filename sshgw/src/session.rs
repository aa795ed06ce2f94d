//! One SSH connection to the gateway: who it is (key or password, rate-limited), where it goes
//! (the SSH user name), and its channels: sessions (shell, command, sftp) proxied to the VM,
//! and `ssh -L` forwards through the VM's agent.

use super::menu::Menu;
use super::proxy::{Live, PtyReq, Setup, Start};
use super::route::{self, Target};
use super::upstream::Upstream;
use den_agent_proto::{AgentClient, ForwardTarget};
use den_auth::Accounts;
use den_core::vm::VmRecord;
use den_vms::Den;
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelWriteHalf, Pty, Sig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The gateway's side of one connection.
pub(crate) struct Gateway {
    pub(super) den: Arc<Den>,
    pub(super) accounts: Arc<Accounts>,
    pub(super) peer: SocketAddr,
    pub(super) client_key: Arc<PrivateKey>,
    /// Set when the client is rate-limited: the line every channel shows.
    pub(super) blocked: Option<String>,
    /// The Den user, once authenticated.
    pub(super) user: Option<String>,
    pub(super) target: Target,
    /// Whether a failed attempt of this connection was counted already.
    counted: bool,
    pub(super) vm: Option<VmConn>,
    pub(super) channels: HashMap<ChannelId, Chan>,
    /// Set once a user logged in (not merely let in to read a refusal): the login grace
    /// timer in [`super::serve`] ends connections that never get here.
    logged_in: Arc<AtomicBool>,
}

/// The VM this connection reached, and how.
pub(super) struct VmConn {
    pub(super) vm: VmRecord,
    pub(super) agent: AgentClient,
    pub(super) guest_user: String,
    pub(super) upstream: Option<Upstream>,
}

pub(super) enum Chan {
    /// Opened; collecting PTY and environment requests.
    Setup(ChannelWriteHalf<Msg>, Setup),
    /// Showing the menu (plain `ssh host`, or the offer to start a stopped VM).
    Menu(ChannelWriteHalf<Msg>, Setup, Menu),
    /// Started.
    Live(Live),
}

impl Gateway {
    /// A handler for a connection from `peer`.
    pub(crate) fn new(
        den: Arc<Den>,
        accounts: Arc<Accounts>,
        peer: SocketAddr,
        client_key: Arc<PrivateKey>,
        logged_in: Arc<AtomicBool>,
    ) -> Gateway {
        Gateway {
            accounts,
            den,
            peer,
            client_key,
            blocked: None,
            user: None,
            target: Target::parse(""),
            counted: false,
            vm: None,
            channels: HashMap::new(),
            logged_in,
        }
    }

    /// Whether this connection is refused for too many failures: `err` is the limiter's answer
    /// (the key budget, or the password budget). A limited client is let in with nothing but the
    /// reason: every channel shows it and ends (a rejection would leave OpenSSH printing only
    /// "Permission denied").
    fn limited(&mut self, user: Option<&str>, err: Result<(), den_auth::AuthError>) -> bool {
        if self.blocked.is_some() {
            return true;
        }
        let Err(e) = err else { return false };
        let addr = self.peer.ip().to_string();
        self.den.event(user.unwrap_or("-"), "ssh.rate_limited", &self.target.vm, &addr);
        self.blocked = Some(format!("den: {e} (from {addr})"));
        true
    }

    /// Whether this address offered wrong keys too often lately.
    fn key_limited(&mut self, user: Option<&str>) -> bool {
        let err = self.accounts.key_login_allowed(&self.peer.ip().to_string());
        self.limited(user, err)
    }

    /// Audits a failed attempt; a wrong key counts against the address's key budget (once per
    /// connection: clients offer every key they have).
    fn failed(&mut self, user: Option<&str>, how: &str) {
        self.den.event(user.unwrap_or("-"), "ssh.auth_failed", &self.target.vm, &format!("{} {how}", self.peer.ip()));
        if !self.counted {
            self.counted = true;
            self.accounts.failed_key_login(&self.peer.ip().to_string());
        }
    }

    /// Accepts `user`: a plain `ssh user@host` (no VM of that name) goes to the menu.
    fn accept(&mut self, ssh_user: &str, user: String) -> Auth {
        self.target = Target::parse(ssh_user);
        if self.target.den_user.is_none() && self.target.vm == user && self.den.store.vm(&user).is_err() {
            self.target.vm.clear();
        }
        self.user = Some(user);
        self.logged_in.store(self.blocked.is_none(), Ordering::Relaxed);
        Auth::Accept
    }

    /// The owner of `key` if it may log in as `ssh_user`.
    fn key_owner(&self, ssh_user: &str, key: &PublicKey) -> Option<String> {
        let fp = fingerprint(key);
        let owner = self.den.store.key(&fp).ok().flatten()?.user;
        Target::parse(ssh_user).den_user.is_none_or(|u| u == owner).then_some(owner)
    }

    fn live(&self, channel: ChannelId) -> Option<&Live> {
        match self.channels.get(&channel) {
            Some(Chan::Live(l)) => Some(l),
            _ => None,
        }
    }
}

/// A client key's fingerprint, computed as stored keys' are ([`den_auth::sshkey::fingerprint`]).
fn fingerprint(key: &PublicKey) -> String {
    key.to_bytes().map(|blob| den_auth::sshkey::fingerprint(&blob)).unwrap_or_default()
}

impl russh::server::Handler for Gateway {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, ssh_user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        let named = Target::parse(ssh_user).den_user;
        if self.key_limited(named.as_deref()) {
            return Ok(Auth::Accept);
        }
        match self.key_owner(ssh_user, offer.public_key) {
            Some(_) => Ok(Auth::Accept),
            None => {
                let fp = fingerprint(offer.public_key);
                self.failed(named.as_deref(), &format!("key {fp}"));
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_publickey(&mut self, ssh_user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let owner = self.key_owner(ssh_user, key.public_key);
        if self.key_limited(owner.as_deref()) {
            return Ok(Auth::Accept);
        }
        match owner {
            Some(owner) => Ok(self.accept(ssh_user, owner)),
            None => Ok(Auth::reject()),
        }
    }

    async fn auth_password(&mut self, ssh_user: &str, password: &str) -> Result<Auth, Self::Error> {
        let t = Target::parse(ssh_user);
        // A password names its user: `alice+web1`, or `alice` for the menu.
        let user = t.den_user.clone().unwrap_or_else(|| t.vm.clone());
        if self.blocked.is_some() {
            return Ok(Auth::Accept);
        }
        let ip = self.peer.ip().to_string();
        match self.accounts.check_password(&self.den.store, &user, password, &ip).await {
            Ok(()) => {
                let ssh_user = if t.den_user.is_some() { ssh_user.to_string() } else { String::new() };
                let auth = self.accept(&ssh_user, user.clone());
                if ssh_user.is_empty() {
                    self.target = Target::parse("");
                }
                Ok(auth)
            }
            Err(e @ (den_auth::AuthError::RateLimited(_) | den_auth::AuthError::Busy)) => {
                self.limited(Some(&user), Err(e));
                Ok(Auth::Accept)
            }
            Err(_) => {
                // check_password counted it against the password budget.
                self.den.event(&user, "ssh.auth_failed", &self.target.vm, &format!("{ip} password"));
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let id = channel.id();
        // Input arrives through `data`; the read half is not used.
        let (_, write) = channel.split();
        self.channels.insert(id, Chan::Setup(write, Setup::default()));
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(Chan::Setup(_, setup)) = self.channels.get_mut(&channel) {
            setup.pty = Some(PtyReq { term: term.into(), cols, rows, modes: modes.to_vec() });
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
        match self.channels.get_mut(&channel) {
            Some(Chan::Setup(_, setup)) if ok && setup.env.len() < 64 => {
                setup.env.push((name.into(), value.into()));
                session.channel_success(channel)?;
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn agent_request(&mut self, channel: ChannelId, _session: &mut Session) -> Result<bool, Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(Chan::Setup(_, setup)) => {
                setup.agent_forward = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        self.start(channel, Start::Shell, session).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(channel, Start::Exec(String::from_utf8_lossy(data).into_owned()), session).await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(channel, Start::Subsystem(name.into()), session).await
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(Chan::Live(l)) => l.resize(cols, rows).await,
            Some(Chan::Setup(_, Setup { pty: Some(p), .. }) | Chan::Menu(_, Setup { pty: Some(p), .. }, _)) => {
                (p.cols, p.rows) = (cols, rows)
            }
            _ => {}
        }
        Ok(())
    }

    async fn signal(&mut self, channel: ChannelId, signal: Sig, _session: &mut Session) -> Result<(), Self::Error> {
        if let Some(l) = self.live(channel) {
            l.signal(signal).await;
        }
        Ok(())
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], session: &mut Session) -> Result<(), Self::Error> {
        match self.channels.get(&channel) {
            Some(Chan::Live(l)) => l.input(data).await,
            Some(Chan::Menu(..)) => self.menu_keys(channel, data, session.handle()).await,
            _ => {}
        }
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        if let Some(l) = self.live(channel) {
            l.eof();
        }
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        if let Some(Chan::Live(l)) = self.channels.remove(&channel) {
            l.close().await;
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(user) = self.user.clone().filter(|_| self.blocked.is_none()) else { return Ok(()) };
        let Ok(port) = u16::try_from(port) else { return Ok(()) };
        let rec = match route::check(&self.den, &self.accounts, &user, &self.target.vm) {
            Ok(r) => r,
            Err(r) => {
                tracing::debug!(line = r.line(), "direct-tcpip refused");
                return Ok(());
            }
        };
        let agent = match self.den.agent(&rec).await {
            Ok(a) => a,
            Err(_) => return Ok(()),
        };
        let target = format!("{host}:{port}");
        match agent.forward_io(ForwardTarget::Tcp { host: host.into(), port }).await {
            Ok(mut guest) => {
                reply.accept().await;
                self.den.event(&user, "ssh.forward", &rec.spec.name, &target);
                tokio::spawn(async move {
                    let mut client = channel.into_stream();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut guest).await;
                });
            }
            Err(e) => tracing::debug!(%e, %target, "direct-tcpip: the guest could not connect"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use russh::keys::{HashAlg, PublicKey};

    #[test]
    fn offered_keys_fingerprint_as_stored_keys_do() {
        for line in [
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop",
            "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=",
        ] {
            let stored = den_auth::sshkey::SshKey::parse(line).unwrap();
            let offered = PublicKey::from_openssh(line).unwrap();
            assert_eq!(super::fingerprint(&offered), stored.fingerprint, "{line}");
            assert_eq!(offered.fingerprint(HashAlg::Sha256).to_string(), stored.fingerprint, "{line}");
        }
    }
}
