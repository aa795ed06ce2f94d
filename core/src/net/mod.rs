//! What networks, NICs and port forwards are, as users ask for them and as dend resolves them.

pub mod ipam;

use crate::FieldError;
use ipam::{valid_mac, Subnet};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// The network every VM joins unless told otherwise.
pub const DEFAULT_NETWORK: &str = "default";
/// The default network's subnet unless dend is told otherwise (`--subnet`).
pub const DEFAULT_SUBNET: &str = "10.87.0.0/24";
/// Most NICs per VM.
pub const MAX_NICS: usize = 8;

/// Who asks for a network change: dend itself (an app's network and VMs) or a person (the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// dend, for an app: the only one that makes, joins and removes app networks.
    Den,
    /// A person through the API, CLI or web console, whatever their role.
    Person,
}

impl By {
    /// Who `user` is: dend's own tasks run as the reserved user `dend`, which no account takes.
    pub fn user(user: &str) -> By {
        if user == "dend" {
            By::Den
        } else {
            By::Person
        }
    }
}

/// A name for the network of app `package`: `a` and 10 hex digits of its id (bridge
/// `den-a...`); `attempt` 1, 2, ... give others. Package ids are a package author's choice, so
/// two can give the same name: dend takes the first attempt no other app has
/// (`apps::run`), never another app's network.
pub fn app_network_name(package: &str, attempt: u8) -> String {
    let salt: &[u8] = if attempt == 0 { &[] } else { &[0xff, attempt] };
    format!("a{:010x}", den_net_util::fnv1a(package.bytes().chain(salt.iter().copied())) & 0xff_ffff_ffff)
}

/// Whether `name` has the shape of an app network's name. Such names are dend's: nobody else
/// makes a network by that name, puts a VM on it or removes it (an app's isolation and its
/// services' DNS names depend on who is on its network).
pub fn is_app_network(name: &str) -> bool {
    name.len() == 11 && name.starts_with('a') && name[1..].chars().all(|c| c.is_ascii_digit() || matches!(c, 'a'..='f'))
}

/// A network (`POST /api/v1/networks`): a host bridge with a subnet, DHCP and DNS, and NAT to
/// the host's uplink unless it is isolated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Name: a-z, 0-9 and `-`, 1 to 11 characters (the bridge is `den-<name>`).
    pub name: String,
    /// IPv4 subnet, e.g. `10.88.0.0/24`.
    pub subnet: String,
    /// Isolated: VMs reach each other and dend's DHCP/DNS only; no NAT, no forwards, no host.
    #[serde(default)]
    pub isolated: bool,
    /// With `isolated`: VMs may also reach the internet through NAT (public addresses only:
    /// never the host, other Den networks or private ranges). An LPK app with `net.internet`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internet: bool,
    /// Log every new outbound connection attempt, allowed or denied, for the traffic audit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub audit: bool,
    /// Ports of the host (on this network's gateway address) its VMs may reach besides DHCP
    /// and DNS: none unless an admin opens them (`den net create --host-port 8006/tcp`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<HostPort>,
}

/// A host port a network's VMs may reach on their gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostPort {
    /// Port.
    pub port: u16,
    /// Protocol.
    #[serde(default)]
    pub proto: Proto,
}

impl NetworkSpec {
    /// The bridge device's name.
    pub fn bridge(&self) -> String {
        format!("den-{}", self.name)
    }

    /// Whether VMs get the bridge as their default route: all but isolated, unaudited networks
    /// (an audited network's refused attempts must reach the host to be logged and dropped).
    pub fn routed(&self) -> bool {
        !self.isolated || self.internet || self.audit
    }

    /// The parsed subnet (validated specs always parse).
    pub fn subnet(&self) -> Result<Subnet, String> {
        Subnet::parse(&self.subnet)
    }

    /// Checks the name and subnet, and that the subnet overlaps none of `others`.
    pub fn validate(&self, others: &[NetworkSpec]) -> Result<(), FieldError> {
        let err = |field, message: String| Err(FieldError { field, message });
        if self.name.len() > 11 || !crate::valid_name(&self.name) {
            return err("name", format!("`{}` is not a network name: a-z, 0-9 and -, 1 to 11 characters", self.name));
        }
        let sub = self.subnet().map_err(|message| FieldError { field: "subnet", message })?;
        if (self.internet || self.audit) && !self.isolated {
            return err("isolated", "`internet` and `audit` are settings of isolated networks".into());
        }
        if self.host_ports.iter().any(|p| p.port == 0) {
            return err("host_ports", "port 0 cannot be opened".into());
        }
        if self.host_ports.len() > 64 {
            return err("host_ports", format!("{} host ports: at most 64", self.host_ports.len()));
        }
        for o in others.iter().filter(|o| o.name != self.name) {
            if o.subnet().is_ok_and(|s| s.overlaps(sub)) {
                return err("subnet", format!("{} overlaps network `{}` ({})", self.subnet, o.name, o.subnet));
            }
        }
        Ok(())
    }
}

/// A NIC as asked for in a VM spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicRequest {
    /// Network name.
    #[serde(default = "default_network")]
    pub network: String,
    /// MAC address; derived from the VM id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Another DNS name for the VM on this network (like a Docker network alias): an LPK
    /// service's name, so `http://backend` works inside its app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

fn default_network() -> String {
    DEFAULT_NETWORK.into()
}

/// A transport protocol of a port forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A host port forwarded to a port of the VM's first NIC (like `docker -p`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortForward {
    /// Port on the host's addresses, for connections that arrive from elsewhere (the LAN,
    /// other VMs).
    pub host_port: u16,
    /// Port in the guest.
    pub guest_port: u16,
    /// Protocol.
    #[serde(default)]
    pub proto: Proto,
    /// Also the host's own connections to the port (`127.0.0.1:PORT` or the host's addresses,
    /// from programs on the host). Off unless asked: a forward then never takes over what a
    /// host program connects to.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local: bool,
}

impl PortForward {
    /// Parses the CLI form `8080:80`, `5353:53/udp`, with `,local` for the host's own
    /// connections too (`8080:80,local`).
    pub fn parse(s: &str) -> Result<PortForward, String> {
        let bad = || {
            format!("`{s}` is not a port forward: write HOST:GUEST[/udp][,local], e.g. 8080:80, 5353:53/udp or 8080:80,local")
        };
        let (s, local) = match s.split_once(',') {
            Some((p, "local")) => (p, true),
            Some(_) => return Err(bad()),
            None => (s, false),
        };
        let (ports, proto) = match s.rsplit_once('/') {
            Some((p, "tcp")) => (p, Proto::Tcp),
            Some((p, "udp")) => (p, Proto::Udp),
            Some(_) => return Err(bad()),
            None => (s, Proto::Tcp),
        };
        let (h, g) = ports.split_once(':').ok_or_else(bad)?;
        Ok(PortForward {
            host_port: h.parse().map_err(|_| bad())?,
            guest_port: g.parse().map_err(|_| bad())?,
            proto,
            local,
        })
    }
}

/// Checks a VM's NIC requests and port forwards on their own (not against other VMs).
pub fn validate_vm_net(nics: &[NicRequest], ports: &[PortForward]) -> Result<(), FieldError> {
    let err = |field, message: String| Err(FieldError { field, message });
    if nics.len() > MAX_NICS {
        return err("nics", format!("{} NICs: at most {MAX_NICS}", nics.len()));
    }
    for n in nics {
        if n.network.len() > 11 || !crate::valid_name(&n.network) {
            return err("nics", format!("`{}` is not a network name (`den net ls` lists networks)", n.network));
        }
        if let Some(a) = n.alias.as_deref().filter(|a| !crate::valid_name(a)) {
            return err("nics", format!("alias `{a}`: a-z, 0-9 and -, 1 to 63 characters"));
        }
        if let Some(mac) = n.mac.as_deref().filter(|m| !valid_mac(m)) {
            return err(
                "nics",
                format!("MAC `{mac}`: expected six hex pairs of a unicast address, like 02:de:00:00:00:01"),
            );
        }
    }
    if !ports.is_empty() && nics.is_empty() {
        return err("ports", "port forwards need a NIC: add one (`nics`) or drop the forwards".into());
    }
    for (i, p) in ports.iter().enumerate() {
        if p.host_port == 0 || p.guest_port == 0 {
            return err("ports", "port 0 cannot be forwarded".into());
        }
        if ports[..i].iter().any(|q| q.host_port == p.host_port && q.proto == p.proto) {
            return err("ports", format!("host port {}/{} is forwarded twice", p.host_port, p.proto.as_str()));
        }
    }
    Ok(())
}

/// A NIC as resolved at create time: the VM keeps its MAC and address for its whole life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    /// Network name.
    pub network: String,
    /// MAC address.
    pub mac: String,
    /// IPv4 address (DHCP reservation and the kernel command line).
    pub ip: Ipv4Addr,
    /// TAP device name while the VM runs.
    pub tap: String,
    /// Extra DNS name on the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// The TAP name of NIC `index` of VM `id`: `dt` + 10 hex digits of the id + the index (13
/// characters; Linux allows 15).
pub fn tap_name(vm_id: &str, index: usize) -> String {
    let short: String = vm_id.chars().filter(char::is_ascii_hexdigit).take(10).collect();
    format!("dt{short:0>10}{index}")
}

/// Whether `name` looks like a TAP name dend makes.
pub fn is_den_tap(name: &str) -> bool {
    name.len() == 13 && name.starts_with("dt") && name[2..].chars().all(|c| c.is_ascii_hexdigit() || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, subnet: &str) -> NetworkSpec {
        NetworkSpec {
            name: name.into(),
            subnet: subnet.into(),
            isolated: false,
            internet: false,
            audit: false,
            host_ports: vec![],
        }
    }

    #[test]
    fn networks_validate() {
        let d = net("default", DEFAULT_SUBNET);
        assert!(d.validate(&[]).is_ok());
        assert_eq!(d.bridge(), "den-default");
        assert_eq!(net("averylongname", "10.1.0.0/24").validate(&[]).unwrap_err().field, "name");
        assert_eq!(net("lab", "10.87.0.0/16").validate(std::slice::from_ref(&d)).unwrap_err().field, "subnet");
        assert_eq!(net("lab", "10.87.0.5/24").validate(&[]).unwrap_err().field, "subnet");
        assert!(net("lab", "10.88.0.0/24").validate(std::slice::from_ref(&d)).is_ok());
        let open_audit = NetworkSpec { audit: true, ..net("app", "10.89.0.0/24") };
        assert_eq!(open_audit.validate(&[]).unwrap_err().field, "isolated");
        assert!(NetworkSpec { isolated: true, ..open_audit }.validate(std::slice::from_ref(&d)).is_ok());
        let port0 =
            NetworkSpec { host_ports: vec![HostPort { port: 0, proto: Proto::Tcp }], ..net("lab", "10.88.0.0/24") };
        assert_eq!(port0.validate(&[d]).unwrap_err().field, "host_ports");
    }

    #[test]
    fn forwards_and_nics() {
        assert_eq!(
            PortForward::parse("5353:53/udp").unwrap(),
            PortForward { host_port: 5353, guest_port: 53, proto: Proto::Udp, local: false }
        );
        assert!(PortForward::parse("8080:80,local").unwrap().local && !PortForward::parse("8080:80").unwrap().local);
        assert!(PortForward::parse("5353:53/udp,local").unwrap().local);
        assert_eq!(PortForward::parse("8080:80").unwrap().proto, Proto::Tcp);
        for bad in ["8080", "a:80", "8080:80/sctp", "70000:80", "8080:80,lan", "8080:80,local,local"] {
            assert!(PortForward::parse(bad).is_err(), "{bad}");
        }
        let nic = NicRequest { network: "default".into(), mac: None, alias: None };
        let fwd = PortForward::parse("8080:80").unwrap();
        assert!(validate_vm_net(std::slice::from_ref(&nic), &[fwd]).is_ok());
        assert_eq!(validate_vm_net(&[], &[fwd]).unwrap_err().field, "ports");
        assert_eq!(validate_vm_net(std::slice::from_ref(&nic), &[fwd, fwd]).unwrap_err().field, "ports");
        let bad_mac = NicRequest { mac: Some("01:00:00:00:00:00".into()), ..nic };
        assert_eq!(validate_vm_net(&[bad_mac], &[]).unwrap_err().field, "nics");
        let t = tap_name("0123456789abcdef", 3);
        assert_eq!(t, "dt01234567893");
        assert!(is_den_tap(&t) && !is_den_tap("eth0"));
        assert!(t.len() <= 15);
    }
}
