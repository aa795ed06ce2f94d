//! Updates and rollbacks by hand: `den system update` writes an image into the inactive slot
//! (a task) and puts it on trial; `den system rollback` ends a trial, or puts the previous OS
//! on trial again. What happens next is the supervisor's. After a dend restart, an update cut
//! short while writing is marked failed and its half-written slot removed.

use super::slots;
use super::{System, SystemError};
use den_core::system::{abort_trial, Outcome, Phase, Slot, SystemState, Update};
use den_store::now_ms;
use den_store::StoreError;
use den_vms::Den;
use std::sync::Arc;

fn new_update(kind: &str, user: &str, st: &SystemState, to_label: String, slot: Slot, now: u64) -> Update {
    Update {
        id: 0,
        kind: kind.into(),
        user: user.into(),
        to_label,
        from_label: st.slot(st.active).map(|i| i.label()).unwrap_or_default(),
        slot,
        started: now,
        ended: None,
        outcome: Outcome::InProgress,
        why: String::new(),
        steps: vec![],
    }
}

fn busy(phase: &Phase) -> SystemError {
    SystemError::Busy(match phase {
        Phase::Steady => "the business OS is busy".into(),
        Phase::Writing { update, slot } => {
            format!("update {update} is writing slot {}; wait for it to finish", slot.as_str().to_uppercase())
        }
        Phase::Trial { update, .. } => {
            format!("update {update} is on trial; wait for it to commit, or end it with `den system rollback`")
        }
        Phase::RollingBack { update, .. } => format!("update {update} is rolling back; wait for it to finish"),
    })
}

impl System {
    /// Starts an update to image `image`: the task writes it into the inactive slot, then the
    /// new OS goes on trial. Returns the task and the update's number.
    pub fn update(self: &Arc<Self>, den: &Arc<Den>, image: &str, user: &str) -> Result<(String, u64), SystemError> {
        let sys = self.clone();
        let vm = den.store.vm(sys.name()).map_err(|_| SystemError::NoVm(sys.name().into()))?;
        let img = den.images()?.image(image).map_err(|e| SystemError::Image(e.to_string()))?.ok_or_else(|| {
            SystemError::Image(format!(
                "image `{image}` not found; `den image build <spec.yml>` builds it, `den image ls` lists images"
            ))
        })?;
        let label = slots::info_of(&img).map_err(SystemError::Image)?.label();
        let now = now_ms();
        let (update, slot) = den.store.modify_system(|st| {
            if st.phase != Phase::Steady {
                return Err(busy(&st.phase));
            }
            let slot = st.active.other();
            let mut u = new_update("update", user, st, label.clone(), slot, now);
            u.step(now, format!("writing {label} into slot {}", slot.as_str().to_uppercase()));
            let id = st.add_update(u);
            st.set_slot(slot, None);
            st.phase = Phase::Writing { update: id, slot };
            Ok::<_, SystemError>((id, slot))
        })?;
        let name = sys.name().to_string();
        let dir = den.paths.vm_data(&vm.id);
        let worker = den.clone();
        let task = den.spawn_task("system.update", &name, user, move |task| async move {
            let t = std::time::Instant::now();
            let written =
                async { slots::write(&worker.images().map_err(|e| e.to_string())?, &img, &dir, slot, &task).await };
            match written.await {
                Ok(info) => {
                    let secs = t.elapsed().as_secs_f64();
                    worker
                        .store
                        .modify_system(|st| {
                            if st.phase != (Phase::Writing { update, slot }) {
                                return Err(SystemError::Busy(format!(
                                    "update {update} was abandoned while its slot was written"
                                )));
                            }
                            st.set_slot(slot, Some(info));
                            st.phase = Phase::Trial { update, slot, since: None, failed_boots: 0, healthy_since: None };
                            if let Some(u) = st.update_mut(update) {
                                u.step(
                                    now_ms(),
                                    format!("slot {} written in {secs:.1} s; on trial", slot.as_str().to_uppercase()),
                                );
                            }
                            Ok(())
                        })
                        .map_err(|e| e.to_string())?;
                    sys.wake();
                    task.log(format!(
                        "slot {} written; the new OS boots now and commits after {} s of passing health checks \
                         (`den system status` follows it)",
                        slot.as_str().to_uppercase(),
                        sys.config().health_window_secs
                    ));
                    Ok(())
                }
                Err(e) => {
                    let _ = slots::clear(&dir, slot);
                    let _ = worker.store.modify_system(|st| {
                        st.phase = Phase::Steady;
                        if let Some(u) = st.update_mut(update) {
                            u.end(now_ms(), Outcome::Failed, &format!("writing the slot failed: {e}"));
                        }
                        Ok::<_, StoreError>(())
                    });
                    Err(e)
                }
            }
        })?;
        den.event(user, "system.update_started", &name, &format!("update {update}: {label}"));
        Ok((task, update))
    }

    /// Rolls back by hand: ends a trial, or puts the OS of the other slot on trial again.
    /// Returns the update's number.
    pub fn rollback(&self, den: &Den, user: &str) -> Result<u64, SystemError> {
        let sys = self;
        let now = now_ms();
        let id = den.store.modify_system(|st| match st.phase.clone() {
            Phase::Trial { update, .. } => {
                abort_trial(st, now, user);
                Ok(update)
            }
            Phase::Steady => {
                let slot = st.active.other();
                let Some(info) = st.slot(slot) else {
                    return Err(SystemError::NoPrevious(format!(
                        "slot {} holds no OS: there is nothing to roll back to",
                        slot.as_str().to_uppercase()
                    )));
                };
                if let Some(why) = &info.failed {
                    return Err(SystemError::NoPrevious(format!(
                        "slot {} holds {}, which failed its trial ({why}): `den system update` installs another",
                        slot.as_str().to_uppercase(),
                        info.label()
                    )));
                }
                let label = info.label();
                let mut u = new_update("rollback", user, st, label, slot, now);
                u.step(now, format!("back to slot {} by hand", slot.as_str().to_uppercase()));
                let id = st.add_update(u);
                st.phase = Phase::Trial { update: id, slot, since: None, failed_boots: 0, healthy_since: None };
                Ok(id)
            }
            other => Err(busy(&other)),
        })?;
        sys.wake();
        den.event(user, "system.rollback", sys.name(), &format!("update {id}"));
        Ok(id)
    }

    /// After a restart of dend: an update that was writing its slot is failed and the slot's
    /// files removed, as are slot files no record names (a write cut short before its record).
    pub(super) fn reconcile(den: &Den, name: &str, vm_data: &std::path::Path) -> Result<(), SystemError> {
        let cut = den.store.modify_system(|st| {
            let Phase::Writing { update, slot } = st.phase else { return Ok::<_, SystemError>(None) };
            st.phase = Phase::Steady;
            st.set_slot(slot, None);
            if let Some(u) = st.update_mut(update) {
                u.end(now_ms(), Outcome::Failed, "dend stopped while it was writing the slot; nothing changed");
            }
            Ok(Some(update))
        })?;
        if let Some(u) = cut {
            tracing::warn!(update = u, "a business OS update was cut short while writing its slot");
            den.event(
                "dend",
                "system.update_failed",
                name,
                &format!("update {u}: dend stopped while writing the slot"),
            );
        }
        let st = den.store.system_state()?;
        for slot in [Slot::A, Slot::B] {
            let d = slots::dir(vm_data, slot);
            let partial = d.with_extension("partial");
            if partial.exists() || (st.slot(slot).is_none() && d.exists()) {
                tracing::warn!(dir = %d.display(), "removing an unfinished business OS slot");
                slots::clear(vm_data, slot).map_err(SystemError::Image)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use den_core::system::SlotInfo;
    use den_core::vm::VmState;

    fn den(dir: &std::path::Path) -> Arc<Den> {
        let paths = den_vms::paths::Paths::new(dir, &dir.join("run"), &dir.join("images"));
        let limits = den_core::vm::Limits { max_cpus: 2, max_memory_mib: 1024 };
        Den::new(den_store::Store::memory().unwrap(), paths, limits, "10.87.0.0/24")
    }

    fn info() -> SlotInfo {
        SlotInfo {
            image: "system".into(),
            version: "1".into(),
            spec_digest: "ab".into(),
            kernel_release: String::new(),
            cmdline: String::new(),
            artifacts: Default::default(),
            written: 0,
            failed: None,
        }
    }

    #[tokio::test]
    async fn a_write_cut_short_fails_and_its_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let den = den(dir.path());
        let vm_data = dir.path().join("vm");
        den.store
            .modify_system(|st| {
                st.a = Some(info());
                let u = new_update("update", "root", st, "system 2".into(), Slot::B, 1);
                let id = st.add_update(u);
                st.phase = Phase::Writing { update: id, slot: Slot::B };
                Ok::<_, SystemError>(())
            })
            .unwrap();
        std::fs::create_dir_all(slots::dir(&vm_data, Slot::B).with_extension("partial")).unwrap();
        std::fs::create_dir_all(slots::dir(&vm_data, Slot::A)).unwrap();
        System::reconcile(&den, "system", &vm_data).unwrap();
        let st = den.store.system_state().unwrap();
        assert_eq!((st.phase, st.b.is_none(), st.updates[0].outcome), (Phase::Steady, true, Outcome::Failed));
        assert!(st.updates[0].why.contains("dend stopped while it was writing"));
        assert!(!slots::dir(&vm_data, Slot::B).with_extension("partial").exists(), "the half-written slot went");
        assert!(slots::dir(&vm_data, Slot::A).exists(), "the active slot stays");
    }

    // A business OS whose start a dend restart cut short is its supervisor's to boot again (and
    // count), not the restart policy's: every keeper is known before the VMs are reconciled.
    #[tokio::test]
    async fn a_business_os_cut_short_in_its_start_is_left_to_its_supervisor() {
        let dir = tempfile::tempdir().unwrap();
        let den = den(dir.path());
        let cfg = crate::SystemConfig { name: "os".into(), network: String::new(), ..Default::default() };
        let sys = crate::System::new(&den, cfg).unwrap();
        let vm = den.insert_creating(sys.spec().unwrap(), den_engine::EngineKind::Qemu, "dend").unwrap();
        den.store.set_vm_state(&vm.id, VmState::Starting, None).unwrap();
        den.reconcile(vec![sys.clone()]).await.unwrap();
        assert_eq!(den.store.vm("os").unwrap().state, VmState::Crashed);
        let kinds: Vec<String> = den.store.recent_events(20).unwrap().into_iter().map(|e| e.kind).collect();
        assert!(!kinds.iter().any(|k| k.starts_with("vm.restart") || k == "vm.start_failed"), "{kinds:?}");
        let e = den.reconcile(vec![sys]).await.unwrap_err().to_string();
        assert!(e.contains("is kept already"), "one keeper per label: {e}");
    }

    #[tokio::test]
    async fn rollback_by_hand_needs_a_previous_os_and_no_update_under_way() {
        let dir = tempfile::tempdir().unwrap();
        let den = den(dir.path());
        assert!(matches!(crate::configured(None), Err(SystemError::NotConfigured)));
        let cfg = crate::SystemConfig { name: "os".into(), ..Default::default() };
        let sys = crate::System::new(&den, cfg).unwrap();
        den.reconcile(vec![sys.clone()]).await.unwrap();
        sys.run(&den);
        den.store
            .modify_system(|st| {
                st.a = Some(info());
                Ok::<_, SystemError>(())
            })
            .unwrap();
        let e = sys.rollback(&den, "root").unwrap_err().to_string();
        assert!(e.contains("slot B holds no OS"), "{e}");
        den.store
            .modify_system(|st| {
                st.b = Some(info());
                Ok::<_, SystemError>(())
            })
            .unwrap();
        let id = sys.rollback(&den, "root").unwrap();
        let st = den.store.system_state().unwrap();
        assert!(matches!(st.phase, Phase::Trial { slot: Slot::B, update, .. } if update == id));
        assert_eq!(st.updates[0].kind, "rollback");
        let e = sys.rollback(&den, "ann").unwrap();
        assert_eq!(e, id, "a second rollback ends the trial");
        assert!(matches!(den.store.system_state().unwrap().phase, Phase::RollingBack { .. }));
        let e = sys.rollback(&den, "ann").unwrap_err().to_string();
        assert!(e.contains("is rolling back"), "{e}");
    }
}
