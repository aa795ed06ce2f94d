//! Where an inner boot's time goes, den-vmm (ELF vmlinux) against QEMU microvm (bzImage) with
//! the same kernel, initramfs and command line plus `initcall_debug`: the kernel logs each
//! initcall's duration to its ring buffer (not the console, whose every byte is an exit), and the
//! scenario prints the kernel clock when init's first line runs and the log's slow lines after
//! that, so the timed part pays only for the log entries. The outer guest times the spawn to init's
//! first line as the boot table does.

use crate::{boot_command, median, timed_boot, RUN_LIMIT};
use den_tests::lab::Lab;
use std::collections::BTreeMap;

/// The guest's side: the kernel clock at init's first line, then the kernel log's milestones and
/// initcalls of 1 ms or more, then power off.
pub(crate) const SCENARIO: &str = r#"
echo "LAB-BENCH-INIT $(cut -d' ' -f1 /proc/uptime)"
dmesg | awk '/initcall .* returned/ { if ($(NF-1) + 0 >= 1000) print; next }
  /Trying to unpack rootfs|Freeing initrd memory|Run \/init as init process|Freeing unused kernel image/' | sed 's/^/PROF /'
echo PROF-END
kill -USR2 1
"#;

/// The command line: the boot table's plus the initcall log and a log buffer big enough for it.
const CMDLINE: &str = "console=ttyS0 quiet panic=-1 initcall_debug log_buf_len=4M";

/// The engines, in the table's order.
pub(crate) const ENGINES: [&str; 2] = ["den-vmm", "qemu"];

/// One profiled boot.
#[derive(Debug, Default, Clone)]
pub(crate) struct Profile {
    /// Spawn to init's first line, ms (the outer guest's clock, 10 ms resolution).
    wall: f64,
    /// The kernel clock at init's first line, ms.
    at_init_line: f64,
    /// The kernel clock at `Run /init`, ms.
    run_init: f64,
    /// The kernel clock from `Trying to unpack rootfs image` to `Freeing initrd memory`, ms.
    unpack: f64,
    /// Initcalls of 1 ms or more: name to ms.
    initcalls: BTreeMap<String, f64>,
}

/// The kernel clock in ms of a `[  1.234567] ...` log line, and the text after it.
fn stamped(line: &str) -> Option<(f64, &str)> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (t, text) = rest.split_once(']')?;
    Some((t.trim().parse::<f64>().ok()? * 1000.0, text.trim()))
}

/// Reads what the scenario printed (after the outer guest's `ms=` line).
fn parse(text: &str) -> Option<Profile> {
    let mut p =
        Profile { wall: text.lines().find_map(|l| l.strip_prefix("ms=")?.trim().parse().ok())?, ..Default::default() };
    let mut unpacking = None;
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(t) = line.strip_prefix("LAB-BENCH-INIT ") {
            p.at_init_line = t.trim().parse::<f64>().ok()? * 1000.0;
        }
        let Some((t, what)) = line.strip_prefix("PROF ").and_then(stamped) else { continue };
        if let Some(call) = what.strip_prefix("initcall ") {
            let name = call.split('+').next().unwrap_or(call).to_string();
            let us: f64 = call.split_whitespace().rev().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0.0);
            *p.initcalls.entry(name).or_default() += us / 1000.0;
        } else if what.starts_with("Trying to unpack rootfs") {
            unpacking = Some(t);
        } else if what.starts_with("Freeing initrd memory") {
            p.unpack = unpacking.map(|u| t - u).unwrap_or(f64::NAN);
        } else if what.starts_with("Run /init") {
            p.run_init = t;
        }
    }
    Some(p)
}

/// One profiled boot of `engine`; `Err` when the outer guest died or wedged, or the boot failed.
pub(crate) async fn run(lab: &Lab, engine: &str) -> Result<Profile, String> {
    let cmd = boot_command(engine, "profile", CMDLINE);
    let after = "grep -a -q PROF-END /lab/b.log || { echo the profile was cut short >&2; exit 1; }\n\
                 tr -d '\\r' < /lab/b.log | grep -a -E '^(PROF|LAB-BENCH-INIT)'";
    let script = timed_boot(&cmd, after);
    let out = lab.try_sh(&script, RUN_LIMIT).await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    match parse(&text) {
        Some(p) if out.code == Some(0) => Ok(p),
        _ => Err(format!("profiling {engine} failed: {}", lab.describe(&out))),
    }
}

/// A row of the step table: its name and what it reads from a profile.
type Row = (&'static str, fn(&Profile) -> f64);

/// The profile table: medians over the runs, by engine in [`ENGINES`] order.
pub(crate) fn table(runs: usize, results: &[Vec<Profile>; 2]) {
    let m = |k: usize, f: &dyn Fn(&Profile) -> f64| median(results[k].iter().map(f).collect());
    println!("\nWhere the boot goes ({runs} runs each, medians, ms; `initcall_debug`, the kernel log read after init)");
    println!("| step | {} | {} |", ENGINES[0], ENGINES[1]);
    println!("|---|--:|--:|");
    let rows: [Row; 5] = [
        ("spawn to the kernel's clock (VMM set-up, kernel load and decompression, early boot)", |p| {
            p.wall - p.at_init_line
        }),
        ("kernel clock to `Run /init` (initcalls)", |p| p.run_init),
        ("  of which unpacking the initramfs (runs beside other initcalls)", |p| p.unpack),
        ("`Run /init` to init's first line (den-agent: mounts, module loads)", |p| p.at_init_line - p.run_init),
        ("spawn to init's first line", |p| p.wall),
    ];
    for (name, f) in rows {
        println!("| {name} | {:.0} | {:.0} |", m(0, &f), m(1, &f));
    }
    // The slow initcalls: by the larger of the two medians.
    let names: std::collections::BTreeSet<&String> =
        results.iter().flatten().flat_map(|p| p.initcalls.keys()).collect();
    let mut calls: Vec<(&String, f64, f64)> = names
        .into_iter()
        .map(|n| {
            let ms = |k: usize| m(k, &|p| p.initcalls.get(n).copied().unwrap_or(0.0));
            (n, ms(0), ms(1))
        })
        .collect();
    calls.sort_by(|a, b| b.1.max(b.2).total_cmp(&a.1.max(a.2)));
    println!("\n| initcall (the 20 slowest) | {} | {} |", ENGINES[0], ENGINES[1]);
    println!("|---|--:|--:|");
    for (name, v, q) in calls.into_iter().take(20) {
        println!("| `{name}` | {v:.1} | {q:.1} |");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_reads_the_steps_and_sums_an_initcall_by_name() {
        let text = "ms=5000\nLAB-BENCH-INIT 4.25\n\
                    PROF [    0.500000] Trying to unpack rootfs image as initramfs...\n\
                    PROF [    1.000000] initcall cmos_init+0x0/0x80 returned 0 after 1500 usecs\n\
                    PROF [    1.200000] initcall cmos_init+0x0/0x80 returned 0 after 500 usecs\n\
                    PROF [    1.750000] Freeing initrd memory: 2048K\n\
                    PROF [    4.000000] Run /init as init process\n";
        let p = parse(text).unwrap();
        assert_eq!((p.wall, p.at_init_line, p.run_init, p.unpack), (5000.0, 4250.0, 4000.0, 1250.0));
        assert_eq!(p.initcalls.get("cmos_init"), Some(&2.0));
        assert!(parse("no numbers here").is_none());
    }
}
