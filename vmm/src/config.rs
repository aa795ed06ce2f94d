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
        if !self.kernel.is_file() {
            return Err(format!("kernel: {} is not a file", self.kernel.display()));
        }
        if let Some(i) = &self.initrd {
            if !i.is_file() {
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
            if !d.path.is_file() {
                return Err(format!("disks[{i}]: {} is not a file", d.path.display()));
            }
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
        self.disks.len() + usize::from(self.rng)
    }
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
    }
}
