//! Interrupt lines. With the in-kernel irqchip a line is an irqfd: writing the eventfd raises the
//! GSI without leaving the thread. Without one (tiny guests, unit tests) the line only counts.

use std::sync::atomic::{AtomicU64, Ordering};
use vm_superio::Trigger;
use vmm_sys_util::eventfd::EventFd;

/// One interrupt line of a device.
#[derive(Debug, Default)]
pub struct IrqLine {
    fd: Option<EventFd>,
    raised: AtomicU64,
}

impl IrqLine {
    /// A line with nothing behind it: raising it only counts.
    pub fn counting() -> IrqLine {
        IrqLine::default()
    }

    /// A line wired to `gsi` of the VM's in-kernel irqchip through an irqfd.
    pub fn irqfd(vm: &kvm_ioctls::VmFd, gsi: u32) -> Result<IrqLine, crate::VmmError> {
        let fd = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| crate::VmmError::Io("eventfd for an irqfd", e))?;
        vm.register_irqfd(&fd, gsi).map_err(crate::kvm("register irqfd"))?;
        Ok(IrqLine { fd: Some(fd), raised: AtomicU64::new(0) })
    }

    /// Raises the interrupt.
    pub fn raise(&self) -> std::io::Result<()> {
        self.raised.fetch_add(1, Ordering::Relaxed);
        match &self.fd {
            Some(fd) => fd.write(1),
            None => Ok(()),
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
}
