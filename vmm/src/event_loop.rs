//! The host event loop: one thread waiting in epoll(7) on file descriptors that devices
//! register (vsock's Unix sockets now; TAP devices and the API socket later) and calling the
//! device's owner when one is ready. vCPU threads handle guest notifications inline; this thread
//! handles the host side.
//!
//! Registrations are one-shot: after an fd fires it stays quiet until its device asks again
//! with [`Registrar::set_interest`]. A device that cannot make progress (no guest buffers, no
//! credit) therefore never makes the loop spin, and neither does a device whose transport is not
//! active and drops the event. Each registration has its own id, never reused, so an event for
//! an fd that was deregistered (and maybe reused) in the meantime is recognised and dropped.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

/// Whom the loop calls when a registered fd is ready.
pub trait EventTarget: Send + Sync {
    /// The fd registered with `token` is readable, writable or hung up (or the event is stale:
    /// handlers must tolerate spurious calls).
    fn host_event(&self, token: u32);
}

impl EventTarget for Mutex<crate::devices::virtio::mmio::MmioTransport> {
    fn host_event(&self, token: u32) {
        self.lock().unwrap_or_else(|p| p.into_inner()).host_event(token);
    }
}

/// What a registered fd should wake the loop for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interest {
    /// Readable (or hung up).
    pub read: bool,
    /// Writable.
    pub write: bool,
}

impl Interest {
    /// Nothing: the fd is taken out of the epoll set until asked for again.
    pub const NONE: Interest = Interest { read: false, write: false };
    /// Readable.
    pub const READ: Interest = Interest { read: true, write: false };

    fn events(self) -> EventSet {
        let mut e = EventSet::ONE_SHOT | EventSet::READ_HANG_UP;
        if self.read {
            e |= EventSet::IN;
        }
        if self.write {
            e |= EventSet::OUT;
        }
        e
    }

    fn is_none(self) -> bool {
        !self.read && !self.write
    }
}

/// Id of one registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegId(u64);

/// The epoll data word of the loop's own wake-up eventfd.
const WAKE: u64 = 0;
/// Events taken per epoll_wait.
const BATCH: usize = 64;

struct Reg {
    fd: RawFd,
    target: Weak<dyn EventTarget>,
    token: u32,
    interest: Interest,
    /// In the epoll set and armed (not yet fired since the last arm).
    armed: bool,
    /// In the epoll set at all (fired one-shot entries stay in it, disarmed).
    added: bool,
}

struct Shared {
    epoll: Epoll,
    wake: EventFd,
    stop: AtomicBool,
    regs: Mutex<Regs>,
}

#[derive(Default)]
struct Regs {
    next: u64,
    map: HashMap<u64, Reg>,
}

impl Shared {
    fn regs(&self) -> std::sync::MutexGuard<'_, Regs> {
        self.regs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, id: u64, reg: &mut Reg, interest: Interest) -> io::Result<()> {
        if interest.is_none() {
            if reg.added {
                self.epoll.ctl(ControlOperation::Delete, reg.fd, EpollEvent::default())?;
                reg.added = false;
            }
            reg.armed = false;
        } else if !reg.armed || reg.interest != interest || !reg.added {
            let ev = EpollEvent::new(interest.events(), id);
            if reg.added {
                self.epoll.ctl(ControlOperation::Modify, reg.fd, ev)?;
            } else {
                match self.epoll.ctl(ControlOperation::Add, reg.fd, ev) {
                    // Still in the set from a dropped registration of the same open fd.
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                        self.epoll.ctl(ControlOperation::Modify, reg.fd, ev)?
                    }
                    r => r?,
                }
            }
            reg.added = true;
            reg.armed = true;
        }
        reg.interest = interest;
        Ok(())
    }
}

/// The loop: create it, hand out [`Registrar`]s to devices, then [`EventLoop::start`] it.
/// Dropping it stops the thread.
pub struct EventLoop {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl EventLoop {
    /// An epoll set and a wake-up eventfd; no thread yet.
    pub fn new() -> io::Result<EventLoop> {
        let epoll = Epoll::new()?;
        let wake = EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?;
        epoll.ctl(ControlOperation::Add, wake.as_raw_fd(), EpollEvent::new(EventSet::IN, WAKE))?;
        let shared = Arc::new(Shared {
            epoll,
            wake,
            stop: AtomicBool::new(false),
            regs: Mutex::new(Regs { next: 1, ..Default::default() }),
        });
        Ok(EventLoop { shared, thread: None })
    }

    /// A registrar for one device; [`Registrar::bind`] it to the device's owner before the device
    /// registers anything.
    pub fn registrar(&self) -> Registrar {
        Registrar { shared: self.shared.clone(), target: Arc::new(OnceLock::new()) }
    }

    /// Starts the thread (call it after the stop signals are blocked, so it inherits the mask).
    pub fn start(&mut self) -> io::Result<()> {
        self.start_with(|| {})
    }

    /// Starts the thread, which first runs `setup` (e.g. installs its seccomp filter).
    pub fn start_with(&mut self, setup: impl FnOnce() + Send + 'static) -> io::Result<()> {
        self.start_named("events", setup)
    }

    /// [`EventLoop::start_with`], naming the thread `name`.
    pub fn start_named(&mut self, name: &str, setup: impl FnOnce() + Send + 'static) -> io::Result<()> {
        if self.thread.is_some() {
            return Ok(());
        }
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            setup();
            run(&shared)
        })?;
        self.thread = Some(thread);
        Ok(())
    }

    /// Registrations alive (for tests and metrics).
    pub fn registrations(&self) -> usize {
        self.shared.regs().map.len()
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.shared.wake.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Shared) {
    let mut events = vec![EpollEvent::default(); BATCH];
    loop {
        let n = match shared.epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return, // the epoll fd itself is broken: nothing can be watched any more
        };
        for ev in &events[..n] {
            if ev.data() == WAKE {
                let _ = shared.wake.read();
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                continue;
            }
            let found = {
                let mut regs = shared.regs();
                match regs.map.get_mut(&ev.data()) {
                    Some(r) => {
                        r.armed = false;
                        Some((r.target.clone(), r.token))
                    }
                    None => None, // deregistered while the event was in flight
                }
            };
            if let Some((target, token)) = found {
                match target.upgrade() {
                    Some(t) => t.host_event(token),
                    None => drop(shared.regs().map.remove(&ev.data())),
                }
            }
        }
    }
}

/// A device's handle on the loop: cloneable, bound once to the device's owner (its transport).
#[derive(Clone)]
pub struct Registrar {
    shared: Arc<Shared>,
    target: Arc<OnceLock<Weak<dyn EventTarget>>>,
}

impl Registrar {
    /// A registrar on a loop of its own that is never started: registrations succeed and
    /// never fire. For tests that deliver host events by hand.
    pub fn inert() -> io::Result<Registrar> {
        let lp = EventLoop::new()?;
        let r = lp.registrar();
        let nobody: Weak<dyn EventTarget> = Weak::<Inert>::new();
        let _ = r.target.set(nobody);
        Ok(r)
    }

    /// Names the owner the loop calls for this device's registrations (first call wins).
    pub fn bind(&self, target: &Arc<dyn EventTarget>) {
        let _ = self.target.set(Arc::downgrade(target));
    }

    /// Watches `fd` (which must stay open until the returned [`Registration`] is dropped) and
    /// calls the owner with `token` when it is ready.
    pub fn register(&self, fd: RawFd, token: u32, interest: Interest) -> io::Result<Registration> {
        let target = self
            .target
            .get()
            .cloned()
            .ok_or_else(|| io::Error::other("event registrar used before it was bound to a device"))?;
        let mut regs = self.shared.regs();
        let id = regs.next;
        regs.next += 1;
        let mut reg = Reg { fd, target, token, interest: Interest::NONE, armed: false, added: false };
        self.shared.apply(id, &mut reg, interest)?;
        regs.map.insert(id, reg);
        Ok(Registration { registrar: self.clone(), id: RegId(id) })
    }

    fn set(&self, id: RegId, interest: Interest) -> io::Result<()> {
        let mut regs = self.shared.regs();
        let Some(mut reg) = regs.map.remove(&id.0) else { return Ok(()) };
        let res = self.shared.apply(id.0, &mut reg, interest);
        regs.map.insert(id.0, reg);
        res
    }

    /// Forgets a registration without a system call (the thread dropping the last device may
    /// be one whose seccomp filter has no epoll_ctl): the fd leaves the epoll set when it is
    /// closed, a stale event for it finds no registration, and registering the same open fd again
    /// takes its place.
    fn deregister(&self, id: RegId) {
        self.shared.regs().map.remove(&id.0);
    }
}

/// A target nobody can reach (see [`Registrar::inert`]).
struct Inert;

impl EventTarget for Inert {
    fn host_event(&self, _token: u32) {}
}

/// One watched fd; dropping it stops the watch (at most one stale wake-up follows, which is
/// ignored).
pub struct Registration {
    registrar: Registrar,
    id: RegId,
}

impl Registration {
    /// Changes what the fd is watched for; also re-arms it after it fired.
    pub fn set_interest(&self, interest: Interest) -> io::Result<()> {
        self.registrar.set(self.id, interest)
    }

    /// The registration's id.
    pub fn id(&self) -> RegId {
        self.id
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registrar.deregister(self.id);
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registration({})", self.id.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc;
    use std::time::Duration;

    struct Probe(Mutex<mpsc::Sender<u32>>);

    impl EventTarget for Probe {
        fn host_event(&self, token: u32) {
            let _ = self.0.lock().unwrap().send(token);
        }
    }

    fn setup() -> (EventLoop, Registrar, Arc<dyn EventTarget>, mpsc::Receiver<u32>) {
        let mut lp = EventLoop::new().unwrap();
        let (tx, rx) = mpsc::channel();
        let target: Arc<dyn EventTarget> = Arc::new(Probe(Mutex::new(tx)));
        let r = lp.registrar();
        r.bind(&target);
        lp.start().unwrap();
        (lp, r, target, rx)
    }

    #[test]
    fn one_shot_events_rearm_and_deregister() {
        let (lp, r, _target, rx) = setup();
        let (mut a, b) = UnixStream::pair().unwrap();
        let reg = r.register(b.as_raw_fd(), 7, Interest::READ).unwrap();
        a.write_all(b"x").unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 7);
        // Still readable, but one-shot: quiet until re-armed.
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        reg.set_interest(Interest::READ).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 7);
        // No interest: not even the hang-up wakes the loop.
        reg.set_interest(Interest::NONE).unwrap();
        drop(a);
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        reg.set_interest(Interest { read: false, write: true }).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 7, "hang-up reported");
        assert_eq!(lp.registrations(), 1);
        drop(reg);
        assert_eq!(lp.registrations(), 0);
        // The same open fd registered again (a device reset and re-activated) takes its place.
        let reg = r.register(b.as_raw_fd(), 8, Interest::READ).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 8);
        drop(reg);
        let mut buf = [0u8; 4];
        assert_eq!((&b).read(&mut buf).unwrap(), 1);
    }

    #[test]
    fn unbound_registrar_refuses_and_dead_targets_are_dropped() {
        let lp = EventLoop::new().unwrap();
        let (_a, b) = UnixStream::pair().unwrap();
        assert!(lp.registrar().register(b.as_raw_fd(), 1, Interest::READ).is_err());
        let (lp, r, target, rx) = setup();
        let (mut a, b) = UnixStream::pair().unwrap();
        let reg = r.register(b.as_raw_fd(), 3, Interest::READ).unwrap();
        drop(target);
        a.write_all(b"x").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while lp.registrations() != 0 {
            assert!(std::time::Instant::now() < deadline, "a registration whose owner is gone is removed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(rx.try_recv().is_err());
        drop(reg);
        let inert = Registrar::inert().unwrap();
        let reg = inert.register(b.as_raw_fd(), 1, Interest::READ).unwrap();
        reg.set_interest(Interest::NONE).unwrap();
        drop(lp);
    }
}
