//! The supervisor: one loop that makes the system VM when it is missing, starts it before every
//! other VM, checks its health, restarts it when it dies, and carries updates through their
//! trial ([`den_core::system::decide`] says what to do; this file does it). One turn at a time; the
//! state it acts on is re-read from the store every turn, so a new dend continues where the
//! previous one stopped.

use super::health::{self, HttpCheck};
use super::slots;
use super::SystemConfig;
use super::{SystemError, DEND};
use den_core::system::HealthSample;
use den_core::system::{decide, Action, Down, Outcome, Phase, Rules, Seen};
use den_core::vm::{Kind, VmRecord, VmSpec, VmState};
use den_engine as engine;
use den_store::now_ms;
use den_store::StoreError;
use den_vms::Den;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Health checks kept.
const KEEP_HEALTH: i64 = 2000;
/// How long a start or stop of the VM may take.
const TASK_LIMIT: Duration = Duration::from_secs(600);
/// How long a failed check waits to see whether the engine is ending (then it was a crash).
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// How long the running OS gets to shut down before a new one boots.
const STOP: Duration = Duration::from_secs(60);
/// How long an OS that failed its trial (and whose agent answers) gets to shut down before the
/// previous one boots.
const FAILED_STOP: Duration = Duration::from_secs(5);
/// The longest pause between restarts of an OS that keeps crashing.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The business OS's supervisor.
pub struct System {
    cfg: SystemConfig,
    http: Option<HttpCheck>,
    wake: tokio::sync::Notify,
    /// One turn at a time (updates and rollbacks change the record in their own transactions,
    /// which every turn re-reads).
    turn: tokio::sync::Mutex<()>,
    /// Why the VM cannot be made, when it cannot.
    problem: Mutex<Option<String>>,
    /// Set once the first turn has started the VM (or found it running).
    first_turn: tokio::sync::watch::Sender<bool>,
}

/// What the loop keeps between turns.
#[derive(Default)]
struct Memory {
    last_check: Option<Instant>,
    last_ok: Option<bool>,
    last_boot: Option<Instant>,
    backoff: Duration,
    /// This dend has started the VM, or found it running: a stop after that was on purpose.
    seen_up: bool,
    /// Since when every check has failed.
    failing_since: Option<Instant>,
    /// The agent answered the last check.
    agent_answered: bool,
}

impl System {
    /// The supervisor of the business OS `cfg` describes; an update that a previous dend left
    /// half-written is ended here. Hand it to [`Den::reconcile`] as a keeper, then [`System::run`]
    /// it.
    pub fn new(den: &Den, cfg: SystemConfig) -> Result<Arc<System>, String> {
        let http = cfg.http_check.as_deref().map(HttpCheck::parse).transpose()?;
        let (first_turn, _) = tokio::sync::watch::channel(false);
        let sys = Arc::new(System {
            cfg,
            http,
            wake: Default::default(),
            turn: Default::default(),
            problem: Mutex::new(None),
            first_turn,
        });
        if let Ok(vm) = den.store.vm(&sys.cfg.name).map_err(|e| e.to_string()) {
            if vm.spec.kind == Kind::System {
                System::reconcile(den, &vm.spec.name, &den.paths.vm_data(&vm.id)).map_err(|e| e.to_string())?;
            }
        }
        Ok(sys)
    }

    /// Starts supervising: makes, starts and checks the VM from now on.
    pub fn run(self: &Arc<Self>, den: &Arc<Den>) {
        tokio::spawn(self.clone().supervise(den.clone()));
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The configuration.
    pub fn config(&self) -> &SystemConfig {
        &self.cfg
    }

    /// Why the VM cannot be made, when it cannot.
    pub fn problem(&self) -> Option<String> {
        self.problem.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Asks for a turn now (the VM's process ended, an update is ready).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits until the first turn has started the VM (at most `limit`): other VMs start after.
    pub async fn first_turn_done(&self, limit: Duration) {
        let mut rx = self.first_turn.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|done| *done)).await;
    }

    pub(super) fn rules(&self) -> Rules {
        Rules {
            window: self.cfg.health_window_secs * 1000,
            ready: self.cfg.ready_timeout_secs * 1000,
            max_failed_boots: self.cfg.max_failed_boots,
        }
    }

    /// The timing rules as the API shows them.
    pub(super) fn rule_settings(&self) -> den_api_types::system::SystemRules {
        den_api_types::system::SystemRules {
            health_window_secs: self.cfg.health_window_secs,
            ready_timeout_secs: self.cfg.ready_timeout_secs,
            check_interval_secs: self.cfg.check_interval_secs,
            max_failed_boots: self.cfg.max_failed_boots,
            http_check: self.cfg.http_check.clone(),
        }
    }

    async fn supervise(self: Arc<Self>, den: Arc<Den>) {
        let mut mem = Memory::default();
        loop {
            let res = {
                let _turn = self.turn.lock().await;
                self.turn_once(&den, &mut mem).await
            };
            if let Err(e) = &res {
                tracing::warn!(vm = %self.cfg.name, %e, "business OS supervisor");
            }
            // Other VMs start once the business OS has, or cannot.
            if mem.seen_up || res.is_err() || self.problem().is_some() {
                self.first_turn.send_if_modified(|done| !std::mem::replace(done, true));
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// One turn: look, decide, act.
    async fn turn_once(&self, den: &Arc<Den>, mem: &mut Memory) -> Result<(), SystemError> {
        let vm = match den.store.vm(&self.cfg.name) {
            Ok(vm) => vm,
            Err(StoreError::NotFound { .. }) => return self.create(den).await,
            Err(e) => return Err(e.into()),
        };
        if vm.spec.kind != Kind::System {
            let why = format!(
                "a VM named `{}` exists and is not a system VM; rename it, or set another `name` under [system]",
                self.cfg.name
            );
            *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
            return Err(SystemError::Busy(why));
        }
        let st = den.store.system_state()?;
        let seen = match vm.state {
            VmState::Creating | VmState::Starting | VmState::Stopping | VmState::Deleting => Seen::Busy,
            // Always on: until this dend has run it, a stopped business OS starts like a crashed one.
            VmState::Stopped if mem.seen_up => Seen::Down(Down::Stopped),
            VmState::Stopped | VmState::Crashed => Seen::Down(Down::Crashed),
            VmState::Paused => {
                mem.seen_up = true;
                Seen::Up { slot: st.booted, check: None }
            }
            VmState::Running => {
                mem.seen_up = true;
                let due = mem.last_check.is_none_or(|t| t.elapsed().as_secs() >= self.cfg.check_interval_secs);
                let answered_before = mem.agent_answered;
                let check = if due { Some(self.check(den, &vm, mem, st.booted).await) } else { None };
                // A check that failed because the OS died meanwhile (a kernel panic) is not a
                // failed check but a crash, which the next turn counts. QEMU closes the agent's
                // channel a moment before its process is gone: a failed check waits that moment.
                // Only when the agent answered before: an OS that has not answered yet (still
                // booting, or never) is not waited for, so its ready timeout is judged on time.
                let failed = check.as_ref().is_some_and(|c| !c.ok);
                let died = failed
                    && match &vm.running {
                        Some(r) => {
                            answered_before && tokio::time::timeout(EXIT_GRACE, engine::wait_exit(r)).await.is_ok()
                        }
                        None => true,
                    };
                if died {
                    let now = den.store.vm(&vm.id)?;
                    if now.state == VmState::Running && now.running == vm.running {
                        den.store.set_vm_state(&vm.id, VmState::Crashed, None)?;
                    }
                    return Ok(());
                }
                Seen::Up { slot: st.booted, check }
            }
        };
        // An OS that keeps crashing (or cannot start) is restarted less and less often; a trial's
        // boots are bounded by max_failed_boots instead.
        let trial = matches!(st.phase, Phase::Trial { .. });
        if matches!(seen, Seen::Down(Down::Crashed))
            && !trial
            && mem.last_boot.is_some_and(|t| t.elapsed() < mem.backoff)
        {
            return Ok(());
        }
        if st.phase == Phase::Steady && matches!(seen, Seen::Up { .. }) && self.hung(mem) {
            den.event(DEND, "system.hung", &vm.spec.name, "no health check passed for a whole window: restarting it");
            mem.failing_since = None;
            stop(den, &vm, failed_stop(mem)).await?;
            return self.boot(den, &den.store.vm(&vm.id)?, mem).await;
        }
        let (action, after) = self.decide(den, &st, &seen)?;
        match action {
            Action::Wait => Ok(()),
            Action::Boot => self.boot(den, &vm, mem).await,
            Action::Reboot => {
                let limit = if matches!(after.phase, Phase::RollingBack { .. }) { failed_stop(mem) } else { STOP };
                stop(den, &vm, limit).await?;
                let vm = den.store.vm(&vm.id)?;
                if self.decide(den, &after, &Seen::Down(Down::ForBoot))?.0 == Action::Boot {
                    self.boot(den, &vm, mem).await?;
                }
                Ok(())
            }
        }
    }

    /// [`decide`] on the stored state (which `before` was read from), reporting what changed.
    fn decide(
        &self,
        den: &Den,
        before: &super::SystemState,
        seen: &Seen,
    ) -> Result<(Action, super::SystemState), SystemError> {
        let now = now_ms();
        let (action, after) = den.store.modify_system(|st| {
            let a = decide(st, seen, now, &self.rules());
            Ok::<_, SystemError>((a, st.clone()))
        })?;
        self.report_changes(den, before, &after);
        Ok((action, after))
    }

    /// Whether the committed OS runs but has failed every check for a whole window, long after
    /// its boot: hung (a kernel stuck after a panic, a wedged init). Restarted like a crash.
    fn hung(&self, mem: &Memory) -> bool {
        let window = Duration::from_secs(self.cfg.health_window_secs);
        let booted_long_ago =
            mem.last_boot.is_none_or(|t| t.elapsed() > Duration::from_secs(self.cfg.ready_timeout_secs));
        booted_long_ago && mem.failing_since.is_some_and(|t| t.elapsed() >= window)
    }

    /// Runs a health check and records it (and a change from healthy to not, or back, as an
    /// event).
    async fn check(
        &self,
        den: &Den,
        vm: &VmRecord,
        mem: &mut Memory,
        slot: Option<super::Slot>,
    ) -> den_core::system::Check {
        let c = health::check(den, vm, self.http.as_ref()).await;
        mem.last_check = Some(Instant::now());
        let sample = HealthSample {
            time: now_ms(),
            ok: c.ok,
            slot: slot.map(|s| s.as_str()).unwrap_or("?").to_string(),
            detail: c.detail.clone(),
        };
        if let Err(e) = den.store.add_health(&sample, KEEP_HEALTH) {
            tracing::warn!(%e, "cannot record a health check");
        }
        if mem.last_ok != Some(c.ok) {
            let kind = if c.ok { "system.healthy" } else { "system.unhealthy" };
            den.event(DEND, kind, &vm.spec.name, &c.detail);
        }
        mem.agent_answered = c.agent;
        if c.ok {
            mem.backoff = Duration::ZERO;
            mem.failing_since = None;
        } else {
            mem.failing_since.get_or_insert_with(Instant::now);
        }
        mem.last_ok = Some(c.ok);
        c
    }

    /// Starts the VM from the slot the record says, following den.toml's size settings; a
    /// failed start counts as a crash.
    async fn boot(&self, den: &Arc<Den>, vm: &VmRecord, mem: &mut Memory) -> Result<(), SystemError> {
        self.follow_config(den, vm)?;
        mem.seen_up = true;
        mem.last_boot = Some(Instant::now());
        mem.backoff = (mem.backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
        mem.last_check = None;
        mem.last_ok = None;
        mem.failing_since = None;
        mem.agent_answered = false;
        let task = den.start(&vm.spec.name, DEND)?;
        if let Err(e) = den.wait_task(&task, TASK_LIMIT).await {
            // Never two engines on one data disk: a process the failed start left goes first.
            if let Some(r) = den.store.vm(&vm.id)?.running.filter(engine::is_alive) {
                if let Err(k) = engine::kill(&r).await {
                    tracing::warn!(pid = r.pid, %k, "cannot end the engine of a failed start");
                }
            }
            den.store.set_vm_state(&vm.id, VmState::Crashed, None)?;
            den.event(DEND, "system.boot_failed", &vm.spec.name, &e);
        }
        Ok(())
    }

    /// A stopped VM made under other `cpus` or `memory_mib` gets the current ones.
    fn follow_config(&self, den: &Den, vm: &VmRecord) -> Result<(), SystemError> {
        if (vm.spec.cpus, vm.spec.memory_mib) == (self.cfg.cpus, self.cfg.memory_mib) {
            return Ok(());
        }
        let mut vm = vm.clone();
        vm.spec.cpus = self.cfg.cpus;
        vm.spec.memory_mib = self.cfg.memory_mib;
        vm.spec.validate(den.limits).map_err(config_error)?;
        Ok(den.store.set_vm_spec(&vm)?)
    }

    /// Events for what a turn changed: an update's end, a rollback's start.
    fn report_changes(&self, den: &Den, before: &super::SystemState, after: &super::SystemState) {
        for u in &after.updates {
            let old = before.updates.iter().find(|b| b.id == u.id);
            if old.map(|o| o.outcome) == Some(u.outcome) {
                continue;
            }
            let (kind, detail) = match u.outcome {
                Outcome::Committed => ("system.update_committed", format!("update {}: {} committed", u.id, u.to_label)),
                Outcome::RolledBack => {
                    ("system.update_rolled_back", format!("update {}: back to {}: {}", u.id, u.from_label, u.why))
                }
                _ => continue,
            };
            den.event(DEND, kind, &self.cfg.name, &detail);
        }
        if let (Phase::Trial { update, .. }, Phase::RollingBack { why, .. }) = (&before.phase, &after.phase) {
            den.event(DEND, "system.rolling_back", &self.cfg.name, &format!("update {update}: {why}"));
        }
    }

    /// Makes the system VM: its data disk and slot A from the configured image.
    async fn create(&self, den: &Arc<Den>) -> Result<(), SystemError> {
        let set_problem = |p: Option<String>| *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = p;
        let images = den.images()?;
        let image = match images.image(&self.cfg.image).map_err(|e| SystemError::Image(e.to_string()))? {
            Some(i) => i,
            None => {
                let why = format!(
                    "the business OS image `{}` is not built; `den image build {}` builds it",
                    self.cfg.image, self.cfg.image
                );
                if self.problem().as_deref() != Some(&why) {
                    den.event(DEND, "system.image_missing", &self.cfg.name, &why);
                }
                set_problem(Some(why));
                return Ok(());
            }
        };
        slots::info_of(&image).map_err(SystemError::Image)?;
        set_problem(None);
        let spec = self.spec()?;
        spec.validate(den.limits).map_err(config_error)?;
        let engine = den_vms::engine_for(spec.engine);
        let vm = den.insert_creating(spec, engine, DEND)?;
        let (den2, rec, data_mib) = (den.clone(), vm.clone(), self.cfg.data_disk_mib);
        let task = den.spawn_task("system.create", &vm.spec.name, DEND, move |task| async move {
            let dir = den2.paths.vm_data(&rec.id);
            let res = async {
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                task.log(format!("making a {data_mib} MiB data disk (ext4, label den-data)"));
                den_vms::make_data_disk(&dir.join(den_vms::DATA_DISK), data_mib).await?;
                task.log(format!("writing image {} into slot A", image.name));
                let info =
                    slots::write(&den2.images().map_err(|e| e.to_string())?, &image, &dir, super::Slot::A, &task)
                        .await?;
                den2.store
                    .modify_system(|st| {
                        *st = super::SystemState {
                            a: Some(info),
                            updates: std::mem::take(&mut st.updates),
                            ..Default::default()
                        };
                        Ok::<_, StoreError>(())
                    })
                    .map_err(|e| e.to_string())
            }
            .await;
            den2.finish_creating(&rec, res, &task, &format!("image {} (slot A)", image.name)).await
        })?;
        den.wait_task(&task, TASK_LIMIT).await.map_err(SystemError::Busy)
    }

    pub(crate) fn spec(&self) -> Result<VmSpec, SystemError> {
        let nics: Vec<serde_json::Value> =
            if self.cfg.network.is_empty() { vec![] } else { vec![serde_json::json!({"network": self.cfg.network})] };
        serde_json::from_value(serde_json::json!({
            "name": self.cfg.name,
            "image": self.cfg.image,
            "kind": "system",
            "cpus": self.cfg.cpus,
            "memory_mib": self.cfg.memory_mib,
            "data_disk_mib": self.cfg.data_disk_mib,
            "restart": "always",
            "autostart": true,
            "nics": nics,
        }))
        .map_err(|e| SystemError::Image(e.to_string()))
    }
}

/// Stops a running (or paused) VM, hard after `limit`, and waits for it; nothing when it has no
/// process.
async fn stop(den: &Arc<Den>, vm: &VmRecord, limit: Duration) -> Result<(), SystemError> {
    if !matches!(vm.state, VmState::Running | VmState::Paused) {
        return Ok(());
    }
    match den.stop_within(&vm.spec.name, DEND, limit) {
        Ok(task) => den.wait_task(&task, TASK_LIMIT).await.map_err(SystemError::Busy),
        Err(_) => Ok(()),
    }
}

/// How long a failed or hung OS gets to shut down cleanly: a moment, and none at all when its
/// agent did not even answer the last check.
fn failed_stop(mem: &Memory) -> Duration {
    if mem.agent_answered {
        FAILED_STOP
    } else {
        Duration::ZERO
    }
}

/// A `[system]` setting the VM spec refuses.
fn config_error(e: den_core::FieldError) -> SystemError {
    SystemError::Image(format!("[system] {}: {}", e.field, e.message))
}
