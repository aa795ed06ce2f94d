//! Den's nftables rules: one table, `ip den`, that dend owns completely. It is rendered from the
//! networks in use and the port forwards of existing VMs and replaced in one atomic `nft -f`
//! transaction, so the rules never drift from the store and nothing stale survives a sync.

use super::ipam::Subnet;
use super::spec::Proto;
use std::fmt::Write;
use std::net::Ipv4Addr;

/// The table's name (family `ip`).
pub const TABLE: &str = "den";

/// A network as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleNet {
    /// Bridge device.
    pub bridge: String,
    /// Subnet.
    pub subnet: Subnet,
    /// No NAT, no forwards, no host services but DHCP and DNS.
    pub isolated: bool,
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
/// works whether or not the table exists. With no networks it only removes the table.
pub fn render(nets: &[RuleNet], forwards: &[RuleForward]) -> String {
    let mut s = format!("table ip {TABLE}\ndelete table ip {TABLE}\n");
    if nets.is_empty() {
        return s;
    }
    let _ = writeln!(s, "table ip {TABLE} {{");
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
    for n in nets.iter().filter(|n| !n.isolated) {
        let _ = writeln!(s, "    ip saddr {0} ip daddr != {0} masquerade", n.subnet);
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
        if n.isolated {
            let _ = writeln!(s, "    iifname \"{b}\" drop\n    oifname \"{b}\" drop");
        } else {
            let _ = writeln!(s, "    iifname \"{b}\" accept");
            let _ = writeln!(s, "    oifname \"{b}\" ct status dnat accept");
            let _ = writeln!(s, "    oifname \"{b}\" drop");
        }
    }
    s.push_str("  }\n");
    s.push_str("  chain input {\n    type filter hook input priority filter; policy accept;\n");
    for n in nets.iter().filter(|n| n.isolated) {
        let b = &n.bridge;
        let _ = writeln!(s, "    iifname \"{b}\" udp dport {{ 53, 67 }} accept");
        let _ = writeln!(s, "    iifname \"{b}\" tcp dport 53 accept");
        let _ = writeln!(s, "    iifname \"{b}\" ct state established,related accept");
        let _ = writeln!(s, "    iifname \"{b}\" drop");
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
            RuleNet { bridge: "den-default".into(), subnet: Subnet::parse("10.87.0.0/24").unwrap(), isolated: false },
            RuleNet { bridge: "den-lab".into(), subnet: Subnet::parse("10.88.0.0/24").unwrap(), isolated: true },
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
        let s = render(&nets(), &[fwd]);
        assert!(s.starts_with("table ip den\ndelete table ip den\ntable ip den {"), "{s}");
        assert_eq!(s.matches("tcp dport 8080 dnat to 10.87.0.2:80").count(), 2, "prerouting and output: {s}");
        assert!(s.contains("ip saddr 10.87.0.0/24 ip daddr != 10.87.0.0/24 masquerade"));
        assert!(!s.contains("ip saddr 10.88.0.0/24"), "isolated networks get no NAT: {s}");
        assert!(s.contains("iifname \"den-lab\" drop") && s.contains("oifname \"den-default\" ct status dnat accept"));
        assert_eq!(s.matches('{').count(), s.matches('}').count());
        let lab_drop = s.find("iifname \"den-lab\" drop").unwrap();
        let default_out = s.find("    iifname \"den-default\" accept").unwrap();
        assert!(lab_drop < default_out, "isolation before NAT accepts: {s}");
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
        let script = render(&nets(), &[fwd]).replace("delete table ip den\n", "");
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
        assert_eq!(render(&[], &[]), "table ip den\ndelete table ip den\n");
    }
}
