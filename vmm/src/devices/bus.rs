//! The port I/O and MMIO buses: which device owns which address range. A vCPU exit is routed to
//! the device with the offset inside its range; accesses nobody owns read as all ones and are
//! dropped, as on real hardware, and never reach a device.

use std::sync::{Arc, Mutex};

/// A device on a bus. Offsets are relative to the device's base; `data` is the guest's access
/// (1, 2, 4 or 8 bytes, but devices must not rely on that).
pub trait BusDevice: Send {
    /// A guest read; fill `data`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// A guest write.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the vCPU threads and the event thread.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// A range was already taken.
#[derive(Debug, thiserror::Error)]
#[error("bus range {base:#x}+{len:#x} overlaps a device already there")]
pub struct Overlap {
    /// Base of the refused range.
    pub base: u64,
    /// Its length.
    pub len: u64,
}

/// Address ranges and their devices.
#[derive(Default, Clone)]
pub struct Bus {
    ranges: Vec<(u64, u64, SharedDevice)>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Bus {
        Bus::default()
    }

    /// Puts `dev` at `base..base+len`.
    pub fn insert(&mut self, base: u64, len: u64, dev: SharedDevice) -> Result<(), Overlap> {
        let end = base.checked_add(len).filter(|_| len > 0).ok_or(Overlap { base, len })?;
        if self.ranges.iter().any(|(b, l, _)| base < b + l && *b < end) {
            return Err(Overlap { base, len });
        }
        let at = self.ranges.partition_point(|(b, _, _)| *b < base);
        self.ranges.insert(at, (base, len, dev));
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(u64, &SharedDevice)> {
        let i = self.ranges.partition_point(|(b, _, _)| *b <= addr).checked_sub(1)?;
        let (base, len, dev) = &self.ranges[i];
        let off = addr - base;
        (off < *len).then_some((off, dev))
    }

    /// Routes a read; returns whether a device owned `addr` (otherwise `data` is all ones).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((off, dev)) => {
                lock(dev).read(off, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Routes a write; returns whether a device owned `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((off, dev)) => {
                lock(dev).write(off, data);
                true
            }
            None => false,
        }
    }
}

/// Answers a read of a byte-wide register: `v` in the first byte, zeros in the rest of a wider
/// access.
pub fn reply_byte(data: &mut [u8], v: u8) {
    data.fill(0);
    if let Some(first) = data.first_mut() {
        *first = v;
    }
}

/// Locks a device; a device whose lock was poisoned (a panic in another thread) is still used:
/// its state is plain data and the VMM must keep serving the guest.
pub fn lock(dev: &SharedDevice) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    dev.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(Vec<(u64, Vec<u8>)>);
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn routes_by_range_and_refuses_overlaps() {
        let mut bus = Bus::new();
        let a: SharedDevice = Arc::new(Mutex::new(Echo(vec![])));
        bus.insert(0x100, 0x10, a.clone()).unwrap();
        bus.insert(0x200, 0x10, Arc::new(Mutex::new(Echo(vec![])))).unwrap();
        assert!(bus.insert(0x10f, 2, a.clone()).is_err());
        assert!(bus.insert(0xf0, 0x11, a.clone()).is_err());
        assert!(bus.insert(0x300, 0, a.clone()).is_err());
        assert!(bus.insert(u64::MAX, 2, a.clone()).is_err());
        let mut d = [0u8; 2];
        assert!(bus.read(0x105, &mut d));
        assert_eq!(d, [5, 5]);
        assert!(!bus.read(0x110, &mut d));
        assert_eq!(d, [0xff, 0xff]);
        assert!(!bus.read(0, &mut d));
        assert!(bus.write(0x10f, &[1]));
        assert!(!bus.write(0x1ff, &[1]));
    }
}
