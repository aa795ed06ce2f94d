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
//!
//! The folder is opened by dend with no link followed anywhere on its path (another guest, or a
//! local user, may be able to write one of its parents), and that open folder is what is
//! mounted, on a mount point of its own in the VM's runtime directory (`fs<N>.root`), which is
//! what `virtiofsd` is given. Only the folder itself is mounted, not the mounts beneath it.

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

/// Opens the shared folder `host` (an absolute path) without following a link anywhere on it.
fn open_source(host: &Path) -> Result<std::os::fd::OwnedFd, EngineError> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    use std::os::fd::FromRawFd;
    let rel = host.strip_prefix("/").unwrap_or(host);
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let root =
        nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
            .map_err(|e| EngineError::Startup(format!("opening /: {e}")))?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    let root = unsafe { std::os::fd::OwnedFd::from_raw_fd(root) };
    let path = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    match nix::fcntl::openat2(std::os::fd::AsRawFd::as_raw_fd(&root), path, how) {
        // SAFETY: openat2 returned a new descriptor that nothing else owns.
        Ok(fd) => Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }),
        Err(nix::errno::Errno::ELOOP) => Err(EngineError::Startup(format!(
            "shared folder {} goes through a symbolic link; Den does not follow links on a shared folder's path \
             (a guest or a local user may have made one): give its real path, as `realpath` prints it",
            host.display()
        ))),
        Err(e) => Err(EngineError::Startup(format!("shared folder {}: {e}", host.display()))),
    }
}

/// The command line serving the folder open as `source` on `sock`, in the flavour of `bin`,
/// in a mount namespace of its own where the folder is mounted on `mount_point` with
/// `nodev,nosuid` (and `ro` when `readonly`).
fn command(
    bin: &str,
    sock: &Path,
    source: &std::os::fd::OwnedFd,
    mount_point: &Path,
    readonly: bool,
) -> Result<std::process::Command, EngineError> {
    let mut cmd = std::process::Command::new(bin);
    cmd.arg(format!("--socket-path={}", sock.display()));
    if bin.starts_with("/usr/lib/qemu/") {
        cmd.args(["-o", &format!("source={}", mount_point.display()), "-o", "cache=auto", "-o", "modcaps=-mknod"]);
    } else {
        cmd.arg(format!("--shared-dir={}", mount_point.display())).args(["--cache=auto", "--modcaps=-mknod"]);
    }
    confine(&mut cmd, source, mount_point, readonly)?;
    Ok(cmd)
}

/// Makes `cmd` start in a new mount namespace where the folder open as `source` is bind-mounted
/// on `mount_point` with `nodev,nosuid` (and `ro`). The mount lives as long as the namespace:
/// nothing is left in the host's mount table.
fn confine(
    cmd: &mut std::process::Command,
    source: &std::os::fd::OwnedFd,
    mount_point: &Path,
    readonly: bool,
) -> Result<(), EngineError> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let target = std::ffi::CString::new(mount_point.as_os_str().as_bytes())
        .map_err(|_| EngineError::Startup(format!("{} has a NUL byte", mount_point.display())))?;
    // The child still has dend's descriptor (close-on-exec closes it only at exec).
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(source)))
        .map_err(|_| EngineError::Startup("a descriptor path with a NUL byte".into()))?;
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
            step(libc::mount(from.as_ptr(), target.as_ptr(), none, libc::MS_BIND, std::ptr::null()))?;
            step(libc::mount(none, target.as_ptr(), none, flags, std::ptr::null()))
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
        let mount_point = spec.dir.join(format!("fs{i}.root"));
        let made = match std::fs::create_dir(&mount_point) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                Err(EngineError::Io(format!("making {}", mount_point.display()), e))
            }
            _ => Ok(()),
        };
        let source = made.and_then(|()| open_source(&share.host));
        let spawned = source.and_then(|src| {
            command(bin, &sock, &src, &mount_point, share.readonly).and_then(|c| process::spawn(c, bin, &log))
        });
        let result = match spawned {
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
