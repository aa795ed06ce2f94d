//! Engines: how a VM's process is started, found again, asked to stop and killed. `qemu` drives
//! QEMU over QMP (TCG where `/dev/kvm` cannot run Linux, with a warning); `vmm` runs den-vmm
//! with its JSON-lines API. Every VM is its own process, started in its own session so that it
//! outlives `dend`; `dend` finds it again from the pid and process start time it recorded.

mod entry;
mod handle;
pub mod logs;
pub mod process;
pub mod qemu;
pub mod qmp;
pub mod virtiofs;
pub mod vmm;

pub use entry::{
    adopt, agent, console_recent, console_stream, forget, grow_disk, is_alive, kill, launch, launch_vmm, pause, resume,
    shutdown, state, stop, wait_exit, AGENT_TIMEOUT,
};
pub use handle::Vm;
pub use process::kill_orphans;
pub use qemu::{Accel, AccelChoice};

/// What a VM's record says about its engine and process: the types live in den-core, with the
/// record.
pub use den_core::vm::{EngineKind, Running};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A disk given to the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// Raw image file (the VM's own copy, never a store object).
    pub path: PathBuf,
    /// The guest may not write to it.
    pub read_only: bool,
}

/// A NIC on a TAP interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSpec {
    /// TAP interface name.
    pub tap: String,
    /// MAC address `52:54:00:xx:xx:xx`.
    pub mac: String,
}

/// A host folder served to the guest over virtio-fs (by QEMU or den-vmm).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareSpec {
    /// The virtio-fs tag the guest mounts it by.
    pub tag: String,
    /// The host folder.
    pub host: PathBuf,
    /// Served from a read-only mount.
    #[serde(default)]
    pub readonly: bool,
}

/// Booting through firmware (QEMU's q35 machine) instead of a kernel: for ISO installs and
/// disks with their own boot loader. The guest gets a VGA display on a VNC Unix socket
/// (`vnc.sock` in the runtime directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareBoot {
    /// UEFI (OVMF) instead of BIOS (SeaBIOS).
    pub uefi: bool,
    /// An installation ISO on a CD-ROM, booted first.
    pub iso: Option<PathBuf>,
    /// The VM's own UEFI variable store (a copy of OVMF's template), for UEFI.
    pub vars: Option<PathBuf>,
}

/// OVMF's code and variable template (Debian package `ovmf`).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// See [`OVMF_CODE`].
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Everything an engine needs to start a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// The VM's id (names files and appears in the process's command line for re-adoption).
    pub id: String,
    /// Per-VM runtime directory (sockets, pid file, logs); exists and is private.
    pub dir: PathBuf,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Kernel.
    pub kernel: PathBuf,
    /// The same kernel as an uncompressed ELF `vmlinux`, if there is one: den-vmm boots it
    /// instead of `kernel` (the guest then decompresses nothing); QEMU boots `kernel`.
    #[serde(default)]
    pub kernel_elf: Option<PathBuf>,
    /// Initramfs.
    pub initrd: PathBuf,
    /// Kernel command line.
    pub cmdline: String,
    /// Disks in guest order.
    pub disks: Vec<DiskSpec>,
    /// NICs.
    pub nics: Vec<NicSpec>,
    /// Boot through firmware; `kernel`, `initrd` and `cmdline` are then unused.
    #[serde(default)]
    pub firmware: Option<FirmwareBoot>,
    /// Host folders shared over virtio-fs.
    #[serde(default)]
    pub shares: Vec<ShareSpec>,
}

/// Engine failures.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine binary could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// Which binary.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The process started but did not come up (its log tail says why).
    #[error("{0}")]
    Startup(String),
    /// The control channel failed.
    #[error("control channel {path}: {why}")]
    Control {
        /// Socket path.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// The engine cannot do this (in this state).
    #[error("{0}")]
    Unsupported(String),
    /// Another I/O failure.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The engine answered a command with an error (QMP error class and description, or
    /// den-vmm's error code and message).
    #[error("`{command}` refused by {path}: {class}: {desc}")]
    Refused {
        /// Control socket path.
        path: String,
        /// The command (QMP `execute` or den-vmm `op`).
        command: String,
        /// QEMU's error class or den-vmm's error code.
        class: String,
        /// QEMU's or den-vmm's description.
        desc: String,
    },
    /// The launch spec cannot be run as given.
    #[error("VM `{id}`: {why}")]
    Invalid {
        /// The VM's id.
        id: String,
        /// What is wrong.
        why: String,
    },
    /// The VM's process is not (or no longer) running.
    #[error("VM process {pid} is not running")]
    Gone {
        /// Its recorded pid.
        pid: i32,
    },
    /// The guest agent could not be reached.
    #[error("agent of VM process {pid}: {source}")]
    Agent {
        /// The VM process's pid.
        pid: i32,
        /// Cause.
        source: den_agent_proto::ClientError,
    },
}

/// How a VM process ended, as far as `dend` can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The guest powered itself off.
    PowerOff,
    /// The guest asked to reboot: the engine process ended; start it again to boot again.
    Reboot,
    /// The guest crashed (QEMU: guest panic; den-vmm: exit code 4).
    Crash,
    /// The host ended it (QMP `quit`, den-vmm `stop`, SIGTERM).
    HostStop,
    /// The process was killed by a signal (SIGKILL from `dend` or anyone else).
    Killed,
    /// The engine itself failed (non-zero exit that is none of the above).
    Failed,
    /// Only that it ended: it was not `dend`'s child (re-adopted) and left no other trace.
    Unknown,
}

/// The end of a VM process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    /// Why.
    pub reason: EndReason,
    /// Exit status, known only when this `dend` started the process.
    pub status: Option<process::ExitStatus>,
    /// One human sentence on what was seen (QMP SHUTDOWN reason, exit code, escalation steps).
    pub detail: String,
}

/// What the engine reports about a live VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// Built, vCPUs not started yet (den-vmm `--wait-start`, QEMU `prelaunch`).
    Created,
    /// vCPUs run.
    Running,
    /// vCPUs stopped by `pause`.
    Paused,
    /// The guest is down but the process has not ended yet.
    ShutDown,
    /// Any other engine state, verbatim (e.g. QEMU `internal-error`).
    Other(String),
}

/// Longest Unix socket path (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

impl LaunchSpec {
    /// The kernel den-vmm boots: the ELF `vmlinux` when there is one, else the bzImage.
    pub fn vmm_kernel(&self) -> PathBuf {
        self.kernel_elf.clone().unwrap_or_else(|| self.kernel.clone())
    }

    /// Checks what an engine would otherwise fail on obscurely: id characters (it goes into
    /// command lines), sizes, files, TAP names, MACs and socket path lengths (den-vmm's vsock
    /// socket gets `_<port>` appended, so it needs 11 bytes more).
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |why: String| Err(EngineError::Invalid { id: self.id.clone(), why });
        let id_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if self.id.is_empty() || self.id.len() > 64 || !self.id.chars().all(id_ok) {
            return bad("the id must be 1 to 64 characters from [A-Za-z0-9._-]".into());
        }
        if !self.dir.is_dir() {
            return bad(format!("runtime directory {} does not exist", self.dir.display()));
        }
        if !(1..=255).contains(&self.cpus) {
            return bad(format!("cpus = {}: must be 1 to 255", self.cpus));
        }
        if self.memory_mib < 32 {
            return bad(format!("memory_mib = {}: at least 32 MiB", self.memory_mib));
        }
        let files: Vec<(&str, &Path)> = match &self.firmware {
            None => {
                let elf = self.kernel_elf.iter().map(|k| ("kernel (ELF)", k.as_path()));
                [("kernel", self.kernel.as_path()), ("initrd", self.initrd.as_path())].into_iter().chain(elf).collect()
            }
            Some(fw) => {
                let mut v: Vec<(&str, &Path)> = fw.iso.iter().map(|p| ("ISO", p.as_path())).collect();
                if fw.uefi {
                    v.push(("OVMF firmware (package ovmf)", Path::new(OVMF_CODE)));
                    v.push(("UEFI variable store", fw.vars.as_deref().unwrap_or(Path::new(""))));
                }
                v
            }
        };
        for (what, f) in files {
            if !f.is_file() {
                return bad(format!("{what} {} is not a file", f.display()));
            }
        }
        for d in &self.disks {
            if !d.path.is_file() {
                return bad(format!("disk {} is not a file", d.path.display()));
            }
        }
        for n in &self.nics {
            if n.tap.is_empty() || n.tap.len() > 15 || !n.tap.chars().all(id_ok) {
                return bad(format!("TAP name `{}`: 1 to 15 characters from [A-Za-z0-9._-]", n.tap));
            }
            if !valid_mac(&n.mac) {
                return bad(format!("MAC `{}` of {}: expected six hex pairs like 52:54:00:12:34:56", n.mac, n.tap));
            }
        }
        for sh in &self.shares {
            if sh.tag.is_empty() || sh.tag.len() > 36 || !sh.tag.chars().all(id_ok) {
                return bad(format!("share tag `{}`: 1 to 36 characters from [A-Za-z0-9._-]", sh.tag));
            }
            if !sh.host.is_dir() {
                return bad(format!("shared folder {} is not a directory on the host", sh.host.display()));
            }
        }
        let longest = self.dir.join("vsock.sock").as_os_str().len() + 11;
        if longest > MAX_SOCKET_PATH {
            return bad(format!(
                "runtime directory {} is too long for Unix socket paths (at most {} bytes)",
                self.dir.display(),
                MAX_SOCKET_PATH - 22
            ));
        }
        Ok(())
    }
}

fn valid_mac(mac: &str) -> bool {
    den_net_util::MacAddr::parse(mac).is_ok()
}

/// Refuses to launch into a directory whose control socket answers: a VM still runs there.
async fn refuse_live_socket(spec: &LaunchSpec, control: &Path) -> Result<(), EngineError> {
    if tokio::net::UnixStream::connect(control).await.is_ok() {
        return Err(EngineError::Invalid {
            id: spec.id.clone(),
            why: format!("{} answers: a VM process still runs in {}", control.display(), spec.dir.display()),
        });
    }
    Ok(())
}

/// Where an engine keeps its files for a VM whose control socket is `control`.
fn run_dir(control: &Path) -> &Path {
    control.parent().unwrap_or(Path::new("."))
}

/// The engine's own output (stdout and stderr of its process), appended across launches.
pub fn engine_log(running: &Running) -> PathBuf {
    run_dir(&running.control).join("engine.log")
}

#[cfg(test)]
mod tests;
