//! Starting VMs when the host boots. A host boot is told from a `dend` restart by the kernel's
//! boot id (`/proc/sys/kernel/random/boot_id`, recorded in `<data>/boot_id`). After a boot,
//! VMs left "running" by the power cut are marked stopped, and those marked `autostart` are
//! started one after another, by `start_order`, then by name; each start task ends before the
//! next begins. The business OS comes first: its supervisor starts it, and autostart waits for
//! that.

use super::Den;
use den_core::task::TaskStatus;
use den_core::vm::{Kind, VmRecord, VmState};
use std::sync::Arc;
use std::time::Duration;

/// Whether the host booted since the last `dend` recorded its boot id (and records it now).
pub(crate) fn host_booted(data: &std::path::Path) -> bool {
    let now = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim().to_string();
    let file = data.join("boot_id");
    let before = std::fs::read_to_string(&file).unwrap_or_default().trim().to_string();
    if let Err(e) = std::fs::write(&file, format!("{now}\n")) {
        tracing::warn!(file = %file.display(), %e, "cannot record the boot id");
    }
    before != now
}

/// The VMs to start after a host boot, in order (system VMs are their supervisor's).
pub(crate) fn boot_order(vms: &[VmRecord]) -> Vec<&VmRecord> {
    let mut v: Vec<&VmRecord> = vms
        .iter()
        .filter(|v| v.spec.autostart && v.spec.kind != Kind::System)
        .filter(|v| matches!(v.state, VmState::Stopped | VmState::Crashed))
        .collect();
    v.sort_by_key(|v| (v.spec.start_order, v.spec.name.clone()));
    v
}

impl Den {
    /// Starts the autostart VMs in [`boot_order`], in the background, once every keeper of
    /// special VMs (the business OS's supervisor) lets them.
    pub fn autostart(self: &Arc<Self>) {
        let den = self.clone();
        tokio::spawn(async move {
            for keeper in den.keepers() {
                keeper.before_autostart().await;
            }
            let Ok(vms) = den.store.vms() else { return };
            let order: Vec<String> = boot_order(&vms).iter().map(|v| v.spec.name.clone()).collect();
            for name in order {
                match den.start(&name, "dend") {
                    Ok(task) => {
                        den.event("dend", "vm.autostarted", &name, &format!("task {task}"));
                        while den.store.task(&task).is_ok_and(|t| t.status == TaskStatus::Running) {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                    Err(e) => den.event("dend", "vm.autostart_failed", &name, &e.to_string()),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_order_then_name_leaving_system_vms_to_their_supervisor() {
        let mk = |name: &str, kind: Kind, autostart: bool, order: u32, state: VmState| {
            let mut r = den_core::testkit::vm_record(name);
            r.spec.kind = kind;
            r.spec.autostart = autostart;
            r.spec.start_order = order;
            r.state = state;
            r
        };
        let vms = vec![
            mk("b", Kind::Dev, true, 1, VmState::Stopped),
            mk("a", Kind::Dev, true, 1, VmState::Stopped),
            mk("early", Kind::App, true, 0, VmState::Crashed),
            mk("os", Kind::System, false, 9, VmState::Stopped),
            mk("manual", Kind::Dev, false, 0, VmState::Stopped),
            mk("up", Kind::Dev, true, 0, VmState::Running),
        ];
        let names: Vec<&str> = boot_order(&vms).iter().map(|v| v.spec.name.as_str()).collect();
        assert_eq!(names, ["early", "a", "b"], "the system VM is its supervisor's to start");
    }
}
