//! Why a VM stopped, and how the part that noticed tells the rest: devices and vCPU threads set
//! the reason once (the first one wins) and the main thread waits for it.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Why the VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest powered off (ACPI S5).
    PowerOff,
    /// The guest reset itself (reboot, or the i8042 / ACPI reset register).
    Reset,
    /// Stopped from outside (API stop, signal).
    Stopped,
    /// The guest crashed (triple fault, a state KVM could not run, an emulation failure).
    Crash(String),
    /// The VMM itself failed.
    Error(String),
}

impl ExitReason {
    /// The process exit code for this reason (documented in `den-vmm --help`).
    pub fn code(&self) -> u8 {
        match self {
            ExitReason::PowerOff | ExitReason::Stopped => 0,
            ExitReason::Error(_) => 1,
            ExitReason::Crash(_) => 4,
            ExitReason::Reset => 10,
        }
    }
}

/// The one-shot exit reason, shared by every thread of a VM.
#[derive(Debug, Default)]
pub struct ExitSignal {
    reason: Mutex<Option<ExitReason>>,
    cv: Condvar,
}

impl ExitSignal {
    /// A signal nobody has set.
    pub fn new() -> ExitSignal {
        ExitSignal::default()
    }

    /// Records `reason` unless one was recorded before; wakes the waiters.
    pub fn set(&self, reason: ExitReason) {
        let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
        self.cv.notify_all();
    }

    /// The reason, if the VM has ended.
    pub fn get(&self) -> Option<ExitReason> {
        self.reason.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits at most `timeout` for the VM to end.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitReason> {
        let r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        let (r, _) = self.cv.wait_timeout_while(r, timeout, |r| r.is_none()).unwrap_or_else(|p| p.into_inner());
        r.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reason_wins() {
        let s = ExitSignal::new();
        assert_eq!(s.wait_timeout(Duration::from_millis(1)), None);
        s.set(ExitReason::Reset);
        s.set(ExitReason::PowerOff);
        assert_eq!(s.get(), Some(ExitReason::Reset));
        assert_eq!(s.wait_timeout(Duration::from_secs(5)), Some(ExitReason::Reset));
        assert_eq!(ExitReason::Reset.code(), 10);
        assert_eq!(ExitReason::PowerOff.code(), 0);
    }
}
