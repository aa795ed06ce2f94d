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

/// The command line serving the shared folder `host` on `sock`, in the flavour of `bin`, in a
/// mount namespace of its own where the folder is mounted on `mount_point` with `nodev,nosuid`
/// (and `ro` when `readonly`).
fn command(
    bin: &str,
    sock: &Path,
    host: &Path,
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
    confine(&mut cmd, host, mount_point, readonly)?;
    Ok(cmd)
}

/// Writes `/proc/self/fd/<fd>` and a NUL into `buf`, without allocating (in a forked child).
fn fd_path(buf: &mut [u8; 32], fd: libc::c_int) -> &[u8] {
    let prefix = b"/proc/self/fd/";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 10];
    let (mut n, mut len) = (fd.max(0) as u32, 0);
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[prefix.len() + i] = digits[len - 1 - i];
    }
    buf[prefix.len() + len] = 0;
    &buf[..prefix.len() + len + 1]
}

/// Makes `cmd` start in a new mount namespace where the folder `host` is bind-mounted on
/// `mount_point` with `nodev,nosuid` (and `ro`). The folder is opened in that namespace (a
/// bind mount's source must be a mount of the caller's own namespace) with no link followed
/// on its path, and that open folder is what is mounted. The mount lives as long as the
/// namespace: nothing is left in the host's mount table.
fn confine(
    cmd: &mut std::process::Command,
    host: &Path,
    mount_point: &Path,
    readonly: bool,
) -> Result<(), EngineError> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let nul = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| EngineError::Startup(format!("{} has a NUL byte", p.display())))
    };
    let target = nul(mount_point)?;
    let rel = host.strip_prefix("/").unwrap_or(host);
    let source = nul(if rel.as_os_str().is_empty() { Path::new(".") } else { rel })?;
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    // nix's OpenHow is the kernel's open_how (repr(transparent)).
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let root = c"/";
    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NODEV | libc::MS_NOSUID;
    if readonly {
        flags |= libc::MS_RDONLY;
    }
    let step = |r: libc::c_long| if r == -1 { Err(std::io::Error::last_os_error()) } else { Ok(r) };
    // SAFETY: unshare, open, openat2, mount and close are async-signal-safe system calls; the
    // strings and the open_how were made before the fork and are only read; nothing allocates.
    unsafe {
        cmd.pre_exec(move || {
            step(libc::unshare(libc::CLONE_NEWNS).into())?;
            let none = std::ptr::null();
            step(libc::mount(none, root.as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()).into())?;
            let dir = step(libc::open(root.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC).into())?;
            let how_ptr: *const OpenHow = &how;
            let fd = step(libc::syscall(
                libc::SYS_openat2,
                dir as libc::c_int,
                source.as_ptr(),
                how_ptr,
                std::mem::size_of::<libc::open_how>(),
            ))?;
            let mut buf = [0u8; 32];
            let from = fd_path(&mut buf, fd as libc::c_int);
            step(libc::mount(from.as_ptr().cast(), target.as_ptr(), none, libc::MS_BIND, std::ptr::null()).into())?;
            libc::close(fd as libc::c_int);
            libc::close(dir as libc::c_int);
            step(libc::mount(none, target.as_ptr(), none, flags, std::ptr::null()).into()).map(drop)
        })
    };
    Ok(())
}

/// Where the pid of share `i`'s `virtiofsd` is kept.
fn record(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("{RECORD_PREFIX}{i}.pid"))
}

const RECORD_PREFIX: &str = "virtiofsd-";

/// The `virtiofsd`s recorded in the VM folder `dir` now (those of its current engine process
/// when read right after a launch or an adoption).
pub fn recorded(dir: &Path) -> Vec<Proc> {
    process::recorded(dir, RECORD_PREFIX).into_iter().filter_map(|(_, p)| p).collect()
}

/// Ends every `virtiofsd` recorded in the VM folder `dir` that still runs: before a VM's shares
/// start again.
pub async fn end(dir: &Path) {
    let dir = dir.to_path_buf();
    let killed = tokio::task::spawn_blocking(move || process::kill_recorded(&dir, RECORD_PREFIX)).await;
    if let Ok(pids) = killed.as_deref() {
        if !pids.is_empty() {
            tracing::warn!(?pids, "ended virtiofsd processes that outlived their VM's engine");
        }
    }
}

/// Starts one `virtiofsd` per share of `spec` and waits for their sockets. On failure the ones
/// already started are ended and nothing is left running.
pub async fn start(spec: &LaunchSpec) -> Result<Vec<Proc>, EngineError> {
    if spec.shares.is_empty() {
        return Ok(vec![]);
    }
    let bin = binary()?;
    let log = spec.dir.join("virtiofsd.log");
    // Those of an earlier boot that never ended (a guest can wedge one so that it does not
    // notice its VMM hang up) must not outlive it: each still maps that boot's guest memory.
    end(&spec.dir).await;
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
        // Opened here first for a clear error; the child opens it again in its own namespace.
        let checked = made.and_then(|()| open_source(&share.host));
        let spawned = checked.and_then(|_| {
            command(bin, &sock, &share.host, &mount_point, share.readonly)
                .and_then(|c| process::spawn_recorded(c, bin, &log, &record(&spec.dir, i)))
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

/// Ends `virtiofsd`s: those of a launch that failed, or of an engine process that ended.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_paths_are_written_without_allocating() {
        let mut buf = [0u8; 32];
        assert_eq!(fd_path(&mut buf, 7), b"/proc/self/fd/7\0");
        assert_eq!(fd_path(&mut buf, 1234567), b"/proc/self/fd/1234567\0");
    }

    /// Runs `script` confined to `host` on a mount point (needs root, as dend does).
    fn confined(
        host: &Path,
        mount_point: &Path,
        readonly: bool,
        script: &str,
    ) -> std::io::Result<std::process::Output> {
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", script]);
        confine(&mut cmd, host, mount_point, readonly).map_err(std::io::Error::other)?;
        cmd.output()
    }

    #[test]
    fn the_folder_is_mounted_read_only_nodev_nosuid_and_never_through_a_link() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let (host, mp) = (d.path().join("share"), d.path().join("fs0.root"));
        std::fs::create_dir(&host).unwrap();
        std::fs::create_dir(&mp).unwrap();
        std::fs::write(host.join("kept"), "host").unwrap();
        let script = format!("cat {0}/kept; echo; grep ' {0} ' /proc/self/mountinfo; touch {0}/new", mp.display());
        let out = confined(&host, &mp, true, &script).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("host"), "{text}");
        let opts = text.lines().nth(1).unwrap_or_default();
        assert!(opts.contains("ro,nosuid,nodev"), "{opts}");
        assert!(!out.status.success() && !host.join("new").exists(), "a read-only share was written");
        let out = confined(&host, &mp, false, &format!("touch {}/new", mp.display())).unwrap();
        assert!(out.status.success() && host.join("new").exists(), "a read-write share works");
        // A folder whose path goes through a link is not mounted (the child does not start).
        std::os::unix::fs::symlink(&host, d.path().join("link")).unwrap();
        assert!(confined(&d.path().join("link"), &mp, false, "true").is_err());
        assert!(open_source(&d.path().join("link")).unwrap_err().to_string().contains("symbolic link"));
    }
}
