//! DHCP and DNS for a network: one Debian `dnsmasq` per bridge, with a reservation per NIC
//! (`--dhcp-host MAC,IP,NAME`, and only reservations: an unknown MAC gets nothing, so no
//! address is ever handed out twice) and the VMs' names in DNS, bare and under `.den`. Like VM engines it
//! runs detached, so DHCP outlives a `dend` restart; dend finds it again through a state file
//! (pid, start time, and a hash of its arguments) and restarts it when the reservations change.

use den_engine::process::{self, Proc};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What one network's dnsmasq serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpConfig {
    /// Network name (names the state and log files).
    pub network: String,
    /// Bridge to serve on.
    pub bridge: String,
    /// The bridge's address: router and DNS server for the VMs.
    pub gateway: Ipv4Addr,
    /// Network address.
    pub network_addr: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// Hand out the bridge as the default route (every network but isolated unaudited ones:
    /// an audited network's refused attempts must reach the host to be logged).
    pub router: bool,
    /// Resolve names beyond the network's own through the host's resolvers.
    pub resolve: bool,
    /// Reservations.
    pub hosts: Vec<Host>,
}

/// One reservation: a NIC's MAC and address, its VM's name and an optional alias, both in DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// MAC address.
    pub mac: String,
    /// Address.
    pub ip: Ipv4Addr,
    /// VM name (bare and under `.den`).
    pub name: String,
    /// Another name for it on this network.
    pub alias: Option<String>,
}

/// Errors running dnsmasq.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    /// It could not be started or stopped.
    #[error("dnsmasq for network `{network}`: {why}")]
    Failed {
        /// The network.
        network: String,
        /// What went wrong and what to do.
        why: String,
    },
}

fn mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX << (32 - u32::from(prefix)))
}

/// dnsmasq's arguments for `cfg`.
pub fn args(cfg: &DhcpConfig) -> Vec<String> {
    let mut a: Vec<String> = [
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--log-facility=-",
        "--bind-dynamic",
        "--except-interface=lo",
        "--no-hosts",
        "--leasefile-ro",
        "--dhcp-authoritative",
        "--domain=den",
        "--local=/den/",
        "--pid-file=",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(format!("--interface={}", cfg.bridge));
    a.push(format!("--listen-address={}", cfg.gateway));
    a.push(format!("--dhcp-range={},static,{},12h", cfg.network_addr, mask(cfg.prefix)));
    if cfg.router {
        a.push(format!("--dhcp-option=option:router,{}", cfg.gateway));
    } else {
        a.push("--dhcp-option=option:router".into());
    }
    if !cfg.resolve {
        a.push("--no-resolv".into());
    }
    a.push(format!("--dhcp-option=option:dns-server,{}", cfg.gateway));
    for Host { mac, ip, name, alias } in &cfg.hosts {
        a.push(format!("--dhcp-host={mac},{ip},{name}"));
        if let Some(alias) = alias {
            a.push(format!("--host-record={alias},{alias}.den,{ip}"));
        }
        // DNS names from the reservation itself: guests configured from the kernel command
        // line never ask for a lease, so dnsmasq would not learn their names otherwise.
        a.push(format!("--host-record={name},{name}.den,{ip}"));
    }
    a
}

fn hash(args: &[String]) -> String {
    format!("{:016x}", den_net_util::fnv1a(args.join("\n").into_bytes()))
}

fn state_file(dir: &Path, network: &str) -> PathBuf {
    dir.join(format!("{network}.dnsmasq"))
}

/// The running dnsmasq recorded for `network` and its argument hash, if it still runs.
fn recorded(dir: &Path, network: &str) -> Option<(Proc, String)> {
    let text = std::fs::read_to_string(state_file(dir, network)).ok()?;
    let mut it = text.split_whitespace();
    let pid = it.next()?.parse().ok()?;
    let start_time = it.next()?.parse().ok()?;
    let h = it.next()?.to_string();
    let p = Proc { pid, start_time };
    process::alive(p).then_some((p, h))
}

/// Makes sure dnsmasq serves `cfg` on its bridge: keeps the running one when its arguments are
/// the same, replaces it otherwise. `dir` holds state and log files.
pub async fn ensure(dir: &Path, cfg: &DhcpConfig) -> Result<(), DhcpError> {
    let fail = |why: String| DhcpError::Failed { network: cfg.network.clone(), why };
    let args = args(cfg);
    let h = hash(&args);
    let old = recorded(dir, &cfg.network);
    if old.as_ref().is_some_and(|(_, oh)| *oh == h) {
        return Ok(());
    }
    if let Some((p, _)) = old {
        let _ = process::signal(p, libc::SIGTERM);
        let _ = tokio::time::timeout(Duration::from_secs(5), process::wait_exit(p)).await;
        let _ = process::kill(p, Duration::from_secs(5)).await;
    }
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    let log = dir.join(format!("{}.dnsmasq.log", cfg.network));
    let mut cmd = std::process::Command::new("dnsmasq");
    cmd.args(&args);
    let p = process::spawn(cmd, "dnsmasq", &log)
        .map_err(|e| fail(format!("{e}; install it with `apt-get install dnsmasq-base`")))?;
    // dnsmasq checks its arguments and binds its sockets at once; a quick exit means it refused.
    tokio::time::sleep(Duration::from_millis(150)).await;
    if !process::alive(p) {
        return Err(fail(format!("it exited at once: {}", process::log_tail(&log, 5))));
    }
    std::fs::write(state_file(dir, &cfg.network), format!("{} {} {h}\n", p.pid, p.start_time))
        .map_err(|e| fail(format!("cannot record it: {e}")))?;
    Ok(())
}

/// Stops `network`'s dnsmasq, if one runs.
pub async fn stop(dir: &Path, network: &str) {
    if let Some((p, _)) = recorded(dir, network) {
        let _ = process::signal(p, libc::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(5), process::wait_exit(p)).await.is_err() {
            let _ = process::kill(p, Duration::from_secs(5)).await;
        }
    }
    let _ = std::fs::remove_file(state_file(dir, network));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let mut cfg = DhcpConfig {
            network: "default".into(),
            bridge: "den-default".into(),
            gateway: Ipv4Addr::new(10, 87, 0, 1),
            network_addr: Ipv4Addr::new(10, 87, 0, 0),
            prefix: 24,
            router: true,
            resolve: true,
            hosts: vec![Host {
                mac: "02:de:00:00:00:01".into(),
                ip: Ipv4Addr::new(10, 87, 0, 2),
                name: "web1".into(),
                alias: Some("backend".into()),
            }],
        };
        let a = args(&cfg);
        assert!(a.contains(&"--dhcp-range=10.87.0.0,static,255.255.255.0,12h".to_string()), "{a:?}");
        assert!(a.contains(&"--dhcp-host=02:de:00:00:00:01,10.87.0.2,web1".to_string()));
        assert!(a.contains(&"--host-record=web1,web1.den,10.87.0.2".to_string()));
        assert!(a.contains(&"--host-record=backend,backend.den,10.87.0.2".to_string()));
        assert!(a.contains(&"--dhcp-option=option:router,10.87.0.1".to_string()));
        let h = hash(&a);
        cfg.router = false;
        cfg.resolve = false;
        let b = args(&cfg);
        assert!(b.contains(&"--no-resolv".to_string()) && b.contains(&"--dhcp-option=option:router".to_string()));
        assert_ne!(hash(&b), h, "a change restarts dnsmasq");
    }
}
