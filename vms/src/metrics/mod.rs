//! Usage graphs: every [`INTERVAL`], the sampler reads the host's CPU, memory and disk, and each
//! running VM's engine process (CPU, resident memory, disk traffic) and TAP devices (network),
//! and keeps the last hour in memory (`history`). The API serves them to the web console's
//! dashboard and VM graphs.

pub mod history;
pub mod proc;

use crate::Den;
use den_core::vm::VmState;
use den_engine::process::{self, Proc};
use history::{History, HostSample, VmCounters, VmSample};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Time between samples.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// The sampler's state.
pub struct Metrics {
    history: Mutex<History>,
    started: Instant,
    ticks: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { history: Mutex::default(), started: Instant::now(), ticks: proc::clock_ticks() }
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The host's samples, oldest first.
    pub fn host(&self) -> Vec<HostSample> {
        self.lock().host.to_vec()
    }

    /// The newest host sample.
    pub fn host_now(&self) -> Option<HostSample> {
        self.lock().host.last().copied()
    }

    /// The samples of VM `id`, oldest first.
    pub fn vm(&self, id: &str) -> Vec<VmSample> {
        self.lock().vms.get(id).map(history::Ring::to_vec).unwrap_or_default()
    }

    /// Takes one sample of the host and of every running VM.
    pub fn sample(&self, den: &Den) {
        let t = den_store::now();
        let at = self.started.elapsed().as_secs_f64();
        let cpu = proc::read("/proc/stat").as_deref().and_then(proc::parse_cpu);
        let mem = proc::read("/proc/meminfo").as_deref().and_then(proc::parse_meminfo).unwrap_or((0, 0));
        let disk = proc::disk_space(&den.paths.data).unwrap_or((0, 0));
        let load = proc::read("/proc/loadavg").as_deref().and_then(proc::parse_loadavg).unwrap_or(0.0);
        let vms = den.store.vms().unwrap_or_default();
        let mut readings = vec![];
        for vm in vms.iter().filter(|v| matches!(v.state, VmState::Running | VmState::Paused)) {
            let Some(r) = &vm.running else { continue };
            let p = Proc { pid: r.pid, start_time: r.start_time };
            let Some((cpu_ticks, rss)) = process::usage(p) else { continue };
            let disk = proc::read(format!("/proc/{}/io", r.pid)).as_deref().and_then(proc::parse_io).unwrap_or((0, 0));
            let net =
                vm.nics.iter().filter_map(|n| proc::tap_bytes(&n.tap)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            readings.push((vm.id.clone(), VmCounters { at, cpu_ticks, mem: rss, disk, net }));
        }
        let mut h = self.lock();
        let cpu_pct = cpu.map(|(busy, total)| h.host_cpu_percent(busy, total)).unwrap_or(0.0);
        h.host.push(HostSample {
            t,
            cpu: cpu_pct,
            mem_used: mem.0.saturating_sub(mem.1),
            mem_total: mem.0,
            disk_used: disk.0.saturating_sub(disk.1),
            disk_total: disk.0,
            load,
        });
        let alive: Vec<String> = readings.iter().map(|(id, _)| id.clone()).collect();
        for (id, c) in readings {
            h.record_vm(&id, c, t, self.ticks);
        }
        h.keep_counters_of(&alive);
        let known: Vec<&str> = vms.iter().map(|v| v.id.as_str()).collect();
        h.vms.retain(|id, _| known.contains(&id.as_str()));
    }
}

/// Samples every [`INTERVAL`] until the process ends.
pub async fn run(den: Arc<Den>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let d = den.clone();
        // /proc and statvfs reads are quick but blocking.
        let _ = tokio::task::spawn_blocking(move || d.metrics.sample(&d)).await;
    }
}
