//! The SSH gateway with the real OpenSSH client and a real QEMU guest without sshd (`base`):
//! sessions run through the guest agent. `ssh vm@host cmd` returns output and exit status; an
//! interactive session in a real terminal (tmux) runs commands, sees a resize and is recorded;
//! stdin streams; `ssh -L` reaches a server in the guest; passwords work; a plain `ssh host`
//! gets a menu and a stopped VM is offered to be started; the key picks the Den user,
//! `user+vm` names one; wrong keys, users without the operator role, unknown and stopped VMs
//! are refused with one clear line; repeated failures are rate-limited; the host key survives a
//! dend restart.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::images;
use den_tests::ssh::{interactive_resize, keygen, text, Client, Tmux};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn ok(d: &Dend, args: &[&str]) {
    let (code, _, err) = d.den(args);
    assert_eq!(code, 0, "{args:?}: {err}");
}

#[test]
fn ssh_through_the_agent_to_a_guest_without_sshd() {
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
    let (a, g, s) =
        (Client::new(&d.ssh_addr(), &alice), Client::new(&d.ssh_addr(), &gus), Client::new(&d.ssh_addr(), &stranger));

    // A command, its output and exit status; stdout and stderr apart; stdin streams.
    let out = a.ssh_until_ok("web1", "uname -r", Duration::from_secs(120));
    assert_eq!(out.trim(), base.kernel_release);
    assert_eq!(text(&a.ssh("web1", &[], "false")).0, 1, "the exit status comes back");
    let (code, so, se) = text(&a.ssh("alice+web1", &[], "echo out; echo err >&2; exit 7"));
    assert_eq!((code, so.trim(), se.trim()), (7, "out", "err"), "stdout, stderr and status");
    let piped = Command::new("sh")
        .arg("-c")
        .arg(format!("head -c 3000000 /dev/zero | tr '\\0' x | ssh {} web1@{} 'wc -c'", a.opts().join(" "), a.host))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&piped.stdout).trim(), "3000000", "stdin: {piped:?}");

    // An interactive session in a real terminal: a command, then a resize the guest sees.
    interactive_resize(&a, "web1", 100, 30);

    // Its recording: listed with user and VM, and it replays what was typed and shown.
    let (code, list) = d.api("GET", "/api/v1/ssh/sessions", b"");
    assert_eq!(code, 200, "{list}");
    let shell = list.as_array().into_iter().flatten().find(|s| s["kind"] == "shell").cloned();
    let shell = shell.unwrap_or_else(|| panic!("a shell session in {list}"));
    assert!(shell["user"] == "alice" && shell["vm"] == "web1" && shell["recorded"] == true, "{shell}");
    let (code, cast) =
        d.api_bytes("GET", &format!("/api/v1/ssh/sessions/{}/recording", shell["id"].as_str().unwrap()), b"");
    assert_eq!(code, 200);
    let id = shell["id"].as_str().unwrap();
    let (code, from_cli, err) = d.den(&["ssh", "recording", id]);
    assert_eq!((code, from_cli.as_bytes()), (0, &cast[..]), "den ssh recording: {err}");
    let (code, table, _) = d.den(&["ssh", "ls"]);
    assert!(code == 0 && table.lines().any(|l| l.starts_with(id) && l.contains("shell")), "den ssh ls: {table}");
    let cast = String::from_utf8_lossy(&cast);
    let mut lines = cast.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
    let header = lines.next().unwrap();
    assert_eq!((header["version"].as_u64(), header["width"].as_u64()), (Some(2), Some(80)), "{header}");
    let events: Vec<serde_json::Value> = lines.collect();
    let joined = |code: &str| -> String {
        events.iter().filter(|e| e[1] == code).filter_map(|e| e[2].as_str()).collect::<Vec<_>>().concat()
    };
    let output = joined("o");
    assert!(output.contains("echo typed-$((6*7)); stty size"), "the typed command, as echoed: {output}");
    assert!(output.contains("typed-42"), "its output: {output}");
    assert!(!events.iter().any(|e| e[1] == "i"), "keystrokes are not recorded");
    assert!(events.iter().any(|e| e[1] == "r" && e[2] == "100x30"), "resize recorded");

    // Keepalives from the client are answered.
    let alive = a.ssh("web1", &["-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2"], "sleep 4; echo alive");
    assert_eq!(text(&alive).1.trim(), "alive", "{:?}", text(&alive));

    // ssh -L to a server in the guest (through the agent: no guest port is open).
    d.sh_until_ok("web1", "mkdir -p /tmp/www && echo hello-from-guest > /tmp/www/index.html");
    let (code, _, err) =
        d.den(&["vm", "exec", "web1", "--", "busybox", "httpd", "-p", "127.0.0.1:8080", "-h", "/tmp/www"]);
    assert_eq!(code, 0, "{err}");
    let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut fwd = Command::new("ssh")
        .args(a.opts())
        .args(["-N", "-L", &format!("127.0.0.1:{local}:127.0.0.1:8080"), &format!("web1@{}", a.host)])
        .spawn()
        .unwrap();
    let mut page = String::new();
    for _ in 0..60 {
        let o = Command::new("curl").args(["-s", "--max-time", "5", &format!("http://127.0.0.1:{local}/")]).output();
        page = o.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        if page.contains("hello-from-guest") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = fwd.kill();
    let _ = fwd.wait();
    assert!(page.contains("hello-from-guest"), "ssh -L: {page:?}");

    // sftp needs an sftp-server in the guest: a clear failure here.
    let (code, _, _) = text(&a.ssh("web1", &["-s"], "nosuch"));
    assert_ne!(code, 0);

    // Passwords, for users who set one (`alice+web1` names the user).
    let (code, v) = d.api("PUT", "/api/v1/users/alice/password", br#"{"password":"s3cret-pass"}"#);
    assert_eq!(code, 200, "{v}");
    let askpass = keys.path().join("askpass");
    std::fs::write(&askpass, "#!/bin/sh\necho s3cret-pass\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pw = Command::new("setsid")
        .args(["-w", "ssh"])
        .args(den_tests::ssh::common_opts(&a.port))
        .args(["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password"])
        .arg(format!("alice+web1@{}", a.host))
        .arg("echo by-password")
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&pw.stdout).trim(), "by-password", "{}", String::from_utf8_lossy(&pw.stderr));

    // Refusals, one clear line each; a plain `ssh alice@host` is told which VMs it has.
    let (code, _, se) = text(&s.ssh("web1", &[], "true"));
    assert!(code == 255 && se.contains("Permission denied"), "unknown key: {se}");
    let (code, _, se) = text(&a.ssh("gus+web1", &[], "true"));
    assert!(code == 255 && se.contains("Permission denied"), "alice's key is not gus's: {se}");
    let (code, _, se) = text(&g.ssh("web1", &[], "true"));
    assert!(code == 1 && se.contains("may not enter VM `web1`"), "viewer: {se}");
    let (code, _, se) = text(&a.ssh("nope", &[], "true"));
    assert!(code == 1 && se.contains("VM `nope` not found"), "{se}");
    let (code, _, se) = text(&a.ssh("alice", &[], "true"));
    assert!(code == 1 && se.contains("name a VM") && se.contains("web1"), "{se}");

    // A plain `ssh alice@host` with a terminal gets a menu of alice's VMs.
    let tmux = Tmux::start(&a.interactive_cmd("alice"), 100, 30);
    tmux.wait_for("1) web1", Duration::from_secs(20));
    tmux.type_line("1");
    tmux.type_line("echo menu-$((40+2))");
    tmux.wait_for("menu-42", Duration::from_secs(30));
    drop(tmux);

    // The host key stays the same across a restart; a stopped VM says how to start it.
    let hostkey = std::fs::read(d.dir.path().join("ssh/ssh_host_ed25519_key")).unwrap();
    d.kill9();
    d.spawn();
    assert_eq!(std::fs::read(d.dir.path().join("ssh/ssh_host_ed25519_key")).unwrap(), hostkey);
    ok(&d, &["vm", "stop", "web1"]);
    let (a, s) = (Client::new(&d.ssh_addr(), &alice), Client::new(&d.ssh_addr(), &stranger));
    let (code, _, se) = text(&a.ssh("web1", &[], "true"));
    assert!(code == 1 && se.contains("is stopped; start it with `den vm start web1`"), "{se}");

    // With a terminal, a stopped VM is offered to be started, then entered.
    let tmux = Tmux::start(&a.interactive_cmd("web1"), 100, 30);
    tmux.wait_for("is stopped. Start it? [y/N]", Duration::from_secs(20));
    tmux.type_line("y");
    tmux.wait_for("starting `web1`", Duration::from_secs(10));
    tmux.type_line("echo started-$((40+2))");
    tmux.wait_for("started-42", Duration::from_secs(180));
    drop(tmux);
    assert_eq!(d.vm("web1")["state"], "running");
    ok(&d, &["vm", "stop", "web1"]);

    // Repeated failures from one address are limited: then even a good key is turned away.
    for _ in 0..5 {
        let _ = s.ssh("web1", &[], "true");
    }
    let (code, _, se) = text(&a.ssh("web1", &[], "true"));
    assert!(code == 1 && se.contains("too many failed logins"), "rate-limited: {se}");

    let (_, events) = d.api("GET", "/api/v1/events", b"");
    let has = |k: &str| events.as_array().into_iter().flatten().any(|e| e["kind"] == k);
    assert!(has("ssh.exec") && has("ssh.shell") && has("ssh.auth_failed") && has("ssh.forward"), "audited");
    assert!(has("ssh.rate_limited"), "audited");
    ok(&d, &["vm", "rm", "web1"]);
}
