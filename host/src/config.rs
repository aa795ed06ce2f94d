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
    for p in &cfg.docker.share {
        let share = crate::model::Share { host: p.clone(), guest: None };
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
        std::fs::write(&f, "[dokcer]\n").unwrap();
        assert!(load(&f).unwrap_err().contains("unknown field `dokcer`"));
    }
}
