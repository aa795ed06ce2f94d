//! Shared folders for QEMU guests: one `virtiofsd` per folder, serving it on a vhost-user
//! socket (`fs<N>.sock` in the VM's directory) that QEMU's `vhost-user-fs` device connects to.
//! Each `virtiofsd` is started detached like QEMU, outlives `dend` with it, and ends by itself
//! when QEMU closes the connection. The guest's memory must then be shared memory (memfd).
//!
//! `virtiofsd` runs as root and does what the guest's root asks, so each one starts in a mount
//! namespace of its own where its folder is a bind mount with `nodev` and `nosuid` (a device
//! node the guest makes cannot be opened through it, a setuid file it makes is not setuid
//! there), and `ro` for read-only shares: the kernel refuses every write, whatever the guest
//! sends. It also runs without `CAP_MKNOD`, so the guest cannot make device nodes at all.

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

/// The command line serving `source` on `sock`, in the flavour of `bin`, in a mount namespace
/// of its own where `source` is mounted `nodev,nosuid` (and `ro` when `readonly`).
fn command(bin: &str, sock: &Path, source: &Path, readonly: bool) -> Result<std::process::Command, EngineError> {
    let mut cmd = std::process::Command::new(bin);
    cmd.arg(format!("--socket-path={}", sock.display()));
    if bin.starts_with("/usr/lib/qemu/") {
        cmd.args(["-o", &format!("source={}", source.display()), "-o", "cache=auto", "-o", "modcaps=-mknod"]);
    } else {
        cmd.arg(format!("--shared-dir={}", source.display())).args(["--cache=auto", "--modcaps=-mknod"]);
    }
    confine(&mut cmd, source, readonly)?;
    Ok(cmd)
}

/// Makes `cmd` start in a new mount namespace where `source` is bind-mounted over itself with
/// `nodev,nosuid` (and `ro`). The mount lives as long as the namespace: nothing is left in the
/// host's mount table.
fn confine(cmd: &mut std::process::Command, source: &Path, readonly: bool) -> Result<(), EngineError> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let path = std::ffi::CString::new(source.as_os_str().as_bytes())
        .map_err(|_| EngineError::Startup(format!("shared folder {} has a NUL byte", source.display())))?;
    let root = c"/";
    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NODEV | libc::MS_NOSUID;
    if readonly {
        flags |= libc::MS_RDONLY;
    }
    let step = |r: libc::c_int| if r == -1 { Err(std::io::Error::last_os_error()) } else { Ok(()) };
    // SAFETY: unshare and mount are async-signal-safe system calls; the strings were made
    // before the fork and are only read.
    unsafe {
        cmd.pre_exec(move || {
            step(libc::unshare(libc::CLONE_NEWNS))?;
            let none = std::ptr::null();
            step(libc::mount(none, root.as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()))?;
            step(libc::mount(path.as_ptr(), path.as_ptr(), none, libc::MS_BIND | libc::MS_REC, std::ptr::null()))?;
            step(libc::mount(none, path.as_ptr(), none, flags, std::ptr::null()))
        })
    };
    Ok(())
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
        let result = match command(bin, &sock, &share.host, share.readonly).and_then(|c| process::spawn(c, bin, &log)) {
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
