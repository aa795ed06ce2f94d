//! Shared folders for QEMU guests: one `virtiofsd` per folder, serving it on a vhost-user
//! socket (`fs<N>.sock` in the VM's directory) that QEMU's `vhost-user-fs` device connects to.
//! Each `virtiofsd` is started detached like QEMU, outlives `dend` with it, and ends by itself
//! when QEMU closes the connection. The guest's memory must then be shared memory (memfd).

use super::process::{self, Proc};
use super::{EngineError, LaunchSpec};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where Debian puts `virtiofsd`: QEMU's own (package `qemu-system-common`, up to QEMU 7.2), then
/// the Rust one (package `virtiofsd`, Debian 13 and later).
const BINARIES: [&str; 2] = ["/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd"];
/// How long a `virtiofsd` may take to create its socket.
const SOCKET_WAIT: Duration = Duration::from_secs(5);

/// The vhost-user socket of share `i`.
pub fn socket(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("fs{i}.sock"))
}

fn binary() -> Result<&'static str, EngineError> {
    BINARIES.into_iter().find(|b| Path::new(b).is_file()).ok_or_else(|| {
        EngineError::Startup(format!(
            "shared folders need virtiofsd ({}): install the Debian package qemu-system-common or virtiofsd",
            BINARIES.join(" or ")
        ))
    })
}

/// The command line serving `source` on `sock`, in the flavour of `bin`.
fn command(bin: &str, sock: &Path, source: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    cmd.arg(format!("--socket-path={}", sock.display()));
    if bin.starts_with("/usr/lib/qemu/") {
        cmd.args(["-o", &format!("source={}", source.display()), "-o", "cache=auto"]);
    } else {
        cmd.arg(format!("--shared-dir={}", source.display())).arg("--cache=auto");
    }
    cmd
}

/// Starts one `virtiofsd` per share of `spec` and waits for their sockets. On failure the ones
/// already started are ended and nothing is left running.
pub async fn start(spec: &LaunchSpec) -> Result<Vec<Proc>, EngineError> {
    if spec.shares.is_empty() {
        return Ok(vec![]);
    }
    let bin = binary()?;
    let log = spec.dir.join("virtiofsd.log");
    let mut started = vec![];
    for (i, share) in spec.shares.iter().enumerate() {
        let sock = socket(&spec.dir, i);
        let _ = std::fs::remove_file(&sock);
        let result = match process::spawn(command(bin, &sock, &share.host), bin, &log) {
            Ok(p) => {
                started.push(p);
                wait_socket(p, &sock, &log).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            stop(started).await;
            return Err(e);
        }
    }
    Ok(started)
}

/// Ends `virtiofsd`s whose QEMU never connected.
pub async fn stop(procs: Vec<Proc>) {
    for p in procs {
        let _ = process::kill(p, Duration::from_secs(2)).await;
    }
}

async fn wait_socket(p: Proc, sock: &Path, log: &Path) -> Result<(), EngineError> {
    let start = Instant::now();
    while start.elapsed() < SOCKET_WAIT {
        if sock.exists() {
            return Ok(());
        }
        if !process::alive(p) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(EngineError::Startup(format!(
        "virtiofsd (pid {}) did not create {}; {}:\n{}",
        p.pid,
        sock.display(),
        log.display(),
        process::log_tail(log, 10)
    )))
}

/// QEMU's arguments for the shares of `spec` on bus `bus` (`device` for virtio-mmio, `pci`).
pub fn qemu_args(spec: &LaunchSpec, bus: &str) -> Vec<String> {
    let mut a = vec![];
    for (i, share) in spec.shares.iter().enumerate() {
        a.push("-chardev".into());
        a.push(format!("socket,id=fs{i},path={}", super::qemu::opt(&socket(&spec.dir, i))));
        a.push("-device".into());
        a.push(format!("vhost-user-fs-{bus},chardev=fs{i},tag={}", share.tag));
    }
    a
}
