//! The qemu engine with real guests: the `base` image booted under QEMU (TCG on this project's
//! machines), reached through its agent, paused, resumed, shut down, re-adopted as a restarted
//! `dend` would, killed. Boots are serialized (2 cores); a boot that stalls (no console output
//! for 30 s, a known TCG hiccup) is killed and retried once. Every QEMU a test starts is
//! killed by a guard when the test ends, also on failure.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use den_agent_proto::AgentClient;
use den_engine::{self as engine, Accel, DiskSpec, EndReason, EngineKind, LaunchSpec, Running, VmState};
use den_images::ImageRecord;
use den_tests::images::{build_builtin, shared_store};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One guest at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const STALL: Duration = Duration::from_secs(30);
const BOOT_LIMIT: Duration = Duration::from_secs(240);

/// Kills every recorded process (if it is still the same process) when dropped.
#[derive(Default)]
struct KillGuard(Mutex<Vec<(i32, u64)>>);

impl KillGuard {
    fn add(&self, r: &Running) {
        self.0.lock().unwrap().push((r.pid, r.start_time));
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        for (pid, start) in self.0.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            if engine::process::start_time(pid) == Some(start) {
                // SAFETY: kill(2) on a process this test started (pid and start time match).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// A booted guest.
struct Booted {
    _dir: tempfile::TempDir,
    spec: LaunchSpec,
    running: Running,
    agent: AgentClient,
}

fn base_image() -> (PathBuf, PathBuf, PathBuf, ImageRecord) {
    let store = shared_store();
    let image = build_builtin(&store, "base");
    let art = |role: &str| store.get(&image.artifacts[role], false).unwrap();
    (art("kernel"), art("initramfs"), art("rootfs"), image)
}

fn spec_in(dir: &Path, id: &str) -> LaunchSpec {
    let (kernel, initrd, rootfs, image) = base_image();
    let disk = dir.join("root.img");
    let st = std::process::Command::new("cp").arg("--sparse=always").arg(&rootfs).arg(&disk).status().unwrap();
    assert!(st.success(), "copying {} failed", rootfs.display());
    LaunchSpec {
        id: id.into(),
        dir: dir.to_path_buf(),
        cpus: 2,
        memory_mib: 512,
        kernel,
        initrd,
        cmdline: image.cmdline,
        disks: vec![DiskSpec { path: disk, read_only: false }],
        nics: vec![],
        firmware: None,
        kernel_elf: None,
        shares: vec![],
    }
}

/// Resolves when `log` has not grown for [`STALL`].
async fn stalled(log: PathBuf) -> String {
    let (mut len, mut changed) = (0, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        if now != len {
            (len, changed) = (now, Instant::now());
        } else if changed.elapsed() > STALL {
            return format!("no console output for {STALL:?} ({len} bytes so far)");
        }
    }
}

/// Launches the base image under QEMU and waits for its agent, retrying a stalled boot once.
async fn boot(id: &str, guard: &KillGuard) -> Booted {
    for attempt in 1..=2 {
        let dir = tempfile::Builder::new().prefix("den-eng-").tempdir().unwrap();
        let spec = spec_in(dir.path(), id);
        let t = Instant::now();
        let running = engine::launch(EngineKind::Qemu, &spec).await.unwrap();
        guard.add(&running);
        let launched = t.elapsed();
        let vm = engine::adopt(&running).await.unwrap();
        let res = tokio::select! {
            r = vm.agent(BOOT_LIMIT) => r.map_err(|e| e.to_string()),
            why = stalled(dir.path().join("console.log")) => Err(why),
        };
        match res {
            Ok(agent) => {
                eprintln!("{id}: QMP up {launched:?} after launch, agent after {:?} (attempt {attempt})", t.elapsed());
                return Booted { _dir: dir, spec, running, agent };
            }
            Err(why) => {
                let console = engine::console_recent(&running, 2000).await.unwrap_or_default();
                engine::kill(&running).await.unwrap();
                assert!(attempt < 2, "{id}: boot failed twice: {why}; console:\n{console}");
                eprintln!("{id}: boot attempt {attempt} failed ({why}); retrying; console:\n{console}");
            }
        }
    }
    unreachable!()
}

async fn sh(agent: &AgentClient, cmd: &str) -> String {
    let out = agent.exec_output(&["/bin/sh", "-c", cmd], Bytes::new(), den_tests::EXEC).await.unwrap();
    assert_eq!(out.code, Some(0), "`{cmd}`: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_guest_exec_pause_resume_and_graceful_shutdown() {
    let _one = SERIAL.lock().await;
    let guard = KillGuard::default();
    let (.., image) = base_image();
    let g = boot("eng-life", &guard).await;
    let vm = engine::adopt(&g.running).await.unwrap();
    assert_eq!(vm.accel(), Some(engine::qemu::choose_accel().accel));
    if vm.accel() == Some(Accel::Tcg) {
        assert!(engine::qemu::choose_accel().warning.unwrap().contains("TCG"));
    }
    assert_eq!(sh(&g.agent, "uname -r").await, image.kernel_release);
    assert_eq!(engine::state(&g.running).await.unwrap(), VmState::Running);

    engine::pause(&g.running).await.unwrap();
    assert_eq!(engine::state(&g.running).await.unwrap(), VmState::Paused);
    let paused = tokio::time::timeout(Duration::from_secs(3), g.agent.info()).await;
    assert!(paused.is_err(), "the agent answered while its VM was paused");
    engine::resume(&g.running).await.unwrap();
    assert_eq!(engine::state(&g.running).await.unwrap(), VmState::Running);
    let t = Instant::now();
    let info = tokio::time::timeout(Duration::from_secs(30), g.agent.info()).await;
    assert!(matches!(info, Ok(Ok(_))), "no agent answer after resume");
    eprintln!("agent answered {:?} after resume", t.elapsed());

    let t = Instant::now();
    let ended = vm.shutdown(Duration::from_secs(60)).await.unwrap();
    eprintln!("graceful shutdown took {:?}: {ended:?}", t.elapsed());
    assert_eq!(ended.reason, EndReason::PowerOff, "{ended:?}");
    assert!(ended.detail.contains("guest-shutdown"), "{}", ended.detail);
    assert!(!engine::is_alive(&g.running));
    assert!(matches!(engine::pause(&g.running).await, Err(engine::EngineError::Gone { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_vm_is_readopted_from_its_stored_record_and_killed() {
    let _one = SERIAL.lock().await;
    let guard = KillGuard::default();
    let g = boot("eng-adopt", &guard).await;
    assert_eq!(sh(&g.agent, "echo before").await, "before");

    // As a restarted dend: only the stored record is left.
    let stored = serde_json::to_string(&g.running).unwrap();
    let Booted { _dir, spec, running, agent } = g;
    drop(agent);
    engine::forget(&running);
    let restored: Running = serde_json::from_str(&stored).unwrap();
    assert!(engine::is_alive(&restored));
    let t = Instant::now();
    let vm = engine::adopt(&restored).await.unwrap();
    assert_eq!(vm.state().await.unwrap(), VmState::Running);
    let agent = engine::agent(&restored).await.unwrap();
    eprintln!("re-adopted with QMP and agent in {:?}", t.elapsed());
    assert_eq!(sh(&agent, "echo after").await, "after");

    let e = engine::launch(EngineKind::Qemu, &spec).await.unwrap_err().to_string();
    assert!(e.contains("still runs"), "a second launch into a live VM's directory: {e}");

    let waiter = tokio::spawn({
        let r = restored.clone();
        async move { engine::wait_exit(&r).await }
    });
    engine::kill(&restored).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap();
    assert_eq!(ended.reason, EndReason::Killed, "{ended:?}");
    assert!(!engine::is_alive(&restored));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_engine_process_is_noticed() {
    let _one = SERIAL.lock().await;
    let guard = KillGuard::default();
    let g = boot("eng-kill9", &guard).await;
    let waiter = tokio::spawn({
        let r = g.running.clone();
        async move { engine::wait_exit(&r).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished());
    let t = Instant::now();
    // SAFETY: kill(2) on the QEMU this test started, as an outside `kill -9` would.
    assert_eq!(unsafe { libc::kill(g.running.pid, libc::SIGKILL) }, 0);
    let ended = tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap();
    eprintln!("kill -9 noticed after {:?}: {ended:?}", t.elapsed());
    assert_eq!(ended.reason, EndReason::Killed, "{ended:?}");
    assert_eq!(ended.status.and_then(|s| s.signal), Some(libc::SIGKILL));
    assert!(!engine::is_alive(&g.running));
}

#[tokio::test]
async fn a_qemu_that_fails_at_start_is_reported_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0u8; 4096]).unwrap();
    let spec = LaunchSpec {
        id: "eng-junk".into(),
        dir: dir.path().to_path_buf(),
        cpus: 1,
        memory_mib: 64,
        kernel: junk.clone(),
        initrd: junk,
        cmdline: String::new(),
        disks: vec![],
        nics: vec![],
        firmware: None,
        kernel_elf: None,
        shares: vec![],
    };
    let t = Instant::now();
    let e = engine::launch(EngineKind::Qemu, &spec).await.unwrap_err().to_string();
    eprintln!("refused in {:?}: {e}", t.elapsed());
    assert!(e.contains("exited at start (exit code 1)") && e.contains("engine.log"), "{e}");
    assert!(e.to_lowercase().contains("kernel"), "QEMU's own words are in the error: {e}");
}
