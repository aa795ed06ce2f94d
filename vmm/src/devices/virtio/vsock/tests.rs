//! The vsock device driven through guest memory: the test plays the guest driver (rx buffers
//! laid out like Linux's: a 44-byte header descriptor and a 4 KiB data descriptor) and the host
//! clients and listeners, over real Unix sockets in a temporary directory.

use super::connection::BUF_ALLOC;
use super::packet::{op, shutdown, Header, HDR_LEN, TYPE_STREAM};
use super::*;
use crate::devices::irq::IrqLine;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::testkit::{TestQueue, BUFFERS, DESC};
use crate::devices::virtio::VirtioInterrupt;
use crate::event_loop::{EventLoop, EventTarget};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CID: u64 = 3;
const RX_SLOTS: u64 = 64;
const RX_SLOT: u64 = 0x1100;
const RX_DATA: u32 = 4096;
const TX_HDR: u64 = 0xa0000;
const TX_DATA: u64 = 0xa0100;

enum Dev {
    /// The device alone; host events are delivered by [`Guest::pump`].
    Direct(Box<Vsock>, Vec<Queue>),
    /// Behind the transport, with a running event loop.
    Transport(Arc<Mutex<MmioTransport>>, EventLoop),
}

/// The guest driver side.
struct Guest {
    rx: TestQueue,
    tx: TestQueue,
    dev: Dev,
    dir: tempfile::TempDir,
    rx_posted: u64,
    rx_seen: u16,
    rx_slots: HashMap<u16, u64>,
    /// The guest's receive counters, per (host port, guest port).
    fwd: HashMap<(u32, u32), u32>,
}

fn hdr(op: u16, src_port: u32, dst_port: u32) -> Header {
    Header {
        src_cid: CID,
        dst_cid: packet::HOST_CID,
        src_port,
        dst_port,
        kind: TYPE_STREAM,
        op,
        buf_alloc: BUF_ALLOC,
        ..Header::default()
    }
}

fn queues_in(mem: &GuestMemoryMmap) -> (TestQueue, TestQueue, TestQueue) {
    let rx = TestQueue::at(mem.clone(), DESC, 256);
    let tx = TestQueue::at(mem.clone(), DESC + 0x3000, 256);
    let ev = TestQueue::at(mem.clone(), DESC + 0x6000, 256);
    (rx, tx, ev)
}

impl Guest {
    fn new() -> Guest {
        let dir = tempfile::tempdir().unwrap();
        let mem = TestQueue::new(16).mem;
        let (rx, tx, ev) = queues_in(&mem);
        let dev = Vsock::new(CID as u32, &dir.path().join("v.sock"), Registrar::inert().unwrap()).unwrap();
        let queues = vec![rx.queue(), tx.queue(), ev.queue()];
        let mut g = Guest {
            rx,
            tx,
            dev: Dev::Direct(Box::new(dev), queues),
            dir,
            rx_posted: 0,
            rx_seen: 0,
            rx_slots: HashMap::new(),
            fwd: HashMap::new(),
        };
        if let Dev::Direct(d, _) = &mut g.dev {
            d.activate(F_STREAM).unwrap();
        }
        g
    }

    /// The device behind a virtio-mmio transport, set up by register writes like a driver, with
    /// the event loop running.
    fn with_transport() -> Guest {
        let dir = tempfile::tempdir().unwrap();
        let mem = TestQueue::new(16).mem;
        let (rx, tx, _) = queues_in(&mem);
        let mut lp = EventLoop::new().unwrap();
        let registrar = lp.registrar();
        let dev = Vsock::new(CID as u32, &dir.path().join("v.sock"), registrar.clone()).unwrap();
        let irq = Arc::new(VirtioInterrupt::new(IrqLine::counting()));
        let t = Arc::new(Mutex::new(MmioTransport::new(Box::new(dev), mem, irq)));
        let target: Arc<dyn EventTarget> = t.clone();
        registrar.bind(&target);
        lp.start().unwrap();
        driver_init(&mut t.lock().unwrap());
        Guest {
            rx,
            tx,
            dev: Dev::Transport(t, lp),
            dir,
            rx_posted: 0,
            rx_seen: 0,
            rx_slots: HashMap::new(),
            fwd: HashMap::new(),
        }
    }

    fn uds(&self) -> std::path::PathBuf {
        self.dir.path().join("v.sock")
    }

    fn notify(&mut self, index: usize) {
        match &mut self.dev {
            Dev::Direct(d, qs) => {
                d.process_queue(index, qs, &self.rx.mem);
            }
            Dev::Transport(t, _) => {
                use crate::devices::bus::BusDevice;
                t.lock().unwrap().write(0x050, &(index as u32).to_le_bytes());
            }
        }
    }

    fn vsock(&mut self) -> &mut Vsock {
        match &mut self.dev {
            Dev::Direct(d, _) => d,
            Dev::Transport(..) => panic!("direct device only"),
        }
    }

    /// Delivers a (possibly spurious) event for every host socket, like the event loop would.
    fn pump(&mut self) {
        if let Dev::Direct(d, qs) = &mut self.dev {
            for t in d.tokens() {
                d.host_event(t, qs, &self.rx.mem);
            }
        }
    }

    /// Posts `n` rx chains (header + 4 KiB data, as Linux does).
    fn post_rx(&mut self, n: u64) {
        for _ in 0..n {
            assert!(self.rx_posted - u64::from(self.rx_seen) < RX_SLOTS / 2, "too many rx buffers outstanding");
            let slot = BUFFERS + (self.rx_posted % RX_SLOTS) * RX_SLOT;
            let head = self.rx.add_chain(&[(slot, HDR_LEN as u32, true), (slot + 0x40, RX_DATA, true)]);
            self.rx_slots.insert(head, slot);
            self.rx_posted += 1;
        }
        self.notify(0);
    }

    /// Sends one packet on the tx queue (header and data in separate descriptors).
    fn send_raw(&mut self, h: &Header, data: &[u8]) {
        self.tx.write(TX_HDR, &h.encode());
        self.tx.write(TX_DATA, data);
        if data.is_empty() {
            self.tx.add_chain(&[(TX_HDR, HDR_LEN as u32, false)]);
        } else {
            self.tx.add_chain(&[(TX_HDR, HDR_LEN as u32, false), (TX_DATA, data.len() as u32, false)]);
        }
        self.notify(1);
    }

    /// Sends `op` on connection (host port, guest port) with the guest's current credit.
    fn send(&mut self, op: u16, host: u32, guest: u32, data: &[u8]) {
        let fwd = self.fwd.get(&(host, guest)).copied().unwrap_or(0);
        let h = Header { len: data.len() as u32, fwd_cnt: fwd, ..hdr(op, guest, host) };
        self.send_raw(&h, data);
    }

    /// Packets the device has put on the rx queue since the last call. RW data counts as
    /// consumed by the guest at once.
    fn recv(&mut self) -> Vec<(Header, Vec<u8>)> {
        let mut out = Vec::new();
        while self.rx_seen != self.rx.used_idx() {
            let (head, len) = self.rx.used(self.rx_seen);
            self.rx_seen = self.rx_seen.wrapping_add(1);
            let slot = self.rx_slots[&(head as u16)];
            if (len as usize) < HDR_LEN {
                out.push((Header::default(), Vec::new()));
                continue;
            }
            let raw: [u8; HDR_LEN] = self.rx.read(slot, HDR_LEN).try_into().unwrap();
            let h = Header::decode(&raw);
            let data = self.rx.read(slot + 0x40, len as usize - HDR_LEN);
            assert_eq!(h.len as usize, data.len());
            if h.op == op::RW {
                let f = self.fwd.entry((h.src_port, h.dst_port)).or_default();
                *f = f.wrapping_add(h.len);
            }
            out.push((h, data));
        }
        out
    }

    /// Waits (pumping host events, or letting the event loop run) until `f` holds for the
    /// packets received so far; returns them.
    fn wait_for(&mut self, what: &str, f: impl Fn(&[(Header, Vec<u8>)]) -> bool) -> Vec<(Header, Vec<u8>)> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.pump();
            got.extend(self.recv());
            if f(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; got {:?}", ops(&got));
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Keeps the rx queue stocked with `n` outstanding buffers.
    fn restock(&mut self, n: u64) {
        let outstanding = self.rx_posted - u64::from(self.rx_seen);
        if outstanding < n {
            self.post_rx(n - outstanding);
        }
    }
}

/// What a driver does to bring the device up: features (VERSION_1 and STREAM), three queues
/// at the [`queues_in`] addresses, DRIVER_OK.
fn driver_init(tr: &mut MmioTransport) {
    use crate::devices::bus::BusDevice;
    let mut w = |off: u64, v: u32| tr.write(off, &v.to_le_bytes());
    w(0x070, 3);
    w(0x024, 1);
    w(0x020, 1);
    w(0x024, 0);
    w(0x020, 1);
    w(0x070, 3 | 8);
    for i in 0..3u32 {
        let base = DESC + 0x3000 * u64::from(i);
        w(0x030, i);
        w(0x038, 256);
        w(0x080, base as u32);
        w(0x090, (base + 0x1000) as u32);
        w(0x0a0, (base + 0x2000) as u32);
        w(0x044, 1);
    }
    w(0x070, 3 | 8 | 4);
    let mut status = [0u8; 4];
    tr.read(0x070, &mut status);
    assert_eq!(u32::from_le_bytes(status), 15, "driver OK, no reset needed");
}

impl Guest {
    /// The driver resets the device and sets it up again with fresh rings.
    fn reinit(&mut self) {
        use crate::devices::bus::BusDevice;
        let Dev::Transport(t, _) = &self.dev else { panic!("transport only") };
        let mut tr = t.lock().unwrap();
        tr.write(0x070, &0u32.to_le_bytes());
        self.rx.write(DESC, &vec![0u8; 0x9000]);
        let (rx, tx, _) = queues_in(&self.rx.mem);
        (self.rx, self.tx) = (rx, tx);
        (self.rx_posted, self.rx_seen) = (0, 0);
        self.rx_slots.clear();
        self.fwd.clear();
        driver_init(&mut tr);
    }
}

fn ops(got: &[(Header, Vec<u8>)]) -> Vec<u16> {
    got.iter().map(|(h, _)| h.op).collect()
}

fn has(op: u16) -> impl Fn(&[(Header, Vec<u8>)]) -> bool {
    move |got| got.iter().any(|(h, _)| h.op == op)
}

fn data_of(got: &[(Header, Vec<u8>)]) -> Vec<u8> {
    got.iter().filter(|(h, _)| h.op == op::RW).flat_map(|(_, d)| d.clone()).collect()
}

fn read_exact_timeout(s: &mut UnixStream, n: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).unwrap();
    buf
}

/// Host-initiated: connects `CONNECT port` through the listener; returns the client and the
/// host port the device chose once the guest accepted.
fn host_connect(g: &mut Guest, port: u32, extra: &[u8]) -> (UnixStream, u32) {
    let mut c = UnixStream::connect(g.uds()).unwrap();
    c.write_all(format!("CONNECT {port}\n").as_bytes()).unwrap();
    c.write_all(extra).unwrap();
    let got = g.wait_for("REQUEST", has(op::REQUEST));
    let (req, _) = got.iter().find(|(h, _)| h.op == op::REQUEST).unwrap();
    assert_eq!((req.src_cid, req.dst_cid, req.dst_port, req.kind), (2, CID, port, TYPE_STREAM));
    assert!(req.src_port >= 1 << 30);
    let local = req.src_port;
    g.send(op::RESPONSE, local, port, &[]);
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    let deadline = Instant::now() + Duration::from_secs(5);
    while line.last() != Some(&b'\n') {
        assert!(Instant::now() < deadline, "no OK line: {line:?}");
        g.pump();
        if let Ok(1) = c.read(&mut b) {
            line.push(b[0]);
        }
    }
    assert_eq!(String::from_utf8(line).unwrap(), format!("OK {local}\n"));
    (c, local)
}

#[test]
fn config_features_and_queues() {
    let mut g = Guest::new();
    let d = g.vsock();
    assert_eq!((d.device_type(), d.queue_sizes(), d.features()), (19, &[256u16, 256, 256][..], 1));
    let mut cfg = [0xffu8; 8];
    d.read_config(0, &mut cfg);
    assert_eq!(u64::from_le_bytes(cfg), CID);
    let mut hi = [0xffu8; 4];
    d.read_config(6, &mut hi);
    assert_eq!(hi, [0, 0, 0, 0]);
    d.read_config(u64::MAX, &mut hi);
    assert_eq!(hi, [0; 4]);
}

#[test]
fn guest_connects_to_host_and_data_flows_both_ways() {
    let mut g = Guest::new();
    let listener = UnixListener::bind(host::port_path(&g.uds(), 5000)).unwrap();
    g.post_rx(16);
    g.send(op::REQUEST, 5000, 1234, &[]);
    let got = g.recv();
    assert_eq!(ops(&got), [op::RESPONSE]);
    let (resp, _) = &got[0];
    assert_eq!((resp.src_port, resp.dst_port, resp.buf_alloc), (5000, 1234, BUF_ALLOC));
    let (mut h, _) = listener.accept().unwrap();

    g.send(op::RW, 5000, 1234, b"hello from the guest");
    assert_eq!(read_exact_timeout(&mut h, 20), b"hello from the guest");

    let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    h.write_all(&big).unwrap();
    let mut got = Vec::new();
    while got.len() < big.len() {
        g.restock(16);
        got.extend(data_of(&g.wait_for("data", |p| !p.is_empty())));
    }
    assert_eq!(got, big);

    // The guest closes: the host sees EOF, the device finishes with RST.
    let h2 = Header { flags: shutdown::BOTH, ..hdr(op::SHUTDOWN, 1234, 5000) };
    g.send_raw(&h2, &[]);
    let mut rest = Vec::new();
    h.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    h.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let got = g.wait_for("RST", has(op::RST));
    assert_eq!(got.last().unwrap().0.dst_port, 1234);
    assert_eq!(g.vsock().connections(), 0);
}

#[test]
fn guest_connect_to_missing_host_port_is_reset() {
    let mut g = Guest::new();
    g.post_rx(4);
    g.send(op::REQUEST, 7777, 1, &[]);
    let got = g.recv();
    assert_eq!(ops(&got), [op::RST]);
    assert_eq!((got[0].0.src_port, got[0].0.dst_port), (7777, 1));
}

#[test]
fn host_connects_to_guest_with_handshake_and_half_close() {
    let mut g = Guest::new();
    g.post_rx(16);
    let (mut c, local) = host_connect(&mut g, 1024, b"early bytes");
    let got = g.wait_for("pipelined data", |p| data_of(p) == b"early bytes");
    assert!(got.iter().all(|(h, _)| h.src_port == local && h.dst_port == 1024));

    g.send(op::RW, local, 1024, b"pong");
    assert_eq!(read_exact_timeout(&mut c, 4), b"pong");

    // The host half-closes: the guest is told SHUTDOWN(SEND) and can still send.
    c.shutdown(std::net::Shutdown::Write).unwrap();
    g.restock(16);
    let got = g.wait_for("SHUTDOWN", has(op::SHUTDOWN));
    let (sd, _) = got.iter().find(|(h, _)| h.op == op::SHUTDOWN).unwrap();
    assert_eq!(sd.flags, shutdown::SEND);
    g.send(op::RW, local, 1024, b"after");
    assert_eq!(read_exact_timeout(&mut c, 5), b"after");
    // The guest closes too: RST ends it and the client sees EOF.
    let h = Header { flags: shutdown::BOTH, ..hdr(op::SHUTDOWN, 1024, local) };
    g.send_raw(&h, &[]);
    g.restock(16);
    g.wait_for("RST", has(op::RST));
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert_eq!(g.vsock().connections(), 0);
}

#[test]
fn guest_refusal_and_client_hangups_close_cleanly() {
    let mut g = Guest::new();
    g.post_rx(16);
    // The guest refuses: the client sees EOF instead of OK.
    let mut c = UnixStream::connect(g.uds()).unwrap();
    c.write_all(b"CONNECT 9\n").unwrap();
    let got = g.wait_for("REQUEST", has(op::REQUEST));
    let local = got[0].0.src_port;
    g.send(op::RST, local, 9, &[]);
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());

    // A client that hangs up while the guest has not answered: the guest gets RST.
    let mut c = UnixStream::connect(g.uds()).unwrap();
    c.write_all(b"CONNECT 10\n").unwrap();
    g.wait_for("REQUEST", has(op::REQUEST));
    drop(c);
    let got = g.wait_for("RST", has(op::RST));
    assert_eq!(got.last().unwrap().0.dst_port, 10);
    // A late RESPONSE for it is answered with RST.
    g.send(op::RESPONSE, got.last().unwrap().0.src_port, 10, &[]);
    assert_eq!(ops(&g.recv()), [op::RST]);

    // Bad or unfinished CONNECT lines just close the client.
    for line in [&b"HELLO\n"[..], b"CONNECT x\n", &[b'9'; 40]] {
        let mut c = UnixStream::connect(g.uds()).unwrap();
        c.write_all(line).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        g.pump();
        g.pump();
        // EOF, or a reset when the device closed with the client's bytes unread.
        let mut rest = Vec::new();
        match c.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty()),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        }
    }
    let c = UnixStream::connect(g.uds()).unwrap();
    g.pump();
    drop(c);
    g.pump();
    assert!(g.recv().is_empty());
    assert_eq!(g.vsock().slots.len(), 0);

    // A client that closes after OK: the guest is told, then RST once it closes too.
    let (c, local) = host_connect(&mut g, 11, b"");
    drop(c);
    g.restock(16);
    g.wait_for("SHUTDOWN", has(op::SHUTDOWN));
    let h = Header { flags: shutdown::BOTH, ..hdr(op::SHUTDOWN, 11, local) };
    g.send_raw(&h, &[]);
    g.wait_for("RST", has(op::RST));
    assert_eq!(g.vsock().connections(), 0);
}

#[test]
fn credit_to_the_guest_is_never_exceeded() {
    let mut g = Guest::new();
    g.post_rx(16);
    let (mut c, local) = host_connect(&mut g, 1024, b"");
    // The guest advertises 1000 bytes.
    let mut small = Header { buf_alloc: 1000, ..hdr(op::CREDIT_UPDATE, 1024, local) };
    g.send_raw(&small, &[]);
    c.write_all(&[5u8; 5000]).unwrap();
    let got = g.wait_for("credit request", has(op::CREDIT_REQUEST));
    assert_eq!(data_of(&got).len(), 1000);
    g.pump();
    assert!(g.recv().is_empty(), "nothing beyond the credit");
    // The guest consumed 600 bytes.
    small.fwd_cnt = 600;
    g.send_raw(&small, &[]);
    g.restock(16);
    let got = g.wait_for("more data", |p| !data_of(p).is_empty());
    assert_eq!(data_of(&got).len(), 600);
    // The guest asks for our credit (its own credit unchanged: still full).
    g.send_raw(&Header { op: op::CREDIT_REQUEST, ..small }, &[]);
    let got = g.recv();
    assert_eq!(ops(&got), [op::CREDIT_UPDATE]);
    assert_eq!(got[0].0.buf_alloc, BUF_ALLOC);
}

#[test]
fn credit_from_the_guest_is_enforced_and_renewed() {
    let mut g = Guest::new();
    g.post_rx(16);
    let (mut c, local) = host_connect(&mut g, 1024, b"");
    let chunk = vec![9u8; 64 * 1024];
    // Within credit: 192 KiB, then the host reads it all and a credit update follows.
    for _ in 0..3 {
        g.send(op::RW, local, 1024, &chunk);
    }
    assert_eq!(read_exact_timeout(&mut c, 3 * chunk.len()).len(), 3 * chunk.len());
    let got = g.wait_for("credit update", has(op::CREDIT_UPDATE));
    let (cu, _) = got.iter().find(|(h, _)| h.op == op::CREDIT_UPDATE).unwrap();
    assert!(cu.fwd_cnt > 0 && cu.buf_alloc == BUF_ALLOC);
    g.pump();
    g.send(op::CREDIT_REQUEST, local, 1024, &[]);
    let got = g.wait_for("credit update", has(op::CREDIT_UPDATE));
    assert_eq!(got.last().unwrap().0.fwd_cnt, 3 * 64 * 1024, "everything reached the host");
    // The host stops reading; a guest that ignores its credit is reset, and the device never
    // buffers more than it advertised.
    let mut sent = 0usize;
    while !g.recv().iter().any(|(h, _)| h.op == op::RST) {
        g.restock(16);
        g.send(op::RW, local, 1024, &chunk);
        sent += chunk.len();
        assert!(sent < 64 << 20, "never reset");
        if let Dev::Direct(d, _) = &g.dev {
            assert!(d.conns.values().all(|c| c.buffered().0 <= BUF_ALLOC as usize));
        }
    }
    assert_eq!(g.vsock().connections(), 0);
}

#[test]
fn malformed_packets_are_reset_or_dropped() {
    let mut g = Guest::new();
    let listener = UnixListener::bind(host::port_path(&g.uds(), 80)).unwrap();
    g.post_rx(30);
    // Short header: dropped, nothing to answer.
    g.tx.write(TX_HDR, &[1u8; 20]);
    g.tx.add_chain(&[(TX_HDR, 20, false)]);
    g.notify(1);
    // Descriptors outside guest memory, and a writable-only chain: dropped.
    g.tx.add_chain(&[(u64::MAX - 100, 64, false)]);
    g.tx.add_chain(&[(1 << 30, 44, false)]);
    g.tx.add_chain(&[(TX_HDR, 44, true)]);
    g.notify(1);
    // A foreign source CID: dropped.
    g.send_raw(&Header { src_cid: 9, ..hdr(op::REQUEST, 1, 80) }, &[]);
    assert!(g.recv().is_empty());
    assert_eq!(g.tx.used_idx(), 5, "every chain is returned");

    // Each of these is answered with RST.
    let bad = [
        Header { dst_cid: 7, ..hdr(op::REQUEST, 1, 80) },
        Header { kind: 2, ..hdr(op::REQUEST, 1, 80) },
        Header { len: 100, ..hdr(op::RW, 1, 80) }, // len past the descriptors
        Header { len: 70_000, ..hdr(op::RW, 1, 80) }, // above the maximum
        hdr(op::RW, 1, 80),                        // no such connection
        hdr(op::CREDIT_UPDATE, 1, 80),
        hdr(op::RESPONSE, 1, 80),
        hdr(0, 1, 80),
        hdr(99, 1, 80),
    ];
    for h in bad {
        g.send_raw(&h, &[]);
        let got = g.recv();
        assert_eq!(ops(&got), [op::RST], "{h:?}");
        assert_eq!((got[0].0.src_port, got[0].0.dst_port, got[0].0.dst_cid), (80, 1, CID), "{h:?}");
    }
    // An RST is never answered.
    g.send_raw(&Header { kind: 9, ..hdr(op::RST, 1, 80) }, &[]);
    g.send(op::RST, 80, 1, &[]);
    assert!(g.recv().is_empty());
    // A 70 000-byte payload really present is still refused.
    let h = Header { len: 70_000, ..hdr(op::RW, 1, 80) };
    g.tx.write(TX_HDR, &h.encode());
    g.tx.add_chain(&[(TX_HDR, 44, false), (TX_DATA, 70_000, false)]);
    g.notify(1);
    assert_eq!(ops(&g.recv()), [op::RST]);

    // On a live connection: an unknown op or a bad length resets it.
    for h in [hdr(42, 2, 80), Header { len: 4096, ..hdr(op::RW, 2, 80) }, hdr(op::RESPONSE, 2, 80)] {
        g.restock(16);
        g.send(op::REQUEST, 80, 2, &[]);
        assert_eq!(ops(&g.recv()), [op::RESPONSE]);
        let (mut s, _) = listener.accept().unwrap();
        g.send_raw(&Header { len: h.len.min(100), ..h }, &[]);
        assert_eq!(ops(&g.recv()), [op::RST], "{h:?}");
        let mut rest = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.read_to_end(&mut rest).unwrap();
        assert_eq!(g.vsock().connections(), 0);
    }
    // A duplicate REQUEST for a live address resets it.
    g.restock(16);
    g.send(op::REQUEST, 80, 3, &[]);
    g.send(op::REQUEST, 80, 3, &[]);
    assert_eq!(ops(&g.recv()), [op::RESPONSE, op::RST]);
    assert_eq!(g.vsock().connections(), 0);
}

#[test]
fn rx_buffers_too_small_are_skipped_and_replies_wait_for_buffers() {
    let mut g = Guest::new();
    // No rx buffers: replies queue up (bounded) and go out once buffers come.
    for port in 0..(MAX_CONTROL as u32 + 50) {
        g.send(op::RW, 80, port, &[]);
    }
    assert_eq!(g.vsock().control.len(), MAX_CONTROL);
    // A header-sized-minus-one buffer is skipped with length 0.
    let head = g.rx.add_chain(&[(BUFFERS, 43, true)]);
    g.rx_slots.insert(head, BUFFERS);
    g.rx_posted += 1;
    let head = g.rx.add_chain(&[(u64::MAX - 100, 64, true)]); // outside guest memory
    g.rx_slots.insert(head, BUFFERS);
    g.rx_posted += 1;
    g.notify(0);
    assert_eq!((g.rx.used(0).1, g.rx.used(1).1), (0, 0), "both skipped");
    g.rx_seen = 2;
    g.post_rx(8);
    assert_eq!(ops(&g.recv()), [op::RST; 8]);
    assert_eq!(g.vsock().control.len(), MAX_CONTROL - 8);
    // A reset of the device forgets them.
    g.vsock().reset();
    assert!(g.vsock().control.is_empty());
}

#[test]
fn device_reset_and_end_close_everything() {
    let mut g = Guest::new();
    g.post_rx(16);
    let (mut c, _) = host_connect(&mut g, 1024, b"");
    assert_eq!(g.vsock().connections(), 1);
    g.vsock().reset();
    assert_eq!(g.vsock().connections(), 0);
    g.vsock().activate(F_STREAM).expect("the driver sets the device up again");
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "the client sees EOF");
    assert!(g.uds().exists());
    let (c2, _) = host_connect(&mut g, 1024, b"");
    g.vsock().end();
    assert_eq!(g.vsock().connections(), 1, "the process exit closes the rest");
    drop(c2);
    assert!(!g.uds().exists(), "the socket file is removed when the VM ends");
}

#[test]
fn too_many_connections_are_refused() {
    let mut g = Guest::new();
    let _l = UnixListener::bind(host::port_path(&g.uds(), 80)).unwrap();
    let mut clients = Vec::new();
    // In batches: the listener's backlog is finite and nobody else accepts.
    for batch in [100, MAX_CONNECTIONS - 100 + 5] {
        for _ in 0..batch {
            clients.push(UnixStream::connect(g.uds()).unwrap());
        }
        g.pump();
    }
    assert_eq!(g.vsock().slots.len(), MAX_CONNECTIONS);
    g.post_rx(4);
    g.send(op::REQUEST, 80, 1, &[]);
    assert_eq!(ops(&g.recv()), [op::RST], "no room for a guest connection either");
}

#[test]
fn arbitrary_packets_never_panic() {
    let mut g = Guest::new();
    let _l = UnixListener::bind(host::port_path(&g.uds(), 80)).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..3000u32 {
        g.restock(16);
        let r = next();
        let mut h = hdr((r % 9) as u16, (r >> 8) as u32 % 4, if r & (1 << 20) != 0 { 80 } else { 81 });
        h.len = match (r >> 24) % 4 {
            0 => 0,
            1 => (r >> 32) as u32 % 300,
            2 => (r >> 32) as u32,
            _ => 65_536,
        };
        h.flags = (r >> 40) as u32 % 4;
        h.buf_alloc = (r >> 44) as u32;
        h.fwd_cnt = (r >> 12) as u32;
        if i % 97 == 0 {
            h.kind = 0;
        }
        let data = vec![0x5au8; (r >> 50) as usize % 400];
        g.send_raw(&h, &data);
        g.recv();
        if i % 50 == 0 {
            g.pump();
        }
    }
    assert!(g.vsock().connections() <= MAX_CONNECTIONS);
}

#[test]
fn through_the_transport_host_data_flows_from_the_event_loop() {
    let mut g = Guest::with_transport();
    let l = UnixListener::bind(host::port_path(&g.uds(), 6000)).unwrap();
    g.post_rx(16);
    g.send(op::REQUEST, 6000, 77, &[]);
    g.wait_for("RESPONSE", has(op::RESPONSE));
    let (mut h, _) = l.accept().unwrap();
    // Host data arrives without anyone pumping: the event loop calls the device.
    h.write_all(b"unprompted").unwrap();
    let got = g.wait_for("data", |p| data_of(p) == b"unprompted");
    assert!(got.iter().all(|(p, _)| p.dst_port == 77));
    // With no rx buffers, host data waits; posting buffers (a notify on queue 0) delivers it.
    let payload = vec![3u8; 3 * 4096];
    let mut expected = Vec::new();
    // Use up the buffers first.
    while g.rx_posted != u64::from(g.rx.used_idx()) {
        h.write_all(&[1u8; 4096]).unwrap();
        expected.extend_from_slice(&[1u8; 4096]);
        std::thread::sleep(Duration::from_millis(20));
    }
    h.write_all(&payload).unwrap();
    expected.extend_from_slice(&payload);
    std::thread::sleep(Duration::from_millis(100));
    let mut got = data_of(&g.recv());
    g.post_rx(16);
    let before = got.len();
    let more = g.wait_for("buffered data", |p| data_of(p).len() + before >= expected.len());
    got.extend(data_of(&more));
    assert_eq!(got, expected);

    // A host-initiated connection through the event loop.
    let mut c = UnixStream::connect(g.uds()).unwrap();
    c.write_all(b"CONNECT 1024\n").unwrap();
    let got = g.wait_for("REQUEST", has(op::REQUEST));
    let local = got.iter().find(|(h, _)| h.op == op::REQUEST).unwrap().0.src_port;
    g.send(op::RESPONSE, local, 1024, &[]);
    let mut line = [0u8; 14];
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.read_exact(&mut line).unwrap();
    assert_eq!(&line[..], format!("OK {local}\n").as_bytes());
    g.send(op::RW, local, 1024, b"through");
    assert_eq!(read_exact_timeout(&mut c, 7), b"through");
    if let Dev::Transport(t, lp) = &g.dev {
        assert!(lp.registrations() >= 3, "listener and two connections are watched");
        let counters = t.lock().unwrap().counters();
        assert!(counters.contains(&("connections", 2)), "{counters:?}");
    }

    // The driver resets the device: every connection closes; set up again, the listener works.
    g.reinit();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    g.post_rx(16);
    let mut c = UnixStream::connect(g.uds()).unwrap();
    c.write_all(b"CONNECT 1025\n").unwrap();
    let got = g.wait_for("REQUEST after a reset", has(op::REQUEST));
    assert_eq!(got.iter().find(|(h, _)| h.op == op::REQUEST).unwrap().0.dst_port, 1025);
}
