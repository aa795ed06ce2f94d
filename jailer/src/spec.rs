//! What a jail is made of: the VM, its user, its limits, its files, and den-vmm's arguments.

use crate::JailError;
use std::path::PathBuf;

/// Where den-vmm appears inside the jail.
pub const VMM_IN_JAIL: &str = "/den-vmm";

/// One file den-vmm gets as an open descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// `/dev/kvm` (or another KVM device), read-write.
    Kvm(PathBuf),
    /// A file den-vmm only reads (kernel, initramfs, read-only disk).
    ReadOnly(PathBuf),
    /// A file den-vmm reads and writes (a disk).
    ReadWrite(PathBuf),
    /// A TAP interface, attached in the host's network namespace.
    Tap(String),
    /// A Unix socket bound at this path (mode 0600, root's), listening.
    Listen(PathBuf),
    /// A connection to the Unix socket listening at this path (a vhost-user backend's).
    Connect(PathBuf),
}

impl Resource {
    /// Parses `kvm:PATH`, `ro:PATH`, `rw:PATH`, `tap:NAME`, `listen:PATH` or `connect:PATH`.
    pub fn parse(s: &str) -> Result<Resource, String> {
        let (kind, what) = s.split_once(':').ok_or_else(|| format!("`{s}`: expected KIND:PATH"))?;
        let path = || {
            let p = PathBuf::from(what);
            if p.is_absolute() {
                Ok(p)
            } else {
                Err(format!("`{s}`: the path must be absolute"))
            }
        };
        Ok(match kind {
            "kvm" => Resource::Kvm(path()?),
            "ro" => Resource::ReadOnly(path()?),
            "rw" => Resource::ReadWrite(path()?),
            "listen" => Resource::Listen(path()?),
            "connect" => Resource::Connect(path()?),
            "tap" if den_net_util::tap::valid_ifname(what) => Resource::Tap(what.into()),
            "tap" => return Err(format!("`{s}`: `{what}` is not an interface name")),
            other => return Err(format!("`{s}`: kind `{other}` is not kvm, ro, rw, tap, listen or connect")),
        })
    }
}

/// A jail for one den-vmm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailSpec {
    /// The VM's id: names its cgroup (`den/<id>-<pid>`).
    pub id: String,
    /// The user den-vmm runs as (not 0).
    pub uid: u32,
    /// The group den-vmm runs as (not 0).
    pub gid: u32,
    /// The den-vmm binary (absolute), bind-mounted read-only as [`VMM_IN_JAIL`].
    pub exec: PathBuf,
    /// An empty folder the jail's root is mounted on (created if missing).
    pub root: PathBuf,
    /// Memory limit for the whole process (guest memory plus den-vmm's own), in MiB.
    pub memory_mib: u64,
    /// CPU limit, in whole CPUs.
    pub cpus: u32,
    /// Most processes and threads.
    pub pids: u32,
    /// Most open descriptors.
    pub files: u64,
    /// The cgroup hierarchy's root (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// The descriptors den-vmm gets, as 3, 4, ... in this order.
    pub resources: Vec<Resource>,
    /// den-vmm's arguments (naming the descriptors as `fd:3`, ...).
    pub args: Vec<String>,
}

/// The first descriptor number handed to den-vmm.
pub const FIRST_FD: i32 = 3;

/// The descriptor den-vmm gets for the `i`th resource.
pub fn fd_for(i: usize) -> String {
    format!("fd:{}", FIRST_FD as usize + i)
}

/// Whether `id` can name a VM's cgroup: 1 to 64 of `A-Za-z0-9_.-`, not starting with `.`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

impl JailSpec {
    /// Checks everything before any step runs.
    pub fn validate(&self) -> Result<(), JailError> {
        let bad = |s: String| Err(JailError::Invalid(s));
        if !valid_id(&self.id) {
            return bad(format!("--id `{}`: use 1 to 64 of A-Z a-z 0-9 _ . - (not starting with .)", self.id));
        }
        if self.uid == 0 || self.gid == 0 || self.uid == u32::MAX || self.gid == u32::MAX {
            return bad(format!(
                "--uid {} --gid {}: den-vmm must not run as root; give a VM's own ids",
                self.uid, self.gid
            ));
        }
        for (what, p) in [("--exec", &self.exec), ("--root", &self.root), ("--cgroup-root", &self.cgroup_root)] {
            if !p.is_absolute() {
                return bad(format!("{what} {}: must be an absolute path", p.display()));
            }
        }
        if !self.exec.is_file() {
            return bad(format!("--exec {}: not a file", self.exec.display()));
        }
        if self.memory_mib < 16 || self.cpus == 0 || self.pids < 8 || self.files < 16 {
            return bad(format!(
                "limits too small: memory {} MiB (16+), cpus {} (1+), pids {} (8+), files {} (16+)",
                self.memory_mib, self.cpus, self.pids, self.files
            ));
        }
        if self.resources.len() > 512 {
            return bad(format!("{} descriptors are too many (512 at most)", self.resources.len()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_parse_strictly() {
        assert_eq!(Resource::parse("kvm:/dev/kvm").unwrap(), Resource::Kvm("/dev/kvm".into()));
        assert_eq!(Resource::parse("rw:/d/disk.img").unwrap(), Resource::ReadWrite("/d/disk.img".into()));
        assert_eq!(Resource::parse("tap:den-t1").unwrap(), Resource::Tap("den-t1".into()));
        assert_eq!(Resource::parse("connect:/d/fs0.sock").unwrap(), Resource::Connect("/d/fs0.sock".into()));
        for bad in ["kvm", "ro:rel/path", "tap:a/b", "tap:0123456789abcdef", "sock:/x", "connect:x.sock", ""] {
            assert!(Resource::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(fd_for(0), "fd:3");
    }

    #[test]
    fn ids_and_users_are_checked() {
        assert!(valid_id("vm-01.a_b") && !valid_id("../x") && !valid_id(".x") && !valid_id("") && !valid_id("a/b"));
        let ok = JailSpec {
            id: "vm1".into(),
            uid: 2_000_000_001,
            gid: 2_000_000_001,
            exec: "/proc/self/exe".into(),
            root: "/tmp/jail".into(),
            memory_mib: 64,
            cpus: 1,
            pids: 64,
            files: 64,
            cgroup_root: "/sys/fs/cgroup".into(),
            resources: vec![],
            args: vec![],
        };
        ok.validate().unwrap();
        for bad in [
            JailSpec { uid: 0, ..ok.clone() },
            JailSpec { gid: 0, ..ok.clone() },
            JailSpec { id: "a/../b".into(), ..ok.clone() },
            JailSpec { exec: "den-vmm".into(), ..ok.clone() },
            JailSpec { root: "jail".into(), ..ok.clone() },
            JailSpec { memory_mib: 1, ..ok.clone() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
