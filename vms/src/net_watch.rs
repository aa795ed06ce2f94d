//! What dend keeps an eye on in the network while it runs, every [`INTERVAL`]:
//! - Den's nftables tables are in place: if something removed them (a restarted nftables
//!   service's `flush ruleset`), they are put back at once, with a `net.rules_restored` event.
//! - Port forwards that a host program came to listen on after the forward was made (a create
//!   refuses a port in use, so only a later program can clash): an event `vm.port_clash` and
//!   a warning, once per clash, so nobody's connections go elsewhere without a word. The
//!   forward keeps its port (it was there first); the event says which connections reach whom
//!   and what to do.

use super::Den;
use den_net::PortForward;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How often the rules are checked and the host's listening ports compared with the forwards.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Checks every [`INTERVAL`] until dend ends.
pub async fn watch(den: Arc<Den>) {
    let mut reported: HashSet<(String, u16, &'static str)> = HashSet::new();
    loop {
        if den.net.rules_missing(&den.store).await {
            tracing::warn!("Den's nftables tables were removed by something else; putting them back");
            match den.net.sync(&den.store).await {
                Ok(()) => {
                    den.event("dend", "net.rules_restored", "", "Den's nftables tables had been removed; restored")
                }
                Err(e) => tracing::error!(%e, "cannot restore Den's nftables tables"),
            }
        }
        let d = den.clone();
        match tokio::task::spawn_blocking(move || d.net.clashes(&d.store).map_err(|e| e.to_string())).await {
            Ok(Ok(clashes)) => {
                let now: HashSet<_> =
                    clashes.iter().map(|(vm, p)| (vm.clone(), p.host_port, p.proto.as_str())).collect();
                for (vm, p) in &clashes {
                    if reported.insert((vm.clone(), p.host_port, p.proto.as_str())) {
                        let what = describe(p);
                        tracing::warn!(vm = %vm, port = p.host_port, proto = p.proto.as_str(), "{what}");
                        den.event("dend", "vm.port_clash", vm, &what);
                    }
                }
                reported.retain(|k| now.contains(k));
            }
            Ok(Err(e)) => tracing::warn!(%e, "cannot compare port forwards with the host's listening ports"),
            Err(e) => tracing::warn!(%e, "the port forward check stopped"),
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// What a clash means for `p`, and what to do.
pub fn describe(p: &PortForward) -> String {
    let whose = if p.local {
        "every connection to it, the host's own too, still reaches the VM, none the program"
    } else {
        "connections from elsewhere still reach the VM; the host's own reach the program"
    };
    format!(
        "host port {}/{} is forwarded to this VM, and a host program now listens on it too: {whose}. \
         Move the program or the forward (`den vm inspect` shows the VM's forwards)",
        p.host_port,
        p.proto.as_str()
    )
}
