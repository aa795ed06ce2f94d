//! The body of the virtio fuzz target (`vmm/fuzz`), also run over fixed seeds by the unit tests:
//! the input plays a malicious guest driver. Its first bytes pick a device, a queue size and the
//! length of a memory image; the image is written from the queue's descriptor table on (so it
//! forms the descriptors, the rings and the buffers: chains point anywhere, loop, overflow), and
//! the rest is a sequence of 32-bit register accesses to the device's virtio-mmio window, with
//! queue notifications and host-side events among them. The virtio-fs device talks to a
//! vhost-user backend that agrees to everything ([`fake_backend`]), so the input drives what the
//! device sends it: memory tables, ring addresses, starts and stops. Nothing may panic, hang or
//! touch memory outside the guest's.

use crate::devices::bus::BusDevice;
use crate::devices::irq::IrqLine;
use crate::devices::virtio::block::Block;
use crate::devices::virtio::fs::{fake_backend, Fs};
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::rng::Rng;
use crate::devices::virtio::testkit::TestQueue;
use crate::devices::virtio::{VirtioDevice, VirtioInterrupt};
use crate::event_loop::Registrar;
use std::sync::{Arc, OnceLock};
use vm_memory::{Bytes, GuestAddress};

const MAX_OPS: usize = 512;

fn disk() -> Option<&'static std::path::Path> {
    static DISK: OnceLock<Option<tempfile::TempPath>> = OnceLock::new();
    DISK.get_or_init(|| {
        let f = tempfile::NamedTempFile::new().ok()?;
        f.as_file().set_len(64 * 1024).ok()?;
        Some(f.into_temp_path())
    })
    .as_deref()
}

/// Device kinds: rng, block, read-only block, virtio-fs (against [`fake_backend`]).
const KINDS: u8 = 4;
const FS: u8 = 3;

fn device(kind: u8) -> Option<Box<dyn VirtioDevice>> {
    match kind % KINDS {
        0 => Some(Box::new(Rng::new())),
        1 => Block::open(disk()?, false, "fuzz").ok().map(|b| Box::new(b) as Box<dyn VirtioDevice>),
        2 => Block::open(disk()?, true, "fuzz-ro").ok().map(|b| Box::new(b) as Box<dyn VirtioDevice>),
        _ => {
            let registrar = Registrar::inert().ok()?;
            Fs::new(fake_backend::spawn().ok()?, "fuzz", registrar).ok().map(|f| Box::new(f) as Box<dyn VirtioDevice>)
        }
    }
}

/// Runs one input.
pub fn run_one(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else { return };
    let Some((&size_bits, rest)) = rest.split_first() else { return };
    let Some((len, rest)) = rest.split_first_chunk::<2>() else { return };
    let (image, ops) = rest.split_at(rest.len().min(usize::from(u16::from_le_bytes(*len))));
    let size = 1u16 << (size_bits % 11);
    let tq = if kind % KINDS == FS { TestQueue::shared(size) } else { TestQueue::new(size) };
    let _ = tq.mem.write_slice(image, GuestAddress(tq.addresses().0));
    let Some(dev) = device(kind) else { return };

    // Straight to the device: the queue set up as a driver would, memory as the input says.
    let mut direct = device(kind);
    if let Some(d) = direct.as_mut() {
        let mut qs = vec![tq.queue()];
        for _ in 0..4 {
            d.process_queue(0, &mut qs, &tq.mem);
        }
    }

    // Through the transport: register writes and notifications from the input.
    let irq = Arc::new(VirtioInterrupt::new(IrqLine::counting()));
    let mut t = MmioTransport::new(dev, tq.mem.clone(), irq);
    if kind & 0x80 != 0 {
        // A well-behaved start, so that the random operations reach live queues.
        let w = |t: &mut MmioTransport, off: u64, v: u32| t.write(off, &v.to_le_bytes());
        for (off, v) in [(0x70, 1), (0x70, 3), (0x24, 1), (0x20, 1), (0x70, 11), (0x30, 0), (0x38, u32::from(size))] {
            w(&mut t, off, v);
        }
        let (desc, avail, used) = tq.addresses();
        for (off, v) in [(0x80, desc), (0x90, avail), (0xa0, used)] {
            w(&mut t, off, v as u32);
        }
        w(&mut t, 0x44, 1);
        w(&mut t, 0x70, 15);
        w(&mut t, 0x50, 0);
    }
    for op in ops.chunks_exact(6).take(MAX_OPS) {
        let offset = u64::from(u16::from_le_bytes([op[0], op[1]]) & 0x1ff);
        let value = [op[2], op[3], op[4], op[5]];
        if op[1] & 0x80 != 0 {
            // The host side: a backend's used-buffer signal (or a stale event) for any token.
            t.host_event(u32::from(op[2]));
        } else if offset & 0x100 != 0 && op[0] & 1 == 1 {
            let mut out = [0u8; 4];
            t.read(offset, &mut out);
        } else {
            t.write(offset, &value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic inputs without a dependency.
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.max(1);
        (0..n)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn fixed_seeds_survive() {
        for seed in 0..48u64 {
            let mut input = bytes(seed, 4096);
            input[0] = seed as u8;
            run_one(&input);
            let mut big = bytes(seed + 1000, 70_000);
            big[0] |= 0x80;
            run_one(&big);
        }
        run_one(&[]);
        run_one(&[1]);
        run_one(&[1, 200]);
        run_one(&[0x81, 4, 0xff, 0xff]);
        // virtio-fs: a well-behaved start against the fake backend, then random operations.
        for seed in 0..16u64 {
            let mut input = bytes(seed + 2000, 8192);
            input[0] = 0x80 | FS;
            run_one(&input);
        }
    }
}
