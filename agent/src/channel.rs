//! The agent channel inside the guest: a virtio-serial port named `den.agent` (QEMU), or a vsock
//! listener (den-vmm). Both are wrapped as non-blocking tokio byte streams.

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, VsockAddr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Name of the virtio-serial port the host exposes for the agent.
pub(crate) const PORT_NAME: &str = "den.agent";

/// Finds the device node of the virtio-serial port called [`PORT_NAME`].
pub(crate) fn find_port() -> Option<PathBuf> {
    let rd = std::fs::read_dir("/sys/class/virtio-ports").ok()?;
    for e in rd.flatten() {
        let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
        if name.trim() == PORT_NAME {
            return Some(PathBuf::from("/dev").join(e.file_name()));
        }
    }
    None
}

/// A non-blocking file descriptor (character device or socket) as a tokio stream.
pub(crate) struct FdStream {
    fd: AsyncFd<OwnedFd>,
}

impl FdStream {
    /// Wraps `fd`, which must already be in non-blocking mode.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<FdStream> {
        Ok(FdStream { fd: register(fd)? })
    }
}

impl AsyncRead for FdStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| nix::unistd::read(fd.as_raw_fd(), unfilled).map_err(io::Error::from)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for FdStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from)) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Opens the virtio port non-blocking, or `None` while the host has not connected yet
/// (the port then reports hang-up).
pub(crate) fn open_port(path: &std::path::Path) -> io::Result<Option<FdStream>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let mut pfd = libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN | libc::POLLOUT, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    unsafe { libc::poll(&mut pfd, 1, 0) };
    if pfd.revents & libc::POLLHUP != 0 {
        return Ok(None);
    }
    Ok(Some(FdStream::new(OwnedFd::from(f))?))
}

/// Listens on a vsock port (any CID).
pub(crate) fn listen_vsock(port: u32) -> io::Result<AsyncFd<OwnedFd>> {
    let fd =
        socket::socket(AddressFamily::Vsock, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)?;
    socket::bind(fd.as_raw_fd(), &VsockAddr::new(libc::VMADDR_CID_ANY, port))?;
    socket::listen(&fd, socket::Backlog::new(16).map_err(io::Error::from)?)?;
    register(fd)
}

fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is open and stays the same descriptor until the AsyncFd drops it.
    Ok(unsafe { AsyncFd::register(fd) }?)
}

/// Accepts one vsock connection.
pub(crate) async fn accept_vsock(listener: &AsyncFd<OwnedFd>) -> io::Result<FdStream> {
    loop {
        let mut guard = listener.readable().await?;
        let res = guard.try_io(|l| {
            socket::accept4(l.as_raw_fd(), SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC).map_err(io::Error::from)
        });
        if let Ok(r) = res {
            // SAFETY: accept4 returned a fresh descriptor that nothing else owns.
            let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(r?) };
            return FdStream::new(fd);
        }
    }
}
