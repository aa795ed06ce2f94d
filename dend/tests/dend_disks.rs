//! Disk operations end to end with real QEMU guests: a root disk made bigger at create, a
//! snapshot of a running VM (paused for the copy), a live resize the guest sees at once, a
//! clone whose disk holds the source's files, a rollback that brings old files back, and the
//! refusals (rollback of a running VM, shrinking, bad names) with no partial state.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::images;
use std::path::Path;
use std::process::Command;

fn sh(d: &Dend, vm: &str, script: &str) -> String {
    d.sh_until_ok(vm, script).trim().to_string()
}

/// The guest's view of its root disk size in MiB.
fn guest_disk_mib(d: &Dend, vm: &str) -> u64 {
    sh(d, vm, "cat /sys/block/vda/size").parse::<u64>().unwrap_or(0) / 2048
}

fn ok(d: &Dend, args: &[&str]) {
    let (code, _, err) = d.den(args);
    assert_eq!(code, 0, "{args:?}: {err}\n{}", d.log());
}

#[test]
fn snapshots_clone_resize_and_rollback() {
    let store = images::shared_store();
    images::build_builtin(&store, "base");
    let d = Dend::start(Path::new(env!("CARGO_BIN_EXE_dend")));

    let (s, b) = d.api("POST", "/api/v1/vms", br#"{"name":"x","image":"base","disk_mib":100}"#);
    assert!(s == 400 && b["field"] == "disk_mib" && b["message"].as_str().unwrap_or("").contains("smaller"), "{b}");
    ok(
        &d,
        &[
            "vm",
            "create",
            "web1",
            "--image",
            "base",
            "--memory",
            "256",
            "--engine",
            "qemu",
            "--no-network",
            "--disk",
            "1G",
            "--start",
        ],
    );
    assert_eq!(guest_disk_mib(&d, "web1"), 1024, "the disk size asked for at create");

    // A snapshot of the running VM; it keeps running afterwards.
    sh(&d, "web1", "echo one > /root/mark && sync");
    ok(&d, &["vm", "snapshot", "create", "web1", "s1", "--description", "before two"]);
    assert_eq!(d.vm("web1")["state"], "running");
    sh(&d, "web1", "echo two > /root/mark && sync");
    let (_, ls, _) = d.den(&["vm", "snapshot", "ls", "web1"]);
    assert!(ls.contains("s1") && ls.contains("before two"), "{ls}");
    let (s, b) = d.api("POST", "/api/v1/vms/web1/snapshots", br#"{"name":"s1"}"#);
    assert_eq!((s, b["code"].as_str()), (409, Some("exists")), "{b}");
    let (s, b) = d.api("POST", "/api/v1/vms/web1/snapshots", br#"{"name":"Bad Name"}"#);
    assert_eq!((s, b["field"].as_str()), (400, Some("name")), "{b}");

    // Live resize: the guest sees the new size at once; shrinking is refused.
    ok(&d, &["vm", "resize", "web1", "--disk", "1536M"]);
    assert_eq!(guest_disk_mib(&d, "web1"), 1536);
    let (s, b) = d.api("POST", "/api/v1/vms/web1/resize", br#"{"disk_mib":512}"#);
    assert_eq!((s, b["field"].as_str()), (400, Some("disk_mib")), "{b}");

    // Clone while running: the copy's disk holds the source's files as of the copy.
    ok(&d, &["vm", "clone", "web1", "web2"]);
    let web2 = d.vm("web2");
    assert_eq!(web2["state"], "stopped");
    let disk = d.dir.path().join("vms").join(web2["id"].as_str().unwrap()).join("root.img");
    let out = Command::new("debugfs").args(["-R", "cat /root/mark"]).arg(&disk).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "two", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 1536 << 20, "the clone has the grown disk");

    // Rollback: refused while running; after a stop the old file is back.
    let (s, b) = d.api("POST", "/api/v1/vms/web1/snapshots/s1/rollback", b"");
    assert_eq!((s, b["code"].as_str()), (409, Some("wrong_state")), "{b}");
    ok(&d, &["vm", "stop", "web1"]);
    ok(&d, &["vm", "snapshot", "rollback", "web1", "s1"]);
    ok(&d, &["vm", "start", "web1"]);
    assert_eq!(sh(&d, "web1", "cat /root/mark"), "one", "rolled back");
    assert_eq!(guest_disk_mib(&d, "web1"), 1024, "the snapshot's disk size comes back too");
    assert_eq!(d.vm("web1")["spec"]["disk_mib"], 1024);

    // Delete the snapshot and both VMs: nothing left.
    ok(&d, &["vm", "snapshot", "rm", "web1", "s1"]);
    let (_, ls, _) = d.den(&["--json", "vm", "snapshot", "ls", "web1"]);
    assert_eq!(ls.trim(), "[]");
    let id1 = d.vm("web1")["id"].as_str().unwrap().to_string();
    assert!(!d.dir.path().join("vms").join(&id1).join("snapshots/s1").exists(), "snapshot files removed");
    ok(&d, &["vm", "stop", "web1"]);
    ok(&d, &["vm", "rm", "web1"]);
    ok(&d, &["vm", "rm", "web2"]);
    assert!(std::fs::read_dir(d.dir.path().join("vms")).map(|r| r.count()).unwrap_or(0) == 0, "no VM files left");
    let (_, tasks, _) = d.den(&["task", "ls"]);
    for k in ["vm.snapshot", "vm.clone", "vm.rollback"] {
        assert!(tasks.contains(k), "{k}: {tasks}");
    }
    let (_, list) = d.api("GET", "/api/v1/tasks", b"");
    let done = list[0]["id"].as_str().unwrap().to_string();
    assert!(list.as_array().unwrap().iter().filter(|t| t["status"] == "ok").all(|t| t["progress"] == 100), "{list}");
    let (s, b) = d.api("POST", &format!("/api/v1/tasks/{done}/cancel"), b"");
    assert!(s == 409 && b["message"].as_str().unwrap_or("").contains("already ended"), "{b}");
}
