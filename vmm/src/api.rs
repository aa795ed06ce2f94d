//! The control API on a Unix socket: one JSON request per line, one JSON reply per line, so that
//! `dend` drives den-vmm and a person can too (`socat - UNIX:/run/den/vm.api`). Protocol in
//! vmm/README.md. A line-based protocol keeps den-vmm free of an async runtime and an HTTP stack,
//! which matters for its memory overhead; `dend` puts the HTTP API in front.

use crate::control::RunControl;
use crate::devices::i8042::I8042;
use crate::devices::serial::SerialPort;
use crate::devices::virtio::mmio::MmioTransport;
use crate::exit::{ExitReason, ExitSignal};
use crate::vcpu::ExitCounters;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest request line accepted.
const MAX_LINE: u64 = 64 * 1024;

/// A request line: `{"op": "<request>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// What to do.
    pub op: Request,
}

/// A request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Start the vCPUs of a VM created with `--wait-start`.
    Start,
    /// Stop the vCPUs (the guest's clock and devices stand still).
    Pause,
    /// Continue after a pause.
    Resume,
    /// Type Ctrl-Alt-Del: the guest's init shuts down; den-vmm exits 0 even if the guest chose
    /// to reboot.
    CtrlAltDel,
    /// End the VM now (disks are flushed); exit code 0.
    Stop,
    /// What the VM is.
    Info,
    /// vCPU exit counts and per-device I/O counters.
    Metrics,
    /// Recent serial console output.
    ConsoleRecent,
}

/// What the API needs from the VM.
pub struct ApiState {
    /// The VM's end.
    pub exit: Arc<ExitSignal>,
    /// Pause/resume.
    pub control: Arc<RunControl>,
    /// Keyboard controller.
    pub i8042: Arc<Mutex<I8042>>,
    /// Serial console.
    pub serial: Arc<Mutex<SerialPort>>,
    /// vCPU exit counters.
    pub counters: Arc<ExitCounters>,
    /// virtio devices in guest order.
    pub transports: Vec<Arc<Mutex<MmioTransport>>>,
    /// Static facts for `info` (cpus, memory, kernel, ...).
    pub facts: Value,
    /// When den-vmm started building the VM.
    pub started: Instant,
    /// Set when Ctrl-Alt-Del was sent.
    pub ctrl_alt_del: Arc<AtomicBool>,
    /// Releases a VM waiting for `start`; `None` once started.
    pub start: Mutex<Option<Sender<()>>>,
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn err(code: &str, message: impl Into<String>) -> Value {
    json!({"ok": false, "error": {"code": code, "message": message.into()}})
}

fn ok(result: Value) -> Value {
    json!({"ok": true, "result": result})
}

impl ApiState {
    fn state(&self) -> &'static str {
        if self.exit.get().is_some() {
            "stopping"
        } else if lock(&self.start).is_some() {
            "created"
        } else if self.control.is_paused() {
            "paused"
        } else {
            "running"
        }
    }

    /// Answers one request.
    pub fn handle(&self, req: &Request) -> Value {
        match req {
            Request::Start => match lock(&self.start).take() {
                Some(tx) => {
                    let _ = tx.send(());
                    ok(json!({"state": "running"}))
                }
                None => err("already_started", "the VM was already started"),
            },
            Request::Pause => match self.control.pause(Duration::from_secs(2)) {
                Ok(()) => ok(json!({"state": "paused"})),
                Err(e) => err("pause_failed", e.to_string()),
            },
            Request::Resume => {
                self.control.resume();
                ok(json!({"state": "running"}))
            }
            Request::CtrlAltDel => {
                if lock(&self.i8042).ctrl_alt_del() {
                    self.ctrl_alt_del.store(true, Ordering::SeqCst);
                    ok(json!({}))
                } else {
                    err("busy", "the guest is not reading its keyboard; use stop instead")
                }
            }
            Request::Stop => {
                self.exit.set(ExitReason::Stopped);
                self.control.wake_all();
                ok(json!({"state": "stopping"}))
            }
            Request::Info => {
                let mut facts = self.facts.clone();
                facts["state"] = json!(self.state());
                facts["pid"] = json!(std::process::id());
                facts["uptime_ms"] = json!(self.started.elapsed().as_millis() as u64);
                ok(facts)
            }
            Request::Metrics => {
                let exits: serde_json::Map<String, Value> =
                    self.counters.snapshot().into_iter().map(|(n, v)| (n.to_string(), json!(v))).collect();
                let devices: Vec<Value> = self
                    .transports
                    .iter()
                    .map(|t| {
                        let t = lock(t);
                        let c: serde_json::Map<String, Value> =
                            t.counters().into_iter().map(|(n, v)| (n.to_string(), json!(v))).collect();
                        json!({"type": t.device_type(), "counters": c})
                    })
                    .collect();
                ok(json!({"vcpu_exits": exits, "devices": devices, "rss_kib": rss_kib()}))
            }
            Request::ConsoleRecent => ok(json!({"output": String::from_utf8_lossy(&lock(&self.serial).recent())})),
        }
    }
}

/// Resident memory of this process in KiB (0 if unknown).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Answers one request line.
pub fn answer(state: &ApiState, line: &str) -> Value {
    match serde_json::from_str::<Envelope>(line) {
        Ok(req) => state.handle(&req.op),
        Err(e) => err("invalid_request", format!("{e}; requests look like {{\"op\": \"info\"}}")),
    }
}

/// Serves the API on `path` (replacing a stale socket file).
pub fn serve(path: &Path, state: Arc<ApiState>) -> std::io::Result<()> {
    let listener = crate::files::listen(path)?;
    std::thread::Builder::new().name("api".into()).spawn(move || {
        crate::seccomp::enter(crate::seccomp::ThreadKind::Api);
        for conn in listener.incoming().flatten() {
            let state = state.clone();
            let _ = std::thread::Builder::new().name("api-conn".into()).spawn(move || serve_conn(conn, &state));
        }
    })?;
    Ok(())
}

fn serve_conn(conn: UnixStream, state: &ApiState) {
    let Ok(mut out) = conn.try_clone() else { return };
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        match Read::by_ref(&mut reader).take(MAX_LINE).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if !line.ends_with('\n') => {
                let _ = writeln!(out, "{}", err("invalid_request", format!("request longer than {MAX_LINE} bytes")));
                return;
            }
            Ok(_) => {
                if line.trim().is_empty() {
                    continue;
                }
                if writeln!(out, "{}", answer(state, line.trim())).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::irq::IrqLine;

    fn state(start: Option<Sender<()>>) -> ApiState {
        let exit = Arc::new(ExitSignal::new());
        ApiState {
            exit: exit.clone(),
            control: Arc::new(RunControl::new()),
            i8042: Arc::new(Mutex::new(I8042::new(IrqLine::counting(), exit))),
            serial: Arc::new(Mutex::new(SerialPort::new(IrqLine::counting(), 64, None))),
            counters: Arc::new(ExitCounters::default()),
            transports: vec![],
            facts: json!({"cpus": 1}),
            started: Instant::now(),
            ctrl_alt_del: Arc::new(AtomicBool::new(false)),
            start: Mutex::new(start),
        }
    }

    #[test]
    fn lifecycle_over_requests() {
        let (tx, rx) = std::sync::mpsc::channel();
        let s = state(Some(tx));
        assert_eq!(answer(&s, r#"{"op":"info"}"#)["result"]["state"], "created");
        assert_eq!(answer(&s, r#"{"op":"start"}"#)["ok"], true);
        rx.recv().unwrap();
        assert_eq!(answer(&s, r#"{"op":"start"}"#)["error"]["code"], "already_started");
        assert_eq!(answer(&s, r#"{"op":"pause"}"#)["result"]["state"], "paused");
        assert_eq!(answer(&s, r#"{"op":"info"}"#)["result"]["state"], "paused");
        assert_eq!(answer(&s, r#"{"op":"resume"}"#)["result"]["state"], "running");
        assert_eq!(answer(&s, r#"{"op":"ctrl_alt_del"}"#)["ok"], true);
        assert!(s.ctrl_alt_del.load(Ordering::SeqCst));
        assert_eq!(answer(&s, r#"{"op":"ctrl_alt_del"}"#)["error"]["code"], "busy", "keyboard buffer full");
        let m = answer(&s, r#"{"op":"metrics"}"#);
        assert!(m["result"]["vcpu_exits"]["io_out"].is_u64() && m["result"]["rss_kib"].as_u64().unwrap() > 0);
        assert_eq!(answer(&s, r#"{"op":"stop"}"#)["ok"], true);
        assert_eq!(s.exit.get(), Some(ExitReason::Stopped));
        assert_eq!(answer(&s, r#"{"op":"info"}"#)["result"]["state"], "stopping");
    }

    #[test]
    fn bad_requests_get_a_clear_error() {
        let s = state(None);
        for bad in ["", "not json", r#"{"op":"explode"}"#, r#"{"op":"info","x":1}"#, "[1,2]"] {
            let r = answer(&s, bad);
            assert_eq!(r["ok"], false, "{bad}");
            assert_eq!(r["error"]["code"], "invalid_request", "{bad}");
        }
        assert!(answer(&s, "nope")["error"]["message"].as_str().unwrap().contains("\"op\""));
    }

    #[test]
    fn socket_round_trip_and_oversized_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        serve(&path, Arc::new(state(None))).unwrap();
        let c = UnixStream::connect(&path).unwrap();
        let mut w = c.try_clone().unwrap();
        let mut r = BufReader::new(c);
        writeln!(w, r#"{{"op":"info"}}"#).unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!((v["ok"].clone(), v["result"]["cpus"].clone()), (json!(true), json!(1)));
        let huge = "x".repeat(MAX_LINE as usize + 10);
        let _ = w.write_all(huge.as_bytes());
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(line.contains("longer than"), "{line}");
    }
}
