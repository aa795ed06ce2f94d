//! SIGTERM, SIGINT and SIGHUP stop the VM (exit reason "stopped", exit code 0) instead of killing
//! den-vmm in the middle of a disk write: they are blocked in every thread and taken by one
//! thread with sigwait(2).

use crate::exit::{ExitReason, ExitSignal};
use std::sync::Arc;

/// Blocks the stop signals in the calling thread and so in every thread it spawns later. Call
/// first, before any thread starts (device threads are made while the VM is built): a stop
/// signal that arrives before [`stop_on_signals`] then waits for it instead of killing den-vmm.
pub fn block_stop_signals() -> std::io::Result<()> {
    stop_set().map(drop)
}

fn stop_set() -> std::io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; the calls only change this
    // thread's signal mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        set
    };
    Ok(set)
}

/// Blocks the stop signals (see [`block_stop_signals`]) and starts the thread that turns them
/// into [`ExitReason::Stopped`]. Call before starting vCPUs.
pub fn stop_on_signals(exit: Arc<ExitSignal>) -> std::io::Result<()> {
    let set = stop_set()?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        crate::seccomp::enter(crate::seccomp::ThreadKind::Signals);
        loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is a valid signal set and `sig` a valid out pointer.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                exit.set(ExitReason::Stopped);
            }
        }
    })?;
    Ok(())
}
