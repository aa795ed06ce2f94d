//! The SSH gateway in front of a guest that runs sshd (the `dev` image under QEMU), with the
//! real OpenSSH client: the gateway logs into the guest's sshd through the agent with its own
//! key (installed at first boot, with fresh host keys pinned through the agent). Commands and
//! exit status, an interactive session with a resize, `scp` of 50 MiB both ways (SFTP and the
//! legacy protocol), `sftp` put/ls/get, `ssh -A`, a named guest account, and 20 concurrent
//! sessions.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::images;
use den_tests::ssh::{interactive_resize, keygen, text, Client};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn ok(d: &Dend, args: &[&str]) {
    let (code, _, err) = d.den(args);
    assert_eq!(code, 0, "{args:?}: {err}");
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn ssh_through_the_guests_sshd() {
    let store = images::shared_store();
    images::build_builtin(&store, "dev");
    let d = Dend::start(Path::new(env!("CARGO_BIN_EXE_dend")));
    let dir = tempfile::tempdir().unwrap();
    let alice = keygen(dir.path(), "alice");
    ok(&d, &["user", "add", "alice", "--no-password"]);
    ok(&d, &["user", "key", "add", "alice", &format!("@{}.pub", alice.display())]);
    ok(&d, &["vm", "create", "dev1", "--image", "dev", "--memory", "1024", "--engine", "qemu", "--no-network"]);
    ok(&d, &["vm", "start", "dev1"]);
    ok(&d, &["user", "grant", "alice", "dev1", "operator"]);
    let a = Client::new(&d.ssh_addr(), &alice);

    // Through sshd: the session is a real login (sshd's environment), the status comes back.
    let out = a.ssh_until_ok("dev1", "echo $SSH_CONNECTION; uname -s; id -un", Duration::from_secs(180));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() == 3 && !lines[0].is_empty(), "a login through sshd (it sets SSH_CONNECTION): {out}");
    assert_eq!(&lines[1..], ["Linux", "root"]);
    assert_eq!(text(&a.ssh("dev1", &[], "false")).0, 1, "the exit status comes back");
    let (_, so, _) = text(&a.ssh("dev1:dev", &[], "id -un"));
    assert_eq!(so.trim(), "dev", "a named guest account");
    let (_, events) = d.api("GET", "/api/v1/events", b"");
    let pinned = events.as_array().into_iter().flatten().any(|e| e["kind"] == "ssh.host_key_pinned");
    assert!(pinned, "the guest's host key was pinned: {events}");

    // An interactive session with a resize.
    interactive_resize(&a, "dev1", 120, 40);

    // scp of 50 MiB both ways (SFTP protocol, then the legacy one), checksums kept.
    let big = dir.path().join("big.bin");
    let st = Command::new("head")
        .args(["-c", "52428800", "/dev/urandom"])
        .stdout(std::fs::File::create(&big).unwrap())
        .status();
    assert!(st.unwrap().success());
    let want = sha256(&big);
    for (mode, extra) in [("sftp", &[][..]), ("legacy", &["-O"][..])] {
        let o = a.scp(extra, big.to_str().unwrap(), "dev1:/tmp/big.bin");
        assert!(o.status.success(), "scp up ({mode}): {:?}", text(&o));
        let (_, sum, _) = text(&a.ssh("dev1", &[], "sha256sum /tmp/big.bin"));
        assert_eq!(sum.split_whitespace().next(), Some(want.as_str()), "in the guest ({mode})");
        let back = dir.path().join(format!("back-{mode}.bin"));
        let o = a.scp(extra, "dev1:/tmp/big.bin", back.to_str().unwrap());
        assert!(o.status.success(), "scp down ({mode}): {:?}", text(&o));
        assert_eq!(sha256(&back), want, "round trip ({mode})");
    }

    // sftp put, ls, get.
    let small = dir.path().join("note.txt");
    std::fs::write(&small, "sftp works\n").unwrap();
    let batch = dir.path().join("batch");
    let got = dir.path().join("got.txt");
    std::fs::write(
        &batch,
        format!("put {} /tmp/note.txt\nls -l /tmp/note.txt\nget /tmp/note.txt {}\n", small.display(), got.display()),
    )
    .unwrap();
    let o = a.sftp("dev1", &batch);
    assert!(o.status.success(), "sftp: {:?}", text(&o));
    assert!(text(&o).1.contains("/tmp/note.txt"), "ls: {:?}", text(&o));
    assert_eq!(std::fs::read_to_string(&got).unwrap(), "sftp works\n");

    // ssh -A: the guest sees the client's agent and its key.
    let agent_dir = tempfile::tempdir().unwrap();
    let sock = agent_dir.path().join("agent.sock");
    let mut agent =
        Command::new("ssh-agent").args(["-D", "-a"]).arg(&sock).stdout(std::process::Stdio::null()).spawn().unwrap();
    for _ in 0..50 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let added = Command::new("ssh-add").arg(&alice).env("SSH_AUTH_SOCK", &sock).output().unwrap();
    assert!(added.status.success(), "{added:?}");
    let o = Command::new("ssh")
        .args(a.opts())
        .args(["-A", &format!("dev1@{}", a.host), "ssh-add -l"])
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(text(&o).1.contains("alice (ED25519)"), "agent forwarding: {:?}", text(&o));

    // 20 sessions at once, all answered.
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let a = a.clone();
            std::thread::spawn(move || text(&a.ssh("dev1", &[], &format!("sleep 1; echo session-{i}"))))
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let (code, so, se) = t.join().unwrap();
        assert_eq!((code, so.trim()), (0, format!("session-{i}").as_str()), "{se}");
    }
    ok(&d, &["vm", "stop", "dev1"]);
    ok(&d, &["vm", "rm", "dev1"]);
}
