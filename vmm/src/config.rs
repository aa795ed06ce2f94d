//! A VM's configuration: from a JSON file (`den-vmm run --config vm.json`) or from flags. Every
//! field is checked before anything is created, with errors that name the field.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the serial console goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Console {
    /// To den-vmm's stdout; stdin is the guest's console input.
    #[default]
    Stdio,
    /// Appended to a file.
    File(PathBuf),
    /// Served on a Unix socket: clients get recent output, then live output, and send input.
    Socket(PathBuf),
    /// Nowhere live (the ring buffer still keeps recent output for the API).
    None,
}

/// A VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// vCPUs (1 to 32).
    #[serde(default = "one")]
    pub cpus: u8,
    /// Memory in MiB.
    #[serde(default = "default_memory")]
    pub memory_mib: u64,
    /// Kernel: bzImage or ELF vmlinux.
    pub kernel: PathBuf,
    /// Initramfs.
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[serde(default = "default_cmdline")]
    pub cmdline: String,
    /// Serial console.
    #[serde(default)]
    pub console: Console,
    /// virtio-blk disks, in the order the guest sees them (`/dev/vda`, `/dev/vdb`, ...).
    #[serde(default)]
    pub disks: Vec<DiskConfig>,
    /// Offer a virtio-rng entropy device.
    #[serde(default = "yes")]
    pub rng: bool,
    /// A virtio-vsock device (Firecracker's Unix-socket model).
    #[serde(default)]
    pub vsock: Option<VsockConfig>,
    /// virtio-net cards, each on a TAP interface.
    #[serde(default)]
    pub nets: Vec<NetConfig>,
    /// Shared folders: virtio-fs devices served by vhost-user backends (virtiofsd). Guest RAM is
    /// then shared memory (a memfd) that the backends map.
    #[serde(default)]
    pub fs: Vec<FsConfig>,
    /// Work disk requests on a thread per disk, woken through KVM ioeventfds (the default), or
    /// on the vCPU thread that wrote the notification (`false`: for comparisons).
    #[serde(default = "yes")]
    pub io_workers: bool,
}

/// A virtio-fs device whose requests a vhost-user backend (virtiofsd) serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsConfig {
    /// The backend's vhost-user socket, or `fd:N`: a connected socket ([`crate::files`]).
    pub socket: PathBuf,
    /// The tag the guest mounts it by (`mount -t virtiofs TAG /mnt`).
    pub tag: String,
}

/// The longest virtio-fs tag (virtio 1.2, 5.11.4).
pub const MAX_FS_TAG: usize = 36;

impl FsConfig {
    /// Parses the `--fs` flag: `SOCKET,tag=TAG`.
    pub fn parse(s: &str) -> Result<FsConfig, String> {
        let usage = || format!("fs `{s}`: expected SOCKET,tag=TAG");
        let (socket, rest) = s.split_once(',').ok_or_else(usage)?;
        let tag = rest.strip_prefix("tag=").ok_or_else(usage)?;
        let c = FsConfig { socket: socket.into(), tag: tag.into() };
        c.validate()?;
        Ok(c)
    }

    /// The tag is 1 to 36 bytes of letters, digits, `.`, `_` and `-`; the socket is named.
    pub fn validate(&self) -> Result<(), String> {
        let t = &self.tag;
        let ok = (1..=MAX_FS_TAG).contains(&t.len())
            && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
        if !ok {
            return Err(format!("fs tag `{t}`: use 1 to {MAX_FS_TAG} letters, digits, `.`, `_` or `-`"));
        }
        if self.socket.as_os_str().is_empty() {
            return Err(format!("fs `{t}`: no socket"));
        }
        Ok(())
    }
}

/// A virtio-net card on a TAP interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// The TAP interface (created if missing, which needs CAP_NET_ADMIN), or `fd:N`: a TAP
    /// descriptor already attached to its interface ([`crate::files`]).
    pub tap: String,
    /// The card's MAC (`52:54:00:12:34:56`); derived from the TAP name if absent.
    #[serde(default)]
    pub mac: Option<String>,
}

impl NetConfig {
    /// Parses `TAP[,mac=MAC]` from the command line.
    pub fn parse(s: &str) -> Result<NetConfig, String> {
        let (tap, mac) = match s.split_once(',') {
            Some((t, rest)) => match rest.strip_prefix("mac=") {
                Some(m) => (t, Some(m.to_string())),
                None => return Err(format!("net `{s}`: expected TAP or TAP,mac=52:54:00:12:34:56")),
            },
            None => (s, None),
        };
        let c = NetConfig { tap: tap.into(), mac };
        c.mac_bytes()?;
        Ok(c)
    }

    /// The MAC to use.
    pub fn mac_bytes(&self) -> Result<[u8; 6], String> {
        match &self.mac {
            Some(m) => crate::devices::virtio::tap::parse_mac(m),
            None => Ok(crate::devices::virtio::tap::mac_for(&self.tap)),
        }
    }
}

/// A virtio-vsock device whose host side is a Unix socket (see den-vmm's README).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockConfig {
    /// The guest's context ID (3 or more).
    pub guest_cid: u32,
    /// Where den-vmm listens for host clients; guest connections to host port P go to
    /// `<uds_path>_P`.
    pub uds_path: PathBuf,
}

/// Longest `uds_path`: `sun_path` is 108 bytes with the NUL, and `_<port>` may add 11.
pub const MAX_UDS_PATH: usize = 108 - 1 - 11;

impl VsockConfig {
    /// Parses `CID,PATH` from the command line.
    pub fn parse(s: &str) -> Result<VsockConfig, String> {
        let (cid, path) = s.split_once(',').ok_or_else(|| format!("vsock `{s}`: expected CID,PATH"))?;
        let guest_cid = cid.parse().map_err(|_| format!("vsock `{s}`: CID `{cid}` is not a number"))?;
        Ok(VsockConfig { guest_cid, uds_path: path.into() })
    }

    /// Checks the CID and the socket path.
    pub fn validate(&self) -> Result<(), String> {
        if self.guest_cid < 3 || self.guest_cid == u32::MAX {
            return Err(format!("vsock.guest_cid: {} is reserved (use 3 to {})", self.guest_cid, u32::MAX - 1));
        }
        let p = &self.uds_path;
        let len = p.as_os_str().len();
        if len == 0 || len > MAX_UDS_PATH {
            return Err(format!("vsock.uds_path: `{}` must be 1 to {MAX_UDS_PATH} bytes", p.display()));
        }
        let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        if !parent.is_dir() || p.file_name().is_none() {
            return Err(format!("vsock.uds_path: {} is not a path in an existing directory", p.display()));
        }
        Ok(())
    }
}

/// A virtio-blk disk backed by a raw file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// The raw disk image.
    pub path: PathBuf,
    /// The guest may not write to it.
    #[serde(default)]
    pub read_only: bool,
}

impl DiskConfig {
    /// Parses `PATH[,ro]` from the command line.
    pub fn parse(s: &str) -> Result<DiskConfig, String> {
        let (path, ro) = match s.strip_suffix(",ro") {
            Some(p) => (p, true),
            None => (s, false),
        };
        if path.is_empty() {
            return Err(format!("disk `{s}`: expected PATH or PATH,ro"));
        }
        Ok(DiskConfig { path: path.into(), read_only: ro })
    }
}

fn yes() -> bool {
    true
}
fn one() -> u8 {
    1
}
fn default_memory() -> u64 {
    256
}
fn default_cmdline() -> String {
    "console=ttyS0".into()
}

/// The most vCPUs a VM may have (one IOAPIC, APIC IDs below 255, room in the ACPI area).
pub const MAX_CPUS: u8 = 32;
/// The least memory a Linux guest can boot in.
pub const MIN_MEMORY_MIB: u64 = 32;

impl VmConfig {
    /// Checks the fields that do not need the host; returns the first problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.cpus == 0 || self.cpus > MAX_CPUS {
            return Err(format!("cpus: {} is out of range (1 to {MAX_CPUS})", self.cpus));
        }
        if self.memory_mib < MIN_MEMORY_MIB {
            return Err(format!("memory_mib: {} is below the minimum of {MIN_MEMORY_MIB}", self.memory_mib));
        }
        if self.memory_mib > (1 << 24) {
            return Err(format!("memory_mib: {} is more than any host has", self.memory_mib));
        }
        if !is_file(&self.kernel) {
            return Err(format!("kernel: {} is not a file", self.kernel.display()));
        }
        if let Some(i) = &self.initrd {
            if !is_file(i) {
                return Err(format!("initrd: {} is not a file", i.display()));
            }
        }
        if self.cmdline.len() >= crate::layout::CMDLINE_MAX {
            return Err(format!(
                "cmdline: {} bytes is too long (max {})",
                self.cmdline.len(),
                crate::layout::CMDLINE_MAX - 1
            ));
        }
        for (i, d) in self.disks.iter().enumerate() {
            if !is_file(&d.path) {
                return Err(format!("disks[{i}]: {} is not a file", d.path.display()));
            }
        }
        if let Some(v) = &self.vsock {
            v.validate()?;
        }
        for (i, f) in self.fs.iter().enumerate() {
            f.validate().map_err(|e| format!("fs[{i}]: {e}"))?;
            if self.fs[..i].iter().any(|g| g.tag == f.tag) {
                return Err(format!("fs[{i}]: tag `{}` is used twice", f.tag));
            }
        }
        for (i, n) in self.nets.iter().enumerate() {
            if n.tap.is_empty() || n.tap.len() >= libc::IFNAMSIZ {
                return Err(format!("nets[{i}].tap: `{}` is not an interface name (1 to 15 bytes)", n.tap));
            }
            n.mac_bytes().map_err(|e| format!("nets[{i}].mac: {e}"))?;
        }
        if self.virtio_count() > MAX_VIRTIO {
            return Err(format!(
                "{} virtio devices are more than the {MAX_VIRTIO} interrupt lines",
                self.virtio_count()
            ));
        }
        Ok(())
    }

    /// How many virtio devices the VM gets.
    pub fn virtio_count(&self) -> usize {
        self.disks.len() + usize::from(self.rng) + usize::from(self.vsock.is_some()) + self.nets.len() + self.fs.len()
    }
}

/// A file den-vmm can use: one by that name, or a descriptor handed over as `fd:N`.
fn is_file(p: &std::path::Path) -> bool {
    crate::files::is_handed_over(p) || p.is_file()
}

/// Virtio devices a VM can have (one IOAPIC line each).
pub const MAX_VIRTIO: usize = (crate::layout::GSI_MAX - crate::layout::VIRTIO_GSI_BASE + 1) as usize;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_with_defaults_and_checks() {
        let c: VmConfig = serde_json::from_str(r#"{"kernel": "/proc/self/exe"}"#).unwrap();
        assert_eq!((c.cpus, c.memory_mib, c.console.clone()), (1, 256, Console::Stdio));
        let _ = c.validate();
        let bad: Result<VmConfig, _> = serde_json::from_str(r#"{"kernel": "k", "cpu": 2}"#);
        assert!(bad.unwrap_err().to_string().contains("cpu"));
        let c = VmConfig { cpus: 0, ..c };
        assert!(c.validate().unwrap_err().starts_with("cpus:"));
        let c = VmConfig { cpus: 2, memory_mib: 8, ..c };
        assert!(c.validate().unwrap_err().starts_with("memory_mib:"));
        let c = VmConfig { memory_mib: 64, kernel: "/nonexistent".into(), ..c };
        assert!(c.validate().unwrap_err().starts_with("kernel:"));
        let c: VmConfig = serde_json::from_str(r#"{"kernel": "k", "console": {"file": "/tmp/c"}}"#).unwrap();
        assert_eq!(c.console, Console::File("/tmp/c".into()));
        assert_eq!(DiskConfig::parse("/d.img,ro").unwrap(), DiskConfig { path: "/d.img".into(), read_only: true });
        assert!(!DiskConfig::parse("/d.img").unwrap().read_only);
        assert!(DiskConfig::parse(",ro").is_err());
        assert_eq!(NetConfig::parse("tap0").unwrap(), NetConfig { tap: "tap0".into(), mac: None });
        assert_eq!(NetConfig::parse("tap1,mac=52:54:00:00:00:01").unwrap().mac_bytes().unwrap()[5], 1);
        assert!(NetConfig::parse("tap1,mtu=9000").is_err());
        assert!(NetConfig::parse("tap1,mac=01:00:00:00:00:00").is_err());
    }

    #[test]
    fn vsock_flag_json_and_checks() {
        let v = VsockConfig::parse("3,/tmp/v.sock").unwrap();
        assert_eq!(v, VsockConfig { guest_cid: 3, uds_path: "/tmp/v.sock".into() });
        v.validate().unwrap();
        assert!(VsockConfig::parse("3").is_err());
        assert!(VsockConfig::parse("x,/tmp/v").is_err());
        for cid in [0, 1, 2, u32::MAX] {
            let e = VsockConfig { guest_cid: cid, ..v.clone() }.validate().unwrap_err();
            assert!(e.starts_with("vsock.guest_cid:"), "{e}");
        }
        for p in [String::new(), format!("/tmp/{}", "x".repeat(100)), "/nonexistent/dir/v.sock".into(), "/".into()] {
            let e = VsockConfig { uds_path: p.into(), ..v.clone() }.validate().unwrap_err();
            assert!(e.starts_with("vsock.uds_path:"), "{e}");
        }
        VsockConfig { uds_path: "v.sock".into(), ..v.clone() }.validate().unwrap();
        let c: VmConfig =
            serde_json::from_str(r#"{"kernel": "k", "vsock": {"guest_cid": 7, "uds_path": "/tmp/v"}}"#).unwrap();
        assert_eq!(c.vsock.as_ref().map(|v| v.guest_cid), Some(7));
        assert_eq!(c.virtio_count(), 2);
        let c = VmConfig { kernel: "/proc/self/exe".into(), vsock: Some(VsockConfig { guest_cid: 2, ..v }), ..c };
        assert!(c.validate().unwrap_err().starts_with("vsock.guest_cid:"));
    }
}
