//! A split virtqueue written straight into guest memory, for unit tests and the fuzz target: the
//! test plays the guest driver, including a malicious one (descriptors pointing anywhere, loops,
//! lengths past the end of memory).

// The test plays the guest driver: a write it cannot make into its own memory is a broken
// test, never guest input, so it panics.
#![allow(clippy::expect_used)]

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Descriptor table of [`TestQueue::new`]'s queue (its rings follow in the next two pages).
pub const DESC: u64 = 0x1000;
/// First byte of memory free for buffers.
pub const BUFFERS: u64 = 0x10000;
/// Flag: the descriptor continues in `next`.
pub const NEXT: u16 = 1;
/// Flag: the device writes this buffer.
pub const WRITE: u16 = 2;

/// A queue of `size` entries in `mem`, as a driver would have set it up.
pub struct TestQueue {
    /// Guest memory (1 MiB).
    pub mem: GuestMemoryMmap,
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    next_desc: u16,
    avail_idx: u16,
}

impl TestQueue {
    /// 1 MiB of guest memory with an empty queue of `size` entries.
    pub fn new(size: u16) -> TestQueue {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("test memory");
        TestQueue::at(mem, DESC, size)
    }

    /// Like [`TestQueue::new`], in shared memory (a memfd) as vhost-user devices need.
    pub fn shared(size: u16) -> TestQueue {
        let mem = crate::memory::map(&[(0, 1 << 20)], crate::memory::Backing::Shared).expect("shared test memory");
        TestQueue::at(mem, DESC, size)
    }

    /// A further queue in the same memory, its rings in the 12 KiB from `base` (for devices with
    /// several queues; keep clear of [`DESC`]..[`BUFFERS`] and of the buffers the test uses).
    pub fn at(mem: GuestMemoryMmap, base: u64, size: u16) -> TestQueue {
        TestQueue { mem, size, desc: base, avail: base + 0x1000, used: base + 0x2000, next_desc: 0, avail_idx: 0 }
    }

    /// Guest addresses of the descriptor table, available ring and used ring.
    pub fn addresses(&self) -> (u64, u64, u64) {
        (self.desc, self.avail, self.used)
    }

    /// The device-side queue, ready.
    pub fn queue(&self) -> Queue {
        let mut q = Queue::new(self.size).expect("queue size");
        q.set_size(self.size);
        q.set_desc_table_address(Some(self.desc as u32), Some((self.desc >> 32) as u32));
        q.set_avail_ring_address(Some(self.avail as u32), Some((self.avail >> 32) as u32));
        q.set_used_ring_address(Some(self.used as u32), Some((self.used >> 32) as u32));
        q.set_ready(true);
        q
    }

    /// Writes one raw descriptor at `index`.
    pub fn put_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = self.desc + 16 * u64::from(index);
        self.mem.write_obj(addr, GuestAddress(at)).expect("desc");
        self.mem.write_obj(len, GuestAddress(at + 8)).expect("desc");
        self.mem.write_obj(flags, GuestAddress(at + 12)).expect("desc");
        self.mem.write_obj(next, GuestAddress(at + 14)).expect("desc");
    }

    /// Publishes descriptor `head` on the available ring.
    pub fn publish(&mut self, head: u16) {
        let slot = self.avail + 4 + 2 * u64::from(self.avail_idx % self.size);
        self.mem.write_obj(head, GuestAddress(slot)).expect("avail");
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem.write_obj(self.avail_idx, GuestAddress(self.avail + 2)).expect("avail idx");
    }

    /// Adds a chain of (address, length, device-writable) buffers; returns its head.
    pub fn add_chain(&mut self, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, w)) in bufs.iter().enumerate() {
            let idx = self.next_desc;
            let last = i + 1 == bufs.len();
            let flags = if w { WRITE } else { 0 } | if last { 0 } else { NEXT };
            self.put_desc(idx, addr, len, flags, idx.wrapping_add(1) % self.size);
            self.next_desc = idx.wrapping_add(1) % self.size;
        }
        self.publish(head);
        head
    }

    /// Entries the device has put on the used ring.
    pub fn used_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(self.used + 2)).expect("used idx")
    }

    /// Used ring entry `i`: (head, length written).
    pub fn used(&self, i: u16) -> (u32, u32) {
        let at = self.used + 4 + 8 * u64::from(i % self.size);
        (self.mem.read_obj(GuestAddress(at)).expect("used"), self.mem.read_obj(GuestAddress(at + 4)).expect("used"))
    }

    /// Reads guest memory.
    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).expect("read");
        v
    }

    /// Writes guest memory.
    pub fn write(&self, addr: u64, data: &[u8]) {
        self.mem.write_slice(data, GuestAddress(addr)).expect("write");
    }
}
