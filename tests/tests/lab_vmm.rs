//! den-vmm in the KVM lab (see `den_tests::lab`): real Linux guests on a real `/dev/kvm`.
//! Slow (an outer TCG boot plus inner boots); all scenarios share one outer guest.

use den_images::cpio::CpioWriter;
use den_tests::{images, lab::Lab, lab::VMM};

/// A cpio archive that, appended to the base image's initramfs, makes den-agent (PID 1) run
/// `script` as a one-shot service.
fn scenario_cpio(script: &str) -> Vec<u8> {
    let mut w = CpioWriter::new(Vec::new());
    for d in ["etc", "etc/den", "etc/den/services", "lab"] {
        w.dir(d, 0o755).unwrap();
    }
    w.file("lab/scenario.sh", 0o755, script.as_bytes()).unwrap();
    w.file(
        "etc/den/services/scenario.toml",
        0o644,
        b"exec = [\"/bin/sh\", \"/lab/scenario.sh\"]\nrestart = \"never\"\n",
    )
    .unwrap();
    w.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_den_vmm() {
    let lab = Lab::start().await;
    let out = lab.sh(&format!("{VMM} probe")).await;
    assert_eq!(out.code, Some(0), "{}", lab.describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("hardware"), "{}", lab.describe(&out));

    let base = images::build_builtin(&lab.store, "base");
    lab.put_image(&base, "/lab/base").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scenario.cpio"), scenario_cpio(SCENARIO)).unwrap();
    lab.put(&dir.path().join("scenario.cpio"), "/lab/scenario.cpio", 0o644).await;
    let disk = dir.path().join("disk.ext4");
    let st = std::process::Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&disk).arg("16M").status().unwrap();
    assert!(st.success(), "mkfs.ext4");
    lab.put(&disk, "/lab/disk.ext4", 0o644).await;
    lab.sh("cat /lab/base/initramfs /lab/scenario.cpio > /lab/boot.img").await;

    // Boot 1: den-agent is init with 2 vCPUs, finds the rng and the disk, writes a file and
    // reboots: den-vmm exits 10 ("the guest rebooted").
    let run = |n: u32| {
        format!(
            "timeout 120 {VMM} boot --kernel /lab/base/kernel --initrd /lab/boot.img --cpus 2 --memory-mib 256 \
             --cmdline 'console=ttyS0 panic=-1 quiet' --disk /lab/disk.ext4 --console /lab/console{n}.log \
             < /dev/null; echo exit=$?; cat /lab/console{n}.log"
        )
    };
    let out = lab.sh(&run(1)).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("boot 1:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("LAB-INIT-OK cpus=2"), "{}", lab.describe(&out));
    assert!(text.contains("LAB-RNG=virtio_rng"), "{}", lab.describe(&out));
    assert!(text.contains("LAB-WROTE"), "{}", lab.describe(&out));
    assert!(text.contains("exit=10"), "a guest reboot exits 10: {}", lab.describe(&out));

    // Boot 2: the file is on the disk; the guest powers off: exit 0.
    let out = lab.sh(&run(2)).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("boot 2:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("LAB-DISK=persisted"), "{}", lab.describe(&out));
    assert!(text.contains("exit=0"), "a clean power-off exits 0: {}", lab.describe(&out));
}

/// Runs as a den-agent service in the inner guest; markers go to the console.
const SCENARIO: &str = r#"
echo LAB-INIT-OK cpus=$(grep -c ^processor /proc/cpuinfo)
echo LAB-RNG=$(cat /sys/devices/virtual/misc/hw_random/rng_current)
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
