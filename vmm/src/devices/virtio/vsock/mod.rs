//! virtio-vsock (device type 19), stream sockets only, with Firecracker's Unix-socket host side
//! (see [`host`]). Queues: rx (0, device to guest), tx (1, guest to device), event (2, unused).
//!
//! Every header and length comes from the guest and is checked before it is acted on: packets
//! with a foreign source CID are dropped; a wrong destination CID, a socket type other than
//! stream, a length past the descriptors or above [`MAX_PAYLOAD`], an unknown operation or a
//! packet for a connection that does not exist is answered with RST. Memory per connection is
//! bounded (see [`connection`]), and so are the number of connections and of queued replies.
//!
//! The vCPU thread runs the tx queue inline on a notify; host sockets are watched by the event
//! loop, which calls [`VirtioDevice::host_event`]. When the guest posts rx buffers, pending host
//! data flows at once.

pub mod connection;
pub mod host;
pub mod packet;
#[cfg(test)]
mod tests;

use super::{complete, read_config_window, types, VirtioDevice};
use crate::event_loop::{Interest, Registrar, Registration};
use connection::{ConnKey, Connection, State};
pub use host::VsockError;
use host::{ConnectLine, LineState, Listener};
use packet::{op, Header, HDR_LEN, HOST_CID, TYPE_STREAM};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

/// Feature bit: stream sockets.
pub const F_STREAM: u64 = 1 << 0;
/// Largest payload accepted from or sent to the guest in one packet.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Most connections (and host clients still sending their CONNECT line) at a time.
pub const MAX_CONNECTIONS: usize = 128;
/// Most replies (RST, RESPONSE, REQUEST) waiting for guest rx buffers.
const MAX_CONTROL: usize = 1024;
/// Local ports of host-initiated connections come from here upwards.
const FIRST_LOCAL_PORT: u32 = 1 << 30;
/// Token of the listening socket.
const LISTENER: u32 = 0;
const RX: usize = 0;
const TX: usize = 1;

/// A host client that has not finished its `CONNECT <port>` line.
struct PendingClient {
    reg: Registration,
    sock: UnixStream,
    line: ConnectLine,
}

/// What an event-loop token stands for.
enum Slot {
    Pending(PendingClient),
    Conn(ConnKey),
}

#[derive(Debug, Default)]
struct Counters {
    opened: u64,
    resets: u64,
    dropped: u64,
    to_guest_bytes: u64,
    to_host_bytes: u64,
    control_dropped: u64,
}

/// The vsock device.
pub struct Vsock {
    guest_cid: u64,
    uds: PathBuf,
    listener: Listener,
    listener_reg: Option<Registration>,
    registrar: Registrar,
    conns: HashMap<ConnKey, Connection>,
    slots: HashMap<u32, Slot>,
    next_token: u32,
    next_local_port: u32,
    control: VecDeque<Header>,
    scratch: Vec<u8>,
    stats: Counters,
}

impl Vsock {
    /// A device for guest `guest_cid` listening on `uds`; host sockets are watched through
    /// `registrar` (bind it to the device's transport before the guest activates the device).
    pub fn new(guest_cid: u32, uds: &Path, registrar: Registrar) -> Result<Vsock, VsockError> {
        Ok(Vsock {
            guest_cid: u64::from(guest_cid),
            uds: uds.to_path_buf(),
            listener: Listener::bind(uds)?,
            listener_reg: None,
            registrar,
            conns: HashMap::new(),
            slots: HashMap::new(),
            next_token: 1,
            next_local_port: FIRST_LOCAL_PORT,
            control: VecDeque::new(),
            scratch: vec![0u8; MAX_PAYLOAD],
            stats: Counters::default(),
        })
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    fn busy(&self) -> bool {
        self.slots.len() >= MAX_CONNECTIONS
    }

    fn token(&mut self) -> u32 {
        loop {
            let t = self.next_token;
            self.next_token = self.next_token.checked_add(1).unwrap_or(1);
            if t != LISTENER && !self.slots.contains_key(&t) {
                return t;
            }
        }
    }

    fn local_port(&mut self, peer: u32) -> u32 {
        loop {
            let p = self.next_local_port;
            self.next_local_port = self.next_local_port.checked_add(1).unwrap_or(FIRST_LOCAL_PORT);
            if !self.conns.contains_key(&ConnKey { local: p, peer }) {
                return p;
            }
        }
    }

    /// Queues a reply; RSTs beyond the bound are dropped (the guest times out instead).
    fn send_control(&mut self, h: Header) {
        if h.op == op::RST {
            self.stats.resets += 1;
            if self.control.len() >= MAX_CONTROL {
                self.stats.control_dropped += 1;
                return;
            }
        }
        self.control.push_back(h);
    }

    /// Drops a connection, resetting it towards the guest when `rst`.
    fn remove(&mut self, key: ConnKey, rst: bool) {
        if let Some(mut c) = self.conns.remove(&key) {
            self.slots.remove(&c.token);
            if rst {
                let h = c.header(self.guest_cid, op::RST);
                self.send_control(h);
            }
        }
    }

    fn add_conn(&mut self, c: Connection) {
        self.stats.opened += 1;
        self.slots.insert(c.token, Slot::Conn(c.key));
        self.conns.insert(c.key, c);
    }

    // ---- guest to device (tx queue) ----

    fn process_tx(&mut self, q: &mut Queue, mem: &GuestMemoryMmap) -> bool {
        let mut notify = false;
        while let Some(chain) = q.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            match chain.reader(mem) {
                Ok(mut r) => self.handle_packet(&mut r),
                Err(_) => self.stats.dropped += 1,
            }
            notify |= complete(q, mem, head, 0);
        }
        notify
    }

    fn handle_packet(&mut self, r: &mut virtio_queue::Reader<'_>) {
        let mut raw = [0u8; HDR_LEN];
        if r.read_exact(&mut raw).is_err() {
            self.stats.dropped += 1;
            return;
        }
        let h = Header::decode(&raw);
        if h.src_cid != self.guest_cid {
            self.stats.dropped += 1; // nobody to answer
            return;
        }
        let len = h.len as usize;
        if h.dst_cid != HOST_CID || h.kind != TYPE_STREAM || len > MAX_PAYLOAD || len > r.available_bytes() {
            self.stats.dropped += 1;
            if h.op != op::RST {
                let key = ConnKey { local: h.dst_port, peer: h.src_port };
                if h.dst_cid == HOST_CID && self.conns.contains_key(&key) {
                    self.remove(key, true);
                } else {
                    self.send_control(h.reset_reply());
                }
            }
            return;
        }
        let key = ConnKey { local: h.dst_port, peer: h.src_port };
        match h.op {
            op::REQUEST => self.guest_connect(&h),
            op::RST => self.remove(key, false),
            _ if !self.conns.contains_key(&key) => self.send_control(h.reset_reply()),
            _ => self.on_connection(key, &h, r),
        }
    }

    /// A packet for an existing connection; its length was checked against the chain.
    fn on_connection(&mut self, key: ConnKey, h: &Header, r: &mut virtio_queue::Reader<'_>) {
        let Some(c) = self.conns.get_mut(&key) else { return };
        c.guest_credit(h);
        let ok = match h.op {
            op::RESPONSE if c.state == State::Connecting => {
                c.establish();
                true
            }
            op::RW => {
                let buf = &mut self.scratch[..h.len as usize];
                let ok = r.read_exact(buf).is_ok() && c.from_guest(buf);
                self.stats.to_host_bytes += if ok { u64::from(h.len) } else { 0 };
                ok
            }
            op::SHUTDOWN => {
                c.guest_shutdown(h.flags);
                true
            }
            op::CREDIT_UPDATE => true,
            op::CREDIT_REQUEST => {
                c.credit_request();
                true
            }
            _ => false, // RESPONSE when connected, or an unknown operation
        };
        if ok {
            c.flush();
        } else {
            self.remove(key, true);
        }
    }

    /// The guest connects to host port `dst_port`: `<uds>_<port>`.
    fn guest_connect(&mut self, h: &Header) {
        let key = ConnKey { local: h.dst_port, peer: h.src_port };
        if self.conns.contains_key(&key) {
            self.remove(key, true); // the guest reuses a live address: it is confused
            return;
        }
        if self.busy() {
            return self.send_control(h.reset_reply());
        }
        // A jailed den-vmm was handed its listening socket and has no folder to find
        // `<uds_path>_<port>` in: guest-initiated connections are refused there.
        if crate::files::is_handed_over(&self.uds) {
            return self.send_control(h.reset_reply());
        }
        let Ok(sock) = host::connect(&host::port_path(&self.uds, h.dst_port)) else {
            return self.send_control(h.reset_reply());
        };
        let token = self.token();
        let Ok(reg) = self.registrar.register(sock.as_raw_fd(), token, Interest::READ) else {
            return self.send_control(h.reset_reply());
        };
        let mut c = Connection::new(key, State::Established, sock, reg, token);
        c.guest_credit(h);
        let resp = c.header(self.guest_cid, op::RESPONSE);
        self.add_conn(c);
        self.send_control(resp);
    }

    // ---- host side ----

    fn accept_clients(&mut self) {
        loop {
            let sock = match self.listener.accept() {
                Ok(Some(s)) => s,
                Ok(None) | Err(_) => break,
            };
            if self.busy() {
                continue; // closes it: the client sees EOF instead of OK
            }
            let token = self.token();
            if let Ok(reg) = self.registrar.register(sock.as_raw_fd(), token, Interest::READ) {
                self.slots.insert(token, Slot::Pending(PendingClient { reg, sock, line: ConnectLine::default() }));
            }
        }
        if let Some(reg) = &self.listener_reg {
            let _ = reg.set_interest(Interest::READ);
        }
    }

    fn read_connect_line(&mut self, token: u32) {
        let Some(Slot::Pending(mut p)) = self.slots.remove(&token) else { return };
        let mut buf = [0u8; host::MAX_LINE];
        let state = match host::recv(&p.sock, &mut buf) {
            Ok(0) => return, // gave up: dropping it closes the socket
            Ok(n) => p.line.feed(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => LineState::Partial,
            Err(_) => return,
        };
        match state {
            LineState::Partial => {
                if p.reg.set_interest(Interest::READ).is_ok() {
                    self.slots.insert(token, Slot::Pending(p));
                }
            }
            LineState::Bad => {}
            LineState::Port(port, rest) => {
                let key = ConnKey { local: self.local_port(port), peer: port };
                let mut c = Connection::new(key, State::Connecting, p.sock, p.reg, token);
                c.stage(&rest);
                let req = c.header(self.guest_cid, op::REQUEST);
                self.add_conn(c);
                self.send_control(req);
            }
        }
    }

    fn service(&mut self, token: u32) {
        match self.slots.get(&token) {
            Some(Slot::Conn(key)) => {
                let key = *key;
                if let Some(c) = self.conns.get_mut(&key) {
                    c.flush();
                    c.fill(&mut self.scratch);
                }
            }
            Some(Slot::Pending(_)) => self.read_connect_line(token),
            None if token == LISTENER => self.accept_clients(),
            None => {}
        }
    }

    // ---- device to guest (rx queue) ----

    /// Fills rx buffers with queued replies, then with each connection's packets.
    fn deliver(&mut self, q: &mut Queue, mem: &GuestMemoryMmap) -> bool {
        let mut notify = false;
        if !q.ready() {
            return false;
        }
        while let Some(h) = self.control.front().copied() {
            let Some(chain) = q.pop_descriptor_chain(mem) else { return notify };
            let head = chain.head_index();
            let sent =
                chain.writer(mem).is_ok_and(|mut w| w.available_bytes() >= HDR_LEN && w.write_all(&h.encode()).is_ok());
            let written = if sent {
                self.control.pop_front();
                HDR_LEN as u32
            } else {
                0 // a buffer too small for a header: skipped
            };
            notify |= complete(q, mem, head, written);
        }
        for c in self.conns.values_mut() {
            while let Some(what) = c.outgoing() {
                let Some(chain) = q.pop_descriptor_chain(mem) else { return notify };
                let head = chain.head_index();
                let mut written = 0u32;
                if let Ok(mut w) = chain.writer(mem) {
                    if let Some(room) = w.available_bytes().checked_sub(HDR_LEN) {
                        let h = c.packet(what, self.guest_cid, room.min(MAX_PAYLOAD));
                        if w.write_all(&h.encode()).is_ok() && c.take_staged(h.len as usize, &mut w).is_ok() {
                            written = HDR_LEN as u32 + h.len;
                            self.stats.to_guest_bytes += u64::from(h.len);
                        }
                    }
                }
                notify |= complete(q, mem, head, written);
            }
        }
        notify
    }

    /// Tears down finished and broken connections and updates what each socket is watched for;
    /// `fired` is the token whose one-shot watch the current event consumed.
    fn settle(&mut self, fired: Option<u32>) -> bool {
        let mut gone = Vec::new();
        for c in self.conns.values_mut() {
            if !c.broken && !c.finished() && !c.abandoned() {
                c.sync_interest(fired == Some(c.token));
            }
            if c.broken || c.finished() || c.abandoned() {
                gone.push(c.key);
            }
        }
        let changed = !gone.is_empty();
        for key in gone {
            self.remove(key, true);
        }
        changed
    }

    fn run(&mut self, queues: &mut [Queue], mem: &GuestMemoryMmap, fired: Option<u32>) -> bool {
        let Some(rx) = queues.get_mut(RX) else { return false };
        let mut notify = self.deliver(rx, mem);
        while self.settle(fired) {
            notify |= self.deliver(rx, mem);
        }
        notify
    }

    #[cfg(test)]
    fn tokens(&self) -> Vec<u32> {
        let mut t: Vec<u32> = self.slots.keys().copied().collect();
        t.push(LISTENER);
        t
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        types::VSOCK
    }

    fn queue_sizes(&self) -> &[u16] {
        &[256, 256, 256]
    }

    fn features(&self) -> u64 {
        F_STREAM
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let cfg = self.guest_cid.to_le_bytes();
        read_config_window(&cfg, offset, data);
    }

    fn activate(&mut self, _features: u64) -> Result<(), String> {
        let reg = self
            .registrar
            .register(self.listener.fd(), LISTENER, Interest::READ)
            .map_err(|e| VsockError::Watch(e).to_string())?;
        self.listener_reg = Some(reg);
        Ok(())
    }

    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool {
        let mut notify = false;
        if index == TX {
            if let Some(tx) = queues.get_mut(TX) {
                notify |= self.process_tx(tx, mem);
            }
        }
        // rx: new buffers; tx: replies and credit to send. The event queue is left alone.
        notify | self.run(queues, mem, None)
    }

    fn host_event(&mut self, token: u32, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool {
        self.service(token);
        self.run(queues, mem, Some(token))
    }

    fn reset(&mut self) {
        self.listener_reg = None;
        self.slots.clear();
        self.conns.clear();
        self.control.clear();
    }

    fn end(&mut self) {
        // Only the file: the process exits next and the kernel closes the sockets, while the
        // ending thread may not be allowed to touch the event loop's epoll set.
        self.listener.remove();
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = &self.stats;
        vec![
            ("connections", self.conns.len() as u64),
            ("opened", s.opened),
            ("resets", s.resets),
            ("dropped", s.dropped),
            ("control_dropped", s.control_dropped),
            ("to_guest_bytes", s.to_guest_bytes),
            ("to_host_bytes", s.to_host_bytes),
        ]
    }
}
