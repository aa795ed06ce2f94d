//! Login rate limiting: at most [`MAX_FAILURES`] attempts that did not succeed per key within
//! [`WINDOW`]. An attempt is counted *before* its password is checked (a reservation), so many
//! concurrent guesses from one address cannot all reach the hash; a success gives its
//! reservation back.
//!
//! Budgets are separate: password attempts count per user name and per address
//! ([`password_keys`]), public-key attempts per address ([`key_keys`]), so someone guessing
//! `admin`'s password never locks `admin` out of key logins.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts that did not succeed allowed per key within [`WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Keys kept before old ones are swept (bounds the map against address-spraying clients).
const MAX_KEYS: usize = 10_000;

/// The keys a password login of `user` from `from` counts against: the user's first.
pub fn password_keys(user: &str, from: &str) -> Vec<String> {
    vec![format!("pw-user:{user}"), format!("pw-addr:{}", addr_key(from))]
}

/// The keys a public-key login from `from` counts against.
pub fn key_keys(from: &str) -> Vec<String> {
    vec![format!("key-addr:{}", addr_key(from))]
}

/// What an address counts as (an IPv6 peer's /64: [`crate::conn_limit::source_key`]);
/// anything that is no address (`local`) as itself.
fn addr_key(from: &str) -> String {
    match from.parse::<std::net::IpAddr>() {
        Ok(ip) => crate::conn_limit::source_key(ip).to_string(),
        Err(_) => from.to_string(),
    }
}

/// An attempt counted in advance; [`Limiter::succeeded`] takes it back.
#[derive(Debug)]
pub struct Attempt {
    keys: Vec<String>,
    at: Instant,
}

/// Attempt times per key.
#[derive(Default)]
pub struct Limiter {
    attempts: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Limiter {
    /// How long until `keys` may try again (`None`: now).
    pub fn blocked(&self, keys: &[String], now: Instant) -> Option<Duration> {
        let mut m = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        Self::wait(&mut m, keys, now)
    }

    fn wait(m: &mut HashMap<String, VecDeque<Instant>>, keys: &[String], now: Instant) -> Option<Duration> {
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

    /// Counts an attempt against every key, unless one of them is spent: then how long to wait.
    /// Checking and counting are one step, so concurrent attempts cannot all slip through.
    pub fn attempt(&self, keys: Vec<String>, now: Instant) -> Result<Attempt, Duration> {
        let mut m = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(wait) = Self::wait(&mut m, &keys, now) {
            return Err(wait);
        }
        Self::record(&mut m, &keys, now);
        Ok(Attempt { keys, at: now })
    }

    /// Counts a failure against every key (for failures found without an [`Attempt`]).
    pub fn failed(&self, keys: &[String], now: Instant) {
        let mut m = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        Self::record(&mut m, keys, now);
    }

    fn record(m: &mut HashMap<String, VecDeque<Instant>>, keys: &[String], now: Instant) {
        if m.len() > MAX_KEYS {
            m.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        for k in keys {
            m.entry(k.clone()).or_default().push_back(now);
        }
    }

    /// An attempt succeeded: its user key forgets every failure, the other keys (addresses)
    /// only this attempt.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut m = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        for (i, k) in attempt.keys.iter().enumerate() {
            if i == 0 && k.contains("-user:") {
                m.remove(k);
            } else if let Some(q) = m.get_mut(k) {
                if let Some(pos) = q.iter().rposition(|t| *t == attempt.at) {
                    q.remove(pos);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_recovers() {
        let l = Limiter::default();
        let t0 = Instant::now();
        let keys = password_keys("a", "1.2.3.4");
        for _ in 0..MAX_FAILURES {
            assert!(l.blocked(&keys, t0).is_none());
            l.failed(&keys, t0);
        }
        assert!(l.blocked(&keys, t0).is_some());
        assert!(l.attempt(keys.clone(), t0).is_err());
        assert!(l.blocked(&password_keys("b", "1.2.3.4")[1..], t0).is_some(), "per address too");
        assert!(l.blocked(&password_keys("b", "5.6.7.8"), t0).is_none());
        assert!(l.blocked(&key_keys("1.2.3.4"), t0).is_none(), "key logins have their own budget");
        assert!(l.blocked(&keys, t0 + WINDOW).is_none(), "the window passes");
    }

    #[test]
    fn attempts_are_counted_before_they_finish() {
        let l = Limiter::default();
        let t0 = Instant::now();
        let held: Vec<Attempt> =
            (0..MAX_FAILURES).map(|_| l.attempt(password_keys("a", "1.2.3.4"), t0).unwrap()).collect();
        assert!(l.attempt(password_keys("a", "1.2.3.4"), t0).is_err(), "the sixth concurrent attempt waits");
        let mut held = held.into_iter();
        l.succeeded(held.next().unwrap());
        assert!(l.attempt(password_keys("a", "1.2.3.4"), t0).is_ok(), "a success gives its place back");
        assert!(l.attempt(password_keys("c", "1.2.3.4"), t0).is_err(), "the address is still spent");
        assert_eq!(password_keys("a", "2001:db8::7")[1], password_keys("a", "2001:db8::ffff:1")[1], "one /64");
        assert_eq!(key_keys("local"), ["key-addr:local"]);
    }
}
