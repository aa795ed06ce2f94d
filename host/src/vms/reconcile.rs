//! What a new dend does with what the previous one left: tasks cut short are marked failed,
//! half-created and half-deleted VMs are finished off, and VM processes that still run are
//! adopted and watched again; those that died meanwhile get their restart policy.

use super::Den;
use crate::engine;
use crate::model::VmState;
use std::sync::Arc;

impl Den {
    /// Reconciles the stored state with the processes that exist. Call once at start.
    pub fn reconcile(self: &Arc<Self>) -> Result<(), super::VmError> {
        for t in self.store.fail_interrupted_tasks()? {
            tracing::warn!(task = %t.id, kind = %t.kind, target = %t.target, "task interrupted by a dend restart");
        }
        for vm in self.store.vms()? {
            match (vm.state, vm.running.clone()) {
                (VmState::Creating, _) | (VmState::Deleting, _) => {
                    self.event(
                        "dend",
                        "vm.cleaned_up",
                        &vm.spec.name,
                        &format!("was {} when dend stopped", vm.state.as_str()),
                    );
                    self.remove_vm_files_and_record(&vm);
                }
                (_, Some(r)) if engine::is_alive(&r) => {
                    let state = if vm.state == VmState::Stopping { VmState::Running } else { vm.state };
                    self.store.set_vm_state(&vm.id, state, Some(&r))?;
                    self.event("dend", "vm.adopted", &vm.spec.name, &format!("engine process {}", r.pid));
                    self.watch(vm.id.clone(), r);
                }
                (VmState::Stopped | VmState::Crashed, None) => {}
                (state, _) => {
                    self.store.set_vm_state(&vm.id, VmState::Stopped, None)?;
                    self.event("dend", "vm.exited", &vm.spec.name, "its engine process ended while dend was away");
                    let was_up = matches!(state, VmState::Running | VmState::Paused | VmState::Starting);
                    if was_up && vm.spec.restart != crate::model::RestartPolicy::Never {
                        if let Err(e) = self.start(&vm.id, "dend") {
                            self.event("dend", "vm.restart_failed", &vm.spec.name, &e.to_string());
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
