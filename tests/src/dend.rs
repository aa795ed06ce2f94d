//! A `dend` in a temporary data directory for end-to-end tests, driven through the real `den` CLI
//! and its API socket; it and every VM process it started are killed when the test ends.

use crate::images;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A dend in a temporary data directory; killed (with every VM process it started) on drop.
pub struct Dend {
    child: Option<Child>,
    bin: PathBuf,
    /// The data directory (runtime files in `run/`).
    pub dir: tempfile::TempDir,
    pids: std::sync::Mutex<Vec<i32>>,
    netns: Option<String>,
}

impl Dend {
    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/dend.sock")
    }

    /// Starts `bin` (dend) on a new temporary data directory.
    pub fn start(bin: &Path) -> Dend {
        Dend::start_with(bin, None)
    }

    /// Starts `bin` (dend) inside network namespace `ns`: its bridges, TAPs, rules, dnsmasq
    /// and VMs all live there.
    pub fn start_in(bin: &Path, ns: &crate::netns::NetNs) -> Dend {
        Dend::start_with(bin, Some(ns.name.clone()))
    }

    /// Like [`Dend::start_in`], with `config` as its `den.toml`.
    pub fn start_in_with_config(bin: &Path, ns: &crate::netns::NetNs, config: &str) -> Dend {
        Dend::start_configured(bin, Some(ns.name.clone()), config)
    }

    /// Starts dend in this network namespace with `config` as its den.toml.
    pub fn start_with_config(bin: &Path, config: &str) -> Dend {
        Dend::start_configured(bin, None, config)
    }

    fn start_with(bin: &Path, netns: Option<String>) -> Dend {
        Dend::start_configured(bin, netns, "")
    }

    fn start_configured(bin: &Path, netns: Option<String>, config: &str) -> Dend {
        let dir = tempfile::Builder::new().prefix("dend-test-").tempdir().expect("temp dir");
        std::fs::write(dir.path().join("den.toml"), config).expect("den.toml");
        let mut d = Dend { child: None, bin: bin.into(), dir, pids: Default::default(), netns };
        d.spawn();
        d
    }

    /// (Re)starts dend on the same data directory and waits for its socket.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("dend.log")).unwrap();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        let child = cmd
            .arg("--data-dir")
            .arg(self.dir.path())
            .arg("--image-store")
            .arg(images::download_cache().join("test-store"))
            .args(["--listen", "127.0.0.1:0", "--ssh-listen", "127.0.0.1:0"])
            .arg("--config")
            .arg(self.dir.path().join("den.toml"))
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

    /// The HTTPS API's address (dend listens on a free loopback port).
    pub fn https_addr(&self) -> String {
        self.addr("https.addr")
    }

    /// The SSH gateway's address (a free loopback port).
    pub fn ssh_addr(&self) -> String {
        self.addr("ssh.addr")
    }

    fn addr(&self, file: &str) -> String {
        let t = Instant::now();
        loop {
            let a = std::fs::read_to_string(self.dir.path().join("run").join(file)).unwrap_or_default();
            if !a.trim().is_empty() {
                return a.trim().to_string();
            }
            assert!(t.elapsed() < Duration::from_secs(30), "dend never wrote {file}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// dend's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9` dend (its VMs keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops dend with SIGTERM, as a service manager restarting it would, and waits for it.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the pid of a child we have not reaped.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// dend's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dend.log")).unwrap_or_default()
    }

    /// Runs the `den` CLI against this dend: (exit code, stdout, stderr).
    pub fn den(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(images::den_cli()).arg("--socket").arg(self.socket()).args(args).output().unwrap();
        let so = String::from_utf8_lossy(&out.stdout).to_string();
        let se = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.code().unwrap_or(-1), so, se)
    }

    /// `den vm create <args>` of a started QEMU VM from the `base` image (256 MiB, never
    /// restarted), asserting it worked.
    pub fn create_base_vm(&self, args: &[&str]) {
        let mut a = vec!["vm", "create"];
        a.extend_from_slice(args);
        a.extend_from_slice(&[
            "--image",
            "base",
            "--memory",
            "256",
            "--engine",
            "qemu",
            "--restart",
            "never",
            "--start",
        ]);
        let (code, _, err) = self.den(&a);
        assert_eq!(code, 0, "{args:?}: {err}\n{}", self.log());
    }

    /// Runs `sh -c script` in VM `vm` through `den vm exec` until it exits 0 (the agent may still
    /// be starting), for up to 180 s; its standard output.
    pub fn sh_until_ok(&self, vm: &str, script: &str) -> String {
        let t = Instant::now();
        loop {
            let (code, out, err) = self.den(&["vm", "exec", vm, "--", "sh", "-c", script]);
            if code == 0 {
                return out;
            }
            assert!(t.elapsed() < Duration::from_secs(180), "{vm}: `{script}` failed: {out}{err}\n{}", self.log());
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// `den vm inspect` as JSON (remembers the VM's pid so drop can kill it).
    pub fn vm(&self, name: &str) -> Value {
        let (code, out, err) = self.den(&["--json", "vm", "inspect", name]);
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        if let Some(p) = v["running"]["pid"].as_i64() {
            self.pids.lock().unwrap_or_else(|p| p.into_inner()).push(p as i32);
        }
        v
    }

    /// Waits until the VM is in `state`.
    pub fn wait_state(&self, name: &str, state: &str, timeout: Duration) -> Value {
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

    /// A request to the app ingress on dend's HTTPS port with the real `curl`, from inside `ns`,
    /// `host` resolving to it: (status, body, response headers).
    pub fn ingress(&self, ns: &crate::netns::NetNs, host: &str, path: &str, extra: &[&str]) -> (u16, String, String) {
        let addr = self.https_addr();
        let port = addr.rsplit(':').next().unwrap_or_default();
        let url = format!("https://{host}:{port}{path}");
        let resolve = format!("{host}:{port}:127.0.0.1");
        let out = ns
            .command("curl")
            .args([
                "-sk",
                "--max-time",
                "30",
                "-D",
                "/dev/stderr",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "--resolve",
                &resolve,
            ])
            .args(extra)
            .arg(&url)
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    }

    /// An HTTPS API call with the real `curl` (certificate not checked; see [`Dend::https_addr`];
    /// inside dend's network namespace when it has one), optionally with a bearer token:
    /// (status, body, response headers).
    pub fn https(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, Value, String) {
        let headers = self.dir.path().join("curl-headers");
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "curl"]);
                c
            }
            None => Command::new("curl"),
        };
        c.args(["-sk", "-o", "-", "-w", "\n%{http_code}", "-X", method, "-D"]).arg(&headers);
        c.args(["-H", "Content-Type: application/json", "--max-time", "30"]);
        if let Some(t) = token {
            c.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        if let Some(b) = body {
            c.args(["--data-binary", b]);
        }
        let out = c.arg(format!("https://{}{path}", self.https_addr())).output().expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let head = std::fs::read_to_string(&headers).unwrap_or_default();
        (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null), head)
    }

    /// Raw API call: (status, body).
    pub fn api(&self, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
        let (status, raw) = self.api_bytes(method, path, body);
        (status, serde_json::from_slice(&raw).unwrap_or(Value::Null))
    }

    /// Raw API call with the body as bytes, unparsed (for timing the server alone).
    pub fn api_bytes(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut s = UnixStream::connect(self.socket()).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        let _ = s.write_all(body);
        let mut raw = vec![];
        let _ = s.read_to_end(&mut raw);
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4).unwrap_or(raw.len());
        let status = std::str::from_utf8(&raw[..split.min(raw.len())])
            .ok()
            .and_then(|h| h.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        (status, raw[split..].to_vec())
    }
}

impl Drop for Dend {
    fn drop(&mut self) {
        self.kill9();
        let mut pids = self.pids.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // VMs outlive dend by design: every engine process working in this dend's directory
        // goes too, also those of a test that failed before it looked them up.
        pids.extend(processes_using(self.dir.path()));
        for p in pids {
            // SAFETY: kill(2) on pids this test started (through dend).
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
}

/// Processes (other than this one) whose command line names a path under `dir`.
fn processes_using(dir: &Path) -> Vec<i32> {
    let needle = format!("{}/", dir.display());
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(&needle)
        })
        .collect()
}

/// Whether `pid` runs (zombies do not count).
pub fn alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}
