//! SSH gateway numbers, side by side in one run (run by `bench/sshgw-bench.sh`): session setup
//! time (`ssh vm true`) and `scp` throughput (50 MiB up and down) through the gateway, versus
//! straight to the same guest's sshd over a plain dend port forward (`-p 2200:22`). The guest is
//! the `dev` image under QEMU (TCG on hosts whose /dev/kvm cannot run Linux); everything runs in
//! a network namespace of its own.

use den_tests::dend::Dend;
use den_tests::images;
use den_tests::netns::NetNs;
use den_tests::ssh::{keygen, text, Client};
use std::time::{Duration, Instant};

const RUNS: usize = 10;
const MIB: usize = 50;

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

/// Median time of `ssh target true`.
fn setup_ms(c: &Client, target: &str) -> f64 {
    let runs = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            let o = c.ssh(target, &[], "true");
            assert!(o.status.success(), "{target}: {:?}", text(&o));
            t.elapsed()
        })
        .collect();
    median_ms(runs)
}

/// MiB/s of one scp (best of two).
fn scp_mibs(c: &Client, from: &str, to: &str) -> f64 {
    (0..2)
        .map(|_| {
            let t = Instant::now();
            let o = c.scp(&[], from, to);
            assert!(o.status.success(), "scp {from} {to}: {:?}", text(&o));
            MIB as f64 / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
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

    let gw_setup = setup_ms(&gw, "dev1");
    let direct_setup = setup_ms(&direct, "root");

    let big = dir.path().join("big.bin");
    let st = std::process::Command::new("head")
        .args(["-c", &(MIB << 20).to_string(), "/dev/urandom"])
        .stdout(std::fs::File::create(&big).expect("file"))
        .status();
    assert!(st.is_ok_and(|s| s.success()));
    let big = big.display().to_string();
    let back = dir.path().join("back.bin").display().to_string();
    let gw_up = scp_mibs(&gw, &big, "dev1:/tmp/big.bin");
    let direct_up = scp_mibs(&direct, &big, "root:/tmp/big.bin");
    let gw_down = scp_mibs(&gw, "dev1:/tmp/big.bin", &back);
    let direct_down = scp_mibs(&direct, "root:/tmp/big.bin", &back);

    println!("SSH gateway vs. direct to the guest's sshd (dev image, QEMU; median of {RUNS} / best of 2)");
    println!("{:<28} {:>12} {:>12} {:>10}", "", "gateway", "direct", "ratio");
    println!(
        "{:<28} {:>9.1} ms {:>9.1} ms {:>+8.1} ms",
        "session setup (ssh vm true)",
        gw_setup,
        direct_setup,
        gw_setup - direct_setup
    );
    for (what, g, dr) in [("scp 50 MiB up", gw_up, direct_up), ("scp 50 MiB down", gw_down, direct_down)] {
        println!("{:<28} {:>7.1} MiB/s {:>7.1} MiB/s {:>9.0}%", what, g, dr, 100.0 * g / dr);
    }
    let (code, _, _) = d.den(&["vm", "stop", "dev1"]);
    assert_eq!(code, 0);
}
