//! Den's nftables rules: two tables dend owns completely, `ip den` (NAT, forwards, isolation,
//! what guests may reach on the host) and `bridge den` (each TAP bound to its VM, see
//! [`super::bind`]). Both are rendered from the networks in use and the VMs' NICs and port
//! forwards, and replaced in one atomic `nft -f` transaction, so the rules never drift from the
//! store and nothing stale survives a sync.
//!
//! What a guest may reach on the host: its gateway's DHCP and DNS, answers to connections the
//! host opened, and nothing else (no other port, no other host address, never 127.0.0.0/8).

use super::ipam::Subnet;
use super::spec::Proto;
use std::fmt::Write;
use std::net::Ipv4Addr;

/// The table's name (family `ip`).
pub const TABLE: &str = "den";

/// The NFLOG group audited networks log to ([`crate::apps::audit`] reads it).
pub const AUDIT_GROUP: u16 = 3552;

/// What the audit log prefix starts with: `den-audit <network> allow|deny `.
pub const AUDIT_PREFIX: &str = "den-audit";

/// Destinations an internet-only network may not reach: private, shared, link-local,
/// loopback, multicast and "this network" ranges (the LAN and the host's neighbours).
pub const NOT_INTERNET: &str =
    "{ 0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16, 224.0.0.0/3 }";

/// A network as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleNet {
    /// Bridge device.
    pub bridge: String,
    /// Subnet.
    pub subnet: Subnet,
    /// No NAT, no forwards, no host services but DHCP and DNS.
    pub isolated: bool,
    /// With `isolated`: NAT to public addresses only.
    pub internet: bool,
    /// Log new outbound attempts under this network name.
    pub audit: Option<String>,
}

/// How many packets per second (and in a burst) one audit rule logs: guests choose how many
/// packets they send, and every logged one costs dend a database write.
pub const AUDIT_RATE: &str = "limit rate 50/second burst 100 packets";

impl RuleNet {
    /// The rule `<matches> <action>`, audited as `verdict`: when the network is audited, a rule
    /// before it logs what it matches, at most [`AUDIT_RATE`] (a rate limit on the same rule
    /// would also limit the action).
    fn audited(&self, matches: &str, verdict: &str, action: &str) -> String {
        match &self.audit {
            Some(name) => format!(
                "    {matches} {AUDIT_RATE} log prefix \"{AUDIT_PREFIX} {name} {verdict} \" group {AUDIT_GROUP}\n    {matches} {action}\n"
            ),
            None => format!("    {matches} {action}\n"),
        }
    }
}

/// A host port forwarded to a VM address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleForward {
    /// Protocol.
    pub proto: Proto,
    /// Host port.
    pub host_port: u16,
    /// VM address.
    pub ip: Ipv4Addr,
    /// VM port.
    pub guest_port: u16,
    /// The VM it belongs to (a comment in the rule, for people reading `nft list`).
    pub vm: String,
}

/// The whole `nft -f` script: create-then-delete-then-create makes it one transaction that
/// works whether or not the tables exist. With no networks it only removes the tables.
pub fn render(nets: &[RuleNet], forwards: &[RuleForward], nics: &[super::bind::BoundNic]) -> String {
    let mut s =
        format!("table ip {TABLE}\ndelete table ip {TABLE}\ntable bridge {TABLE}\ndelete table bridge {TABLE}\n");
    if nets.is_empty() {
        return s;
    }
    s.push_str(&render_ip(nets, forwards));
    s.push_str(&super::bind::render(nics));
    s
}

/// The `table ip den { ... }` block.
fn render_ip(nets: &[RuleNet], forwards: &[RuleForward]) -> String {
    let mut s = format!("table ip {TABLE} {{\n");
    // Before conntrack and NAT: nothing from a guest is addressed to or from loopback (the
    // bridges need `route_localnet` for the host's own clients of a forward, see
    // `link::ensure_bridge`, which would otherwise let a guest reach 127.0.0.1 through its
    // gateway, or match a host loopback connection's conntrack entry).
    s.push_str("  chain raw {\n    type filter hook prerouting priority raw; policy accept;\n");
    s.push_str(
        "    iifname \"den-*\" ip daddr 127.0.0.0/8 drop\n    iifname \"den-*\" ip saddr 127.0.0.0/8 drop\n  }\n",
    );
    let dnat: String = forwards
        .iter()
        .map(|f| {
            format!(
                "    fib daddr type local {p} dport {} dnat to {}:{} comment \"vm {}\"\n",
                f.host_port,
                f.ip,
                f.guest_port,
                f.vm,
                p = f.proto.as_str()
            )
        })
        .collect();
    let _ =
        write!(s, "  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n{dnat}  }}\n");
    let _ = write!(s, "  chain output {{\n    type nat hook output priority -100; policy accept;\n{dnat}  }}\n");
    s.push_str("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
    for n in nets.iter().filter(|n| !n.isolated || n.internet) {
        let _ = writeln!(s, "    ip saddr {0} ip daddr != {0} masquerade", n.subnet);
    }
    for n in nets.iter().filter(|n| !n.isolated || n.audit.is_some()) {
        // Host-local clients of a forward (127.0.0.1:PORT) need a source the VM can answer.
        let _ = writeln!(s, "    ip saddr 127.0.0.0/8 oifname \"{}\" masquerade", n.bridge);
    }
    s.push_str("  }\n");
    s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
    s.push_str("    ct state established,related accept\n");
    // Isolated networks first, so that no NAT network's accept rule lets traffic into them.
    for n in nets.iter().filter(|n| n.isolated).chain(nets.iter().filter(|n| !n.isolated)) {
        let b = &n.bridge;
        let _ = writeln!(s, "    iifname \"{b}\" oifname \"{b}\" accept");
        if n.isolated && n.internet {
            s.push_str(&n.audited(&format!("iifname \"{b}\" oifname \"den-*\""), "deny", "drop"));
            s.push_str(&n.audited(&format!("iifname \"{b}\" ip daddr {NOT_INTERNET}"), "deny", "drop"));
            if n.audit.is_some() {
                s.push_str(&n.audited(&format!("iifname \"{b}\" ct state new"), "allow", "accept"));
            }
            let _ = writeln!(s, "    iifname \"{b}\" accept");
            let _ = writeln!(s, "    oifname \"{b}\" ct status dnat accept\n    oifname \"{b}\" drop");
        } else if n.isolated {
            s.push_str(&n.audited(&format!("iifname \"{b}\""), "deny", "drop"));
            if n.audit.is_some() {
                // An app's `ingress` forwards.
                let _ = writeln!(s, "    oifname \"{b}\" ct status dnat accept");
            }
            let _ = writeln!(s, "    oifname \"{b}\" drop");
        } else {
            let _ = writeln!(s, "    iifname \"{b}\" accept");
            let _ = writeln!(s, "    oifname \"{b}\" ct status dnat accept");
            let _ = writeln!(s, "    oifname \"{b}\" drop");
        }
    }
    s.push_str("  }\n");
    // The host itself: DHCP anywhere on the bridge, DNS on the gateway, answers to what the
    // host opened; every other packet from any Den bridge is dropped.
    s.push_str("  chain input {\n    type filter hook input priority filter; policy accept;\n");
    for n in nets {
        let (b, gw) = (&n.bridge, n.subnet.gateway());
        let _ = writeln!(s, "    iifname \"{b}\" ct state established,related accept");
        let _ = writeln!(s, "    iifname \"{b}\" udp dport 67 accept");
        let _ = writeln!(s, "    iifname \"{b}\" ip daddr {gw} meta l4proto {{ tcp, udp }} th dport 53 accept");
        s.push_str(&n.audited(&format!("iifname \"{b}\""), "deny", "drop"));
    }
    s.push_str("    iifname \"den-*\" drop\n  }\n}\n");
    s
}

/// Errors applying rules.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` could not be run.
    #[error("cannot run nft (install the nftables package): {0}")]
    Spawn(std::io::Error),
    /// `nft` refused the rules.
    #[error("nft refused Den's rules: {0}")]
    Refused(String),
}

/// Applies `script` with `nft -f -`.
pub async fn apply(script: &str) -> Result<(), NftError> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await.map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().await.map_err(NftError::Spawn)?;
    if !out.status.success() {
        return Err(NftError::Refused(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets() -> Vec<RuleNet> {
        vec![
            RuleNet {
                bridge: "den-default".into(),
                subnet: Subnet::parse("10.87.0.0/24").unwrap(),
                isolated: false,
                internet: false,
                audit: None,
            },
            RuleNet {
                bridge: "den-lab".into(),
                subnet: Subnet::parse("10.88.0.0/24").unwrap(),
                isolated: true,
                internet: false,
                audit: None,
            },
            RuleNet {
                bridge: "den-a1".into(),
                subnet: Subnet::parse("10.90.1.0/24").unwrap(),
                isolated: true,
                internet: false,
                audit: Some("a1".into()),
            },
            RuleNet {
                bridge: "den-a2".into(),
                subnet: Subnet::parse("10.90.2.0/24").unwrap(),
                isolated: true,
                internet: true,
                audit: Some("a2".into()),
            },
        ]
    }

    #[test]
    fn renders_nat_forwards_and_isolation() {
        let fwd = RuleForward {
            proto: Proto::Tcp,
            host_port: 8080,
            ip: Ipv4Addr::new(10, 87, 0, 2),
            guest_port: 80,
            vm: "web1".into(),
        };
        let s = render(&nets(), &[fwd], &[]);
        assert!(
            s.starts_with(
                "table ip den\ndelete table ip den\ntable bridge den\ndelete table bridge den\ntable ip den {"
            ),
            "{s}"
        );
        assert_eq!(s.matches("tcp dport 8080 dnat to 10.87.0.2:80").count(), 2, "prerouting and output: {s}");
        assert!(s.contains("ip saddr 10.87.0.0/24 ip daddr != 10.87.0.0/24 masquerade"));
        assert!(!s.contains("ip saddr 10.88.0.0/24"), "isolated networks get no NAT: {s}");
        assert!(s.contains("ip saddr 10.90.2.0/24 ip daddr != 10.90.2.0/24 masquerade"), "internet apps do: {s}");
        assert!(s.contains("iifname \"den-a1\" limit rate 50/second burst 100 packets log prefix \"den-audit a1 deny \" group 3552\n    iifname \"den-a1\" drop"), "{s}");
        assert!(
            s.contains("iifname \"den-a2\" oifname \"den-*\" limit rate 50/second burst 100 packets log prefix \"den-audit a2 deny \" group 3552\n    iifname \"den-a2\" oifname \"den-*\" drop"),
            "{s}"
        );
        assert!(
            s.contains("iifname \"den-a2\" ct state new limit rate 50/second burst 100 packets log prefix \"den-audit a2 allow \" group 3552\n    iifname \"den-a2\" ct state new accept"),
            "{s}"
        );
        let private = s.find("iifname \"den-a2\" ip daddr {").unwrap();
        let allow = s.find("iifname \"den-a2\" ct state new").unwrap();
        assert!(private < allow, "private ranges are refused before anything is allowed: {s}");
        assert!(s.contains("iifname \"den-lab\" drop") && s.contains("oifname \"den-default\" ct status dnat accept"));
        assert_eq!(s.matches('{').count(), s.matches('}').count());
        let lab_drop = s.find("iifname \"den-lab\" drop").unwrap();
        let default_out = s.find("    iifname \"den-default\" accept").unwrap();
        assert!(lab_drop < default_out, "isolation before NAT accepts: {s}");
        // The host: loopback never, DNS on the gateway only, DHCP, answers; nothing else.
        assert!(s.contains("type filter hook prerouting priority raw; policy accept;\n    iifname \"den-*\" ip daddr 127.0.0.0/8 drop"), "{s}");
        assert!(s.contains("iifname \"den-default\" ip daddr 10.87.0.1 meta l4proto { tcp, udp } th dport 53 accept\n    iifname \"den-default\" drop"), "{s}");
        assert!(s.contains("    iifname \"den-*\" drop\n  }\n}\n"), "{s}");
        let input = &s[s.find("chain input").unwrap()..];
        assert!(!input.contains("8006") && !input.contains("2222"), "no host port is open by default: {input}");
    }

    /// nft itself accepts the rendered rules (`--check` parses and validates without applying).
    #[test]
    fn nft_accepts_the_rules() {
        let fwd = RuleForward {
            proto: Proto::Udp,
            host_port: 5353,
            ip: Ipv4Addr::new(10, 87, 0, 9),
            guest_port: 53,
            vm: "dns".into(),
        };
        let nic = super::super::bind::BoundNic {
            tap: "dt01234567890".into(),
            mac: "02:de:00:00:00:01".into(),
            ip: Ipv4Addr::new(10, 87, 0, 9),
            vm: "dns".into(),
        };
        let script = render(&nets(), &[fwd], &[nic])
            .replace("delete table ip den\n", "")
            .replace("delete table bridge den\n", "");
        let mut child = std::process::Command::new("nft")
            .args(["--check", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("nft (Debian package nftables)");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}\n{script}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn no_networks_removes_the_table() {
        assert_eq!(
            render(&[], &[], &[]),
            "table ip den\ndelete table ip den\ntable bridge den\ndelete table bridge den\n"
        );
    }
}
