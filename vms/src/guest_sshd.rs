//! Getting a guest's sshd ready for the SSH gateway, through the agent: the gateway's public
//! key goes to `/etc/ssh/den_gateway_keys` with an sshd drop-in that accepts it for every
//! account (so users' own `authorized_keys` stay theirs), fresh host keys on the first boot (an
//! image's keys are shared by every VM made from it), sshd reloads, and the host key it now
//! serves is pinned in the store. The agent is the trusted path into the guest, so a key read
//! through it is the one to expect on the network side.

use super::Den;
use den_agent_proto::AgentClient;

/// Exit status of the script when the guest has no sshd.
const NO_SSHD: i32 = 3;

/// The script that installs `gateway_key`; `fresh` also makes new host keys.
fn script(gateway_key: &str, fresh: bool) -> String {
    let mut s = format!(
        "[ -x /usr/sbin/sshd ] || exit {NO_SSHD}\nset -e\n\
         mkdir -p /etc/ssh/sshd_config.d\n\
         printf '%s\\n' '{gateway_key}' > /etc/ssh/den_gateway_keys\n\
         chmod 644 /etc/ssh/den_gateway_keys\n\
         printf '# Written by Den: the SSH gateway logs in with its own key.\\n\
         AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2 /etc/ssh/den_gateway_keys\\n' \
         > /etc/ssh/sshd_config.d/00-den-gateway.conf\n"
    );
    if fresh {
        s.push_str("rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub\n");
    }
    // Keys that are missing are made; a running sshd reloads, a stopped one (an image without
    // host keys fails to start before this runs) is started.
    s.push_str(
        "ssh-keygen -A >/dev/null\nmkdir -p /run/sshd\n\
         if [ -s /run/sshd.pid ] && kill -0 \"$(cat /run/sshd.pid)\" 2>/dev/null; then kill -HUP \"$(cat /run/sshd.pid)\"\n\
         elif [ -d /run/systemd/system ]; then systemctl reset-failed ssh.service 2>/dev/null || true; systemctl restart ssh.service\n\
         else mkdir -p /run/sshd && /usr/sbin/sshd; fi\n",
    );
    s.push_str("cat /etc/ssh/ssh_host_ed25519_key.pub\n");
    s
}

/// What the sshd set-up may print, and how long it may take (it may make host keys).
const SSHD_BOUNDS: den_agent_proto::Bounds =
    den_agent_proto::Bounds::new(64 << 10, std::time::Duration::from_secs(120));
/// Longest host key line taken from a guest (an Ed25519 key line with a comment is ~100 bytes).
const MAX_KEY_LINE: usize = 1024;

impl Den {
    /// Sets the guest's sshd up for the gateway and pins its host key. `Ok(None)` when the
    /// guest has no sshd (the gateway then uses agent exec) or no gateway key is configured.
    pub async fn prepare_guest_sshd(
        &self,
        vm_id: &str,
        agent: &AgentClient,
        fresh_host_keys: bool,
    ) -> Result<Option<String>, String> {
        let Some(key) = self.gateway_key.get() else { return Ok(None) };
        let script = script(key, fresh_host_keys);
        let out = agent
            .exec_output(&["/bin/sh", "-c", &script], bytes::Bytes::new(), SSHD_BOUNDS)
            .await
            .map_err(|e| format!("preparing the guest's sshd: agent: {e}"))?;
        match out.code {
            Some(NO_SSHD) => return Ok(None),
            Some(0) => {}
            _ => return Err(format!("preparing the guest's sshd failed: {}", crate::guest_text(&out.stderr))),
        }
        // The key line is the last line; anything longer than a key line is not one.
        let text = String::from_utf8_lossy(&out.stdout);
        let host_key = text.trim().lines().last().unwrap_or_default().trim().to_string();
        if !host_key.starts_with("ssh-ed25519 ") || host_key.len() > MAX_KEY_LINE {
            return Err(format!(
                "the guest's sshd host key is not an Ed25519 key line: {:?}",
                crate::guest_text(host_key.as_bytes())
            ));
        }
        let old = self.store.guest_host_key(vm_id).map_err(|e| e.to_string())?;
        if old.as_deref() != Some(host_key.as_str()) {
            self.store.pin_guest_host_key(vm_id, &host_key).map_err(|e| e.to_string())?;
            let vm = self.store.vm(vm_id).map(|v| v.spec.name).unwrap_or_else(|_| vm_id.to_string());
            let what = if old.is_some() { "ssh.host_key_changed" } else { "ssh.host_key_pinned" };
            self.event("dend", what, &vm, &host_key);
        }
        Ok(Some(host_key))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn script_installs_the_key_and_only_refreshes_host_keys_when_asked() {
        let s = super::script("ssh-ed25519 AAAAK den-gateway", true);
        assert!(s.contains("'ssh-ed25519 AAAAK den-gateway' > /etc/ssh/den_gateway_keys"));
        assert!(s.contains("AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2 /etc/ssh/den_gateway_keys"));
        assert!(s.contains("ssh-keygen -A") && s.ends_with("cat /etc/ssh/ssh_host_ed25519_key.pub\n"));
        assert!(!super::script("ssh-ed25519 AAAAK", false).contains("rm -f /etc/ssh/ssh_host_"));
    }
}
