//! Den's configuration file (`/etc/den/den.toml`, `--config`): every key optional, defaults
//! built in, unknown keys refused with their name so a typo is not silently ignored.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Docker bridge.
    #[serde(default)]
    pub docker: DockerConfig,
    /// LPK apps.
    #[serde(default)]
    pub apps: AppsConfig,
    /// The business OS: present, Den runs its system VM; absent, there is none.
    #[serde(default)]
    pub system: Option<SystemConfig>,
}

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
            crate::system::HttpCheck::parse(url).map_err(|e| format!("http_check: {e}"))?;
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

/// `[apps]`: LPK packages and how apps are reached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppsConfig {
    /// Public keys trusted to sign packages: `<name>.pub` files (base64 or hex ed25519).
    pub keys_dir: PathBuf,
    /// The box's domain: apps answer on `<subdomain>.<box_domain>` (`LAZYCAT_BOX_DOMAIN`).
    pub box_domain: String,
    /// The box's name (`LAZYCAT_BOX_NAME`; default: the host name).
    pub box_name: Option<String>,
    /// Largest package accepted, in MiB.
    pub max_package_mib: u64,
}

impl Default for AppsConfig {
    fn default() -> Self {
        AppsConfig {
            keys_dir: PathBuf::from("/etc/den/lpk-keys"),
            box_domain: "den.internal".into(),
            box_name: None,
            max_package_mib: 8192,
        }
    }
}

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

/// Reads `path`; a missing file means the defaults.
pub fn load(path: &Path) -> Result<Config, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let cfg: Config = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    for rule in &cfg.docker.allow {
        if !crate::docker::policy::RULES.contains(&rule.as_str()) {
            return Err(format!(
                "{}: [docker] allow: unknown rule `{rule}`; the rules are {}",
                path.display(),
                crate::docker::policy::RULES.join(", ")
            ));
        }
    }
    if let Some(s) = &cfg.system {
        s.check().map_err(|e| format!("{}: [system] {e}", path.display()))?;
    }
    if let Some(uid) = cfg.docker.users.keys().find(|u| u.parse::<u32>().is_err()) {
        return Err(format!("{}: [docker] users: `{uid}` is not a uid (a number)", path.display()));
    }
    for p in &cfg.docker.share {
        let share = den_core::vm::Share { host: p.clone(), guest: None, readonly: false };
        share.check().map_err(|e| format!("{}: [docker] share: {e}", path.display()))?;
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_overrides_and_mistakes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("den.toml");
        assert_eq!(load(&f).unwrap().docker.vm, "docker-sandbox", "no file: defaults");
        std::fs::write(&f, "[docker]\nallow = [\"privileged\"]\nshare = [\"/home\"]\nmemory_mib = 4096\n").unwrap();
        let c = load(&f).unwrap().docker;
        assert_eq!(
            (c.allow, c.share, c.memory_mib, c.cpus),
            (vec!["privileged".to_string()], vec![PathBuf::from("/home")], 4096, 2)
        );
        std::fs::write(&f, "[docker]\nallow = [\"privilegd\"]\n").unwrap();
        assert!(load(&f).unwrap_err().contains("unknown rule `privilegd`"));
        std::fs::write(&f, "[docker]\nshare = [\"home\"]\n").unwrap();
        assert!(load(&f).unwrap_err().contains("not a clean absolute"));
        std::fs::write(&f, "[docker]\n").unwrap();
        assert_eq!(load(&f).unwrap().system, None, "no [system]: no system VM");
        std::fs::write(&f, "[system]\n").unwrap();
        assert_eq!(load(&f).unwrap().system, Some(SystemConfig::default()), "[system]: the defaults");
        std::fs::write(&f, "[system]\nhttp_check = \"ftp://x/\"\n").unwrap();
        assert!(load(&f).unwrap_err().contains("[system] http_check"));
        std::fs::write(&f, "[system]\nhealth_window_secs = 0\n").unwrap();
        assert!(load(&f).unwrap_err().contains("health_window_secs must be at least 1"));
        std::fs::write(&f, "[dokcer]\n").unwrap();
        assert!(load(&f).unwrap_err().contains("unknown field `dokcer`"));
    }
}
