//! I/O off the vCPU threads: a thread of its own per device (block devices today) that handles
//! the guest's queue notifications. Each queue's notification register write is bound in KVM to
//! an eventfd (ioeventfd, datamatch on the queue index), so the write completes inside the kernel
//! and the vCPU runs on at once; the worker, an [`EventLoop`] of its own, wakes on the eventfd and
//! works the queue under the transport's lock. A slow disk then stalls only its own worker, never
//! a vCPU, and `flush` stays durable: requests are still completed only after the write (and the
//! fsync for a flush) returned.

use super::mmio::MmioTransport;
use crate::event_loop::{EventLoop, EventTarget, Interest, Registration};
use kvm_ioctls::{IoEventAddress, VmFd};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use vmm_sys_util::eventfd::EventFd;

/// Offset of QueueNotify in the virtio-mmio window.
pub const QUEUE_NOTIFY: u64 = 0x050;

/// The worker of one device: its thread starts with [`QueueWorker::start`].
pub struct QueueWorker {
    events: EventLoop,
    _target: Arc<dyn EventTarget>,
}

struct Target {
    transport: Arc<Mutex<MmioTransport>>,
    kicks: Vec<EventFd>,
    watches: Mutex<Vec<Registration>>,
}

impl EventTarget for Target {
    fn host_event(&self, token: u32) {
        let i = token as usize;
        let Some(kick) = self.kicks.get(i) else { return };
        // Drained, then re-armed, then worked: a notification that lands in between wakes the
        // worker again and finds at worst an empty queue.
        let _ = kick.read();
        if let Some(w) = self.watches.lock().unwrap_or_else(|p| p.into_inner()).get(i) {
            let _ = w.set_interest(Interest::READ);
        }
        self.transport.lock().unwrap_or_else(|p| p.into_inner()).notify_from_worker(token);
    }
}

impl QueueWorker {
    /// Binds notifications of queues `0..queues` of the device whose window starts at `base` to
    /// eventfds watched by a new worker for `transport`. `Err` if KVM refuses an ioeventfd: the
    /// device then keeps its notifications on the vCPU threads.
    pub fn new(
        vm: &VmFd,
        base: u64,
        queues: usize,
        transport: Arc<Mutex<MmioTransport>>,
    ) -> std::io::Result<QueueWorker> {
        let mut kicks = Vec::with_capacity(queues);
        for i in 0..queues {
            let kick = EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?;
            vm.register_ioevent(&kick, &IoEventAddress::Mmio(base + QUEUE_NOTIFY), i as u32)
                .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
            kicks.push(kick);
        }
        QueueWorker::with_kicks(kicks, transport)
    }

    /// A worker for `transport` woken by `kicks` (one eventfd per queue, in queue order),
    /// however they are signalled.
    pub fn with_kicks(kicks: Vec<EventFd>, transport: Arc<Mutex<MmioTransport>>) -> std::io::Result<QueueWorker> {
        let events = EventLoop::new()?;
        let registrar = events.registrar();
        let target = Arc::new(Target { transport, kicks, watches: Mutex::new(Vec::new()) });
        let dyn_target: Arc<dyn EventTarget> = target.clone();
        registrar.bind(&dyn_target);
        let mut watches = Vec::with_capacity(target.kicks.len());
        for (i, kick) in target.kicks.iter().enumerate() {
            watches.push(registrar.register(kick.as_raw_fd(), i as u32, Interest::READ)?);
        }
        *target.watches.lock().unwrap_or_else(|p| p.into_inner()) = watches;
        Ok(QueueWorker { events, _target: dyn_target })
    }

    /// Starts the thread (named `name`), which first installs its seccomp filter.
    pub fn start(&mut self, name: &str) -> std::io::Result<()> {
        self.events.start_named(name, || crate::seccomp::enter(crate::seccomp::ThreadKind::Worker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::bus::BusDevice;
    use crate::devices::irq::IrqLine;
    use crate::devices::virtio::block::Block;
    use crate::devices::virtio::testkit::TestQueue;
    use crate::devices::virtio::VirtioInterrupt;
    use std::time::{Duration, Instant};

    fn w(t: &Mutex<MmioTransport>, off: u64, v: u32) {
        t.lock().unwrap().write(off, &v.to_le_bytes());
    }

    #[test]
    fn a_kick_has_the_worker_do_the_disk_request() {
        let mut disk = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut disk, &[0x42; 4096]).unwrap();
        let blk = Block::open(disk.path(), false, "t").unwrap();
        let mut tq = TestQueue::new(16);
        let irq = Arc::new(VirtioInterrupt::new(IrqLine::counting()));
        let t = Arc::new(Mutex::new(MmioTransport::new(Box::new(blk), tq.mem.clone(), irq)));
        // The driver's handshake and its one queue.
        for (off, v) in [(0x70, 1), (0x70, 3), (0x24, 1), (0x20, 1), (0x70, 11), (0x30, 0), (0x38, 16)] {
            w(&t, off, v);
        }
        let (desc, avail, used) = tq.addresses();
        for (off, a) in [(0x80, desc), (0x90, avail), (0xa0, used)] {
            w(&t, off, a as u32);
        }
        w(&t, 0x44, 1);
        w(&t, 0x70, 15);

        let kick = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut worker = QueueWorker::with_kicks(vec![kick.try_clone().unwrap()], t.clone()).unwrap();
        worker.start("io-test").unwrap();
        // A read of sector 0: header, 512 bytes, status.
        let (hdr, data, status) = (0x10000, 0x11000, 0x12000);
        tq.write(hdr, &[0; 16]);
        tq.add_chain(&[(hdr, 16, false), (data, 512, true), (status, 1, true)]);
        kick.write(1).unwrap(); // what KVM does when the guest writes QueueNotify
        let start = Instant::now();
        while tq.used_idx() == 0 {
            assert!(start.elapsed() < Duration::from_secs(10), "the worker did not take the request");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(tq.read(data, 512), vec![0x42; 512]);
        assert_eq!(tq.read(status, 1), [0]);
        let counters = t.lock().unwrap().counters();
        let get = |n: &str| counters.iter().find(|c| c.0 == n).map(|c| c.1).unwrap();
        assert_eq!((get("worker_notifies"), get("notifies")), (1, 1));
        assert_eq!(get("interrupts"), 1);
    }
}
