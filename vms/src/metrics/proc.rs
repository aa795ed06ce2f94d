//! Readers of the kernel's counters: `/proc/stat` (host CPU), `/proc/meminfo`, `/proc/loadavg`,
//! `/proc/<pid>/io` (an engine's disk traffic), TAP device statistics, and `statvfs` of a
//! folder. The parsers are pure so they are tested on fixed text.

use std::path::Path;

/// Host CPU time: (busy, total) in clock ticks since boot, from the `cpu` line of `/proc/stat`.
pub fn parse_cpu(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// (total, available) memory in bytes, from `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let kib = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l[key.len()..].split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .map(|n| n * 1024)
    };
    Some((kib("MemTotal:")?, kib("MemAvailable:")?))
}

/// The 1-minute load average, from `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// (read, written) bytes that reached the storage layer, from `/proc/<pid>/io`.
pub fn parse_io(text: &str) -> Option<(u64, u64)> {
    let get = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse::<u64>().ok());
    Some((get("read_bytes:")?, get("write_bytes:")?))
}

/// Reads a whole small file as text.
pub fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// (bytes into the guest, bytes out of it) of a TAP device. The host's transmit counter is
/// what the guest received.
pub fn tap_bytes(tap: &str) -> Option<(u64, u64)> {
    let n = |f: &str| read(format!("/sys/class/net/{tap}/statistics/{f}"))?.trim().parse::<u64>().ok();
    Some((n("tx_bytes")?, n("rx_bytes")?))
}

/// (total, free) bytes of the file system holding `path`.
pub fn disk_space(path: &Path) -> Option<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = s.fragment_size();
    Some((s.blocks().saturating_mul(frag), s.blocks_available().saturating_mul(frag)))
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(100)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_counters() {
        let stat = "cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 50 2 25 400 10 1 1 0 0 0\nintr 1\n";
        assert_eq!(parse_cpu(stat), Some((160, 980)));
        assert_eq!(parse_cpu("intr 1"), None);
        let mem = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   12000000 kB\n";
        assert_eq!(parse_meminfo(mem), Some((24000000 * 1024, 12000000 * 1024)));
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
        assert_eq!(parse_loadavg("0.52 0.40 0.30 1/200 1234\n"), Some(0.52));
        let io = "rchar: 10\nwchar: 20\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_io(io), Some((4096, 8192)));
        assert_eq!(parse_io("rchar: 1\n"), None);
    }

    #[test]
    fn reads_this_host() {
        assert!(parse_cpu(&read("/proc/stat").unwrap()).is_some_and(|(busy, total)| busy <= total && total > 0));
        assert!(parse_meminfo(&read("/proc/meminfo").unwrap()).is_some_and(|(t, a)| a <= t && t > 0));
        assert!(disk_space(Path::new("/")).is_some_and(|(t, f)| f <= t && t > 0));
        assert!(clock_ticks() >= 1);
    }
}
