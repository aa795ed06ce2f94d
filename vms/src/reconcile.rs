//! What a new dend does with what the previous one left: tasks cut short are marked failed,
//! half-created and half-deleted VMs are finished off, and VM processes that still run are
//! adopted and watched again; those that died meanwhile get their restart policy.

use super::{Den, VmKeeper};
use den_core::vm::VmState;
use den_engine as engine;
use std::sync::Arc;

impl Den {
    /// Registers the `keepers` of special VMs, then reconciles the stored state with the
    /// processes that exist. Call once at start; returns whether the host booted since the last
    /// dend (then [`Den::autostart`] is due).
    pub async fn reconcile(self: &Arc<Self>, keepers: Vec<Arc<dyn VmKeeper>>) -> Result<bool, super::VmError> {
        for k in keepers {
            self.add_keeper(k).map_err(super::VmError::Keeper)?;
        }
        let booted = super::autostart::host_booted(&self.paths.data);
        self.reconcile_network().await?;
        self.reconcile_snapshots()?;
        self.remove_orphan_dirs()?;
        for t in self.store.fail_interrupted_tasks()? {
            tracing::warn!(task = %t.id, kind = %t.kind, target = %t.target, "task interrupted by a dend restart");
        }
        // Before any VM starts again: jail cgroups of den-vmm processes that ended meanwhile.
        let vms = self.store.vms()?;
        let live: Vec<(String, Option<i32>)> = vms
            .iter()
            .map(|vm| (vm.id.clone(), vm.running.as_ref().filter(|r| engine::is_alive(r)).map(|r| r.pid)))
            .collect();
        for group in engine::vmm::jail::sweep_cgroups(&live).await {
            tracing::info!(cgroup = %group, "removed the cgroup of a den-vmm that ended while dend was away");
        }
        for vm in vms {
            if !vm.running.as_ref().is_some_and(engine::is_alive) {
                let orphans = engine::kill_orphans(&self.paths.vm_run(&vm.id));
                if !orphans.is_empty() {
                    let what = format!("engine processes {orphans:?} of a start cut short by the dend restart");
                    self.event("dend", "vm.orphans_killed", &vm.spec.name, &what);
                }
            }
            match (vm.state, vm.running.clone()) {
                (VmState::Creating, _) | (VmState::Deleting, _) => {
                    self.event(
                        "dend",
                        "vm.cleaned_up",
                        &vm.spec.name,
                        &format!("was {} when dend stopped", vm.state.as_str()),
                    );
                    self.remove_vm_files_and_record(&vm).await;
                }
                (_, Some(r)) if engine::is_alive(&r) => {
                    // A start or stop cut short by the restart: its process runs, so it runs.
                    let state = match vm.state {
                        VmState::Stopping | VmState::Starting => VmState::Running,
                        s => s,
                    };
                    self.store.set_vm_state(&vm.id, state, Some(&r))?;
                    self.event("dend", "vm.adopted", &vm.spec.name, &format!("engine process {}", r.pid));
                    self.watch(vm.id.clone(), r);
                }
                (VmState::Stopped | VmState::Crashed, None) => {}
                // The business OS's supervisor takes it from here (its restarts count boots).
                (_, _) if self.keeper_of(&vm).is_some() => {
                    self.store.set_vm_state(&vm.id, VmState::Crashed, None)?;
                    self.event("dend", "vm.exited", &vm.spec.name, "its engine process ended while dend was away");
                    self.net.unplug(&vm).await;
                }
                (state, _) => {
                    self.store.set_vm_state(&vm.id, VmState::Stopped, None)?;
                    self.event("dend", "vm.exited", &vm.spec.name, "its engine process ended while dend was away");
                    let was_up = matches!(state, VmState::Running | VmState::Paused | VmState::Starting);
                    // After a host boot only autostart decides; restart policies are for crashes.
                    if was_up && !booted && vm.spec.restart != den_core::vm::RestartPolicy::Never {
                        if let Err(e) = self.start(&vm.id, "dend") {
                            self.event("dend", "vm.restart_failed", &vm.spec.name, &e.to_string());
                        }
                    } else {
                        self.net.unplug(&vm).await;
                    }
                }
            }
        }
        Ok(booted)
    }

    /// Removes VM data and runtime directories that belong to no VM record (a create or delete
    /// cut short between its file and record steps).
    fn remove_orphan_dirs(&self) -> Result<(), super::VmError> {
        let ids: std::collections::HashSet<String> = self.store.vms()?.into_iter().map(|v| v.id).collect();
        let roots = [self.paths.vm_data("x"), self.paths.vm_run("x")].map(|p| p.parent().map(|d| d.to_path_buf()));
        for root in roots.into_iter().flatten() {
            let Ok(entries) = std::fs::read_dir(&root) else { continue };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let ours = name.len() == 32 && name.bytes().all(|c| c.is_ascii_hexdigit());
                if ours && !ids.contains(&name) {
                    tracing::warn!(dir = %e.path().display(), "removing files of a VM that has no record");
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(())
    }

    /// Removes snapshot files without a record: copies a dend killed mid-snapshot left behind.
    fn reconcile_snapshots(&self) -> Result<(), super::VmError> {
        for vm in self.store.vms()? {
            let dir = self.paths.vm_data(&vm.id).join("snapshots");
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            let known: Vec<String> = self.store.snapshots(&vm.id)?.into_iter().map(|s| s.name).collect();
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !known.contains(&name) {
                    tracing::warn!(vm = %vm.spec.name, snapshot = %name, "removing an unfinished snapshot");
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(())
    }

    /// Brings the host network in line with the store and removes TAPs that no running VM
    /// owns. A failure here is logged, not fatal: VMs without NICs must still be manageable.
    async fn reconcile_network(&self) -> Result<(), super::VmError> {
        if let Err(e) = self.net.sync(&self.store).await {
            tracing::error!(%e, "cannot set up the host network; VMs with NICs will not start until it works");
        }
        let running: std::collections::HashSet<String> = self
            .store
            .vms()?
            .into_iter()
            .filter(|v| v.running.as_ref().is_some_and(engine::is_alive))
            .flat_map(|v| v.nics.into_iter().map(|n| n.tap))
            .collect();
        self.net.sweep_taps(&running).await;
        Ok(())
    }
}
