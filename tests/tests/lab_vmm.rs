//! den-vmm in the KVM lab (see `den_tests::lab`): real Linux guests on a real `/dev/kvm`.
//! Slow (an outer TCG boot plus inner boots); all scenarios share one outer guest.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use den_agent_proto::{AgentClient, ForwardTarget};
use den_tests::images;
use den_tests::lab::{Lab, BOOT_LIMIT, VMM};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// One outer lab guest at a time: each takes both host cores while it boots.
static ONE_LAB: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_den_vmm() {
    let _one = ONE_LAB.lock().await;
    Lab::run_with_retry(boots).await;
}

/// Boot, reboot with a disk, power-off, panic: `Err` only when the outer guest died or wedged.
async fn boots(lab: Lab) -> Result<(), String> {
    let out = lab.sh(&format!("{VMM} probe")).await;
    assert_eq!(out.code, Some(0), "{}", lab.describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("hardware"), "{}", lab.describe(&out));

    lab.put_scenario("boot", SCENARIO).await;
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.ext4");
    let st = std::process::Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&disk).arg("16M").status().unwrap();
    assert!(st.success(), "mkfs.ext4");
    lab.put(&disk, "/lab/disk.ext4", 0o644).await;
    assert_eq!(lab.sh("printf read-only > /lab/ro.img && truncate -s 1M /lab/ro.img").await.code, Some(0));

    // Boot 1: den-agent is init with 2 vCPUs, finds the rng and the disk, writes a file and
    // reboots: den-vmm exits 10 ("the guest rebooted").
    let run = |n: u32| {
        format!(
            "timeout -s KILL 150 {VMM} boot --kernel /lab/base/kernel --initrd /lab/boot.img --cpus 2 --memory-mib 256 \
             --cmdline 'console=ttyS0 panic=-1 quiet' --disk /lab/disk.ext4 --disk /lab/ro.img,ro \
             --console /lab/console{n}.log \
             < /dev/null; echo exit=$?; cat /lab/console{n}.log"
        )
    };
    let out = lab.try_sh(&run(1), BOOT_LIMIT).await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("boot 1:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("LAB-INIT-OK cpus=2"), "{}", lab.describe(&out));
    assert!(text.contains("LAB-RNG=virtio_rng"), "{}", lab.describe(&out));
    assert!(text.contains("LAB-WROTE"), "{}", lab.describe(&out));
    assert!(
        text.contains("LAB-VDB-RO=1 LAB-VDB-ID=den-disk-1 LAB-VDB=read-only"),
        "a second, read-only disk with its serial: {}",
        lab.describe(&out)
    );
    assert!(text.contains("exit=10"), "a guest reboot exits 10: {}", lab.describe(&out));
    // The disks' requests went to their I/O workers through KVM ioeventfds, not the vCPUs.
    let metrics = String::from_utf8_lossy(&out.stderr).to_string();
    let worker = |w: &str| w.strip_prefix("virtio0/2.worker_notifies=").and_then(|v| v.parse::<u64>().ok());
    let by_worker = metrics.split_whitespace().find_map(worker).unwrap_or(0);
    assert!(by_worker > 0, "no notification reached the first disk's worker: {metrics}");

    // Boot 2: the file is on the disk; the guest powers off: exit 0.
    let out = lab.try_sh(&run(2), BOOT_LIMIT).await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("boot 2:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("LAB-DISK=persisted"), "{}", lab.describe(&out));
    assert!(text.contains("exit=0"), "a clean power-off exits 0: {}", lab.describe(&out));

    // Boot 3: the guest kernel panics (and, with panic=-1, resets at once): pvpanic tells den-vmm,
    // which exits 4 (crash), not 10 (reboot).
    lab.put_scenario("panic", "echo LAB-PANIC-NOW\necho c > /proc/sysrq-trigger\n").await;
    let out = lab
        .try_sh(
            &format!(
                "timeout -s KILL 150 {VMM} boot --kernel /lab/base/kernel --initrd /lab/panic.img --memory-mib 256 \
                 --cmdline 'console=ttyS0 panic=-1 quiet' --console /lab/panic.log < /dev/null; echo exit=$?"
            ),
            BOOT_LIMIT,
        )
        .await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(text.contains("exit=4"), "a guest kernel panic exits 4: {}", lab.describe(&out));
    assert!(err.contains("panicked"), "{err}");
    Ok(())
}

/// Where den-vmm's vsock listens inside the outer guest.
const VSOCK_UDS: &str = "/lab/vsock.sock";

/// One attempt to reach the inner agent: a stream to den-vmm's vsock socket (through the outer
/// agent), the Firecracker `CONNECT 1024` handshake, then the agent protocol.
async fn inner_agent_once(lab: &Lab) -> Result<(AgentClient, u32), String> {
    let target = ForwardTarget::Unix { path: VSOCK_UDS.into() };
    let mut io = lab.agent.forward_io(target).await.map_err(|e| format!("forward: {e}"))?;
    let port =
        den_agent_proto::vsock_connect(&mut io, 1024, Duration::from_secs(30)).await.map_err(|e| e.to_string())?;
    let client = AgentClient::over(io, Duration::from_secs(30)).await.map_err(|e| format!("handshake: {e}"))?;
    Ok((client, port))
}

/// Retries until the inner guest booted and its agent listens on vsock port 1024; `Err` after
/// 150 s (a wedged lab: see [`Lab::run_with_retry`]).
async fn inner_agent(lab: &Lab) -> Result<(AgentClient, u32), String> {
    let start = Instant::now();
    loop {
        match inner_agent_once(lab).await {
            Ok(c) => return Ok(c),
            Err(e) if start.elapsed() < Duration::from_secs(150) => {
                eprintln!("vsock: not yet ({:.1}s): {e}", start.elapsed().as_secs_f64());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(format!("the inner agent never answered over vsock: {e}")),
        }
    }
}

/// den-vmm's virtio-vsock with the Firecracker host model: the test reaches den-agent (PID 1 of
/// the inner guest, listening on vsock port 1024) through den-vmm's Unix socket, runs requests,
/// streams data both ways, and powers the guest off over the same channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_den_vmm_vsock() {
    let _one = ONE_LAB.lock().await;
    Lab::run_with_retry(vsock).await;
}

async fn vsock(lab: Lab) -> Result<(), String> {
    let base = images::build_builtin(&lab.store, "base");
    lab.put_image(&base, "/lab/base").await;
    let boot = format!(
        "timeout 300 {VMM} boot --kernel /lab/base/kernel --initrd /lab/base/initramfs --cpus 2 --memory-mib 256 \
         --cmdline 'console=ttyS0 panic=-1 quiet' --vsock 3,{VSOCK_UDS} --console /lab/console-vsock.log \
         < /dev/null; echo exit=$?; test -e {VSOCK_UDS} && echo socket-left-behind; tail -c 2000 /lab/console-vsock.log"
    );
    let vmm = lab.try_sh(&boot, BOOT_LIMIT);
    let client = async {
        let started = Instant::now();
        let (inner, port) = inner_agent(&lab).await?;
        eprintln!(
            "vsock: inner agent answered {:.1}s after den-vmm started (host port {port})",
            started.elapsed().as_secs_f64()
        );
        assert!(port >= 1 << 30, "host-side port {port}");
        let info = inner.info().await.expect("inner info");
        assert!(info.pid1, "den-agent is init of the inner guest: {info:?}");
        assert!(info.mem_total_kib < 300 * 1024, "the inner guest has 256 MiB: {info:?}");

        // `cat` echoes 384 KiB: guest-bound and host-bound streams through vsock, intact.
        let data: Vec<u8> = (0..384 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let t = Instant::now();
        let out =
            inner.exec_output(&["cat"], Bytes::from(data.clone()), den_tests::EXEC).await.expect("inner exec cat");
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(out.code, Some(0), "{out:?}");
        assert_eq!(out.stdout.len(), data.len());
        assert_eq!(hex::encode(Sha256::digest(&out.stdout)), hex::encode(Sha256::digest(&data)));
        eprintln!(
            "vsock: cat echoed {} KiB each way in {secs:.2}s ({:.1} MiB/s both ways together)",
            data.len() / 1024,
            2.0 * data.len() as f64 / secs / (1 << 20) as f64
        );

        // A second connection at the same time works too.
        let (second, port2) = inner_agent_once(&lab).await.expect("a second vsock connection");
        assert_ne!(port, port2);
        let out = second
            .exec_output(&["echo", "second"], Bytes::new(), den_tests::EXEC)
            .await
            .expect("exec on the second connection");
        assert_eq!(out.stdout, b"second\n");
        second.close();

        // Power off over vsock: the reply may or may not beat the power-off.
        let _ = tokio::time::timeout(Duration::from_secs(30), inner.shutdown(false)).await;
        Ok::<(), String>(())
    };
    let (out, client) = tokio::join!(vmm, client);
    client?;
    let out = out?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("vsock boot:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("exit=0"), "a power-off over vsock ends den-vmm with 0: {}", lab.describe(&out));
    assert!(!text.contains("socket-left-behind"), "den-vmm removes its vsock socket: {}", lab.describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("19.opened="), "vsock counters: {}", lab.describe(&out));
    Ok(())
}

/// Runs as a den-agent service in the inner guest; markers go to the console.
const SCENARIO: &str = r#"
echo LAB-INIT-OK cpus=$(grep -c ^processor /proc/cpuinfo)
echo LAB-RNG=$(cat /sys/devices/virtual/misc/hw_random/rng_current)
echo LAB-VDB-RO=$(cat /sys/block/vdb/ro) LAB-VDB-ID=$(cat /sys/block/vdb/serial) LAB-VDB=$(head -c 9 /dev/vdb)
mkdir -p /mnt
if mount -t ext4 /dev/vda /mnt; then
  if [ -f /mnt/hello ]; then
    echo LAB-DISK=$(cat /mnt/hello); umount /mnt; kill -USR2 1
  else
    echo persisted > /mnt/hello; umount /mnt; echo LAB-WROTE; kill -TERM 1
  fi
else
  echo LAB-NO-DISK; ls /dev; kill -USR2 1
fi
"#;
