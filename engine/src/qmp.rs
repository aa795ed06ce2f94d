//! A small QMP client (QEMU Machine Protocol: JSON objects, one per line, over a Unix socket).
//! After the greeting and `qmp_capabilities`, commands carry an `id` and their replies are
//! matched by it; asynchronous events (`SHUTDOWN`, `STOP`, `RESUME`, `RESET`, ...) go to a
//! broadcast channel and never into a command's reply. The last `SHUTDOWN` is kept, because
//! it says why QEMU is about to exit. QEMU serves one QMP client at a time: drop every clone of
//! a [`Qmp`] to release the monitor for the next one.

use super::EngineError;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{broadcast, oneshot, watch};

/// How long a command may take to be answered.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest line accepted from QEMU.
const MAX_LINE: usize = 4 << 20;

/// An asynchronous QMP event.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// Event name (`SHUTDOWN`, `STOP`, `RESUME`, `RESET`, ...).
    pub name: String,
    /// Its `data` object (`Null` when it has none).
    pub data: Value,
}

/// A `SHUTDOWN` (or `RESET`) event's meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownInfo {
    /// The guest asked for it (as opposed to the host).
    pub guest: bool,
    /// QEMU's reason: `guest-shutdown`, `guest-reset`, `guest-panic`, `host-qmp-quit`,
    /// `host-signal`, ...
    pub reason: String,
}

impl ShutdownInfo {
    fn from_data(data: &Value) -> ShutdownInfo {
        ShutdownInfo {
            guest: data.get("guest").and_then(Value::as_bool).unwrap_or(false),
            reason: data.get("reason").and_then(Value::as_str).unwrap_or("unknown").to_string(),
        }
    }
}

type Reply = Result<Value, (String, String)>;

#[derive(Default)]
struct Shared {
    waiters: HashMap<u64, oneshot::Sender<Reply>>,
    closed: Option<String>,
    last_shutdown: Option<ShutdownInfo>,
}

struct Inner {
    path: PathBuf,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    shared: Arc<Mutex<Shared>>,
    next_id: AtomicU64,
    events: broadcast::Sender<QmpEvent>,
    closed: watch::Receiver<bool>,
    reader: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A connected QMP monitor; cheap to clone.
#[derive(Clone)]
pub struct Qmp {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Qmp {
    /// Connects to the monitor at `path`, reads the greeting and negotiates capabilities, all
    /// within `timeout`.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Qmp, EngineError> {
        let err = |why: String| EngineError::Control { path: path.display().to_string(), why };
        let setup = async {
            let sock = UnixStream::connect(path).await.map_err(|e| err(format!("connect: {e}")))?;
            let (rd, wr) = sock.into_split();
            let mut rd = BufReader::new(rd);
            let greeting = read_json(&mut rd).await.map_err(|e| err(format!("reading the greeting: {e}")))?;
            if greeting.get("QMP").is_none() {
                return Err(err(format!("expected a QMP greeting, got {greeting}")));
            }
            Ok((rd, wr))
        };
        let (rd, wr) = match tokio::time::timeout(timeout, setup).await {
            Ok(r) => r?,
            Err(_) => return Err(err(format!("no QMP greeting within {timeout:?} (is another client connected?)"))),
        };
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (events, _) = broadcast::channel(64);
        let (closed_tx, closed) = watch::channel(false);
        let reader = tokio::spawn(read_loop(rd, shared.clone(), events.clone(), closed_tx)).abort_handle();
        let qmp = Qmp {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: tokio::sync::Mutex::new(wr),
                shared,
                next_id: AtomicU64::new(1),
                events,
                closed,
                reader,
            }),
        };
        qmp.execute_timeout("qmp_capabilities", None, timeout).await?;
        Ok(qmp)
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `command` with optional `arguments` and returns its `return` value.
    pub async fn execute(&self, command: &str, arguments: Option<Value>) -> Result<Value, EngineError> {
        self.execute_timeout(command, arguments, COMMAND_TIMEOUT).await
    }

    /// Like [`Qmp::execute`] with its own timeout.
    pub async fn execute_timeout(
        &self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, EngineError> {
        let err = |why: String| EngineError::Control {
            path: self.inner.path.display().to_string(),
            why: format!("`{command}`: {why}"),
        };
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut s = lock(&self.inner.shared);
            if let Some(why) = &s.closed {
                return Err(err(why.clone()));
            }
            s.waiters.insert(id, tx);
        }
        let mut msg = json!({"execute": command, "id": id});
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push('\n');
        let exchange = async {
            self.inner.writer.lock().await.write_all(line.as_bytes()).await.map_err(|e| err(format!("write: {e}")))?;
            match rx.await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err((class, desc))) => Err(EngineError::Refused {
                    path: self.inner.path.display().to_string(),
                    command: command.into(),
                    class,
                    desc,
                }),
                Err(_) => Err(err(lock(&self.inner.shared).closed.clone().unwrap_or_else(|| "connection lost".into()))),
            }
        };
        let res = tokio::time::timeout(timeout, exchange).await;
        lock(&self.inner.shared).waiters.remove(&id);
        res.unwrap_or_else(|_| Err(err(format!("no reply within {timeout:?}"))))
    }

    /// Subscribes to events from now on.
    pub fn events(&self) -> broadcast::Receiver<QmpEvent> {
        self.inner.events.subscribe()
    }

    /// The last `SHUTDOWN` event seen on this connection.
    pub fn last_shutdown(&self) -> Option<ShutdownInfo> {
        lock(&self.inner.shared).last_shutdown.clone()
    }

    /// Why the connection ended, once it has.
    pub fn closed_reason(&self) -> Option<String> {
        lock(&self.inner.shared).closed.clone()
    }

    /// Waits until QEMU closes the connection (it does when it exits).
    pub async fn closed(&self) {
        let mut rx = self.inner.closed.clone();
        let _ = rx.wait_for(|c| *c).await;
    }
}

async fn read_json<R: AsyncBufRead + Unpin>(rd: &mut R) -> std::io::Result<Value> {
    let mut buf = Vec::new();
    let n = (&mut *rd).take(MAX_LINE as u64).read_until(b'\n', &mut buf).await?;
    if n == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "QEMU closed the connection"));
    }
    if buf.last() != Some(&b'\n') && n >= MAX_LINE {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "line longer than 4 MiB"));
    }
    serde_json::from_slice(&buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

async fn read_loop<R: AsyncBufRead + Unpin>(
    mut rd: R,
    shared: Arc<Mutex<Shared>>,
    events: broadcast::Sender<QmpEvent>,
    closed: watch::Sender<bool>,
) {
    let why = loop {
        let msg = match read_json(&mut rd).await {
            Ok(m) => m,
            Err(e) => break e.to_string(),
        };
        if let Some(name) = msg.get("event").and_then(Value::as_str) {
            let ev = QmpEvent { name: name.to_string(), data: msg.get("data").cloned().unwrap_or(Value::Null) };
            if ev.name == "SHUTDOWN" {
                lock(&shared).last_shutdown = Some(ShutdownInfo::from_data(&ev.data));
            }
            let _ = events.send(ev);
            continue;
        }
        let Some(id) = msg.get("id").and_then(Value::as_u64) else {
            tracing::debug!(%msg, "QMP message without id ignored");
            continue;
        };
        let reply = match (msg.get("return"), msg.get("error")) {
            (Some(v), _) => Ok(v.clone()),
            (None, Some(e)) => Err((
                e.get("class").and_then(Value::as_str).unwrap_or("UnknownError").to_string(),
                e.get("desc").and_then(Value::as_str).unwrap_or("(no description)").to_string(),
            )),
            (None, None) => Err(("InvalidReply".into(), format!("neither return nor error: {msg}"))),
        };
        if let Some(tx) = lock(&shared).waiters.remove(&id) {
            let _ = tx.send(reply);
        }
    };
    {
        let mut s = lock(&shared);
        s.closed = Some(format!("connection closed ({why})"));
        s.waiters.clear();
    }
    let _ = closed.send(true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixListener;

    /// A fake QEMU monitor: greeting, capabilities, then a few scripted commands.
    async fn fake_qemu(listener: UnixListener) {
        let (sock, _) = listener.accept().await.unwrap();
        let (rd, mut wr) = sock.into_split();
        let mut rd = BufReader::new(rd);
        let send = |v: Value| format!("{v}\n");
        wr.write_all(send(json!({"QMP": {"version": {}, "capabilities": []}})).as_bytes()).await.unwrap();
        loop {
            let Ok(req) = read_json(&mut rd).await else { return };
            let id = req["id"].clone();
            let out = match req["execute"].as_str().unwrap() {
                "qmp_capabilities" => send(json!({"return": {}, "id": id})),
                // An event arrives before the reply: it must not be taken for it.
                "stop" => {
                    send(json!({"event": "STOP", "data": {}, "timestamp": {}})) + &send(json!({"return": {}, "id": id}))
                }
                "query-status" => send(json!({"return": {"status": "paused", "running": false}, "id": id})),
                "system_powerdown" => {
                    let ev = json!({"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}});
                    wr.write_all((send(json!({"return": {}, "id": id})) + &send(ev)).as_bytes()).await.unwrap();
                    return; // QEMU exits: the connection closes.
                }
                "hang" => continue,
                other => send(
                    json!({"error": {"class": "CommandNotFound", "desc": format!("The command {other} has not been found")}, "id": id}),
                ),
            };
            wr.write_all(out.as_bytes()).await.unwrap();
        }
    }

    #[tokio::test]
    async fn commands_events_errors_and_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let server = tokio::spawn(fake_qemu(UnixListener::bind(&path).unwrap()));
        let qmp = Qmp::connect(&path, Duration::from_secs(2)).await.unwrap();
        let mut events = qmp.events();

        assert_eq!(qmp.execute("stop", None).await.unwrap(), json!({}));
        assert_eq!(events.recv().await.unwrap().name, "STOP");
        let status = qmp.execute("query-status", None).await.unwrap();
        assert_eq!(status["status"], "paused");

        let e = qmp.execute("frobnicate", Some(json!({"x": 1}))).await.unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("`frobnicate`") && msg.contains("CommandNotFound: The command frobnicate"), "{msg}");

        let e = qmp.execute_timeout("hang", None, Duration::from_millis(100)).await.unwrap_err();
        assert!(e.to_string().contains("`hang`: no reply within"), "{e}");

        assert!(qmp.last_shutdown().is_none());
        qmp.execute("system_powerdown", None).await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), qmp.closed()).await.unwrap();
        let ev = events.recv().await.unwrap();
        assert_eq!(ev.name, "SHUTDOWN");
        assert_eq!(qmp.last_shutdown(), Some(ShutdownInfo { guest: true, reason: "guest-shutdown".into() }));
        let e = qmp.execute("query-status", None).await.unwrap_err();
        assert!(e.to_string().contains("connection closed"), "{e}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_silent_or_foreign_server_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let e = Qmp::connect(&path, Duration::from_millis(200)).await.unwrap_err();
        assert!(e.to_string().contains("no QMP greeting within"), "{e}");
        let _ = listener.accept().await.unwrap();

        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"{\"hello\": 1}\n").await.unwrap();
        });
        let e = Qmp::connect(&path, Duration::from_secs(2)).await.unwrap_err();
        assert!(e.to_string().contains("expected a QMP greeting"), "{e}");
        server.await.unwrap();

        let e = Qmp::connect(&dir.path().join("none.sock"), Duration::from_secs(1)).await.unwrap_err();
        assert!(e.to_string().contains("none.sock") && e.to_string().contains("connect"), "{e}");
    }
}
