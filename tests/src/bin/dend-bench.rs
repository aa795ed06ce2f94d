//! dend numbers, printed as a table (run by `bench/dend-bench.sh`): API list latency with 1,000
//! VM records, dend's resident memory idle and after that load, and create-to-agent-ready time
//! of a VM from the `base` image (QEMU; TCG on hosts whose /dev/kvm cannot run Linux).

// A benchmark's setup may panic: a step that cannot be taken ends the run with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_images::SilentProgress;
use den_tests::dend::Dend;
use den_tests::{images, lab};
use serde_json::json;
use std::time::{Duration, Instant};

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

fn main() {
    let dend = std::env::args().nth(1).expect("usage: dend-bench <dend binary>");
    let store = images::shared_store();
    images::build_spec_text(&store, lab::OUTER_SPEC, "lab outer", &SilentProgress).expect("lab-outer image");
    images::build_builtin(&store, "base");
    images::build_builtin(&store, "dev");
    let d = Dend::start(std::path::Path::new(&dend));
    let pid = d.pid().expect("dend runs");
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_mib(pid);

    // 1,000 records (an image without a root disk: nothing to copy, nothing boots).
    let t = Instant::now();
    std::thread::scope(|s| {
        for w in 0..10 {
            let d = &d;
            s.spawn(move || {
                for i in 0..100 {
                    let body = json!({"name": format!("b{w}-{i}"), "image": "lab-outer", "memory_mib": 128});
                    let (st, v) = d.api("POST", "/api/v1/vms", body.to_string().as_bytes());
                    assert_eq!(st, 202, "{v}");
                }
            });
        }
    });
    let create_secs = t.elapsed().as_secs_f64();
    let mut lat = Vec::new();
    let mut reply_bytes = 0;
    for _ in 0..200 {
        // Request to last byte of the reply; the client's own JSON parsing is not dend's time.
        let t = Instant::now();
        let (st, raw) = d.api_bytes("GET", "/api/v1/vms", b"");
        lat.push(t.elapsed());
        reply_bytes = raw.len();
        let list: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
        assert!(st == 200 && list.as_array().map(Vec::len) == Some(1000));
    }
    lat.sort();
    let loaded = rss_mib(pid);

    // create to agent-ready under QEMU: the base microVM image and the dev image (systemd).
    let ready_secs = |name: &str, image: &str, memory: &str| {
        let t = Instant::now();
        let (code, _, err) = d.den(&[
            "vm",
            "create",
            name,
            "--image",
            image,
            "--engine",
            "qemu",
            "--memory",
            memory,
            "--no-network",
            "--start",
        ]);
        assert_eq!(code, 0, "{err}");
        while d.den(&["vm", "exec", name, "--", "true"]).0 != 0 {
            assert!(t.elapsed() < Duration::from_secs(300), "{name}: agent never answered");
            std::thread::sleep(Duration::from_millis(250));
        }
        let secs = t.elapsed().as_secs_f64();
        d.vm(name);
        let _ = d.den(&["vm", "stop", name]);
        secs
    };
    let ready = ready_secs("ready", "base", "512");
    let dev_ready = ready_secs("devready", "dev", "1024");

    println!("| dend | value | goal |");
    println!("|---|--:|---|");
    println!("| 1,000 VM records created through the API (10 clients), s | {create_secs:.2} | |");
    println!("| GET /api/v1/vms with 1,000 records, p50 ms | {:.2} | |", pct(&lat, 0.5));
    println!("| GET /api/v1/vms with 1,000 records, p99 ms | {:.2} | < 10 ms |", pct(&lat, 0.99));
    println!("| its reply, KiB | {:.0} | |", reply_bytes as f64 / 1024.0);
    println!("| dend RSS idle, MiB | {idle:.1} | < 30 MiB |");
    println!("| dend RSS after the load above, MiB | {loaded:.1} | |");
    println!("| base VM create + start to agent ready (QEMU TCG), s | {ready:.1} | |");
    println!("| dev VM (systemd) create + start to agent ready (QEMU TCG), s | {dev_ready:.1} | |");
}
