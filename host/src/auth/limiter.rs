//! Login rate limiting: at most [`MAX_FAILURES`] failed logins per user name and per source
//! address within [`WINDOW`]; further attempts are refused without checking the password until
//! the oldest failure leaves the window.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed per key within [`WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Failure times per key (`user:<name>`, `addr:<ip>`).
#[derive(Default)]
pub struct Limiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Limiter {
    /// How long until `keys` may try again (`None`: now).
    pub fn blocked(&self, keys: &[String], now: Instant) -> Option<Duration> {
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|k| {
                let q = m.get_mut(k)?;
                while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
                    q.pop_front();
                }
                if q.len() < MAX_FAILURES {
                    return None;
                }
                q.front().map(|t| WINDOW.saturating_sub(now.duration_since(*t)))
            })
            .max()
    }

    /// Records a failure for each key.
    pub fn failed(&self, keys: &[String], now: Instant) {
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 10_000 {
            m.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        for k in keys {
            m.entry(k.clone()).or_default().push_back(now);
        }
    }

    /// Forgets a user's failures after a successful login (the address keeps its count).
    pub fn succeeded(&self, user_key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(user_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_recovers() {
        let l = Limiter::default();
        let t0 = Instant::now();
        let keys = ["user:a".to_string(), "addr:1.2.3.4".to_string()];
        for _ in 0..MAX_FAILURES {
            assert!(l.blocked(&keys, t0).is_none());
            l.failed(&keys, t0);
        }
        assert!(l.blocked(&keys, t0).is_some());
        assert!(l.blocked(&["addr:1.2.3.4".to_string()], t0).is_some(), "per address too");
        assert!(l.blocked(&["user:b".to_string()], t0).is_none());
        assert!(l.blocked(&keys, t0 + WINDOW).is_none(), "the window passes");
        l.succeeded("user:a");
        assert!(l.blocked(&["user:a".to_string()], t0).is_none());
    }
}
