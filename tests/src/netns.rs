//! Network namespaces for tests that make bridges, TAPs and firewall rules: everything such a
//! test creates lives inside one, and dropping it kills every process left in it and deletes it
//! (which removes its devices and nftables tables with it).

use std::process::{Command, Output};

/// A named network namespace (`ip netns`), removed on drop.
pub struct NetNs {
    /// Its name.
    pub name: String,
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

impl NetNs {
    /// A new namespace `den-<tag>-<pid>` with its loopback up.
    pub fn new(tag: &str) -> NetNs {
        let name = format!("den-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(&["ip", "netns", "add", &name]);
        let ns = NetNs { name };
        ns.ip("link set lo up");
        ns
    }

    /// Runs `ip -n <ns> <args>` and asserts it worked.
    pub fn ip(&self, args: &str) -> String {
        let mut a = vec!["ip", "-n", &self.name];
        a.extend(args.split_whitespace());
        String::from_utf8_lossy(&run(&a).stdout).into_owned()
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs a shell script inside the namespace: (exit code, stdout + stderr).
    pub fn sh(&self, script: &str) -> (i32, String) {
        let out = self.command("sh").args(["-c", script]).output().unwrap_or_else(|e| panic!("ip netns exec: {e}"));
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// Starts `program args` inside the namespace in the background; it is killed on drop.
    pub fn background(&self, program: &str, args: &[&str]) -> Background {
        let child = self.command(program).args(args).spawn().unwrap_or_else(|e| panic!("{program}: {e}"));
        Background(child)
    }

    /// Pids of the processes inside.
    pub fn pids(&self) -> Vec<i32> {
        let out = Command::new("ip").args(["netns", "pids", &self.name]).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Joins this namespace to `other` with a veth pair: `here_if` (`here_ip`, e.g.
    /// `192.0.2.2/24`) in this one, `there_if` (`there_ip`) in the other.
    pub fn veth(&self, here_if: &str, here_ip: &str, other: &NetNs, there_if: &str, there_ip: &str) {
        self.ip(&format!("link add {here_if} type veth peer name {there_if} netns {}", other.name));
        self.ip(&format!("addr add {here_ip} dev {here_if}"));
        self.ip(&format!("link set {here_if} up"));
        other.ip(&format!("addr add {there_ip} dev {there_if}"));
        other.ip(&format!("link set {there_if} up"));
    }
}

/// A process started by [`NetNs::background`]; killed and reaped on drop.
pub struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        for _ in 0..3 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for p in pids {
                // SAFETY: kill(2) on processes inside this test's own namespace.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// The `net-probe` packet tool (`tests/src/bin/net-probe.rs`) that `cargo build --workspace`
/// builds: hand-made frames from guests, recorders on the host side.
pub fn net_probe() -> std::path::PathBuf {
    let p = crate::images::target_dir().join("debug/net-probe");
    assert!(p.is_file(), "net-probe not found at {}: run `cargo build --workspace` (or `make test`)", p.display());
    p
}
