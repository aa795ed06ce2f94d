//! SSH gateway numbers, side by side in one run (run by `bench/sshgw-bench.sh`): session setup
//! time (`ssh vm true`) and `scp` throughput (50 MiB up and down) through the gateway, versus
//! straight to the same guest's sshd over a plain dend port forward (`-p 2200:22`). The guest is
//! the `dev` image under QEMU (TCG on hosts whose /dev/kvm cannot run Linux); everything runs in
//! a network namespace of its own. A third way, direct with `-c aes128-gcm@openssh.com` (the
//! cipher the gateway picks for its guest leg), shows how much of the difference is the cipher
//! the emulated guest runs; and each way's host CPU (dend, QEMU, the OpenSSH client) is printed.

// A benchmark's setup may panic: a step that cannot be taken ends the run with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::images;
use den_tests::netns::NetNs;
use den_tests::ssh::{keygen, text, Client};
use std::time::{Duration, Instant};

const RUNS: usize = 10;
const SCP_RUNS: usize = 5;
const MIB: usize = 50;

/// Median of `runs` interleaved measurements of the gateway and the direct path: each round
/// measures both, so drift (guest page cache, host load) hits both alike.
fn interleaved<F: FnMut(&Client, &str) -> f64>(gw: &Client, direct: &Client, runs: usize, mut f: F) -> (f64, f64) {
    let (mut g, mut d) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        g.push(f(gw, "dev1"));
        d.push(f(direct, "root"));
    }
    (median(g), median(d))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Milliseconds of one `ssh target true`.
fn setup_ms(c: &Client, target: &str) -> f64 {
    let t = Instant::now();
    let o = c.ssh(target, &[], "true");
    assert!(o.status.success(), "{target}: {:?}", text(&o));
    t.elapsed().as_secs_f64() * 1000.0
}

/// One way to the guest's sshd, and what its scp runs measured.
struct Way<'a> {
    name: &'static str,
    client: &'a Client,
    target: &'static str,
    /// Extra scp options.
    extra: &'static [&'static str],
    up: Vec<f64>,
    down: Vec<f64>,
    /// Host CPU over every scp of this way.
    cpu: Cpu,
}

impl<'a> Way<'a> {
    fn new(name: &'static str, client: &'a Client, target: &'static str, extra: &'static [&'static str]) -> Self {
        Way { name, client, target, extra, up: Vec::new(), down: Vec::new(), cpu: Cpu::default() }
    }

    /// MiB/s of one scp, adding its host CPU to this way's.
    fn scp(&mut self, from: &str, to: &str, dend: u32, qemu: u32) -> f64 {
        let start = Cpu::now(dend, qemu);
        let t = Instant::now();
        let o = self.client.scp(self.extra, from, to);
        assert!(o.status.success(), "scp {from} {to}: {:?}", text(&o));
        let mibs = MIB as f64 / t.elapsed().as_secs_f64();
        self.cpu = self.cpu.since(start, dend, qemu);
        mibs
    }

    fn up(&self) -> f64 {
        median(self.up.clone())
    }

    fn down(&self) -> f64 {
        median(self.down.clone())
    }
}

/// Host CPU seconds used so far by dend, the VM's QEMU and this bench's finished children
/// (the OpenSSH clients).
#[derive(Clone, Copy, Default)]
struct Cpu {
    dend: f64,
    qemu: f64,
    client: f64,
}

impl Cpu {
    fn now(dend: u32, qemu: u32) -> Cpu {
        Cpu { dend: cpu_secs(dend), qemu: cpu_secs(qemu), client: children_cpu_secs() }
    }

    fn since(self, start: Cpu, dend: u32, qemu: u32) -> Cpu {
        let now = Cpu::now(dend, qemu);
        Cpu {
            dend: self.dend + now.dend - start.dend,
            qemu: self.qemu + now.qemu - start.qemu,
            client: self.client + now.client - start.client,
        }
    }
}

/// CPU seconds (user + system) of this process's reaped children.
fn children_cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// CPU seconds (user + system) process `pid` has used.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command name: field 14 (utime) and 15 (stime) are at 11 and 12.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let dend = std::env::args().nth(1).expect("usage: sshgw-bench <dend binary>");
    let store = images::shared_store();
    images::build_builtin(&store, "dev");
    let ns = NetNs::new("sshb");
    let d = Dend::start_in(std::path::Path::new(&dend), &ns);
    let dir = tempfile::tempdir().expect("tempdir");
    let key = keygen(dir.path(), "bench");
    let pubkey = format!("@{}.pub", key.display());
    for args in [
        &["user", "add", "bench", "--no-password"][..],
        &["user", "key", "add", "bench", &pubkey],
        &["vm", "create", "dev1", "--image", "dev", "--memory", "1024", "--engine", "qemu", "-p", "2200:22"],
        &["vm", "start", "dev1"],
        &["user", "grant", "bench", "dev1", "operator"],
    ] {
        let (code, _, err) = d.den(args);
        assert_eq!(code, 0, "{args:?}: {err}");
    }
    // The direct path logs in as root with the same key (first-boot key for root).
    let (code, _, err) = d.den(&[
        "vm",
        "exec",
        "dev1",
        "--",
        "sh",
        "-c",
        &format!(
            "mkdir -p /root/.ssh && echo '{}' >> /root/.ssh/authorized_keys",
            std::fs::read_to_string(format!("{}.pub", key.display())).expect("public key").trim()
        ),
    ]);
    assert_eq!(code, 0, "{err}");
    let gw = Client::new(&d.ssh_addr(), &key).in_netns(&ns.name);
    let direct = Client::new("127.0.0.1:2200", &key).in_netns(&ns.name);
    gw.ssh_until_ok("dev1", "true", Duration::from_secs(180));
    direct.ssh_until_ok("root", "true", Duration::from_secs(180));

    let (gw_setup, direct_setup) = interleaved(&gw, &direct, RUNS, setup_ms);

    let big = dir.path().join("big.bin");
    let st = std::process::Command::new("head")
        .args(["-c", &(MIB << 20).to_string(), "/dev/urandom"])
        .stdout(std::fs::File::create(&big).expect("file"))
        .status();
    assert!(st.is_ok_and(|s| s.success()));
    let big = big.display().to_string();
    let back = dir.path().join("back.bin").display().to_string();
    let dend_pid = d.pid().expect("dend runs");
    let qemu_pid = d.vm("dev1")["running"]["pid"].as_u64().expect("QEMU's pid") as u32;
    // The third path is direct with the cipher the gateway picks for its guest leg: it shows how
    // much of the difference is the cipher the emulated guest runs.
    let mut paths = [
        Way::new("gateway", &gw, "dev1", &[]),
        Way::new("direct", &direct, "root", &[]),
        Way::new("direct -c aes128-gcm", &direct, "root", &["-c", "aes128-gcm@openssh.com"]),
    ];
    for _ in 0..SCP_RUNS {
        for w in paths.iter_mut() {
            let to = format!("{}:/tmp/big.bin", w.target);
            let mibs = w.scp(&big, &to, dend_pid, qemu_pid);
            w.up.push(mibs);
        }
    }
    for _ in 0..SCP_RUNS {
        for w in paths.iter_mut() {
            let from = format!("{}:/tmp/big.bin", w.target);
            let mibs = w.scp(&from, &back, dend_pid, qemu_pid);
            w.down.push(mibs);
        }
    }

    println!(
        "SSH gateway vs. direct to the guest's sshd (dev image, QEMU; interleaved, median of {RUNS} / {SCP_RUNS})"
    );
    println!("{:<28} {:>12} {:>12} {:>10}", "", "gateway", "direct", "ratio");
    println!(
        "{:<28} {:>9.1} ms {:>9.1} ms {:>+8.1} ms",
        "session setup (ssh vm true)",
        gw_setup,
        direct_setup,
        gw_setup - direct_setup
    );
    let [g, dr, gcm] = &paths;
    let rows = [("scp 50 MiB up", g.up(), dr.up(), gcm.up()), ("scp 50 MiB down", g.down(), dr.down(), gcm.down())];
    for (what, g, dr, _) in rows {
        println!("{:<28} {:>7.1} MiB/s {:>7.1} MiB/s {:>9.0}%", what, g, dr, 100.0 * g / dr);
    }
    println!();
    println!("the same, against straight to the guest's sshd with the cipher of the gateway's guest leg:");
    println!("{:<28} {:>12} {:>12} {:>10}", "", "gateway", "direct, gcm", "ratio");
    for (what, g, _, gcm) in rows {
        println!("{:<28} {:>7.1} MiB/s {:>7.1} MiB/s {:>9.0}%", what, g, gcm, 100.0 * g / gcm);
    }
    println!();
    let per = (2 * SCP_RUNS) as f64;
    for w in &paths {
        println!(
            "host CPU per 50 MiB, {:<21} dend {:.2} s, QEMU {:.2} s, OpenSSH client {:.2} s",
            w.name,
            w.cpu.dend / per,
            w.cpu.qemu / per,
            w.cpu.client / per
        );
    }
    let (code, _, _) = d.den(&["vm", "stop", "dev1"]);
    assert_eq!(code, 0);
}
