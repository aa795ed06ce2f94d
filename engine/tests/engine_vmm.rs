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
    let running = engine::launch_vmm(bin, &["--tiny-test-guest"], spec).await.unwrap();
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
    let e = engine::launch_vmm(&bin, &[], &s).await.unwrap_err().to_string();
    assert!(e.contains("exit code 3") && e.contains("PVM"), "{e}");
}
