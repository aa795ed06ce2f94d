//! Caps on open connections to a network port (HTTPS, SSH): so many at once in all, and fewer
//! from any one address, so one LAN peer cannot exhaust dend's file descriptors or memory. A
//! connection over a cap is closed at once. IPv6 peers count by their /64 ([`source_key`]):
//! one host commonly holds a whole /64 and can pick any address in it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// What a peer's address counts as for caps and login limits: an IPv4 address (also when
/// mapped into IPv6) itself, an IPv6 address its /64.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// The caps of one port and what is open now.
pub struct ConnLimits {
    total: usize,
    per_addr: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection; dropping it frees its place.
pub struct ConnPermit {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl ConnLimits {
    /// Caps of `total` connections, `per_addr` from one address.
    pub fn new(total: usize, per_addr: usize) -> Arc<ConnLimits> {
        Arc::new(ConnLimits { total, per_addr, open: Mutex::default() })
    }

    /// A place for a connection from `ip`, or `None` when a cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnPermit> {
        let ip = source_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per) = &mut *open;
        let mine = per.entry(ip).or_default();
        if *total >= self.total || *mine >= self.per_addr {
            if *mine == 0 {
                per.remove(&ip);
            }
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(ConnPermit { limits: self.clone(), ip })
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(n) = per.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_all() {
        let l = ConnLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit(a).unwrap();
        assert!(l.admit(a).is_none(), "per address");
        let _b1 = l.admit(b).unwrap();
        assert!(l.admit(b).is_none(), "in all");
        drop(a1);
        assert!(l.admit(b).is_some(), "a closed connection frees its place");
        let l = ConnLimits::new(10, 2);
        let _x = l.admit("2001:db8::1".parse().unwrap()).unwrap();
        let _y = l.admit("2001:db8::ffff:2".parse().unwrap()).unwrap();
        assert!(l.admit("2001:db8::3:3".parse().unwrap()).is_none(), "one /64 is one peer");
        assert!(l.admit("2001:db8:0:1::1".parse().unwrap()).is_some(), "another /64 is another");
        assert_eq!(source_key("::ffff:10.0.0.1".parse().unwrap()), a);
    }
}
