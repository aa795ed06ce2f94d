//! dend end to end with the real `den` CLI and real QEMU guests (TCG on this host): create, start,
//! exec, a `kill -9` of dend with the VM running (the next dend adopts it), a `kill -9` of the
//! VM's engine (the restart policy acts and events record it), stop and delete leaving nothing
//! behind, and the API's refusals of bad requests with no partial state.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::{alive, Dend};
use den_tests::images;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDenTestKeyDenTestKeyDenTestKey0000 test@den";

fn exec_until_ready(d: &Dend, name: &str) -> String {
    let t = Instant::now();
    loop {
        let (code, out, err) = d.den(&["vm", "exec", name, "--", "uname", "-r"]);
        if code == 0 {
            return out;
        }
        if t.elapsed() > Duration::from_secs(180) {
            let id = d.vm(name)["id"].as_str().unwrap_or_default().to_string();
            let console = std::fs::read_to_string(d.dir.path().join("run/vms").join(id).join("console.log"));
            panic!("agent never answered: {err}\n{}\nconsole:\n{}", d.log(), console.unwrap_or_default());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn dend_vm_lifecycle_survives_dend_and_engine_kills() {
    let store = images::shared_store();
    let image = images::build_builtin(&store, "base");
    let mut d = Dend::start(Path::new(env!("CARGO_BIN_EXE_dend")));

    // Bad requests: 4xx naming the problem, nothing left behind.
    let (s, b) = d.api("POST", "/api/v1/vms", b"{not json");
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_json")), "{b}");
    let (s, b) = d.api("POST", "/api/v1/vms", br#"{"name":"x","image":"base","cpu":2}"#);
    assert!(s == 400 && b["message"].as_str().unwrap_or("").contains("unknown field `cpu`"), "{b}");
    let (s, b) = d.api("POST", "/api/v1/vms", br#"{"name":"x","image":"no-such-image"}"#);
    assert_eq!((s, b["field"].as_str()), (400, Some("image")), "{b}");
    let (s, b) = d.api("POST", "/api/v1/vms", br#"{"name":"x","image":"base","memory_mib":99999999}"#);
    assert_eq!((s, b["field"].as_str()), (400, Some("memory_mib")), "{b}");
    let (s, b) = d.api("POST", "/api/v1/vms", br#"{"name":"Bad Name","image":"base"}"#);
    assert_eq!((s, b["field"].as_str()), (400, Some("name")), "{b}");
    let (s, _) = d.api("POST", "/api/v1/vms", &vec![b' '; 100_000]);
    assert_eq!(s, 413);
    let (s, b) = d.api("GET", "/api/v1/vms/nope", b"");
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")), "{b}");
    assert_eq!(d.api("GET", "/api/v1/vms", b"").1, json!([]), "no partial records");

    // Create and start; exec through the agent.
    let (code, _, err) = d.den(&[
        "vm",
        "create",
        "t1",
        "--image",
        "base",
        "--memory",
        "512",
        "--engine",
        "qemu",
        "--no-network",
        "--start",
        "--user",
        "alice",
        "--ssh-key",
        KEY,
    ]);
    assert_eq!(code, 0, "{err}\n{}", d.log());
    let (s, b) = d.api("POST", "/api/v1/vms", br#"{"name":"t1","image":"base"}"#);
    assert_eq!((s, b["code"].as_str()), (409, Some("exists")), "{b}");
    let vm = d.wait_state("t1", "running", Duration::from_secs(60));
    let pid = vm["running"]["pid"].as_i64().unwrap();
    assert_eq!(exec_until_ready(&d, "t1").trim(), image.kernel_release);
    let (code, _, _) = d.den(&["vm", "exec", "t1", "--", "false"]);
    assert_eq!(code, 1, "exit status of the guest command");
    // First-boot settings arrived through the agent: a user, SSH keys for it and for root.
    let script = "cat /home/alice/.ssh/authorized_keys /root/.ssh/authorized_keys; stat -c %U /home/alice/.ssh";
    let (code, keys, err) = d.den(&["vm", "exec", "t1", "--", "sh", "-c", script]);
    assert_eq!((code, keys.matches(KEY).count()), (0, 2), "{keys}{err}");
    assert!(keys.trim_end().ends_with("alice"), "owned by alice: {keys}");
    assert_eq!(d.vm("t1")["provisioned"], true);

    // The events stream (WebSocket, through the CLI) sees what happens next, live.
    let mut follow = std::process::Command::new(images::den_cli())
        .arg("--socket")
        .arg(d.socket())
        .args(["--json", "event", "ls", "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    // Pause, resume, console.
    let (code, _, err) = d.den(&["vm", "pause", "t1"]);
    assert_eq!((code, d.vm("t1")["state"].as_str()), (0, Some("paused")), "{err}");
    let (code, _, err) = d.den(&["vm", "start", "t1"]);
    assert!(code == 1 && err.contains("is paused"), "a paused VM cannot be started: {err}");
    let (code, _, err) = d.den(&["vm", "resume", "t1"]);
    assert_eq!((code, d.vm("t1")["state"].as_str()), (0, Some("running")), "{err}");
    assert_eq!(exec_until_ready(&d, "t1").trim(), image.kernel_release);
    let (code, console, _) = d.den(&["vm", "console", "t1"]);
    assert!(code == 0 && console.contains("agent"), "recent console output: {console}");
    let mut seen = vec![];
    let t = Instant::now();
    while !seen.iter().any(|l: &String| l.contains("\"vm.resumed\"")) {
        assert!(t.elapsed() < Duration::from_secs(20), "live events: {seen:?}");
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
            seen.push(l);
        }
    }
    assert!(seen.iter().any(|l| l.contains("\"vm.created\"")), "the backlog comes first: {seen:?}");
    assert!(seen.iter().any(|l| l.contains("\"vm.paused\"")), "{seen:?}");
    let _ = follow.kill();
    let _ = follow.wait();

    // Interactive console: type a command into the guest's serial shell, read its answer.
    let attach = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "(sleep 1; printf 'uname -r; echo console-$((6*7))\\n'; sleep 4; printf '\\035') | {} --socket {} vm console t1 --attach",
            images::den_cli().display(),
            d.socket().display()
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&attach.stdout);
    assert!(attach.status.success(), "{}", String::from_utf8_lossy(&attach.stderr));
    assert!(text.contains("console-42") && text.contains(&image.kernel_release), "console session: {text}");

    // kill -9 dend: the VM keeps running; the next dend adopts it.
    d.kill9();
    assert!(alive(pid), "the VM outlives dend");
    // Files of a VM without a record (a create cut short) are removed by the next dend.
    let orphan = d.dir.path().join("vms").join("0123456789abcdef0123456789abcdef");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("root.img"), b"half a disk").unwrap();
    d.spawn();
    assert!(!orphan.exists(), "orphan VM files removed at start");
    let vm = d.vm("t1");
    assert_eq!((vm["state"].as_str(), vm["running"]["pid"].as_i64()), (Some("running"), Some(pid)), "{vm}");
    assert_eq!(exec_until_ready(&d, "t1").trim(), image.kernel_release);

    // kill -9 the engine: on-failure restarts it, and the events say so.
    // SAFETY: kill(2) on the VM process this test created.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let t = Instant::now();
    let new_pid = loop {
        let v = d.vm("t1");
        if let Some(p) = v["running"]["pid"].as_i64().filter(|p| *p != pid && v["state"] == "running") {
            break p;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "not restarted: {v}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(300));
    };
    let (_, events) = d.api("GET", "/api/v1/events", b"");
    let kinds: Vec<&str> = events.as_array().into_iter().flatten().filter_map(|e| e["kind"].as_str()).collect();
    for k in ["vm.created", "vm.started", "vm.adopted", "vm.exited", "vm.restarted"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert!(events.as_array().into_iter().flatten().any(|e| e["kind"] == "vm.created" && e["user"] == "root"));
    let (code, tasks, _) = d.den(&["task", "ls"]);
    assert!(
        code == 0 && tasks.contains("vm.create") && tasks.contains("vm.start") && tasks.contains(" ok "),
        "{tasks}"
    );
    exec_until_ready(&d, "t1");

    // Reboot: a fresh engine process on the same disk; a file written before is still there.
    let (code, _, err) = d.den(&["vm", "exec", "t1", "--", "sh", "-c", "echo kept > /root/mark && sync"]);
    assert_eq!(code, 0, "{err}");
    let before = new_pid;
    let (code, _, err) = d.den(&["vm", "reboot", "t1"]);
    assert_eq!(code, 0, "{err}\n{}", d.log());
    let after = d.wait_state("t1", "running", Duration::from_secs(60));
    let new_pid = after["running"]["pid"].as_i64().unwrap_or_default();
    assert!(!alive(before) && alive(new_pid), "a new engine process");
    exec_until_ready(&d, "t1");
    let (code, out, err) = d.den(&["vm", "exec", "t1", "--", "cat", "/root/mark"]);
    assert_eq!((code, out.trim()), (0, "kept"), "{err}");

    // Stop and delete: no process, disk, runtime directory or record left.
    let (code, _, err) = d.den(&["vm", "stop", "t1"]);
    assert_eq!(code, 0, "{err}");
    assert!(!alive(new_pid), "the engine process ended");
    let id = d.vm("t1")["id"].as_str().unwrap_or_default().to_string();
    let (code, _, err) = d.den(&["vm", "rm", "t1"]);
    assert_eq!(code, 0, "{err}");
    assert!(!d.dir.path().join("vms").join(&id).exists(), "disk removed");
    assert!(!d.dir.path().join("run/vms").join(&id).exists(), "runtime dir removed");
    assert_eq!(d.api("GET", "/api/v1/vms", b"").1, json!([]));
    let (code, _, err) = d.den(&["vm", "inspect", "t1"]);
    assert!(code == 1 && err.contains("not found"), "{err}");
}
