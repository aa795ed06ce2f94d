//! The vmm engine with a real den-vmm process. Linux guests of den-vmm run only in the KVM lab;
//! here den-vmm runs its tiny hand-made halt kernel (`--tiny-test-guest`), which is enough to
//! drive the API (state, pause, resume, console, stop), re-adoption, the refusal of a Linux
//! boot on a PVM-backed /dev/kvm, and `kill -9`. Needs `target/debug/den-vmm` (built by
//! `cargo build --workspace`); skipped without it.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_engine::{self as engine, EndReason, EngineKind, LaunchSpec, Running, VmState};
use den_tests::images::target_dir;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn den_vmm() -> Option<PathBuf> {
    let p = target_dir().join("debug/den-vmm");
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("skipped: {} not built (run `cargo build --workspace`)", p.display());
        None
    }
}

fn spec(dir: &Path, id: &str) -> LaunchSpec {
    let kernel = dir.join("halt.elf");
    std::fs::write(&kernel, den_vmm::tiny_kernel::halt_kernel()).unwrap();
    let initrd = dir.join("initrd");
    std::fs::write(&initrd, [0u8; 512]).unwrap();
    LaunchSpec {
        id: id.into(),
        dir: dir.to_path_buf(),
        cpus: 1,
        memory_mib: 64,
        kernel,
        initrd,
        cmdline: "console=ttyS0".into(),
        disks: vec![],
        nics: vec![],
        firmware: None,
        kernel_elf: None,
        shares: vec![],
    }
}

/// Kills the process if the test ends early.
struct KillGuard(i32, u64);

impl Drop for KillGuard {
    fn drop(&mut self) {
        if engine::process::start_time(self.0) == Some(self.1) {
            // SAFETY: kill(2) on the den-vmm this test started (pid and start time match).
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

async fn launch(bin: &Path, spec: &LaunchSpec) -> (Running, KillGuard) {
    let t = Instant::now();
    let running = engine::launch_vmm(bin, None, &["--tiny-test-guest"], spec).await.unwrap();
    eprintln!("den-vmm API up {:?} after launch", t.elapsed());
    let guard = KillGuard(running.pid, running.start_time);
    (running, guard)
}

#[tokio::test]
async fn den_vmm_is_driven_readopted_and_stopped() {
    let Some(bin) = den_vmm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (running, _guard) = launch(&bin, &spec(dir.path(), "vmm-tiny")).await;
    assert_eq!(running.engine, EngineKind::Vmm);
    assert_eq!(engine::state(&running).await.unwrap(), VmState::Running);
    engine::pause(&running).await.unwrap();
    assert_eq!(engine::state(&running).await.unwrap(), VmState::Paused);
    engine::resume(&running).await.unwrap();
    assert_eq!(engine::state(&running).await.unwrap(), VmState::Running);
    let t = Instant::now();
    while !engine::console_recent(&running, 4096).await.unwrap().contains("den-tiny halt") {
        assert!(t.elapsed() < Duration::from_secs(10), "the tiny guest printed nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // As a restarted dend.
    let stored = serde_json::to_string(&running).unwrap();
    engine::forget(&running);
    let restored: Running = serde_json::from_str(&stored).unwrap();
    let vm = engine::adopt(&restored).await.unwrap();
    assert_eq!(vm.state().await.unwrap(), VmState::Running);

    // The halt kernel has no agent and does not read its keyboard: the graceful shutdown
    // ends in `stop` (exit code 0).
    let t = Instant::now();
    let ended = vm.shutdown(Duration::from_secs(1)).await.unwrap();
    eprintln!("shutdown escalated to stop in {:?}: {ended:?}", t.elapsed());
    assert_eq!(ended.reason, EndReason::HostStop, "{ended:?}");
    assert_eq!(ended.status.and_then(|s| s.code), Some(0));
    assert!(ended.detail.contains("did not power off"), "{}", ended.detail);
    assert!(!engine::is_alive(&restored));
}

#[tokio::test]
async fn den_vmm_kill_9_is_noticed_and_a_linux_boot_on_pvm_is_refused() {
    let Some(bin) = den_vmm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = spec(dir.path(), "vmm-kill");
    let (running, _guard) = launch(&bin, &s).await;
    let waiter = tokio::spawn({
        let r = running.clone();
        async move { engine::wait_exit(&r).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // SAFETY: kill(2) on the den-vmm this test started, as an outside `kill -9` would.
    assert_eq!(unsafe { libc::kill(running.pid, libc::SIGKILL) }, 0);
    let ended = tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap();
    assert_eq!(ended.reason, EndReason::Killed, "{ended:?}");

    if !Path::new("/sys/module/kvm_pvm").exists() {
        return;
    }
    let e = engine::launch_vmm(&bin, None, &[], &s).await.unwrap_err().to_string();
    assert!(e.contains("exit code 3") && e.contains("PVM"), "{e}");
}

/// A jail policy for tests: den-jailer from the same build, uids of their own.
fn test_jail(bin: &Path) -> Option<engine::vmm::jail::JailPolicy> {
    let jailer = bin.with_file_name("den-jailer");
    let cgroups = Path::new("/sys/fs/cgroup");
    if !nix::unistd::geteuid().is_root() || !jailer.is_file() || !den_jailer::cgroup::can_limit_memory(cgroups) {
        eprintln!("skipped: needs root, {} and a cgroup memory controller", jailer.display());
        return None;
    }
    Some(engine::vmm::jail::JailPolicy { jailer, uid_base: 2_000_100_000, uids: 1000, cgroup_root: cgroups.into() })
}

/// A field of `/proc/<pid>/status`.
fn status_field(pid: i32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string()).unwrap_or_default()
}

#[tokio::test]
async fn a_jailed_den_vmm_is_driven_readopted_after_kill_of_dend_and_its_cgroup_removed() {
    let Some(bin) = den_vmm() else { return };
    let Some(jail) = test_jail(&bin) else { return };
    let dir = tempfile::tempdir().unwrap();
    // With a shared folder: dend's virtiofsd, which den-jailer connects den-vmm to.
    let shared = tempfile::tempdir().unwrap();
    let share = engine::ShareSpec { tag: "den0".into(), host: shared.path().into(), readonly: false };
    let s = LaunchSpec { shares: vec![share], ..spec(dir.path(), "vmm-jailed") };
    let running = engine::launch_vmm(&bin, Some(&jail), &["--tiny-test-guest"], &s).await.unwrap();
    let _guard = KillGuard(running.pid, running.start_time);
    let virtiofsd = engine::virtiofs::recorded(dir.path());
    assert_eq!(virtiofsd.len(), 1, "one virtiofsd for the share");
    let _virtiofsd_guard = KillGuard(virtiofsd[0].pid, virtiofsd[0].start_time);
    assert!(engine::process::alive(virtiofsd[0]));
    // den-vmm talked to it at start (GET_FEATURES): virtiofsd logged the connection.
    let log = std::fs::read_to_string(dir.path().join("virtiofsd.log")).unwrap_or_default();
    let connected = ["Received vhost-user socket connection", "Client connected"];
    assert!(connected.iter().any(|c| log.contains(c)), "virtiofsd saw no connection:\n{log}");
    let uid: u32 = status_field(running.pid, "Uid:").split_whitespace().next().unwrap().parse().unwrap();
    assert!((jail.uid_base..jail.uid_base + jail.uids).contains(&uid), "den-vmm runs as a jail uid, not {uid}");
    assert_eq!(status_field(running.pid, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(running.pid, "CapInh:"), "0000000000000000");
    let name = den_jailer::cgroup::group_name("vmm-jailed", running.pid as u32);
    let in_group =
        ["/sys/fs/cgroup/memory/den", "/sys/fs/cgroup/den"].iter().any(|d| Path::new(d).join(&name).is_dir());
    assert!(in_group, "den-vmm is in its own cgroup {name}");
    // The sockets are where they were, bound by den-jailer as root, not by den-vmm.
    use std::os::unix::fs::MetadataExt;
    for sock in [&running.control, &running.console, &running.agent] {
        let m = std::fs::metadata(sock).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o600), "{}", sock.display());
    }
    assert_eq!(engine::state(&running).await.unwrap(), VmState::Running);
    engine::pause(&running).await.unwrap();
    assert_eq!(engine::state(&running).await.unwrap(), VmState::Paused);
    engine::resume(&running).await.unwrap();
    let t = Instant::now();
    while !engine::console_recent(&running, 4096).await.unwrap().contains("den-tiny halt") {
        assert!(t.elapsed() < Duration::from_secs(10), "the tiny guest printed nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A second launch of the same VM is refused while this one runs.
    let e = engine::launch_vmm(&bin, Some(&jail), &["--tiny-test-guest"], &s).await.unwrap_err().to_string();
    assert!(e.contains("already") || e.contains("answers"), "{e}");

    // As a restarted dend: same pid, same sockets.
    engine::forget(&running);
    let vm = engine::adopt(&running).await.unwrap();
    assert_eq!(vm.state().await.unwrap(), VmState::Running);
    // A wedged virtiofsd (as a guest can make one): stopped, it cannot notice den-vmm hang up,
    // and must still not outlive its VM.
    // SAFETY: kill(2) on the virtiofsd this test's launch started (pid and start time checked).
    assert!(engine::process::alive(virtiofsd[0]) && unsafe { libc::kill(virtiofsd[0].pid, libc::SIGSTOP) } == 0);
    let ended = vm.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!(ended.reason, EndReason::HostStop, "{ended:?}");
    let t = Instant::now();
    let name = den_jailer::cgroup::group_name("vmm-jailed", running.pid as u32);
    let groups = [format!("/sys/fs/cgroup/den/{name}"), format!("/sys/fs/cgroup/memory/den/{name}")];
    while groups.iter().any(|g| Path::new(g).exists()) {
        assert!(t.elapsed() < Duration::from_secs(10), "the VM's cgroup was not removed after its den-vmm ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while engine::process::alive(virtiofsd[0]) {
        assert!(t.elapsed() < Duration::from_secs(10), "the share's (wedged) virtiofsd outlived its den-vmm");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
