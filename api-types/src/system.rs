//! The business OS's answers: `GET /api/v1/system`, and the update a change started.

use crate::Accepted;
use serde::{Deserialize, Serialize};

pub use den_core::system::{HealthSample, Outcome, Phase, Slot, SlotInfo, Step, SystemState, Update};

/// `GET /api/v1/system`: everything about the business OS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemStatus {
    /// The VM's name.
    pub vm: String,
    /// Its state (`running`, ...), or `missing`.
    pub state: String,
    /// Why it is missing, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Slots, phase and updates.
    #[serde(flatten)]
    pub record: SystemState,
    /// The newest health checks, oldest first.
    pub health: Vec<HealthSample>,
    /// The timing rules and the HTTP check.
    pub rules: SystemRules,
}

impl SystemStatus {
    /// Update `id`, while the record keeps it.
    pub fn update(&self, id: u64) -> Option<&Update> {
        self.record.updates.iter().find(|u| u.id == id)
    }
}

/// The business OS's timing rules (den.toml's `[system]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemRules {
    /// A new OS commits after passing every check for this many seconds.
    pub health_window_secs: u64,
    /// A new OS must pass its first check within this many seconds of its first boot.
    pub ready_timeout_secs: u64,
    /// Seconds between health checks.
    pub check_interval_secs: u64,
    /// Failed boots of a new OS in a row that roll it back.
    pub max_failed_boots: u32,
    /// The HTTP check inside the guest, when there is one.
    pub http_check: Option<String>,
}

/// `POST /api/v1/system/update` and `/rollback` (202): the update's number, and for an update
/// the task writing its slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateAccepted {
    /// The update's number (`den system status` lists it).
    pub update: u64,
    /// The task writing the slot (updates only).
    #[serde(flatten)]
    pub task: Option<Accepted>,
}
