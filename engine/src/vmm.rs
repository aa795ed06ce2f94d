//! The `vmm` engine: one den-vmm process per VM, driven over its JSON-lines control API
//! (vmm/README.md). Files in the VM's directory: `api.sock`, `console.sock` (recent output,
//! then live), `vsock.sock` (the agent is `CONNECT 1024` on it), `engine.log`.
//!
//! den-vmm's exit code says how the guest ended, but only to its parent: after a `dend`
//! restart only the fact that it ended is known.

pub mod jail;

use super::process::{self, ExitStatus, Proc};
use super::{EndReason, EngineError, EngineKind, LaunchSpec, Running, VmState};
use den_jailer::Resource;
use jail::JailPolicy;
use serde_json::{json, Value};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The vsock port the guest agent listens on.
pub const AGENT_PORT: u32 = 1024;
/// How long den-vmm may take to answer on its API after it was started.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one API request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The den-vmm binary: `$DEN_VMM_BIN`, else `den-vmm` next to the running executable, else
/// `den-vmm` on `PATH`.
pub fn binary() -> PathBuf {
    companion("DEN_VMM_BIN", "den-vmm")
}

/// A binary installed with dend: `$<env>`, else `name` next to the running executable, else
/// `name` on `PATH`.
pub(crate) fn companion(env: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return p.into();
    }
    if let Some(p) = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join(name))) {
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// The guest's vsock context id, derived from the VM id (FNV-1a), in 3 ..= 2^32 - 2. Each VM
/// has its own vsock device (no host-wide vhost), so equal CIDs of two VMs do not collide.
pub fn cid_for(id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    3 + h % (u32::MAX - 4)
}

/// den-vmm's command line (without the binary) for `spec`, unjailed: files by their paths.
pub fn args(spec: &LaunchSpec) -> Vec<OsString> {
    boot_args(spec, None, &mut |r| match r {
        Resource::Kvm(p)
        | Resource::ReadOnly(p)
        | Resource::ReadWrite(p)
        | Resource::Listen(p)
        | Resource::Connect(p) => p.into(),
        Resource::Tap(name) => name.into(),
    })
}

/// den-vmm's `boot` arguments for `spec`, the one place their order and form are set. `file`
/// names each file den-vmm is to use: by its path (or TAP name), or, jailed, as the descriptor
/// it is handed (`fd:N`). With `kvm_kind`, `/dev/kvm` is named too, with what it runs (a jailed
/// den-vmm cannot look).
fn boot_args(spec: &LaunchSpec, kvm_kind: Option<&str>, file: &mut dyn FnMut(Resource) -> OsString) -> Vec<OsString> {
    fn flag(a: &mut Vec<OsString>, flag: &str, prefix: &str, value: OsString, suffix: &str) {
        let mut v = OsString::from(prefix);
        v.push(value);
        v.push(suffix);
        a.push(flag.into());
        a.push(v);
    }
    let dir = &spec.dir;
    let mut a: Vec<OsString> = vec!["boot".into()];
    if let Some(kind) = kvm_kind {
        flag(&mut a, "--kvm", "", file(Resource::Kvm("/dev/kvm".into())), "");
        flag(&mut a, "--kvm-kind", "", kind.into(), "");
    }
    flag(&mut a, "--kernel", "", file(Resource::ReadOnly(spec.vmm_kernel())), "");
    flag(&mut a, "--initrd", "", file(Resource::ReadOnly(spec.initrd.clone())), "");
    let (cpus, memory) = (spec.cpus.to_string(), spec.memory_mib.to_string());
    for (f, v) in [("--cmdline", spec.cmdline.as_str()), ("--cpus", &cpus), ("--memory-mib", &memory)] {
        flag(&mut a, f, "", v.into(), "");
    }
    flag(&mut a, "--api-sock", "", file(Resource::Listen(dir.join("api.sock"))), "");
    flag(&mut a, "--console", "socket:", file(Resource::Listen(dir.join("console.sock"))), "");
    let cid = format!("{},", cid_for(&spec.id));
    flag(&mut a, "--vsock", &cid, file(Resource::Listen(dir.join("vsock.sock"))), "");
    for d in &spec.disks {
        let r = if d.read_only { Resource::ReadOnly(d.path.clone()) } else { Resource::ReadWrite(d.path.clone()) };
        flag(&mut a, "--disk", "", file(r), if d.read_only { ",ro" } else { "" });
    }
    for n in &spec.nics {
        flag(&mut a, "--net", "", file(Resource::Tap(n.tap.clone())), &format!(",mac={}", n.mac));
    }
    for (i, sh) in spec.shares.iter().enumerate() {
        let sock = file(Resource::Connect(super::virtiofs::socket(dir, i)));
        flag(&mut a, "--fs", "", sock, &format!(",tag={}", sh.tag));
    }
    a
}

/// A client of den-vmm's control API: one connection per request.
#[derive(Debug, Clone)]
pub struct VmmApi {
    path: PathBuf,
}

impl VmmApi {
    /// The API on socket `path`.
    pub fn new(path: &Path) -> VmmApi {
        VmmApi { path: path.to_path_buf() }
    }

    /// Sends `{"op": op}` and returns the `result` of an `ok` reply.
    pub async fn call(&self, op: &str) -> Result<Value, EngineError> {
        let path = self.path.display().to_string();
        let err = |why: String| EngineError::Control { path: path.clone(), why: format!("`{op}`: {why}") };
        let exchange = async {
            let mut sock = tokio::net::UnixStream::connect(&self.path).await.map_err(|e| format!("connect: {e}"))?;
            let line = format!("{}\n", json!({ "op": op }));
            sock.write_all(line.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
            let mut reply = Vec::new();
            let mut rd = BufReader::new(sock).take(1 << 20);
            rd.read_until(b'\n', &mut reply).await.map_err(|e| format!("read: {e}"))?;
            if reply.is_empty() {
                return Err("den-vmm closed the connection without a reply".to_string());
            }
            serde_json::from_slice::<Value>(&reply).map_err(|e| format!("reply is not JSON ({e})"))
        };
        let reply = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Err(_) => return Err(err(format!("no reply within {REQUEST_TIMEOUT:?}"))),
            Ok(Err(why)) => return Err(err(why)),
            Ok(Ok(v)) => v,
        };
        if reply.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(reply.get("result").cloned().unwrap_or(Value::Null));
        }
        let e = reply.get("error");
        let field = |k: &str| e.and_then(|e| e.get(k)).and_then(Value::as_str).map(str::to_string);
        Err(EngineError::Refused {
            path,
            command: op.into(),
            class: field("code").unwrap_or_else(|| "invalid_reply".into()),
            desc: field("message").unwrap_or_else(|| reply.to_string()),
        })
    }

    /// `info`: the VM's state.
    pub async fn state(&self) -> Result<VmState, EngineError> {
        let info = self.call("info").await?;
        Ok(match info.get("state").and_then(Value::as_str).unwrap_or("unknown") {
            "created" => VmState::Created,
            "running" => VmState::Running,
            "paused" => VmState::Paused,
            "stopping" => VmState::ShutDown,
            other => VmState::Other(other.into()),
        })
    }

    /// Recent serial console output.
    pub async fn console_recent(&self) -> Result<String, EngineError> {
        let v = self.call("console_recent").await?;
        Ok(v.get("output").and_then(Value::as_str).unwrap_or_default().to_string())
    }
}

/// Starts den-vmm ([`binary`]) for `spec`, jailed per [`jail::policy`], and waits until its
/// API answers. On failure nothing is left running.
pub async fn launch(spec: &LaunchSpec) -> Result<(Running, VmmApi), EngineError> {
    launch_in(&binary(), jail::policy(), &[], spec).await
}

/// [`launch`] with a given binary, jail (`None`: unjailed) and extra arguments after `boot`
/// (e.g. `--seccomp log`, or `--tiny-test-guest` in tests).
pub async fn launch_in(
    bin: &Path,
    jail: Option<&JailPolicy>,
    extra: &[&str],
    spec: &LaunchSpec,
) -> Result<(Running, VmmApi), EngineError> {
    let dir = &spec.dir;
    let running = Running {
        engine: EngineKind::Vmm,
        pid: 0,
        start_time: 0,
        console: dir.join("console.sock"),
        control: dir.join("api.sock"),
        agent: dir.join("vsock.sock"),
    };
    super::refuse_live_socket(spec, &running.control).await?;
    let log = dir.join("engine.log");
    // Shared folders: one virtiofsd each, which den-vmm (or den-jailer for it) connects to;
    // started before the uid pick, which serialises launches.
    let shares = super::virtiofs::start(spec).await?;
    let picking = match jail {
        Some(_) => Some(jail::PICKING.lock().await),
        None => None,
    };
    let (mut cmd, uid) = match jail {
        Some(policy) => match jailed_command(bin, policy, extra, spec) {
            Ok((cmd, uid)) => (cmd, Some(uid)),
            Err(e) => {
                drop(picking);
                super::virtiofs::stop(shares).await;
                return Err(e);
            }
        },
        None => {
            let mut cmd = std::process::Command::new(bin);
            let mut argv = args(spec);
            argv.splice(1..1, extra.iter().map(OsString::from));
            cmd.args(argv);
            (cmd, None)
        }
    };
    cmd.current_dir(dir);
    let what = if jail.is_some() { "den-jailer" } else { "den-vmm" };
    let p = match process::spawn(cmd, what, &log) {
        Ok(p) => p,
        Err(e) => {
            super::virtiofs::stop(shares).await;
            return Err(e);
        }
    };
    let group = den_jailer::cgroup::group_name(&spec.id, p.pid as u32);
    if let Some(uid) = uid {
        jail::reserve(group.clone(), uid);
    }
    drop(picking);
    let running = Running { pid: p.pid, start_time: p.start_time, ..running };
    let api = VmmApi::new(&running.control);
    match wait_api(p, &api, &log).await {
        Ok(()) => Ok((running, api)),
        Err(e) => {
            let _ = process::kill(p, Duration::from_secs(5)).await;
            if jail.is_some() {
                jail::end_cgroup(&group).await;
            }
            super::virtiofs::stop(shares).await;
            Err(e)
        }
    }
}

/// den-jailer's command line starting `bin` for `spec` under `policy`, and the uid it picked.
fn jailed_command(
    bin: &Path,
    policy: &JailPolicy,
    extra: &[&str],
    spec: &LaunchSpec,
) -> Result<(std::process::Command, u32), EngineError> {
    let probed = den_kvm_probe::kvm_kind(Path::new("/sys"), Path::new("/dev/kvm"));
    let kind = probed.name().map_err(|why| EngineError::Unsupported(format!("no usable KVM: {why}")))?;
    let bin = std::path::absolute(bin).map_err(|e| EngineError::Io(format!("den-vmm binary {}", bin.display()), e))?;
    let picked = jail::pick_uid(policy, &spec.id)?;
    let uid = picked.to_string();
    let (fds, mut argv) = jail::args(spec, kind)?;
    argv.splice(1..1, extra.iter().map(OsString::from));
    let mut cmd = std::process::Command::new(&policy.jailer);
    cmd.args(["--id", &spec.id, "--uid", &uid, "--gid", &uid, "--exec"])
        .arg(bin)
        .arg("--root")
        .arg(spec.dir.join("jail"));
    cmd.args(["--memory-mib", &jail::memory_limit_mib(spec.memory_mib).to_string(), "--cpus", &spec.cpus.to_string()]);
    cmd.arg("--cgroup-root").arg(&policy.cgroup_root);
    for f in &fds {
        cmd.args(["--fd", f]);
    }
    cmd.arg("--").args(argv);
    Ok((cmd, picked))
}

async fn wait_api(p: Proc, api: &VmmApi, log: &Path) -> Result<(), EngineError> {
    let start = Instant::now();
    loop {
        if !process::alive(p) {
            let status = tokio::time::timeout(Duration::from_secs(1), process::wait_exit(p)).await.ok().flatten();
            let how = match status {
                Some(s) => format!(" ({s}: {})", end_of(Some(s), false).1),
                None => String::new(),
            };
            return Err(EngineError::Startup(format!(
                "den-vmm (pid {}) exited at start{how}; {}:\n{}",
                p.pid,
                log.display(),
                process::log_tail(log, 20)
            )));
        }
        let last = match api.call("info").await {
            Ok(_) => return Ok(()),
            Err(e) => e.to_string(),
        };
        if start.elapsed() > STARTUP_TIMEOUT {
            return Err(EngineError::Startup(format!(
                "den-vmm (pid {}) did not answer on its API within {STARTUP_TIMEOUT:?} ({last}); {}:\n{}",
                p.pid,
                log.display(),
                process::log_tail(log, 20)
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What den-vmm's exit status means (vmm/README.md). `host_stopped`: `dend` asked it to stop,
/// so exit code 0 is the host's doing rather than a guest power-off.
pub fn end_of(status: Option<ExitStatus>, host_stopped: bool) -> (EndReason, String) {
    let Some(s) = status else {
        return (EndReason::Unknown, "den-vmm ended; its exit code is unknown (re-adopted process)".into());
    };
    match (s.code, s.signal) {
        (Some(0), _) if host_stopped => (EndReason::HostStop, "den-vmm stopped on request (exit code 0)".into()),
        (Some(0), _) => (EndReason::PowerOff, "the guest powered off (den-vmm exit code 0)".into()),
        (Some(4), _) => (EndReason::Crash, "the guest crashed (den-vmm exit code 4)".into()),
        (Some(10), _) => (EndReason::Reboot, "the guest rebooted (den-vmm exit code 10)".into()),
        (Some(3), _) => (EndReason::Failed, "this host cannot run Linux guests with den-vmm (exit code 3)".into()),
        (Some(2), _) => (EndReason::Failed, "den-vmm refused its arguments (exit code 2)".into()),
        (Some(c), _) => (EndReason::Failed, format!("den-vmm failed (exit code {c}; see engine.log)")),
        (None, Some(sig)) => (EndReason::Killed, format!("den-vmm was killed by signal {sig}")),
        (None, None) => (EndReason::Unknown, "den-vmm ended with an unknown status".into()),
    }
}

#[cfg(test)]
pub(crate) mod tests;
