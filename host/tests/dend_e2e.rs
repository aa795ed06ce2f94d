//! dend end to end with the real `den` CLI and real QEMU guests (TCG on this host): create, start,
//! exec, a `kill -9` of dend with the VM running (the next dend adopts it), a `kill -9` of the
//! VM's engine (the restart policy acts and events record it), stop and delete leaving nothing
//! behind, and the API's refusals of bad requests with no partial state.

use den_tests::images;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A dend in a temporary data directory; killed (with every VM process it started) on drop.
struct Dend {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pids: std::cell::RefCell<Vec<i32>>,
}

impl Dend {
    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/dend.sock")
    }

    fn start(dir: tempfile::TempDir) -> Dend {
        let mut d = Dend { child: None, dir, pids: Default::default() };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("dend.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dend"))
            .arg("--data-dir")
            .arg(self.dir.path())
            .arg("--image-store")
            .arg(images::download_cache().join("test-store"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dend starts");
        self.child = Some(child);
        let t = Instant::now();
        while UnixStream::connect(self.socket()).is_err() {
            assert!(t.elapsed() < Duration::from_secs(30), "dend did not listen:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dend.log")).unwrap_or_default()
    }

    fn den(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(images::den_cli()).arg("--socket").arg(self.socket()).args(args).output().unwrap();
        let so = String::from_utf8_lossy(&out.stdout).to_string();
        let se = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.code().unwrap_or(-1), so, se)
    }

    fn vm(&self, name: &str) -> Value {
        let (code, out, err) = self.den(&["--json", "vm", "inspect", name]);
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        if let Some(p) = v["running"]["pid"].as_i64() {
            self.pids.borrow_mut().push(p as i32);
        }
        v
    }

    fn wait_state(&self, name: &str, state: &str, timeout: Duration) -> Value {
        let t = Instant::now();
        loop {
            let v = self.vm(name);
            if v["state"] == state {
                return v;
            }
            assert!(t.elapsed() < timeout, "{name} never became {state}: {v}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Raw API call: (status, body).
    fn api(&self, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
        let mut s = UnixStream::connect(self.socket()).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        let _ = s.write_all(body);
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        let status = raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = raw.split("\r\n\r\n").nth(1).unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }
}

impl Drop for Dend {
    fn drop(&mut self) {
        self.kill9();
        for p in self.pids.borrow().iter() {
            // SAFETY: kill(2) on pids this test started (through dend).
            unsafe { libc::kill(*p, libc::SIGKILL) };
        }
    }
}

fn alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

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
    let mut d = Dend::start(tempfile::Builder::new().prefix("dend-e2e-").tempdir().unwrap());

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
    let (code, _, err) =
        d.den(&["vm", "create", "t1", "--image", "base", "--memory", "512", "--engine", "qemu", "--start"]);
    assert_eq!(code, 0, "{err}\n{}", d.log());
    let (s, b) = d.api("POST", "/api/v1/vms", br#"{"name":"t1","image":"base"}"#);
    assert_eq!((s, b["code"].as_str()), (409, Some("exists")), "{b}");
    let vm = d.wait_state("t1", "running", Duration::from_secs(60));
    let pid = vm["running"]["pid"].as_i64().unwrap();
    assert_eq!(exec_until_ready(&d, "t1").trim(), image.kernel_release);
    let (code, _, _) = d.den(&["vm", "exec", "t1", "--", "false"]);
    assert_eq!(code, 1, "exit status of the guest command");

    // kill -9 dend: the VM keeps running; the next dend adopts it.
    d.kill9();
    assert!(alive(pid), "the VM outlives dend");
    d.spawn();
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
    exec_until_ready(&d, "t1");

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
