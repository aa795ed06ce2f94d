//! Virtio devices over the virtio-mmio transport (virtio 1.x, split queues from virtio-queue).
//!
//! [`mmio::MmioTransport`] owns the registers, the negotiated features and the queues; a
//! [`VirtioDevice`] owns only its own function and is handed the queues and guest memory when
//! there is work. Every descriptor address and length comes from the guest and is checked by
//! virtio-queue and vm-memory before a byte moves; a bad chain fails that request (or is skipped),
//! never the VMM.

pub mod block;
pub mod fs;
pub mod mmio;
pub mod net;
pub mod rng;
pub mod tap;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod vsock;
pub mod worker;

use super::irq::IrqLine;
use std::sync::atomic::{AtomicU32, Ordering};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

/// Device type IDs (virtio spec 5).
pub mod types {
    /// Network card.
    pub const NET: u32 = 1;
    /// Block device.
    pub const BLOCK: u32 = 2;
    /// Entropy source.
    pub const RNG: u32 = 4;
    /// Socket device.
    pub const VSOCK: u32 = 19;
    /// File system device (virtio-fs).
    pub const FS: u32 = 26;
}

/// Feature bit: the device follows virtio 1.x.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// A virtio device function behind the transport.
pub trait VirtioDevice: Send {
    /// Device type (see [`types`]).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the count is the number of queues.
    fn queue_sizes(&self) -> &[u16];
    /// Offered feature bits (the transport adds [`VIRTIO_F_VERSION_1`]).
    fn features(&self) -> u64;
    /// Reads the device-specific configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the configuration space (ignored unless the device allows it).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver set DRIVER_OK with these acknowledged features; an error marks the device as
    /// needing a reset.
    fn activate(&mut self, _features: u64) -> Result<(), String> {
        Ok(())
    }
    /// [`VirtioDevice::activate`] for devices whose queues another process works (vhost-user):
    /// they are handed the ready queues (checked to lie in guest memory) and the memory.
    fn activate_queues(&mut self, features: u64, _queues: &[Queue], _mem: &GuestMemoryMmap) -> Result<(), String> {
        self.activate(features)
    }
    /// The guest made buffers available on queue `index`. Returns whether used buffers were added
    /// and the guest should be interrupted.
    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool;
    /// A host-side event registered by the device (sockets, TAP) is ready.
    fn host_event(&mut self, _token: u32, _queues: &mut [Queue], _mem: &GuestMemoryMmap) -> bool {
        false
    }
    /// Eventfds (copies) that a guest notification of each queue should signal directly, in
    /// queue order, for devices whose queues another process works: den-vmm binds them to the
    /// queues' notifications in KVM (ioeventfds), so a notification never leaves the kernel.
    fn queue_notifiers(&self) -> Vec<vmm_sys_util::eventfd::EventFd> {
        Vec::new()
    }
    /// The driver reset the device.
    fn reset(&mut self) {}
    /// Writes buffered state to stable storage (the VM is ending).
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    /// The VM is ending and the process exits next: remove host-side files (listening sockets).
    fn end(&mut self) {}
    /// I/O counters for the metrics API.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// The interrupt of one virtio-mmio device and its status register.
#[derive(Debug)]
pub struct VirtioInterrupt {
    status: AtomicU32,
    irq: IrqLine,
}

/// Interrupt status bit: a queue has used buffers.
pub const INT_USED_RING: u32 = 1;
/// Interrupt status bit: the configuration changed.
pub const INT_CONFIG: u32 = 2;

impl VirtioInterrupt {
    /// Wraps the device's line.
    pub fn new(irq: IrqLine) -> VirtioInterrupt {
        VirtioInterrupt { status: AtomicU32::new(0), irq }
    }

    /// Sets `bits` in the status and raises the line.
    pub fn signal(&self, bits: u32) {
        self.status.fetch_or(bits, Ordering::SeqCst);
        // A failed eventfd write cannot be recovered here; the guest's next notification or
        // timeout-driven poll still finds the used buffers.
        let _ = self.irq.raise();
    }

    /// The status register.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// The driver acknowledged `bits`.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Interrupts raised so far.
    pub fn count(&self) -> u64 {
        self.irq.count()
    }
}

/// Answers a guest read of `data.len()` bytes at `offset` in a configuration space whose bytes
/// are `cfg`; bytes past its end read as zero.
pub fn read_config_window(cfg: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = usize::try_from(offset).ok().and_then(|o| o.checked_add(i)).and_then(|j| cfg.get(j)).copied().unwrap_or(0);
    }
}

/// Puts a finished chain on the used ring; returns whether the driver wants an interrupt.
/// Errors (a used ring the guest made unreachable) are reported as "interrupt", so that the
/// driver notices something happened; nothing is written out of bounds.
pub fn complete(queue: &mut Queue, mem: &GuestMemoryMmap, head: u16, len: u32) -> bool {
    if queue.add_used(mem, head, len).is_err() {
        return true;
    }
    queue.needs_notification(mem).unwrap_or(true)
}
