//! Step 1: the VM's files, opened as root before anything is dropped, and placed as
//! descriptors 3, 4, ... for den-vmm. Nothing else crosses the `execve`.

use crate::spec::{Resource, FIRST_FD};
use crate::JailError;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

/// `/dev/kvm`'s device number (misc 10, minor 232).
const KVM_DEV: (u64, u64) = (10, 232);

/// What an opened file must be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A regular file or a block device (a disk, a kernel).
    Data,
    /// The KVM device.
    Kvm,
}

/// Opens `p` without following a link in its last component and without blocking (a FIFO
/// put there does not hang the jailer), and checks what it is.
fn file(p: &std::path::Path, write: bool, kind: Kind) -> Result<OwnedFd, JailError> {
    let step = || format!("open {}", p.display());
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)
        .map_err(|e| JailError::io(step())(e))?;
    let meta = f.metadata().map_err(|e| JailError::io(step())(e))?;
    let t = meta.file_type();
    use std::os::unix::fs::MetadataExt;
    let dev = (nix::sys::stat::major(meta.rdev()), nix::sys::stat::minor(meta.rdev()));
    let fits = match kind {
        Kind::Data => t.is_file() || t.is_block_device(),
        Kind::Kvm => t.is_char_device() && dev == KVM_DEV,
    };
    if !fits {
        let want = if kind == Kind::Kvm { "the KVM device (10:232)" } else { "a regular file or a block device" };
        return Err(JailError::Invalid(format!("{}: not {want}", p.display())));
    }
    // Disks and kernels are read with blocking calls.
    let flags = nix::fcntl::OFlag::from_bits_truncate(
        nix::fcntl::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), nix::fcntl::FcntlArg::F_GETFL)
            .map_err(JailError::nix(step()))?,
    );
    nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&f),
        nix::fcntl::FcntlArg::F_SETFL(flags - nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(JailError::nix(step()))?;
    Ok(f.into())
}

/// Opens one resource.
pub fn open(r: &Resource) -> Result<OwnedFd, JailError> {
    match r {
        Resource::Kvm(p) => file(p, true, Kind::Kvm),
        Resource::ReadOnly(p) => file(p, false, Kind::Data),
        Resource::ReadWrite(p) => file(p, true, Kind::Data),
        Resource::Tap(name) => {
            let options = den_net_util::tap::TapOptions { vnet_hdr: false, nonblocking: true };
            let tap = den_net_util::tap::open(name, options).map_err(JailError::io(format!("TAP interface {name}")))?;
            Ok(tap.into())
        }
        Resource::Listen(p) => {
            let l =
                den_net_util::unix::bind_socket(p, 0o600).map_err(JailError::io(format!("bind {}", p.display())))?;
            Ok(l.into())
        }
        Resource::Connect(p) => {
            let c = std::os::unix::net::UnixStream::connect(p)
                .map_err(JailError::io(format!("connect {}", p.display())))?;
            Ok(c.into())
        }
    }
}

/// Moves `fds` to 3, 4, ... (inherited across `execve`) and closes every other descriptor
/// above 2. The `OwnedFd`s behind `fds` must not be dropped afterwards.
pub fn place(fds: &[RawFd]) -> Result<(), JailError> {
    let end = FIRST_FD + fds.len() as RawFd;
    // First above the target range, so that no move overwrites a descriptor still to be moved.
    let mut high = Vec::with_capacity(fds.len());
    for fd in fds {
        let h = nix::fcntl::fcntl(*fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(end)).map_err(JailError::nix("dup"))?;
        high.push(h);
    }
    for (i, h) in high.iter().enumerate() {
        let target = FIRST_FD + i as RawFd;
        // SAFETY: dup2 onto a number in the target range, which holds nothing that is still
        // needed (every source was copied above it); the new descriptor has no CLOEXEC.
        if unsafe { libc::dup2(*h, target) } != target {
            return Err(JailError::io("place a descriptor")(std::io::Error::last_os_error()));
        }
    }
    // SAFETY: closes descriptors from `end` up, none of which this process uses afterwards
    // (the copies above and whatever the caller inherited).
    if unsafe { libc::syscall(libc::SYS_close_range, end as libc::c_uint, libc::c_uint::MAX, 0) } == 0 {
        return Ok(());
    }
    // Kernels before 5.9 have no close_range: close one by one up to the descriptor limit.
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_err(JailError::nix("read the descriptor limit"))?;
    for fd in end..RawFd::try_from(soft).unwrap_or(RawFd::MAX) {
        // SAFETY: as above; closing a descriptor that is not open fails harmlessly (EBADF).
        unsafe { libc::close(fd) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_data_files_and_the_real_kvm_device_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        std::fs::write(&disk, b"x").unwrap();
        open(&Resource::ReadWrite(disk.clone())).unwrap();
        let link = dir.path().join("link.img");
        std::os::unix::fs::symlink(&disk, &link).unwrap();
        assert!(open(&Resource::ReadOnly(link)).is_err(), "a link is not followed");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = open(&Resource::ReadOnly(fifo)).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "a FIFO is refused without hanging: {e}");
        let e = open(&Resource::Kvm("/dev/null".into())).unwrap_err().to_string();
        assert!(e.contains("not the KVM device"), "{e}");
        assert!(open(&Resource::ReadOnly(dir.path().to_path_buf())).is_err(), "a folder is not a disk");
    }
}
