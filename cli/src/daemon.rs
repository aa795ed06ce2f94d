//! `den daemon ...`: dend itself. `update` installs a new dend binary the careful way: the
//! current one is kept as `dend.previous`, a `dend.trial` marker says the new one has not started
//! yet, and under systemd the service restarts (VMs keep running: they are separate processes).
//! The new dend removes the marker once it is up; if it fails to start, the packaged
//! `dend-fallback` puts the previous binary back.

use crate::client::{request, typed};
use anyhow::{bail, Context};
use clap::Subcommand;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// Where the packaged service runs dend from.
const LIB_DIR: &str = "/usr/lib/den";
/// The packaged service.
const UNIT: &str = "dend.service";
/// How long a restarted dend gets to answer (a fallback included).
const COME_BACK: Duration = Duration::from_secs(90);

/// dend commands.
#[derive(Subcommand)]
pub(crate) enum DaemonCmd {
    /// The running dend's version, and the binaries installed next to it.
    Status {
        /// Where the dend binary is installed.
        #[arg(long, default_value = LIB_DIR)]
        install_dir: PathBuf,
    },
    /// Install a new dend binary and restart the service onto it; VMs keep running. If the new
    /// dend fails to start, the packaged service goes back to the previous one by itself.
    Update {
        /// The new dend binary.
        binary: PathBuf,
        /// Where the dend binary is installed.
        #[arg(long, default_value = LIB_DIR)]
        install_dir: PathBuf,
        /// Install only; restart dend yourself.
        #[arg(long)]
        no_restart: bool,
    },
}

/// `dend --version` of a binary: its version word.
fn version_of(bin: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {} --version; is it a dend binary?", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim().strip_prefix("dend ") {
        Some(v) if out.status.success() => Ok(v.trim().to_string()),
        _ => bail!("{} --version said {:?}, not `dend <version>`: not a dend binary", bin.display(), text.trim()),
    }
}

/// The running dend's version, from its API.
fn running_version(socket: &Path) -> Option<String> {
    /// The one field every dend's `/api/v1/host` has had, whatever its version: what the check
    /// after an update (or a fall back to the previous dend) needs, read without the rest.
    #[derive(serde::Deserialize)]
    struct Version {
        version: String,
    }
    let host = request(socket, "GET", "/api/v1/host", None).ok()?.ok().ok()?;
    typed::<Version>(&host, "the host's facts").ok().map(|h| h.version)
}

/// The trial marker dend removes once it is up (dend/src/service.rs, `TRIAL_MARKER`).
const TRIAL: &str = "dend.trial";
/// The binary before the update, which packaging/dend-fallback puts back.
const PREVIOUS: &str = "dend.previous";

/// Flushes a file or folder to disk.
fn sync(path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).with_context(|| format!("flushing {}", path.display()))
}

/// Puts `new` in place of `dir/dend`, keeping the current one as `dend.previous` and leaving the
/// trial marker. Returns (old version, new version).
fn install(new: &Path, dir: &Path) -> anyhow::Result<(String, String)> {
    let to = version_of(new)?;
    let current = dir.join("dend");
    let from = if current.exists() { version_of(&current).unwrap_or_else(|_| "?".into()) } else { "none".into() };
    // A binary that failed an earlier update is replaced by this attempt's outcome.
    let _ = std::fs::remove_file(dir.join("dend.failed"));
    let staged = dir.join("dend.new");
    std::fs::copy(new, &staged).with_context(|| format!("copying {} to {}", new.display(), staged.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755))?;
    sync(&staged)?;
    if current.exists() {
        let prev = dir.join(PREVIOUS);
        let _ = std::fs::remove_file(&prev);
        std::fs::hard_link(&current, &prev)
            .or_else(|_| std::fs::copy(&current, &prev).map(|_| ()))
            .with_context(|| format!("keeping {} as {}", current.display(), prev.display()))?;
    }
    let mut marker = std::fs::File::create(dir.join(TRIAL)).context("writing the trial marker")?;
    writeln!(marker, "dend {from} -> {to}")?;
    marker.sync_all()?;
    std::fs::rename(&staged, &current).with_context(|| format!("installing {}", current.display()))?;
    sync(dir)?;
    Ok((from, to))
}

fn systemd_runs(unit: &str) -> bool {
    Path::new("/run/systemd/system").is_dir()
        && Command::new("systemctl").args(["is-active", "--quiet", unit]).status().is_ok_and(|s| s.success())
}

/// Runs a `den daemon` command.
pub(crate) fn run(cmd: DaemonCmd, socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        DaemonCmd::Status { install_dir } => {
            let v = |f: &str| version_of(&install_dir.join(f)).ok();
            let trial = std::fs::read_to_string(install_dir.join(TRIAL)).ok();
            let status = serde_json::json!({
                "running": running_version(socket), "installed": v("dend"), "previous": v(PREVIOUS),
                "update_not_yet_started": trial.as_deref().map(str::trim), "service": systemd_runs(UNIT),
            });
            if json {
                println!("{status}");
            } else {
                let s = |k: &str| status[k].as_str().unwrap_or("-").to_string();
                println!("running dend:   {}", s("running"));
                println!("installed:      {} ({})", s("installed"), install_dir.join("dend").display());
                println!("previous:       {}", s("previous"));
                if let Some(t) = trial {
                    println!("pending update: {} (not started yet)", t.trim());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DaemonCmd::Update { binary, install_dir, no_restart } => {
            let (from, to) = install(&binary, &install_dir)?;
            println!("installed dend {to} in {} (dend {from} kept as dend.previous)", install_dir.display());
            if no_restart || !systemd_runs(UNIT) {
                println!("restart dend to run it; VMs keep running meanwhile");
                return Ok(ExitCode::SUCCESS);
            }
            println!("restarting {UNIT}; VMs keep running");
            let st = Command::new("systemctl").args(["restart", "--no-block", UNIT]).status()?;
            if !st.success() {
                bail!("systemctl restart {UNIT} failed ({st})");
            }
            let t = Instant::now();
            std::thread::sleep(Duration::from_secs(1));
            while t.elapsed() < COME_BACK {
                let marker_gone = !install_dir.join(TRIAL).exists();
                match running_version(socket) {
                    Some(_) if marker_gone && install_dir.join("dend.failed").exists() => {
                        bail!(
                            "the new dend failed to start; the service went back to dend {from} by itself \
                             (the failed binary is {}; `journalctl -u {UNIT}` says why)",
                            install_dir.join("dend.failed").display()
                        )
                    }
                    Some(v) if marker_gone && v == to => {
                        println!("dend {to} is up ({:.1} s)", t.elapsed().as_secs_f64());
                        return Ok(ExitCode::SUCCESS);
                    }
                    _ => std::thread::sleep(Duration::from_millis(500)),
                }
            }
            bail!("dend did not answer within {} s; `systemctl status {UNIT}` says why", COME_BACK.as_secs())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_keeps_the_previous_binary_and_leaves_the_marker() {
        let d = tempfile::tempdir().unwrap();
        let mk = |name: &str, version: &str| {
            let p = d.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\necho dend {version}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let dir = d.path().join("lib");
        std::fs::create_dir(&dir).unwrap();
        std::fs::copy(mk("old", "0.1.0"), dir.join("dend")).unwrap();
        let (from, to) = install(&mk("new", "0.2.0"), &dir).unwrap();
        assert_eq!((from.as_str(), to.as_str()), ("0.1.0", "0.2.0"));
        assert_eq!(version_of(&dir.join("dend")).unwrap(), "0.2.0");
        assert_eq!(version_of(&dir.join("dend.previous")).unwrap(), "0.1.0");
        assert_eq!(std::fs::read_to_string(dir.join("dend.trial")).unwrap(), "dend 0.1.0 -> 0.2.0\n");
        assert!(!dir.join("dend.new").exists());
        let e = install(&mk("junk", "x").with_file_name("missing"), &dir).unwrap_err().to_string();
        assert!(e.contains("cannot run"), "{e}");
        std::fs::write(d.path().join("notdend"), "#!/bin/sh\necho hello\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.path().join("notdend"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = install(&d.path().join("notdend"), &dir).unwrap_err().to_string();
        assert!(e.contains("not a dend binary"), "{e}");
    }
}
