//! Early boot steps of a microVM: mounts, kernel modules, root switch, host name, loopback.

use nix::mount::{mount, MsFlags};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// File in the initramfs listing module paths in load order (written by `den-images`).
pub(crate) const MODULE_LIST: &str = "/etc/den/modules.list";

fn mkdir(p: &str) {
    let _ = std::fs::create_dir_all(p);
}

fn mount_fs(src: &str, target: &str, fstype: &str, flags: MsFlags, data: Option<&str>) {
    mkdir(target);
    if let Err(e) = mount(Some(src), target, Some(fstype), flags, data) {
        if e != nix::errno::Errno::EBUSY {
            eprintln!("den-agent: mount {fstype} on {target}: {e}");
        }
    }
}

/// Mounts the pseudo file systems every guest needs.
pub(crate) fn mount_basics() {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fs("proc", "/proc", "proc", nodev, None);
    mount_fs("sysfs", "/sys", "sysfs", nodev, None);
    mount_fs("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID, Some("mode=0755"));
    mount_fs(
        "devpts",
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("gid=5,mode=620,ptmxmode=666"),
    );
    mount_fs("tmpfs", "/dev/shm", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777"));
    mount_fs("tmpfs", "/run", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755"));
    mount_fs("tmpfs", "/tmp", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777"));
}

/// Loads the modules listed in [`MODULE_LIST`], in order; already-loaded ones are fine.
pub(crate) fn load_modules() {
    let Ok(list) = std::fs::read_to_string(MODULE_LIST) else { return };
    for path in list.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("den-agent: module {path}: {e}");
                continue;
            }
        };
        let params = CString::default();
        // SAFETY: finit_module reads the open module file and an empty NUL-terminated parameter string.
        let rc = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EEXIST) {
                eprintln!("den-agent: insmod {path}: {err}");
            }
        }
    }
}

/// Waits up to `timeout` for a device node to appear (devtmpfs creates it when the driver binds).
pub(crate) fn wait_for(path: &str, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if Path::new(path).exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Path::new(path).exists()
}

/// Mounts `dev` and makes it the root: the pseudo file systems move along, then `chroot`.
pub(crate) fn switch_root(dev: &str, fstype: &str, read_only: bool) -> Result<(), String> {
    if !wait_for(dev, Duration::from_secs(30)) {
        return Err(format!("root disk {dev} did not appear within 30 s (is the virtio_blk module in the initramfs?)"));
    }
    let new = "/newroot";
    mkdir(new);
    let flags = if read_only { MsFlags::MS_RDONLY } else { MsFlags::empty() };
    mount(Some(dev), new, Some(fstype), flags, None::<&str>)
        .map_err(|e| format!("mount {dev} ({fstype}) on {new}: {e}"))?;
    for m in ["/dev", "/proc", "/sys", "/run", "/tmp"] {
        let target = format!("{new}{m}");
        mkdir(&target);
        if let Err(e) = mount(Some(m), target.as_str(), None::<&str>, MsFlags::MS_MOVE, None::<&str>) {
            eprintln!("den-agent: move {m}: {e}");
        }
    }
    std::env::set_current_dir(new).map_err(|e| format!("chdir {new}: {e}"))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|e| format!("move root: {e}"))?;
    nix::unistd::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

/// Mounts each virtio-fs share in order (a share may sit in an earlier, read-only one), making
/// its folder first; failures are reported on the console and the boot goes on.
pub(crate) fn mount_shares(shares: &[crate::cmdline::Share]) {
    for s in shares {
        mkdir(&s.path);
        let flags = if s.read_only { MsFlags::MS_RDONLY } else { MsFlags::empty() };
        if let Err(e) = mount(Some(s.tag.as_str()), s.path.as_str(), Some("virtiofs"), flags, None::<&str>) {
            eprintln!(
                "den-agent: mount virtio-fs `{}` on {}: {e} (is the virtiofs module in the image?)",
                s.tag, s.path
            );
        }
    }
}

/// Bind-mounts `source` on `target` (both made if missing), read-only if asked.
pub(crate) fn bind(source: &str, target: &str, read_only: bool) -> Result<(), String> {
    std::fs::create_dir_all(source).map_err(|e| format!("{source}: {e}"))?;
    std::fs::create_dir_all(target).map_err(|e| format!("{target}: {e}"))?;
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| e.to_string())?;
    if read_only {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(|e| format!("read-only: {e}"))?;
    }
    Ok(())
}

/// Mounts a tmpfs on `target` (made if missing); `target` may carry Compose's `:options`.
pub(crate) fn tmpfs(spec: &str) -> Result<(), String> {
    let (target, opts) = spec.split_once(':').unwrap_or((spec, ""));
    std::fs::create_dir_all(target).map_err(|e| format!("{target}: {e}"))?;
    let data = (!opts.is_empty()).then_some(opts);
    mount(Some("tmpfs"), target, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, data).map_err(|e| e.to_string())
}

/// Sets the host name.
pub(crate) fn set_hostname(name: &str) {
    if let Err(e) = nix::unistd::sethostname(name) {
        eprintln!("den-agent: hostname {name}: {e}");
    }
}
