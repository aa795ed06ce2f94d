//! The traffic audit: audited networks log every new outbound attempt to an NFLOG group
//! (`net::nft`), with the prefix `den-audit <network> allow|deny`. A thread of dend reads the
//! group over netlink, turns each packet's IPv4 header into a [`TrafficRecord`] of the app that
//! owns the network, and stores it (the newest [`KEEP`] per app). Retransmissions of one attempt
//! within [`SAME_ATTEMPT`] count once.

use super::TrafficRecord;
use crate::AppTable;
use den_net::nft::{AUDIT_GROUP, AUDIT_PREFIX};
use den_vms::Den;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::{config_request, ConfigCmd, ConfigMode, PacketNla, Timeout, ULogMessage};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use netlink_sys::{constants::NETLINK_NETFILTER, Socket};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records kept per app.
pub const KEEP: i64 = 10_000;
/// Packets of the same attempt (same endpoints and verdict) within this window count once.
pub const SAME_ATTEMPT: Duration = Duration::from_secs(3);

/// One logged attempt, before it is given to its app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The audited network.
    pub network: String,
    /// `allowed` or `denied`.
    pub verdict: &'static str,
    /// `tcp`, `udp`, `icmp` or the protocol number.
    pub proto: String,
    /// Source address.
    pub source: Ipv4Addr,
    /// Destination address.
    pub dest: Ipv4Addr,
    /// Destination port (0 without one).
    pub port: u16,
}

/// Reads a log prefix and an IPv4 packet's first bytes.
pub fn parse(prefix: &str, packet: &[u8]) -> Option<Attempt> {
    let mut words = prefix.split_whitespace();
    if words.next()? != AUDIT_PREFIX {
        return None;
    }
    let network = words.next()?.to_string();
    let verdict = match words.next()? {
        "allow" => "allowed",
        "deny" => "denied",
        _ => return None,
    };
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let proto_num = packet[9];
    let source = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dest = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let (proto, port) = match proto_num {
        6 | 17 => {
            let port = packet.get(ihl + 2..ihl + 4).map(|p| u16::from_be_bytes([p[0], p[1]])).unwrap_or(0);
            (if proto_num == 6 { "tcp" } else { "udp" }.to_string(), port)
        }
        1 => ("icmp".to_string(), 0),
        n => (n.to_string(), 0),
    };
    Some(Attempt { network, verdict, proto, source, dest, port })
}

fn send(socket: &Socket, msg: NetlinkMessage<NetfilterMessage>) -> std::io::Result<()> {
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    socket.send(&buf, 0).map(drop)
}

/// Opens the netlink socket and binds the audit group.
fn open() -> std::io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    send(&socket, config_request(NetfilterProtoFamily::IPv4, 0, vec![ConfigCmd::PfBind.into()]))?;
    let timeout: Timeout = Duration::from_millis(100).into();
    let nlas = vec![ConfigCmd::Bind.into(), ConfigMode::new_packet(64).into(), timeout.into()];
    send(&socket, config_request(NetfilterProtoFamily::IPv4, AUDIT_GROUP, nlas))?;
    Ok(socket)
}

/// The (prefix, payload) of each logged packet in a received buffer.
fn packets(buf: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![];
    let mut offset = 0;
    while offset < buf.len() {
        let Ok(msg) = NetlinkMessage::<NetfilterMessage>::deserialize(&buf[offset..]) else { break };
        let len = msg.header.length as usize;
        if let NetlinkPayload::InnerMessage(NetfilterMessage {
            inner: NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)),
            ..
        }) = msg.payload
        {
            let mut prefix = String::new();
            let mut payload = vec![];
            for nla in nlas {
                match nla {
                    PacketNla::Prefix(p) => prefix = p.to_string_lossy().into_owned(),
                    PacketNla::Payload(p) => payload = p,
                    _ => {}
                }
            }
            out.push((prefix, payload));
        }
        if len == 0 {
            break;
        }
        offset += (len + 3) & !3;
    }
    out
}

/// Starts the audit reader (a thread: netlink reads block).
pub fn start(den: Arc<Den>) {
    let spawned = std::thread::Builder::new().name("den-audit".into()).spawn(move || {
        let socket = match open() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(%e, "the traffic audit cannot read NFLOG group {AUDIT_GROUP}; app traffic is not recorded");
                return;
            }
        };
        let mut buf = vec![0u8; 1 << 16];
        let mut recent: HashMap<(String, Ipv4Addr, Ipv4Addr, u16, String, &'static str), Instant> = HashMap::new();
        loop {
            let n = match socket.recv(&mut &mut buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    tracing::warn!("the traffic audit fell behind; some attempts were not recorded");
                    continue;
                }
                Err(e) => {
                    tracing::error!(%e, "the traffic audit stopped");
                    return;
                }
            };
            let now = Instant::now();
            recent.retain(|_, t| now.duration_since(*t) < SAME_ATTEMPT);
            for (prefix, payload) in packets(&buf[..n]) {
                let Some(a) = parse(&prefix, &payload) else { continue };
                let key = (a.network.clone(), a.source, a.dest, a.port, a.proto.clone(), a.verdict);
                if recent.insert(key, now).is_some() {
                    continue;
                }
                record(&den, a);
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(%e, "cannot start the traffic audit");
    }
}

/// Stores an attempt under the app that owns its network.
fn record(den: &Den, a: Attempt) {
    let Some(app) = den.store.apps().ok().and_then(|apps| apps.into_iter().find(|x| x.network == a.network)) else {
        return;
    };
    tracing::info!(app = %app.package, dest = %a.dest, port = a.port, proto = %a.proto, verdict = a.verdict, "app traffic");
    let rec = TrafficRecord {
        seq: 0,
        time: den_store::now(),
        proto: a.proto,
        source: a.source.to_string(),
        dest: a.dest.to_string(),
        port: a.port,
        verdict: a.verdict.into(),
    };
    if let Err(e) = den.store.add_traffic(&app.package, &[rec], KEEP) {
        tracing::warn!(%e, "cannot record app traffic");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_become_attempts() {
        let mut syn = vec![0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 90, 0, 2, 198, 51, 100, 7];
        syn.extend_from_slice(&[0xc3, 0x50, 0x1f, 0x90]);
        let a = parse("den-audit a123 deny ", &syn).unwrap();
        assert_eq!(
            a,
            Attempt {
                network: "a123".into(),
                verdict: "denied",
                proto: "tcp".into(),
                source: Ipv4Addr::new(10, 90, 0, 2),
                dest: Ipv4Addr::new(198, 51, 100, 7),
                port: 8080
            }
        );
        assert!(parse("other prefix", &syn).is_none());
        assert!(parse("den-audit a123 maybe", &syn).is_none());
        assert!(parse("den-audit a123 allow", &syn[..10]).is_none(), "short packets are ignored, not read past");
        let mut icmp = syn.clone();
        icmp[9] = 1;
        assert_eq!(parse("den-audit a1 allow", &icmp).unwrap().port, 0);
    }
}
