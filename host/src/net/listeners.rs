//! Which host ports programs listen on, read from `/proc/net/{tcp,tcp6,udp,udp6}` (this
//! network namespace's sockets) without binding anything, so asking never gets in a
//! program's way.

use super::spec::Proto;
use std::collections::HashSet;

/// The ports of `proto` that a socket of this host listens on (TCP) or is bound to (UDP).
pub fn ports(proto: Proto) -> HashSet<u16> {
    let (files, state) = match proto {
        Proto::Tcp => (["/proc/net/tcp", "/proc/net/tcp6"], "0A"),
        Proto::Udp => (["/proc/net/udp", "/proc/net/udp6"], "07"),
    };
    files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).flat_map(|t| parse(&t, state)).collect()
}

/// The local ports of the table's sockets in `state` (`0A` listening, `07` bound UDP).
fn parse(table: &str, state: &str) -> Vec<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let local = cols.nth(1)?;
            let st = cols.nth(1)?;
            let port = local.rsplit_once(':')?.1;
            (st == state).then(|| u16::from_str_radix(port, 16).ok()).flatten()
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
        assert!(ports(Proto::Udp).contains(&u.local_addr().unwrap().port()));
    }
}
