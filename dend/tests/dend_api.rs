//! dend's API under load: 50 concurrent clients creating, listing and deleting VMs (from an image
//! without a root disk, so that no guest boots and no disk is copied): no error, no leak, and a
//! consistent state at the end.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_images::SilentProgress;
use den_tests::dend::Dend;
use den_tests::{images, lab};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

fn wait_task(d: &Dend, task: &str) -> Value {
    let t = Instant::now();
    loop {
        let (s, v) = d.api("GET", &format!("/api/v1/tasks/{task}"), b"");
        assert_eq!(s, 200, "{v}");
        if v["status"] != "running" {
            return v;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "task {task} still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fifty_concurrent_clients_leave_a_consistent_state() {
    let store = images::shared_store();
    // The lab's outer image has a kernel and an initramfs but no root disk.
    images::build_spec_text(&store, lab::OUTER_SPEC, "lab outer", &SilentProgress).expect("image");
    let d = Dend::start(Path::new(env!("CARGO_BIN_EXE_dend")));
    let d = &d;
    std::thread::scope(|s| {
        for i in 0..50 {
            s.spawn(move || {
                let name = format!("c{i}");
                let body = json!({"name": name, "image": "lab-outer", "memory_mib": 128}).to_string();
                let (st, v) = d.api("POST", "/api/v1/vms", body.as_bytes());
                assert_eq!(st, 202, "create {name}: {v}");
                let t = wait_task(d, v["task"].as_str().unwrap_or_default());
                assert_eq!(t["status"], "ok", "{t}");
                // The same name again, concurrently with everyone else: refused, nothing made.
                let (st, v) = d.api("POST", "/api/v1/vms", body.as_bytes());
                assert_eq!((st, v["code"].as_str()), (409, Some("exists")), "{v}");
                let (st, list) = d.api("GET", "/api/v1/vms", b"");
                assert!(st == 200 && list.as_array().is_some_and(|l| l.iter().any(|v| v["spec"]["name"] == name)));
                let (st, v) = d.api("DELETE", &format!("/api/v1/vms/{name}"), b"");
                assert_eq!(st, 202, "delete {name}: {v}");
                let t = wait_task(d, v["task"].as_str().unwrap_or_default());
                assert_eq!(t["status"], "ok", "{t}");
            });
        }
    });
    let (_, list) = d.api("GET", "/api/v1/vms", b"");
    assert_eq!(list, json!([]), "every VM was deleted");
    let leftovers = std::fs::read_dir(d.dir.path().join("vms")).map(|r| r.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "no VM directories left");
    let (_, tasks) = d.api("GET", "/api/v1/tasks?limit=1000", b"");
    let tasks = tasks.as_array().cloned().unwrap_or_default();
    assert_eq!(tasks.len(), 100);
    assert!(tasks.iter().all(|t| t["status"] == "ok"), "no failed task");
    let (_, events) = d.api("GET", "/api/v1/events?limit=1000", b"");
    let n = |k: &str| events.as_array().into_iter().flatten().filter(|e| e["kind"] == k).count();
    assert_eq!((n("vm.created"), n("vm.deleted")), (50, 50));
}
