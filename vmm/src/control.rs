//! Pausing and resuming the vCPUs. A pause marks the VM paused and kicks every vCPU thread with a
//! signal whose handler sets the thread's `kvm_run.immediate_exit`, so `KVM_RUN` returns at once
//! even if the signal lands just before the thread enters it; the thread then parks until resume
//! (or the end of the VM). `pause` returns when every vCPU is parked.

use crate::exit::ExitSignal;
use std::cell::Cell;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

thread_local! {
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

/// The signal that kicks a vCPU out of `KVM_RUN`.
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

extern "C" fn on_kick(_: libc::c_int) {
    // Only touches this thread's own kvm_run mapping, set before the thread first runs.
    let p = IMMEDIATE_EXIT.with(|c| c.get());
    if !p.is_null() {
        // SAFETY: `p` points into the calling vCPU thread's kvm_run mapping, which lives as long
        // as the thread's VcpuFd; it is cleared before the VcpuFd is dropped.
        unsafe { p.write_volatile(1) };
    }
}

/// Installs the kick handler (once per process, before vCPU threads start).
pub fn install_kick_handler() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction with a plain handler and an empty mask is valid; the handler only
    // performs a volatile store to memory owned by the interrupted thread.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_kick as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(kick_signal(), &sa, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Registers the calling vCPU thread's `immediate_exit` byte for the kick handler.
pub fn set_immediate_exit_ptr(p: *mut u8) {
    IMMEDIATE_EXIT.with(|c| c.set(p));
}

#[derive(Debug, Default)]
struct State {
    paused: bool,
    parked: usize,
    threads: Vec<libc::pthread_t>,
}

/// Shared run state of the vCPUs.
#[derive(Debug, Default)]
pub struct RunControl {
    state: Mutex<State>,
    cv: Condvar,
}

/// A pause that did not complete.
#[derive(Debug, thiserror::Error)]
#[error("{parked} of {total} vCPUs stopped within {waited:?}")]
pub struct PauseTimeout {
    /// vCPUs that parked.
    pub parked: usize,
    /// vCPUs in all.
    pub total: usize,
    /// How long we waited.
    pub waited: Duration,
}

impl RunControl {
    /// Running, no threads yet.
    pub fn new() -> RunControl {
        RunControl::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called by each vCPU thread when it starts.
    pub fn register_current_thread(&self) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        self.lock().threads.push(me);
    }

    /// Whether the VM is paused.
    pub fn is_paused(&self) -> bool {
        self.lock().paused
    }

    /// Pauses all vCPUs; returns once they are parked.
    pub fn pause(&self, timeout: Duration) -> Result<(), PauseTimeout> {
        let threads = {
            let mut s = self.lock();
            s.paused = true;
            s.threads.clone()
        };
        let start = Instant::now();
        loop {
            for t in &threads {
                // SAFETY: `t` is a live vCPU thread (they run until the process exits).
                unsafe { libc::pthread_kill(*t, kick_signal()) };
            }
            let s = self.lock();
            let (s, _) = self
                .cv
                .wait_timeout_while(s, Duration::from_millis(20), |s| s.parked < s.threads.len())
                .unwrap_or_else(|p| p.into_inner());
            if s.parked >= s.threads.len() {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(PauseTimeout { parked: s.parked, total: s.threads.len(), waited: start.elapsed() });
            }
        }
    }

    /// Resumes the vCPUs.
    pub fn resume(&self) {
        self.lock().paused = false;
        self.cv.notify_all();
    }

    /// Wakes parked vCPUs so they notice that the VM ended.
    pub fn wake_all(&self) {
        self.cv.notify_all();
    }

    /// Called by a vCPU thread: blocks while the VM is paused and has not ended.
    pub fn park_while_paused(&self, exit: &ExitSignal) {
        let mut s = self.lock();
        if !s.paused {
            return;
        }
        s.parked += 1;
        self.cv.notify_all();
        while s.paused && exit.get().is_none() {
            s = self.cv.wait_timeout(s, Duration::from_millis(100)).unwrap_or_else(|p| p.into_inner()).0;
        }
        s.parked -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn pause_waits_for_every_thread_and_resume_releases_them() {
        install_kick_handler().unwrap();
        let ctl = Arc::new(RunControl::new());
        let exit = Arc::new(ExitSignal::new());
        let ran = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut hs = vec![];
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..2 {
            let (ctl, exit, ran, tx) = (ctl.clone(), exit.clone(), ran.clone(), tx.clone());
            hs.push(std::thread::spawn(move || {
                ctl.register_current_thread();
                tx.send(()).unwrap();
                while exit.get().is_none() {
                    ctl.park_while_paused(&exit);
                    ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            }));
        }
        rx.recv().unwrap();
        rx.recv().unwrap();
        ctl.pause(Duration::from_secs(5)).unwrap();
        assert!(ctl.is_paused());
        let before = ran.load(std::sync::atomic::Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ran.load(std::sync::atomic::Ordering::Relaxed), before, "parked threads do not run");
        ctl.resume();
        std::thread::sleep(Duration::from_millis(50));
        assert!(ran.load(std::sync::atomic::Ordering::Relaxed) > before);
        exit.set(crate::exit::ExitReason::Stopped);
        ctl.wake_all();
        for h in hs {
            h.join().unwrap();
        }
    }
}
