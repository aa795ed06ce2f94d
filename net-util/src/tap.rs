//! Opening TAP interfaces by name through `/dev/net/tun` (`TUNSETIFF`), the one place Den does it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;

/// `struct ifreq` as TUNSETIFF reads it: the name, the flags, padding to 40 bytes.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// How to open a TAP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapOptions {
    /// Frames carry a `virtio_net_hdr` in front (offloads).
    pub vnet_hdr: bool,
    /// Non-blocking reads and writes.
    pub nonblocking: bool,
}

/// Whether `name` can name an interface: 1 to 15 bytes, no `/`, no NUL.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty() && name.len() < libc::IFNAMSIZ && !name.contains(['/', '\0'])
}

/// Opens (creating if needed, which takes CAP_NET_ADMIN) the TAP interface `name`, without
/// packet information headers. The interface lives while the file is open, or until deleted when
/// [`persist`] was called.
pub fn open(name: &str, options: TapOptions) -> std::io::Result<File> {
    if !valid_ifname(name) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("`{name}` is not an interface name (1 to 15 bytes, no `/`)"),
        ));
    }
    let mut flags = libc::O_CLOEXEC;
    if options.nonblocking {
        flags |= libc::O_NONBLOCK;
    }
    let file = std::fs::OpenOptions::new().read(true).write(true).custom_flags(flags).open("/dev/net/tun")?;
    let mut tap_flags = IFF_TAP | IFF_NO_PI;
    if options.vnet_hdr {
        tap_flags |= IFF_VNET_HDR;
    }
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], flags: tap_flags, _pad: [0; 22] };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes an ifreq, which `req` is laid out as (40 bytes), on a
    // file descriptor this function owns.
    if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// Keeps the TAP opened as `tap` after its file is closed, so another process (a VM's engine)
/// can open it by name later.
pub fn persist(tap: &File) -> std::io::Result<()> {
    // SAFETY: TUNSETPERSIST takes an integer flag by value.
    if unsafe { libc::ioctl(tap.as_raw_fd(), TUNSETPERSIST as _, 1 as libc::c_ulong) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_ioctl() {
        for bad in ["", "a/b", "0123456789abcdef", "a\0b"] {
            assert!(!valid_ifname(bad), "{bad:?}");
            let e = open(bad, TapOptions::default()).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{bad:?}");
        }
        assert!(valid_ifname("dt0123456789abc"));
    }
}
