//! Den's configuration file (`/etc/den/den.toml`, `--config`): every key optional, defaults
//! built in, unknown keys refused with their name so a typo is not silently ignored. Each part
//! owns its section and its checks (`[docker]`, `[apps]`, `[system]`); this file composes them.

use den_dockerd_bridge::DockerConfig;
use den_engine::vmm::jail::VmmConfig;
use den_lpk_host::AppsConfig;
use den_system::SystemConfig;
use serde::Deserialize;
use std::path::Path;

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
    /// den-vmm: its jail.
    #[serde(default)]
    pub vmm: VmmConfig,
}

/// Reads `path`; a missing file means the defaults.
pub fn load(path: &Path) -> Result<Config, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let cfg: Config = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    // Each part checks its own section.
    cfg.docker.check().map_err(|e| format!("{}: [docker] {e}", path.display()))?;
    cfg.vmm.check().map_err(|e| format!("{}: [vmm] {e}", path.display()))?;
    if let Some(s) = &cfg.system {
        s.check().map_err(|e| format!("{}: [system] {e}", path.display()))?;
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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
        std::fs::write(&f, "[docker]\n").unwrap();
        assert!(load(&f).unwrap().vmm.jail, "den-vmm is jailed by default");
        std::fs::write(&f, "[vmm]\njail_uid_base = 1000\n").unwrap();
        assert!(load(&f).unwrap_err().contains("[vmm] jail uids 1000"));
        std::fs::write(&f, "[vmm]\njail = false\njail_uid_base = 1000\n").unwrap();
        assert_eq!(load(&f).unwrap().vmm.policy(), None);
        std::fs::write(&f, "[dokcer]\n").unwrap();
        assert!(load(&f).unwrap_err().contains("unknown field `dokcer`"));
    }
}
