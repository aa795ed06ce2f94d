//! Address management: IPv4 subnets, the next free address in one, and stable MAC addresses.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;

use den_net_util::MacAddr;

/// An IPv4 subnet (`10.87.0.0/24`). The first host address is the bridge (gateway); VMs get
/// the ones after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// Network address (host bits zero).
    pub network: Ipv4Addr,
    /// Prefix length, 16 to 29.
    pub prefix: u8,
}

impl Subnet {
    /// Parses `a.b.c.d/len`; the host bits must be zero and the length 16 to 29 (room for a
    /// gateway and VMs, and few enough addresses to scan).
    pub fn parse(s: &str) -> Result<Subnet, String> {
        let (ip, len) =
            s.split_once('/').ok_or_else(|| format!("`{s}` is not a subnet: write it like 10.87.0.0/24"))?;
        let network: Ipv4Addr = ip.parse().map_err(|_| format!("`{ip}` is not an IPv4 address"))?;
        let prefix: u8 = len.parse().map_err(|_| format!("`/{len}` is not a prefix length"))?;
        if !(16..=29).contains(&prefix) {
            return Err(format!("/{prefix}: use a prefix length from 16 to 29"));
        }
        let sub = Subnet { network, prefix };
        if u32::from(network) & !sub.mask() != 0 {
            return Err(format!("`{s}` has host bits set; the network address is {}", sub.base()));
        }
        if !network.is_private() {
            return Err(format!("`{s}` is not a private range (10/8, 172.16/12, 192.168/16)"));
        }
        Ok(sub)
    }

    fn mask(self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    fn base(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) & self.mask())
    }

    /// The bridge's address (first host address).
    pub fn gateway(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The last address VMs may use (the one before broadcast).
    fn last_host(self) -> Ipv4Addr {
        Ipv4Addr::from((u32::from(self.network) | !self.mask()) - 1)
    }

    /// Whether `ip` is inside.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(self, other: Subnet) -> bool {
        let m = self.mask().min(other.mask());
        u32::from(self.network) & m == u32::from(other.network) & m
    }

    /// The lowest VM address not in `used`, or `None` when the subnet is full.
    pub fn next_free(self, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        (u32::from(self.gateway()) + 1..=u32::from(self.last_host())).map(Ipv4Addr::from).find(|ip| !used.contains(ip))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A locally administered unicast MAC derived from a VM id and NIC index, so it stays the same
/// for the VM's whole life (guests key their interface configuration on it).
pub fn mac_for(vm_id: &str, index: usize) -> String {
    // `02:de` is unicast: derived() cannot refuse it.
    MacAddr::derived(&[0x02, 0xde], vm_id.bytes().chain([index as u8])).map(|m| m.to_string()).unwrap_or_default()
}

/// Whether `mac` is six hex pairs naming a unicast address.
pub fn valid_mac(mac: &str) -> bool {
    MacAddr::parse(mac).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let s = Subnet::parse("10.87.0.0/24").unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 87, 0, 1));
        assert!(s.contains(Ipv4Addr::new(10, 87, 0, 200)) && !s.contains(Ipv4Addr::new(10, 87, 1, 1)));
        let mut used = HashSet::new();
        assert_eq!(s.next_free(&used), Some(Ipv4Addr::new(10, 87, 0, 2)));
        used.insert(Ipv4Addr::new(10, 87, 0, 2));
        assert_eq!(s.next_free(&used), Some(Ipv4Addr::new(10, 87, 0, 3)));
        let tiny = Subnet::parse("192.168.5.0/29").unwrap();
        let all: HashSet<_> = (2..=6).map(|i| Ipv4Addr::new(192, 168, 5, i)).collect();
        assert_eq!(tiny.next_free(&all), None, ".7 is broadcast");
        assert!(s.overlaps(Subnet::parse("10.87.0.0/16").unwrap()));
        assert!(!s.overlaps(Subnet::parse("10.88.0.0/24").unwrap()));
        for bad in ["10.87.0.1/24", "10.87.0.0", "10.87.0.0/8", "10.87.0.0/30", "8.8.8.0/24", "x/24"] {
            assert!(Subnet::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(s.to_string(), "10.87.0.0/24");
    }

    #[test]
    fn macs() {
        let a = mac_for("0123abcd", 0);
        assert_eq!(a, mac_for("0123abcd", 0), "stable");
        assert_ne!(a, mac_for("0123abcd", 1));
        assert!(valid_mac(&a) && a.starts_with("02:de:"));
        assert!(!valid_mac("01:00:5e:00:00:01"), "multicast");
        assert!(!valid_mac("52:54:00:12:34") && !valid_mac("52:54:00:12:34:zz"));
    }
}
