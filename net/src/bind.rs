//! Binds every TAP to its VM, in the `bridge den` nftables table: a frame a guest sends enters
//! its bridge only with the VM's own MAC, and as ARP for the VM's own address (or a probe for
//! it) or IPv4 from it. So a guest cannot take another VM's address (or a port forward meant
//! for it), poison the host's or a neighbour's ARP cache, answer DHCP or send anything to a
//! DHCP client's port, ask DHCP about another VM's MAC, or speak IPv6 at all (router
//! advertisements, link-local to the host or to other VMs): Den's networks are IPv4 only. A
//! TAP the rules do not name (`dt*` without a VM) passes nothing. This is what Proxmox's
//! `macfilter`/`ipfilter` and Incus' `security.mac_filtering`/`ipv4_filtering` do.
//!
//! Frames to the link-local group addresses (01:80:c2:00:00:0X) are handled by the bridge
//! before this hook: the bridge learns nothing from them (`link::ensure_bridge`), and what
//! they carry to the host is dropped by the `ip den` raw chain and the `arp den` table.
//!
//! The rules hook the bridge's prerouting, so they see every frame from a TAP, whether it is
//! for the host, another VM or the uplink, before anything else does.

use std::fmt::Write;
use std::net::Ipv4Addr;

/// A VM NIC as the binding sees it (from the store: MAC and address are validated there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundNic {
    /// TAP device (`dt` + hex, see [`den_core::net::tap_name`]).
    pub tap: String,
    /// The VM's MAC for this NIC.
    pub mac: String,
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
    /// The VM, for people reading `nft list`.
    pub vm: String,
}

/// The `table bridge den { ... }` block for `nics`. The caller removes the previous table in
/// the same transaction ([`super::nft::render`]).
pub fn render(nics: &[BoundNic]) -> String {
    let mut s = String::from("table bridge den {\n");
    s.push_str("  chain prerouting {\n    type filter hook prerouting priority -200; policy accept;\n");
    for n in nics {
        let _ = writeln!(s, "    iifname \"{}\" jump {} comment \"vm {}\"", n.tap, chain(&n.tap), n.vm);
    }
    s.push_str("    iifname \"dt*\" drop\n  }\n");
    for n in nics {
        let (c, mac, ip) = (chain(&n.tap), n.mac.to_ascii_lowercase(), n.ip);
        let arp = format!("arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp saddr ether {mac}");
        let _ = write!(
            s,
            "  chain {c} {{\n    ether saddr != {mac} drop\n    \
             {arp} arp saddr ip {ip} accept\n    \
             {arp} arp saddr ip 0.0.0.0 arp daddr ip {ip} accept\n    \
             udp dport 67 ip frag-off & 0x2000 != 0 drop\n    \
             udp dport 67 meta length > 1500 drop\n    \
             udp dport 67 @th,{CHADDR_BITS},48 != 0x{hex} drop\n    \
             udp sport 67 drop\n    \
             udp dport 68 drop\n    \
             ip saddr {ip} accept\n    \
             ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept\n    \
             drop\n  }}\n",
            hex = mac.replace(':', "")
        );
    }
    s.push_str("}\n");
    s
}

/// Where a DHCP message's client hardware address starts, in bits from the UDP header: 8
/// bytes of UDP, then 28 of BOOTP before `chaddr`. A VM asks DHCP only for its own MAC, so it
/// cannot decline or release another VM's address. A message in fragments (whose later parts
/// no rule can read) or in one oversized segmentation-offload packet is dropped first.
const CHADDR_BITS: u32 = (8 + 28) * 8;

/// The chain of one TAP.
fn chain(tap: &str) -> String {
    format!("nic_{tap}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tap_passes_only_its_own_mac_and_address() {
        let nic = BoundNic {
            tap: "dt01234567890".into(),
            mac: "02:DE:00:00:00:01".into(),
            ip: Ipv4Addr::new(10, 87, 0, 2),
            vm: "a".into(),
        };
        let s = render(&[nic]);
        assert!(s.contains("iifname \"dt01234567890\" jump nic_dt01234567890"), "{s}");
        assert!(s.contains("ether saddr != 02:de:00:00:00:01 drop"), "{s}");
        assert!(s.contains("arp saddr ether 02:de:00:00:00:01 arp saddr ip 10.87.0.2 accept"), "{s}");
        assert!(
            s.contains("arp saddr ip 0.0.0.0 arp daddr ip 10.87.0.2 accept"),
            "probes only for its own address: {s}"
        );
        assert!(s.contains("udp dport 67 @th,288,48 != 0x02de00000001 drop"), "DHCP only for its own MAC: {s}");
        let fragments = s.find("udp dport 67 ip frag-off & 0x2000 != 0 drop").unwrap();
        assert!(fragments < s.find("@th,288,48").unwrap(), "no DHCP in fragments past the check: {s}");
        assert!(s.contains("udp dport 68 drop"), "nothing to DHCP clients, from any port: {s}");
        let server = s.find("udp sport 67 drop").unwrap();
        let own = s.find("ip saddr 10.87.0.2 accept").unwrap();
        assert!(server < own, "a DHCP answer is dropped before the VM's own address passes: {s}");
        assert!(s.ends_with("    drop\n  }\n}\n"), "anything else (IPv6, VLANs) is dropped: {s}");
        let unknown = s.find("iifname \"dt*\" drop").unwrap();
        assert!(s.find("jump").unwrap() < unknown, "known TAPs first: {s}");
    }
}
