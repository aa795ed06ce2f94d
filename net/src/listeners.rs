//! Which host ports programs listen on, read from `/proc/net/{tcp,tcp6,udp,udp6}` (this
//! network namespace's sockets) without binding anything, so asking never gets in a
//! program's way.

use den_core::net::Proto;
use std::collections::HashSet;

/// The ports of `proto` that a socket of this host listens on: TCP sockets listening, UDP
/// sockets bound and unconnected outside the kernel's range for clients' ports (which every
/// unconnected client socket also has).
pub fn ports(proto: Proto) -> HashSet<u16> {
    let (files, state) = match proto {
        Proto::Tcp => (["/proc/net/tcp", "/proc/net/tcp6"], "0A"),
        Proto::Udp => (["/proc/net/udp", "/proc/net/udp6"], "07"),
    };
    let clients = match proto {
        Proto::Tcp => 0..=0,
        Proto::Udp => client_ports(),
    };
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| parse(&t, state))
        .filter(|p| !clients.contains(p))
        .collect()
}

/// The kernel's range for clients' ports (`ip_local_port_range`).
fn client_ports() -> std::ops::RangeInclusive<u16> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text.split_whitespace().filter_map(|p| p.parse().ok());
    match (it.next(), it.next()) {
        (Some(lo), Some(hi)) => lo..=hi,
        _ => 32768..=60999,
    }
}

/// The local ports of the table's sockets in `state` (`0A` listening, `07` bound UDP) with no
/// remote end.
fn parse(table: &str, state: &str) -> Vec<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let local = cols.nth(1)?;
            let remote = cols.next()?;
            let st = cols.next()?;
            let unconnected = remote.rsplit_once(':')?.1 == "0000";
            let port = local.rsplit_once(':')?.1;
            (st == state && unconnected).then(|| u16::from_str_radix(port, 16).ok()).flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kernels_tables() {
        let tcp =
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
                   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n   \
                   1: 0100007F:1F91 0100007F:8000 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n";
        assert_eq!(parse(tcp, "0A"), vec![8080], "listening only, not connected");
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(ports(Proto::Tcp).contains(&l.local_addr().unwrap().port()));
        let u = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let port = u.local_addr().unwrap().port();
        assert_eq!(
            ports(Proto::Udp).contains(&port),
            !client_ports().contains(&port),
            "a client's port is no listener"
        );
        let server = (20000..20100).find_map(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).ok()).unwrap();
        assert!(ports(Proto::Udp).contains(&server.local_addr().unwrap().port()), "a UDP server's port is");
    }
}
