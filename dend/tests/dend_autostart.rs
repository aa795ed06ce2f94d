//! Autostart after a host boot, with real QEMU guests: a boot is simulated by a different
//! recorded boot id (what `dend` compares with the kernel's); the business OS (`[system]`) starts
//! first, then the autostart VM, and the VM that is not marked stays stopped. A plain `dend`
//! restart starts nothing that was stopped, except the business OS, which is always on.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::images;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

fn create(d: &Dend, args: &[&str]) {
    let mut a = vec!["vm", "create"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--image", "base", "--memory", "256", "--engine", "qemu", "--no-network"]);
    let (code, _, err) = d.den(&a);
    assert_eq!(code, 0, "{args:?}: {err}");
}

fn autostarted(d: &Dend) -> Vec<String> {
    let (_, events) = d.api("GET", "/api/v1/events", b"");
    events
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "vm.autostarted")
        .filter_map(|e| e["target"].as_str().map(String::from))
        .collect()
}

#[test]
fn the_system_vm_first_then_autostart_order_after_a_host_boot() {
    let store = images::shared_store();
    images::build_builtin(&store, "base");
    images::build_builtin(&store, "system");
    let config = "[docker]\nenabled = false\n[system]\nname = \"os\"\ncpus = 1\nmemory_mib = 256\n\
                  data_disk_mib = 64\nnetwork = \"\"\n";
    let mut d = Dend::start_with_config(Path::new(env!("CARGO_BIN_EXE_dend")), config);
    create(&d, &["app1", "--autostart", "--start-order", "5"]);
    create(&d, &["manual"]);
    let (code, _, err) = d.den(&["vm", "create", "os2", "--kind", "system", "--no-network"]);
    assert_ne!(code, 0, "system VMs come from [system] only");
    assert!(err.contains("[system]"), "{err}");
    d.wait_state("os", "running", Duration::from_secs(180));

    // A dend restart is not a host boot: nothing stopped starts, the business OS is adopted.
    let os_pid = d.vm("os")["running"]["pid"].clone();
    d.kill9();
    d.spawn();
    std::thread::sleep(Duration::from_secs(1));
    assert!(autostarted(&d).is_empty());
    assert_eq!(d.vm("app1")["state"], "stopped");
    assert_eq!(d.vm("os")["running"]["pid"], os_pid);

    // A host boot (a new boot id, every VM gone): the business OS, then app1; `manual` stays
    // stopped.
    assert_eq!(d.den(&["vm", "stop", "os"]).0, 0);
    d.kill9();
    std::fs::write(d.dir.path().join("boot_id"), "00000000-0000-0000-0000-000000000000\n").unwrap();
    d.spawn();
    let t = Instant::now();
    while autostarted(&d).is_empty() || d.vm("app1")["state"] != "running" {
        assert!(t.elapsed() < Duration::from_secs(120), "{:?}\n{}", autostarted(&d), d.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(autostarted(&d), ["app1"]);
    assert_eq!(d.vm("os")["state"], "running");
    assert_eq!(d.vm("manual")["state"], "stopped");
    let (_, tasks) = d.api("GET", "/api/v1/tasks", b"");
    let started: Vec<(i64, String)> = tasks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["kind"] == "vm.start")
        .map(|t| (t["finished"].as_i64().unwrap_or(i64::MAX), t["target"].as_str().unwrap_or("").to_string()))
        .collect();
    let os_done = started.iter().filter(|(_, n)| n == "os").map(|x| x.0).max();
    let app_created = tasks.as_array().into_iter().flatten().find(|t| t["kind"] == "vm.start" && t["target"] == "app1");
    let app_created = app_created.and_then(|t: &Value| t["created"].as_i64());
    assert!(os_done.is_some() && app_created >= os_done, "app1 started after os had started: {tasks}");
    assert_eq!(d.den(&["vm", "stop", "app1"]).0, 0);
}
