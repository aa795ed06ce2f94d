//! Published ports, like Docker Desktop's: a container's `-p 8080:80` makes host
//! `127.0.0.1:8080` reach it. The publisher follows dockerd's container events; after each one
//! (and at start) it lists the running containers and makes the host listeners match their
//! published TCP ports, each connection forwarded through the agent to the same port inside the
//! sandbox, where dockerd publishes it. A container's forward goes away with it.

use super::upstream;
use super::Bridge;
use den_agent_proto::{AgentClient, ForwardTarget};
use http_body_util::BodyExt;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Most ports published on the host at once (the sandbox's dockerd says which; it is a guest).
pub const MAX_PUBLISHED: usize = 256;

/// The published TCP ports in a `GET /containers/json` answer, at most [`MAX_PUBLISHED`].
pub fn published(list: &serde_json::Value) -> BTreeSet<u16> {
    let ports = list.as_array().into_iter().flatten().filter_map(|c| c["Ports"].as_array()).flatten();
    let all: BTreeSet<u16> = ports
        .filter(|p| p["Type"].as_str().unwrap_or("tcp") == "tcp")
        .filter_map(|p| p["PublicPort"].as_u64().and_then(|n| u16::try_from(n).ok()))
        .collect();
    if all.len() > MAX_PUBLISHED {
        tracing::warn!(
            ports = all.len(),
            "docker: more published ports than Den forwards; only the first {MAX_PUBLISHED}"
        );
    }
    all.into_iter().take(MAX_PUBLISHED).collect()
}

/// Follows the sandbox while it runs; ends when the process does.
pub async fn run(bridge: Arc<Bridge>) {
    let mut open: HashMap<u16, JoinHandle<()>> = HashMap::new();
    let mut reported = BTreeSet::new();
    loop {
        if let Some(agent) = bridge.running_agent().await {
            if let Err(e) = follow(&bridge, &agent, &mut open, &mut reported).await {
                tracing::debug!(%e, "docker port publisher");
            }
        }
        sync(&bridge, None, &BTreeSet::new(), &mut open, &mut reported).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Syncs at once, then after every container event, until the events stream ends.
async fn follow(
    bridge: &Arc<Bridge>,
    agent: &AgentClient,
    open: &mut HashMap<u16, JoinHandle<()>>,
    reported: &mut BTreeSet<u16>,
) -> Result<(), String> {
    let filters = r#"{"type":["container"]}"#;
    let path = format!(
        "/events?filters={}",
        filters.replace('"', "%22").replace('{', "%7B").replace('}', "%7D").replace('[', "%5B").replace(']', "%5D")
    );
    let head = tokio::time::timeout(upstream::JSON_WAIT, upstream::get(agent, &path)).await;
    let mut events = head.map_err(|_| "dockerd did not answer /events".to_string())??.into_body();
    loop {
        let list = upstream::get_json(agent, "/containers/json").await?;
        sync(bridge, Some(agent), &published(&list), open, reported).await;
        match events.frame().await {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Ok(()),
        }
    }
}

/// Opens listeners for `want` that are not open, closes those no longer wanted.
async fn sync(
    bridge: &Arc<Bridge>,
    agent: Option<&AgentClient>,
    want: &BTreeSet<u16>,
    open: &mut HashMap<u16, JoinHandle<()>>,
    reported: &mut BTreeSet<u16>,
) {
    open.retain(|port, task| {
        let keep = want.contains(port) && !task.is_finished();
        if !keep {
            task.abort();
            tracing::info!(port, "docker: published port closed");
        }
        keep
    });
    let Some(agent) = agent else { return };
    let missing: Vec<u16> = want.iter().copied().filter(|p| !open.contains_key(p)).collect();
    for port in missing {
        // Each refusal is an event once per port (the sandbox is a guest: it may ask again
        // and again).
        let first = reported.len() < MAX_PUBLISHED && reported.insert(port);
        if port < 1024 {
            let detail = format!("port {port} is below 1024; Den publishes only unprivileged ports on the host");
            if first {
                bridge.den.event("dend", "docker.port_refused", bridge.sandbox.name(), &detail);
            }
            open.insert(port, tokio::spawn(std::future::pending()));
            continue;
        }
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => {
                tracing::info!(port, "docker: published port open on 127.0.0.1");
                open.insert(port, tokio::spawn(serve(listener, agent.clone(), port)));
            }
            Err(e) => {
                let detail = format!(
                    "127.0.0.1:{port} is taken on the host ({e}); the container is reachable only inside the sandbox"
                );
                if first {
                    tracing::warn!(port, %e, "docker: cannot publish");
                    bridge.den.event("dend", "docker.port_busy", bridge.sandbox.name(), &detail);
                }
                open.insert(port, tokio::spawn(std::future::pending()));
            }
        }
    }
}

async fn serve(listener: TcpListener, agent: AgentClient, port: u16) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let agent = agent.clone();
        tokio::spawn(async move {
            let target = ForwardTarget::Tcp { host: "127.0.0.1".into(), port };
            if let Ok(mut guest) = agent.forward_io(target).await {
                let _ = tokio::io::copy_bidirectional(&mut tcp, &mut guest).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_tcp_ports_of_running_containers() {
        let list = serde_json::json!([
            {"Id": "a", "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                                  {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                                  {"PrivatePort": 443, "Type": "tcp"}]},
            {"Id": "b", "Ports": [{"IP": "0.0.0.0", "PrivatePort": 53, "PublicPort": 5353, "Type": "udp"}]},
            {"Id": "c"}
        ]);
        assert_eq!(published(&list).into_iter().collect::<Vec<_>>(), [8080]);
        assert!(published(&serde_json::json!({"message": "x"})).is_empty());
    }
}
