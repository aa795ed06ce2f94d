//! Tasks: every operation that can take more than a moment, with an owner, a log and a final
//! status (the API answers 202 with the task's location).

use serde::{Deserialize, Serialize};

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Still going.
    Running,
    /// Finished.
    Ok,
    /// Failed (see `error`).
    Failed,
    /// Cancelled on request; what it had done was undone.
    Cancelled,
}

impl TaskStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Running => "running",
            TaskStatus::Ok => "ok",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }
}

/// A task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Id.
    pub id: String,
    /// What it does (`vm.create`, `vm.start`, ...).
    pub kind: String,
    /// What it acts on (a VM name).
    pub target: String,
    /// Who started it.
    pub owner: String,
    /// Status.
    pub status: TaskStatus,
    /// How far it got, in percent (100 once it ended well).
    pub progress: u8,
    /// Log lines, newline separated.
    pub log: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Start (Unix seconds).
    pub created: i64,
    /// End (Unix seconds).
    pub finished: Option<i64>,
}
