//! WebSocket endpoints: the serial console (`/vms/{name}/console/ws`: binary frames carry
//! terminal bytes both ways; a text frame `{"resize":{"cols":C,"rows":R}}` sets the guest
//! console's size through the agent, other text frames are typed as they are) and the events stream (`/events/ws?after=N`: one JSON event per
//! text frame, first the stored ones after `N`, then live ones as they happen).

use super::{ApiError, Caller};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Extension;
use den_core::vm::VmState;
use den_vms::{Den, VmError};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /api/v1/vms/{name}/console/ws`: attach to a running VM's serial console.
pub(super) async fn console(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let vm = den.store.vm(&name).map_err(VmError::from)?;
    let Some(running) = vm.running.clone().filter(|_| matches!(vm.state, VmState::Running | VmState::Paused)) else {
        return Err(VmError::Conflict { name: vm.spec.name, state: vm.state.as_str(), hint: "start it first" }.into());
    };
    let (prefix, stream) = den_engine::console_stream(&running).await.map_err(|e| VmError::Engine(e.to_string()))?;
    den.event(&caller.user, "vm.console_attached", &vm.spec.name, "");
    let (size_tx, size_rx) = tokio::sync::watch::channel(None);
    tokio::spawn(follow_resizes(den, vm, size_rx));
    Ok(ws.on_upgrade(move |socket| bridge_console(socket, prefix, stream, size_tx)))
}

/// A terminal size the page asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
struct Size {
    cols: u16,
    rows: u16,
}

#[derive(Deserialize)]
struct Control {
    resize: Size,
}

/// The size in a control frame, if it is one (and a sane one).
fn resize_of(text: &str) -> Option<Size> {
    let c: Control = serde_json::from_str(text).ok()?;
    (c.resize.cols > 0 && c.resize.rows > 0 && c.resize.cols <= 1000 && c.resize.rows <= 1000).then_some(c.resize)
}

/// Applies the newest asked-for size to the guest's serial console (`stty` through the agent),
/// until the console session ends. Guests without an agent keep their size.
async fn follow_resizes(
    den: Arc<Den>,
    vm: den_core::vm::VmRecord,
    mut sizes: tokio::sync::watch::Receiver<Option<Size>>,
) {
    while sizes.changed().await.is_ok() {
        let Some(Size { cols, rows }) = *sizes.borrow_and_update() else { continue };
        let Ok(agent) = den.agent(&vm).await else { return };
        let stty = format!("stty -F /dev/ttyS0 rows {rows} cols {cols} 2>/dev/null || busybox stty -F /dev/ttyS0 rows {rows} cols {cols}");
        let bounds = den_agent_proto::Bounds::new(4 << 10, std::time::Duration::from_secs(5));
        let out = agent.exec_output(&["sh", "-c", &stty], bytes::Bytes::new(), bounds).await;
        tracing::debug!(vm = %vm.spec.name, cols, rows, ok = out.is_ok(), "console resize");
    }
}

async fn bridge_console(
    socket: WebSocket,
    prefix: String,
    stream: tokio::net::UnixStream,
    sizes: tokio::sync::watch::Sender<Option<Size>>,
) {
    let (mut tx, mut rx) = socket.split();
    let (mut rd, mut wr) = stream.into_split();
    if !prefix.is_empty() && tx.send(Message::Binary(prefix.into_bytes())).await.is_err() {
        return;
    }
    let to_client = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Message::Binary(buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = tx.send(Message::Close(None)).await;
    };
    let to_vm = async {
        while let Some(Ok(msg)) = rx.next().await {
            let bytes = match msg {
                Message::Binary(b) => b,
                Message::Text(t) => match resize_of(&t) {
                    Some(size) => {
                        let _ = sizes.send(Some(size));
                        continue;
                    }
                    None => t.into_bytes(),
                },
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
    };
    // Whichever side ends first ends the session.
    tokio::select! {
        _ = to_client => {}
        _ = to_vm => {}
    }
}

/// `?after=N`.
#[derive(Deserialize)]
pub(super) struct After {
    #[serde(default)]
    after: i64,
}

/// `GET /api/v1/events/ws?after=N`: stored events after sequence number `N`, then live ones.
pub(super) async fn events(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<After>,
    ws: WebSocketUpgrade,
) -> Response {
    let filter = super::auth::EventFilter::new(&caller);
    ws.on_upgrade(move |socket| stream_events(den, q.after, filter, socket))
}

async fn stream_events(den: Arc<Den>, after: i64, mut filter: super::auth::EventFilter, mut socket: WebSocket) {
    // Subscribed before reading the backlog, so nothing falls between the two.
    let mut live = den.subscribe();
    let mut last = after;
    loop {
        let Ok(batch) = den.store.events(last, 1000) else { return };
        let n = batch.len();
        for e in batch {
            last = e.seq;
            if filter.allows(&den, &e) && send_event(&mut socket, &e).await.is_err() {
                return;
            }
        }
        if n < 1000 {
            break;
        }
    }
    loop {
        tokio::select! {
            ev = live.recv() => match ev {
                Ok(e) if e.seq > last => {
                    last = e.seq;
                    if filter.allows(&den, &e) && send_event(&mut socket, &e).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                // Too slow a reader: catch up from the store.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let Ok(batch) = den.store.events(last, 5000) else { return };
                    for e in batch {
                        last = e.seq;
                        if filter.allows(&den, &e) && send_event(&mut socket, &e).await.is_err() {
                            return;
                        }
                    }
                }
                Err(_) => return,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => {}
            },
        }
    }
}

async fn send_event(socket: &mut WebSocket, e: &den_core::event::Event) -> Result<(), axum::Error> {
    socket.send(Message::Text(serde_json::to_string(e).unwrap_or_default())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_frames_are_recognised() {
        assert_eq!(resize_of(r#"{"resize":{"cols":120,"rows":40}}"#), Some(Size { cols: 120, rows: 40 }));
        assert_eq!(resize_of(r#"{"resize":{"cols":0,"rows":40}}"#), None);
        assert_eq!(resize_of(r#"{"resize":{"cols":70000,"rows":40}}"#), None, "not a u16");
        assert_eq!(resize_of("ls -l\n"), None, "typed text stays text");
    }
}
