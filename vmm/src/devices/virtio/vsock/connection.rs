//! One stream connection between a guest port and a host Unix socket: its state, the bytes
//! buffered each way, and credit-based flow control (virtio 1.2, 5.10.6.3).
//!
//! Guest to host: the guest may have at most [`BUF_ALLOC`] bytes in flight (sent but not yet
//! written to the host socket); more is a protocol violation and resets the connection, so that
//! buffer never grows past it. Host to guest: at most [`STAGE_MAX`] bytes are read ahead from
//! the host socket, and never more is sent than the guest's advertised
//! `buf_alloc - (tx_cnt - fwd_cnt)`.

use super::host;
use super::packet::{op, shutdown, Header};
use crate::event_loop::{Interest, Registration};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;

/// Receive buffer the device advertises to the guest, per connection.
pub const BUF_ALLOC: u32 = 256 * 1024;
/// Bytes read ahead from a host socket, per connection.
pub const STAGE_MAX: usize = 64 * 1024;
/// Send a credit update once the guest believes less than this much room is left.
const CREDIT_THRESHOLD: u32 = BUF_ALLOC / 2;

/// A connection's address: our (host) port and the guest's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// Host-side port.
    pub local: u32,
    /// Guest-side port.
    pub peer: u32,
}

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Host-initiated: REQUEST sent, waiting for the guest's RESPONSE.
    Connecting,
    /// Data flows.
    Established,
}

/// A packet the connection wants to send to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing {
    /// Host data (RW).
    Data,
    /// Our receive buffer has room again.
    CreditUpdate,
    /// We have data but the guest gave us no credit.
    CreditRequest,
    /// The host closed its sending side.
    Shutdown,
}

/// One connection.
pub struct Connection {
    // Dropped before `sock`: the watch ends before the fd is closed.
    reg: Registration,
    sock: UnixStream,
    /// Its address.
    pub key: ConnKey,
    /// Handshake state.
    pub state: State,
    /// The event-loop token of its socket.
    pub token: u32,
    /// A socket error happened: the connection must be reset.
    pub broken: bool,
    armed: Option<Interest>,
    // Host to guest.
    staged: VecDeque<u8>,
    host_eof: bool,
    shutdown_sent: bool,
    tx_cnt: u32,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    credit_requested: bool,
    // Guest to host.
    reply: Vec<u8>,
    out: VecDeque<u8>,
    rx_cnt: u32,
    fwd_cnt: u32,
    last_fwd_sent: u32,
    credit_asked: bool,
    guest_shut: u32,
    host_write_shut: bool,
}

impl Connection {
    /// A connection over `sock`, watched through `reg` under `token`.
    pub fn new(key: ConnKey, state: State, sock: UnixStream, reg: Registration, token: u32) -> Connection {
        Connection {
            reg,
            sock,
            key,
            state,
            token,
            broken: false,
            armed: None,
            staged: VecDeque::new(),
            host_eof: false,
            shutdown_sent: false,
            tx_cnt: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            credit_requested: false,
            reply: Vec::new(),
            out: VecDeque::new(),
            rx_cnt: 0,
            fwd_cnt: 0,
            last_fwd_sent: 0,
            credit_asked: false,
            guest_shut: 0,
            host_write_shut: false,
        }
    }

    /// A header for this connection carrying our current credit.
    pub fn header(&mut self, guest_cid: u64, op: u16) -> Header {
        self.last_fwd_sent = self.fwd_cnt;
        self.credit_asked = false;
        Header {
            buf_alloc: BUF_ALLOC,
            fwd_cnt: self.fwd_cnt,
            ..Header::to_guest(guest_cid, self.key.local, self.key.peer, op)
        }
    }

    /// Takes the credit fields of a packet the guest sent on this connection.
    pub fn guest_credit(&mut self, h: &Header) {
        if (h.buf_alloc, h.fwd_cnt) != (self.peer_buf_alloc, self.peer_fwd_cnt) {
            self.credit_requested = false;
        }
        self.peer_buf_alloc = h.buf_alloc;
        self.peer_fwd_cnt = h.fwd_cnt;
    }

    /// Bytes the guest can still take. A guest reporting more consumed than was sent gets none.
    pub fn peer_free(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// The guest accepted our REQUEST: tell the host client which port it got.
    pub fn establish(&mut self) {
        self.state = State::Established;
        self.reply = format!("OK {}\n", self.key.local).into_bytes();
    }

    /// Seeds host-to-guest data (bytes a client sent right after its CONNECT line).
    pub fn stage(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(STAGE_MAX.saturating_sub(self.staged.len()));
        self.staged.extend(&bytes[..n]);
    }

    /// Guest data for the host socket. Refused (false) when it exceeds the credit we gave or
    /// arrives after the guest said it would send no more: the guest must then be reset.
    #[must_use]
    pub fn from_guest(&mut self, data: &[u8]) -> bool {
        if self.state != State::Established || self.guest_shut & shutdown::SEND != 0 {
            return false;
        }
        if self.out.len() + data.len() > BUF_ALLOC as usize {
            return false;
        }
        self.out.extend(data);
        self.rx_cnt = self.rx_cnt.wrapping_add(data.len() as u32);
        true
    }

    /// The guest shut down one or both directions (flags accumulate).
    pub fn guest_shutdown(&mut self, flags: u32) {
        self.guest_shut |= flags & shutdown::BOTH;
    }

    /// The guest asked for our credit.
    pub fn credit_request(&mut self) {
        self.credit_asked = true;
    }

    /// Writes buffered bytes to the host socket until it would block; then half-closes it when
    /// the guest will send nothing more.
    pub fn flush(&mut self) {
        while !self.reply.is_empty() {
            match host::send(&self.sock, &self.reply) {
                Ok(n) => drop(self.reply.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.broken = true;
                    return;
                }
            }
        }
        while !self.out.is_empty() {
            let (front, _) = self.out.as_slices();
            match host::send(&self.sock, front) {
                Ok(n) => {
                    self.out.drain(..n);
                    self.fwd_cnt = self.fwd_cnt.wrapping_add(n as u32);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.broken = true;
                    return;
                }
            }
        }
        if self.guest_shut & shutdown::SEND != 0 && !self.host_write_shut {
            self.host_write_shut = true;
            let _ = self.sock.shutdown(Shutdown::Write);
        }
    }

    /// Reads from the host socket into the read-ahead buffer until it is full or the socket
    /// would block; `scratch` is the device's bounce buffer.
    pub fn fill(&mut self, scratch: &mut [u8]) {
        while self.wants_read() {
            let room = (STAGE_MAX - self.staged.len()).min(scratch.len());
            match host::recv(&self.sock, &mut scratch[..room]) {
                Ok(0) => self.host_eof = true,
                Ok(n) => self.staged.extend(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.broken = true;
                    return;
                }
            }
        }
    }

    fn wants_read(&self) -> bool {
        !self.host_eof && !self.broken && self.guest_shut & shutdown::RCV == 0 && self.staged.len() < STAGE_MAX
    }

    fn wants_credit_update(&self) -> bool {
        let believed_free = BUF_ALLOC.saturating_sub(self.rx_cnt.wrapping_sub(self.last_fwd_sent));
        self.credit_asked || (self.fwd_cnt != self.last_fwd_sent && believed_free < CREDIT_THRESHOLD)
    }

    /// What to send the guest next, if anything.
    pub fn outgoing(&self) -> Option<Outgoing> {
        if self.state != State::Established || self.broken {
            return None;
        }
        let can_send = self.guest_shut & shutdown::RCV == 0;
        if can_send && !self.staged.is_empty() && self.peer_free() > 0 {
            return Some(Outgoing::Data);
        }
        if self.wants_credit_update() {
            return Some(Outgoing::CreditUpdate);
        }
        if can_send && !self.staged.is_empty() && !self.credit_requested {
            return Some(Outgoing::CreditRequest);
        }
        if self.host_eof && (self.staged.is_empty() || !can_send) && !self.shutdown_sent {
            return Some(Outgoing::Shutdown);
        }
        None
    }

    /// Builds the packet for `what` with at most `room` payload bytes, and accounts for it.
    /// For data, the caller then copies `len` bytes with [`Connection::take_staged`].
    pub fn packet(&mut self, what: Outgoing, guest_cid: u64, room: usize) -> Header {
        match what {
            Outgoing::Data => {
                let n = self.staged.len().min(room).min(self.peer_free() as usize);
                self.tx_cnt = self.tx_cnt.wrapping_add(n as u32);
                Header { len: n as u32, ..self.header(guest_cid, op::RW) }
            }
            Outgoing::CreditUpdate => self.header(guest_cid, op::CREDIT_UPDATE),
            Outgoing::CreditRequest => {
                self.credit_requested = true;
                self.header(guest_cid, op::CREDIT_REQUEST)
            }
            Outgoing::Shutdown => {
                self.shutdown_sent = true;
                Header { flags: shutdown::SEND, ..self.header(guest_cid, op::SHUTDOWN) }
            }
        }
    }

    /// Moves `n` staged bytes into `w` (the guest's buffer).
    pub fn take_staged(&mut self, n: usize, w: &mut impl Write) -> io::Result<()> {
        let n = n.min(self.staged.len());
        let (a, b) = self.staged.as_slices();
        let first = n.min(a.len());
        w.write_all(&a[..first])?;
        w.write_all(&b[..n - first])?;
        self.staged.drain(..n);
        Ok(())
    }

    /// Both sides are done: the guest will send nothing more and everything it sent reached the
    /// host, and the host side is closed too (or the guest will not receive any more).
    pub fn finished(&self) -> bool {
        let guest_done = self.guest_shut & shutdown::SEND != 0 && self.out.is_empty() && self.reply.is_empty();
        let host_done = self.guest_shut & shutdown::RCV != 0 || (self.host_eof && self.shutdown_sent);
        guest_done && host_done
    }

    /// A host client that gave up before the guest answered.
    pub fn abandoned(&self) -> bool {
        self.state == State::Connecting && self.host_eof
    }

    /// What the socket should be watched for now.
    pub fn interest(&self) -> Interest {
        Interest { read: self.wants_read(), write: !self.broken && (!self.reply.is_empty() || !self.out.is_empty()) }
    }

    /// Updates the watch when it changed, or always when `fired` (a one-shot event consumed it).
    pub fn sync_interest(&mut self, fired: bool) {
        let want = self.interest();
        if fired || self.armed != Some(want) {
            match self.reg.set_interest(want) {
                Ok(()) => self.armed = Some(want),
                Err(_) => self.broken = true,
            }
        }
    }

    /// Bytes buffered towards the host and read ahead towards the guest.
    pub fn buffered(&self) -> (usize, usize) {
        (self.out.len() + self.reply.len(), self.staged.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_loop::Registrar;
    use std::io::Read;

    fn conn() -> (Connection, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let reg = Registrar::inert().unwrap().register(std::os::fd::AsRawFd::as_raw_fd(&a), 1, Interest::READ).unwrap();
        (Connection::new(ConnKey { local: 5, peer: 6 }, State::Established, a, reg, 1), b)
    }

    #[test]
    fn credit_both_ways() {
        let (mut c, mut peer) = conn();
        // No credit from the guest yet: data waits, a credit request goes out once.
        c.stage(b"hello");
        assert_eq!(c.outgoing(), Some(Outgoing::CreditRequest));
        c.packet(Outgoing::CreditRequest, 3, 100);
        assert_eq!(c.outgoing(), None);
        c.guest_credit(&Header { buf_alloc: 3, fwd_cnt: 0, ..Header::default() });
        assert_eq!(c.outgoing(), Some(Outgoing::Data));
        let h = c.packet(Outgoing::Data, 3, 100);
        assert_eq!(h.len, 3, "limited by the guest's buf_alloc");
        let mut got = Vec::new();
        c.take_staged(3, &mut got).unwrap();
        assert_eq!(got, b"hel");
        assert_eq!(c.peer_free(), 0);
        c.guest_credit(&Header { buf_alloc: 3, fwd_cnt: 3, ..Header::default() });
        assert_eq!(c.packet(Outgoing::Data, 3, 1).len, 1, "limited by the buffer");
        // A guest claiming to have consumed more than it got is given nothing.
        c.guest_credit(&Header { buf_alloc: 100, fwd_cnt: 1000, ..Header::default() });
        assert_eq!(c.peer_free(), 0);

        // Guest to host: within credit, written through; beyond it, refused.
        assert!(c.from_guest(&[7u8; 1000]));
        c.flush();
        let mut buf = vec![0u8; 2000];
        assert_eq!(peer.read(&mut buf).unwrap(), 1000);
        assert!(!c.from_guest(&vec![0u8; BUF_ALLOC as usize + 1]));
        // Fill the socket until it blocks, then overflow the credit.
        let chunk = vec![1u8; 64 * 1024];
        let mut sent = 0usize;
        while sent < 16 << 20 && c.from_guest(&chunk) {
            c.flush();
            sent += chunk.len();
        }
        assert!(c.buffered().0 <= BUF_ALLOC as usize);
        assert!(c.interest().write);
        assert_eq!(c.outgoing(), Some(Outgoing::CreditUpdate));
        let h = c.header(3, op::CREDIT_UPDATE);
        assert_eq!((h.buf_alloc, h.fwd_cnt), (BUF_ALLOC, c.fwd_cnt));
        c.credit_request();
        assert_eq!(c.outgoing(), Some(Outgoing::CreditUpdate));
    }

    #[test]
    fn half_close_then_finish() {
        let (mut c, mut peer) = conn();
        c.guest_credit(&Header { buf_alloc: 1 << 16, ..Header::default() });
        assert!(c.from_guest(b"bye"));
        c.guest_shutdown(shutdown::SEND);
        assert!(!c.from_guest(b"more"), "data after SHUTDOWN(SEND)");
        c.flush();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"bye", "host sees EOF after the data");
        assert!(!c.finished(), "host side still open");
        peer.write_all(b"late").unwrap();
        drop(peer);
        let mut scratch = vec![0u8; 1024];
        c.fill(&mut scratch);
        assert_eq!(c.outgoing(), Some(Outgoing::Data));
        let h = c.packet(Outgoing::Data, 3, 1024);
        c.take_staged(h.len as usize, &mut Vec::new()).unwrap();
        assert_eq!(c.outgoing(), Some(Outgoing::Shutdown));
        let h = c.packet(Outgoing::Shutdown, 3, 0);
        assert_eq!((h.op, h.flags), (op::SHUTDOWN, shutdown::SEND));
        assert!(c.finished());
        assert_eq!(c.interest(), Interest::NONE);
    }
}
