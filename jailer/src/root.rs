//! Step 3: namespaces and the jail's root.
//!
//! New mount, network, IPC and UTS namespaces (no PID namespace: den-vmm keeps the pid `dend`
//! recorded, which is how a restarted `dend` re-adopts it). In the new mount namespace, a
//! small tmpfs on the spec's root folder holds only `/den-vmm` (a read-only bind of the binary;
//! a dynamically linked build also gets the library folders, read-only); it becomes `/` by
//! `pivot_root` and the host's tree is detached. Where `/` is the initramfs (`rootfs`, which
//! cannot be pivoted away from), the root is moved over `/` and entered with `chroot`, as
//! `switch_root` does; without capabilities den-vmm cannot leave it.

use crate::spec::{JailSpec, VMM_IN_JAIL};
use crate::JailError;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use std::path::Path;

const NONE: Option<&str> = None;

/// Library folders a dynamically linked den-vmm needs (debug builds; releases are static).
const LIB_DIRS: &[&str] = &["/lib", "/lib64", "/usr/lib", "/usr/lib64"];

/// Whether the ELF file at `path` asks for a program interpreter (is dynamically linked).
pub fn is_dynamic(path: &Path) -> Result<bool, JailError> {
    let bytes = std::fs::read(path).map_err(JailError::io(format!("read {}", path.display())))?;
    let num = |at: usize, len: usize| -> Option<u64> {
        let b = bytes.get(at..at + len)?;
        Some(b.iter().rev().fold(0u64, |a, x| (a << 8) | u64::from(*x)))
    };
    if bytes.get(..5) != Some(b"\x7fELF\x02") {
        return Err(JailError::Invalid(format!("--exec {}: not a 64-bit ELF program", path.display())));
    }
    let bad = || JailError::Invalid(format!("--exec {}: malformed ELF header", path.display()));
    let (phoff, phentsize, phnum) =
        (num(0x20, 8).ok_or_else(bad)?, num(0x36, 2).ok_or_else(bad)?, num(0x38, 2).ok_or_else(bad)?);
    for i in 0..phnum {
        let at = usize::try_from(phoff + i * phentsize).map_err(|_| bad())?;
        if num(at, 4).ok_or_else(bad)? == 3 {
            return Ok(true); // PT_INTERP
        }
    }
    Ok(false)
}

fn bind_ro(from: &Path, to: &Path) -> Result<(), JailError> {
    let step = format!("bind {} read-only at {}", from.display(), to.display());
    mount(Some(from), to, NONE, MsFlags::MS_BIND | MsFlags::MS_REC, NONE).map_err(JailError::nix(step.clone()))?;
    let ro = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(NONE, to, NONE, ro, NONE).map_err(JailError::nix(step))
}

/// Makes the jail's root folder if missing (never through a link) and locks it, so that a
/// second den-jailer of the same VM fails at once instead of racing this one.
pub fn lock(root: &Path) -> Result<std::os::fd::OwnedFd, JailError> {
    match std::fs::symlink_metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(JailError::Invalid(format!("--root {}: not a folder", root.display()))),
        Err(_) => std::fs::create_dir(root).map_err(JailError::io(format!("create {}", root.display())))?,
    }
    let flags = nix::fcntl::OFlag::O_RDONLY
        | nix::fcntl::OFlag::O_DIRECTORY
        | nix::fcntl::OFlag::O_NOFOLLOW
        | nix::fcntl::OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open(root, flags, nix::sys::stat::Mode::empty())
        .map_err(JailError::nix(format!("open {}", root.display())))?;
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(JailError::Invalid(format!(
            "{}: another den-jailer is starting this VM ({})",
            root.display(),
            std::io::Error::last_os_error()
        )));
    }
    Ok(fd)
}

/// Enters the namespaces and the jail's root; afterwards the working folder is `/`.
pub fn enter(spec: &JailSpec) -> Result<(), JailError> {
    let dynamic = is_dynamic(&spec.exec)?;
    let root = &spec.root;
    let ns = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
    unshare(ns).map_err(JailError::nix("unshare mount, network, IPC and UTS namespaces"))?;
    // Nothing done here propagates back to the host's mounts.
    mount(NONE, "/", NONE, MsFlags::MS_REC | MsFlags::MS_PRIVATE, NONE).map_err(JailError::nix("make / private"))?;
    let tmpfs = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("tmpfs"), root, Some("tmpfs"), tmpfs, Some("size=64k,nr_inodes=64,mode=0755"))
        .map_err(JailError::nix(format!("mount a tmpfs on {}", root.display())))?;
    let vmm = root.join(VMM_IN_JAIL.trim_start_matches('/'));
    std::fs::write(&vmm, b"").map_err(JailError::io(format!("create {}", vmm.display())))?;
    bind_ro(&spec.exec, &vmm)?;
    if dynamic {
        for dir in LIB_DIRS.iter().map(Path::new).filter(|d| d.is_dir() && !d.is_symlink()) {
            let to = root.join(dir.strip_prefix("/").unwrap_or(dir));
            std::fs::create_dir_all(&to).map_err(JailError::io(format!("create {}", to.display())))?;
            bind_ro(dir, &to)?;
        }
        for link in LIB_DIRS.iter().map(Path::new).filter(|d| d.is_symlink()) {
            if let Ok(target) = std::fs::read_link(link) {
                let to = root.join(link.strip_prefix("/").unwrap_or(link));
                let _ = std::os::unix::fs::symlink(target, to);
            }
        }
    }
    switch_root(root)?;
    let ro = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | tmpfs;
    mount(NONE, "/", NONE, ro, NONE).map_err(JailError::nix("make the jail's root read-only"))?;
    nix::unistd::sethostname("den-vmm").map_err(JailError::nix("set the host name"))
}

fn switch_root(root: &Path) -> Result<(), JailError> {
    let old = root.join("old-root");
    std::fs::create_dir(&old).map_err(JailError::io(format!("create {}", old.display())))?;
    match nix::unistd::pivot_root(root, &old) {
        Ok(()) => {
            nix::unistd::chdir("/").map_err(JailError::nix("chdir /"))?;
            umount2("/old-root", MntFlags::MNT_DETACH).map_err(JailError::nix("detach the host's tree"))?;
            std::fs::remove_dir("/old-root").map_err(JailError::io("remove /old-root"))
        }
        // The initramfs (rootfs) cannot be pivoted away from.
        Err(nix::errno::Errno::EINVAL) => {
            std::fs::remove_dir(&old).map_err(JailError::io(format!("remove {}", old.display())))?;
            nix::unistd::chdir(root).map_err(JailError::nix(format!("chdir {}", root.display())))?;
            mount(Some("."), "/", NONE, MsFlags::MS_MOVE, NONE)
                .map_err(JailError::nix("move the jail's root over /"))?;
            nix::unistd::chroot(".").map_err(JailError::nix("chroot into the jail"))?;
            nix::unistd::chdir("/").map_err(JailError::nix("chdir /"))
        }
        Err(e) => Err(JailError::nix(format!("pivot_root into {}", root.display()))(e)),
    }
}
