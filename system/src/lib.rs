//! The business OS: one always-on VM (kind `system`) declared under `[system]` in den.toml.
//! It boots from one of two OS slots (A and B) and keeps its state on a data disk that updates
//! never touch. `den system update` writes the new OS into the inactive slot and puts it on
//! trial; the [`supervisor`] commits it after a health window or rolls it back by itself.
//!
//! - [`state`]: the recorded state and [`state::decide`], the rules of a trial (pure);
//! - [`slots`]: the slots on disk, written whole or not at all;
//! - [`health`]: one check through the guest agent (and an optional HTTP check);
//! - [`supervisor`]: the loop that makes, starts, checks, boots and rolls back the VM.

mod config;
mod health;
pub mod slots;
mod supervisor;
mod update;

pub use health::HttpCheck;
// The recorded state and its decisions live in den-core; this module does the I/O.
pub use config::SystemConfig;
pub use den_core::system::{HealthSample, Outcome, Phase, Slot, SlotInfo, SystemState, Update};
pub use supervisor::System;

use den_api_types::system::SystemStatus;
use den_core::vm::{Kind, VmRecord};
use den_store::StoreError;
use den_vms::{BootFiles, Den, VmError, VmKeeper};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Who Den's own actions on the system VM are recorded as.
const DEND: &str = "dend";

/// How long other VMs wait for the business OS's first start.
const FIRST_START: Duration = Duration::from_secs(600);

/// Failures of the business OS's operations.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// No `[system]` in den.toml.
    #[error("this Den runs no business OS: add a [system] section to den.toml and restart dend")]
    NotConfigured,
    /// The VM does not exist yet.
    #[error("the business OS VM `{0}` is not made yet (is its image built? `den system status` says)")]
    NoVm(String),
    /// Another update or rollback is under way.
    #[error("{0}")]
    Busy(String),
    /// The image cannot be used.
    #[error("{0}")]
    Image(String),
    /// Nothing to roll back to.
    #[error("{0}")]
    NoPrevious(String),
    /// The VM service failed.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The supervisor, when `[system]` is configured: what the API answers with when it is not.
pub fn configured(system: Option<&Arc<System>>) -> Result<&Arc<System>, SystemError> {
    system.ok_or(SystemError::NotConfigured)
}

impl System {
    /// The business OS's status, with the newest `health` checks.
    pub fn status(&self, den: &Den, health: u32) -> Result<SystemStatus, SystemError> {
        let (state, problem) = match den.store.vm(self.name()) {
            Ok(vm) => (vm.state.as_str().to_string(), None),
            Err(StoreError::NotFound { .. }) => ("missing".to_string(), self.problem()),
            Err(e) => return Err(e.into()),
        };
        Ok(SystemStatus {
            vm: self.name().to_string(),
            state,
            problem,
            record: den.store.system_state()?,
            health: den.store.health(health)?,
            rules: self.rule_settings(),
        })
    }
}

/// The supervisor keeps the business OS's VM: the VM service asks it what to boot, tells it of
/// exits, and leaves deletion and restarts to it.
impl VmKeeper for System {
    fn label(&self) -> String {
        format!("the business OS `{}`", self.name())
    }

    fn keeps(&self, vm: &VmRecord) -> bool {
        vm.spec.kind == Kind::System && self.name() == vm.spec.name
    }

    /// The kernel, initramfs and read-only root disk of the slot the record says (the trial's,
    /// else the active one), then the data disk. Records which slot this boot uses.
    fn boot_files(&self, den: &Den, vm: &VmRecord) -> Result<BootFiles, String> {
        let dir = den.paths.vm_data(&vm.id);
        let boot = den
            .store
            .modify_system(|st| {
                let slot = st.boot_slot();
                let info = st.slot(slot).cloned().ok_or_else(|| {
                    SystemError::Image(format!(
                        "slot {} holds no OS; `den system status` shows the slots",
                        slot.as_str().to_uppercase()
                    ))
                })?;
                let files = slots::boot_files(&dir, slot, &info).map_err(SystemError::Image)?;
                st.booted = Some(slot);
                Ok::<_, SystemError>((slot, info, files))
            })
            .map_err(|e| e.to_string())?;
        let (slot, info, [kernel, initrd, root]) = boot;
        let mut disks = vec![den_engine::DiskSpec { path: root, read_only: true }];
        let data = dir.join(den_vms::DATA_DISK);
        if data.exists() {
            disks.push(den_engine::DiskSpec { path: data, read_only: false });
        }
        let cmdline = format!("{} den.slot={}", info.cmdline, slot.as_str());
        Ok(BootFiles { kernel, kernel_elf: None, initrd, cmdline, disks })
    }

    fn exited(&self, _vm: &VmRecord) {
        self.wake();
    }

    fn delete_refusal(&self, _vm: &VmRecord) -> &'static str {
        "it is the business OS: remove [system] from den.toml and restart dend first"
    }

    fn before_autostart(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.first_turn_done(FIRST_START))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_say_what_to_do() {
        let e = super::SystemError::NotConfigured.to_string();
        assert!(e.contains("add a [system] section"), "{e}");
    }
}
