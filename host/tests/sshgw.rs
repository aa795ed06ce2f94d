//! The SSH gateway with the real OpenSSH client and a real QEMU guest: `ssh vm@host cmd` runs
//! the command in the VM through its agent and returns its output and exit status; the key
//! picks the Den user, `user+vm` names one; wrong keys, users without the operator role, unknown
//! and stopped VMs are refused with one clear line; the host key survives a dend restart.

use den_tests::dend::Dend;
use den_tests::images;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"]).arg(&path).status();
    assert!(st.is_ok_and(|s| s.success()), "ssh-keygen");
    path
}

fn ssh(d: &Dend, key: &Path, target: &str, cmd: &str) -> Output {
    let addr = d.ssh_addr();
    let (host, port) = addr.rsplit_once(':').unwrap();
    Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "-i"])
        .arg(key)
        .args(["-p", port, &format!("{target}@{host}"), cmd])
        .output()
        .expect("ssh runs")
}

fn text(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn ok(d: &Dend, args: &[&str]) {
    let (code, _, err) = d.den(args);
    assert_eq!(code, 0, "{args:?}: {err}");
}

#[test]
fn ssh_commands_reach_the_vm_through_the_gateway() {
    let store = images::shared_store();
    let base = images::build_builtin(&store, "base");
    let mut d = Dend::start(Path::new(env!("CARGO_BIN_EXE_dend")));
    let keys = tempfile::tempdir().unwrap();
    let (alice, gus, stranger) =
        (keygen(keys.path(), "alice"), keygen(keys.path(), "gus"), keygen(keys.path(), "stranger"));
    ok(&d, &["user", "add", "alice", "--no-password"]);
    ok(&d, &["user", "add", "gus", "--no-password"]);
    for (u, k) in [("alice", &alice), ("gus", &gus)] {
        ok(&d, &["user", "key", "add", u, &format!("@{}.pub", k.display())]);
    }
    ok(
        &d,
        &["vm", "create", "web1", "--image", "base", "--memory", "256", "--engine", "qemu", "--no-network", "--start"],
    );
    ok(&d, &["user", "grant", "alice", "web1", "operator"]);
    ok(&d, &["user", "grant", "gus", "web1", "viewer"]);

    // A command and its output; the agent may still be starting at first.
    let t = Instant::now();
    let out = loop {
        let o = text(&ssh(&d, &alice, "web1", "uname -r"));
        if o.0 == 0 {
            break o;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "{o:?}\n{}", d.log());
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(out.1.trim(), base.kernel_release);
    let (code, _, _) = text(&ssh(&d, &alice, "web1", "false"));
    assert_eq!(code, 1, "the exit status comes back");
    let (code, so, se) = text(&ssh(&d, &alice, "alice+web1", "echo out; echo err >&2; exit 7"));
    assert_eq!((code, so.trim(), se.trim()), (7, "out", "err"), "stdout, stderr and status");

    // Refusals, one clear line each.
    let (code, _, se) = text(&ssh(&d, &stranger, "web1", "true"));
    assert!(code == 255 && se.contains("Permission denied"), "unknown key: {se}");
    let (code, _, se) = text(&ssh(&d, &alice, "gus+web1", "true"));
    assert!(code == 255 && se.contains("Permission denied"), "alice's key is not gus's: {se}");
    let (code, _, se) = text(&ssh(&d, &gus, "web1", "true"));
    assert!(code == 1 && se.contains("may not enter VM `web1`"), "viewer: {se}");
    let (code, _, se) = text(&ssh(&d, &alice, "nope", "true"));
    assert!(code == 1 && se.contains("VM `nope` not found"), "{se}");

    // The host key stays the same across a restart; a stopped VM says how to start it.
    let hostkey = std::fs::read(d.dir.path().join("ssh/ssh_host_ed25519_key")).unwrap();
    d.kill9();
    d.spawn();
    assert_eq!(std::fs::read(d.dir.path().join("ssh/ssh_host_ed25519_key")).unwrap(), hostkey);
    ok(&d, &["vm", "stop", "web1"]);
    let (code, _, se) = text(&ssh(&d, &alice, "web1", "true"));
    assert!(code == 1 && se.contains("is stopped; start it with `den vm start web1`"), "{se}");
    let (_, events) = d.api("GET", "/api/v1/events", b"");
    let has = |k: &str| events.as_array().into_iter().flatten().any(|e| e["kind"] == k);
    assert!(has("ssh.exec") && has("ssh.auth_failed"), "audited: {events}");
    ok(&d, &["vm", "rm", "web1"]);
}
