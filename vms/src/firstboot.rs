//! First-boot settings, delivered through the guest agent on a VM's first start: user accounts
//! (with passwordless sudo), SSH public keys for them and for root, the host name, and the
//! guest's sshd made ready for the SSH gateway. The script is made only from validated values
//! and runs once; a VM that failed it tries again on its next start.

use super::{Den, TaskHandle};
use den_core::vm::VmRecord;
use den_engine::{self as engine, Running};
use std::time::{Duration, Instant};

/// How long the first start waits for the agent before giving up on the settings.
/// What the first-boot script may print, and how long it may take (it adds users and keys).
const FIRST_BOOT_BOUNDS: den_agent_proto::Bounds = den_agent_proto::Bounds::new(64 << 10, Duration::from_secs(300));

const AGENT_WAIT: Duration = Duration::from_secs(180);

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
                return Err(format!("first-boot settings failed: {}", crate::guest_text(&out.stderr)));
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
