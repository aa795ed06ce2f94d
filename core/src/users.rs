//! Who a user is to Den: a global [`Role`], and the [`TokenScope`] an API token or login session
//! narrows a request to. The decisions that use them live in dend's auth.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What a user may do, in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// See VMs, their state, console output, tasks and events.
    Viewer,
    /// Also create VMs and start, stop, reboot, pause, exec and delete them.
    Operator,
    /// Everything: users, tokens, networks, every VM.
    Admin,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Parses a stored or typed name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// What a token allows beyond its user's own limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenScope {
    /// Token id.
    pub id: String,
    /// Highest role the token carries (`None`: its user's).
    pub role: Option<Role>,
    /// VM names it is limited to (`None`: no limit).
    pub vms: Option<Vec<String>>,
    /// When it ends (Unix seconds; `None`: when revoked).
    #[serde(default)]
    pub expires: Option<i64>,
    /// A login session (the user, having given their password), not an API token.
    #[serde(default)]
    pub session: bool,
}

/// A user as stored (without the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Name.
    pub name: String,
    /// Global role (`None`: only VMs they own or were granted).
    pub role: Option<Role>,
    /// Whether a password is set.
    pub has_password: bool,
    /// Roles on single VMs, by VM name.
    pub grants: HashMap<String, Role>,
    /// Creation time (Unix seconds).
    pub created: i64,
}

/// A token as stored (without its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Id (the part after `den_`).
    pub id: String,
    /// Owner.
    pub user: String,
    /// What it is for.
    pub name: String,
    /// Its cap and VM list.
    pub scope: TokenScope,
    /// Creation time.
    pub created: i64,
    /// Expiry (Unix seconds), if any.
    pub expires: Option<i64>,
}

/// A user's SSH public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// `SHA256:...`.
    pub fingerprint: String,
    /// Owner.
    pub user: String,
    /// The `authorized_keys` line.
    pub line: String,
    /// When it was added.
    pub created: i64,
}

/// A token just made: its record and the secret string, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewToken {
    /// The record.
    #[serde(flatten)]
    pub record: TokenRecord,
    /// `den_<id>_<secret>`: the only time it is shown.
    pub token: String,
}
