//! The events log's records: every lifecycle change with the user who caused it (also the audit
//! log).

use serde::{Deserialize, Serialize};

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Sequence number (increasing).
    pub seq: i64,
    /// Unix seconds.
    pub time: i64,
    /// Who caused it (`dend` for the daemon itself).
    pub user: String,
    /// What happened (`vm.created`, `vm.started`, `vm.crashed`, ...).
    pub kind: String,
    /// On what (a VM name).
    pub target: String,
    /// Details.
    pub detail: String,
}
