//! den-vmm numbers on this machine's bare `/dev/kvm`, with the tiny hand-assembled kernels of
//! `den_vmm::tiny_kernel` booted through the full Linux boot path: start to first guest
//! instruction, memory overhead of a resting VM, 50 VMs at once, and QEMU's microvm with the same
//! kernel for comparison. Prints tables; run by `bench/vmm-bench.sh`.
//!
//! Usage: `vmm-bench [DEN_VMM] [RUNS]` (default `target/release/den-vmm`, 20 runs).

// A benchmark's setup may panic: a step that cannot be taken ends the run with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_vmm::tiny_kernel::{self, BootReport};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(30);
const GUEST_MIB: u64 = 256;
const PARALLEL: usize = 50;

/// Spawns `cmd` with piped output; its stdout lines arrive with their arrival time.
fn spawn_lines(cmd: &mut Command) -> Result<(Child, Receiver<(Instant, String)>), String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    Ok((child, rx))
}

/// Kills `child` (ours, not yet reaped) and returns the end of its stderr.
fn kill(mut child: Child) -> String {
    let _ = child.kill();
    let out = child.wait_with_output().map(|o| o.stderr).unwrap_or_default();
    String::from_utf8_lossy(&out).lines().last().unwrap_or("").to_string()
}

fn den_vmm(vmm: &Path, kernel: &Path, console: &str) -> Command {
    let mut c = Command::new(vmm);
    c.args(["boot", "--tiny-test-guest", "--memory-mib", &GUEST_MIB.to_string(), "--console", console]);
    c.arg("--kernel").arg(kernel);
    c
}

/// The first-instruction milestone from den-vmm's stderr, in ms since its process start.
fn milestone_ms(stderr: &str) -> Option<f64> {
    let tag = format!("guest milestones: {:#04x}@", tiny_kernel::FIRST_MILESTONE);
    let rest = &stderr[stderr.find(&tag)? + tag.len()..];
    rest[..rest.find("ms")?].parse().ok()
}

/// den-vmm started by den-jailer (next to `vmm`) for VM `id`, if this host can jail (root, a
/// cgroup memory controller): the same boot as [`den_vmm`], its files handed over.
fn jailed(vmm: &Path, kernel: &Path, id: &str, dir: &Path) -> Option<Command> {
    let jailer = vmm.with_file_name("den-jailer");
    let cgroups = den_jailer::cgroup::can_limit_memory(Path::new("/sys/fs/cgroup"));
    if !jailer.is_file() || !nix::unistd::geteuid().is_root() || !cgroups {
        return None;
    }
    let kind = den_kvm_probe::kvm_kind(Path::new("/sys"), Path::new("/dev/kvm")).name().ok()?;
    let mut c = Command::new(jailer);
    let vmm = std::path::absolute(vmm).ok()?;
    c.args(["--id", id, "--uid", "2000099999", "--gid", "2000099999", "--exec"]).arg(vmm);
    c.arg("--root").arg(dir.join(format!("{id}.jail"))).args(["--memory-mib", "512", "--fd", "kvm:/dev/kvm"]);
    c.arg("--fd").arg(format!("ro:{}", kernel.display())).arg("--");
    c.args(["boot", "--tiny-test-guest", "--kvm", "fd:3", "--kvm-kind", kind, "--kernel", "fd:4"]);
    c.args(["--memory-mib", &GUEST_MIB.to_string(), "--console", "stdio"]);
    Some(c)
}

/// Spawn to first console line of a jailed boot, in ms; removes its cgroup afterwards.
fn jailed_once(vmm: &Path, kernel: &Path, dir: &Path, i: usize) -> Option<Result<f64, String>> {
    let id = format!("vmm-bench-{i}");
    let mut cmd = jailed(vmm, kernel, &id, dir)?;
    let t0 = Instant::now();
    let run = spawn_lines(&mut cmd).and_then(|(child, lines)| {
        let pid = child.id();
        let first = lines.recv_timeout(TIMEOUT).map(|(t, _)| t - t0);
        while lines.recv_timeout(TIMEOUT).is_ok() {}
        let out = child.wait_with_output().map_err(|e| format!("wait: {e}"))?;
        let _ = den_jailer::cgroup::remove(Path::new("/sys/fs/cgroup"), &den_jailer::cgroup::group_name(&id, pid));
        if !out.status.success() {
            return Err(format!("jailed den-vmm failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)));
        }
        Ok(first.map_err(|_| "no console output".to_string())?.as_secs_f64() * 1e3)
    });
    Some(run)
}

/// One report-kernel boot: (first-instruction milestone ms, spawn to first console line ms).
fn boot_once(vmm: &Path, kernel: &Path) -> Result<(f64, f64), String> {
    let t0 = Instant::now();
    let (child, lines) = spawn_lines(&mut den_vmm(vmm, kernel, "stdio"))?;
    let mut console = String::new();
    let mut first = None;
    while let Ok((t, line)) = lines.recv_timeout(TIMEOUT) {
        first.get_or_insert(t - t0);
        console.push_str(&line);
        console.push('\n');
    }
    let out = child.wait_with_output().map_err(|e| format!("wait: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("den-vmm failed ({}): {stderr}", out.status));
    }
    BootReport::parse(&console)?;
    let first = first.ok_or("no console output")?;
    Ok((milestone_ms(&stderr).ok_or_else(|| format!("no milestone: {stderr}"))?, first.as_secs_f64() * 1e3))
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(((s.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN)
}

/// (RSS, anonymous RSS, file RSS, RSS of the guest RAM mapping) in KiB, from /proc.
fn memory_kib(pid: u32, guest_bytes: u64) -> Option<[u64; 4]> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let l = status.lines().find(|l| l.starts_with(name))?;
        l.split_whitespace().nth(1)?.parse().ok()
    };
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut in_guest = false;
    let mut guest = 0;
    for l in smaps.lines() {
        let range = l.split_whitespace().next().and_then(|r| r.split_once('-'));
        if let Some((a, b)) = range.filter(|_| !l.starts_with(char::is_uppercase)) {
            let (a, b) = (u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?);
            in_guest = b - a == guest_bytes;
        } else if in_guest && l.starts_with("Rss:") {
            guest += l.split_whitespace().nth(1)?.parse::<u64>().ok()?;
        }
    }
    Some([field("VmRSS:")?, field("RssAnon:")?, field("RssFile:")?, guest])
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// A halted 256 MiB VM: its memory in KiB and the CPU it used in 500 ms (ticks), then SIGTERM.
fn resting_vm(vmm: &Path, kernel: &Path) -> Result<([u64; 4], u64), String> {
    let (child, lines) = spawn_lines(&mut den_vmm(vmm, kernel, "stdio"))?;
    match lines.recv_timeout(TIMEOUT) {
        Ok((_, l)) if l == "den-tiny halt" => {}
        other => return Err(format!("no halt line ({other:?}): {}", kill(child))),
    }
    std::thread::sleep(Duration::from_millis(200));
    let pid = child.id();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(500));
    let cpu = cpu_ticks(pid).zip(before).map(|(a, b)| a - b).unwrap_or(u64::MAX);
    let mem = memory_kib(pid, GUEST_MIB << 20);
    // SAFETY: kill(2) on our own, not yet reaped, child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let out = child.wait_with_output().map_err(|e| format!("wait: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stderr.contains("Stopped") {
        return Err(format!("SIGTERM did not stop den-vmm cleanly ({}): {stderr}", out.status));
    }
    Ok((mem.ok_or("cannot read /proc")?, cpu))
}

/// Starts `PARALLEL` VMs at once: (wall s until all reported, their first-instruction ms).
fn many(vmm: &Path, kernel: &Path, dir: &Path) -> Result<(f64, Vec<f64>), String> {
    let t0 = Instant::now();
    let mut children = Vec::new();
    for i in 0..PARALLEL {
        let console = dir.join(format!("console-{i}.txt"));
        let mut cmd = den_vmm(vmm, kernel, &console.to_string_lossy());
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn();
        children.push((child.map_err(|e| format!("spawn: {e}"))?, console));
    }
    let mut firsts = Vec::new();
    for (child, console) in children {
        let out = child.wait_with_output().map_err(|e| format!("wait: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        BootReport::parse(&std::fs::read_to_string(&console).unwrap_or_default())?;
        if !out.status.success() {
            return Err(format!("a VM failed ({}): {stderr}", out.status));
        }
        firsts.push(milestone_ms(&stderr).ok_or("no milestone")?);
    }
    Ok((t0.elapsed().as_secs_f64(), firsts))
}

/// QEMU microvm with KVM booting the same kernel (PVH entry): spawn to first console line, ms.
fn qemu_once(kernel: &Path) -> Result<f64, String> {
    let t0 = Instant::now();
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-M", "microvm,x-option-roms=off,rtc=off,isa-serial=on", "-accel", "kvm", "-m", "256"]);
    cmd.args(["-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot", "-kernel"]);
    let (child, lines) = spawn_lines(cmd.arg(kernel))?;
    let first = lines.recv_timeout(Duration::from_secs(10));
    let why = kill(child);
    match first {
        Ok((t, l)) if l.starts_with(tiny_kernel::BANNER) => Ok((t - t0).as_secs_f64() * 1e3),
        Ok((_, l)) => Err(format!("unexpected output `{l}`")),
        Err(_) => Err(if why.is_empty() { "no guest output within 10 s".into() } else { why }),
    }
}

fn row(name: &str, v: &[f64], goal: &str) {
    println!("| {name:<56} | {:>7.2} | {:>7.2} | {goal:<16} |", pct(v, 0.5), pct(v, 0.9));
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn fail(what: &str, e: String) -> ! {
    eprintln!("vmm-bench: {what}: {e}");
    std::process::exit(1)
}

fn start_table(vmm: &Path, kernel: &Path, runs: usize, dir: &Path) {
    let (mut first_pio, mut first_line, mut jailed_line) = (vec![], vec![], vec![]);
    for i in 0..runs {
        // Alternate, so both see the same conditions.
        let (m, l) = boot_once(vmm, kernel).unwrap_or_else(|e| fail("boot", e));
        first_pio.push(m);
        first_line.push(l);
        if let Some(j) = jailed_once(vmm, kernel, dir, i) {
            jailed_line.push(j.unwrap_or_else(|e| fail("jailed boot", e)));
        }
    }
    let qemu: Result<Vec<f64>, String> = (0..runs).map(|_| qemu_once(kernel)).collect();
    println!(
        "| {:<56} |     p50 |     p90 | goal             |",
        format!("start to first guest instruction, ms ({runs} runs)")
    );
    println!("|----------------------------------------------------------|--------:|--------:|------------------|");
    let goal = format!("<= 10 ms: {}", met(pct(&first_pio, 0.5) <= 10.0));
    row("den-vmm: process start -> first guest PIO (debug port)", &first_pio, &goal);
    row("den-vmm: spawn -> first console line (launcher clock)", &first_line, "");
    if jailed_line.is_empty() {
        println!("| {:<56} | {:>7} | {:>7} | needs root, den-jailer and cgroups |", "den-vmm jailed", "n/a", "n/a");
    } else {
        let cost = pct(&jailed_line, 0.5) - pct(&first_line, 0.5);
        row(
            "den-vmm jailed (den-jailer): spawn -> first console line",
            &jailed_line,
            &format!("jail costs {cost:+.2} ms"),
        );
    }
    let name = "qemu microvm -accel kvm: spawn -> first console line";
    match &qemu {
        Ok(v) => row(name, v, ""),
        Err(e) => println!("| {name:<56} | {:>7} | {:>7} | {e} |", "n/a", "n/a"),
    }
}

fn memory_table(vmm: &Path, kernel: &Path) {
    let mut rest: Vec<_> = (0..3).map(|_| resting_vm(vmm, kernel).unwrap_or_else(|e| fail("resting VM", e))).collect();
    rest.sort_by_key(|([rss, .., guest], _)| rss.saturating_sub(*guest));
    let ([rss, anon, file, guest], cpu) = rest[1];
    let mib = |kib: u64| kib as f64 / 1024.0;
    let overhead = mib(rss.saturating_sub(guest));
    let line = |name: &str, v: String, goal: &str| println!("| {name:<56} | {v:>7} | {goal:<16} |");
    println!(
        "| {:<56} |     MiB | goal             |",
        format!("resting VM ({GUEST_MIB} MiB guest in hlt), median of 3")
    );
    println!("|----------------------------------------------------------|--------:|------------------|");
    line("den-vmm RSS", format!("{:.2}", mib(rss)), "");
    line("guest RAM touched (RSS of the guest mapping)", format!("{:.2}", mib(guest)), "");
    line(
        "VMM overhead (RSS - guest RAM touched)",
        format!("{overhead:.2}"),
        &format!("<= 5 MiB: {}", met(overhead <= 5.0)),
    );
    line("  anonymous, not guest RAM", format!("{:.2}", mib(anon.saturating_sub(guest))), "");
    line("  file-backed (binary, libraries)", format!("{:.2}", mib(file)), "");
    line("CPU used while halted, over 500 ms (clock ticks)", cpu.to_string(), "");
}

fn density_table(vmm: &Path, kernel: &Path, dir: &Path) {
    let (wall, firsts) = many(vmm, kernel, dir).unwrap_or_else(|e| fail("parallel boots", e));
    let line = |name: &str, v: String| println!("| {name:<56} | {v:>7} |");
    line(&format!("{PARALLEL} VMs started at once"), "value".into());
    println!("|----------------------------------------------------------|--------:|");
    line(&format!("wall time until all {PARALLEL} reported and powered off, s"), format!("{wall:.3}"));
    line("VMs per second", format!("{:.1}", PARALLEL as f64 / wall));
    line("first guest instruction under this load, p50 ms", format!("{:.1}", pct(&firsts, 0.5)));
    line("first guest instruction under this load, p90 ms", format!("{:.1}", pct(&firsts, 0.9)));
}

fn main() {
    let mut args = std::env::args().skip(1);
    let vmm = PathBuf::from(args.next().unwrap_or_else(|| "target/release/den-vmm".into()));
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().expect("temp dir");
    let (report, halt) = (dir.path().join("report.elf"), dir.path().join("halt.elf"));
    std::fs::write(&report, tiny_kernel::report_kernel()).expect("write kernel");
    std::fs::write(&halt, tiny_kernel::halt_kernel()).expect("write kernel");
    println!("den-vmm: {}; {GUEST_MIB} MiB tiny guests on /dev/kvm", vmm.display());
    println!();
    start_table(&vmm, &report, runs, dir.path());
    println!();
    memory_table(&vmm, &halt);
    println!();
    density_table(&vmm, &report, dir.path());
}
