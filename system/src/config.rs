//! `[system]` of den.toml: the business OS's VM, its health checks and its trial rules.

use serde::Deserialize;

/// `[system]`: the business OS, one always-on VM updated A/B with rollback.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SystemConfig {
    /// The VM's name.
    pub name: String,
    /// The image its first slot is written from when Den makes it (`den image build system`).
    pub image: String,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The data disk updates never touch (ext4, label `den-data`), in MiB; sparse.
    pub data_disk_mib: u64,
    /// The network of its NIC (empty: no NIC).
    pub network: String,
    /// An HTTP check inside the guest, reached through the agent: `http://127.0.0.1:8080/healthz`
    /// answers 2xx or 3xx when the OS is healthy. Without it, the agent answering is the check.
    pub http_check: Option<String>,
    /// Seconds between health checks.
    pub check_interval_secs: u64,
    /// A new OS commits after passing every check for this many seconds.
    pub health_window_secs: u64,
    /// A new OS must pass its first check within this many seconds of its first boot.
    pub ready_timeout_secs: u64,
    /// Boots of a new OS that end by themselves (a kernel panic, a crash) before it is
    /// committed; this many in a row roll it back.
    pub max_failed_boots: u32,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            name: "system".into(),
            image: "system".into(),
            cpus: 2,
            memory_mib: 1024,
            data_disk_mib: 16384,
            network: "default".into(),
            http_check: None,
            check_interval_secs: 5,
            health_window_secs: 60,
            ready_timeout_secs: 60,
            max_failed_boots: 3,
        }
    }
}

impl SystemConfig {
    /// Checks the values that cannot be right, naming the key.
    pub fn check(&self) -> Result<(), String> {
        if !den_core::valid_name(&self.name) {
            return Err(format!("name: `{}` is not a VM name (a-z, 0-9 and -)", self.name));
        }
        if let Some(url) = &self.http_check {
            super::HttpCheck::parse(url).map_err(|e| format!("http_check: {e}"))?;
        }
        if den_core::net::is_app_network(&self.network) {
            return Err(format!("network: `{}` is an app's own network; name another", self.network));
        }
        let positive = [
            ("check_interval_secs", self.check_interval_secs),
            ("health_window_secs", self.health_window_secs),
            ("ready_timeout_secs", self.ready_timeout_secs),
            ("max_failed_boots", u64::from(self.max_failed_boots)),
            ("cpus", u64::from(self.cpus)),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{key} must be at least 1"));
        }
        if self.check_interval_secs > self.health_window_secs {
            return Err("check_interval_secs must not exceed health_window_secs".into());
        }
        Ok(())
    }
}
