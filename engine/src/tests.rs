//! Launch-spec validation and the [`Vm`] handle over a fake den-vmm (a shell process and a
//! fake API socket): the engine-independent logic without a real VM.

use super::*;
use std::time::Duration;

fn spec(dir: &Path) -> LaunchSpec {
    let kernel = dir.join("vmlinuz");
    std::fs::write(&kernel, b"k").unwrap();
    LaunchSpec {
        id: "vm-1".into(),
        dir: dir.to_path_buf(),
        cpus: 1,
        memory_mib: 256,
        kernel: kernel.clone(),
        initrd: kernel,
        cmdline: "console=ttyS0".into(),
        disks: vec![],
        nics: vec![NicSpec { tap: "den-tap1".into(), mac: "52:54:00:ab:cd:ef".into() }],
        firmware: None,
        kernel_elf: None,
        shares: vec![],
    }
}

#[test]
fn launch_specs_are_validated_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let ok = spec(dir.path());
    ok.validate().unwrap();
    let cases: Vec<(LaunchSpec, &str)> = vec![
        (LaunchSpec { id: "a,b".into(), ..ok.clone() }, "the id must be"),
        (LaunchSpec { dir: dir.path().join("nope"), ..ok.clone() }, "runtime directory"),
        (LaunchSpec { cpus: 0, ..ok.clone() }, "cpus = 0"),
        (LaunchSpec { memory_mib: 16, ..ok.clone() }, "memory_mib = 16"),
        (LaunchSpec { kernel: dir.path().join("missing"), ..ok.clone() }, "kernel"),
        (LaunchSpec { disks: vec![DiskSpec { path: "/nope.img".into(), read_only: true }], ..ok.clone() }, "/nope.img"),
        (
            LaunchSpec {
                nics: vec![NicSpec { tap: "a-very-long-tap-name".into(), mac: "52:54:00:00:00:01".into() }],
                firmware: None,
                kernel_elf: None,
                shares: vec![],
                ..ok.clone()
            },
            "TAP name",
        ),
        (
            LaunchSpec { nics: vec![NicSpec { tap: "t0".into(), mac: "52:54:00:00:00".into() }], ..ok.clone() },
            "MAC `52:54:00:00:00`",
        ),
    ];
    for (s, want) in cases {
        let e = s.validate().unwrap_err().to_string();
        assert!(e.starts_with(&format!("VM `{}`", s.id)) && e.contains(want), "{e} (wanted {want})");
    }
    let deep = dir.path().join("x".repeat(90));
    std::fs::create_dir(&deep).unwrap();
    let e = LaunchSpec { dir: deep, ..ok }.validate().unwrap_err().to_string();
    assert!(e.contains("too long for Unix socket paths"), "{e}");
}

/// Kills a test's process when the test ends, also when it fails half-way.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), nix::sys::signal::SIGKILL);
    }
}

/// A process that ends with exit code 0 on SIGTERM, as den-vmm does.
fn fake_vmm_process(dir: &Path) -> process::Proc {
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"]);
    process::spawn(cmd, "fake den-vmm", &dir.join("engine.log")).unwrap()
}

fn running_for(dir: &Path, p: process::Proc) -> Running {
    Running {
        engine: EngineKind::Vmm,
        pid: p.pid,
        start_time: p.start_time,
        console: dir.join("console.sock"),
        control: dir.join("api.sock"),
        agent: dir.join("vsock.sock"),
    }
}

#[tokio::test]
async fn a_vm_handle_over_a_fake_vmm() {
    let dir = tempfile::tempdir().unwrap();
    let p = fake_vmm_process(dir.path());
    let _guard = KillOnDrop(p.pid);
    tokio::time::sleep(Duration::from_millis(100)).await; // let sh install its trap
    let seen = vmm::tests::fake_api(&dir.path().join("api.sock"), Some(p.pid));
    let running = running_for(dir.path(), p);
    let stored = serde_json::to_string(&running).unwrap();
    let vm = adopt(&serde_json::from_str(&stored).unwrap()).await.unwrap();
    assert!(vm.is_alive() && vm.accel().is_none());
    assert_eq!(vm.state().await.unwrap(), VmState::Running);
    vm.pause().await.unwrap();
    assert_eq!(vm.state().await.unwrap(), VmState::Paused);
    vm.resume().await.unwrap();
    assert_eq!(vm.console_recent(12).await.unwrap(), "llo\nlogin: ", "cut at a character boundary");
    let Err(e) = vm.agent(Duration::from_millis(500)).await else { panic!("no agent here") };
    assert!(e.to_string().contains("vsock.sock"), "{e}");
    assert!(adopt(&running).await.unwrap().is(&vm.downgrade()), "one shared handle per process");

    // No agent and Ctrl-Alt-Del refused: after the timeout, `stop` ends it (exit code 0).
    let waiter = tokio::spawn({
        let vm = vm.clone();
        async move { vm.wait_exit().await }
    });
    let ended = vm.shutdown(Duration::from_millis(300)).await.unwrap();
    assert_eq!(ended.reason, EndReason::HostStop, "{ended:?}");
    assert_eq!(ended.status, Some(process::ExitStatus { code: Some(0), signal: None }));
    assert!(ended.detail.contains("did not power off within"), "{}", ended.detail);
    assert_eq!(waiter.await.unwrap().reason, EndReason::HostStop);
    let ops = seen.lock().unwrap().clone();
    assert!(ops.ends_with(&["resume".into(), "ctrl_alt_del".into(), "stop".into()]), "{ops:?}");
    assert!(!vm.is_alive());
    assert!(matches!(vm.pause().await, Err(EngineError::Gone { .. })));
    // Stopping an ended VM just reports its end.
    assert_eq!(vm.stop().await.unwrap().reason, EndReason::HostStop);
    stop(&running).await.unwrap();
    forget(&running);
    assert!(matches!(adopt(&running).await, Err(EngineError::Gone { .. })));
}

#[tokio::test]
async fn kill_and_wait_from_a_stored_record() {
    let dir = tempfile::tempdir().unwrap();
    let running = running_for(dir.path(), fake_vmm_process(dir.path()));
    let _guard = KillOnDrop(running.pid);
    assert!(is_alive(&running));
    let waiter = tokio::spawn({
        let r = running.clone();
        async move { wait_exit(&r).await }
    });
    kill(&running).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
    assert_eq!(seen.reason, EndReason::Killed, "{seen:?}");
    assert!(!is_alive(&running));
    kill(&running).await.unwrap(); // killing twice is fine
    shutdown(&running, Duration::from_secs(1)).await.unwrap(); // so is shutting down an ended VM
}
