//! VMs from memory: dend picks den-vmm for `engine: auto`, boots `labvm`'s ELF vmlinux, reaches its
//! agent over vsock, survives a `kill -9` with the VM running, stops and deletes it leaving no
//! process or cgroup behind. den-vmm runs jailed (den-jailer): its own uid, a root with nothing but
//! itself, its own cgroup. A second VM shares a folder of the outer guest (virtio-fs, dend's
//! virtiofsd) on den-vmm. Prints the time from `den vm create --start` to the agent answering.

use crate::run_phase;
use den_tests::lab::{Lab, BOOT_LIMIT};

const SCRIPT: &str = r#"
ready() { i=0; until den vm exec v1 -- uname -r > $D/uname 2>$D/exec.err; do
  i=$((i+1)); [ $i -lt 600 ] || { echo LAB-NO-AGENT; cat $D/exec.err; den vm console v1; exit 8; }; sleep 0.1; done; }
t0=$(up)
den vm create v1 --image labvm --no-network --memory 256 --start || { cat $D/dend.log; exit 7; }
ready
t1=$(up)
echo "LAB-READY-MS=$(ms $t0 $t1)"
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
sleep 0.5; running '/lab/dyn/virtiofs[d]' && echo LAB-VIRTIOFSD-LEFT || echo LAB-NO-VIRTIOFSD-LEFT
"#;

/// Runs the scenario in `lab` (dend's programs already in) and checks what it printed.
pub(crate) async fn run(lab: &Lab) -> Result<(), String> {
    let out = run_phase(lab, "vms", SCRIPT, BOOT_LIMIT).await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let base = lab.store.image("base").unwrap().expect("the base image was built");
    assert!(text.contains(&format!("LAB-UNAME={}", base.kernel_release)), "{}", lab.describe(&out));
    assert!(text.contains("\"engine\":\"vmm\""), "auto picks den-vmm on hardware KVM: {}", lab.describe(&out));
    assert!(text.contains("LAB-VM-OUTLIVES-DEND") && text.contains("LAB-ADOPTED-EXEC-OK"), "{}", lab.describe(&out));
    assert!(text.contains("LAB-STOPPED-AND-DELETED") && text.contains("LAB-NO-VMM-LEFT"), "{}", lab.describe(&out));
    // Jailed: its own uid, a root holding only den-vmm, its own cgroup, removed when it ended.
    let uid_of = |key: &str| -> u32 {
        Lab::field(&out, key).parse().unwrap_or_else(|_| panic!("no {key}: {}", lab.describe(&out)))
    };
    let uid = uid_of("LAB-VMM-UID=");
    assert!(uid >= 2_000_000_000, "den-vmm runs as a jail uid, not {uid}: {}", lab.describe(&out));
    assert!(text.contains("LAB-VMM-ROOT=den-vmm \n"), "den-vmm's root holds only den-vmm: {}", lab.describe(&out));
    assert!(text.contains("LAB-VMM-IN-ITS-CGROUP") && text.contains("LAB-NO-CGROUP-LEFT"), "{}", lab.describe(&out));
    // It booted the image's ELF vmlinux, not the bzImage.
    assert!(text.contains("LAB-VMM-kernel: ELF vmlinux\n"), "{}", lab.describe(&out));
    // A VM with a shared folder runs on den-vmm too, jailed, and the folder works both ways.
    assert!(text.contains("LAB-V2-\"engine\":\"vmm\""), "shares no longer force QEMU: {}", lab.describe(&out));
    assert!(text.contains("LAB-SHARE-READ=from-the-outer-host\n"), "{}", lab.describe(&out));
    assert!(text.contains("LAB-SHARE-BACK=from-the-guest\n"), "{}", lab.describe(&out));
    let uid2 = uid_of("LAB-V2-UID=");
    assert!(uid2 >= 2_000_000_000, "v2's den-vmm is jailed, not uid {uid2}: {}", lab.describe(&out));
    assert!(text.contains("LAB-V2-DELETED") && text.contains("LAB-NO-VIRTIOFSD-LEFT"), "{}", lab.describe(&out));
    eprintln!(
        "lab: a VM from memory on den-vmm answered {} ms after `den vm create --start`",
        Lab::field(&out, "LAB-READY-MS=")
    );
    Ok(())
}
