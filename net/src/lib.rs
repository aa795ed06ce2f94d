//! VM networking: host bridges with NAT, DHCP and DNS; a TAP per NIC; isolated networks; host
//! port forwards. Everything is derived from the store: [`Net::sync`] makes the host match the
//! VMs that exist (bridges and dnsmasq for networks in use, one nftables table with NAT,
//! isolation and forwards) and removes what nothing uses any more, so a `dend` killed halfway
//! leaves nothing the next sync does not fix. TAPs exist while their VM's engine runs.

pub mod bind;
pub mod dhcp;
pub mod link;
pub mod listeners;
pub mod nft;

// What networks and NICs are lives in den-core; this module makes them real on the host.
pub use den_core::net::{
    By, HostPort, NetworkSpec, Nic, NicRequest, PortForward, Proto, DEFAULT_NETWORK, DEFAULT_SUBNET,
};

use den_core::vm::{VmRecord, VmSpec};
use den_core::FieldError;
use den_store::{Store, StoreError};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// Networking errors.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A device operation failed.
    #[error(transparent)]
    Link(#[from] link::LinkError),
    /// nftables refused the rules.
    #[error(transparent)]
    Nft(#[from] nft::NftError),
    /// dnsmasq failed.
    #[error(transparent)]
    Dhcp(#[from] dhcp::DhcpError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored network is unusable.
    #[error("network `{0}`: {1}")]
    Bad(String, String),
}

/// Ports of the services dend runs for guests on every gateway (dnsmasq's DNS and DHCP): a
/// forward on one would take them over for guests too.
const GUEST_SERVICE_PORTS: [(Proto, u16); 3] = [(Proto::Udp, 53), (Proto::Tcp, 53), (Proto::Udp, 67)];

/// The networking service.
pub struct Net {
    dir: PathBuf,
    default_subnet: String,
    /// Serialises address allocation with the record insert that claims it.
    alloc: std::sync::Mutex<()>,
    /// Serialises syncs and TAP changes.
    apply: tokio::sync::Mutex<()>,
    /// Host ports dend itself listens on (as configured): no forward may take them.
    reserved: std::sync::Mutex<Vec<(Proto, u16)>>,
}

impl Net {
    /// A service keeping its runtime files (dnsmasq state and logs) in `run_dir`, with the
    /// implicit `default` network on `default_subnet`.
    pub fn new(run_dir: &Path, default_subnet: &str) -> Net {
        Net {
            dir: run_dir.join("net"),
            default_subnet: default_subnet.into(),
            alloc: std::sync::Mutex::new(()),
            apply: tokio::sync::Mutex::new(()),
            reserved: std::sync::Mutex::new(GUEST_SERVICE_PORTS.to_vec()),
        }
    }

    /// Keeps host port `port`/`proto` from every port forward: dend listens on it (its HTTPS
    /// API and web console, its SSH gateway, as configured).
    pub fn reserve(&self, proto: Proto, port: u16) {
        let mut r = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
        if !r.contains(&(proto, port)) {
            r.push((proto, port));
        }
    }

    /// Whether `p`'s host port is one dend keeps ([`Net::reserve`]).
    fn reserved(&self, p: PortForward) -> bool {
        self.reserved.lock().unwrap_or_else(|p| p.into_inner()).contains(&(p.proto, p.host_port))
    }

    /// Every network: the stored ones, plus `default` unless one is stored under that name.
    pub fn networks(&self, store: &Store) -> Result<Vec<NetworkSpec>, StoreError> {
        let mut nets = store.networks()?;
        if !nets.iter().any(|n| n.name == DEFAULT_NETWORK) {
            nets.insert(
                0,
                NetworkSpec {
                    name: DEFAULT_NETWORK.into(),
                    subnet: self.default_subnet.clone(),
                    isolated: false,
                    internet: false,
                    audit: false,
                    host_ports: vec![],
                },
            );
        }
        Ok(nets)
    }

    /// Holds address allocation until dropped: take it before [`Net::allocate`] and keep it
    /// until the VM record that claims the addresses is stored.
    pub fn allocation_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.alloc.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves a new VM's NICs (network, MAC, address, TAP name) and checks its forwards
    /// against every other VM's and the host's ports in use. App networks take only VMs dend
    /// makes (`by`); a name or alias already answered on a network is refused there.
    pub fn allocate(&self, store: &Store, vm_id: &str, spec: &VmSpec, by: By) -> Result<Vec<Nic>, AllocError> {
        let nets = self.networks(store)?;
        let vms = store.vms()?;
        let mut nics = vec![];
        for (i, req) in spec.nics.iter().enumerate() {
            let Some(net) = nets.iter().find(|n| n.name == req.network) else {
                return Err(field("nics", format!("network `{}` not found; `den net ls` lists networks", req.network)));
            };
            if den_core::net::is_app_network(&net.name) && by != By::Den {
                return Err(field(
                    "nics",
                    format!(
                        "network `{}` is an app's own network: only Den puts VMs on it (its services are the app's VMs)",
                        net.name
                    ),
                ));
            }
            check_names(&vms, &nics, &spec.name, req, &net.name)?;
            let sub = net.subnet().map_err(|e| NetError::Bad(net.name.clone(), e))?;
            let mut used: HashSet<_> =
                vms.iter().flat_map(|v| &v.nics).filter(|n| n.network == net.name).map(|n| n.ip).collect();
            used.extend(nics.iter().filter(|n: &&Nic| n.network == net.name).map(|n| n.ip));
            let Some(ip) = sub.next_free(&used) else {
                return Err(field("nics", format!("network `{}` ({}) has no free address left", net.name, net.subnet)));
            };
            let mac = req.mac.clone().unwrap_or_else(|| den_core::net::ipam::mac_for(vm_id, i));
            if vms.iter().flat_map(|v| &v.nics).any(|n| n.mac.eq_ignore_ascii_case(&mac)) {
                return Err(field("nics", format!("MAC {mac} is already used by another VM")));
            }
            nics.push(Nic {
                network: net.name.clone(),
                mac,
                ip,
                tap: den_core::net::tap_name(vm_id, i),
                alias: req.alias.clone(),
            });
        }
        if let Some(first) = nics.first() {
            // App networks (isolated and audited) take the forwards of their `ingress`.
            let isolated = nets.iter().any(|n| n.name == first.network && n.isolated && !n.audit);
            if isolated && !spec.ports.is_empty() {
                return Err(field(
                    "ports",
                    format!("network `{}` is isolated: no port forwards into it", first.network),
                ));
            }
        }
        for p in &spec.ports {
            let taken =
                vms.iter().find(|v| v.spec.ports.iter().any(|q| q.host_port == p.host_port && q.proto == p.proto));
            if let Some(v) = taken {
                return Err(field(
                    "ports",
                    format!(
                        "host port {}/{} is already forwarded to VM `{}`",
                        p.host_port,
                        p.proto.as_str(),
                        v.spec.name
                    ),
                ));
            }
            if self.reserved(*p) {
                return Err(field(
                    "ports",
                    format!(
                        "host port {}/{} is Den's own (its API, SSH gateway, or guests' DNS and DHCP); pick another",
                        p.host_port,
                        p.proto.as_str()
                    ),
                ));
            }
            if !host_port_free(*p) {
                return Err(field(
                    "ports",
                    format!("host port {}/{} is in use on this host; pick another", p.host_port, p.proto.as_str()),
                ));
            }
        }
        Ok(nics)
    }

    /// Makes the host match the store: bridges, DHCP and rules for the networks VMs use, and
    /// none for the others.
    pub async fn sync(&self, store: &Store) -> Result<(), NetError> {
        let _g = self.apply.lock().await;
        let nets = self.networks(store)?;
        let vms = store.vms()?;
        let used: HashSet<&str> = vms.iter().flat_map(|v| &v.nics).map(|n| n.network.as_str()).collect();
        let in_use: Vec<&NetworkSpec> = nets.iter().filter(|n| used.contains(n.name.as_str())).collect();
        // The rules first: nothing below may leave running VMs under older or no rules.
        self.apply_rules(&in_use, &vms).await?;
        for net in nets.iter().filter(|n| !used.contains(n.name.as_str())) {
            dhcp::stop(&self.dir, &net.name).await;
            link::delete(&net.bridge()).await?;
        }
        // Networks a `local` port forward leads into: only their bridges need `route_localnet`.
        let forwarded: HashSet<&str> = vms
            .iter()
            .filter(|v| v.spec.ports.iter().any(|p| p.local))
            .filter_map(|v| v.nics.first())
            .map(|n| n.network.as_str())
            .collect();
        if !in_use.is_empty() {
            link::enable_forwarding()?;
        }
        for net in in_use {
            let sub = net.subnet().map_err(|e| NetError::Bad(net.name.clone(), e))?;
            link::ensure_bridge(&net.bridge(), sub.gateway(), sub.prefix, forwarded.contains(net.name.as_str()))
                .await?;
            let hosts = vms
                .iter()
                .flat_map(|v| v.nics.iter().map(move |n| (v, n)))
                .filter(|(_, n)| n.network == net.name)
                .map(|(v, n)| dhcp::Host {
                    mac: n.mac.clone(),
                    ip: n.ip,
                    name: v.spec.name.clone(),
                    alias: n.alias.clone(),
                })
                .collect();
            let cfg = dhcp::DhcpConfig {
                network: net.name.clone(),
                bridge: net.bridge(),
                gateway: sub.gateway(),
                network_addr: sub.network,
                prefix: sub.prefix,
                router: net.routed(),
                resolve: !net.isolated || net.internet,
                hosts,
            };
            dhcp::ensure(&self.dir, &cfg).await?;
        }
        // TAPs of VMs that kept running across a dend upgrade get what new TAPs get.
        Ok(no_ipv6_on(taps(&vms).cloned())?)
    }

    /// Replaces Den's nftables tables with the rules for networks `in_use` and `vms` (or
    /// removes them when no network is in use).
    async fn apply_rules(&self, in_use: &[&NetworkSpec], vms: &[VmRecord]) -> Result<(), NetError> {
        let mut rule_nets = vec![];
        for net in in_use {
            rule_nets.push(nft::RuleNet {
                bridge: net.bridge(),
                subnet: net.subnet().map_err(|e| NetError::Bad(net.name.clone(), e))?,
                isolated: net.isolated,
                internet: net.internet,
                audit: net.audit.then(|| net.name.clone()),
                host_ports: net.host_ports.clone(),
            });
        }
        // Skip the nft call entirely on hosts where Den has never had a network.
        let marker = self.dir.join("nft");
        if rule_nets.is_empty() && !marker.exists() {
            return Ok(());
        }
        let mut forwards = vec![];
        for (v, n) in vms.iter().filter_map(|v| v.nics.first().map(|n| (v, n))) {
            for p in &v.spec.ports {
                if self.reserved(*p) {
                    // dend was told to listen there since the forward was made.
                    tracing::warn!(vm = %v.spec.name, port = p.host_port, "a port forward on a port dend listens on is not applied");
                    continue;
                }
                forwards.push(nft::RuleForward {
                    proto: p.proto,
                    host_port: p.host_port,
                    ip: n.ip,
                    guest_port: p.guest_port,
                    vm: v.spec.name.clone(),
                    local: p.local,
                });
            }
        }
        let nics: Vec<bind::BoundNic> = vms
            .iter()
            .flat_map(|v| {
                v.nics.iter().map(move |n| bind::BoundNic {
                    tap: n.tap.clone(),
                    mac: n.mac.clone(),
                    ip: n.ip,
                    vm: v.spec.name.clone(),
                })
            })
            .collect();
        let unlogged = nft::unlogged().await;
        nft::apply(&nft::render(&rule_nets, &forwards, &nics, &unlogged)).await?;
        if rule_nets.is_empty() {
            let _ = std::fs::remove_file(&marker);
        } else {
            std::fs::create_dir_all(&self.dir)
                .and_then(|_| {
                    std::fs::write(&marker, format!("den owns tables {} {}\n", nft::TABLE, nft::FAMILIES.join(" ")))
                })
                .map_err(|source| link::LinkError::Io { what: format!("record {}", marker.display()), source })?;
        }
        Ok(())
    }

    /// Whether Den's tables are missing although networks are in use (something removed
    /// them, e.g. `flush ruleset` in a restarted nftables service): [`Net::sync`] puts them
    /// back. Also turns IPv6 off again on Den's bridges and TAPs, should a sysctl run
    /// (`net.ipv6.conf.all.disable_ipv6=0`) have turned it on.
    pub async fn rules_missing(&self, store: &Store) -> bool {
        let _g = self.apply.lock().await;
        let nets = self.networks(store).unwrap_or_default();
        let vms = store.vms().unwrap_or_default();
        let devices = nets.iter().map(NetworkSpec::bridge).chain(taps(&vms).cloned());
        if let Err(e) = no_ipv6_on(devices) {
            tracing::warn!(%e, "cannot turn IPv6 off on Den's devices");
        }
        self.dir.join("nft").exists() && nft::tables_missing().await == Some(true)
    }

    /// Creates and attaches the TAPs of a VM about to start.
    pub async fn plug(&self, store: &Store, vm: &VmRecord) -> Result<(), NetError> {
        if vm.nics.is_empty() {
            return Ok(());
        }
        self.sync(store).await?;
        let _g = self.apply.lock().await;
        let nets = self.networks(store)?;
        for n in &vm.nics {
            let net = nets.iter().find(|x| x.name == n.network);
            let Some(net) = net else { return Err(NetError::Bad(n.network.clone(), "not found".into())) };
            link::ensure_tap(&n.tap, &net.bridge()).await?;
        }
        Ok(())
    }

    /// Removes the TAPs of a VM whose engine has ended.
    pub async fn unplug(&self, vm: &VmRecord) {
        let _g = self.apply.lock().await;
        for n in &vm.nics {
            if let Err(e) = link::delete(&n.tap).await {
                tracing::warn!(vm = %vm.spec.name, tap = %n.tap, %e, "cannot remove a TAP");
            }
        }
    }

    /// Removes Den TAPs that no running VM owns (left by a `dend` that died mid-start or
    /// mid-stop). `running` are the TAP names in use.
    pub async fn sweep_taps(&self, running: &HashSet<String>) {
        let _g = self.apply.lock().await;
        for name in link::names() {
            if den_core::net::is_den_tap(&name) && link::is_tap(&name) && !running.contains(&name) {
                tracing::info!(tap = %name, "removing a TAP no running VM owns");
                if let Err(e) = link::delete(&name).await {
                    tracing::warn!(tap = %name, %e, "cannot remove a TAP");
                }
            }
        }
    }

    /// Adds a network after checking its name and that its subnet overlaps no other. Names of
    /// app networks are dend's (`by`).
    pub fn create_network(&self, store: &Store, spec: &NetworkSpec, by: By) -> Result<(), AllocError> {
        let _g = self.allocation_guard();
        if den_core::net::is_app_network(&spec.name) && by != By::Den {
            return Err(field(
                "name",
                format!("`{}`: names of `a` and 10 hex digits are kept for app networks; pick another", spec.name),
            ));
        }
        let nets = self.networks(store)?;
        if nets.iter().any(|n| n.name == spec.name) {
            return Err(AllocError::Net(NetError::Store(StoreError::Exists {
                kind: "network",
                name: spec.name.clone(),
            })));
        }
        spec.validate(&nets).map_err(AllocError::Field)?;
        Ok(store.insert_network(spec)?)
    }

    /// Removes a network that no VM uses (an app's network only when dend removes the app).
    pub fn delete_network(&self, store: &Store, name: &str, by: By) -> Result<(), AllocError> {
        let _g = self.allocation_guard();
        if den_core::net::is_app_network(name) && by != By::Den {
            return Err(field(
                "name",
                format!("network `{name}` is an app's own network: it goes when the app is uninstalled"),
            ));
        }
        if let Some(v) = store.vms()?.into_iter().find(|v| v.nics.iter().any(|n| n.network == name)) {
            return Err(field(
                "name",
                format!("network `{name}` is used by VM `{}`; delete that VM first", v.spec.name),
            ));
        }
        if name == DEFAULT_NETWORK && !store.networks()?.iter().any(|n| n.name == name) {
            return Err(field("name", "the default network is built in and cannot be removed".into()));
        }
        Ok(store.delete_network(name)?)
    }

    /// Port forwards whose host port a host program listens on now (it came after the
    /// forward, which a create would have refused): (VM, forward). Connections from elsewhere
    /// still reach the VM, and for a `local` forward the host's own too.
    pub fn clashes(&self, store: &Store) -> Result<Vec<(String, PortForward)>, StoreError> {
        let (tcp, udp) = (listeners::ports(Proto::Tcp), listeners::ports(Proto::Udp));
        let mut out = vec![];
        for v in store.vms()?.into_iter().filter(|v| !v.nics.is_empty()) {
            for p in &v.spec.ports {
                let bound = match p.proto {
                    Proto::Tcp => &tcp,
                    Proto::Udp => &udp,
                };
                if bound.contains(&p.host_port) {
                    out.push((v.spec.name.clone(), *p));
                }
            }
        }
        Ok(out)
    }

    /// The address of each VM NIC on each network, for listings.
    pub fn leases(&self, store: &Store) -> Result<BTreeMap<String, Vec<(String, Nic)>>, StoreError> {
        let mut m: BTreeMap<String, Vec<(String, Nic)>> = BTreeMap::new();
        for v in store.vms()? {
            for n in v.nics {
                m.entry(n.network.clone()).or_default().push((v.spec.name.clone(), n));
            }
        }
        Ok(m)
    }
}

/// Why NICs could not be allocated.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// A request field is wrong.
    #[error("{}: {}", .0.field, .0.message)]
    Field(FieldError),
    /// Something else failed.
    #[error(transparent)]
    Net(#[from] NetError),
}

impl From<StoreError> for AllocError {
    fn from(e: StoreError) -> AllocError {
        AllocError::Net(NetError::Store(e))
    }
}

/// Refuses a NIC whose VM name or alias is already a DNS name on `network` (dnsmasq answers
/// each name with one address: a second one would take over the first's name there).
/// `vms` are the stored VMs, `nics` the new VM's NICs resolved so far.
/// The TAP names of `vms`' NICs.
fn taps(vms: &[VmRecord]) -> impl Iterator<Item = &String> {
    vms.iter().flat_map(|v| &v.nics).map(|n| &n.tap)
}

/// Turns IPv6 off on those of `devices` that exist, all of them even when one fails (the
/// first failure is returned).
fn no_ipv6_on(devices: impl Iterator<Item = String>) -> Result<(), link::LinkError> {
    let results: Vec<_> = devices.filter(|d| link::index(d).is_some()).map(|d| link::no_ipv6(&d)).collect();
    results.into_iter().collect()
}

/// DNS names no VM answers on a network: software in guests asks for them unprompted (proxy
/// autodiscovery, the local host).
const RESERVED_NAMES: [&str; 4] = ["localhost", "wpad", "isatap", "gateway"];

fn check_names(vms: &[VmRecord], nics: &[Nic], name: &str, req: &NicRequest, network: &str) -> Result<(), AllocError> {
    let mut taken: Vec<(&str, &str)> = vec![];
    for v in vms {
        for n in v.nics.iter().filter(|n| n.network == network) {
            taken.push((v.spec.name.as_str(), v.spec.name.as_str()));
            if let Some(a) = &n.alias {
                taken.push((a.as_str(), v.spec.name.as_str()));
            }
        }
    }
    taken.extend(nics.iter().filter(|n| n.network == network).filter_map(|n| n.alias.as_deref()).map(|a| (a, name)));
    let wanted = std::iter::once(name).chain(req.alias.as_deref());
    for want in wanted.clone() {
        if RESERVED_NAMES.contains(&want) {
            return Err(field(
                "nics",
                format!("`{want}` is a name guests' software looks up by itself; pick another VM name or alias"),
            ));
        }
    }
    for want in wanted {
        if let Some((_, owner)) = taken.iter().find(|(t, owner)| *t == want && *owner != name) {
            return Err(field(
                "nics",
                format!(
                    "`{want}` is already a name on network `{network}` (VM `{owner}`); pick another alias or VM name"
                ),
            ));
        }
    }
    Ok(())
}

fn field(field: &'static str, message: String) -> AllocError {
    AllocError::Field(FieldError { field, message })
}

/// Whether nothing on this host listens on `p` (a forward would hide it from outside).
fn host_port_free(p: PortForward) -> bool {
    let addr = std::net::SocketAddr::from(([0, 0, 0, 0], p.host_port));
    match p.proto {
        Proto::Tcp => std::net::TcpListener::bind(addr).is_ok(),
        Proto::Udp => std::net::UdpSocket::bind(addr).is_ok(),
    }
}
