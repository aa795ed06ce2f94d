//! The files den-vmm works on, named by path or handed over already open.
//!
//! Wherever den-vmm takes a path (kernel, initramfs, disks, `/dev/kvm`, a TAP interface, the API,
//! console and vsock sockets), `fd:N` means "descriptor N, which the process that started me
//! opened". That is how `den-jailer` runs den-vmm: it opens the VM's files as root, then
//! execs den-vmm as an unprivileged user in an empty root where none of them can be opened by
//! name. Each descriptor can be claimed once; a second claim, or a number that is not open, is
//! an error that names it.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

static CLAIMED: Mutex<BTreeSet<RawFd>> = Mutex::new(BTreeSet::new());
static INHERITED: OnceLock<BTreeSet<RawFd>> = OnceLock::new();

/// Highest descriptor [`note_inherited`] looks at (den-jailer hands over at most 512).
const MAX_HANDED: RawFd = 1024;

/// Notes which descriptors above 2 are open now, at the start of `main`, before den-vmm opens
/// any: only those can be claimed, never one of den-vmm's own (a VM or vCPU descriptor, say).
pub fn note_inherited() {
    let open = (3..=MAX_HANDED)
        // SAFETY: F_GETFD only reads a descriptor's flags; EBADF for one that is not open.
        .filter(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } >= 0)
        .collect();
    let _ = INHERITED.set(open);
}

/// The descriptor a path names, if it is `fd:N` (N of 3 or more: 0 to 2 are stdio).
pub fn fd_number(path: &Path) -> Option<RawFd> {
    let n = path.to_str()?.strip_prefix("fd:")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok().filter(|n| *n >= 3)
}

/// The path is a handed-over descriptor (`fd:N`), not a name.
pub fn is_handed_over(path: &Path) -> bool {
    fd_number(path).is_some()
}

/// Takes ownership of descriptor `fd`, once.
pub fn claim(fd: RawFd) -> std::io::Result<OwnedFd> {
    let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
    let mut claimed = CLAIMED.lock().unwrap_or_else(|p| p.into_inner());
    if claimed.contains(&fd) {
        return Err(bad(format!("fd:{fd} is named twice; each handed-over descriptor serves one purpose")));
    }
    if INHERITED.get().is_some_and(|inherited| !inherited.contains(&fd)) {
        return Err(bad(format!("fd:{fd} was not handed to den-vmm when it started (was it started by den-jailer?)")));
    }
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails with EBADF if `fd` is not open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(bad(format!("fd:{fd} is not an open descriptor (was den-vmm started by den-jailer?)")));
    }
    claimed.insert(fd);
    // SAFETY: `fd` is open and, per CLAIMED, nothing else in this process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: FD_CLOEXEC on a descriptor this process owns; nothing den-vmm starts inherits it.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(owned)
}

/// Opens `path` for reading (and writing when `write`), or claims it if it is `fd:N`.
pub fn open(path: &Path, write: bool) -> std::io::Result<File> {
    match fd_number(path) {
        Some(fd) => Ok(File::from(claim(fd)?)),
        None => std::fs::OpenOptions::new().read(true).write(write).open(path),
    }
}

/// Opens `path` for appending (created if missing), or claims it if it is `fd:N`.
pub fn append(path: &Path) -> std::io::Result<File> {
    match fd_number(path) {
        Some(fd) => Ok(File::from(claim(fd)?)),
        None => std::fs::OpenOptions::new().create(true).append(true).open(path),
    }
}

/// Listens on the Unix socket `path` (replacing a stale socket file), or claims a listening
/// socket handed over as `fd:N` (checked to be one).
pub fn listen(path: &Path) -> std::io::Result<UnixListener> {
    let Some(fd) = fd_number(path) else {
        let _ = std::fs::remove_file(path);
        return UnixListener::bind(path);
    };
    let owned = claim(fd)?;
    let listening = nix::sys::socket::getsockopt(&owned, nix::sys::socket::sockopt::AcceptConn)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("fd:{fd} is not a socket: {e}")))?;
    if !listening {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("fd:{fd} is not a listening socket"),
        ));
    }
    let listener = UnixListener::from(owned);
    listener.set_nonblocking(false)?; // callers that want it non-blocking say so
    Ok(listener)
}

/// Connects to the Unix socket `path`, or claims a connected stream socket handed over as `fd:N`
/// (checked to be a socket that is not listening).
pub fn connect(path: &Path) -> std::io::Result<UnixStream> {
    let Some(fd) = fd_number(path) else {
        return UnixStream::connect(path);
    };
    let owned = claim(fd)?;
    let listening = nix::sys::socket::getsockopt(&owned, nix::sys::socket::sockopt::AcceptConn)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("fd:{fd} is not a socket: {e}")))?;
    if listening {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("fd:{fd} is a listening socket, not a connection"),
        ));
    }
    let stream = UnixStream::from(owned);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Removes a socket file den-vmm bound by name; a handed-over socket's file belongs to whoever
/// bound it.
pub fn remove_socket(path: &Path) {
    if !is_handed_over(path) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::IntoRawFd;

    /// Moves `fd` to number `n`: claimed numbers stay claimed for the process, so each test
    /// uses numbers of its own.
    fn at(fd: RawFd, n: RawFd) -> RawFd {
        // SAFETY: dup2 onto a number the tests reserve; `fd` is then closed as no longer used.
        unsafe {
            assert_eq!(libc::dup2(fd, n), n);
            libc::close(fd);
        }
        n
    }

    #[test]
    fn numbers_are_parsed_strictly() {
        assert_eq!(fd_number(Path::new("fd:7")), Some(7));
        for p in ["fd:", "fd:2", "fd:-1", "fd:+3", "fd:3x", "/fd:3", "FD:3", "fd: 3", "disk.img"] {
            assert_eq!(fd_number(Path::new(p)), None, "{p}");
        }
    }

    #[test]
    fn a_descriptor_is_claimed_once_and_must_be_open() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"kernel").unwrap();
        let fd = at(f.into_raw_fd(), 900);
        let path = format!("fd:{fd}");
        let mut got = open(Path::new(&path), false).unwrap();
        let mut s = String::new();
        std::io::Seek::rewind(&mut got).unwrap();
        got.read_to_string(&mut s).unwrap();
        assert_eq!(s, "kernel");
        let e = open(Path::new(&path), false).unwrap_err().to_string();
        assert!(e.contains("named twice"), "{e}");
        let e = open(Path::new("fd:999999"), false).unwrap_err().to_string();
        assert!(e.contains("not an open descriptor"), "{e}");
    }

    #[test]
    fn only_a_listening_socket_is_taken_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let l = at(UnixListener::bind(dir.path().join("s")).unwrap().into_raw_fd(), 901);
        listen(Path::new(&format!("fd:{l}"))).unwrap();
        let f = at(tempfile::tempfile().unwrap().into_raw_fd(), 902);
        let e = listen(Path::new(&format!("fd:{f}"))).unwrap_err().to_string();
        assert!(e.contains("is not a socket"), "{e}");
    }
}
