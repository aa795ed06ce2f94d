//! What a VM is: its spec (what the user asked for), its state and its record. Validation lives
//! here so the API and the CLI report the same field names.

use crate::firstboot::FirstBoot;
use crate::net::{Nic, NicRequest, PortForward};
use crate::{valid_image_name, valid_name, FieldError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What a VM is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A developer VM.
    #[default]
    Dev,
    /// An app microVM.
    App,
    /// The business OS.
    System,
}

/// Which engine to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// den-vmm where the host's KVM can run Linux, else QEMU.
    #[default]
    Auto,
    /// den-vmm.
    Vmm,
    /// QEMU.
    Qemu,
}

/// Firmware of VMs that boot through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// SeaBIOS.
    Bios,
    /// OVMF.
    Uefi,
}

/// What happens when a VM's process ends without being asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart whenever it ends by itself.
    Always,
    /// Restart when it crashed or was killed.
    #[default]
    OnFailure,
    /// Leave it stopped.
    Never,
}

/// A VM as asked for (`POST /api/v1/vms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Unique name: lowercase letters, digits and `-`, 1 to 63 characters.
    pub name: String,
    /// Image name in the image store (`base`, `dev`, `docker`, ...); empty for ISO installs.
    #[serde(default)]
    pub image: String,
    /// An installation ISO (by name, `den iso ls`): the VM boots it through firmware onto an
    /// empty disk of `disk_mib` (QEMU only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iso: Option<String>,
    /// Firmware for ISO VMs: `bios` (the default) or `uefi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<Firmware>,
    /// Kind.
    #[serde(default)]
    pub kind: Kind,
    /// Engine.
    #[serde(default)]
    pub engine: EngineChoice,
    /// vCPUs.
    #[serde(default = "one")]
    pub cpus: u32,
    /// Memory in MiB.
    #[serde(default = "default_memory")]
    pub memory_mib: u64,
    /// Restart policy.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Extra kernel command line words.
    #[serde(default)]
    pub cmdline_extra: String,
    /// Users and SSH keys set up through the agent on the first start.
    #[serde(default, skip_serializing_if = "FirstBoot::is_empty")]
    pub first_boot: FirstBoot,
    /// Start when the host boots (system VMs always do, first).
    #[serde(default)]
    pub autostart: bool,
    /// Order among autostarted VMs: lower first (after system VMs), then by name.
    #[serde(default)]
    pub start_order: u32,
    /// Root disk size in MiB (default: the image's); at least the image's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mib: Option<u64>,
    /// A data disk of this many MiB: a second disk, formatted ext4 with the label `den-data`
    /// when the VM is made, kept with it; the image decides where it is mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_disk_mib: Option<u64>,
    /// NICs, each on a network (`[]`: no network; the CLI adds one on `default`).
    #[serde(default)]
    pub nics: Vec<NicRequest>,
    /// Host ports forwarded to the first NIC (like `docker -p`).
    #[serde(default)]
    pub ports: Vec<PortForward>,
    /// Host folders shared into the guest with virtio-fs (either engine; only an admin may set them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<Share>,
}

/// A host folder shared into a guest with virtio-fs: the guest's root can read and write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    /// The host folder (absolute, no `.` or `..` parts).
    pub host: std::path::PathBuf,
    /// Where the guest mounts it (default: the same path as on the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<std::path::PathBuf>,
    /// Shared read-only: `virtiofsd` serves it from a read-only mount, so the guest's root
    /// cannot write it whatever it does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub readonly: bool,
}

impl Share {
    /// Where the guest mounts the folder.
    pub fn guest_path(&self) -> &std::path::Path {
        self.guest.as_deref().unwrap_or(&self.host)
    }

    /// Checks both paths: clean, absolute, not too long, no comma (virtiofsd's options are
    /// comma-separated), and a guest path that hides none of the guest's system folders.
    pub fn check(&self) -> Result<(), String> {
        for p in [&self.host, self.guest_path()] {
            let text = p.to_str().unwrap_or_default();
            let clean = text.len() > 1
                && text.starts_with('/')
                && text[1..].split('/').all(|part| !part.is_empty() && part != "." && part != "..");
            if !clean || text.contains(',') || text.len() > MAX_SHARE_PATH {
                return Err(format!(
                    "`{}` is not a clean absolute UTF-8 path of at most {MAX_SHARE_PATH} bytes without commas",
                    p.display()
                ));
            }
        }
        let guest = self.guest_path();
        if let Some(sys) = GUEST_SYSTEM.iter().find(|s| guest.starts_with(s)) {
            return Err(format!("a shared folder cannot be mounted at `{}`: it would hide {sys}", guest.display()));
        }
        if GUEST_SYSTEM_PARENTS.iter().any(|s| guest == std::path::Path::new(s)) {
            return Err(format!(
                "a shared folder cannot be mounted over `{}`: it holds system folders",
                guest.display()
            ));
        }
        Ok(())
    }
}

/// At most this many shares per VM.
pub const MAX_SHARES: usize = 8;
/// Longest path of a share (they travel on the kernel command line).
pub const MAX_SHARE_PATH: usize = 200;
/// Guest folders no share may be mounted at or under.
const GUEST_SYSTEM: [&str; 13] = [
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/lib/docker",
];
/// Guest folders no share may be mounted over (they hold system folders).
const GUEST_SYSTEM_PARENTS: [&str; 2] = ["/var", "/var/lib"];

fn one() -> u32 {
    1
}
fn default_memory() -> u64 {
    512
}

/// Largest disk a VM may ask for (16 TiB).
pub const MAX_DISK_MIB: u64 = 16 << 20;

/// Upper bounds a host imposes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most vCPUs per VM.
    pub max_cpus: u32,
    /// Most memory per VM in MiB.
    pub max_memory_mib: u64,
}

impl VmSpec {
    /// Checks the spec against the host's limits; the first problem, naming the field.
    pub fn validate(&self, limits: Limits) -> Result<(), FieldError> {
        let err = |field, message: String| Err(FieldError { field, message });
        if !valid_name(&self.name) {
            return err("name", format!("`{}` is not a VM name: use a-z, 0-9 and -, 1 to 63 characters", self.name));
        }
        if !self.image.is_empty() && !valid_image_name(&self.image) {
            let msg = format!("`{}` is not an image name: 1 to 63 of a-z, 0-9 and -, starting with a letter (`den image ls` lists them)", self.image);
            return err("image", msg);
        }
        match (&self.iso, self.image.is_empty()) {
            (None, true) => return err("image", "an image name is required (`den image ls` lists them)".into()),
            (Some(_), false) => {
                return err("iso", "an ISO VM installs onto an empty disk: give an image or an ISO, not both".into())
            }
            (Some(iso), true) => {
                if !valid_name(iso) {
                    return err("iso", format!("`{iso}` is not an ISO name (`den iso ls` lists them)"));
                }
                if self.disk_mib.is_none() {
                    return err("disk_mib", "an ISO install needs a disk size (disk_mib)".into());
                }
                if self.engine == EngineChoice::Vmm {
                    return err("engine", "den-vmm boots kernels directly; ISO installs run on qemu".into());
                }
            }
            (None, false) => {
                if self.firmware.is_some() {
                    return err("firmware", "only ISO VMs boot through firmware; images boot their kernel".into());
                }
            }
        }
        if self.cpus == 0 || self.cpus > limits.max_cpus {
            return err("cpus", format!("{} vCPUs is not possible here (1 to {})", self.cpus, limits.max_cpus));
        }
        if self.memory_mib < 64 || self.memory_mib > limits.max_memory_mib {
            return err(
                "memory_mib",
                format!("{} MiB is not possible here (64 to {})", self.memory_mib, limits.max_memory_mib),
            );
        }
        if self.cmdline_extra.len() > 1024 || self.cmdline_extra.contains(['\n', '\0']) {
            return err("cmdline_extra", "at most 1024 bytes on one line".into());
        }
        self.first_boot.validate()?;
        if let Some(d) = self.disk_mib.filter(|d| !(64..=MAX_DISK_MIB).contains(d)) {
            return err("disk_mib", format!("{d} MiB is not possible (64 to {MAX_DISK_MIB})"));
        }
        if let Some(d) = self.data_disk_mib.filter(|d| !(64..=MAX_DISK_MIB).contains(d)) {
            return err("data_disk_mib", format!("{d} MiB is not possible (64 to {MAX_DISK_MIB})"));
        }
        self.validate_shares()?;
        crate::net::validate_vm_net(&self.nics, &self.ports)
    }

    fn validate_shares(&self) -> Result<(), FieldError> {
        let err = |message: String| Err(FieldError { field: "shares", message });
        if self.shares.is_empty() {
            return Ok(());
        }
        if self.shares.len() > MAX_SHARES {
            return err(format!("at most {MAX_SHARES} shared folders"));
        }
        if self.iso.is_some() || self.engine == EngineChoice::Vmm {
            return err("shared folders need the qemu engine and an image (virtio-fs is mounted by Den's agent)".into());
        }
        for (i, s) in self.shares.iter().enumerate() {
            s.check().or_else(err)?;
            let g = s.guest_path();
            // A share may be mounted inside an earlier read-only one (whose folder is then its
            // mount point, and which the guest cannot change); any other overlap hides files.
            let inside_read_only = |o: &Share| o.readonly && g != o.guest_path() && g.starts_with(o.guest_path());
            let overlap = |o: &Share| g.starts_with(o.guest_path()) || o.guest_path().starts_with(g);
            let clash = self.shares[..i].iter().find(|o| overlap(o) && !inside_read_only(o));
            if let Some(o) = clash {
                return err(format!(
                    "shared folders at `{}` and `{}` would hide one another",
                    o.guest_path().display(),
                    g.display()
                ));
            }
        }
        Ok(())
    }
}

/// A VM's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    /// Being created (disk copy in progress).
    Creating,
    /// No process.
    Stopped,
    /// Process starting.
    Starting,
    /// Running.
    Running,
    /// Paused (vCPUs stopped).
    Paused,
    /// Shutting down.
    Stopping,
    /// Its process ended unexpectedly and the restart policy did not restart it.
    Crashed,
    /// Being deleted.
    Deleting,
}

impl VmState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Creating => "creating",
            VmState::Stopped => "stopped",
            VmState::Starting => "starting",
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::Stopping => "stopping",
            VmState::Crashed => "crashed",
            VmState::Deleting => "deleting",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<VmState> {
        const ALL: [VmState; 8] = [
            VmState::Creating,
            VmState::Stopped,
            VmState::Starting,
            VmState::Running,
            VmState::Paused,
            VmState::Stopping,
            VmState::Crashed,
            VmState::Deleting,
        ];
        ALL.into_iter().find(|state| state.as_str() == s)
    }
}

/// A VM as stored and reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRecord {
    /// Stable id.
    pub id: String,
    /// The spec it was created with.
    pub spec: VmSpec,
    /// Who created it.
    pub owner: String,
    /// State.
    pub state: VmState,
    /// The engine process, while one exists.
    pub running: Option<Running>,
    /// Engine in use (resolved from `auto` at creation).
    pub engine: EngineKind,
    /// NICs with their MAC, address and TAP (resolved at creation).
    #[serde(default)]
    pub nics: Vec<Nic>,
    /// The first-boot settings have been applied.
    #[serde(default)]
    pub provisioned: bool,
    /// Creation time (Unix seconds).
    pub created: i64,
    /// Last change (Unix seconds).
    pub updated: i64,
}

/// Which engine runs a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// QEMU over QMP.
    Qemu,
    /// den-vmm.
    Vmm,
}

impl EngineKind {
    /// The name in records and the API (`qemu`, `vmm`).
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Qemu => "qemu",
            EngineKind::Vmm => "vmm",
        }
    }
}

/// A started (or re-adopted) VM process and where to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    /// Engine.
    pub engine: EngineKind,
    /// Process id.
    pub pid: i32,
    /// The process's start time (clock ticks after boot, /proc/<pid>/stat field 22): a pid
    /// reused by another process does not match.
    pub start_time: u64,
    /// The serial console: a Unix socket clients attach to (den-vmm: recent output, then
    /// live; QEMU: live only, one client at a time, with everything also in `console.log`
    /// next to it). `den_engine::console_recent` reads recent output for both.
    pub console: PathBuf,
    /// The engine's control socket (QMP or den-vmm's API).
    pub control: PathBuf,
    /// The agent channel: a Unix socket (QEMU: virtio-serial port; den-vmm: vsock, reached with
    /// `CONNECT 1024`).
    pub agent: PathBuf,
}

/// A snapshot of a VM's disks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Name, unique per VM.
    pub name: String,
    /// What it was taken for.
    pub description: String,
    /// When (Unix seconds).
    pub created: i64,
}

/// An installation ISO in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Iso {
    /// Name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        serde_json::from_value(serde_json::json!({"name": "web1", "image": "base"})).unwrap()
    }

    #[test]
    fn names_and_limits() {
        assert!(valid_name("web1") && valid_name("a") && valid_name("a-b-9"));
        for bad in ["", "-a", "a-", "Web", "a_b", "a.b", &"x".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
        let limits = Limits { max_cpus: 2, max_memory_mib: 4096 };
        assert!(spec().validate(limits).is_ok());
        assert_eq!(VmSpec { cpus: 3, ..spec() }.validate(limits).unwrap_err().field, "cpus");
        assert_eq!(VmSpec { memory_mib: 1 << 40, ..spec() }.validate(limits).unwrap_err().field, "memory_mib");
        assert_eq!(VmSpec { name: "Bad".into(), ..spec() }.validate(limits).unwrap_err().field, "name");
        assert_eq!(VmSpec { data_disk_mib: Some(1), ..spec() }.validate(limits).unwrap_err().field, "data_disk_mib");
        let unknown: Result<VmSpec, _> = serde_json::from_str(r#"{"name":"a","image":"b","cpu":1}"#);
        assert!(unknown.unwrap_err().to_string().contains("unknown field `cpu`"));
        assert_eq!(VmState::parse("running"), Some(VmState::Running));
        assert_eq!(VmState::parse("nope"), None);
    }

    #[test]
    fn stored_state_names_are_the_json_names() {
        for name in ["creating", "stopped", "starting", "running", "paused", "stopping", "crashed", "deleting"] {
            let state = VmState::parse(name).unwrap();
            assert_eq!(state.as_str(), name);
            assert_eq!(serde_json::to_value(state).unwrap(), serde_json::Value::String(name.into()));
        }
        for kind in [EngineKind::Qemu, EngineKind::Vmm] {
            assert_eq!(serde_json::to_value(kind).unwrap(), serde_json::Value::String(kind.as_str().into()));
        }
    }

    #[test]
    fn shares_are_clean_absolute_paths_on_qemu() {
        let limits = Limits { max_cpus: 2, max_memory_mib: 4096 };
        let share = |host: &str, guest: Option<&str>| Share {
            host: host.into(),
            guest: guest.map(Into::into),
            readonly: false,
        };
        let ro = |host: &str, guest: &str| Share { readonly: true, ..share(host, Some(guest)) };
        let with = |shares: Vec<Share>| VmSpec { shares, ..spec() }.validate(limits);
        assert!(with(vec![share("/home/ann", None), share("/srv/x", Some("/data"))]).is_ok());
        assert!(with(vec![ro("/a", "/x"), share("/b", Some("/x/var")), share("/c", Some("/x/cache"))]).is_ok());
        for (bad, says) in [
            (vec![share("home", None)], "clean absolute"),
            (vec![share("/home/../etc", None)], "clean absolute"),
            (vec![share("/a", Some("/"))], "clean absolute"),
            (vec![share("/a/./b", None)], "clean absolute"),
            (vec![share("/a,source=/", None)], "without commas"),
            (vec![share("/srv", Some("/etc/x"))], "hide /etc"),
            (vec![share("/srv", Some("/var"))], "system folders"),
            (vec![share("/a", Some("/x")), share("/b", Some("/x"))], "hide one another"),
            (vec![share("/a", Some("/x")), share("/b", Some("/x/y"))], "hide one another"),
            (vec![share("/b", Some("/x/y")), ro("/a", "/x")], "hide one another"),
            (vec![ro("/a", "/x"), share("/b", Some("/x"))], "hide one another"),
            (vec![share("/a", None); MAX_SHARES + 1], "at most"),
        ] {
            let e = with(bad.clone()).unwrap_err();
            assert!(e.field == "shares" && e.message.contains(says), "{bad:?}: {}", e.message);
        }
        let vmm = VmSpec { engine: EngineChoice::Vmm, shares: vec![share("/a", None)], ..spec() };
        assert!(vmm.validate(limits).unwrap_err().message.contains("qemu"));
    }
}
