//! Starting a session channel: the refusals, the menu of a plain `ssh host` and the offer to
//! start a stopped VM, reaching the VM (its sshd through the agent, or agent exec), the session
//! record and its recording, then the proxy.

use super::menu::{Menu, Outcome};
use super::proxy::{self, Ctx, PtyReq, Setup, Start, Via};
use super::record::{Header, Recorder};
use super::route::{self, Refusal};
use super::session::{Chan, Gateway, VmConn};
use super::upstream::{self, Upstream, UpstreamError};
use den_core::vm::VmState;
use den_store::SshSession;
use den_vms::Den;
use russh::server::{Msg, Session};
use russh::{ChannelId, ChannelWriteHalf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a VM started from the menu may take until the gateway reaches it.
const START_WAIT: Duration = Duration::from_secs(180);
/// How long a VM may look stopped right after its start was asked for.
const START_GRACE: Duration = Duration::from_secs(5);

impl Gateway {
    /// Connects to the VM (once per connection; again if the upstream closed).
    async fn reach(&mut self, handle: russh::server::Handle) -> Result<(), String> {
        let user = self.user.clone().unwrap_or_default();
        let rec = route::check(&self.den, &self.accounts, &user, &self.target.vm).map_err(|r| r.line().to_string())?;
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
    pub(super) async fn start(
        &mut self,
        channel: ChannelId,
        what: Start,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
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
            let vms = route::enterable(&self.den, &self.accounts, &user);
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
            if let Err(Refusal::NotRunning { may_start: true, .. }) =
                route::check(&self.den, &self.accounts, &user, &self.target.vm)
            {
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
    pub(super) async fn menu_keys(&mut self, channel: ChannelId, data: &[u8], handle: russh::server::Handle) {
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
        let t = Instant::now();
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
            tokio::time::sleep(Duration::from_millis(500)).await;
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
                let id = den_core::new_id();
                let record = SshSession {
                    id: id.clone(),
                    user: user.clone(),
                    vm: conn.vm.spec.name.clone(),
                    kind: what.kind().into(),
                    command: what.command().into(),
                    peer: self.peer.ip().to_string(),
                    started: den_store::now(),
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
