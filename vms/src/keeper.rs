//! Hooks for the owners of special VMs. The VM service runs every VM the same way, except where a
//! VM's keeper says otherwise: the business OS's supervisor boots its VM from A/B slots, decides
//! what an exit means, refuses its deletion and makes other VMs wait for its first start. A keeper
//! is handed to [`Den::reconcile`], the only way in: so every keeper is known before the VMs a
//! previous dend left are looked at (a business OS cut short in its start is its keeper's, not
//! one for the restart policy). The VM service never names the parts above it.

use super::{BootFiles, Den};
use den_core::vm::VmRecord;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A part of Den that keeps some VMs (see the module's documentation).
pub trait VmKeeper: Send + Sync {
    /// What the keeper keeps, for messages ("the business OS `os`"); one keeper per label.
    fn label(&self) -> String;

    /// Whether `vm` is this keeper's.
    fn keeps(&self, vm: &VmRecord) -> bool;

    /// What `vm` boots: kernel, initramfs, command line and disks (instead of its image's).
    fn boot_files(&self, den: &Den, vm: &VmRecord) -> Result<BootFiles, String>;

    /// `vm`'s process ended by itself. The VM service has marked it crashed and unplugged its
    /// NICs; the keeper decides what comes next (no restart policy applies).
    fn exited(&self, vm: &VmRecord);

    /// Why `vm` cannot be deleted through the VM service, and what to do instead.
    fn delete_refusal(&self, vm: &VmRecord) -> &'static str;

    /// Resolves when the VMs that start by themselves after a host boot may start.
    fn before_autostart(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

impl Den {
    /// Registers a keeper of special VMs; refused when one with the same label is.
    pub(crate) fn add_keeper(&self, keeper: Arc<dyn VmKeeper>) -> Result<(), String> {
        let mut keepers = self.keepers.lock().unwrap_or_else(|p| p.into_inner());
        let label = keeper.label();
        if keepers.iter().any(|k| k.label() == label) {
            return Err(format!("{label} is kept already"));
        }
        keepers.push(keeper);
        Ok(())
    }

    /// The keeper of `vm`, when a registered keeper keeps it.
    pub fn keeper_of(&self, vm: &VmRecord) -> Option<Arc<dyn VmKeeper>> {
        self.keepers().into_iter().find(|k| k.keeps(vm))
    }

    /// Every registered keeper.
    pub(crate) fn keepers(&self) -> Vec<Arc<dyn VmKeeper>> {
        self.keepers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
