//! First-boot settings, delivered through the guest agent on a VM's first start: user accounts
//! (with passwordless sudo), SSH public keys for them and for root, the host name, and the
//! guest's sshd made ready for the SSH gateway. The script is made only from validated values
//! and runs once; a VM that failed it tries again on its next start.

use super::{Den, TaskHandle};
use crate::model::{FieldError, VmRecord};
use den_engine::{self as engine, Running};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How long the first start waits for the agent before giving up on the settings.
/// What the first-boot script may print, and how long it may take (it adds users and keys).
const FIRST_BOOT_BOUNDS: den_agent_proto::Bounds = den_agent_proto::Bounds::new(64 << 10, Duration::from_secs(300));

const AGENT_WAIT: Duration = Duration::from_secs(180);

/// What a VM gets on its first boot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirstBoot {
    /// Accounts to create (home directory, bash, passwordless sudo).
    #[serde(default)]
    pub users: Vec<String>,
    /// SSH public keys for root and for every user above.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
}

impl FirstBoot {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.ssh_keys.is_empty()
    }

    /// Checks user names and keys.
    pub fn validate(&self) -> Result<(), FieldError> {
        let err = |message: String| Err(FieldError { field: "first_boot", message });
        for u in &self.users {
            let ok = !u.is_empty()
                && u.len() <= 32
                && u.bytes().next().is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
                && u.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_');
            if !ok || u == "root" {
                return err(format!("`{u}` is not a user name for a guest (a-z, 0-9, - and _, not root)"));
            }
        }
        for k in &self.ssh_keys {
            let kind = k.split_whitespace().next().unwrap_or("");
            let known = kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-");
            if !known || k.split_whitespace().count() < 2 || k.len() > 8192 || k.contains(['\'', '\n', '\r', '\0']) {
                return err(format!(
                    "`{}` is not an SSH public key line (like `ssh-ed25519 AAAA... me@laptop`)",
                    k.chars().take(40).collect::<String>()
                ));
            }
        }
        Ok(())
    }

    /// The shell script that applies the settings (values are validated: no quoting issues).
    pub fn script(&self, hostname: &str) -> String {
        let mut s = String::from("set -e\n");
        s.push_str(&format!("echo '{hostname}' > /etc/hostname\n"));
        let keys: String = self.ssh_keys.iter().map(|k| format!("{k}\n")).collect();
        let install = |home: &str, owner: &str| {
            format!(
                "mkdir -p {home}/.ssh && printf '%s' '{keys}' >> {home}/.ssh/authorized_keys && chmod 700 {home}/.ssh && chmod 600 {home}/.ssh/authorized_keys && chown -R {owner}: {home}/.ssh\n"
            )
        };
        if !self.ssh_keys.is_empty() {
            s.push_str(&install("/root", "root"));
        }
        for u in &self.users {
            s.push_str(&format!("id -u {u} >/dev/null 2>&1 || useradd -m -s /bin/bash {u}\n"));
            s.push_str(&format!(
                "mkdir -p /etc/sudoers.d && echo '{u} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/den-{u} && chmod 0440 /etc/sudoers.d/den-{u}\n"
            ));
            if !self.ssh_keys.is_empty() {
                s.push_str(&install(&format!("/home/{u}"), u));
            }
        }
        s
    }
}

impl Den {
    /// After a start: the first-boot settings, if still due. A failure fails the start task
    /// (and is an event) while the VM keeps running; the next start tries again.
    pub(crate) async fn first_boot_after_start(&self, id: &str, task: &TaskHandle) -> Result<(), String> {
        let vm = self.store.vm(id).map_err(|e| e.to_string())?;
        let Some(running) = vm.running.clone() else { return Ok(()) };
        let res = self.first_boot(&vm, &running, task).await;
        if let Err(e) = &res {
            self.event("dend", "vm.first_boot_failed", &vm.spec.name, e);
        }
        res
    }

    /// Applies the VM's first-boot settings through its agent, once, and gets its sshd ready
    /// for the SSH gateway (fresh host keys, the gateway's key, the host key pinned). ISO
    /// installs have no Den agent and are left alone.
    async fn first_boot(&self, vm: &VmRecord, running: &Running, task: &TaskHandle) -> Result<(), String> {
        if vm.provisioned || vm.spec.iso.is_some() {
            return Ok(());
        }
        task.log("first boot: waiting for the guest agent");
        let t = Instant::now();
        let agent = loop {
            match engine::agent(running).await {
                Ok(a) => break a,
                Err(e) if t.elapsed() > AGENT_WAIT => return Err(format!("first-boot settings: no agent: {e}")),
                Err(_) if !self.still_running(&vm.id, running) => return Ok(()),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        if !vm.spec.first_boot.is_empty() {
            let script = vm.spec.first_boot.script(&vm.spec.name);
            let out = agent
                .exec_output(&["/bin/sh", "-c", &script], bytes::Bytes::new(), FIRST_BOOT_BOUNDS)
                .await
                .map_err(|e| format!("first-boot settings: agent: {e}"))?;
            if out.code != Some(0) {
                return Err(format!("first-boot settings failed: {}", crate::vms::guest_text(&out.stderr)));
            }
            task.log(format!(
                "first boot: {} user(s), {} SSH key(s) set up",
                vm.spec.first_boot.users.len(),
                vm.spec.first_boot.ssh_keys.len()
            ));
        }
        if let Some(key) = self.prepare_guest_sshd(&vm.id, &agent, true).await? {
            task.log(format!("first boot: sshd ready for the SSH gateway, host key pinned: {key}"));
        }
        let mut now = self.store.vm(&vm.id).map_err(|e| e.to_string())?;
        now.provisioned = true;
        self.store.set_vm_spec(&now).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Whether the VM still runs the process `running` (a stop during the first boot ends the wait).
    fn still_running(&self, id: &str, running: &Running) -> bool {
        self.store.vm(id).is_ok_and(|v| v.running.as_ref().is_some_and(|r| r.pid == running.pid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_and_scripts() {
        let fb = FirstBoot { users: vec!["alice".into()], ssh_keys: vec!["ssh-ed25519 AAAAC3Nza me@laptop".into()] };
        assert!(fb.validate().is_ok());
        let s = fb.script("web1");
        assert!(s.contains("useradd -m -s /bin/bash alice") && s.contains("/home/alice/.ssh/authorized_keys"));
        assert!(s.contains("/root/.ssh/authorized_keys") && s.contains("echo 'web1' > /etc/hostname"));
        for bad in ["root", "Alice", "a b", "x;rm"] {
            assert!(FirstBoot { users: vec![bad.into()], ..Default::default() }.validate().is_err(), "{bad}");
        }
        for bad in ["AAAA", "ssh-rsa", "ssh-rsa AAA' ; rm -rf /", "ssh-rsa AAA\nx"] {
            assert!(FirstBoot { ssh_keys: vec![bad.into()], ..Default::default() }.validate().is_err(), "{bad}");
        }
        assert!(FirstBoot::default().is_empty());
    }
}
