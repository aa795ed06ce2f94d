//! Resource samples: the host's and each VM's, as dend keeps and serves them.

use serde::{Deserialize, Serialize};

/// One host sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HostSample {
    /// Unix seconds.
    pub t: i64,
    /// Busy share of all CPUs, 0 to 100.
    pub cpu: f64,
    /// Memory in use (total minus available), bytes.
    pub mem_used: u64,
    /// Total memory, bytes.
    pub mem_total: u64,
    /// Used space of the file system holding Den's data, bytes.
    pub disk_used: u64,
    /// Its size, bytes.
    pub disk_total: u64,
    /// 1-minute load average.
    pub load: f64,
}

/// One VM sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VmSample {
    /// Unix seconds.
    pub t: i64,
    /// CPU used by the VM's engine process, in percent of one host CPU.
    pub cpu: f64,
    /// Resident memory of the engine process, bytes.
    pub mem: u64,
    /// Disk reads, bytes per second.
    pub disk_read: f64,
    /// Disk writes, bytes per second.
    pub disk_write: f64,
    /// Network traffic into the guest, bytes per second.
    pub net_in: f64,
    /// Network traffic out of the guest, bytes per second.
    pub net_out: f64,
}
