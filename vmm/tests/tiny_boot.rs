//! Tiny hand-assembled kernels through den-vmm's real Linux boot path (ELF loader, zero page,
//! e820, ACPI, long mode, in-kernel irqchip, virtio-mmio, ACPI power-off) on this machine's bare
//! `/dev/kvm`, which runs tiny guests even when it is PVM-backed and cannot run Linux.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_vmm::tiny_kernel::{self, BootReport, LOAD_ADDR};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

fn den_vmm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_den-vmm"));
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Runs `cmd` to its end, killing it after [`LIMIT`] so a broken guest fails the test instead of
/// hanging it (the outputs of these guests are far below a pipe's capacity).
fn run(cmd: &mut Command) -> Output {
    let mut child = cmd.spawn().expect("den-vmm starts");
    let t = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t.elapsed() > LIMIT {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("den-vmm ran over {LIMIT:?}; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().expect("output")
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p.to_string_lossy().into_owned()
}

/// Boots the report kernel and parses what it printed.
fn boot_report(dir: &Path, extra: &[&str]) -> (Output, BootReport) {
    let kernel = write(dir, "kernel.elf", &tiny_kernel::report_kernel());
    let console = dir.join("console.txt");
    let out =
        run(den_vmm().args(["boot", "--tiny-test-guest", "--kernel", &kernel, "--console"]).arg(&console).args(extra));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let text = std::fs::read_to_string(&console).unwrap_or_default();
    let report = BootReport::parse(&text).unwrap_or_else(|e| panic!("{e}\nstderr:\n{stderr}"));
    (out, report)
}

#[test]
fn the_report_kernel_sees_everything_den_vmm_prepared_and_powers_off() {
    let dir = tempfile::tempdir().unwrap();
    let initrd: Vec<u8> = (0..12_345u32).map(|i| (i * 7) as u8).collect();
    let initrd_path = write(dir.path(), "initrd.img", &initrd);
    let cmdline = "console=ttyS0 den.test=tiny-boot quiet";
    let mib = 128u64;
    let (out, r) =
        boot_report(dir.path(), &["--initrd", &initrd_path, "--cmdline", cmdline, "--memory-mib", &mib.to_string()]);

    assert_eq!(r.cmdline, cmdline);
    assert_eq!(r.ramdisk_size, initrd.len() as u64);
    let kernel_end = LOAD_ADDR + 4096;
    assert!(r.ramdisk_image % 4096 == 0 && r.ramdisk_image >= kernel_end, "{r:?}");
    assert!(r.ramdisk_image + r.ramdisk_size <= mib << 20, "{r:?}");

    assert_eq!(r.e820_entries, 3, "{r:?}");
    let e820 = r.valid_e820();
    let ram: u64 = e820.iter().filter(|e| e.2 == 1).map(|e| e.1).sum();
    let reserved: u64 = e820.iter().filter(|e| e.2 == 2).map(|e| e.1).sum();
    assert_eq!(ram + reserved, mib << 20, "the map covers all RAM: {e820:x?}");
    assert_eq!(e820[0].0, 0);
    for w in e820.windows(2) {
        assert_eq!(w[0].0 + w[0].1, w[1].0, "contiguous: {e820:x?}");
    }
    assert!(e820.iter().any(|e| e.2 == 1 && e.0 <= LOAD_ADDR && LOAD_ADDR < e.0 + e.1), "kernel in RAM");

    assert_eq!(r.rsdp_addr, den_vmm::layout::RSDP);
    assert_eq!(r.rsdp_signature, "RSD PTR ");
    assert_eq!(r.virtio_magic, 0x7472_6976, "virtio-mmio magic \"virt\"");
    assert_eq!(r.virtio_id, 4, "the default device is virtio-rng");

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("guest ended: PowerOff"), "{stderr}");
    let first = format!("den-vmm: guest milestones: {:#04x}@", tiny_kernel::FIRST_MILESTONE);
    assert!(stderr.lines().any(|l| l.starts_with(&first) && l.ends_with("ms")), "{stderr}");
}

#[test]
fn without_virtio_devices_the_mmio_window_reads_as_all_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (_, r) = boot_report(dir.path(), &["--no-rng"]);
    assert_eq!((r.virtio_magic, r.virtio_id), (0xffff_ffff, 0xffff_ffff));
    assert_eq!((r.ramdisk_image, r.ramdisk_size), (0, 0), "no initramfs given");
    assert_eq!(r.cmdline, "console=ttyS0", "the default command line");
}

#[test]
fn a_halted_tiny_kernel_is_stopped_cleanly_by_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = write(dir.path(), "halt.elf", &tiny_kernel::halt_kernel());
    let mut child = den_vmm()
        .args(["boot", "--tiny-test-guest", "--kernel", &kernel, "--console", "stdio", "--memory-mib", "64"])
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(LIMIT);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(line.as_deref(), Ok("den-tiny halt"));
    let out = run_child(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("guest ended: Stopped") && stderr.contains("guest milestones: 0x01@"), "{stderr}");
}

fn run_child(mut child: std::process::Child) -> Output {
    let t = Instant::now();
    while child.try_wait().expect("wait").is_none() && t.elapsed() < LIMIT {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    child.wait_with_output().expect("output")
}

#[test]
fn a_real_kernel_boot_is_refused_on_a_pvm_host_in_one_line() {
    if !Path::new("/sys/module/kvm_pvm").exists() {
        eprintln!("skipped: this host's /dev/kvm is not PVM-backed (no /sys/module/kvm_pvm)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = write(dir.path(), "kernel.elf", &tiny_kernel::report_kernel());
    let out = run(den_vmm().args(["boot", "--kernel", &kernel, "--console", "none"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(stderr.trim_end(), den_vmm::PVM_REFUSAL);
    assert!(out.stdout.is_empty());
}

#[test]
fn memory_above_the_mmio_hole_is_mapped_at_4_gib() {
    let dir = tempfile::tempdir().unwrap();
    // 4 GiB of guest RAM: 3.25 GiB below the MMIO hole, the rest from 4 GiB up (mapped lazily,
    // so the test touches only a few pages).
    let (_, r) = boot_report(dir.path(), &["--memory-mib", "4096"]);
    let e820 = r.valid_e820();
    let hole = den_vmm::layout::MMIO_HOLE;
    let high = den_vmm::layout::FOUR_GIB;
    assert_eq!(r.e820_entries, 4, "{e820:x?}");
    assert!(e820.iter().any(|e| e.2 == 1 && e.0 + e.1 == hole), "low RAM ends at the hole: {e820:x?}");
    assert!(e820.contains(&(high, (4u64 << 30) - hole, 1)), "the rest above 4 GiB: {e820:x?}");
}

#[test]
fn a_json_configuration_boots_like_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = write(dir.path(), "kernel.elf", &tiny_kernel::report_kernel());
    let console = dir.path().join("console.txt");
    let cfg = serde_json::json!({
        "kernel": kernel,
        "cmdline": "console=ttyS0 from=json",
        "memory_mib": 64,
        "console": {"file": console},
    });
    let path = write(dir.path(), "vm.json", cfg.to_string().as_bytes());
    let out = run(den_vmm().args(["boot", "--tiny-test-guest", "--config", &path]));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let r = BootReport::parse(&std::fs::read_to_string(&console).unwrap()).unwrap();
    assert_eq!(r.cmdline, "console=ttyS0 from=json");

    // A configuration with a mistake is refused with the field named, exit code 2.
    let bad = write(dir.path(), "bad.json", br#"{"kernel": "/nonexistent", "cpus": 2}"#);
    let out = run(den_vmm().args(["boot", "--tiny-test-guest", "--config", &bad]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kernel: /nonexistent is not a file"));
    let typo = write(dir.path(), "typo.json", br#"{"kernel": "k", "memory": 64}"#);
    let out = run(den_vmm().args(["boot", "--tiny-test-guest", "--config", &typo]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `memory`"));
}
