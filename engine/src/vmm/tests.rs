//! den-vmm engine: command line, exit codes, and the API client against a fake API server.

use super::*;
use crate::{DiskSpec, NicSpec};
use std::sync::{Arc, Mutex};
use tokio::net::UnixListener;

fn spec(dir: &Path) -> LaunchSpec {
    LaunchSpec {
        id: "web1".into(),
        dir: dir.to_path_buf(),
        cpus: 2,
        memory_mib: 256,
        kernel: "/k/vmlinuz".into(),
        initrd: "/k/initrd".into(),
        cmdline: "console=ttyS0 quiet".into(),
        disks: vec![
            DiskSpec { path: "/d/root.img".into(), read_only: false },
            DiskSpec { path: "/d/seed.img".into(), read_only: true },
        ],
        nics: vec![NicSpec { tap: "tap0".into(), mac: "52:54:00:12:34:56".into() }],
        firmware: None,
        kernel_elf: None,
        shares: vec![],
    }
}

#[test]
fn command_line() {
    let a: Vec<String> = args(&spec(Path::new("/run/den/web1"))).iter().map(|s| s.to_string_lossy().into()).collect();
    let cid = cid_for("web1");
    let want = [
        "boot",
        "--kernel",
        "/k/vmlinuz",
        "--initrd",
        "/k/initrd",
        "--cmdline",
        "console=ttyS0 quiet",
        "--cpus",
        "2",
        "--memory-mib",
        "256",
        "--api-sock",
        "/run/den/web1/api.sock",
        "--console",
        "socket:/run/den/web1/console.sock",
        "--vsock",
        &format!("{cid},/run/den/web1/vsock.sock"),
        "--disk",
        "/d/root.img",
        "--disk",
        "/d/seed.img,ro",
        "--net",
        "tap0,mac=52:54:00:12:34:56",
    ];
    assert_eq!(a, want);
    // With an ELF vmlinux beside the bzImage, den-vmm boots that.
    let elf = LaunchSpec { kernel_elf: Some("/k/vmlinux".into()), ..spec(Path::new("/run/den/web1")) };
    assert_eq!(args(&elf)[2], OsString::from("/k/vmlinux"));
    let (fds, jailed) = jail::args(&elf, "hardware").unwrap();
    assert_eq!(fds[1], "ro:/k/vmlinux");
    assert_eq!(jailed[..8], ["boot", "--kvm", "fd:3", "--kvm-kind", "hardware", "--kernel", "fd:4", "--initrd"]);
}

#[test]
fn cid_is_deterministic_and_never_reserved() {
    assert_eq!(cid_for("web1"), cid_for("web1"));
    assert_ne!(cid_for("web1"), cid_for("web2"));
    for id in ["", "a", "web1", "x".repeat(64).as_str()] {
        let c = cid_for(id);
        assert!((3..u32::MAX).contains(&c), "{id}: {c}");
    }
}

#[test]
fn exit_codes() {
    let code = |c| Some(ExitStatus { code: Some(c), signal: None });
    assert_eq!(end_of(code(0), false).0, EndReason::PowerOff);
    assert_eq!(end_of(code(0), true).0, EndReason::HostStop);
    assert_eq!(end_of(code(4), false).0, EndReason::Crash);
    assert_eq!(end_of(code(10), false).0, EndReason::Reboot);
    assert_eq!(end_of(code(3), false).0, EndReason::Failed);
    assert_eq!(end_of(code(1), false).0, EndReason::Failed);
    assert_eq!(end_of(Some(ExitStatus { code: None, signal: Some(9) }), false).0, EndReason::Killed);
    let (r, why) = end_of(None, false);
    assert_eq!(r, EndReason::Unknown);
    assert!(why.contains("unknown"), "{why}");
}

/// A fake den-vmm API: answers like vmm/src/api.rs, records the ops it saw; `stop` sends
/// SIGTERM to `stop_pid`.
pub(crate) fn fake_api(path: &Path, stop_pid: Option<i32>) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = UnixListener::bind(path).unwrap();
    let log = seen.clone();
    tokio::spawn(async move {
        let state = Arc::new(Mutex::new("running"));
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            let (log, state) = (log.clone(), state.clone());
            tokio::spawn(async move {
                let (rd, mut wr) = sock.into_split();
                let mut line = String::new();
                BufReader::new(rd).read_line(&mut line).await.unwrap();
                let req: Value = serde_json::from_str(&line).unwrap();
                let op = req["op"].as_str().unwrap().to_string();
                log.lock().unwrap().push(op.clone());
                let reply = match op.as_str() {
                    "pause" => {
                        *state.lock().unwrap() = "paused";
                        json!({"ok": true, "result": {"state": "paused"}})
                    }
                    "resume" => {
                        *state.lock().unwrap() = "running";
                        json!({"ok": true, "result": {"state": "running"}})
                    }
                    "info" => json!({"ok": true, "result": {"state": *state.lock().unwrap(), "pid": 1}}),
                    "console_recent" => json!({"ok": true, "result": {"output": "héllo\nlogin: "}}),
                    "ctrl_alt_del" => {
                        json!({"ok": false, "error": {"code": "busy", "message": "the guest is not reading its keyboard; use stop instead"}})
                    }
                    "garbage" => json!("not an object"),
                    "stop" if stop_pid.is_some() => {
                        if let Some(pid) = stop_pid {
                            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGTERM);
                        }
                        json!({"ok": true, "result": {"state": "stopping"}})
                    }
                    _ => json!({"ok": false, "error": {"code": "invalid_request", "message": "unknown op"}}),
                };
                wr.write_all(format!("{reply}\n").as_bytes()).await.unwrap();
            });
        }
    });
    seen
}

#[tokio::test]
async fn api_client_requests_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let seen = fake_api(&path, None);
    let api = VmmApi::new(&path);
    assert_eq!(api.state().await.unwrap(), VmState::Running);
    assert_eq!(api.call("pause").await.unwrap(), json!({"state": "paused"}));
    assert_eq!(api.state().await.unwrap(), VmState::Paused);
    api.call("resume").await.unwrap();
    assert_eq!(api.console_recent().await.unwrap(), "héllo\nlogin: ");
    let e = api.call("ctrl_alt_del").await.unwrap_err().to_string();
    assert!(e.contains("`ctrl_alt_del`") && e.contains("busy: the guest is not reading"), "{e}");
    let e = api.call("garbage").await.unwrap_err().to_string();
    assert!(e.contains("invalid_reply"), "{e}");
    assert_eq!(*seen.lock().unwrap(), ["info", "pause", "info", "resume", "console_recent", "ctrl_alt_del", "garbage"]);
    let e = VmmApi::new(&dir.path().join("none.sock")).call("info").await.unwrap_err().to_string();
    assert!(e.contains("none.sock") && e.contains("`info`: connect"), "{e}");
}

#[tokio::test]
async fn a_vmm_that_exits_at_start_is_reported_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("fake-vmm");
    std::fs::write(&bin, "#!/bin/sh\necho 'den-vmm: this host cannot run Linux' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let e = launch_in(&bin, None, &[], &spec(dir.path())).await.unwrap_err().to_string();
    assert!(e.contains("exited at start (exit code 3: this host cannot run Linux guests"), "{e}");
    assert!(e.contains("den-vmm: this host cannot run Linux"), "{e}");
}
