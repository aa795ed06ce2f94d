//! One SSH connection to the gateway: who it is (key or password, rate-limited), where it goes
//! (the SSH user name), and its channels: sessions (shell, command, sftp) proxied to the VM,
//! and `ssh -L` forwards through the VM's agent.

use super::menu::{Menu, Outcome};
use super::proxy::{self, Ctx, Live, PtyReq, Setup, Start, Via};
use super::record::{Header, Recorder};
use super::route::{self, Refusal, Target};
use super::upstream::{self, Upstream, UpstreamError};
use crate::model::{VmRecord, VmState};
use crate::store::SshSession;
use crate::vms::Den;
use den_agent_proto::{AgentClient, ForwardTarget};
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelWriteHalf, Pty, Sig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The gateway's side of one connection.
pub struct Gateway {
    den: Arc<Den>,
    peer: SocketAddr,
    client_key: Arc<PrivateKey>,
    /// Set when the client is rate-limited: the line every channel shows.
    blocked: Option<String>,
    /// The Den user, once authenticated.
    user: Option<String>,
    target: Target,
    /// Whether a failed attempt of this connection was counted already.
    counted: bool,
    vm: Option<VmConn>,
    channels: HashMap<ChannelId, Chan>,
}

/// The VM this connection reached, and how.
struct VmConn {
    vm: VmRecord,
    agent: AgentClient,
    guest_user: String,
    upstream: Option<Upstream>,
}

enum Chan {
    /// Opened; collecting PTY and environment requests.
    Setup(ChannelWriteHalf<Msg>, Setup),
    /// Showing the menu (plain `ssh host`, or the offer to start a stopped VM).
    Menu(ChannelWriteHalf<Msg>, Setup, Menu),
    /// Started.
    Live(Live),
}

/// How long a VM started from the menu may take until the gateway reaches it.
const START_WAIT: std::time::Duration = std::time::Duration::from_secs(180);
/// How long a VM may look stopped right after its start was asked for.
const START_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl Gateway {
    /// A handler for a connection from `peer`.
    pub fn new(den: Arc<Den>, peer: SocketAddr, client_key: Arc<PrivateKey>) -> Gateway {
        Gateway {
            den,
            peer,
            client_key,
            blocked: None,
            user: None,
            target: Target::parse(""),
            counted: false,
            vm: None,
            channels: HashMap::new(),
        }
    }

    /// Whether this address or user failed too often lately. A limited client is let in with
    /// nothing but the reason: every channel shows it and ends (a rejection would leave
    /// OpenSSH printing only "Permission denied").
    fn limited(&mut self, user: Option<&str>) -> bool {
        if self.blocked.is_some() {
            return true;
        }
        let addr = self.peer.ip().to_string();
        let Err(e) = self.den.accounts.not_limited(user.unwrap_or(""), &addr) else { return false };
        self.den.event(user.unwrap_or("-"), "ssh.rate_limited", &self.target.vm, &addr);
        self.blocked = Some(format!("den: {e} (from {addr})"));
        true
    }

    /// Counts a failed attempt (once per connection) and audits it.
    fn failed(&mut self, user: Option<&str>, how: &str) {
        self.den.event(user.unwrap_or("-"), "ssh.auth_failed", &self.target.vm, &format!("{} {how}", self.peer.ip()));
        if !self.counted {
            self.counted = true;
            self.den.accounts.failed_login(user.unwrap_or(""), &self.peer.ip().to_string());
        }
    }

    /// Accepts `user`: a plain `ssh user@host` (no VM of that name) goes to the menu.
    fn accept(&mut self, ssh_user: &str, user: String) -> Auth {
        self.target = Target::parse(ssh_user);
        if self.target.den_user.is_none() && self.target.vm == user && self.den.store.vm(&user).is_err() {
            self.target.vm.clear();
        }
        self.user = Some(user);
        Auth::Accept
    }

    /// The owner of `key` if it may log in as `ssh_user`.
    fn key_owner(&self, ssh_user: &str, key: &PublicKey) -> Option<String> {
        let fp = key.fingerprint(HashAlg::Sha256).to_string();
        let owner = self.den.store.key(&fp).ok().flatten()?.user;
        Target::parse(ssh_user).den_user.is_none_or(|u| u == owner).then_some(owner)
    }

    /// Connects to the VM (once per connection; again if the upstream closed).
    async fn reach(&mut self, handle: russh::server::Handle) -> Result<(), String> {
        let user = self.user.clone().unwrap_or_default();
        let rec = route::check(&self.den, &user, &self.target.vm).map_err(|r| r.line().to_string())?;
        let stale = self.vm.as_ref().is_none_or(|c| {
            c.vm.running.as_ref().map(|r| r.pid) != rec.running.as_ref().map(|r| r.pid)
                || c.upstream.as_ref().is_some_and(Upstream::is_closed)
        });
        if stale {
            let agent = self.den.agent(&rec).await.map_err(|e| format!("den: {e}"))?;
            let guest_user = route::guest_user(&self.target, &rec);
            let up = upstream::connect(&self.den, &rec, &agent, &guest_user, self.client_key.clone(), handle).await;
            let upstream = match up {
                Ok(u) => Some(u),
                Err(UpstreamError::NoSshd) => {
                    tracing::debug!(vm = %rec.spec.name, "no sshd in the guest; using agent exec");
                    None
                }
                Err(e @ UpstreamError::HostKey { .. }) => {
                    self.den.event(&user, "ssh.host_key_mismatch", &rec.spec.name, &e.to_string());
                    return Err(format!("den: VM `{}`: {e}", rec.spec.name));
                }
                Err(UpstreamError::Failed(why)) => {
                    tracing::warn!(vm = %rec.spec.name, %why, "guest sshd unusable; using agent exec");
                    None
                }
            };
            self.vm = Some(VmConn { vm: rec, agent, guest_user, upstream });
        }
        Ok(())
    }

    /// Starts a session channel; a refusal is shown on the channel and ends it.
    async fn start(&mut self, channel: ChannelId, what: Start, session: &mut Session) -> Result<(), russh::Error> {
        session.channel_success(channel)?;
        let Some(Chan::Setup(out, setup)) = self.channels.remove(&channel) else { return Ok(()) };
        let handle = session.handle();
        if let Some(line) = &self.blocked {
            refuse(handle, channel, line.clone());
            return Ok(());
        }
        let user = self.user.clone().unwrap_or_default();
        let interactive = matches!(what, Start::Shell) && setup.pty.is_some();
        if self.target.vm.is_empty() {
            let vms = route::enterable(&self.den, &user);
            if interactive {
                let (menu, text) = Menu::pick(vms);
                return self.show_menu(channel, out, setup, menu, text).await;
            }
            let names: Vec<String> = vms.into_iter().map(|v| v.0).collect();
            let line = format!(
                "den: name a VM: ssh <vm>@host -p 2222 (yours: {})",
                if names.is_empty() { "none".into() } else { names.join(", ") }
            );
            refuse(handle, channel, line);
            return Ok(());
        }
        if interactive {
            if let Err(Refusal::NotRunning { may_start: true, .. }) = route::check(&self.den, &user, &self.target.vm) {
                let (menu, text) = Menu::confirm(&self.target.vm);
                return self.show_menu(channel, out, setup, menu, text).await;
            }
        }
        self.launch(channel, out, setup, what, handle).await;
        Ok(())
    }

    /// Shows a menu on a channel and waits for its keys.
    async fn show_menu(
        &mut self,
        channel: ChannelId,
        out: ChannelWriteHalf<Msg>,
        setup: Setup,
        menu: Menu,
        text: String,
    ) -> Result<(), russh::Error> {
        let _ = out.data_bytes(bytes::Bytes::from(text)).await;
        self.channels.insert(channel, Chan::Menu(out, setup, menu));
        Ok(())
    }

    /// Keys typed into a menu: echo, and act on a choice.
    async fn menu_keys(&mut self, channel: ChannelId, data: &[u8], handle: russh::server::Handle) {
        let Some(Chan::Menu(out, setup, mut menu)) = self.channels.remove(&channel) else { return };
        let (shown, outcome) = menu.keys(data);
        let _ = out.data_bytes(bytes::Bytes::from(shown)).await;
        let user = self.user.clone().unwrap_or_default();
        match outcome {
            None => {
                self.channels.insert(channel, Chan::Menu(out, setup, menu));
            }
            Some(Outcome::Quit) => {
                let _ = handle.exit_status_request(channel, 0).await;
                let _ = out.eof().await;
                let _ = out.close().await;
            }
            Some(Outcome::Enter(vm)) => {
                self.target.vm = vm;
                self.launch(channel, out, setup, Start::Shell, handle).await;
            }
            Some(Outcome::Start(vm)) => {
                let _ = out.data_bytes(bytes::Bytes::from(format!("starting `{vm}`...\r\n"))).await;
                self.target.vm = vm.clone();
                match self.start_and_wait(&vm, &user, handle.clone()).await {
                    Ok(()) => self.launch(channel, out, setup, Start::Shell, handle).await,
                    Err(line) => refuse(handle, channel, line),
                }
            }
        }
    }

    /// Starts a stopped VM for the menu and waits until the gateway reaches it.
    async fn start_and_wait(&mut self, vm: &str, user: &str, handle: russh::server::Handle) -> Result<(), String> {
        self.den.start(vm, user).map_err(|e| format!("den: {e}"))?;
        let t = std::time::Instant::now();
        loop {
            let last = match self.reach(handle.clone()).await {
                Ok(()) => return Ok(()),
                Err(line) => line,
            };
            let state = self.den.store.vm(vm).map(|v| v.state);
            let failed = matches!(state, Ok(VmState::Stopped | VmState::Crashed)) && t.elapsed() > START_GRACE;
            if failed || t.elapsed() > START_WAIT {
                return Err(format!("den: VM `{vm}` did not come up: {last}"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// Connects a session channel to the VM and starts `what`; a failure is shown and ends it.
    async fn launch(
        &mut self,
        channel: ChannelId,
        out: ChannelWriteHalf<Msg>,
        setup: Setup,
        what: Start,
        handle: russh::server::Handle,
    ) {
        let user = self.user.clone().unwrap_or_default();
        let reached = self.reach(handle.clone()).await;
        let started = match reached.and_then(|()| self.vm.as_ref().ok_or_else(|| "den: no VM".to_string())) {
            Err(line) => Err(line),
            Ok(conn) => {
                let id = crate::vms::new_id();
                let record = SshSession {
                    id: id.clone(),
                    user: user.clone(),
                    vm: conn.vm.spec.name.clone(),
                    kind: what.kind().into(),
                    command: what.command().into(),
                    peer: self.peer.ip().to_string(),
                    started: crate::store::now(),
                    ended: None,
                    exit: None,
                    recorded: false,
                };
                let recorder = setup.pty.as_ref().and_then(|p| record_to(&self.den, &record, p));
                let file = recorder.as_ref().map(|(_, f)| f.clone());
                if let Err(e) = self.den.store.insert_ssh_session(&record, file.as_deref()) {
                    tracing::warn!(%e, "recording an SSH session");
                }
                self.den.event(&user, &format!("ssh.{}", what.kind()), &record.vm, what.command());
                let ctx = Ctx {
                    den: self.den.clone(),
                    client: handle.clone(),
                    channel,
                    session_id: id,
                    recorder: recorder.map(|(r, _)| r),
                };
                let via = match &conn.upstream {
                    Some(u) => Via::Upstream(u),
                    None => Via::Agent(&conn.agent, &conn.guest_user),
                };
                let started = proxy::start(ctx, out, setup, what, via).await;
                if started.is_err() {
                    let _ = self.den.store.end_ssh_session(&record.id, Some(255));
                }
                started
            }
        };
        match started {
            Ok(live) => {
                self.channels.insert(channel, Chan::Live(live));
            }
            Err(line) => refuse(handle, channel, line),
        }
    }

    fn live(&self, channel: ChannelId) -> Option<&Live> {
        match self.channels.get(&channel) {
            Some(Chan::Live(l)) => Some(l),
            _ => None,
        }
    }
}

/// Opens the recording of an interactive session: `<data>/recordings/<id>.cast`.
fn record_to(den: &Den, s: &SshSession, pty: &PtyReq) -> Option<(Arc<Recorder>, String)> {
    let path = den.paths.data.join("recordings").join(format!("{}.cast", s.id));
    let title = format!("{}@{}", s.user, s.vm);
    let header = Header { cols: pty.cols, rows: pty.rows, term: &pty.term, title: &title, command: &s.command };
    match Recorder::create(&path, &header) {
        Ok(r) => Some((Arc::new(r), path.display().to_string())),
        Err(e) => {
            tracing::warn!(%e, path = %path.display(), "cannot record an SSH session");
            None
        }
    }
}

/// Shows `line` on a channel, exits 1 and closes it.
fn refuse(handle: russh::server::Handle, channel: ChannelId, line: String) {
    tokio::spawn(async move {
        let _ = handle.extended_data(channel, 1, format!("{line}\r\n").into_bytes()).await;
        let _ = handle.exit_status_request(channel, 1).await;
        let _ = handle.eof(channel).await;
        let _ = handle.close(channel).await;
    });
}

impl russh::server::Handler for Gateway {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, ssh_user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        let named = Target::parse(ssh_user).den_user;
        if self.limited(named.as_deref()) {
            return Ok(Auth::Accept);
        }
        match self.key_owner(ssh_user, offer.public_key) {
            Some(_) => Ok(Auth::Accept),
            None => {
                let fp = offer.public_key.fingerprint(HashAlg::Sha256);
                self.failed(named.as_deref(), &format!("key {fp}"));
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_publickey(&mut self, ssh_user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let owner = self.key_owner(ssh_user, key.public_key);
        if self.limited(owner.as_deref()) {
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
        if self.limited(Some(&user)) {
            return Ok(Auth::Accept);
        }
        let ip = self.peer.ip().to_string();
        match self.den.accounts.check_password(&self.den.store, &user, password, &ip).await {
            Ok(()) => {
                let ssh_user = if t.den_user.is_some() { ssh_user.to_string() } else { String::new() };
                let auth = self.accept(&ssh_user, user.clone());
                if ssh_user.is_empty() {
                    self.target = Target::parse("");
                }
                Ok(auth)
            }
            Err(crate::auth::AuthError::RateLimited(_)) => {
                self.limited(Some(&user));
                Ok(Auth::Accept)
            }
            Err(_) => {
                // check_password counted it already.
                self.counted = true;
                self.failed(Some(&user), "password");
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
        let rec = match route::check(&self.den, &user, &self.target.vm) {
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
