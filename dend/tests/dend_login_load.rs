//! Logins and connections under attack, against a real dend with the real `curl`, `openssl` and
//! `ssh` clients: 500 concurrent wrong-password logins from one address are counted before any
//! hash runs (at most five reach argon2) and leave dend's memory within a stated bound; the
//! admin still logs in with an SSH key afterwards (password and key logins have separate
//! budgets); a client that drips its request headers (slow loris) is cut off; connections over
//! the per-address cap are closed at once; an SSH client that never logs in is disconnected.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::ssh::{keygen, text, Client};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Concurrent wrong logins sent at once.
const GUESSES: usize = 500;
/// What dend's resident memory may grow by under them: two argon2 hashes at a time (19 MiB
/// each, given back when done) plus TLS and request buffers. Before the fix, 20 such logins
/// grew a release dend by ~490 MB for good; now 500 leave it within a few hundred kB.
const RSS_GROWTH_BOUND_KB: u64 = 48 * 1024;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn ok(d: &Dend, args: &[&str]) {
    let (code, _, err) = d.den(args);
    assert_eq!(code, 0, "{args:?}: {err}");
}

/// The SSH gateway disconnects a client that connects and never logs in.
fn ssh_idle_client_is_cut_off(addr: String) -> Duration {
    let mut tcp = TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 256];
    let n = tcp.read(&mut buf).unwrap_or(0);
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SSH-2.0-"), "the gateway greets first");
    // Send our identification, then nothing more.
    tcp.write_all(b"SSH-2.0-idle_client\r\n").unwrap();
    loop {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => continue,
        }
    }
    t0.elapsed()
}

#[test]
fn logins_and_connections_under_attack() {
    let d = Dend::start(Path::new(env!("CARGO_BIN_EXE_dend")));
    let keys = tempfile::tempdir().unwrap();
    let boss_key = keygen(keys.path(), "boss");
    let mut add = Command::new(den_tests::images::den_cli())
        .arg("--socket")
        .arg(d.socket())
        .args(["user", "add", "boss", "--role", "admin", "--password-stdin"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(b"boss-password-1\n").unwrap();
    assert!(add.wait().unwrap().success());
    ok(&d, &["user", "key", "add", "boss", &format!("@{}.pub", boss_key.display())]);
    let ssh_addr = d.ssh_addr();
    let idle = std::thread::spawn(move || ssh_idle_client_is_cut_off(ssh_addr));

    // 500 wrong passwords for `boss` at once, from one address.
    let pid = d.pid().expect("dend runs");
    let before = rss_kb(pid);
    let url = format!("https://{}/api/v1/login", d.https_addr());
    let body = json!({"user": "boss", "password": "not-the-password"}).to_string();
    let mut curl = Command::new("curl");
    curl.args(["-sk", "-Z", "--parallel-max", &GUESSES.to_string(), "--max-time", "60"]);
    curl.args(["-H", "Content-Type: application/json", "--data-binary", &body]);
    curl.args(["-w", "\ncode=%{http_code}\n"]);
    for _ in 0..GUESSES {
        curl.arg(&url);
    }
    let out = curl.output().unwrap();
    let codes: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("code="))
        .map(str::to_string)
        .collect();
    let count = |c: &str| codes.iter().filter(|x| *x == c).count();
    let (hashed, limited, closed) = (count("401"), count("429"), count("000"));
    let after = rss_kb(pid);
    println!(
        "{GUESSES} concurrent bad logins: {hashed} checked (401), {limited} refused before hashing (429), \
         {closed} connections over the cap closed; dend RSS {before} kB -> {after} kB"
    );
    assert_eq!(codes.len(), GUESSES, "curl answered for each: {codes:?}");
    let mut others: Vec<&String> = codes.iter().filter(|c| !["401", "429", "000"].contains(&c.as_str())).collect();
    others.dedup();
    assert_eq!(hashed + limited + closed, GUESSES, "only 401, 429 or a closed connection, not {others:?}");
    assert!(hashed <= 5, "at most the limit reaches the hash: {hashed}");
    assert!(limited > 0);
    assert!(after.saturating_sub(before) < RSS_GROWTH_BOUND_KB, "dend's memory: {before} kB -> {after} kB");

    // The right password is limited now too, but the admin's key still logs in.
    let (s, b, _) = d.https(
        "POST",
        "/api/v1/login",
        None,
        Some(&json!({"user": "boss", "password": "boss-password-1"}).to_string()),
    );
    assert_eq!((s, b["code"].as_str()), (429, Some("rate_limited")), "{b}");
    let (code, _, se) = text(&Client::new(&d.ssh_addr(), &boss_key).ssh("boss", &[], "true"));
    assert!(code != 0 && se.contains("name a VM"), "logged in with the key, then asked for a VM: {se}");
    assert!(!se.contains("too many"), "{se}");

    // A slow loris: TLS done, then one header line a second. It is cut off.
    let t0 = Instant::now();
    let drip = "printf 'GET /api/v1/host HTTP/1.1\\r\\nHost: x\\r\\n'; for i in $(seq 60); do sleep 1; printf 'X-%s: y\\r\\n' $i || exit; done";
    let loris = Command::new("sh")
        .arg("-c")
        .arg(format!("({drip}) | timeout 70 openssl s_client -quiet -connect {} 2>/dev/null", d.https_addr()))
        .output()
        .unwrap();
    let took = t0.elapsed();
    println!("slow-loris client cut off after {:.1} s", took.as_secs_f64());
    assert!(took < Duration::from_secs(40), "cut off in time: {took:?} {loris:?}");
    assert!(!String::from_utf8_lossy(&loris.stdout).contains("\"version\""), "never answered");

    // Connections over the per-address cap are closed at once; those within it wait for TLS.
    let held: Vec<TcpStream> = (0..128).map(|_| TcpStream::connect(d.https_addr()).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(d.https_addr()).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(extra.read(&mut [0u8; 16]).unwrap_or(0), 0, "the 129th connection is closed");
    held[0].set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    assert!((&held[0]).read(&mut [0u8; 16]).is_err(), "the first ones are still open (waiting for TLS)");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let (s, _, _) = d.https("GET", "/api/v1/openapi.json", None, None);
    assert_eq!(s, 200, "served again once they closed");

    let idle_took = idle.join().unwrap();
    println!("SSH client that never logged in cut off after {:.1} s", idle_took.as_secs_f64());
    assert!(idle_took < Duration::from_secs(60), "login grace: {idle_took:?}");
}
