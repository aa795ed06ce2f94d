//! `[docker]` of den.toml: the sandbox VM, the socket, the policy's relaxations, shares and users.

use serde::Deserialize;
use std::path::PathBuf;

/// `[docker]`: the sandbox VM, the socket and the policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// Serve the Docker socket at all.
    pub enabled: bool,
    /// The socket (default `<run>/docker.sock`).
    pub socket: Option<PathBuf>,
    /// Name of the sandbox VM.
    pub vm: String,
    /// Its image.
    pub image: String,
    /// Its memory in MiB.
    pub memory_mib: u64,
    /// Its vCPUs.
    pub cpus: u32,
    /// Its data disk for `/var/lib/docker` (images, containers, volumes), in MiB; sparse.
    pub data_disk_mib: u64,
    /// Policy rules that are not enforced (see `docker::policy::RULES`).
    pub allow: Vec<String>,
    /// Host folders shared into the sandbox, which `docker run -v` may bind.
    pub share: Vec<PathBuf>,
    /// Stop the sandbox after this many seconds without running containers or requests
    /// (0: never).
    pub idle_stop_secs: u64,
    /// Local users whose Den name is not their Unix name, by uid (`"1001" = "alice"`); the
    /// others map to the Den user named like them.
    pub users: std::collections::BTreeMap<String, String>,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            enabled: true,
            socket: None,
            vm: "docker-sandbox".into(),
            image: "docker".into(),
            memory_mib: 2048,
            cpus: 2,
            data_disk_mib: 65536,
            allow: vec![],
            share: vec![],
            idle_stop_secs: 900,
            users: Default::default(),
        }
    }
}

impl DockerConfig {
    /// Checks the values that cannot be right, naming the key.
    pub fn check(&self) -> Result<(), String> {
        if let Some(rule) = self.allow.iter().find(|r| !super::policy::RULES.contains(&r.as_str())) {
            return Err(format!("allow: unknown rule `{rule}`; the rules are {}", super::policy::RULES.join(", ")));
        }
        if let Some(uid) = self.users.keys().find(|u| u.parse::<u32>().is_err()) {
            return Err(format!("users: `{uid}` is not a uid (a number)"));
        }
        for p in &self.share {
            let share = den_core::vm::Share { host: p.clone(), guest: None, readonly: false };
            share.check().map_err(|e| format!("share: {e}"))?;
        }
        Ok(())
    }
}
