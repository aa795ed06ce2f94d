//! The device against a real `virtiofsd` (Debian's, run as root): the test plays the guest's
//! virtio-fs driver on the transport's registers and sends FUSE requests (INIT, LOOKUP, OPEN,
//! READ) through the request queue in shared memory; the backend answers them from a folder the
//! test made. Skipped when not root or when no `virtiofsd` is installed.

use super::*;
use crate::devices::bus::BusDevice;
use crate::devices::irq::IrqLine;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::testkit::TestQueue;
use crate::devices::virtio::VirtioInterrupt;
use crate::event_loop::{EventLoop, EventTarget};
use crate::memory::{self, Backing};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const BINARIES: [&str; 2] = ["/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd"];
const REQ_RINGS: u64 = 0x4000;
const IN_BUF: u64 = 0x20000;
const OUT_BUF: u64 = 0x40000;

struct Backend(Child);

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_backend(dir: &Path, sock: &Path) -> Option<Backend> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: virtiofsd needs root");
        return None;
    }
    let Some(bin) = BINARIES.into_iter().find(|b| Path::new(b).is_file()) else {
        eprintln!("skipped: no virtiofsd ({})", BINARIES.join(" or "));
        return None;
    };
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--socket-path={}", sock.display()));
    if bin.starts_with("/usr/lib/qemu/") {
        cmd.args(["-o", &format!("source={}", dir.display()), "-o", "cache=none"]);
    } else {
        cmd.arg(format!("--shared-dir={}", dir.display())).arg("--cache=never");
    }
    let backend = Backend(cmd.spawn().unwrap());
    let start = Instant::now();
    while !sock.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "virtiofsd made no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(backend)
}

fn w(t: &Mutex<MmioTransport>, off: u64, v: u32) {
    t.lock().unwrap().write(off, &v.to_le_bytes());
}

fn r(t: &Mutex<MmioTransport>, off: u64) -> u32 {
    let mut b = [0u8; 4];
    t.lock().unwrap().read(off, &mut b);
    u32::from_le_bytes(b)
}

/// The driver's side of one device: the transport and the request queue's rings.
struct Driver {
    t: Arc<Mutex<MmioTransport>>,
    q: TestQueue,
    unique: u64,
    _events: EventLoop,
}

impl Driver {
    /// Negotiates VERSION_1, sets up the request queue (1) and sets DRIVER_OK.
    fn new(sock: &Path) -> Driver {
        let mem = memory::map(&[(0, 1 << 20)], Backing::Shared).unwrap();
        let mut events = EventLoop::new().unwrap();
        let registrar = events.registrar();
        let stream = UnixStream::connect(sock).unwrap();
        let fs = Fs::new(stream, "den-test", registrar.clone()).unwrap();
        let interrupt = Arc::new(VirtioInterrupt::new(IrqLine::counting()));
        let t = Arc::new(Mutex::new(MmioTransport::new(Box::new(fs), mem.clone(), interrupt)));
        let target: Arc<dyn EventTarget> = t.clone();
        registrar.bind(&target);
        events.start().unwrap();
        let q = TestQueue::at(mem, REQ_RINGS, 16);
        assert_eq!(r(&t, 0x008), types::FS);
        let mut tag = [0u8; 40];
        t.lock().unwrap().read(0x100, &mut tag);
        assert_eq!(&tag[..9], b"den-test\0");
        assert_eq!(tag[36], 1, "one request queue");
        w(&t, 0x070, 1 | 2);
        w(&t, 0x024, 1);
        w(&t, 0x020, 1); // VERSION_1
        w(&t, 0x070, 1 | 2 | 8);
        assert_ne!(r(&t, 0x070) & 8, 0, "FEATURES_OK");
        let (desc, avail, used) = q.addresses();
        w(&t, 0x030, 1);
        w(&t, 0x038, 16);
        for (off, a) in [(0x080, desc), (0x090, avail), (0x0a0, used)] {
            w(&t, off, a as u32);
            w(&t, off + 4, (a >> 32) as u32);
        }
        w(&t, 0x044, 1);
        w(&t, 0x070, 1 | 2 | 8 | 4);
        assert_eq!(r(&t, 0x070) & 64, 0, "the backend took the queue: {:?}", t.lock().unwrap().counters());
        Driver { t, q, unique: 0, _events: events }
    }

    /// Sends one FUSE request and returns the reply's error and payload.
    fn call(&mut self, opcode: u32, node: u64, args: &[u8], reply_len: u32) -> (i32, Vec<u8>) {
        self.unique += 2;
        let mut req = Vec::new();
        req.extend_from_slice(&(40 + args.len() as u32).to_le_bytes());
        req.extend_from_slice(&opcode.to_le_bytes());
        req.extend_from_slice(&self.unique.to_le_bytes());
        req.extend_from_slice(&node.to_le_bytes());
        req.extend_from_slice(&[0u8; 16]); // uid, gid, pid: root; no extensions
        req.extend_from_slice(args);
        self.q.write(IN_BUF, &req);
        let before = self.q.used_idx();
        let irqs = self.interrupts();
        self.q.add_chain(&[(IN_BUF, req.len() as u32, false), (OUT_BUF, 16 + reply_len, true)]);
        w(&self.t, 0x050, 1);
        let start = Instant::now();
        while self.q.used_idx() == before || self.interrupts() == irqs {
            assert!(start.elapsed() < Duration::from_secs(10), "no answer to FUSE opcode {opcode}");
            std::thread::sleep(Duration::from_millis(5));
        }
        let (_, len) = self.q.used(before);
        let out = self.q.read(OUT_BUF, len as usize);
        assert_eq!(u32::from_le_bytes(out[0..4].try_into().unwrap()), len, "reply length");
        assert_eq!(u64::from_le_bytes(out[8..16].try_into().unwrap()), self.unique, "reply to this request");
        w(&self.t, 0x064, r(&self.t, 0x060));
        (i32::from_le_bytes(out[4..8].try_into().unwrap()), out[16..].to_vec())
    }

    fn interrupts(&self) -> u64 {
        self.t.lock().unwrap().counters().iter().find(|c| c.0 == "interrupts").map(|c| c.1).unwrap_or(0)
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn fuse_requests_reach_virtiofsd_and_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("hello.txt"), b"hello from the host").unwrap();
    let sock = dir.path().join("fs.sock");
    let Some(_backend) = start_backend(&shared, &sock) else { return };
    let mut d = Driver::new(&sock);

    // FUSE_INIT (26), protocol 7.31.
    let (err, init) = d.call(26, 0, &[7, 0, 0, 0, 31, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0], 64);
    assert_eq!(err, 0);
    assert_eq!(u32::from_le_bytes(init[0..4].try_into().unwrap()), 7, "FUSE major version");
    // LOOKUP (1) of hello.txt in the root (node 1).
    let (err, entry) = d.call(1, 1, b"hello.txt\0", 128);
    assert_eq!(err, 0);
    let node = u64_at(&entry, 0);
    assert_eq!(u64_at(&entry, 48), 19, "file size in the entry's attributes");
    // OPEN (14) read-only, then READ (15) it all.
    let (err, open) = d.call(14, node, &[0u8; 8], 16);
    assert_eq!(err, 0);
    let mut read = Vec::new();
    read.extend_from_slice(&open[0..8]); // fh
    read.extend_from_slice(&0u64.to_le_bytes()); // offset
    read.extend_from_slice(&4096u32.to_le_bytes()); // size
    read.extend_from_slice(&[0u8; 20]);
    let (err, data) = d.call(15, node, &read, 4096);
    assert_eq!(err, 0);
    assert_eq!(data, b"hello from the host");
    // A name that is not there is the backend's error, not the device's.
    let (err, _) = d.call(1, 1, b"missing\0", 128);
    assert_eq!(err, -libc::ENOENT);

    let counters = d.t.lock().unwrap().counters();
    let get = |n: &str| counters.iter().find(|c| c.0 == n).map(|c| c.1).unwrap();
    assert_eq!(get("kicks"), 5);
    assert!(get("signals") >= 1);
    assert_eq!(get("backend_failures"), 0);

    // A driver reset stops the backend's rings; setting the device up again works.
    w(&d.t, 0x070, 0);
    assert_eq!(d.t.lock().unwrap().counters().iter().find(|c| c.0 == "backend_failures").unwrap().1, 0);
}

#[test]
fn guest_ram_that_is_not_shared_fails_the_activation_not_the_vmm() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("fs.sock");
    let Some(_backend) = start_backend(dir.path(), &sock) else { return };
    let mem = memory::map(&[(0, 1 << 20)], Backing::Private).unwrap();
    let registrar = crate::event_loop::Registrar::inert().unwrap();
    let mut fs = Fs::new(UnixStream::connect(&sock).unwrap(), "t", registrar).unwrap();
    let queues = [TestQueue::at(mem.clone(), 0x1000, 16).queue(), TestQueue::at(mem.clone(), REQ_RINGS, 16).queue()];
    let err = fs.activate_queues(super::super::VIRTIO_F_VERSION_1, &queues, &mem).unwrap_err();
    assert!(err.contains("not shared memory"), "{err}");
}

#[test]
fn a_backend_that_never_answers_is_cut_off() {
    let (ours, _theirs) = UnixStream::pair().unwrap();
    let registrar = crate::event_loop::Registrar::inert().unwrap();
    let limit = Duration::from_millis(300);
    let start = Instant::now();
    let err = Fs::with_timeout(ours, "t", registrar, limit).err().unwrap();
    assert!(err.to_string().contains("GET_FEATURES"), "{err}");
    assert!(start.elapsed() >= limit, "it waited for the answer first");
}

#[test]
fn a_backend_that_hangs_up_is_an_error() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    drop(theirs);
    let registrar = crate::event_loop::Registrar::inert().unwrap();
    let err = Fs::new(ours, "t", registrar).err().unwrap();
    assert!(err.to_string().contains("vhost-user backend for virtio-fs tag `t`"), "{err}");
}
