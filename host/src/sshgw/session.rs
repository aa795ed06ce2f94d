//! One SSH connection to the gateway: who it is (by key), which VM it wants (by user name),
//! and its commands, run through the VM's agent.

use crate::auth::Role;
use crate::model::VmState;
use crate::vms::Den;
use russh::keys::HashAlg;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use std::net::SocketAddr;
use std::sync::Arc;

/// The gateway's side of one connection.
pub struct Gateway {
    den: Arc<Den>,
    peer: SocketAddr,
    /// The Den user the key belongs to, once authenticated.
    user: Option<String>,
    /// The VM the SSH user name asked for.
    vm: String,
}

impl Gateway {
    /// A handler for a connection from `peer`.
    pub fn new(den: Arc<Den>, peer: SocketAddr) -> Gateway {
        Gateway { den, peer, user: None, vm: String::new() }
    }
}

/// Splits an SSH user name into (Den user, VM): `web1` or `alice+web1`.
pub fn route(ssh_user: &str) -> (Option<&str>, &str) {
    match ssh_user.split_once('+') {
        Some((u, vm)) => (Some(u), vm),
        None => (None, ssh_user),
    }
}

/// Why a command cannot run: one line for the user.
fn check(den: &Den, user: &str, vm: &str) -> Result<(), String> {
    let rec = den.store.vm(vm).map_err(|_| format!("den: VM `{vm}` not found (`den vm ls` lists VMs)"))?;
    let caller = den.accounts.caller(&den.store, user).map_err(|e| format!("den: {e}"))?;
    if caller.role_on(&rec.id, &rec.spec.name, &rec.owner).is_none_or(|r| r < Role::Operator) {
        return Err(format!("den: user `{user}` may not enter VM `{vm}`; an admin can grant it"));
    }
    if rec.state != VmState::Running {
        return Err(format!("den: VM `{vm}` is {}; start it with `den vm start {vm}`", rec.state.as_str()));
    }
    Ok(())
}

impl russh::server::Handler for Gateway {
    type Error = russh::Error;

    async fn auth_publickey(&mut self, ssh_user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let fp = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        let owner = self.den.store.key(&fp).ok().flatten();
        let (want, vm) = route(ssh_user);
        match owner {
            Some(k) if want.is_none_or(|u| u == k.user) => {
                self.user = Some(k.user);
                self.vm = vm.to_string();
                Ok(Auth::Accept)
            }
            _ => {
                self.den.event(want.unwrap_or("-"), "ssh.auth_failed", vm, &format!("{} key {fp}", self.peer.ip()));
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let (den, vm, handle) = (self.den.clone(), self.vm.clone(), session.handle());
        let user = self.user.clone().unwrap_or_default();
        let cmd = String::from_utf8_lossy(data).into_owned();
        tokio::spawn(async move {
            let code = match check(&den, &user, &vm) {
                Err(line) => {
                    let _ = handle.extended_data(channel, 1, format!("{line}\r\n").into_bytes()).await;
                    1
                }
                Ok(()) => {
                    den.event(&user, "ssh.exec", &vm, &cmd);
                    let argv = ["/bin/sh".to_string(), "-c".to_string(), cmd];
                    match den.exec(&vm, &argv).await {
                        Ok(out) => {
                            let _ = handle.data(channel, out.stdout).await;
                            let _ = handle.extended_data(channel, 1, out.stderr).await;
                            out.code.map(|c| c as u32).unwrap_or_else(|| 128 + out.signal.unwrap_or(0) as u32)
                        }
                        Err(e) => {
                            let _ = handle.extended_data(channel, 1, format!("den: {e}\r\n").into_bytes()).await;
                            255
                        }
                    }
                }
            };
            let _ = handle.exit_status_request(channel, code).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let handle = session.handle();
        let vm = self.vm.clone();
        tokio::spawn(async move {
            let line = format!(
                "den: interactive shells through the gateway come next; run a command: ssh {vm}@host -p 2222 'cmd'\r\n"
            );
            let _ = handle.extended_data(channel, 1, line.into_bytes()).await;
            let _ = handle.exit_status_request(channel, 1).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn routes() {
        assert_eq!(super::route("web1"), (None, "web1"));
        assert_eq!(super::route("alice+web1"), (Some("alice"), "web1"));
    }
}
