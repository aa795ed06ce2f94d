//! Time series kept in memory: one bounded ring of samples per VM and one for the host, like a
//! small RRD. Rates (CPU, disk, network) are computed from two consecutive counter readings.

pub use den_core::metrics::{HostSample, VmSample};
use std::collections::{HashMap, VecDeque};

/// Samples kept per series (an hour at the default interval).
pub const KEEP: usize = 720;

/// Cumulative counters of one VM at one time, from which the next sample's rates come.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VmCounters {
    /// Monotonic seconds when read.
    pub at: f64,
    /// Engine CPU time, clock ticks.
    pub cpu_ticks: u64,
    /// Resident memory, bytes.
    pub mem: u64,
    /// Bytes read and written by the engine.
    pub disk: (u64, u64),
    /// Bytes into and out of the guest over all its TAPs.
    pub net: (u64, u64),
}

/// A rate between two counter readings; 0 when a counter went backwards (a restart).
fn rate(now: u64, before: u64, secs: f64) -> f64 {
    if secs <= 0.0 || now < before {
        return 0.0;
    }
    (now - before) as f64 / secs
}

impl VmCounters {
    /// The sample between `prev` and these counters (`ticks` clock ticks per second).
    pub fn sample_since(&self, prev: &VmCounters, t: i64, ticks: u64) -> VmSample {
        let secs = self.at - prev.at;
        VmSample {
            t,
            cpu: rate(self.cpu_ticks, prev.cpu_ticks, secs) / ticks as f64 * 100.0,
            mem: self.mem,
            disk_read: rate(self.disk.0, prev.disk.0, secs),
            disk_write: rate(self.disk.1, prev.disk.1, secs),
            net_in: rate(self.net.0, prev.net.0, secs),
            net_out: rate(self.net.1, prev.net.1, secs),
        }
    }
}

/// A bounded series.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    items: VecDeque<T>,
}

impl<T> Default for Ring<T> {
    fn default() -> Self {
        Ring { items: VecDeque::new() }
    }
}

impl<T: Clone> Ring<T> {
    /// Adds a sample, dropping the oldest beyond [`KEEP`].
    pub fn push(&mut self, item: T) {
        if self.items.len() == KEEP {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    /// The samples, oldest first.
    pub fn to_vec(&self) -> Vec<T> {
        self.items.iter().cloned().collect()
    }

    /// The newest sample.
    pub fn last(&self) -> Option<&T> {
        self.items.back()
    }
}

/// Every series, by VM id.
#[derive(Debug, Default)]
pub struct History {
    /// The host's series.
    pub host: Ring<HostSample>,
    /// Each VM's series.
    pub vms: HashMap<String, Ring<VmSample>>,
    /// Each VM's last counters.
    pub counters: HashMap<String, VmCounters>,
    /// The host's last (busy, total) CPU ticks.
    pub host_cpu: Option<(u64, u64)>,
}

impl History {
    /// Records new counters of VM `id` read at Unix time `t`; a sample once there is a previous
    /// reading.
    pub fn record_vm(&mut self, id: &str, now: VmCounters, t: i64, ticks: u64) {
        if let Some(prev) = self.counters.insert(id.to_string(), now) {
            self.vms.entry(id.to_string()).or_default().push(now.sample_since(&prev, t, ticks));
        }
    }

    /// Forgets VMs that are not in `alive` (stopped or deleted): their series end.
    pub fn keep_counters_of(&mut self, alive: &[String]) {
        self.counters.retain(|id, _| alive.contains(id));
    }

    /// Host CPU busy percent since the last reading of (busy, total) ticks.
    pub fn host_cpu_percent(&mut self, busy: u64, total: u64) -> f64 {
        let pct = match self.host_cpu {
            Some((b0, t0)) if total > t0 && busy >= b0 => (busy - b0) as f64 * 100.0 / (total - t0) as f64,
            _ => 0.0,
        };
        self.host_cpu = Some((busy, total));
        pct
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(at: f64, cpu_ticks: u64, disk: u64, net: u64) -> VmCounters {
        VmCounters { at, cpu_ticks, mem: 1 << 20, disk: (disk, disk * 2), net: (net, net / 2) }
    }

    #[test]
    fn rates_come_from_consecutive_readings() {
        let mut h = History::default();
        h.record_vm("a", counters(10.0, 100, 0, 0), 1000, 100);
        assert!(!h.vms.contains_key("a"), "one reading gives no rate yet");
        h.record_vm("a", counters(15.0, 350, 5000, 10000), 1005, 100);
        let s = h.vms["a"].to_vec()[0];
        assert_eq!(s.t, 1005);
        assert!((s.cpu - 50.0).abs() < 1e-9, "250 ticks in 5 s at 100 Hz is half a CPU: {}", s.cpu);
        assert_eq!((s.disk_read, s.disk_write), (1000.0, 2000.0));
        assert_eq!((s.net_in, s.net_out), (2000.0, 1000.0));
        // The engine restarted: counters went back, which is not a negative rate.
        h.record_vm("a", counters(20.0, 10, 0, 0), 1010, 100);
        let s = *h.vms["a"].last().unwrap();
        assert_eq!((s.cpu, s.disk_read, s.net_in), (0.0, 0.0, 0.0));
        h.keep_counters_of(&[]);
        assert!(h.counters.is_empty() && h.vms.contains_key("a"), "a stopped VM keeps its history");
    }

    #[test]
    fn rings_are_bounded_and_host_cpu_is_a_share() {
        let mut r = Ring::default();
        for i in 0..KEEP + 5 {
            r.push(i);
        }
        let v = r.to_vec();
        assert_eq!((v.len(), v[0], r.last().copied()), (KEEP, 5, Some(KEEP + 4)));
        let mut h = History::default();
        assert_eq!(h.host_cpu_percent(100, 1000), 0.0);
        assert!((h.host_cpu_percent(150, 1200) - 25.0).abs() < 1e-9);
    }
}
