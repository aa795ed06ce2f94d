//! Replacing dend while VMs run. `den daemon update` installs another dend binary (the static
//! build) next to the running one, keeping the previous; dend is restarted (as its service
//! manager would) while the business OS and two VMs run. Every VM keeps its engine process and
//! does not reboot, the console output written while dend was away is all there, the agent
//! answers again after a reconnect, and the new dend commits the update.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::{alive, Dend};
use den_tests::netns::NetNs;
use serde_json::Value;
use std::time::{Duration, Instant};

const CONFIG: &str = "[docker]\nenabled = false\n\n[system]\ncpus = 1\nmemory_mib = 384\ndata_disk_mib = 128\n\
http_check = \"http://127.0.0.1:8080/healthz\"\ncheck_interval_secs = 2\n";

const VMS: [&str; 3] = ["system", "dev1", "dev2"];

/// A counter in the guest, once a second, on the serial console and in /run/tick.
const TICKER: &str = "setsid sh -c 'i=0; while :; do i=$((i+1)); echo \"tick-$i\" > /dev/ttyS0; echo $i > /run/tick; \
                      sleep 1; done' </dev/null >/dev/null 2>&1 & echo started";

fn uptime(d: &Dend, vm: &str) -> f64 {
    d.sh_until_ok(vm, "cut -d' ' -f1 /proc/uptime").trim().parse().unwrap_or(0.0)
}

fn console(d: &Dend, vm: &str) -> String {
    let (code, v) = d.api("GET", &format!("/api/v1/vms/{vm}/console"), b"");
    assert_eq!(code, 200, "{v}");
    v["output"].as_str().unwrap_or_default().to_string()
}

/// The tick numbers on a console, in order.
fn ticks(text: &str) -> Vec<u64> {
    text.split(|c: char| c.is_whitespace()).filter_map(|w| w.strip_prefix("tick-")?.parse().ok()).collect()
}

#[test]
fn replacing_and_restarting_dend_disturbs_no_vm() {
    let store = den_tests::images::shared_store();
    den_tests::images::build_builtin(&store, "system");
    den_tests::images::build_builtin(&store, "base");
    let new_dend = den_tests::images::dend_static_binary();
    let bin = tempfile::tempdir().unwrap();
    let installed = bin.path().join("dend");
    std::fs::copy(env!("CARGO_BIN_EXE_dend"), &installed).unwrap();
    let ns = NetNs::new("dendup");
    let mut d = Dend::start_in_with_config(&installed, &ns, CONFIG);
    for vm in ["dev1", "dev2"] {
        let (code, out, err) =
            d.den(&["vm", "create", vm, "--image", "base", "--memory", "256", "--engine", "qemu", "--start"]);
        assert_eq!(code, 0, "{out}{err}\n{}", d.log());
    }
    let mut before = vec![];
    for vm in VMS {
        assert!(d.sh_until_ok(vm, TICKER).contains("started"));
        before.push((d.vm(vm)["running"]["pid"].as_i64().unwrap_or(0), uptime(&d, vm)));
    }
    std::thread::sleep(Duration::from_secs(2));

    // Install the other binary, then restart dend the way a service manager does.
    let (code, out, err) = d.den(&[
        "daemon",
        "update",
        new_dend.to_str().unwrap(),
        "--install-dir",
        bin.path().to_str().unwrap(),
        "--no-restart",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(bin.path().join("dend.previous").is_file() && bin.path().join("dend.trial").is_file());
    assert_eq!(std::fs::read(&installed).unwrap(), std::fs::read(&new_dend).unwrap());
    d.terminate();
    std::thread::sleep(Duration::from_secs(3)); // the VMs run on without dend meanwhile
    let restarted = Instant::now();
    d.spawn();
    let mut reconnect = Duration::ZERO;
    for (vm, (pid, up)) in VMS.iter().zip(&before) {
        let (code, _, _) = d.den(&["vm", "exec", vm, "--", "true"]);
        if code == 0 && reconnect.is_zero() {
            reconnect = restarted.elapsed();
        }
        let now = d.vm(vm);
        assert_eq!((now["state"].as_str(), now["running"]["pid"].as_i64()), (Some("running"), Some(*pid)), "{vm}");
        assert!(alive(*pid), "{vm}'s engine process is gone");
        assert!(uptime(&d, vm) > up + 3.0, "{vm} rebooted");
        let seen = ticks(&console(&d, vm));
        let last = *seen.last().unwrap_or(&0);
        assert!(last >= 5, "{vm}: ticks {seen:?}");
        let tail: Vec<u64> = seen.iter().copied().skip_while(|t| *t + 6 < last).collect();
        let want: Vec<u64> = (tail[0]..=last).collect();
        assert_eq!(tail, want, "{vm}: console output was lost while dend was away");
    }
    println!("first agent exec answered {:.2} s after the new dend started", reconnect.as_secs_f64());
    assert!(!bin.path().join("dend.trial").exists(), "the new dend commits its update once it is up");
    let (_, events) = d.api("GET", "/api/v1/events?tail=200", b"");
    let kinds: Vec<&str> = events.as_array().into_iter().flatten().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"dend.updated"), "{kinds:?}");
    assert!(!kinds.iter().any(|k| *k == "vm.exited" || *k == "vm.restarted"), "{kinds:?}");
    let (code, out, _) = d.den(&["daemon", "status", "--install-dir", bin.path().to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("previous:"), "{out}");

    // The business OS carried on: healthy, same slot, no update or reboot recorded.
    let t = Instant::now();
    loop {
        let (_, s) = d.api("GET", "/api/v1/system?health=1", b"");
        let ok = s["health"].as_array().and_then(|h| h.last()).is_some_and(|h: &Value| h["ok"] == true);
        if ok && s["phase"]["phase"] == "steady" && s["updates"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{s:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
}
