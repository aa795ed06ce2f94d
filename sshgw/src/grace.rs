//! The login grace time: a connection that has not logged in by its deadline fails its next
//! read, which ends the SSH session and closes the socket whatever state the protocol is in
//! (half-way through key exchange, or waiting for an authentication request).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A stream that errors on read once `deadline` passes while `logged_in` is still false.
pub(crate) struct GraceStream<S> {
    inner: S,
    deadline: Pin<Box<Sleep>>,
    logged_in: Arc<AtomicBool>,
}

impl<S> GraceStream<S> {
    /// Wraps `inner`; `logged_in` is set by the session once a user is in.
    pub(crate) fn new(inner: S, deadline: Instant, logged_in: Arc<AtomicBool>) -> GraceStream<S> {
        GraceStream { inner, deadline: Box::pin(tokio::time::sleep_until(deadline)), logged_in }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GraceStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.logged_in.load(Ordering::Relaxed) && self.deadline.as_mut().poll(cx).is_ready() {
            let why = "no login within the SSH gateway's grace time";
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GraceStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn reads_fail_after_the_deadline_unless_logged_in() {
        let (a, _b) = tokio::io::duplex(64);
        let flag = Arc::new(AtomicBool::new(false));
        let mut s = GraceStream::new(a, Instant::now() + std::time::Duration::from_millis(50), flag);
        let err = s.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);

        let (a, mut b) = tokio::io::duplex(64);
        let flag = Arc::new(AtomicBool::new(true));
        let mut s = GraceStream::new(a, Instant::now(), flag);
        tokio::io::AsyncWriteExt::write_all(&mut b, b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi", "a logged-in connection reads on");
    }
}
