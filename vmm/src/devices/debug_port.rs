//! The debug port (I/O port 0x80, the PC's POST-code port), used the way Cloud Hypervisor uses
//! it: every byte the guest writes there is a milestone code, kept with the time since den-vmm's
//! process started. Guest milestones (first instruction, init start) are so timed by the VMM's
//! clock, never the guest's, and the timestamps include the VMM's own start-up.

use super::bus::BusDevice;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The port (the device owns this one port).
pub const DEBUG_PORT: u16 = 0x80;
/// Milestones kept (the most recent ones).
pub const MAX_MILESTONES: usize = 64;

/// One code the guest wrote, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Milestone {
    /// The byte written.
    pub code: u8,
    /// Microseconds from the process start to the write.
    pub micros: u64,
}

/// The most recent milestones, shared by the device and whoever reports them.
#[derive(Debug)]
pub struct Milestones {
    start: Instant,
    log: Mutex<VecDeque<Milestone>>,
}

impl Milestones {
    /// An empty log timing from `start`.
    pub fn new(start: Instant) -> Milestones {
        Milestones { start, log: Mutex::new(VecDeque::with_capacity(MAX_MILESTONES)) }
    }

    /// An empty log timing from this process's start ([`process_start`]).
    pub fn since_process_start() -> Milestones {
        Milestones::new(process_start())
    }

    /// Records `code` now.
    pub fn record(&self, code: u8) {
        let micros = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if log.len() == MAX_MILESTONES {
            log.pop_front();
        }
        log.push_back(Milestone { code, micros });
    }

    /// The milestones kept, oldest first.
    pub fn list(&self) -> Vec<Milestone> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect()
    }

    /// `0x10@123.4ms 0x20@130.0ms`, or `None` if the guest wrote none.
    pub fn line(&self) -> Option<String> {
        let list = self.list();
        let parts: Vec<String> =
            list.iter().map(|m| format!("{:#04x}@{:.1}ms", m.code, m.micros as f64 / 1000.0)).collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

/// The port device: records each byte written; reads as zero.
pub struct DebugPort {
    milestones: Arc<Milestones>,
}

impl DebugPort {
    /// A port recording into `milestones`.
    pub fn new(milestones: Arc<Milestones>) -> DebugPort {
        DebugPort { milestones }
    }
}

impl BusDevice for DebugPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let Some(&code) = data.first() {
            self.milestones.record(code);
        }
    }
}

/// When this process started (its fork), as an [`Instant`]; computed once, on first use.
///
/// The kernel keeps the start time in nanoseconds but `/proc/self/stat` shows it in clock ticks
/// (10 ms), which only bounds the elapsed time to a 10 ms window. Inside that window the estimate
/// is the CPU time plus run-queue wait of the main thread since its fork (`/proc/self/schedstat`,
/// nanoseconds): exact for a process that has not slept yet, which holds for den-vmm until it
/// builds the VM, where this is first called. Without schedstat: the middle of the window.
pub fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(elapsed_since_start().unwrap_or_default()).unwrap_or(now)
    })
}

fn elapsed_since_start() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let schedstat = std::fs::read_to_string("/proc/self/schedstat").ok();
    // SAFETY: sysconf has no memory effects; clock_gettime writes only to `ts`.
    let (hz, now) = unsafe {
        let hz = libc::sysconf(libc::_SC_CLK_TCK);
        let mut ts: libc::timespec = std::mem::zeroed();
        if libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) != 0 {
            return None;
        }
        (u64::try_from(hz).ok()?, Duration::new(u64::try_from(ts.tv_sec).ok()?, ts.tv_nsec as u32))
    };
    let busy = schedstat.as_deref().and_then(parse_schedstat);
    estimate(now, start_ticks(&stat)?, hz, busy)
}

/// Field 22 (`starttime`) of `/proc/<pid>/stat`; the command name (field 2) may hold spaces.
fn start_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// CPU time plus run-queue wait from `/proc/<pid>/schedstat`.
fn parse_schedstat(s: &str) -> Option<Duration> {
    let mut f = s.split_whitespace().map(|x| x.parse::<u64>().ok());
    Some(Duration::from_nanos(f.next()??.checked_add(f.next()??)?))
}

/// Time since the start, given the boot clock `now`, the start in `hz` ticks and the busy time.
fn estimate(now: Duration, start_ticks: u64, hz: u64, busy: Option<Duration>) -> Option<Duration> {
    if hz == 0 {
        return None;
    }
    let tick = Duration::from_secs(1) / u32::try_from(hz).ok()?;
    let start_floor = Duration::from_secs(start_ticks / hz) + tick * u32::try_from(start_ticks % hz).ok()?;
    let most = now.checked_sub(start_floor)?;
    let least = most.saturating_sub(tick);
    Some(match busy {
        Some(b) => b.clamp(least, most),
        None => (least + most) / 2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_codes_with_times_and_keeps_the_last_64() {
        let m = Arc::new(Milestones::new(Instant::now() - Duration::from_millis(5)));
        assert_eq!(m.line(), None);
        let mut port = DebugPort::new(m.clone());
        port.write(0, &[0x10]);
        port.write(0, &[]);
        port.write(0, &[0x20, 0x99]);
        let l = m.list();
        assert_eq!(l.iter().map(|x| x.code).collect::<Vec<_>>(), [0x10, 0x20]);
        assert!(l[0].micros >= 5000 && l[0].micros <= l[1].micros, "{l:?}");
        let line = m.line().unwrap();
        assert!(line.starts_with("0x10@") && line.contains("ms 0x20@") && line.ends_with("ms"), "{line}");
        for i in 0..100u8 {
            port.write(0, &[i]);
        }
        let l = m.list();
        assert_eq!(l.len(), MAX_MILESTONES);
        assert_eq!((l[0].code, l[63].code), (36, 99));
        let mut d = [0xffu8; 1];
        port.read(0, &mut d);
        assert_eq!(d, [0]);
    }

    #[test]
    fn proc_fields_are_parsed() {
        let stat = "42 (a ) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 7777 1000 200";
        assert_eq!(start_ticks(stat), Some(7777));
        assert_eq!(start_ticks("garbage"), None);
        assert_eq!(parse_schedstat("1500 500 3\n"), Some(Duration::from_nanos(2000)));
        assert_eq!(parse_schedstat("x"), None);
    }

    #[test]
    fn the_estimate_stays_inside_the_tick_window() {
        let now = Duration::from_millis(10_005); // boot clock; start tick 1000 at 100 Hz = 10.000 s
        let ms = Duration::from_millis;
        assert_eq!(estimate(now, 1000, 100, Some(ms(3))), Some(ms(3)));
        assert_eq!(estimate(now, 1000, 100, Some(ms(50))), Some(ms(5))); // never before the tick
        assert_eq!(estimate(now, 1000, 100, None), Some(Duration::from_micros(2500)));
        assert_eq!(estimate(now, 999, 100, Some(ms(1))), Some(ms(5))); // slept: at least 5 ms
        assert_eq!(estimate(now, 2000, 100, None), None); // a start in the future
        assert_eq!(estimate(now, 1, 0, None), None);
    }

    #[test]
    fn this_process_started_before_now_and_recently_enough() {
        let start = process_start();
        assert!(start <= Instant::now());
        assert_eq!(start, process_start());
    }
}
