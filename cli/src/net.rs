//! `den net ...`: networks through dend's API.

use crate::client::{request, typed};
use crate::vm::enc;
use clap::Subcommand;
use den_api_types::NetworkInfo;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

/// Network commands.
#[derive(Subcommand)]
pub(crate) enum NetCmd {
    /// List networks with their bridge, subnet and the VMs on them.
    Ls,
    /// Create a network (a host bridge with DHCP and DNS; NAT unless --isolated).
    Create {
        /// Name (a-z, 0-9, -; up to 11 characters).
        name: String,
        /// IPv4 subnet, e.g. 10.88.0.0/24.
        #[arg(long)]
        subnet: String,
        /// VMs on it reach each other only: no NAT, no port forwards, no host services.
        #[arg(long)]
        isolated: bool,
        /// A host port its VMs may reach on their gateway, PORT or PORT/udp (repeatable; by
        /// default they reach only its DHCP and DNS).
        #[arg(long = "host-port", value_name = "PORT[/udp]")]
        host_ports: Vec<String>,
    },
    /// Remove a network no VM uses.
    Rm {
        /// Network name.
        name: String,
    },
}

/// Runs a `den net` command.
pub(crate) fn run(cmd: NetCmd, socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        NetCmd::Ls => {
            let nets = request(socket, "GET", "/api/v1/networks", None)?.ok()?;
            if json {
                println!("{nets}");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<12} {:<14} {:<18} {:<9} {:>4}  VMS", "NAME", "BRIDGE", "SUBNET", "MODE", "UP");
            for n in typed::<Vec<NetworkInfo>>(&nets, "the network list")? {
                let vms: Vec<String> = n.vms.iter().map(|v| format!("{}={}", v.vm, v.ip)).collect();
                println!(
                    "{:<12} {:<14} {:<18} {:<9} {:>4}  {}",
                    n.name,
                    n.bridge,
                    n.subnet,
                    if n.isolated { "isolated" } else { "nat" },
                    if n.up { "yes" } else { "no" },
                    if vms.is_empty() { "-".to_string() } else { vms.join(" ") },
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        NetCmd::Create { name, subnet, isolated, host_ports } => {
            let mut ports = vec![];
            for p in &host_ports {
                let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                let port: u16 =
                    port.parse().map_err(|_| anyhow::anyhow!("--host-port {p}: write PORT or PORT/udp, e.g. 8006"))?;
                ports.push(json!({"port": port, "proto": proto}));
            }
            let body = json!({"name": name, "subnet": subnet, "isolated": isolated, "host_ports": ports});
            let n = request(socket, "POST", "/api/v1/networks", Some(&body))?.ok()?;
            println!("{}", if json { n.to_string() } else { format!("created network {name}") });
            Ok(ExitCode::SUCCESS)
        }
        NetCmd::Rm { name } => {
            request(socket, "DELETE", &format!("/api/v1/networks/{}", enc(&name)), None)?.ok()?;
            if !json {
                println!("removed network {name}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
