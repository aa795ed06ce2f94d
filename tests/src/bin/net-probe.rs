//! The packet tool of the network isolation tests: they copy it into guests to play root there
//! (hand-made Ethernet frames with any MAC, address and port, as a guest's root can send), and
//! run it on the host side to record what arrives. Linux only; std and libc only, so the same
//! binary runs on the host and in Den's Debian guests.
//!
//! ```text
//! net-probe udp IFACE SRC_MAC DST_MAC SRC_IP SPORT DST_IP DPORT TEXT   one UDP datagram (IPv4 or IPv6)
//! net-probe arp IFACE SRC_MAC SENDER_IP                               a gratuitous ARP reply
//! net-probe send ADDR TEXT                                             one UDP datagram, through the kernel
//! net-probe listen udp|tcp ADDR SECONDS                                prints `<from> <text>` per arrival
//! ```

// A benchmark's setup may panic: a step that cannot be taken ends the run with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let res = match a.as_slice() {
        ["udp", iface, smac, dmac, sip, sport, dip, dport, text] => {
            udp_frame(smac, dmac, sip, sport, dip, dport, text).and_then(|f| send(iface, &f))
        }
        ["arp", iface, smac, sip] => arp_frame(smac, sip).and_then(|f| send(iface, &f)),
        ["send", addr, text] => send_udp(addr, text),
        ["listen", proto, addr, secs] => listen(proto, addr, secs),
        _ => Err("usage: net-probe udp|arp|listen ... (see the source's doc comment)".into()),
    };
    if let Err(e) = res {
        eprintln!("net-probe: {e}");
        std::process::exit(1);
    }
}

/// One datagram through the kernel's own stack.
fn send_udp(addr: &str, text: &str) -> Result<(), String> {
    let to: SocketAddr = num(addr)?;
    let from = if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
    UdpSocket::bind(from)
        .and_then(|s| s.send_to(text.as_bytes(), to))
        .map(drop)
        .map_err(|e| format!("send to {to}: {e}"))
}

fn mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<u8> = s.split(':').filter_map(|p| u8::from_str_radix(p, 16).ok()).collect();
    parts.try_into().map_err(|_| format!("`{s}` is not a MAC"))
}

fn num<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("`{s}` is not a number or address"))
}

/// The Internet checksum of `data`, starting from `sum`.
fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn udp_frame(
    smac: &str,
    dmac: &str,
    sip: &str,
    sport: &str,
    dip: &str,
    dport: &str,
    text: &str,
) -> Result<Vec<u8>, String> {
    let (sport, dport): (u16, u16) = (num(sport)?, num(dport)?);
    let mut udp = Vec::new();
    udp.extend(sport.to_be_bytes());
    udp.extend(dport.to_be_bytes());
    udp.extend((8 + text.len() as u16).to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(text.as_bytes());
    let mut f = Vec::new();
    f.extend(mac(dmac)?);
    f.extend(mac(smac)?);
    match (num::<IpAddr>(sip)?, num::<IpAddr>(dip)?) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend([0x08, 0x00]);
            let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
            ip[2..4].copy_from_slice(&(20 + udp.len() as u16).to_be_bytes());
            ip.extend(s.octets());
            ip.extend(d.octets());
            let sum = checksum(&ip, 0);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            f.extend(ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend([0x86, 0xdd]);
            let len = udp.len() as u16;
            let mut pseudo = Vec::new();
            pseudo.extend(s.octets());
            pseudo.extend(d.octets());
            pseudo.extend(u32::from(len).to_be_bytes());
            pseudo.extend([0, 0, 0, 17]);
            pseudo.extend(&udp);
            let sum = checksum(&pseudo, 0);
            udp[6..8].copy_from_slice(&sum.to_be_bytes());
            f.extend([0x60, 0, 0, 0]);
            f.extend(len.to_be_bytes());
            f.extend([17, 64]);
            f.extend(s.octets());
            f.extend(d.octets());
        }
        _ => return Err("source and destination must both be IPv4 or both IPv6".into()),
    }
    f.extend(udp);
    Ok(f)
}

/// "SENDER_IP is at SRC_MAC", to everyone.
fn arp_frame(smac: &str, sip: &str) -> Result<Vec<u8>, String> {
    let (m, ip) = (mac(smac)?, num::<Ipv4Addr>(sip)?.octets());
    let mut f = vec![0xff; 6];
    f.extend(m);
    f.extend([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    f.extend(m);
    f.extend(ip);
    f.extend([0xff; 6]);
    f.extend(ip);
    Ok(f)
}

/// Sends `frame` as is on `iface` (an AF_PACKET socket: the kernel adds nothing).
fn send(iface: &str, frame: &[u8]) -> Result<(), String> {
    let name = std::ffi::CString::new(iface).map_err(|_| "bad interface name".to_string())?;
    // SAFETY: `name` is a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(format!("no interface {iface}"));
    }
    // SAFETY: plain socket creation; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(format!("AF_PACKET socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: zeroed sockaddr_ll is a valid value; the fields set are plain integers.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_ifindex = index as i32;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: `frame` and `sa` outlive the call; the lengths are theirs.
    let n = unsafe {
        libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    if n < 0 {
        return Err(format!("send on {iface}: {err}"));
    }
    Ok(())
}

/// Prints `<from> <text>` for every datagram or connection (its first 200 bytes) on `addr`
/// until `secs` have passed.
fn listen(proto: &str, addr: &str, secs: &str) -> Result<(), String> {
    let addr: SocketAddr = num(addr)?;
    let end = Instant::now() + Duration::from_secs(num(secs)?);
    let left = || end.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let print = |from: SocketAddr, data: &[u8]| {
        println!("{from} {}", String::from_utf8_lossy(data).trim());
    };
    match proto {
        "udp" => {
            let s = UdpSocket::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
            let mut buf = [0u8; 2048];
            while Instant::now() < end {
                s.set_read_timeout(Some(left())).map_err(|e| e.to_string())?;
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    print(from, &buf[..n]);
                }
            }
        }
        "tcp" => {
            let l = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            while Instant::now() < end {
                match l.accept() {
                    Ok((mut c, from)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 200];
                        let n = c.read(&mut buf).unwrap_or(0);
                        print(from, &buf[..n]);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        _ => return Err(format!("`{proto}`: listen udp or tcp")),
    }
    Ok(())
}
