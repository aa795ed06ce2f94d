//! [`Vm`]: one handle per VM process with the same operations for both engines. It holds the
//! engine's control connection (QEMU's QMP, which serves one client and reports why QEMU shuts
//! down) and the shared agent session.

use super::process::{self, Proc};
use super::qemu::{self, Accel, Qemu};
use super::vmm::{self, VmmApi};
use super::{EndReason, Ended, EngineError, EngineKind, Running, VmState};
use den_agent_proto::AgentClient;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a killed process may take to disappear.
pub(super) const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `quit` / `stop` may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a graceful shutdown waits for the agent to take the power-off request.
const AGENT_ASK_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) enum Ctl {
    Qemu(Qemu),
    Vmm(VmmApi),
}

pub(super) struct Inner {
    running: Running,
    ctl: Ctl,
    /// The cached agent session (QEMU's agent socket serves one client at a time).
    agent: tokio::sync::Mutex<Option<AgentClient>>,
    /// `dend` asked the engine to stop (`quit` / `stop`).
    host_stop: AtomicBool,
    /// `dend` sent SIGKILL.
    host_kill: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The agent session's tasks outlive its handles; close it so that QEMU's agent socket
        // (one client at a time) is free for the next handle.
        if let Some(c) = self.agent.get_mut() {
            c.close();
        }
    }
}

/// A VM process under control (started or re-adopted by this `dend`); cheap to clone, and
/// every operation takes `&self`, so a task can wait for the end while others pause or stop.
#[derive(Clone)]
pub struct Vm {
    inner: Arc<Inner>,
}

pub(super) fn proc_of(r: &Running) -> Proc {
    Proc { pid: r.pid, start_time: r.start_time }
}

/// Connects a new agent session: QEMU's virtio-serial socket, or den-vmm's vsock (port 1024).
pub(super) async fn connect_agent(running: &Running, timeout: Duration) -> Result<AgentClient, EngineError> {
    let res = match running.engine {
        EngineKind::Qemu => AgentClient::connect_unix(&running.agent, timeout).await,
        EngineKind::Vmm => AgentClient::connect_vsock(&running.agent, vmm::AGENT_PORT, timeout).await,
    };
    res.map_err(|source| EngineError::Agent { pid: running.pid, source })
}

/// How a QEMU process ended, from its last `SHUTDOWN` event and its exit status.
pub(super) fn qemu_end(shutdown: Option<String>, status: Option<process::ExitStatus>, killed: bool) -> Ended {
    let (reason, detail) = match (&shutdown, status) {
        _ if killed => (EndReason::Killed, "killed (SIGKILL) by dend".to_string()),
        (Some(r), _) => (qemu::end_reason(r), format!("QEMU SHUTDOWN event, reason `{r}`")),
        (None, Some(st)) if st.signal.is_some() => (EndReason::Killed, format!("QEMU was killed ({st})")),
        (None, Some(st)) if st.code != Some(0) => (EndReason::Failed, format!("QEMU failed ({st}; see engine.log)")),
        (None, Some(st)) => (EndReason::Unknown, format!("QEMU exited ({st}) without a SHUTDOWN event")),
        (None, None) => (EndReason::Unknown, "QEMU ended; no SHUTDOWN event was seen (killed or crashed?)".into()),
    };
    Ended { reason, status, detail }
}

impl Vm {
    pub(super) fn new(running: Running, ctl: Ctl) -> Vm {
        Vm {
            inner: Arc::new(Inner {
                running,
                ctl,
                agent: tokio::sync::Mutex::new(None),
                host_stop: AtomicBool::new(false),
                host_kill: AtomicBool::new(false),
            }),
        }
    }

    pub(super) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub(super) fn is(&self, other: &std::sync::Weak<Inner>) -> bool {
        std::ptr::eq(Arc::as_ptr(&self.inner), other.as_ptr())
    }

    /// What to store to find this VM again after a restart.
    pub fn running(&self) -> &Running {
        &self.inner.running
    }

    /// QEMU's accelerator; `None` for den-vmm (always KVM).
    pub fn accel(&self) -> Option<Accel> {
        match &self.inner.ctl {
            Ctl::Qemu(q) => Some(q.accel()),
            Ctl::Vmm(_) => None,
        }
    }

    /// The process is still alive.
    pub fn is_alive(&self) -> bool {
        process::alive(proc_of(&self.inner.running))
    }

    fn check_alive(&self) -> Result<(), EngineError> {
        if self.is_alive() {
            Ok(())
        } else {
            Err(EngineError::Gone { pid: self.inner.running.pid })
        }
    }

    fn gone_or<T>(&self, e: EngineError) -> Result<T, EngineError> {
        if self.is_alive() {
            Err(e)
        } else {
            Err(EngineError::Gone { pid: self.inner.running.pid })
        }
    }

    /// The engine's view of the VM (QMP `query-status`, den-vmm `info`).
    pub async fn state(&self) -> Result<VmState, EngineError> {
        self.check_alive()?;
        let r = match &self.inner.ctl {
            Ctl::Qemu(q) => q.state().await,
            Ctl::Vmm(api) => api.state().await,
        };
        r.or_else(|e| self.gone_or(e))
    }

    /// Stops the vCPUs; the guest (and its agent) stand still until [`Vm::resume`].
    pub async fn pause(&self) -> Result<(), EngineError> {
        self.check_alive()?;
        let r = match &self.inner.ctl {
            Ctl::Qemu(q) => q.pause().await,
            Ctl::Vmm(api) => api.call("pause").await.map(drop),
        };
        r.or_else(|e| self.gone_or(e))
    }

    /// Tells the guest that disk `index` grew to `bytes` (the file is already that size):
    /// QEMU's `block_resize`. den-vmm reads disk sizes at start only.
    pub async fn grow_disk(&self, index: usize, bytes: u64) -> Result<(), EngineError> {
        self.check_alive()?;
        let r = match &self.inner.ctl {
            Ctl::Qemu(q) => q
                .qmp()
                .execute("block_resize", Some(serde_json::json!({"device": format!("disk{index}"), "size": bytes})))
                .await
                .map(drop),
            Ctl::Vmm(_) => {
                return Err(EngineError::Unsupported("den-vmm resizes disks while the VM is stopped".into()))
            }
        };
        r.or_else(|e| self.gone_or(e))
    }

    /// Continues after [`Vm::pause`] (harmless when running).
    pub async fn resume(&self) -> Result<(), EngineError> {
        self.check_alive()?;
        let r = match &self.inner.ctl {
            Ctl::Qemu(q) => q.resume().await,
            Ctl::Vmm(api) => api.call("resume").await.map(drop),
        };
        r.or_else(|e| self.gone_or(e))
    }

    /// The shared agent session, connected on first use (and again when it was lost), within
    /// `timeout`.
    pub async fn agent(&self, timeout: Duration) -> Result<AgentClient, EngineError> {
        let mut cached = self.inner.agent.lock().await;
        if let Some(c) = cached.as_ref() {
            let closed = tokio::select! {
                biased;
                _ = c.session().closed() => true,
                _ = std::future::ready(()) => false,
            };
            if !closed {
                return Ok(c.clone());
            }
        }
        *cached = None;
        let c = connect_agent(&self.inner.running, timeout).await?;
        *cached = Some(c.clone());
        Ok(c)
    }

    /// Recent serial console output, at most about `max` bytes (QEMU: `console.log`; den-vmm:
    /// its 64 KiB ring buffer).
    pub async fn console_recent(&self, max: usize) -> Result<String, EngineError> {
        match &self.inner.ctl {
            Ctl::Qemu(_) => Qemu::console_recent(&self.inner.running, max),
            Ctl::Vmm(api) => {
                let s = api.console_recent().await?;
                let cut = s.len().saturating_sub(max);
                let cut = (cut..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
                Ok(s[cut..].to_string())
            }
        }
    }

    /// Asks the guest to power off and waits up to `timeout`; then stops the engine
    /// ([`Vm::stop`]). The guest is resumed first if paused. It is asked through the agent
    /// (every Den guest runs one); if the agent does not take the request, through the
    /// engine: ACPI power button (QEMU `system_powerdown`) or Ctrl-Alt-Del (den-vmm).
    pub async fn shutdown(&self, timeout: Duration) -> Result<Ended, EngineError> {
        if !self.is_alive() {
            return Ok(self.wait_exit().await);
        }
        let _ = self.resume().await;
        let ask_agent = async {
            let a = self.agent(AGENT_ASK_TIMEOUT).await?;
            a.shutdown(false).await.map_err(|source| EngineError::Agent { pid: self.inner.running.pid, source })
        };
        let asked = match tokio::time::timeout(AGENT_ASK_TIMEOUT.min(timeout), ask_agent).await {
            Ok(Ok(())) => "the agent",
            Ok(Err(e)) => {
                tracing::info!(pid = self.inner.running.pid, "agent power-off not taken ({e}); asking the engine");
                self.engine_power_button().await
            }
            Err(_) => {
                tracing::info!(pid = self.inner.running.pid, "agent power-off timed out; asking the engine");
                self.engine_power_button().await
            }
        };
        if let Ok(ended) = tokio::time::timeout(timeout, self.wait_exit()).await {
            return Ok(ended);
        }
        tracing::warn!(pid = self.inner.running.pid, "no power-off within {timeout:?} (asked {asked}); stopping");
        let mut ended = self.stop().await?;
        ended.detail = format!("the guest did not power off within {timeout:?} (asked {asked}); {}", ended.detail);
        Ok(ended)
    }

    async fn engine_power_button(&self) -> &'static str {
        let r = match &self.inner.ctl {
            Ctl::Qemu(q) => q.powerdown().await.map(|_| "the ACPI power button"),
            Ctl::Vmm(api) => api.call("ctrl_alt_del").await.map(|_| "Ctrl-Alt-Del"),
        };
        r.unwrap_or_else(|e| {
            tracing::warn!(pid = self.inner.running.pid, "{e}");
            "nobody (the engine refused)"
        })
    }

    /// Ends the VM now without asking the guest (QEMU `quit`, den-vmm `stop`; disks are
    /// flushed); SIGKILL if that does not end it within 10 s.
    pub async fn stop(&self) -> Result<Ended, EngineError> {
        if !self.is_alive() {
            return Ok(self.wait_exit().await);
        }
        self.inner.host_stop.store(true, Ordering::SeqCst);
        let r = match &self.inner.ctl {
            Ctl::Qemu(q) => q.quit().await,
            Ctl::Vmm(api) => api.call("stop").await.map(drop),
        };
        match r {
            Ok(()) => match tokio::time::timeout(STOP_TIMEOUT, self.wait_exit()).await {
                Ok(ended) => return Ok(ended),
                Err(_) => tracing::warn!(pid = self.inner.running.pid, "did not stop within {STOP_TIMEOUT:?}"),
            },
            Err(e) => tracing::warn!(pid = self.inner.running.pid, "stop request failed ({e}); killing"),
        }
        self.kill().await
    }

    /// SIGKILL now, then waits for the end.
    pub async fn kill(&self) -> Result<Ended, EngineError> {
        self.inner.host_kill.store(true, Ordering::SeqCst);
        process::kill(proc_of(&self.inner.running), KILL_TIMEOUT).await?;
        Ok(self.wait_exit().await)
    }

    /// Waits for the process to end, whoever ends it, and says why as far as known.
    pub async fn wait_exit(&self) -> Ended {
        let status = process::wait_exit(proc_of(&self.inner.running)).await;
        let killed = self.inner.host_kill.load(Ordering::SeqCst);
        let host_stop = self.inner.host_stop.load(Ordering::SeqCst);
        match &self.inner.ctl {
            Ctl::Qemu(q) => {
                // The SHUTDOWN event precedes the exit; let the reader see the connection close.
                let _ = tokio::time::timeout(Duration::from_secs(1), q.qmp().closed()).await;
                let seen = q.qmp().last_shutdown().map(|s| s.reason);
                qemu_end(seen, status, killed)
            }
            Ctl::Vmm(_) if killed => {
                Ended { reason: EndReason::Killed, status, detail: "killed (SIGKILL) by dend".into() }
            }
            Ctl::Vmm(_) => {
                let (reason, detail) = vmm::end_of(status, host_stop);
                let reason = if reason == EndReason::Unknown && host_stop { EndReason::HostStop } else { reason };
                Ended { reason, status, detail }
            }
        }
    }
}
