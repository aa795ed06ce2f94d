//! den-vmm: Den's KVM microVM monitor (issue 3, first slice).
//!
//! - [`devices`]: device models (the 8250 serial console so far);
//! - [`tiny`]: runs tiny hand-made real-mode guests and collects their port I/O, the plumbing
//!   every later device builds on, and the way den-vmm is tested on hosts that cannot run Linux.

pub mod api;
pub mod boot;
pub mod config;
pub mod console;
pub mod control;
pub mod devices;
pub mod event_loop;
pub mod exit;
pub mod files;
#[cfg(any(test, feature = "testkit"))]
pub mod fuzz;
pub mod layout;
pub mod machine;
pub mod memory;
pub mod seccomp;
pub mod signals;
pub mod tiny;
pub mod tiny_kernel;
pub mod vcpu;

/// The one line den-vmm prints when it refuses to boot Linux here.
pub const PVM_REFUSAL: &str =
    "den-vmm: this host's /dev/kvm is PVM-backed (kvm_pvm): it cannot run stock Linux kernels \
(they stop with an emulation failure); run den-vmm on a host with kvm_intel/kvm_amd or in the KVM lab, \
use the qemu engine here, or pass --tiny-test-guest for a hand-made test guest";

/// Errors of the VMM.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// A KVM ioctl failed.
    #[error("KVM {op}: {source}")]
    Kvm {
        /// Which operation.
        op: &'static str,
        /// Cause.
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be set up or written.
    #[error("guest memory: {0}")]
    Memory(String),
    /// The guest did something the tiny runner does not model.
    #[error("guest stopped with an unhandled exit: {0}")]
    UnhandledExit(String),
    /// The guest ran longer than allowed.
    #[error("guest did not halt within {0} exits")]
    TooManyExits(u64),
    /// A host system call failed.
    #[error("{0}: {1}")]
    Io(&'static str, #[source] std::io::Error),
    /// A file or setting given to the VMM is unusable.
    #[error("{0}")]
    Input(String),
    /// The host cannot run this guest.
    #[error("{0}")]
    Unsupported(String),
}

/// Maps a KVM error with the name of the operation.
pub(crate) fn kvm(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
    move |source| VmmError::Kvm { op, source }
}
