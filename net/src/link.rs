//! Network devices: bridges and their address (rtnetlink), persistent TAP devices (the TUN
//! ioctls: the kernel creates TAPs no other way) and the per-namespace sysctls NAT needs.
//! Lookups read `/sys/class/net`; changes go through netlink.

use std::net::Ipv4Addr;

/// Device errors.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A netlink request failed.
    #[error("{what}: {source}")]
    Netlink {
        /// What was being done.
        what: String,
        /// The netlink error.
        source: rtnetlink::Error,
    },
    /// A system call or file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LinkError {
    let what = what.into();
    move |source| LinkError::Io { what, source }
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let what = what.into();
    move |source| LinkError::Netlink { what, source }
}

fn handle() -> Result<rtnetlink::Handle, LinkError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(io("open a netlink socket"))?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The interface index of `name`, if the device exists.
pub fn index(name: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).ok()?.trim().parse().ok()
}

/// The names of all network devices.
pub fn names() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Whether `name` is a TUN/TAP device.
pub fn is_tap(name: &str) -> bool {
    std::path::Path::new(&format!("/sys/class/net/{name}/tun_flags")).exists()
}

/// Makes sure bridge `name` exists, has `gateway/prefix` and no IPv6, and is up.
///
/// `forwarded`: a `local` port forward leads into this network, so the host's own clients of it
/// (`127.0.0.1:PORT`, DNAT in the output chain) must be let out through the bridge with their
/// loopback source until the masquerade rewrites it: that takes `route_localnet=1` on the
/// bridge. Without forwards it stays 0. Either way, `nft::render`'s raw chain drops anything
/// a guest addresses to or from 127.0.0.0/8 before it is routed.
pub async fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8, forwarded: bool) -> Result<(), LinkError> {
    let h = handle()?;
    if index(name).is_none() {
        h.link()
            .add(rtnetlink::LinkBridge::new(name).build())
            .execute()
            .await
            .map_err(nl(format!("create bridge {name}")))?;
    }
    let idx = index(name).ok_or_else(|| LinkError::Io {
        what: format!("bridge {name} vanished right after it was made"),
        source: std::io::ErrorKind::NotFound.into(),
    })?;
    no_ipv6(name)?;
    h.address()
        .add(idx, gateway.into(), prefix)
        .replace()
        .execute()
        .await
        .map_err(nl(format!("give {name} the address {gateway}/{prefix}")))?;
    h.link()
        .set(rtnetlink::LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await
        .map_err(nl(format!("bring {name} up")))?;
    sysctl(&format!("net/ipv4/conf/{name}/route_localnet"), if forwarded { "1" } else { "0" })?;
    // Frames to link-local group addresses (01:80:c2:00:00:0X) pass no bridge hook: the
    // bridge must not learn their source MAC, or a guest could take another VM's frames.
    // Without the setting (Linux before 5.0) Den's networks would not hold: refuse them.
    let learn = format!("/sys/class/net/{name}/bridge/no_linklocal_learn");
    let now = std::fs::read_to_string(&learn)
        .map_err(io(format!("read {learn} (Den's networks need Linux 5.0 or later for it)")))?;
    if now.trim() != "1" {
        std::fs::write(&learn, "1").map_err(io(format!("set {learn} to 1")))?;
    }
    Ok(())
}

/// Turns IPv6 off on device `name`: Den's networks are IPv4 only, and a bridge or TAP with an
/// IPv6 link-local address would be a way to the host the IPv4 rules do not see. (Guests'
/// IPv6 frames never enter a bridge either, see `bind`.) Nothing to do on a host without IPv6.
pub fn no_ipv6(name: &str) -> Result<(), LinkError> {
    if !std::path::Path::new("/proc/sys/net/ipv6").exists() {
        return Ok(());
    }
    sysctl(&format!("net/ipv6/conf/{name}/disable_ipv6"), "1")
}

/// Turns on IPv4 forwarding in this network namespace: NAT and port forwards route guests'
/// packets (the forward chain in `nft` decides which).
pub fn enable_forwarding() -> Result<(), LinkError> {
    sysctl("net/ipv4/ip_forward", "1")
}

fn sysctl(key: &str, value: &str) -> Result<(), LinkError> {
    let path = format!("/proc/sys/{key}");
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(&path, value).map_err(io(format!("set {path} to {value}")))
}

/// Removes device `name` if it exists.
pub async fn delete(name: &str) -> Result<(), LinkError> {
    let Some(idx) = index(name) else { return Ok(()) };
    match handle()?.link().del(idx).execute().await {
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(()),
        other => other.map_err(nl(format!("delete {name}"))),
    }
}

/// Creates persistent TAP `name` (if missing), puts it on `bridge` and brings it up. The VM's
/// engine opens it by name later.
pub async fn ensure_tap(name: &str, bridge: &str) -> Result<(), LinkError> {
    if index(name).is_none() {
        create_persistent_tap(name)?;
    }
    let idx = index(name).ok_or_else(|| LinkError::Io {
        what: format!("TAP {name} vanished right after it was made"),
        source: std::io::ErrorKind::NotFound.into(),
    })?;
    no_ipv6(name)?;
    let br = index(bridge).ok_or_else(|| LinkError::Io {
        what: format!("bridge {bridge} for TAP {name}"),
        source: std::io::ErrorKind::NotFound.into(),
    })?;
    handle()?
        .link()
        .set(rtnetlink::LinkUnspec::new_with_index(idx).controller(br).up().build())
        .execute()
        .await
        .map_err(nl(format!("attach {name} to {bridge}")))
}

fn create_persistent_tap(name: &str) -> Result<(), LinkError> {
    let options = den_net_util::tap::TapOptions { vnet_hdr: true, nonblocking: false };
    let tap = den_net_util::tap::open(name, options).map_err(io(format!("create TAP {name}")))?;
    den_net_util::tap::persist(&tap).map_err(io(format!("make TAP {name} persistent")))
}
