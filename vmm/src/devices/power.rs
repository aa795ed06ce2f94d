//! ACPI power control for a hardware-reduced ACPI machine: the FADT points the guest at a sleep
//! control register (S5 = power off) and a reset register, both on this one port device.

use super::bus::BusDevice;
use crate::exit::{ExitReason, ExitSignal};
use std::sync::Arc;

/// Base port of the device.
pub const POWER_PORT: u16 = 0x600;
/// Ports it owns.
pub const POWER_LEN: u64 = 4;
/// Offset of the sleep control register.
pub const SLEEP_CONTROL: u64 = 0;
/// Offset of the sleep status register.
pub const SLEEP_STATUS: u64 = 1;
/// Offset of the reset register.
pub const RESET: u64 = 2;
/// The value the guest writes to the reset register.
pub const RESET_VALUE: u8 = 1;
/// The sleep type of S5 (soft off), as the DSDT's `_S5_` declares it.
pub const S5_SLEEP_TYPE: u8 = 5;
const SLP_EN: u8 = 1 << 5;

/// The power control registers.
pub struct PowerDevice {
    exit: Arc<ExitSignal>,
}

impl PowerDevice {
    /// Ends the VM through `exit`.
    pub fn new(exit: Arc<ExitSignal>) -> PowerDevice {
        PowerDevice { exit }
    }
}

impl BusDevice for PowerDevice {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            SLEEP_CONTROL if v & SLP_EN != 0 && (v >> 2) & 7 == S5_SLEEP_TYPE => self.exit.set(ExitReason::PowerOff),
            RESET if v == RESET_VALUE => self.exit.set(ExitReason::Reset),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_powers_off_and_other_states_do_not() {
        let exit = Arc::new(ExitSignal::new());
        let mut d = PowerDevice::new(exit.clone());
        d.write(SLEEP_CONTROL, &[(3 << 2) | SLP_EN]); // S3: not supported, ignored
        d.write(SLEEP_CONTROL, &[5 << 2]); // no SLP_EN
        d.write(RESET, &[7]);
        d.write(SLEEP_STATUS, &[0xff]);
        d.write(SLEEP_CONTROL, &[]);
        assert_eq!(exit.get(), None);
        d.write(SLEEP_CONTROL, &[(5 << 2) | SLP_EN]);
        assert_eq!(exit.get(), Some(ExitReason::PowerOff));
    }

    #[test]
    fn reset_register_resets() {
        let exit = Arc::new(ExitSignal::new());
        PowerDevice::new(exit.clone()).write(RESET, &[RESET_VALUE]);
        assert_eq!(exit.get(), Some(ExitReason::Reset));
    }
}
