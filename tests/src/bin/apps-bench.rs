//! LPK app numbers, as a table (run by `bench/apps-bench.sh`):
//!
//! - package validation (`den_lpk::inspect`) of 50 MiB and 200 MiB packages: time and peak
//!   memory, each in a fresh child process, to show memory stays flat as packages grow;
//! - install-to-first-HTTP-200 of the v2 sample (two services from an embedded busybox image),
//!   through the real `den` CLI and dend's ingress;
//! - app restart (stop, then start until it answers);
//! - host memory per idle service: the resident memory of its QEMU and virtiofsd processes,
//!   next to what its guest uses, against the anchors' microVM figure (Firecracker: <= 5 MiB of
//!   VMM overhead per microVM).
//!
//! Usage: apps-bench <dend>; `apps-bench validate <file>` is the child mode.

// A benchmark's setup may panic: a step that cannot be taken ends the run with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_lpk::pack::{Item, Packer};
use den_tests::dend::Dend;
use den_tests::lpk::{two_v2, write, TWO};
use den_tests::netns::NetNs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn status_kib(pid: &str, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn validate_child(file: &str) {
    let t = Instant::now();
    let pkg = den_lpk::inspect(Path::new(file), &den_lpk::Options::default()).expect("a valid package");
    let secs = t.elapsed().as_secs_f64();
    println!("{secs} {} {}", status_kib("self", "VmHWM:"), pkg.unpacked);
}

/// A v2 package whose content holds `mib` MiB of incompressible data.
fn big_package(dir: &Path, mib: usize) -> std::path::PathBuf {
    let mut data = vec![0u8; mib << 20];
    let mut x = 0x9e3779b97f4a7c15u64;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut p = Packer::new();
    p.file("package.yml", "package: cloud.den.bench.big\nversion: 1.0.0\n");
    p.file("manifest.yml", "application:\n  subdomain: big\n  routes: [/=file:///lzcapp/pkg/content]\n");
    p.content(&[Item::File { name: "blob.bin".into(), data, mode: 0o644 }]).expect("content");
    write(&p, dir, &format!("big-{mib}.lpk"), false)
}

fn validate(dir: &Path, mib: usize) -> (f64, u64) {
    let file = big_package(dir, mib);
    let me = std::env::current_exe().expect("own path");
    let out = Command::new(me).arg("validate").arg(&file).output().expect("child runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let secs: f64 = it.next().and_then(|s| s.parse().ok()).expect("seconds");
    let kib: u64 = it.next().and_then(|s| s.parse().ok()).expect("peak memory");
    let _ = std::fs::remove_file(file);
    (secs, kib)
}

fn curl_code(ns: &NetNs, d: &Dend, bearer: &str) -> String {
    let addr = d.https_addr();
    let port = addr.rsplit(':').next().unwrap_or_default();
    let resolve = format!("two.box.test:{port}:127.0.0.1");
    let url = format!("https://two.box.test:{port}/api/");
    let out = ns
        .command("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            "--resolve",
            &resolve,
            "-H",
            bearer,
            &url,
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Resident KiB of every process whose command line names `needle`, split into guest RAM (the
/// shared memfd QEMU and virtiofsd both map, counted once) and everything else: (guest,
/// overhead, processes).
fn rss_of(needle: &str) -> (u64, u64, usize) {
    let (mut guest, mut other, mut n) = (0u64, 0u64, 0);
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmd).contains(needle) {
            continue;
        }
        n += 1;
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
        let (mut in_guest, mut this_guest) = (false, 0u64);
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                in_guest = line.contains("memfd:");
            } else if let Some(v) = line.strip_prefix("Rss:") {
                let kib: u64 = v.split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or(0);
                if in_guest {
                    this_guest += kib;
                } else {
                    other += kib;
                }
            }
        }
        guest = guest.max(this_guest);
    }
    (guest, other, n)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("validate") {
        validate_child(&args[2]);
        return;
    }
    let dend = std::path::PathBuf::from(args.get(1).expect("usage: apps-bench <dend>"));
    let work = tempfile::tempdir().expect("temp dir");

    let (s50, m50) = validate(work.path(), 50);
    let (s200, m200) = validate(work.path(), 200);

    let store = den_tests::images::shared_store();
    for image in ["base", "app"] {
        den_tests::images::build_builtin(&store, image);
    }
    let ns = NetNs::new("appbench");
    let config = "[docker]\nenabled = false\n[apps]\nbox_domain = \"box.test\"\n";
    let d = Dend::start_in_with_config(&dend, &ns, config);
    let (s, b) = d.api("POST", "/api/v1/users", br#"{"name":"bench","password":"bench bench 1","role":"viewer"}"#);
    assert_eq!(s, 201, "{b}");
    let (_, b) = d.api("POST", "/api/v1/tokens", br#"{"name":"bench","user":"bench"}"#);
    let bearer = format!("Authorization: Bearer {}", b["token"].as_str().expect("token"));
    let pkg = write(&two_v2("1.0.0", &[]).expect("sample"), work.path(), "two.lpk", false);

    let t = Instant::now();
    let (code, _, err) = d.den(&["app", "install", pkg.to_str().expect("path")]);
    assert_eq!(code, 0, "{err}");
    while curl_code(&ns, &d, &bearer) != "200" {
        assert!(t.elapsed() < Duration::from_secs(600), "the app never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    let install = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let (code, _, err) = d.den(&["app", "restart", TWO]);
    assert_eq!(code, 0, "{err}");
    while curl_code(&ns, &d, &bearer) != "200" {
        std::thread::sleep(Duration::from_millis(100));
    }
    let restart = t.elapsed().as_secs_f64();

    // Idle for a moment, then the host's processes of each service VM.
    std::thread::sleep(Duration::from_secs(10));
    let mut rows = vec![];
    for svc in ["backend", "web"] {
        let vm = d.vm(&format!("two-{svc}"));
        let id = vm["id"].as_str().expect("id").to_string();
        let (guest_kib, kib, procs) = rss_of(&format!("vms/{id}"));
        let meminfo = d.den(&["vm", "exec", &format!("two-{svc}"), "--", "cat", "/proc/meminfo"]).1;
        let field = |k: &str| -> u64 {
            meminfo
                .lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0)
        };
        let used = field("MemTotal:").saturating_sub(field("MemAvailable:"));
        rows.push((svc, guest_kib, kib, procs, used, vm["spec"]["memory_mib"].as_u64().unwrap_or(0)));
    }

    println!("| | value | note |");
    println!("|---|---|---|");
    println!(
        "| validate 50 MiB package | {s50:.2} s, peak {:.1} MiB | child process, whole inspect |",
        m50 as f64 / 1024.0
    );
    println!(
        "| validate 200 MiB package | {s200:.2} s, peak {:.1} MiB | memory ratio 200/50: {:.2} |",
        m200 as f64 / 1024.0,
        m200 as f64 / m50.max(1) as f64
    );
    println!("| install to first HTTP 200 (v2 sample, 2 services) | {install:.1} s | QEMU TCG, `den app install` to `/api/` 200 |");
    println!("| app restart to HTTP 200 | {restart:.1} s | stop both, start in order, health gate |");
    for (svc, guest_kib, kib, procs, used, mib) in rows {
        println!(
            "| host memory of idle service `{svc}`, outside guest RAM | {:.1} MiB ({procs} processes: QEMU, virtiofsd) | Firecracker anchor: <= 5 MiB VMM overhead (QEMU TCG here) |",
            kib as f64 / 1024.0
        );
        println!(
            "| guest RAM resident for `{svc}` | {:.1} MiB of {mib} MiB | the guest itself uses {:.1} MiB; the rest is its page cache and zeroed pages |",
            guest_kib as f64 / 1024.0,
            used as f64 / 1024.0
        );
    }
    let (code, _, err) = d.den(&["app", "uninstall", TWO]);
    assert_eq!(code, 0, "{err}");
}
