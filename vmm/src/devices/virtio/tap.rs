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

/// An open TAP interface.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Opens (creating if needed, which takes CAP_NET_ADMIN) the TAP interface `name`, or takes
    /// a TAP descriptor handed over as `fd:N` ([`crate::files`]); non-blocking either way.
    pub fn open(name: &str) -> std::io::Result<Tap> {
        let Some(fd) = crate::files::fd_number(std::path::Path::new(name)) else {
            let options = den_net_util::tap::TapOptions { vnet_hdr: false, nonblocking: true };
            return Ok(Tap { file: den_net_util::tap::open(name, options)?, name: name.into() });
        };
        let file = File::from(crate::files::claim(fd)?);
        let flags = nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
        Ok(Tap { file, name: name.into() })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

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

/// Parses a MAC address like `52:54:00:12:34:56` (unicast only).
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    den_net_util::MacAddr::parse(s).map(den_net_util::MacAddr::bytes).map_err(|e| e.to_string())
}

/// A stable, locally administered MAC for an interface name (when none is given).
pub fn mac_for(name: &str) -> [u8; 6] {
    let [a, b, c, ..] = den_net_util::fnv1a(name.bytes()).to_le_bytes();
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
