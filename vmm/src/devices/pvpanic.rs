//! pvpanic: the guest kernel reports its own panic on an I/O port (ACPI `QEMU0001`, the device
//! QEMU offers too), so den-vmm can tell a crashed guest (exit code 4) from one that merely
//! rebooted, even when the kernel's `panic=` makes it reset right after.

use super::bus::{reply_byte, BusDevice};
use crate::exit::{ExitReason, ExitSignal};
use std::sync::Arc;

/// The port (QEMU's default).
pub const PVPANIC_PORT: u16 = 0x505;
/// Event bit: the guest panicked.
const PANICKED: u8 = 1;
/// Event bit: a crash kernel (kdump) was loaded and takes over.
const CRASH_LOADED: u8 = 2;

/// The device.
pub struct PvPanic {
    exit: Arc<ExitSignal>,
}

impl PvPanic {
    /// Ends the VM through `exit` when the guest reports a panic.
    pub fn new(exit: Arc<ExitSignal>) -> PvPanic {
        PvPanic { exit }
    }
}

impl BusDevice for PvPanic {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // The events we understand.
        reply_byte(data, PANICKED | CRASH_LOADED);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        match data.first() {
            Some(&v) if v & PANICKED != 0 => self.exit.set(ExitReason::Crash("the guest kernel panicked".into())),
            // A crash kernel takes over: the VM keeps running so that it can write its dump.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_event_ends_the_vm_as_a_crash() {
        let exit = Arc::new(ExitSignal::new());
        let mut d = PvPanic::new(exit.clone());
        let mut caps = [0u8; 1];
        d.read(0, &mut caps);
        assert_eq!(caps, [3]);
        d.write(0, &[CRASH_LOADED]);
        d.write(0, &[]);
        assert_eq!(exit.get(), None);
        d.write(0, &[PANICKED]);
        assert_eq!(exit.get().map(|r| r.code()), Some(4));
    }
}
