//! The engine-independent entry points used by the rest of `dend`. They take the stored
//! [`Running`] record; behind them, one shared [`Vm`] handle per live process (created by
//! [`launch`], or by the first call after a `dend` restart, which re-adopts the process) keeps
//! the control connection and the agent session.

use super::handle::{connect_agent, proc_of, qemu_end, Ctl, Vm, KILL_TIMEOUT};
use super::process::{self, Proc};
use super::vmm::{self, VmmApi};
use super::{qemu, EndReason, Ended, EngineError, EngineKind, LaunchSpec, Running, VmState};
use den_agent_proto::AgentClient;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// How long [`agent`] waits for the guest agent's handshake.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a handle stays registered after its process ended (so late waiters still learn why).
const FORGET_AFTER_END: Duration = Duration::from_secs(60);

static HANDLES: LazyLock<Mutex<HashMap<Proc, Vm>>> = LazyLock::new(Default::default);
/// Serializes re-adoption: QMP serves one client, so two concurrent adopts would block each other.
static ADOPTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn handles() -> std::sync::MutexGuard<'static, HashMap<Proc, Vm>> {
    HANDLES.lock().unwrap_or_else(|p| p.into_inner())
}

fn known(running: &Running) -> Option<Vm> {
    handles().get(&proc_of(running)).cloned()
}

fn register(vm: Vm) -> Vm {
    let p = proc_of(vm.running());
    handles().insert(p, vm.clone());
    let weak = vm.downgrade();
    // A jailed den-vmm's cgroup, found while it lives, goes when it ends.
    let jail_group = match vm.running().engine {
        EngineKind::Vmm => vmm::jail::cgroup_of(p.pid),
        EngineKind::Qemu => None,
    };
    // This launch's shared folders: their virtiofsd end with the engine, even one a guest
    // wedged (it would not notice its VMM hang up), never those of a later launch.
    let shares = vm.running().control.parent().map(super::virtiofs::recorded).unwrap_or_default();
    tokio::spawn(async move {
        process::wait_exit(p).await;
        if let Some(group) = jail_group {
            vmm::jail::end_cgroup(&group).await;
        }
        super::virtiofs::stop(shares).await;
        tokio::time::sleep(FORGET_AFTER_END).await;
        let mut h = handles();
        if h.get(&p).is_some_and(|v| v.is(&weak)) {
            h.remove(&p);
        }
    });
    vm
}

/// Starts a VM with `kind` and waits until its engine answers on its control socket (not for
/// the guest: see [`Vm::agent`]). Store the returned record: it finds the VM again after a
/// `dend` restart. On failure nothing is left running.
pub async fn launch(kind: EngineKind, spec: &LaunchSpec) -> Result<Running, EngineError> {
    match kind {
        EngineKind::Qemu => {
            spec.validate()?;
            let (running, q) = qemu::launch(spec).await?;
            tracing::info!(vm = %spec.id, engine = "qemu", pid = running.pid, accel = ?q.accel(), "engine started");
            Ok(register(Vm::new(running.clone(), Ctl::Qemu(q))).running().clone())
        }
        EngineKind::Vmm => launch_vmm(&vmm::binary(), vmm::jail::policy(), &[], spec).await,
    }
}

/// [`launch`] for den-vmm with a given binary, jail (`None`: unjailed) and extra `boot`
/// arguments ([`vmm::launch_in`]).
pub async fn launch_vmm(
    bin: &Path,
    jail: Option<&vmm::jail::JailPolicy>,
    extra: &[&str],
    spec: &LaunchSpec,
) -> Result<Running, EngineError> {
    spec.validate()?;
    if spec.firmware.is_some() {
        return Err(EngineError::Unsupported("den-vmm boots kernels directly, not through firmware; use qemu".into()));
    }
    let (running, api) = vmm::launch_in(bin, jail, extra, spec).await?;
    tracing::info!(vm = %spec.id, engine = "vmm", pid = running.pid, "engine started");
    Ok(register(Vm::new(running.clone(), Ctl::Vmm(api))).running().clone())
}

/// The handle of a VM process: the one this `dend` already has, or a new one after checking
/// that the recorded process is alive and reconnecting to its control socket (re-adoption).
pub async fn adopt(running: &Running) -> Result<Vm, EngineError> {
    if let Some(vm) = known(running) {
        return Ok(vm);
    }
    let _one_at_a_time = ADOPTING.lock().await;
    if let Some(vm) = known(running) {
        return Ok(vm);
    }
    if !is_alive(running) {
        return Err(EngineError::Gone { pid: running.pid });
    }
    let ctl = match running.engine {
        EngineKind::Qemu => Ctl::Qemu(qemu::adopt(running).await?),
        EngineKind::Vmm => {
            let api = VmmApi::new(&running.control);
            api.call("info").await?;
            Ctl::Vmm(api)
        }
    };
    tracing::info!(pid = running.pid, engine = ?running.engine, "engine process adopted");
    Ok(register(Vm::new(running.clone(), ctl)))
}

/// Drops this `dend`'s handle of a VM (closing its QMP connection and agent session once no
/// clone is left); the next call re-adopts it. The VM keeps running.
pub fn forget(running: &Running) {
    handles().remove(&proc_of(running));
}

/// The recorded process is alive (same pid and start time, not a zombie).
pub fn is_alive(running: &Running) -> bool {
    process::alive(proc_of(running))
}

/// The engine's view of the VM (running, paused, ...).
pub async fn state(running: &Running) -> Result<VmState, EngineError> {
    adopt(running).await?.state().await
}

/// Stops the vCPUs.
pub async fn pause(running: &Running) -> Result<(), EngineError> {
    adopt(running).await?.pause().await
}

/// Tells a running guest that disk `index` grew to `bytes` ([`Vm::grow_disk`]).
pub async fn grow_disk(running: &Running, index: usize, bytes: u64) -> Result<(), EngineError> {
    adopt(running).await?.grow_disk(index, bytes).await
}

/// Continues after [`pause`].
pub async fn resume(running: &Running) -> Result<(), EngineError> {
    adopt(running).await?.resume().await
}

/// Graceful shutdown (see [`Vm::shutdown`]): asks the guest, waits up to `timeout`, then stops
/// the engine, then SIGKILL. Returns once the process has ended (an already ended one is fine);
/// [`wait_exit`] (or [`Vm::shutdown`]) says how.
pub async fn shutdown(running: &Running, timeout: Duration) -> Result<(), EngineError> {
    let ended = match adopt(running).await {
        Ok(vm) => vm.shutdown(timeout).await?,
        Err(e) => end_without_handle(running, e).await?,
    };
    tracing::info!(pid = running.pid, reason = ?ended.reason, "{}", ended.detail);
    Ok(())
}

/// Hard stop (see [`Vm::stop`]): QEMU `quit` / den-vmm `stop`, then SIGKILL. Returns once the
/// process has ended.
pub async fn stop(running: &Running) -> Result<(), EngineError> {
    let ended = match adopt(running).await {
        Ok(vm) => vm.stop().await?,
        Err(e) => end_without_handle(running, e).await?,
    };
    tracing::info!(pid = running.pid, reason = ?ended.reason, "{}", ended.detail);
    Ok(())
}

/// When no handle can be had: an ended process is reported; a live one that cannot be
/// controlled is killed.
async fn end_without_handle(running: &Running, e: EngineError) -> Result<Ended, EngineError> {
    if is_alive(running) {
        tracing::warn!(pid = running.pid, "cannot control the engine ({e}); killing it");
        return kill_ended(running).await;
    }
    Ok(wait_exit(running).await)
}

/// SIGKILL, then waits for the end; a process already gone is fine.
pub async fn kill(running: &Running) -> Result<(), EngineError> {
    kill_ended(running).await.map(drop)
}

async fn kill_ended(running: &Running) -> Result<Ended, EngineError> {
    if let Some(vm) = known(running) {
        return vm.kill().await;
    }
    let status = process::kill(proc_of(running), KILL_TIMEOUT).await?;
    Ok(Ended { reason: EndReason::Killed, status, detail: "killed (SIGKILL) by dend".into() })
}

/// Waits for the end of a VM process, whoever ends it, and says why as far as known (see
/// [`Ended`]). Through its handle (adopting the process if needed) when possible, so that
/// QEMU's `SHUTDOWN` reason is seen.
pub async fn wait_exit(running: &Running) -> Ended {
    match adopt(running).await {
        Ok(vm) => vm.wait_exit().await,
        Err(_) => {
            let status = process::wait_exit(proc_of(running)).await;
            match running.engine {
                EngineKind::Vmm => {
                    let (reason, detail) = vmm::end_of(status, false);
                    Ended { reason, status, detail }
                }
                EngineKind::Qemu => qemu_end(None, status, false),
            }
        }
    }
}

/// The VM's shared agent session (connected on first use, within [`AGENT_TIMEOUT`]).
pub async fn agent(running: &Running) -> Result<AgentClient, EngineError> {
    match known(running) {
        Some(vm) => vm.agent(AGENT_TIMEOUT).await,
        None => match adopt(running).await {
            Ok(vm) => vm.agent(AGENT_TIMEOUT).await,
            Err(EngineError::Gone { pid }) => Err(EngineError::Gone { pid }),
            // The control socket is stuck but the agent may still answer. No handle caches this
            // session, so it ends with its last user (QEMU's agent socket serves one client).
            Err(_) => connect_agent(running, AGENT_TIMEOUT).await.map(AgentClient::closing_when_dropped),
        },
    }
}

/// A live connection to the serial console, and the recent output a new client should see
/// first (den-vmm replays it on the socket itself; QEMU's socket is live only, so it comes from
/// `console.log`). QEMU serves one console client at a time.
pub async fn console_stream(running: &Running) -> Result<(String, tokio::net::UnixStream), EngineError> {
    let prefix = match running.engine {
        EngineKind::Qemu => qemu::Qemu::console_recent(running, 16 * 1024)?,
        EngineKind::Vmm => String::new(),
    };
    let stream = tokio::net::UnixStream::connect(&running.console)
        .await
        .map_err(|e| EngineError::Io(format!("console socket {}", running.console.display()), e))?;
    Ok((prefix, stream))
}

/// Recent serial console output, at most about `max` bytes.
pub async fn console_recent(running: &Running, max: usize) -> Result<String, EngineError> {
    match running.engine {
        EngineKind::Qemu => qemu::Qemu::console_recent(running, max),
        EngineKind::Vmm => adopt(running).await?.console_recent(max).await,
    }
}
