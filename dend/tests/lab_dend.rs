//! dend with the `vmm` engine, in the KVM lab (see `den_tests::lab`): inside the outer guest,
//! whose `/dev/kvm` has hardware-virtualization semantics, a static dend picks den-vmm for
//! `engine: auto`, boots a real Linux guest, reaches its agent over vsock, survives a `kill -9`
//! with the VM running, stops and deletes it leaving no process behind. den-vmm runs jailed
//! (den-jailer): its own uid, a root with nothing but itself, its own cgroup. A second VM shares a
//! folder of the outer guest (virtio-fs, dend's virtiofsd) on den-vmm. Prints the time from
//! `den vm create --start` to the agent answering.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_images::{ImageRecord, Store};
use den_tests::images;
use den_tests::lab::{copy_boot_files, Lab, BOOT_LIMIT};
use std::path::Path;

/// A store holding one image, `labvm`: the base image's kernel and initramfs, no root disk (the
/// guest runs from memory), and a console shell.
fn lab_store(from: &Store, base: &ImageRecord, dir: &Path) -> Store {
    let store = Store::open(dir).unwrap();
    let artifacts = copy_boot_files(from, base, &store, dir);
    let rec = ImageRecord {
        name: "labvm".into(),
        artifacts,
        cmdline: "console=ttyS0 quiet panic=-1 den.console=shell".into(),
        ..base.clone()
    };
    store.put_image(&rec).unwrap();
    store
}

const SCRIPT: &str = r#"
D=/tmp/den; mkdir -p $D
# den-jailer limits each den-vmm with a cgroup: give the outer guest its cgroup2 hierarchy.
grep -q " /sys/fs/cgroup cgroup2" /proc/mounts || { mkdir -p /sys/fs/cgroup; mount -t cgroup2 none /sys/fs/cgroup; }
start_dend() {
  /lab/dend --data-dir $D --image-store /lab/store --listen off --ssh-listen off >> $D/dend.log 2>&1 &
  i=0; while ! /lab/den --socket $D/run/dend.sock vm ls >/dev/null 2>&1; do
    i=$((i+1)); [ $i -lt 200 ] || { echo LAB-DEND-DID-NOT-START; cat $D/dend.log; exit 9; }; sleep 0.1
  done
}
den() { /lab/den --socket $D/run/dend.sock "$@"; }
up() { cut -d' ' -f1 /proc/uptime; }
ready() { i=0; until den vm exec v1 -- uname -r > $D/uname 2>$D/exec.err; do
  i=$((i+1)); [ $i -lt 600 ] || { echo LAB-NO-AGENT; cat $D/exec.err; den vm console v1; exit 8; }; sleep 0.1; done; }
start_dend
t0=$(up)
den vm create v1 --image labvm --no-network --memory 256 --start || { cat $D/dend.log; exit 7; }
ready
t1=$(up)
echo "LAB-READY-MS=$(echo "$t0 $t1" | awk '{printf "%d", ($2-$1)*1000}')"
echo "LAB-UNAME=$(cat $D/uname)"
den --json vm inspect v1 | grep -o '"engine":"[a-z]*"'
PID=$(den --json vm inspect v1 | grep -o '"pid":[0-9]*' | cut -d: -f2)
echo "LAB-VMM-UID=$(awk '/^Uid:/{print $2}' /proc/$PID/status)"
echo "LAB-VMM-ROOT=$(ls /proc/$PID/root | tr '\n' ' ')"
echo "LAB-VMM-$(grep -ho 'kernel: [A-Za-z ]*' $D/run/vms/*/engine.log | tail -1)"
grep -q ":/den/" /proc/$PID/cgroup && echo LAB-VMM-IN-ITS-CGROUP
kill -9 $(pidof dend)
sleep 0.5
kill -0 $PID && echo LAB-VM-OUTLIVES-DEND
start_dend
ready && echo LAB-ADOPTED-EXEC-OK
den --json vm inspect v1 | grep -o '"pid":[0-9]*'
den vm stop v1 && den vm rm v1 && echo LAB-STOPPED-AND-DELETED
pidof den-vmm && echo LAB-LEFT-VMM || echo LAB-NO-VMM-LEFT
sleep 0.5; [ -z "$(ls -d /sys/fs/cgroup/den/*/ 2>/dev/null)" ] && echo LAB-NO-CGROUP-LEFT
# A shared folder on den-vmm: dend starts virtiofsd, den-jailer connects den-vmm to it.
mkdir -p /lab/share && echo from-the-outer-host > /lab/share/hello.txt
den vm create v2 --image labvm --no-network --memory 256 --share /lab/share:/mnt/s --start || { cat $D/dend.log; exit 6; }
i=0; until den vm exec v2 -- cat /mnt/s/hello.txt > $D/v2.out 2>$D/v2.err; do
  i=$((i+1)); [ $i -lt 600 ] || { echo LAB-V2-NO-AGENT; cat $D/v2.err; den vm console v2; break; }; sleep 0.1; done
echo "LAB-SHARE-READ=$(cat $D/v2.out)"
den vm exec v2 -- sh -c 'echo from-the-guest > /mnt/s/back.txt'
echo "LAB-SHARE-BACK=$(cat /lab/share/back.txt)"
den --json vm inspect v2 | grep -o '"engine":"[a-z]*"' | sed 's/^/LAB-V2-/'
PID2=$(den --json vm inspect v2 | grep -o '"pid":[0-9]*' | cut -d: -f2)
echo "LAB-V2-UID=$(awk '/^Uid:/{print $2}' /proc/$PID2/status)"
den vm stop v2 && den vm rm v2 && echo LAB-V2-DELETED
sleep 0.5; pgrep -f /lab/dyn/virtiofsd >/dev/null && echo LAB-VIRTIOFSD-LEFT || echo LAB-NO-VIRTIOFSD-LEFT
kill $(pidof dend)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_dend_runs_vms_on_den_vmm() {
    Lab::run_with_retry(scenario).await;
}

async fn scenario(lab: Lab) -> Result<(), String> {
    let base = images::build_builtin(&lab.store, "base");
    lab.put(&images::dend_static_binary(), "/lab/dend", 0o755).await;
    lab.put(&images::den_cli_static_binary(), "/lab/den", 0o755).await;
    lab.put(&images::jailer_static_binary(), "/lab/den-jailer", 0o755).await;
    lab.put_virtiofsd().await;
    let dir = tempfile::tempdir().unwrap();
    let store = lab_store(&lab.store, &base, dir.path());
    lab.put_tree(dir.path(), "/lab/store").await;
    let out = lab.try_sh(SCRIPT, BOOT_LIMIT).await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("LAB-UNAME={}", base.kernel_release)), "{}", lab.describe(&out));
    assert!(text.contains("\"engine\":\"vmm\""), "auto picks den-vmm on hardware KVM: {}", lab.describe(&out));
    assert!(text.contains("LAB-VM-OUTLIVES-DEND") && text.contains("LAB-ADOPTED-EXEC-OK"), "{}", lab.describe(&out));
    assert!(text.contains("LAB-STOPPED-AND-DELETED") && text.contains("LAB-NO-VMM-LEFT"), "{}", lab.describe(&out));
    // Jailed: its own uid, a root holding only den-vmm, its own cgroup, removed when it ended.
    let uid_of = |key: &str| -> u32 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|u| u.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key}: {}", lab.describe(&out)))
    };
    let uid = uid_of("LAB-VMM-UID=");
    assert!(uid >= 2_000_000_000, "den-vmm runs as a jail uid, not {uid}: {}", lab.describe(&out));
    assert!(text.contains("LAB-VMM-ROOT=den-vmm \n"), "den-vmm's root holds only den-vmm: {}", lab.describe(&out));
    assert!(text.contains("LAB-VMM-IN-ITS-CGROUP") && text.contains("LAB-NO-CGROUP-LEFT"), "{}", lab.describe(&out));
    // It booted the image's ELF vmlinux, not the bzImage.
    assert!(store.image("labvm").unwrap().unwrap().artifacts.contains_key("vmlinux"));
    assert!(text.contains("LAB-VMM-kernel: ELF vmlinux\n"), "{}", lab.describe(&out));
    // A VM with a shared folder runs on den-vmm too, jailed, and the folder works both ways.
    assert!(text.contains("LAB-V2-\"engine\":\"vmm\""), "shares no longer force QEMU: {}", lab.describe(&out));
    assert!(text.contains("LAB-SHARE-READ=from-the-outer-host\n"), "{}", lab.describe(&out));
    assert!(text.contains("LAB-SHARE-BACK=from-the-guest\n"), "{}", lab.describe(&out));
    let uid2 = uid_of("LAB-V2-UID=");
    assert!(uid2 >= 2_000_000_000, "v2's den-vmm is jailed, not uid {uid2}: {}", lab.describe(&out));
    assert!(text.contains("LAB-V2-DELETED") && text.contains("LAB-NO-VIRTIOFSD-LEFT"), "{}", lab.describe(&out));
    Ok(())
}
