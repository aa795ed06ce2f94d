//! A limit on how long den-vmm waits for a vhost-user backend. The `vhost` crate's frontend
//! blocks until the backend answers and retries on socket timeouts, so the limit is enforced
//! from outside: while a conversation is armed, a thread of its own shuts the socket down once
//! the deadline passes, the blocked call then fails with "disconnected", and the caller goes on.

use std::os::fd::RawFd;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    deadline: Option<Instant>,
    cut: bool,
    end: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Watches one socket; ends its thread when dropped.
pub struct Watchdog {
    shared: Arc<Shared>,
    limit: Duration,
}

/// While alive, the socket is cut off if the conversation runs past the limit.
pub struct Armed(Arc<Shared>);

impl Watchdog {
    /// Starts the thread that watches `fd` (which must outlive the watchdog).
    pub fn start(fd: RawFd, limit: Duration) -> std::io::Result<Watchdog> {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), wake: Condvar::new() });
        let theirs = shared.clone();
        std::thread::Builder::new().name("vhost-user watchdog".into()).spawn(move || {
            crate::seccomp::enter(crate::seccomp::ThreadKind::Watchdog);
            watch(&theirs, fd)
        })?;
        Ok(Watchdog { shared, limit })
    }

    /// Arms the limit until the returned guard is dropped.
    pub fn arm(&self) -> Armed {
        self.shared.state().deadline = Some(Instant::now() + self.limit);
        self.shared.wake.notify_all();
        Armed(self.shared.clone())
    }

    /// Whether the socket was cut off.
    pub fn cut(&self) -> bool {
        self.shared.state().cut
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        self.0.state().deadline = None;
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.state().end = true;
        self.shared.wake.notify_all();
    }
}

fn watch(shared: &Shared, fd: RawFd) {
    let mut state = shared.state();
    loop {
        if state.end {
            return;
        }
        state = match state.deadline {
            None => shared.wake.wait(state).unwrap_or_else(|p| p.into_inner()),
            Some(d) if Instant::now() >= d => {
                // SAFETY: shutdown on a descriptor the owner keeps open while the watchdog lives;
                // it only ends the connection, it does not close or reuse the descriptor.
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                state.cut = true;
                state.deadline = None;
                state
            }
            Some(d) => shared.wake.wait_timeout(state, d - Instant::now()).unwrap_or_else(|p| p.into_inner()).0,
        };
    }
}
