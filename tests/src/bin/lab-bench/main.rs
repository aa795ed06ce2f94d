//! den-vmm against QEMU (`-M microvm -accel kvm`) in the KVM lab, side by side in one run: the same
//! inner kernel, initramfs (den-agent as init) and command line, 1 vCPU, 256 MiB; time from the
//! engine's spawn to the guest init's first console line (den-vmm with the ELF vmlinux it boots by
//! default, and with the bzImage), measured the same way for both (the outer guest's /proc/uptime,
//! 10 ms resolution), plus den-vmm's own debug-port milestone for init (code 0x10, timed inside
//! the VMM). Then where that time goes (`profile.rs`), shared folders (virtio-fs) on both engines
//! with the same virtiofsd (`fs.rs`), disks on den-vmm with and without its I/O workers and on
//! QEMU (`block.rs`), and `dev` through dend on both (`dev.rs`). A round that fails under emulated
//! SVM's flakes runs again on a fresh lab (at most [`LAB_ATTEMPTS`] labs, each printed). Prints
//! tables; run by `bench/lab-bench.sh [RUNS] [TABLES]`.

// A benchmark's setup may panic: a step that cannot be taken ends the run with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod block;
mod dev;
mod fs;
mod profile;

use den_tests::lab::{Lab, LAB_QEMU, VMM};
use den_tests::lab_dev::DevLab;
use std::time::Duration;

/// The scenario: print the marker and power off.
const SCENARIO: &str = "echo LAB-BENCH-INIT\nkill -USR2 1\n";
const CMDLINE: &str = "console=ttyS0 quiet panic=-1";
/// Fresh labs the whole bench may use: emulated SVM fails now and then (an inner boot that
/// triple-faults at once, an outer kernel that locks up), and a bench runs many boots.
const LAB_ATTEMPTS: u32 = 8;
/// The longest one measured boot may take before the lab counts as wedged.
pub(crate) const RUN_LIMIT: Duration = Duration::from_secs(120);

/// QEMU as the lab runs it (its own loader and libraries), 1 vCPU, 256 MiB; the machine, kernel
/// and devices follow.
fn qemu() -> String {
    format!("{LAB_QEMU} -accel kvm -cpu host -m 256 -smp 1 -nographic -nodefaults -no-reboot -serial stdio")
}

/// The command that boots `engine` (`den-vmm`, `den-vmm-bzimage` or `qemu`) with the base
/// kernel, the initramfs `/lab/<image>.img` and `cmdline`, its console on stdout.
pub(crate) fn boot_command(engine: &str, image: &str, cmdline: &str) -> String {
    match engine {
        "den-vmm" | "den-vmm-bzimage" => format!(
            "{VMM} boot --kernel /lab/base/{} --initrd /lab/{image}.img --memory-mib 256 --no-rng \
             --cmdline '{cmdline}' --console stdio",
            if engine == "den-vmm" { "vmlinux" } else { "kernel" }
        ),
        _ => format!(
            "{} -M microvm,x-option-roms=off,rtc=off,isa-serial=on \
             -kernel /lab/base/kernel -initrd /lab/{image}.img -append '{cmdline}'",
            qemu()
        ),
    }
}

/// A lab script that runs the boot `cmd` (console to `/lab/b.log`, stderr to `/lab/b.err`),
/// prints `ms=` from the spawn to the console's `LAB-BENCH-INIT` line (the outer guest's clock,
/// 10 ms), waits for the guest to end, then runs `after`.
pub(crate) fn timed_boot(cmd: &str, after: &str) -> String {
    format!(
        "up() {{ cut -d' ' -f1 /proc/uptime | tr -d .; }}\n\
         rm -f /lab/b.log; t0=$(up)\n\
         {cmd} </dev/null >/lab/b.log 2>/lab/b.err & pid=$!\n\
         while ! grep -q LAB-BENCH-INIT /lab/b.log 2>/dev/null; do\n\
           kill -0 $pid 2>/dev/null || grep -q LAB-BENCH-INIT /lab/b.log || {{ tail -c 3000 /lab/b.log >&2; cat /lab/b.err >&2; exit 1; }}\n\
           usleep 5000; done\n\
         t1=$(up); wait $pid\n\
         echo ms=$(( (t1 - t0) * 10 ))\n\
         {after}\n"
    )
}

/// One timed boot; returns (ms to the marker, den-vmm's init milestone in ms if any), or `Err`
/// when the outer guest died or wedged, or the inner boot failed.
async fn run(lab: &Lab, engine: &str) -> Result<(f64, Option<f64>), String> {
    let cmd = boot_command(engine, "bench", CMDLINE);
    let script = timed_boot(&cmd, "grep -o 'milestones: 0x10@[0-9.]*' /lab/b.err || true");
    let out = lab.try_sh(&script, RUN_LIMIT).await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // Emulated SVM is not flawless: now and then an inner boot dies at once (a triple fault
    // with no exit at all). Such a round is run again on a fresh lab, counted and printed.
    if out.code != Some(0) {
        return Err(format!("{engine} failed: {}", lab.describe(&out)));
    }
    let ms = text.lines().find_map(|l| l.strip_prefix("ms=")?.parse().ok()).unwrap_or(f64::NAN);
    let milestone = text.lines().find_map(|l| l.split('@').nth(1)?.parse().ok());
    Ok((ms, milestone))
}

/// Every round's results so far (a fresh lab after a wedged one goes on from there).
#[derive(Default)]
struct Results {
    vmm: Vec<f64>,
    bz: Vec<f64>,
    qemu: Vec<f64>,
    milestones: Vec<f64>,
    fs_vmm: Vec<fs::Times>,
    fs_qemu: Vec<fs::Times>,
    /// By engine, in [`block::ENGINES`] order.
    block: [Vec<block::Times>; 3],
    /// ms from `den vm start` to the agent, by engine, in [`dev::ENGINES`] order.
    dev: [Vec<f64>; 2],
    /// Profiled boots, by engine, in [`profile::ENGINES`] order.
    profile: [Vec<profile::Profile>; 2],
}

/// Puts what the rounds need into a fresh lab.
async fn prepare(lab: &Lab, dev: Option<&DevLab>) {
    if let Some(dev) = dev {
        dev.prepare(lab).await;
    }
    lab.put_scenario("bench", SCENARIO).await;
    lab.put_scenario("profile", profile::SCENARIO).await;
    lab.put_qemu().await;
    lab.put_scenario("fsbench", fs::SCENARIO).await;
    lab.put_virtiofsd().await;
    lab.put_scenario("blkbench", block::SCENARIO).await;
}

/// Runs the rounds still missing; `Err` when the outer guest died or wedged.
async fn rounds(lab: &Lab, runs: usize, phases: &str, r: &mut Results) -> Result<(), String> {
    while phases.contains("boot") && r.vmm.len() < runs {
        // Alternate, so every engine sees the same conditions; a round counts when all ran.
        let (ms, m) = run(lab, "den-vmm").await?;
        let bz = run(lab, "den-vmm-bzimage").await?.0;
        let qemu = run(lab, "qemu").await?.0;
        eprintln!("run {}: den-vmm {ms:.0} ms, den-vmm bzImage {bz:.0} ms, qemu {qemu:.0} ms", r.vmm.len() + 1);
        r.vmm.push(ms);
        r.milestones.extend(m);
        r.bz.push(bz);
        r.qemu.push(qemu);
    }
    while phases.contains("profile") && r.profile[0].len() < runs {
        let vmm = profile::run(lab, profile::ENGINES[0]).await?;
        let qemu = profile::run(lab, profile::ENGINES[1]).await?;
        eprintln!("profile run {}: den-vmm {vmm:?}, qemu {qemu:?}", r.profile[0].len() + 1);
        r.profile[0].push(vmm);
        r.profile[1].push(qemu);
    }
    while phases.contains("fs") && r.fs_vmm.len() < runs {
        let d = fs::run(lab, "den-vmm", &qemu()).await?;
        let q = fs::run(lab, "qemu", &qemu()).await?;
        let n = r.fs_vmm.len() + 1;
        eprintln!("fs run {n}: den-vmm {d:?} ms, qemu {q:?} ms (write, read, metadata)");
        r.fs_vmm.push(d);
        r.fs_qemu.push(q);
    }
    while phases.contains("block") && r.block[0].len() < runs {
        let mut round = vec![];
        for engine in block::ENGINES {
            round.push(block::run(lab, engine, &qemu()).await?);
        }
        eprintln!("block run {}: {round:?} ms (1M write, 1M read, 4k write, 4k read)", r.block[0].len() + 1);
        for (xs, t) in r.block.iter_mut().zip(round) {
            xs.push(t);
        }
    }
    while phases.contains("dev") && r.dev[0].len() < runs {
        let vmm = dev::run(lab, dev::ENGINES[0]).await?;
        let qemu = dev::run(lab, dev::ENGINES[1]).await?;
        eprintln!("dev run {}: den-vmm {vmm:.0} ms, qemu {qemu:.0} ms (den vm start to agent)", r.dev[0].len() + 1);
        r.dev[0].push(vmm);
        r.dev[1].push(qemu);
    }
    Ok(())
}

/// Runs `script` in the lab and reads the numbers on the line it printed starting with `key`
/// (a space after it); `Err` when the lab failed or the line is missing.
pub(crate) async fn guest_times(lab: &Lab, engine: &str, script: &str, key: &str) -> Result<Vec<f64>, String> {
    let out = lab.try_sh(script, RUN_LIMIT).await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let nums: Vec<f64> = text
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .map(|l| l.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    if nums.is_empty() {
        return Err(format!("{engine}: no {key} times: {}", lab.describe(&out)));
    }
    Ok(nums)
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    // Which tables: any of boot, profile, fs, block, dev (all by default).
    let phases = std::env::args().nth(2).unwrap_or_else(|| "boot,profile,fs,block,dev".into());
    // `dev` needs the bigger lab with the lab disk; the other tables run on it just as well.
    let dev_lab = phases.contains("dev").then(|| DevLab::new(&den_tests::images::shared_store()));
    let opts = dev_lab.as_ref().map(DevLab::options).unwrap_or_default();
    let mut r = Results::default();
    for attempt in 1..=LAB_ATTEMPTS {
        let lab = Lab::start_with(&opts).await;
        prepare(&lab, dev_lab.as_ref()).await;
        match rounds(&lab, runs, &phases, &mut r).await {
            Ok(()) => {
                eprintln!("lab: all rounds done on lab {attempt} of at most {LAB_ATTEMPTS}");
                break;
            }
            Err(e) if attempt < LAB_ATTEMPTS => {
                eprintln!(
                    "lab {attempt}: a round failed (a wedged outer guest or a failed inner boot); a fresh lab: {e}"
                )
            }
            Err(e) => panic!("lab: a round failed on all {LAB_ATTEMPTS} labs; the last: {e}"),
        }
    }
    let Results { vmm, bz, qemu, milestones, fs_vmm, fs_qemu, block, dev, profile } = r;
    if phases.contains("boot") {
        boots(runs, vmm, bz, qemu, milestones);
    }
    if phases.contains("profile") {
        profile::table(runs, &profile);
    }
    if phases.contains("fs") {
        shared_folders(runs, [("den-vmm", fs_vmm), ("qemu", fs_qemu)]);
    }
    if phases.contains("block") {
        disks(runs, &block);
    }
    if phases.contains("dev") {
        dev_boots(runs, &dev);
    }
}

/// The boot-to-init table.
fn boots(runs: usize, vmm: Vec<f64>, bz: Vec<f64>, qemu: Vec<f64>, milestones: Vec<f64>) {
    let (v, q) = (median(vmm.clone()), median(qemu.clone()));
    println!("KVM lab (QEMU TCG outer guest, kvm-amd), {runs} runs each, 1 vCPU, 256 MiB, same kernel/initramfs");
    println!("| spawn to guest init's first console line | median ms | min ms | max ms |");
    println!("|---|--:|--:|--:|");
    let rows = [
        ("den-vmm, ELF vmlinux (Den's default)", &vmm),
        ("den-vmm, bzImage", &bz),
        ("qemu -M microvm -accel kvm, bzImage", &qemu),
    ];
    for (name, xs) in rows {
        let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = xs.iter().copied().fold(0.0, f64::max);
        println!("| {name} | {:.0} | {min:.0} | {max:.0} |", median(xs.to_vec()));
    }
    println!(
        "| den-vmm (vmlinux) debug-port milestone 0x10 (init started), inside the VMM | {:.0} | | |",
        median(milestones)
    );
    println!("\nratio qemu / den-vmm: {:.2}x (den-vmm {:.0} ms faster)", q / v, q - v);
    println!("ratio den-vmm bzImage / vmlinux: {:.2}x", median(bz) / v);
}

/// The `dev` boot-to-agent table.
fn dev_boots(runs: usize, results: &[Vec<f64>; 2]) {
    println!("\n`dev` (systemd, den-agent as a service) through dend, 1 vCPU, 1 GiB, {runs} runs each");
    println!("| engine | den vm start to agent, median ms | min ms | max ms |");
    println!("|---|--:|--:|--:|");
    for (engine, xs) in dev::ENGINES.iter().zip(results) {
        let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = xs.iter().copied().fold(0.0, f64::max);
        println!("| {engine} | {:.0} | {min:.0} | {max:.0} |", median(xs.clone()));
    }
    let (v, q) = (median(results[0].clone()), median(results[1].clone()));
    println!("ratio qemu / den-vmm: {:.2}x (above 1: den-vmm faster)", q / v);
}

/// The virtio-blk table.
fn disks(runs: usize, results: &[Vec<block::Times>; 3]) {
    println!("\nDisk (virtio-blk on a raw file, the guest's O_DIRECT), {runs} runs each, medians");
    println!("| engine | write 1 MiB requests, MiB/s | read 1 MiB requests, MiB/s | 4 KiB writes, IOPS | 4 KiB reads, IOPS |");
    println!("|---|--:|--:|--:|--:|");
    let mut medians = vec![];
    for (engine, xs) in block::ENGINES.iter().zip(results) {
        let m: Vec<f64> = (0..4).map(|k| median(xs.iter().map(|t| t[k]).collect())).collect();
        println!(
            "| {engine} | {:.1} | {:.1} | {:.0} | {:.0} |",
            block::MIB * 1000.0 / m[0],
            block::MIB * 1000.0 / m[1],
            block::SMALL * 1000.0 / m[2],
            block::SMALL * 1000.0 / m[3]
        );
        medians.push(m);
    }
    let ratio = |a: usize, b: usize| -> String {
        (0..4).map(|k| format!("{:.2}x", medians[b][k] / medians[a][k])).collect::<Vec<_>>().join(", ")
    };
    println!("time ratio inline / workers (write, read, 4k write, 4k read): {}", ratio(0, 1));
    println!("time ratio qemu / den-vmm with workers: {} (above 1: den-vmm faster)", ratio(0, 2));
}

/// The virtio-fs table.
fn shared_folders(runs: usize, results: [(&str, Vec<fs::Times>); 2]) {
    println!("\nShared folder (virtio-fs, the same virtiofsd -o cache=auto), {runs} runs each, medians");
    println!("| engine | write {0:.0} MiB + fsync, MiB/s | read {0:.0} MiB cold, MiB/s | create+list+remove {1:.0} files, ms |", fs::MIB, fs::FILES);
    println!("|---|--:|--:|--:|");
    let mut medians = vec![];
    for (engine, xs) in &results {
        let m = |f: fn(&fs::Times) -> f64| median(xs.iter().map(f).collect());
        let (w, r, meta) = (m(|x| x.0), m(|x| x.1), m(|x| x.2));
        println!("| {engine} | {:.1} | {:.1} | {meta:.0} |", fs::MIB * 1000.0 / w, fs::MIB * 1000.0 / r);
        medians.push((w, r, meta));
    }
    if let [d, q] = medians[..] {
        println!(
            "ratio qemu / den-vmm time: write {:.2}x, read {:.2}x, metadata {:.2}x (above 1: den-vmm faster)",
            q.0 / d.0,
            q.1 / d.1,
            q.2 / d.2
        );
    }
}
