//! Guest network settings from the kernel command line (`den.ip=10.0.2.15/24 den.gw=10.0.2.2`):
//! the first Ethernet interface gets the address, comes up, and gets the default route.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

fn sock() -> std::io::Result<OwnedFd> {
    Ok(nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux; this is how the ioctls take it.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ifreq(name: &str) -> std::io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "interface name too long"));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

fn ioctl<T>(fd: &OwnedFd, req: libc::c_ulong, arg: &T) -> std::io::Result<()> {
    // SAFETY: the caller passes the structure the request expects.
    if unsafe { libc::ioctl(fd.as_raw_fd(), req, arg as *const T) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Brings an interface up (SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP).
pub(crate) fn link_up(ifname: &str) -> std::io::Result<()> {
    let fd = sock()?;
    let mut req = ifreq(ifname)?;
    // SAFETY: SIOCGIFFLAGS fills the flags of a valid ifreq.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the flags member is the one SIOCGIFFLAGS just set.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    ioctl(&fd, libc::SIOCSIFFLAGS, &req)
}

/// Parses `a.b.c.d/len` into address and netmask.
pub(crate) fn parse_cidr(s: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let (ip, len) = s.split_once('/').unwrap_or((s, "24"));
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u32 = len.parse().ok().filter(|l| *l <= 32)?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((ip, Ipv4Addr::from(mask)))
}

/// The first non-loopback interface, waiting up to `wait` for the driver to create it.
pub(crate) fn first_ethernet(wait: Duration) -> Option<String> {
    let start = Instant::now();
    loop {
        let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "lo")
            .collect();
        names.sort();
        if let Some(n) = names.into_iter().next() {
            return Some(n);
        }
        if start.elapsed() > wait {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Gives `ifname` the address `cidr`, brings it up, and adds the default route via `gw`.
pub(crate) fn configure(ifname: &str, cidr: &str, gw: Option<&str>) -> Result<(), String> {
    let (ip, mask) = parse_cidr(cidr).ok_or_else(|| format!("den.ip=`{cidr}` is not an IPv4 address/prefix"))?;
    let fd = sock().map_err(|e| e.to_string())?;
    let mut req = ifreq(ifname).map_err(|e| e.to_string())?;
    req.ifr_ifru.ifru_addr = sockaddr(ip);
    ioctl(&fd, libc::SIOCSIFADDR, &req).map_err(|e| format!("{ifname}: set address {ip}: {e}"))?;
    req.ifr_ifru.ifru_netmask = sockaddr(mask);
    ioctl(&fd, libc::SIOCSIFNETMASK, &req).map_err(|e| format!("{ifname}: set netmask {mask}: {e}"))?;
    link_up(ifname).map_err(|e| format!("{ifname}: up: {e}"))?;
    if let Some(gw) = gw {
        let gw: Ipv4Addr = gw.parse().map_err(|_| format!("den.gw=`{gw}` is not an IPv4 address"))?;
        // SAFETY: rtentry is plain old data.
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_gateway = sockaddr(gw);
        rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
        ioctl(&fd, libc::SIOCADDRT, &rt).map_err(|e| format!("default route via {gw}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.0.2.15/24"), Some(("10.0.2.15".parse().unwrap(), "255.255.255.0".parse().unwrap())));
        assert_eq!(parse_cidr("10.1.0.1/16").map(|c| c.1), Some("255.255.0.0".parse().unwrap()));
        assert_eq!(parse_cidr("10.0.0.1").map(|c| c.1), Some("255.255.255.0".parse().unwrap()));
        assert_eq!(parse_cidr("10.0.0.1/33"), None);
        assert_eq!(parse_cidr("nope/24"), None);
    }
}
