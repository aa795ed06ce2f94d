//! The SSH gateway's session records.

use serde::{Deserialize, Serialize};

/// One SSH session through the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshSession {
    /// Session id.
    pub id: String,
    /// The Den user.
    pub user: String,
    /// The VM's name.
    pub vm: String,
    /// `shell`, `exec`, `subsystem` or `tcpip`.
    pub kind: String,
    /// The command, subsystem or forward target.
    pub command: String,
    /// The client's address.
    pub peer: String,
    /// Start (Unix seconds).
    pub started: i64,
    /// End (Unix seconds), while it runs `None`.
    pub ended: Option<i64>,
    /// Exit status, when one came back.
    pub exit: Option<i64>,
    /// Whether an asciicast recording exists.
    pub recorded: bool,
}
