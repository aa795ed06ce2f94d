//! den-jailer: starts den-vmm in a jail, one per VM, as Firecracker's jailer starts Firecracker.
//!
//! Run as root, [`run`] does, in this order, and then execs den-vmm in place (same pid, so
//! `dend` finds the VM again after a restart by pid and start time as before):
//! 1. [`cgroup`]: joins the VM's own cgroup (`den/<id>-<pid>`, v2 or v1) with memory, CPU
//!    and process limits; refuses while another den-vmm of the VM runs.
//! 2. [`open`]: opens every file the VM uses (`/dev/kvm`, kernel, initramfs, disks, TAPs) and
//!    binds its sockets, as descriptors 3, 4, ... in the order given. den-vmm names them `fd:N`.
//! 3. [`root`]: new mount, network, IPC and UTS namespaces; an empty read-only root holding
//!    only the den-vmm binary, entered with `pivot_root`.
//! 4. [`creds`]: resource limits, the VM's own uid and gid, no capabilities (bounding and
//!    ambient sets emptied, securebits locked), `no_new_privs`; then `execve`.
//!
//! What each layer stops is in this crate's README.

pub mod cgroup;
pub mod creds;
pub mod open;
pub mod root;
pub mod spec;

pub use spec::{JailSpec, Resource};

use std::convert::Infallible;
use std::os::fd::{AsRawFd, OwnedFd};

/// Why a jail could not be made. Nothing of it is left running: den-vmm is only started at the
/// very end.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// The request is wrong (names the argument).
    #[error("{0}")]
    Invalid(String),
    /// A step failed.
    #[error("{step}: {source}")]
    Step {
        /// Which step, with the file or value it was working on.
        step: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl JailError {
    /// A failed step, from a nix error.
    pub fn nix(step: impl Into<String>) -> impl FnOnce(nix::Error) -> JailError {
        let step = step.into();
        move |e| JailError::Step { step, source: std::io::Error::from(e) }
    }

    /// A failed step, from an I/O error.
    pub fn io(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> JailError {
        let step = step.into();
        move |source| JailError::Step { step, source }
    }
}

/// Makes the jail described by `spec` and execs den-vmm in it; returns only on failure.
pub fn run(spec: &JailSpec) -> Result<Infallible, JailError> {
    spec.validate()?;
    if !nix::unistd::geteuid().is_root() {
        return Err(JailError::Invalid("den-jailer must run as root (it drops to --uid itself)".into()));
    }
    // One jailer per VM at a time (the lock goes with the other descriptors in `place`, when
    // this process is already in its cgroup, where a second one finds it running).
    let _lock = root::lock(&spec.root)?;
    // Before any socket is bound over a running VM's: its cgroup refuses a second den-vmm.
    cgroup::join(spec)?;
    let fds: Vec<OwnedFd> = spec.resources.iter().map(open::open).collect::<Result<_, _>>()?;
    root::enter(spec)?;
    let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    open::place(&raw)?;
    std::mem::forget(fds); // now descriptors 3.. of the exec'd den-vmm
    creds::limit(spec)?;
    creds::drop_privileges(spec)?;
    creds::exec(spec)
}
