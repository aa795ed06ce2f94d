//! The host side of the vsock device, Firecracker's Unix-socket model: den-vmm listens on
//! `uds_path`; a host client that wants guest port P connects and writes `CONNECT P\n`; a guest
//! that connects to the host (CID 2) on port P is connected to the Unix socket `<uds_path>_P`.
//! Every socket is non-blocking; writes never raise SIGPIPE.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Longest `CONNECT <port>` line accepted, newline included.
pub const MAX_LINE: usize = 32;

/// Errors setting up the host side.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// The listening socket could not be created.
    #[error("vsock socket {path}: {source}")]
    Bind {
        /// The socket path.
        path: String,
        /// Cause.
        source: io::Error,
    },
    /// Another process is listening on the path.
    #[error("vsock socket {0}: another process is listening there")]
    InUse(String),
    /// Something that is not a socket is in the way.
    #[error("vsock socket {0}: the path exists and is not a socket")]
    NotSocket(String),
    /// The event loop refused a registration.
    #[error("vsock: cannot watch the listening socket: {0}")]
    Watch(io::Error),
}

/// The listening socket; its file is removed on [`Listener::remove`] and on drop.
pub struct Listener {
    sock: UnixListener,
    path: PathBuf,
    removed: bool,
}

impl Listener {
    /// Listens on `path`, replacing a stale socket file a dead den-vmm left behind, or takes a
    /// listening socket handed over as `fd:N` ([`crate::files`]).
    pub fn bind(path: &Path) -> Result<Listener, VsockError> {
        let name = || path.display().to_string();
        if crate::files::is_handed_over(path) {
            let bind = |source| VsockError::Bind { path: name(), source };
            let sock = crate::files::listen(path).map_err(bind)?;
            sock.set_nonblocking(true).map_err(bind)?;
            return Ok(Listener { sock, path: path.to_path_buf(), removed: false });
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(VsockError::NotSocket(name()));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(VsockError::InUse(name()));
            }
            let _ = std::fs::remove_file(path);
        }
        let bind = |source| VsockError::Bind { path: name(), source };
        let sock = UnixListener::bind(path).map_err(bind)?;
        sock.set_nonblocking(true).map_err(bind)?;
        Ok(Listener { sock, path: path.to_path_buf(), removed: false })
    }

    /// Accepts one waiting client (non-blocking), or `None` when nobody waits.
    pub fn accept(&self) -> io::Result<Option<UnixStream>> {
        match self.sock.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(true)?;
                Ok(Some(s))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The socket's fd, for the event loop.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.sock.as_raw_fd()
    }

    /// The path clients connect to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket file (once) so that no client connects to a VM that is ending.
    pub fn remove(&mut self) {
        if !self.removed {
            self.removed = true;
            crate::files::remove_socket(&self.path);
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The socket a guest connection to host port `port` goes to: `<uds_path>_<port>`.
pub fn port_path(uds: &Path, port: u32) -> PathBuf {
    let mut s = uds.as_os_str().to_os_string();
    s.push(format!("_{port}"));
    PathBuf::from(s)
}

/// Connects to a Unix stream socket without blocking: a listener whose backlog is full counts
/// as refusing.
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all-zero is a valid (empty) value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "socket path too long"));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain socket(2) call; the result is checked below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket(2) returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `addr` is a valid, NUL-terminated sockaddr_un of `len` bytes.
    let rc = unsafe { libc::connect(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UnixStream::from(fd))
}

/// Writes without raising SIGPIPE when the peer is gone (the error is returned instead).
pub fn send(sock: &UnixStream, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes; send(2) only reads it.
    let n = unsafe { libc::send(sock.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Reads what is there (non-blocking: `WouldBlock` when nothing is).
pub fn recv(mut sock: &UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match sock.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// What a host client has sent of its `CONNECT <port>\n` line so far.
#[derive(Debug, Default)]
pub struct ConnectLine {
    buf: Vec<u8>,
}

/// Progress of a [`ConnectLine`].
#[derive(Debug, PartialEq, Eq)]
pub enum LineState {
    /// No newline yet.
    Partial,
    /// A valid line for this guest port, with the bytes the client sent after it.
    Port(u32, Vec<u8>),
    /// Not a `CONNECT <port>` line (or too long).
    Bad,
}

impl ConnectLine {
    /// Adds bytes read from the client.
    pub fn feed(&mut self, bytes: &[u8]) -> LineState {
        self.buf.extend_from_slice(bytes);
        let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
            return if self.buf.len() >= MAX_LINE { LineState::Bad } else { LineState::Partial };
        };
        if nl >= MAX_LINE {
            return LineState::Bad;
        }
        let line = &self.buf[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let port = line
            .strip_prefix(b"CONNECT ")
            .filter(|d| !d.is_empty() && d.iter().all(u8::is_ascii_digit))
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<u32>().ok());
        match port {
            Some(p) => LineState::Port(p, self.buf[nl + 1..].to_vec()),
            None => LineState::Bad,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_lines() {
        let mut l = ConnectLine::default();
        assert_eq!(l.feed(b"CONNECT 10"), LineState::Partial);
        assert_eq!(l.feed(b"24\nhello"), LineState::Port(1024, b"hello".to_vec()));
        assert_eq!(ConnectLine::default().feed(b"CONNECT 52\r\n"), LineState::Port(52, vec![]));
        for bad in [&b"CONNECT\n"[..], b"CONNECT -1\n", b"CONNECT 99999999999\n", b"connect 5\n", b"CONNECT  5\n"] {
            assert_eq!(ConnectLine::default().feed(bad), LineState::Bad, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(ConnectLine::default().feed(&[b'C'; MAX_LINE]), LineState::Bad);
    }

    #[test]
    fn listener_replaces_stale_socket_and_refuses_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock");
        std::fs::write(&path, b"x").unwrap();
        assert!(matches!(Listener::bind(&path), Err(VsockError::NotSocket(_))));
        std::fs::remove_file(&path).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // stale: file left, nobody listens
        let mut l = Listener::bind(&path).unwrap();
        assert!(l.accept().unwrap().is_none());
        let _c = connect(&path).unwrap();
        assert!(l.accept().unwrap().is_some());
        assert!(matches!(Listener::bind(&path), Err(VsockError::InUse(_))));
        l.remove();
        assert!(!path.exists());
        assert_eq!(port_path(&path, 52), dir.path().join("v.sock_52"));
        assert!(connect(&port_path(&path, 52)).is_err());
        assert!(connect(&dir.path().join("x".repeat(200))).is_err());
    }
}
