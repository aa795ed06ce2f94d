//! A small blocking HTTP/1.1 client for dend's API on its Unix socket (one request per
//! connection). The CLI needs nothing more, and stays free of an async runtime.

use anyhow::{bail, Context};
use den_api_types::{ErrorBody, Task, TaskStatus};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default socket (`$DEN_SOCKET`, else `/run/den/dend.sock`).
pub(crate) fn default_socket() -> PathBuf {
    std::env::var_os("DEN_SOCKET").map(PathBuf::from).unwrap_or_else(|| "/run/den/dend.sock".into())
}

/// A reply: status and JSON body.
pub(crate) struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body (`null` when empty).
    pub body: Value,
}

/// `body` read as the API type `T`, or an error naming what did not fit.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(body: &Value, what: &str) -> anyhow::Result<T> {
    serde_json::from_value(body.clone()).with_context(|| {
        format!("dend's answer for {what} is not what this den understands; are den and dend the same version?")
    })
}

impl Reply {
    /// The body, or an error built from the API's `{code, message}`.
    pub(crate) fn ok(self) -> anyhow::Result<Value> {
        if (200..300).contains(&self.status) {
            return Ok(self.body);
        }
        match serde_json::from_value::<ErrorBody>(self.body) {
            Ok(e) => bail!("{} ({}, HTTP {})", e.message, e.code, self.status),
            Err(_) => bail!("dend answered HTTP {} without an error body saying why; its log may say", self.status),
        }
    }
}

/// Sends one request; the reply's body as JSON.
pub(crate) fn request(socket: &Path, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Reply> {
    let (status, raw) = request_raw(socket, method, path, body)?;
    let body = if raw.is_empty() { Value::Null } else { serde_json::from_slice(&raw).context("dend sent non-JSON")? };
    Ok(Reply { status, body })
}

/// Sends one request; the reply's status and raw body.
pub(crate) fn request_raw(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut s = UnixStream::connect(socket).with_context(|| {
        format!("cannot reach dend at {}: is it running? (start it with `dend`, or set DEN_SOCKET)", socket.display())
    })?;
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: dend\r\nConnection: close\r\n");
    if body.is_some() {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", payload.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(payload.as_bytes())?;
    read_reply(s)
}

/// Sends a file as the body (`application/octet-stream`), with a progress bar on a terminal.
pub(crate) fn upload(socket: &Path, path: &str, file: &Path) -> anyhow::Result<Reply> {
    upload_with(socket, "POST", path, file)
}

/// [`upload`] with another method.
pub(crate) fn upload_with(socket: &Path, method: &str, path: &str, file: &Path) -> anyhow::Result<Reply> {
    let mut f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let len = f.metadata()?.len();
    let mut s = UnixStream::connect(socket).with_context(|| {
        format!("cannot reach dend at {}: is it running? (start it with `dend`, or set DEN_SOCKET)", socket.display())
    })?;
    s.set_read_timeout(Some(Duration::from_secs(3600)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: dend\r\nConnection: close\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes())?;
    let bar = crate::progress::bytes_bar(len, "sending");
    let mut buf = vec![0u8; 1 << 16];
    // dend may refuse early (too large) and close: its answer is still read below.
    let sent: std::io::Result<()> = (|| loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n])?;
        if let Some(b) = &bar {
            b.inc(n as u64);
        }
    })();
    if let Some(b) = &bar {
        b.set_message("waiting for dend");
    }
    let (status, raw) = read_reply(s).map_err(|e| match &sent {
        Err(w) => anyhow::anyhow!("sending {} to dend failed: {w}", file.display()),
        Ok(()) => e,
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let body = if raw.is_empty() { Value::Null } else { serde_json::from_slice(&raw).context("dend sent non-JSON")? };
    Ok(Reply { status, body })
}

/// Reads one HTTP/1.1 reply (status and body).
fn read_reply(s: UnixStream) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut r = BufReader::new(s);
    let mut status_line = String::new();
    r.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("dend sent a bad status line: {status_line:?}"))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().ok(),
                "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
    }
    let mut raw = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).context("bad chunk size from dend")?;
            if n == 0 {
                break;
            }
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk)?;
            raw.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        raw.resize(n, 0);
        r.read_exact(&mut raw)?;
    } else {
        r.read_to_end(&mut raw)?;
    }
    Ok((status, raw))
}

/// Waits for a task to end; fails with its error and log if it failed.
/// On a terminal, a bar shows the task's progress and its latest log line.
pub(crate) fn wait_task(socket: &Path, task: &str) -> anyhow::Result<Task> {
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let b = indicatif::ProgressBar::new(100);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner:.cyan} [{elapsed:>4}] {bar:30.cyan/blue} {pos:>3}% {wide_msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.enable_steady_tick(Duration::from_millis(120));
        b
    });
    loop {
        let body = request(socket, "GET", &format!("/api/v1/tasks/{task}"), None)?.ok()?;
        let t: Task = typed(&body, &format!("task {task}"))?;
        if let Some(b) = &bar {
            b.set_position(u64::from(t.progress));
            b.set_message(format!("{} {}", t.kind, t.log.lines().last().unwrap_or("")));
        }
        match t.status {
            TaskStatus::Running => std::thread::sleep(Duration::from_millis(200)),
            TaskStatus::Ok => {
                if let Some(b) = &bar {
                    b.finish_and_clear();
                }
                return Ok(t);
            }
            _ => {
                if let Some(b) = &bar {
                    b.finish_and_clear();
                }
                let err = t.error.as_deref().unwrap_or(t.status.as_str());
                bail!("task {task} failed: {err}\n{}", t.log)
            }
        }
    }
}

/// Opens a WebSocket to dend's `path` over the Unix socket. API errors (4xx with a JSON body)
/// come back as errors carrying dend's message.
pub(crate) fn websocket(socket: &Path, path: &str) -> anyhow::Result<tungstenite::WebSocket<UnixStream>> {
    use tungstenite::client::IntoClientRequest;
    let s = UnixStream::connect(socket).with_context(|| {
        format!("cannot reach dend at {}: is it running? (start it with `dend`, or set DEN_SOCKET)", socket.display())
    })?;
    let req = format!("ws://dend{path}").into_client_request()?;
    match tungstenite::client(req, s) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            let body: Option<ErrorBody> = resp.body().as_deref().and_then(|b| serde_json::from_slice(b).ok());
            let msg = body.map_or_else(|| "refused".to_string(), |e| e.message);
            bail!("{msg} (HTTP {})", resp.status().as_u16())
        }
        Err(e) => bail!("WebSocket to dend: {e}"),
    }
}
