//! The business OS's recorded state and the one function that moves it: [`decide`] takes what
//! the supervisor saw (the VM down, up on a slot, a health check's result) and returns what to
//! do next, changing the phase as updates commit or roll back. Pure, so every path is tested
//! without a VM; the supervisor does the I/O.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A recorded health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSample {
    /// ms since the Unix epoch.
    pub time: u64,
    /// Passed.
    pub ok: bool,
    /// The slot that ran (`a`, `b`).
    pub slot: String,
    /// What it found.
    pub detail: String,
}

/// One of the two OS slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// Slot A.
    A,
    /// Slot B.
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// `a` or `b`.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
}

/// The OS a slot holds: a copy of an image's kernel, initramfs and root disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotInfo {
    /// The image it was written from.
    pub image: String,
    /// The image's version label (empty when its spec has none).
    pub version: String,
    /// Digest of the spec the image was built from.
    pub spec_digest: String,
    /// Kernel release.
    pub kernel_release: String,
    /// Kernel command line.
    pub cmdline: String,
    /// Artifact role (`kernel`, `initramfs`, `rootfs`) to digest.
    pub artifacts: BTreeMap<String, String>,
    /// When it was written (ms since the Unix epoch).
    pub written: u64,
    /// Why it was rolled back, when its trial failed (then it is not offered to go back to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

impl SlotInfo {
    /// The version to show: the label, or the spec digest's first 12 characters.
    pub fn label(&self) -> String {
        if self.version.is_empty() {
            format!("{}@{}", self.image, self.spec_digest.get(..12).unwrap_or(&self.spec_digest))
        } else {
            format!("{} {}", self.image, self.version)
        }
    }
}

/// Where the OS stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// The active slot runs.
    Steady,
    /// An update writes the inactive slot; the active one keeps running.
    Writing {
        /// The update.
        update: u64,
        /// The slot being written.
        slot: Slot,
    },
    /// A new OS is on trial: it boots from `slot` until it commits or rolls back.
    Trial {
        /// The update.
        update: u64,
        /// The slot on trial.
        slot: Slot,
        /// When its first boot started (ms), once it has.
        since: Option<u64>,
        /// Boots that ended by themselves.
        failed_boots: u32,
        /// Since when every check has passed (ms).
        healthy_since: Option<u64>,
    },
    /// The active slot boots again after a failed trial; done once it is healthy.
    RollingBack {
        /// The update.
        update: u64,
        /// Why.
        why: String,
        /// When the rollback began (ms).
        since: u64,
    },
}

/// How an update ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Not yet.
    InProgress,
    /// The new OS passed its window and is the active slot.
    Committed,
    /// The new OS failed; the previous one runs again.
    RolledBack,
    /// The update stopped before a new OS booted (nothing changed).
    Failed,
}

impl Outcome {
    /// The name in the record and the API (`in_progress`, `committed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::InProgress => "in_progress",
            Outcome::Committed => "committed",
            Outcome::RolledBack => "rolled_back",
            Outcome::Failed => "failed",
        }
    }
}

/// A step of an update, with its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// ms since the Unix epoch.
    pub time: u64,
    /// What happened.
    pub what: String,
}

/// One update (or a rollback by hand) and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// Number, counting up.
    pub id: u64,
    /// `update` or `rollback` (by hand).
    pub kind: String,
    /// Who asked.
    pub user: String,
    /// What it installs.
    pub to_label: String,
    /// What ran before.
    pub from_label: String,
    /// The slot it boots.
    pub slot: Slot,
    /// Started (ms).
    pub started: u64,
    /// Ended (ms).
    pub ended: Option<u64>,
    /// The outcome.
    pub outcome: Outcome,
    /// Why it failed or rolled back.
    pub why: String,
    /// Its steps.
    pub steps: Vec<Step>,
}

impl Update {
    /// Adds a step.
    pub fn step(&mut self, time: u64, what: impl Into<String>) {
        self.steps.push(Step { time, what: what.into() });
    }

    /// Ends it.
    pub fn end(&mut self, time: u64, outcome: Outcome, why: &str) {
        self.ended = Some(time);
        self.outcome = outcome;
        self.why = why.to_string();
    }
}

/// Updates kept in the record (older ones are dropped).
pub const KEEP_UPDATES: usize = 50;

/// Everything recorded about the business OS (one row, written atomically).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemState {
    /// The committed slot.
    pub active: Slot,
    /// Slot A's OS.
    pub a: Option<SlotInfo>,
    /// Slot B's OS.
    pub b: Option<SlotInfo>,
    /// Where it stands.
    pub phase: Phase,
    /// The slot the engine process started last booted.
    pub booted: Option<Slot>,
    /// Updates, oldest first.
    pub updates: Vec<Update>,
}

impl Default for SystemState {
    fn default() -> Self {
        SystemState { active: Slot::A, a: None, b: None, phase: Phase::Steady, booted: None, updates: vec![] }
    }
}

impl SystemState {
    /// A slot's OS.
    pub fn slot(&self, s: Slot) -> Option<&SlotInfo> {
        match s {
            Slot::A => self.a.as_ref(),
            Slot::B => self.b.as_ref(),
        }
    }

    /// Sets a slot's OS.
    pub fn set_slot(&mut self, s: Slot, info: Option<SlotInfo>) {
        match s {
            Slot::A => self.a = info,
            Slot::B => self.b = info,
        }
    }

    /// The slot the next boot uses: the one on trial, else the active one.
    pub fn boot_slot(&self) -> Slot {
        match &self.phase {
            Phase::Trial { slot, .. } => *slot,
            _ => self.active,
        }
    }

    /// An update by id.
    pub fn update_mut(&mut self, id: u64) -> Option<&mut Update> {
        self.updates.iter_mut().find(|u| u.id == id)
    }

    /// Records a new update and returns its id.
    pub fn add_update(&mut self, mut u: Update) -> u64 {
        u.id = self.updates.last().map(|x| x.id + 1).unwrap_or(1);
        let id = u.id;
        self.updates.push(u);
        let extra = self.updates.len().saturating_sub(KEEP_UPDATES);
        self.updates.drain(..extra);
        id
    }
}

/// The result of one health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Passed.
    pub ok: bool,
    /// The agent answered (whatever the HTTP check said).
    pub agent: bool,
    /// What it found.
    pub detail: String,
}

/// What the supervisor saw of the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Being created, started or stopped: wait.
    Busy,
    /// No engine process.
    Down(Down),
    /// Running from `slot`; `check` when a health check ran this time.
    Up {
        /// The slot it booted.
        slot: Option<Slot>,
        /// This round's check.
        check: Option<Check>,
    },
}

/// Why the VM has no engine process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Down {
    /// It ended by itself (a crash, a kernel panic, a power-off from inside), or this dend has
    /// not run it yet (the business OS is always on).
    Crashed,
    /// Someone stopped it.
    Stopped,
    /// The supervisor stopped it to boot another slot ([`Action::Reboot`]).
    ForBoot,
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing now.
    Wait,
    /// Start the VM (from [`SystemState::boot_slot`]).
    Boot,
    /// Stop it, then decide again with [`Down::ForBoot`].
    Reboot,
}

/// The timing rules, in ms.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// A new OS commits after passing every check this long.
    pub window: u64,
    /// A new OS must pass a first check within this long of its first boot.
    pub ready: u64,
    /// Boots of a new OS that end by themselves before rollback.
    pub max_failed_boots: u32,
}

/// Decides the next action from what was seen at `now`, moving the phase (and the updates'
/// records) along. A VM stopped by hand in [`Phase::Steady`] stays down.
pub fn decide(st: &mut SystemState, seen: &Seen, now: u64, rules: &Rules) -> Action {
    match st.phase.clone() {
        Phase::Steady | Phase::Writing { .. } => match seen {
            Seen::Busy | Seen::Down(Down::Stopped) => Action::Wait,
            Seen::Down(_) => Action::Boot,
            Seen::Up { slot: Some(s), .. } if *s != st.active => Action::Reboot,
            Seen::Up { .. } => Action::Wait,
        },
        Phase::Trial { update, slot, since, failed_boots, healthy_since } => {
            trial(st, seen, now, rules, (update, slot, since, failed_boots, healthy_since))
        }
        Phase::RollingBack { update, since, .. } => match seen {
            Seen::Busy => Action::Wait,
            Seen::Down(_) => Action::Boot,
            Seen::Up { slot: Some(s), .. } if *s != st.active => Action::Reboot,
            Seen::Up { check: Some(c), .. } if c.ok => {
                end_rollback(st, update, now, format!("the previous OS is healthy again: {}", c.detail));
                Action::Wait
            }
            // The previous OS is not well either: the rollback is done all the same, and the
            // steady rules (restart when it dies or hangs) take over.
            Seen::Up { .. } if now >= since + rules.ready + rules.window => {
                let what = format!(
                    "the previous OS runs again, but passed no check within {} s",
                    (rules.ready + rules.window) / 1000
                );
                end_rollback(st, update, now, what);
                Action::Wait
            }
            Seen::Up { .. } => Action::Wait,
        },
    }
}

/// Ends a rollback: the update is rolled back, its OS marked failed in its slot.
fn end_rollback(st: &mut SystemState, update: u64, now: u64, what: String) {
    let mut failed = None;
    if let Some(u) = st.update_mut(update) {
        u.step(now, what);
        u.end(now, Outcome::RolledBack, &u.why.clone());
        failed = Some((u.slot, u.why.clone()));
    }
    if let Some((slot, why)) = failed.filter(|(s, _)| *s != st.active) {
        let mut info = st.slot(slot).cloned();
        if let Some(i) = info.as_mut() {
            i.failed = Some(why);
        }
        st.set_slot(slot, info);
    }
    st.phase = Phase::Steady;
}

type TrialState = (u64, Slot, Option<u64>, u32, Option<u64>);

fn trial(st: &mut SystemState, seen: &Seen, now: u64, rules: &Rules, t: TrialState) -> Action {
    let (update, slot, since, failed_boots, healthy_since) = t;
    let set = |st: &mut SystemState, since, failed_boots, healthy_since| {
        st.phase = Phase::Trial { update, slot, since, failed_boots, healthy_since };
    };
    let late = since.is_some_and(|s| now >= s + rules.ready);
    match seen {
        Seen::Busy => Action::Wait,
        // The previous OS is still running: the trial starts with a clean stop of it.
        Seen::Up { slot: s, .. } if *s != Some(slot) => Action::Reboot,
        Seen::Down(_) if since.is_none() => {
            set(st, Some(now), failed_boots, None);
            log(st, update, now, format!("booting the new OS from slot {}", slot.as_str().to_uppercase()));
            Action::Boot
        }
        Seen::Down(Down::ForBoot) => Action::Boot,
        Seen::Down(Down::Stopped) => rollback(st, update, now, "the new OS was stopped by hand during its trial"),
        Seen::Down(Down::Crashed) => {
            let n = failed_boots + 1;
            log(st, update, now, format!("boot {n} of the new OS ended by itself (kernel panic, crash or power-off)"));
            if n >= rules.max_failed_boots {
                return rollback(st, update, now, &format!("the new OS failed {n} boot(s) in a row"));
            }
            if late && healthy_since.is_none() {
                return rollback(st, update, now, &not_ready(rules, "it kept failing to boot"));
            }
            set(st, since, n, None);
            Action::Boot
        }
        // Up on its slot without a recorded first boot (started outside the rules, e.g. by
        // hand): its clock starts now.
        Seen::Up { .. } if since.is_none() => {
            set(st, Some(now), failed_boots, None);
            Action::Wait
        }
        Seen::Up { check: None, .. } => {
            if late && healthy_since.is_none() {
                return rollback(st, update, now, &not_ready(rules, "no check passed"));
            }
            Action::Wait
        }
        Seen::Up { check: Some(c), .. } if c.ok => {
            let from = healthy_since.unwrap_or(now);
            if healthy_since.is_none() {
                log(st, update, now, format!("first health check passed: {}", c.detail));
            }
            if now.saturating_sub(from) >= rules.window {
                st.active = slot;
                st.phase = Phase::Steady;
                if let Some(u) = st.update_mut(update) {
                    u.step(now, format!("healthy for {} s: committed", rules.window / 1000));
                    u.end(now, Outcome::Committed, "");
                }
                return Action::Wait;
            }
            set(st, since, failed_boots, Some(from));
            Action::Wait
        }
        Seen::Up { check: Some(c), .. } => {
            if healthy_since.is_some() {
                return rollback(st, update, now, &format!("a health check failed during the window: {}", c.detail));
            }
            if late {
                return rollback(st, update, now, &not_ready(rules, &format!("the last check: {}", c.detail)));
            }
            Action::Wait
        }
    }
}

fn not_ready(rules: &Rules, last: &str) -> String {
    format!("the new OS did not pass a health check within {} s of its first boot ({last})", rules.ready / 1000)
}

fn log(st: &mut SystemState, update: u64, now: u64, what: String) {
    if let Some(u) = st.update_mut(update) {
        u.step(now, what);
    }
}

/// Ends a trial: the active slot boots again; the update ends once it is healthy.
fn rollback(st: &mut SystemState, update: u64, now: u64, why: &str) -> Action {
    if let Some(u) = st.update_mut(update) {
        u.step(now, format!("rolling back: {why}"));
        u.why = why.to_string();
    }
    st.phase = Phase::RollingBack { update, why: why.to_string(), since: now };
    Action::Reboot
}

/// Aborts a trial by hand (`den system rollback` during one).
pub fn abort_trial(st: &mut SystemState, now: u64, user: &str) -> bool {
    let Phase::Trial { update, .. } = st.phase else { return false };
    rollback(st, update, now, &format!("rolled back by {user} during the trial"));
    true
}

#[cfg(test)]
mod tests;
