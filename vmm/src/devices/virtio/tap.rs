//! TAP devices: layer-2 frames to and from the host's network stack (a bridge, usually).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};

/// Frames in and out of a network backend, one frame per call; non-blocking.
pub trait Frames: Send + AsRawFd {
    /// Reads one frame into `buf`; `WouldBlock` when none is waiting.
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;
    /// Sends one frame.
    fn send(&mut self, frame: &[u8]) -> std::io::Result<usize>;
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open TAP interface.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Opens (creating if needed, which takes CAP_NET_ADMIN) the TAP interface `name`.
    pub fn open(name: &str) -> std::io::Result<Tap> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('/') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("`{name}` is not an interface name (1 to 15 bytes, no `/`)"),
            ));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")?;
        let mut req = IfReq { name: [0; libc::IFNAMSIZ], flags: IFF_TAP | IFF_NO_PI, _pad: [0; 22] };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes an ifreq, which `req` is laid out as (40 bytes).
        if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Tap { file, name: name.into() })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

use std::os::unix::fs::OpenOptionsExt;

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl Frames for Tap {
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }

    fn send(&mut self, frame: &[u8]) -> std::io::Result<usize> {
        self.file.write(frame)
    }
}

impl Frames for std::os::unix::net::UnixDatagram {
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::os::unix::net::UnixDatagram::recv(self, buf)
    }

    fn send(&mut self, frame: &[u8]) -> std::io::Result<usize> {
        std::os::unix::net::UnixDatagram::send(self, frame)
    }
}

/// Parses a MAC address like `52:54:00:12:34:56`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("MAC `{s}`: expected six hex bytes like 52:54:00:12:34:56"));
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).map_err(|_| format!("MAC `{s}`: `{p}` is not a hex byte"))?;
    }
    if mac[0] & 1 == 1 {
        return Err(format!("MAC `{s}` is a multicast address"));
    }
    Ok(mac)
}

/// A stable, locally administered MAC for an interface name (when none is given).
pub fn mac_for(name: &str) -> [u8; 6] {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let [a, b, c, ..] = h.to_le_bytes();
    [0x52, 0x54, 0x00, a, b, c]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(parse_mac("52:54:00:0a:0b:ff").unwrap(), [0x52, 0x54, 0, 10, 11, 255]);
        assert!(parse_mac("52:54:00:0a:0b").is_err());
        assert!(parse_mac("52:54:00:0a:0b:zz").is_err());
        assert!(parse_mac("01:00:5e:00:00:01").unwrap_err().contains("multicast"));
        assert_eq!(mac_for("tap0"), mac_for("tap0"));
        assert_ne!(mac_for("tap0"), mac_for("tap1"));
        assert!(Tap::open("a/b").is_err() && Tap::open("").is_err() && Tap::open("0123456789abcdef").is_err());
    }
}
