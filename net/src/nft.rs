//! Den's nftables rules: tables dend owns completely, `ip den` (NAT, forwards, isolation, what
//! guests may reach on the host), `bridge den` (each TAP bound to its VM, see [`super::bind`])
//! and `arp den`. All are rendered from the networks in use and the VMs' NICs and port
//! forwards, and replaced in one atomic `nft -f` transaction, so the rules never drift from the
//! store and nothing stale survives a sync.
//!
//! Between networks: a VM reaches the VMs of its own network, and another network's only
//! through that network's port forwards (never into an isolated network, never from one).
//!
//! What a guest may reach on the host: its gateway's DHCP and DNS, answers to connections the
//! host opened, and nothing else (no other port, no other host address, never 127.0.0.0/8).

use den_core::net::ipam::Subnet;
use den_core::net::Proto;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::Ipv4Addr;

/// The tables' name (in each of [`FAMILIES`]).
pub const TABLE: &str = "den";

/// The families Den has a table in: `ip` (NAT, forwards, isolation, the host), `bridge` (TAPs
/// bound to their VMs), `arp` (no ARP from a TAP straight to the host), `ip6` (no IPv6 from a
/// bridge or a TAP, whatever the IPv6 sysctls become).
pub const FAMILIES: [&str; 4] = ["ip", "bridge", "arp", "ip6"];

/// The NFLOG group audited networks log to (the LPK host's traffic audit reads it).
pub const AUDIT_GROUP: u16 = 3552;

/// What the audit log prefix starts with: `den-audit <network> allow|deny `.
pub const AUDIT_PREFIX: &str = "den-audit";

/// Destinations an internet-only network may not reach: private, shared, link-local,
/// loopback, multicast and "this network" ranges (the LAN and the host's neighbours).
pub const NOT_INTERNET: &str =
    "{ 0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16, 224.0.0.0/3 }";

/// Cloud metadata services no guest reaches: link-local (AWS, GCP, OpenStack...), Azure's
/// WireServer, Alibaba Cloud's.
pub const METADATA: &str = "{ 169.254.0.0/16, 168.63.129.16, 100.100.100.200 }";

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
    /// Host ports an admin opened to this network's VMs (on its gateway).
    pub host_ports: Vec<den_core::net::HostPort>,
}

/// How many packets per second (and in a burst) one audited network logs, of its allowed and
/// of its denied attempts each (so a flood of denied packets cannot hide an allowed
/// connection): guests choose how many packets they send, and every logged one costs dend a
/// database write. What goes over is counted instead ([`UNLOGGED`]).
pub const AUDIT_RATE: &str = "rate over 50/second burst 100 packets";

/// The name prefix of an audited network's counters of packets not logged (over
/// [`AUDIT_RATE`]): `unlogged_allow_<network>` and `unlogged_deny_<network>`.
pub const UNLOGGED: &str = "unlogged_";

/// The verdicts an audit rule logs under, as in its log prefix.
const VERDICTS: [&str; 2] = ["allow", "deny"];

impl RuleNet {
    /// The rule `<matches> <action>`, audited as `verdict`: when the network is audited, what
    /// it matches is logged first, at most [`AUDIT_RATE`] for the network; what goes over is
    /// counted and not logged. (A rate limit on the action's own rule would limit the action.)
    fn audited(&self, matches: &str, verdict: &str, action: &str) -> String {
        match &self.audit {
            Some(name) => format!(
                "    {matches} limit name \"audit_{verdict}_{name}\" counter name \"{UNLOGGED}{verdict}_{name}\" {action}\n    \
                 {matches} log prefix \"{AUDIT_PREFIX} {name} {verdict} \" group {AUDIT_GROUP}\n    {matches} {action}\n"
            ),
            None => format!("    {matches} {action}\n"),
        }
    }

    /// The network's rate limits and its counters of what went over, starting from the
    /// values in `unlogged` (so a sync, which replaces the table, keeps the counts).
    fn audit_objects(&self, unlogged: &BTreeMap<String, u64>) -> String {
        let Some(name) = &self.audit else { return String::new() };
        let mut s = String::new();
        for verdict in VERDICTS {
            let counter = format!("{UNLOGGED}{verdict}_{name}");
            let count = unlogged.get(&counter).copied().unwrap_or(0);
            let _ = write!(
                s,
                "  limit audit_{verdict}_{name} {{ {AUDIT_RATE} }}\n  counter {counter} {{ packets {count} bytes 0 }}\n"
            );
        }
        s
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
    /// Also the host's own connections (the output chain).
    pub local: bool,
}

/// The whole `nft -f` script: create-then-delete-then-create makes it one transaction that
/// works whether or not the tables exist. With no networks it only removes the tables.
/// `unlogged` are the audit counters' values now ([`unlogged`]), kept across the replacement.
pub fn render(
    nets: &[RuleNet],
    forwards: &[RuleForward],
    nics: &[super::bind::BoundNic],
    unlogged: &BTreeMap<String, u64>,
) -> String {
    let mut s = String::new();
    for family in FAMILIES {
        let _ = write!(s, "table {family} {TABLE}\ndelete table {family} {TABLE}\n");
    }
    if nets.is_empty() {
        return s;
    }
    s.push_str(&render_ip(nets, forwards, unlogged));
    s.push_str(&super::bind::render(nics));
    // ARP a TAP's port hands to the host itself (see the raw chain) is neither answered nor
    // learnt from; IPv6 from a bridge or a TAP goes nowhere.
    let _ = write!(
        s,
        "table arp {TABLE} {{\n  chain input {{\n    type filter hook input priority filter; policy accept;\n    iifname \"dt*\" drop\n  }}\n}}\n\
         table ip6 {TABLE} {{\n  chain raw {{\n    type filter hook prerouting priority raw; policy accept;\n    iifname \"dt*\" drop\n    iifname \"den-*\" drop\n  }}\n}}\n"
    );
    s
}

/// The `table ip den { ... }` block.
fn render_ip(nets: &[RuleNet], forwards: &[RuleForward], unlogged: &BTreeMap<String, u64>) -> String {
    let mut s = format!("table ip {TABLE} {{\n");
    for n in nets {
        s.push_str(&n.audit_objects(unlogged));
    }
    // Before conntrack and NAT: nothing from a guest is addressed to or from loopback (the
    // bridges need `route_localnet` for the host's own clients of a forward, see
    // `link::ensure_bridge`, which would otherwise let a guest reach 127.0.0.1 through its
    // gateway, or match a host loopback connection's conntrack entry).
    s.push_str("  chain raw {\n    type filter hook prerouting priority raw; policy accept;\n");
    s.push_str("    iifname \"den-*\" ip daddr 127.0.0.0/8 drop\n    iifname \"den-*\" ip saddr 127.0.0.0/8 drop\n");
    // IPv4 only ever arrives through a bridge: a frame a TAP's port hands to the host itself
    // (link-local group addresses, 01:80:c2:00:00:0X, which the bridge's own hooks never see)
    // goes no further.
    s.push_str("    iifname \"dt*\" drop\n  }\n");
    let dnat = |f: &RuleForward| {
        format!(
            "    fib daddr type local {p} dport {} dnat to {}:{} comment \"vm {}\"\n",
            f.host_port,
            f.ip,
            f.guest_port,
            f.vm,
            p = f.proto.as_str()
        )
    };
    // Connections arriving from elsewhere; the host's own only for `local` forwards.
    let outside: String = forwards.iter().map(dnat).collect();
    let local: String = forwards.iter().filter(|f| f.local).map(dnat).collect();
    let _ = write!(
        s,
        "  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n{outside}  }}\n"
    );
    let _ = write!(s, "  chain output {{\n    type nat hook output priority -100; policy accept;\n{local}  }}\n");
    s.push_str("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
    for n in nets.iter().filter(|n| !n.isolated || n.internet) {
        let _ = writeln!(s, "    ip saddr {0} ip daddr != {0} masquerade", n.subnet);
    }
    for n in nets.iter().filter(|n| !n.isolated) {
        // A VM reaching a forward to its own network (through a host address): the answer
        // must come back through the host, not straight across the bridge.
        let _ = writeln!(s, "    ip saddr {0} ip daddr {0} ct status dnat masquerade", n.subnet);
    }
    for n in nets.iter().filter(|n| !n.isolated || n.audit.is_some()) {
        // Host-local clients of a forward (127.0.0.1:PORT) need a source the VM can answer.
        let _ = writeln!(s, "    ip saddr 127.0.0.0/8 oifname \"{}\" masquerade", n.bridge);
    }
    s.push_str("  }\n");
    s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
    // Answers, at once; anything else a guest sends is decided below even within a connection
    // (one opened while Den's rules were away does not outlive their return).
    s.push_str("    ct state established ct direction reply accept\n");
    // Never a cloud's metadata services from a guest.
    let _ = writeln!(s, "    iifname \"den-*\" ip daddr {METADATA} drop");
    for n in nets {
        let _ = writeln!(s, "    iifname \"{0}\" oifname \"{0}\" accept", n.bridge);
    }
    // What an isolated network's VMs may not reach, decided before anything else accepts
    // (a port forward's DNAT included: one app's VMs do not reach another's ingress).
    for n in nets.iter().filter(|n| n.isolated) {
        let b = &n.bridge;
        if n.internet {
            s.push_str(&n.audited(&format!("iifname \"{b}\" oifname \"den-*\""), "deny", "drop"));
            s.push_str(&n.audited(&format!("iifname \"{b}\" ip daddr {NOT_INTERNET}"), "deny", "drop"));
        } else {
            s.push_str(&n.audited(&format!("iifname \"{b}\""), "deny", "drop"));
        }
    }
    // ICMP errors about connections (path MTU, unreachable), from anywhere not refused above.
    s.push_str("    ct state related accept\n");
    // Into a network from elsewhere (another network, the LAN): only through its forwards,
    // where forwards may lead (NAT networks, apps' ingress).
    for n in nets {
        let b = &n.bridge;
        if !n.isolated || n.internet || n.audit.is_some() {
            let _ = writeln!(s, "    oifname \"{b}\" ct status dnat accept");
        }
        let _ = writeln!(s, "    oifname \"{b}\" drop");
    }
    // Out to the uplink: NAT networks, and isolated ones with `internet` (audited apps).
    for n in nets.iter().filter(|n| !n.isolated || n.internet) {
        let b = &n.bridge;
        if n.isolated && n.audit.is_some() {
            s.push_str(&n.audited(&format!("iifname \"{b}\" ct state new"), "allow", "accept"));
        }
        let _ = writeln!(s, "    iifname \"{b}\" accept");
    }
    s.push_str("  }\n");
    // The host itself: DHCP anywhere on the bridge, DNS on the gateway, answers to what the
    // host opened; every other packet from any Den bridge is dropped. The gateways' addresses
    // are not for anyone else (the LAN, other networks) either.
    s.push_str("  chain input {\n    type filter hook input priority filter; policy accept;\n");
    for n in nets {
        let (b, gw) = (&n.bridge, n.subnet.gateway());
        let _ = writeln!(s, "    iifname \"{b}\" ct state established,related ct direction reply accept");
        let _ = writeln!(s, "    iifname \"{b}\" ip daddr {{ {gw}, 255.255.255.255 }} udp dport 67 accept");
        let _ = writeln!(s, "    iifname \"{b}\" ip daddr {gw} meta l4proto {{ tcp, udp }} th dport 53 accept");
        for p in &n.host_ports {
            let _ = writeln!(s, "    iifname \"{b}\" ip daddr {gw} {} dport {} accept", p.proto.as_str(), p.port);
        }
        s.push_str(&n.audited(&format!("iifname \"{b}\""), "deny", "drop"));
    }
    s.push_str("    iifname \"den-*\" drop\n");
    for n in nets {
        let _ = writeln!(s, "    iifname != {{ \"lo\", \"{}\" }} ip daddr {} drop", n.bridge, n.subnet.gateway());
    }
    s.push_str("  }\n}\n");
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

/// The audit's counters of packets not logged (over [`AUDIT_RATE`]) since their network's
/// rules were made, by counter name; empty without Den's table or when `nft` does not answer
/// within 10 s. [`unlogged_of`] adds up one network's.
pub async fn unlogged() -> BTreeMap<String, u64> {
    read(&["-j", "list", "counters", "table", "ip", TABLE]).await.map(|out| counters(&out)).unwrap_or_default()
}

/// Whether any of Den's tables ([`FAMILIES`]) is missing; `None` when `nft` does not answer.
pub async fn tables_missing() -> Option<bool> {
    let out = read(&["list", "tables"]).await?;
    let tables = String::from_utf8_lossy(&out);
    Some(FAMILIES.iter().any(|f| !tables.lines().any(|l| l.trim() == format!("table {f} {TABLE}"))))
}

/// What `nft <args>` prints, or `None` when it cannot run or takes over 10 s.
async fn read(args: &[&str]) -> Option<Vec<u8>> {
    let run = tokio::process::Command::new("nft")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(std::time::Duration::from_secs(10), run).await {
        Ok(Ok(out)) => Some(out.stdout),
        _ => None,
    }
}

/// Network `name`'s packets not logged, of `counters` ([`unlogged`]).
pub fn unlogged_of(counters: &BTreeMap<String, u64>, name: &str) -> u64 {
    VERDICTS.iter().filter_map(|v| counters.get(&format!("{UNLOGGED}{v}_{name}"))).sum()
}

/// The `unlogged_*` counters in `nft -j list counters` output.
fn counters(json: &[u8]) -> BTreeMap<String, u64> {
    let v: serde_json::Value = serde_json::from_slice(json).unwrap_or_default();
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| {
            let c = &o["counter"];
            let name = c["name"].as_str().filter(|n| n.starts_with(UNLOGGED))?;
            (c["table"] == TABLE).then(|| Some((name.to_string(), c["packets"].as_u64()?))).flatten()
        })
        .collect()
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
                host_ports: vec![],
            },
            RuleNet {
                bridge: "den-lab".into(),
                subnet: Subnet::parse("10.88.0.0/24").unwrap(),
                isolated: true,
                internet: false,
                audit: None,
                host_ports: vec![crate::HostPort { port: 8006, proto: Proto::Tcp }],
            },
            RuleNet {
                bridge: "den-a1".into(),
                subnet: Subnet::parse("10.90.1.0/24").unwrap(),
                isolated: true,
                internet: false,
                audit: Some("a1".into()),
                host_ports: vec![],
            },
            RuleNet {
                bridge: "den-a2".into(),
                subnet: Subnet::parse("10.90.2.0/24").unwrap(),
                isolated: true,
                internet: true,
                audit: Some("a2".into()),
                host_ports: vec![],
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
            local: true,
        };
        let lan_only = RuleForward { host_port: 8081, local: false, ..fwd.clone() };
        let unlogged = BTreeMap::from([("unlogged_deny_a2".to_string(), 41)]);
        let s = render(&nets(), &[fwd, lan_only], &[], &unlogged);
        assert!(
            s.starts_with(
                "table ip den\ndelete table ip den\ntable bridge den\ndelete table bridge den\ntable arp den\ndelete table arp den\ntable ip6 den\ndelete table ip6 den\ntable ip den {"
            ),
            "{s}"
        );
        assert_eq!(s.matches("tcp dport 8080 dnat to 10.87.0.2:80").count(), 2, "prerouting and output: {s}");
        assert_eq!(s.matches("tcp dport 8081 dnat to").count(), 1, "not the host's own connections: {s}");
        let output = &s[s.find("chain output").unwrap()..s.find("chain postrouting").unwrap()];
        assert!(!output.contains("8081"), "{output}");
        assert!(s.contains("ip saddr 10.87.0.0/24 ip daddr != 10.87.0.0/24 masquerade"));
        assert!(!s.contains("ip saddr 10.88.0.0/24"), "isolated networks get no NAT: {s}");
        assert!(s.contains("ip saddr 10.90.2.0/24 ip daddr != 10.90.2.0/24 masquerade"), "internet apps do: {s}");
        // Audited rules: over the network's rate, counted and not logged; else logged.
        assert!(s.contains("iifname \"den-a1\" limit name \"audit_deny_a1\" counter name \"unlogged_deny_a1\" drop\n    iifname \"den-a1\" log prefix \"den-audit a1 deny \" group 3552\n    iifname \"den-a1\" drop"), "{s}");
        assert!(
            s.contains("iifname \"den-a2\" oifname \"den-*\" limit name \"audit_deny_a2\" counter name \"unlogged_deny_a2\" drop\n    iifname \"den-a2\" oifname \"den-*\" log prefix \"den-audit a2 deny \" group 3552\n    iifname \"den-a2\" oifname \"den-*\" drop"),
            "{s}"
        );
        assert!(
            s.contains("iifname \"den-a2\" ct state new limit name \"audit_allow_a2\" counter name \"unlogged_allow_a2\" accept\n    iifname \"den-a2\" ct state new log prefix \"den-audit a2 allow \" group 3552\n    iifname \"den-a2\" ct state new accept"),
            "{s}"
        );
        assert!(s.contains("  limit audit_deny_a2 { rate over 50/second burst 100 packets }\n  counter unlogged_deny_a2 { packets 41 bytes 0 }\n"), "the count survives a sync: {s}");
        assert!(
            s.contains("  limit audit_allow_a2 { rate over 50/second burst 100 packets }\n"),
            "allowed attempts have their own limit: {s}"
        );
        assert!(
            s.contains("counter unlogged_deny_a1 { packets 0 bytes 0 }") && !s.contains("unlogged_deny_lab"),
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
        // An isolated network's VMs are refused before any forward's DNAT is accepted (app
        // networks' names sort first), and nothing goes from one network into another.
        let first_dnat = s.find("ct status dnat accept").unwrap();
        assert!(lab_drop < first_dnat && s.find("iifname \"den-a2\" oifname \"den-*\"").unwrap() < first_dnat, "{s}");
        assert!(s.contains("oifname \"den-lab\" drop") && !s.contains("oifname \"den-lab\" ct status dnat"), "{s}");
        assert!(
            s.contains("iifname \"den-*\" ip daddr { 169.254.0.0/16, 168.63.129.16, 100.100.100.200 } drop"),
            "{s}"
        );
        assert!(s.contains("chain forward {\n    type filter hook forward priority filter; policy accept;\n    ct state established ct direction reply accept\n"), "{s}");
        let related = s.find("    ct state related accept").unwrap();
        assert!(lab_drop < related && related < first_dnat, "an isolated VM's ICMP errors go nowhere: {s}");
        assert!(s.contains("iifname \"den-default\" ct state established,related ct direction reply accept"), "{s}");
        assert!(s.contains("iifname != { \"lo\", \"den-default\" } ip daddr 10.87.0.1 drop"), "not the LAN's: {s}");
        assert!(s.contains("ip saddr 10.87.0.0/24 ip daddr 10.87.0.0/24 ct status dnat masquerade"), "hairpin: {s}");
        assert!(s.contains("table ip6 den {") && s.contains("    iifname \"den-*\" drop\n  }\n}\n"), "{s}");
        assert!(
            s.contains("iifname \"den-default\" ip daddr { 10.87.0.1, 255.255.255.255 } udp dport 67 accept"),
            "{s}"
        );
        assert!(
            s.contains("ip saddr 127.0.0.0/8 drop\n    iifname \"dt*\" drop\n"),
            "IPv4 straight from a TAP port: {s}"
        );
        assert!(s.contains("table arp den {\n  chain input {\n    type filter hook input priority filter; policy accept;\n    iifname \"dt*\" drop"), "{s}");
        // The host: loopback never, DNS on the gateway only, DHCP, answers; nothing else.
        assert!(s.contains("type filter hook prerouting priority raw; policy accept;\n    iifname \"den-*\" ip daddr 127.0.0.0/8 drop"), "{s}");
        assert!(s.contains("iifname \"den-default\" ip daddr 10.87.0.1 meta l4proto { tcp, udp } th dport 53 accept\n    iifname \"den-default\" drop"), "{s}");
        assert!(s.contains("    iifname \"den-*\" drop\n  }\n}\n"), "{s}");
        let input = &s[s.find("chain input").unwrap()..];
        assert!(
            input
                .contains("iifname \"den-lab\" ip daddr 10.88.0.1 tcp dport 8006 accept\n    iifname \"den-lab\" drop"),
            "{input}"
        );
        assert_eq!(input.matches("8006").count(), 1, "only where an admin opened it: {input}");
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
            local: true,
        };
        let nic = super::super::bind::BoundNic {
            tap: "dt01234567890".into(),
            mac: "02:de:00:00:00:01".into(),
            ip: Ipv4Addr::new(10, 87, 0, 9),
            vm: "dns".into(),
        };
        let script = render(&nets(), &[fwd], &[nic], &BTreeMap::from([("unlogged_allow_a1".to_string(), 3)]))
            .replace("delete table ip den\n", "")
            .replace("delete table bridge den\n", "")
            .replace("delete table arp den\n", "")
            .replace("delete table ip6 den\n", "");
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
    fn reads_the_unlogged_counters() {
        let json = br#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"counter": {"family": "ip", "name": "unlogged_deny_a1", "table": "den", "handle": 3, "packets": 7, "bytes": 0}},
            {"counter": {"family": "ip", "name": "unlogged_allow_a1", "table": "den", "handle": 6, "packets": 2, "bytes": 0}},
            {"counter": {"family": "ip", "name": "other", "table": "den", "handle": 4, "packets": 9, "bytes": 0}},
            {"counter": {"family": "ip", "name": "unlogged_x", "table": "elsewhere", "handle": 5, "packets": 9, "bytes": 0}}]}"#;
        let c = counters(json);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(unlogged_of(&c, "a1"), 9);
        assert_eq!(unlogged_of(&c, "a2"), 0);
        assert!(counters(b"not json").is_empty());
    }

    #[test]
    fn no_networks_removes_the_table() {
        assert_eq!(
            render(&[], &[], &[], &BTreeMap::new()),
            "table ip den\ndelete table ip den\ntable bridge den\ndelete table bridge den\ntable arp den\ndelete table arp den\ntable ip6 den\ndelete table ip6 den\n"
        );
    }
}
