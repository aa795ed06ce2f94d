//! The bodies of Den's API, shared by dend's API (`den-api`) and its clients (the `den` CLI).
//! Records are den-core's and the package check's types den-lpk's, re-exported as they are
//! sent; the answers that are not records (and the error body) are defined here.

use serde::{Deserialize, Serialize};

pub mod apps;
pub mod system;

pub use den_core::event::Event;
pub use den_core::metrics::{HostSample, VmSample};
pub use den_core::net::HostPort;
pub use den_core::ssh::SshSession;
pub use den_core::task::{Task, TaskStatus};
pub use den_core::users::{KeyRecord, NewToken, Role, TokenRecord, TokenScope, UserRecord};
pub use den_core::vm::{Iso, Snapshot, VmRecord, VmSpec, VmState};

/// A long operation's answer (202): the task doing it and where to follow it. Some answers add
/// fields (`vm` for creates, `update` for business OS updates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The task's id.
    pub task: String,
    /// `/api/v1/tasks/<id>`.
    #[serde(default)]
    pub location: String,
}

impl Accepted {
    /// The answer for `task`.
    pub fn new(task: &str) -> Accepted {
        Accepted { task: task.to_string(), location: format!("/api/v1/tasks/{task}") }
    }
}

/// `POST /api/v1/vms/{name}/exec`: what to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The program and its arguments.
    pub argv: Vec<String>,
}

/// `POST /api/v1/vms/{name}/exec`: how the command ended and what it printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Standard output (bytes that are not UTF-8 replaced).
    pub stdout: String,
    /// Standard error (likewise).
    pub stderr: String,
}

impl ExecOutput {
    /// The exit status a shell would report: the code, or 128 + the signal.
    pub fn shell_status(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 1,
        }
    }
}

/// `GET /api/v1/vms/{name}/console`: recent serial console output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleOutput {
    /// The output, oldest first.
    pub output: String,
}

/// `POST /api/v1/users/{name}/keys` (201): the key added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddedKey {
    /// Its owner.
    pub user: String,
    /// `SHA256:...`.
    pub fingerprint: String,
    /// The key type (`ssh-ed25519`, ...).
    #[serde(rename = "type")]
    pub kind: String,
}

/// `GET /api/v1/networks`: a network, its bridge and its VMs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// Its name.
    pub name: String,
    /// Its subnet (CIDR).
    pub subnet: String,
    /// Whether its VMs reach only each other (no NAT out).
    pub isolated: bool,
    /// The host bridge.
    pub bridge: String,
    /// Host ports its VMs may reach (beyond DHCP and DNS).
    pub host_ports: Vec<HostPort>,
    /// Whether the bridge exists now.
    pub up: bool,
    /// Its VMs' NICs.
    pub vms: Vec<NetworkVm>,
}

/// A VM's NIC on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkVm {
    /// The VM's name.
    pub vm: String,
    /// Its address.
    pub ip: std::net::Ipv4Addr,
    /// Its MAC.
    pub mac: String,
}

/// `GET /api/v1/docker`: the Docker socket and its sandbox VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerStatus {
    /// Whether den.toml turns the bridge on; nothing else is told when it does not.
    pub enabled: bool,
    /// The bridge, when it is on.
    #[serde(flatten)]
    pub bridge: Option<DockerBridge>,
}

/// The Docker bridge as it is configured and its sandbox as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerBridge {
    /// The socket the `docker` CLI talks to.
    pub socket: std::path::PathBuf,
    /// The sandbox VM's name.
    pub vm: String,
    /// The sandbox VM's state (`running`, ...), or `not created yet`.
    pub state: String,
    /// Relaxed policy rules.
    pub allow: Vec<String>,
    /// Host folders containers may mount.
    pub share: Vec<std::path::PathBuf>,
    /// Idle time before the sandbox stops (0: never).
    pub idle_stop_secs: u64,
}

/// `GET /api/v1/host`: facts about the host and dend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    /// dend's version.
    pub version: String,
    /// What `/dev/kvm` can run (`Hardware`, `Pvm`, `Missing`, ...).
    pub kvm: String,
    /// Most vCPUs a VM may have.
    pub max_cpus: u32,
    /// Most memory a VM may have (MiB).
    pub max_memory_mib: u64,
    /// The host's CPUs.
    pub cpus: usize,
    /// The host's usage now (none before the first sample).
    pub usage: Option<HostSample>,
    /// What the host cannot do well, in words.
    pub warnings: Vec<String>,
}

/// `PUT /api/v1/vms/{name}/files`: the file written in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileWritten {
    /// Its path in the guest.
    pub path: String,
    /// Bytes written.
    pub bytes: usize,
    /// Its mode (octal).
    pub mode: String,
}

/// Every error answer's body: `{code, message, field?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code (`not_found`, `invalid_field`, `forbidden`, ...).
    pub code: String,
    /// What was wrong and what to do.
    pub message: String,
    /// The request field at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_update_is_an_accepted_task_with_its_number() {
        use system::UpdateAccepted;
        let update = UpdateAccepted { update: 4, task: Some(Accepted::new("t1")) };
        let text = serde_json::to_value(&update).unwrap();
        assert_eq!(text, serde_json::json!({"update": 4, "task": "t1", "location": "/api/v1/tasks/t1"}));
        assert_eq!(serde_json::from_value::<UpdateAccepted>(text).unwrap(), update);
        let rollback = UpdateAccepted { update: 5, task: None };
        assert_eq!(serde_json::to_value(&rollback).unwrap(), serde_json::json!({"update": 5}));
        assert_eq!(serde_json::from_str::<UpdateAccepted>(r#"{"update": 5}"#).unwrap(), rollback);
        for o in [
            system::Outcome::InProgress,
            system::Outcome::Committed,
            system::Outcome::RolledBack,
            system::Outcome::Failed,
        ] {
            assert_eq!(serde_json::to_value(o).unwrap(), serde_json::Value::String(o.as_str().into()));
        }
    }

    #[test]
    fn answers_read_back_and_extra_fields_are_ignored() {
        let a: Accepted = serde_json::from_str(r#"{"task":"t1","location":"/api/v1/tasks/t1","vm":"web1"}"#).unwrap();
        assert_eq!(a, Accepted::new("t1"));
        let e = ExecOutput { code: None, signal: Some(9), stdout: String::new(), stderr: String::new() };
        assert_eq!(e.shell_status(), 137);
        assert_eq!(ExecOutput { code: Some(3), ..e.clone() }.shell_status(), 3);
        assert!(
            serde_json::from_str::<ExecRequest>(r#"{"argv":["ls"],"tty":true}"#).is_err(),
            "unknown fields refused"
        );
    }
}
