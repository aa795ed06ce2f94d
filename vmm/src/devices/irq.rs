//! Interrupt lines. With the in-kernel irqchip a line is a GSI of the VM's IOAPIC, pulsed with
//! `KVM_IRQ_LINE` by the thread that raises it. (An irqfd would be one syscall too, but KVM injects
//! an IOAPIC irqfd from a kernel worker thread: one more context switch per interrupt, which was
//! what the disk I/O workers cost at queue depth 1 in the KVM lab.) Without an irqchip (tiny
//! guests, unit tests) the line only counts.

use kvm_ioctls::VmFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use vm_superio::Trigger;

/// `KVM_IRQ_LINE`, `_IOW(KVMIO, 0x61, struct kvm_irq_level)`: the ioctl a line is pulsed with
/// (seccomp allows it to the threads that raise interrupts).
pub const KVM_IRQ_LINE: u64 = (1 << 30)
    | ((std::mem::size_of::<kvm_bindings::kvm_irq_level>() as u64) << 16)
    | ((kvm_bindings::KVMIO as u64) << 8)
    | 0x61;

/// Where a line goes.
#[derive(Debug, Default)]
enum Wire {
    /// Nowhere: raising only counts.
    #[default]
    Counting,
    /// A GSI of the VM's in-kernel irqchip. The lock makes each raise a whole pulse (up, then
    /// down) before the next begins, so every raise is an edge the IOAPIC sees, after the status
    /// its caller set.
    Kvm { vm: Arc<VmFd>, gsi: u32, pulse: Mutex<()> },
}

/// One interrupt line of a device.
#[derive(Debug, Default)]
pub struct IrqLine {
    wire: Wire,
    raised: AtomicU64,
}

impl IrqLine {
    /// A line with nothing behind it: raising it only counts.
    pub fn counting() -> IrqLine {
        IrqLine::default()
    }

    /// A line wired to `gsi` of the VM's in-kernel irqchip (edge-triggered, as the DSDT and the
    /// ISA devices describe theirs).
    pub fn gsi(vm: &Arc<VmFd>, gsi: u32) -> IrqLine {
        IrqLine { wire: Wire::Kvm { vm: vm.clone(), gsi, pulse: Mutex::new(()) }, raised: AtomicU64::new(0) }
    }

    /// Raises the interrupt.
    pub fn raise(&self) -> std::io::Result<()> {
        self.raised.fetch_add(1, Ordering::Relaxed);
        match &self.wire {
            Wire::Kvm { vm, gsi, pulse } => {
                let _whole_pulse = pulse.lock().unwrap_or_else(PoisonError::into_inner);
                let to_io = |e: kvm_ioctls::Error| std::io::Error::from_raw_os_error(e.errno());
                vm.set_irq_line(*gsi, true).map_err(to_io)?;
                vm.set_irq_line(*gsi, false).map_err(to_io)
            }
            Wire::Counting => Ok(()),
        }
    }

    /// How often the line was raised.
    pub fn count(&self) -> u64 {
        self.raised.load(Ordering::Relaxed)
    }
}

impl Trigger for IrqLine {
    type E = std::io::Error;

    fn trigger(&self) -> Result<(), Self::E> {
        self.raise()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_line_counts() {
        let l = IrqLine::counting();
        l.raise().unwrap();
        l.trigger().unwrap();
        assert_eq!(l.count(), 2);
    }

    #[test]
    fn the_ioctl_number_is_kvm_irq_line() {
        // As <linux/kvm.h> spells it: _IOW(0xAE, 0x61, struct kvm_irq_level), 8 bytes.
        assert_eq!(KVM_IRQ_LINE, 0x4008_ae61);
    }
}
