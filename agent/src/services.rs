//! Services that PID 1 runs and restarts, declared as TOML files in `/etc/den/services/`.
//!
//! ```toml
//! exec = ["/usr/sbin/sshd", "-D", "-e"]
//! restart = "always"          # always | on-failure | never
//! user = "root"
//! env = { LANG = "C.UTF-8" }
//! before = ["mkdir -p /run/sshd"]   # shell commands run once, in order, before the first start (as root, with `env`)
//! workdir = "/srv"
//! binds = [{ source = "/lzcapp/var/db", target = "/var/lib/db", readonly = false }]
//! tmpfs = ["/run/app"]
//! ```
//!
//! `user` is a name or uid from the guest's `/etc/passwd`, optionally `:group` (a gid).
//! Binds and tmpfs mounts are made once, before the first start (LPK services, Compose-style).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Directory scanned for service files.
pub(crate) const SERVICE_DIR: &str = "/etc/den/services";

/// When a service is started again after it ends.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Restart {
    /// Always (the default).
    #[default]
    Always,
    /// Only when it exited non-zero or was killed.
    OnFailure,
    /// Never.
    Never,
}

/// One service definition.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Service {
    /// Name (the file name without `.toml`).
    #[serde(skip)]
    pub name: String,
    /// Program and arguments.
    pub exec: Vec<String>,
    /// Restart policy.
    #[serde(default)]
    pub restart: Restart,
    /// User to run as.
    #[serde(default)]
    pub user: Option<String>,
    /// Extra environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Shell commands run before the first start.
    #[serde(default)]
    pub before: Vec<String>,
    /// A terminal device (`/dev/ttyS0`) to run on: standard input, output and error, and the
    /// controlling terminal of the service's session.
    #[serde(default)]
    pub tty: Option<String>,
    /// Working directory (default `/`).
    #[serde(default)]
    pub workdir: Option<String>,
    /// Directories bound into place before the first start.
    #[serde(default)]
    pub binds: Vec<Bind>,
    /// tmpfs mount points made before the first start.
    #[serde(default)]
    pub tmpfs: Vec<String>,
}

/// A bind mount a service needs.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Bind {
    /// Existing directory (made if missing).
    pub source: String,
    /// Where it appears (made if missing).
    pub target: String,
    /// Read-only.
    #[serde(default)]
    pub readonly: bool,
}

/// A root shell on the serial console, started again whenever it ends (`den.console=shell`):
/// what a serial console of a development microVM is for. Access to it is dend's business
/// (operators of the VM only).
pub(crate) fn console_shell() -> Service {
    let shell = if Path::new("/bin/bash").exists() { "/bin/bash" } else { "/bin/sh" };
    Service {
        name: "console".into(),
        exec: vec![shell.into(), "-l".into()],
        restart: Restart::Always,
        user: None,
        env: [("TERM", "linux"), ("HOME", "/root")].into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        before: vec![],
        tty: Some("/dev/ttyS0".into()),
        workdir: None,
        binds: vec![],
        tmpfs: vec![],
    }
}

/// Reads every `*.toml` in `dir`, sorted by name; broken files are reported and skipped.
pub(crate) fn load(dir: &Path) -> Vec<Service> {
    let Ok(rd) = std::fs::read_dir(dir) else { return vec![] };
    let mut paths: Vec<_> =
        rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
    paths.sort();
    let mut out = vec![];
    for p in paths {
        let name = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let parsed = std::fs::read_to_string(&p)
            .map_err(|e| e.to_string())
            .and_then(|t| toml::from_str::<Service>(&t).map_err(|e| e.to_string()));
        match parsed {
            Ok(mut s) if !s.exec.is_empty() => {
                s.name = name;
                out.push(s);
            }
            Ok(_) => eprintln!("den-agent: service {}: `exec` is empty", p.display()),
            Err(e) => eprintln!("den-agent: service {}: {e}", p.display()),
        }
    }
    out
}

/// Whether a service that ended with `status` (0 = success) is started again.
pub(crate) fn should_restart(policy: Restart, success: bool) -> bool {
    match policy {
        Restart::Always => true,
        Restart::OnFailure => !success,
        Restart::Never => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_services_and_reports_bad_ones() {
        let d = std::env::temp_dir().join(format!("den-svc-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("b.toml"), "exec = [\"/bin/sleep\", \"1\"]\nrestart = \"on-failure\"\n").unwrap();
        std::fs::write(d.join("a.toml"), "exec = [\"/usr/sbin/sshd\", \"-D\"]\n").unwrap();
        std::fs::write(d.join("c.toml"), "exec = [\"x\"]\nbogus = 1\n").unwrap();
        std::fs::write(
            d.join("d.toml"),
            "exec = [\"httpd\"]\nworkdir = \"/srv\"\nbinds = [{ source = \"/lzcapp/var/a\", target = \"/a\", readonly = true }]\ntmpfs = [\"/run/x\"]\n",
        )
        .unwrap();
        let s = load(&d);
        assert_eq!(s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["a", "b", "d"]);
        assert_eq!(s[2].binds, [Bind { source: "/lzcapp/var/a".into(), target: "/a".into(), readonly: true }]);
        assert_eq!((s[2].workdir.as_deref(), s[2].tmpfs.as_slice()), (Some("/srv"), &["/run/x".to_string()][..]));
        assert_eq!(s[0].restart, Restart::Always);
        assert_eq!(s[1].restart, Restart::OnFailure);
        assert!(should_restart(Restart::OnFailure, false));
        assert!(!should_restart(Restart::OnFailure, true));
        assert!(!should_restart(Restart::Never, false));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
