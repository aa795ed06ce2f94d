//! The virtio-mmio transport (virtio 1.2, section 4.2.2): the register block the guest driver
//! uses to negotiate features, set up queues and notify the device, with the device status
//! state machine. Registers take 32-bit accesses; anything else reads as zero and is ignored.

use super::{VirtioDevice, VirtioInterrupt, INT_CONFIG, VIRTIO_F_VERSION_1};
use crate::devices::bus::BusDevice;
use std::sync::Arc;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR: u32 = 0x0044_454e; // "DEN"
/// Start of the device configuration space.
pub const CONFIG: u64 = 0x100;

const S_ACKNOWLEDGE: u32 = 1;
const S_DRIVER: u32 = 2;
const S_DRIVER_OK: u32 = 4;
const S_FEATURES_OK: u32 = 8;
const S_NEEDS_RESET: u32 = 64;
const S_FAILED: u32 = 128;

/// One virtio-mmio device window.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    queues: Vec<Queue>,
    mem: GuestMemoryMmap,
    interrupt: Arc<VirtioInterrupt>,
    status: u32,
    features_sel: u32,
    driver_features: u64,
    driver_features_sel: u32,
    queue_sel: u32,
    config_generation: u32,
    notifies: u64,
    worker_notifies: u64,
}

fn new_queues(sizes: &[u16]) -> Vec<Queue> {
    // Queue::new only fails for sizes that are not powers of two; device models use fixed, valid
    // sizes, and a bad one leaves the device without that queue instead of panicking.
    sizes.iter().filter_map(|&s| Queue::new(s).ok()).collect()
}

impl MmioTransport {
    /// Puts `device` behind a transport using `mem` and `interrupt`.
    pub fn new(device: Box<dyn VirtioDevice>, mem: GuestMemoryMmap, interrupt: Arc<VirtioInterrupt>) -> MmioTransport {
        let queues = new_queues(device.queue_sizes());
        MmioTransport {
            device,
            queues,
            mem,
            interrupt,
            status: 0,
            features_sel: 0,
            driver_features: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            config_generation: 0,
            notifies: 0,
            worker_notifies: 0,
        }
    }

    fn offered(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1
    }

    fn active(&self) -> bool {
        self.status & S_DRIVER_OK != 0 && self.status & (S_FAILED | S_NEEDS_RESET) == 0
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        // Queue setup is only allowed between FEATURES_OK and DRIVER_OK.
        if self.status & S_FEATURES_OK == 0 || self.status & (S_DRIVER_OK | S_FAILED) != 0 {
            return None;
        }
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn reset(&mut self) {
        self.device.reset();
        self.queues = new_queues(self.device.queue_sizes());
        self.status = 0;
        self.driver_features = 0;
        self.features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.interrupt.ack(u32::MAX);
    }

    fn needs_reset(&mut self) {
        self.status |= S_NEEDS_RESET;
        self.config_generation = self.config_generation.wrapping_add(1);
        self.interrupt.signal(INT_CONFIG);
    }

    fn set_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        let added = v & !self.status;
        if v & self.status != self.status {
            return; // drivers may only add bits (or reset)
        }
        if added & S_FEATURES_OK != 0 {
            let ok = self.driver_features & !self.offered() == 0 && self.driver_features & VIRTIO_F_VERSION_1 != 0;
            if !ok {
                self.status = v & !S_FEATURES_OK;
                return;
            }
        }
        if added & S_DRIVER_OK != 0 {
            if v & S_FEATURES_OK == 0 {
                return;
            }
            self.status = v;
            let queues_ok = self.queues.iter().all(|q| !q.ready() || q.is_valid(&self.mem));
            let activated = if queues_ok {
                self.device.activate_queues(self.driver_features, &self.queues, &self.mem)
            } else {
                Err("a ready queue lies outside guest memory".into())
            };
            if activated.is_err() {
                self.needs_reset();
            }
            return;
        }
        let _ = (S_ACKNOWLEDGE, S_DRIVER);
        self.status = v;
    }

    /// A notification of queue `index` that reached the device's worker thread through its
    /// ioeventfd instead of a register write on a vCPU thread ([`super::worker`]).
    pub fn notify_from_worker(&mut self, index: u32) {
        self.worker_notifies += 1;
        self.notify(index);
    }

    fn notify(&mut self, index: u32) {
        self.notifies += 1;
        let i = index as usize;
        if !self.active() || !self.queues.get(i).is_some_and(|q| q.ready()) {
            return;
        }
        if self.device.process_queue(i, &mut self.queues, &self.mem) {
            self.interrupt.signal(super::INT_USED_RING);
        }
    }

    /// A host-side event for the device (see [`VirtioDevice::host_event`]).
    pub fn host_event(&mut self, token: u32) {
        if self.active() && self.device.host_event(token, &mut self.queues, &self.mem) {
            self.interrupt.signal(super::INT_USED_RING);
        }
    }

    /// The device's counters plus the transport's.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut c = self.device.counters();
        c.push(("notifies", self.notifies));
        c.push(("worker_notifies", self.worker_notifies));
        c.push(("interrupts", self.interrupt.count()));
        c
    }

    /// Flushes the device's state to stable storage.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.device.flush()
    }

    /// The VM is ending (see [`VirtioDevice::end`]).
    pub fn end(&mut self) {
        self.device.end();
    }

    /// The device's [`VirtioDevice::queue_notifiers`].
    pub fn queue_notifiers(&self) -> Vec<vmm_sys_util::eventfd::EventFd> {
        self.device.queue_notifiers()
    }

    /// How many queues the device has.
    pub fn queue_count(&self) -> usize {
        self.device.queue_sizes().len()
    }

    /// The device type.
    pub fn device_type(&self) -> u32 {
        self.device.device_type()
    }

    fn read_reg(&self, offset: u64) -> u32 {
        let q = self.queues.get(self.queue_sel as usize);
        match offset {
            0x000 => MAGIC,
            0x004 => VERSION,
            0x008 => self.device.device_type(),
            0x00c => VENDOR,
            0x010 => match self.features_sel {
                0 => self.offered() as u32,
                1 => (self.offered() >> 32) as u32,
                _ => 0,
            },
            0x034 => q.map(|q| u32::from(q.max_size())).unwrap_or(0),
            0x044 => q.map(|q| u32::from(q.ready())).unwrap_or(0),
            0x060 => self.interrupt.status(),
            // No shared memory regions: SHMLenLow/High read as -1 (virtio 1.2, 4.2.2). A zero
            // length would say "region 0 exists" and send virtio-fs probing for its DAX window.
            0x0b0 | 0x0b4 => u32::MAX,
            0x070 => self.status,
            0x0fc => self.config_generation,
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        match offset {
            0x014 => self.features_sel = v,
            0x020 if self.status & S_FEATURES_OK == 0 => match self.driver_features_sel {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v),
                1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32),
                _ => {}
            },
            0x024 => self.driver_features_sel = v,
            0x030 => self.queue_sel = v,
            0x038 => {
                if let Some(q) = self.selected() {
                    q.set_size(v as u16);
                }
            }
            0x044 => {
                if let Some(q) = self.selected() {
                    q.set_ready(v == 1);
                }
            }
            0x050 => self.notify(v),
            0x064 => self.interrupt.ack(v),
            0x070 => self.set_status(v),
            0x080 | 0x084 | 0x090 | 0x094 | 0x0a0 | 0x0a4 => {
                if let Some(q) = self.selected() {
                    let (lo, hi) = if offset & 4 == 0 { (Some(v), None) } else { (None, Some(v)) };
                    match offset & !7 {
                        0x080 => q.set_desc_table_address(lo, hi),
                        0x090 => q.set_avail_ring_address(lo, hi),
                        _ => q.set_used_ring_address(lo, hi),
                    }
                }
            }
            _ => {}
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG {
            self.device.read_config(offset - CONFIG, data);
        } else if data.len() == 4 {
            data.copy_from_slice(&self.read_reg(offset).to_le_bytes());
        } else {
            data.fill(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG {
            self.device.write_config(offset - CONFIG, data);
            self.config_generation = self.config_generation.wrapping_add(1);
        } else if let Ok(b) = <[u8; 4]>::try_from(data) {
            self.write_reg(offset, u32::from_le_bytes(b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::rng::Rng;
    use super::super::testkit::{TestQueue, BUFFERS};
    use super::*;
    use crate::devices::irq::IrqLine;

    fn w(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }
    fn r(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn transport(tq: &TestQueue) -> MmioTransport {
        MmioTransport::new(Box::new(Rng::new()), tq.mem.clone(), Arc::new(VirtioInterrupt::new(IrqLine::counting())))
    }

    fn setup_queue(t: &mut MmioTransport, desc: u64) {
        w(t, 0x030, 0);
        w(t, 0x038, 16);
        w(t, 0x080, desc as u32);
        w(t, 0x084, (desc >> 32) as u32);
        w(t, 0x090, 0x2000);
        w(t, 0x0a0, 0x3000);
        w(t, 0x044, 1);
    }

    #[test]
    fn driver_handshake_then_notify_completes_requests() {
        let mut tq = TestQueue::new(16);
        let mut t = transport(&tq);
        assert_eq!((r(&mut t, 0), r(&mut t, 4), r(&mut t, 8)), (MAGIC, 2, 4));
        w(&mut t, 0x014, 1);
        assert_eq!(r(&mut t, 0x010), 1, "VERSION_1 offered");
        // queue setup before FEATURES_OK is ignored
        setup_queue(&mut t, 0x1000);
        assert_eq!(r(&mut t, 0x044), 0);
        w(&mut t, 0x070, S_ACKNOWLEDGE | S_DRIVER);
        w(&mut t, 0x024, 1);
        w(&mut t, 0x020, 1);
        w(&mut t, 0x070, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        assert_ne!(r(&mut t, 0x070) & S_FEATURES_OK, 0);
        setup_queue(&mut t, 0x1000);
        assert_eq!((r(&mut t, 0x034), r(&mut t, 0x044)), (256, 1));
        w(&mut t, 0x070, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
        tq.add_chain(&[(BUFFERS, 32, true)]);
        w(&mut t, 0x050, 0);
        assert_eq!(tq.used_idx(), 1);
        assert_eq!(r(&mut t, 0x060), 1, "used-ring interrupt pending");
        w(&mut t, 0x064, 1);
        assert_eq!(r(&mut t, 0x060), 0);
        w(&mut t, 0x0ac, 0);
        assert_eq!((r(&mut t, 0x0b0), r(&mut t, 0x0b4)), (u32::MAX, u32::MAX), "no shared memory region");
        w(&mut t, 0x050, 7); // a queue that does not exist
        w(&mut t, 0x070, 0);
        assert_eq!(r(&mut t, 0x070), 0, "reset");
    }

    #[test]
    fn features_without_version_1_or_unknown_bits_are_refused() {
        let tq = TestQueue::new(16);
        let mut t = transport(&tq);
        w(&mut t, 0x070, S_ACKNOWLEDGE | S_DRIVER);
        w(&mut t, 0x070, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        assert_eq!(r(&mut t, 0x070) & S_FEATURES_OK, 0, "legacy drivers are refused");
        w(&mut t, 0x024, 0);
        w(&mut t, 0x020, 0x8000_0000);
        w(&mut t, 0x024, 1);
        w(&mut t, 0x020, 1);
        w(&mut t, 0x070, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        assert_eq!(r(&mut t, 0x070) & S_FEATURES_OK, 0, "a feature the device never offered");
    }

    #[test]
    fn queue_outside_memory_needs_reset_and_odd_accesses_are_ignored() {
        let tq = TestQueue::new(16);
        let mut t = transport(&tq);
        w(&mut t, 0x070, S_ACKNOWLEDGE | S_DRIVER);
        w(&mut t, 0x024, 1);
        w(&mut t, 0x020, 1);
        w(&mut t, 0x070, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        setup_queue(&mut t, 1 << 40);
        w(&mut t, 0x070, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
        assert_ne!(r(&mut t, 0x070) & S_NEEDS_RESET, 0);
        w(&mut t, 0x050, 0); // notify on a broken device does nothing
        t.write(0x070, &[0]); // 1-byte register write: ignored
        assert_ne!(r(&mut t, 0x070), 0);
        let mut odd = [0xffu8; 2];
        t.read(0x000, &mut odd);
        assert_eq!(odd, [0, 0]);
        t.read(u64::MAX, &mut odd);
        t.write(u64::MAX - 1, &[1, 2]);
    }
}
