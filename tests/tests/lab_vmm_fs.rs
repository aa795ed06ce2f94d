//! virtio-fs in the KVM lab: a Linux guest under den-vmm mounts a folder of the outer guest that
//! Debian's `virtiofsd` serves over vhost-user, reads a file the host wrote, writes files the
//! host then reads back intact, and den-vmm ends cleanly with the device's counters (the guest's
//! notifications reach virtiofsd through KVM ioeventfds, not through den-vmm).

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::lab::{Lab, BOOT_LIMIT, HOST_VIRTIOFSD, VMM};

const GUEST: &str = r#"
echo LAB-FS-READ=$(cat /mnt/lab/hello.txt)
echo written-by-the-guest > /mnt/lab/from-guest.txt && echo LAB-FS-WROTE
dd if=/dev/urandom of=/mnt/lab/big.bin bs=64k count=64 2>/dev/null
echo LAB-FS-SUM=$(md5sum /mnt/lab/big.bin | cut -d' ' -f1)
mkdir /mnt/lab/d && touch /mnt/lab/d/a /mnt/lab/d/b && echo LAB-FS-LS=$(ls /mnt/lab/d | tr '\n' ,)
grep -q ' /mnt/lab virtiofs ' /proc/mounts && echo LAB-FS-MOUNTED
sync
kill -USR2 1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_den_vmm_shares_a_folder_over_virtio_fs() {
    Lab::run_with_retry(shares_a_folder).await;
}

async fn shares_a_folder(lab: Lab) -> Result<(), String> {
    lab.put_scenario("fs", GUEST).await;
    lab.put_virtiofsd().await;
    let script = format!(
        "mkdir -p /lab/share && echo from-the-outer-host > /lab/share/hello.txt
         ({HOST_VIRTIOFSD} --socket-path=/lab/fs.sock -o source=/lab/share -o cache=auto >/lab/vfs.log 2>&1 &)
         for i in $(seq 1 100); do test -S /lab/fs.sock && break; sleep 0.1; done
         timeout 300 {VMM} boot --kernel /lab/base/vmlinux --initrd /lab/fs.img --memory-mib 256 \
           --cmdline 'console=ttyS0 panic=-1 quiet den.share=lab0:/mnt/lab' --fs /lab/fs.sock,tag=lab0 \
           --console /lab/fs.log </dev/null 2>/lab/fs.err; echo exit=$?
         cat /lab/fs.log /lab/fs.err; tail -5 /lab/vfs.log
         echo OUTER-SEES=$(cat /lab/share/from-guest.txt)
         echo OUTER-SUM=$(md5sum /lab/share/big.bin | cut -d' ' -f1)"
    );
    let out = lab.try_sh(&script, BOOT_LIMIT).await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let line = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).unwrap_or("").to_string();
    assert_eq!(line("exit="), "0", "den-vmm powered off cleanly: {}", lab.describe(&out));
    assert!(text.contains("LAB-FS-MOUNTED"), "the guest mounted virtiofs: {}", lab.describe(&out));
    assert_eq!(line("LAB-FS-READ="), "from-the-outer-host", "{}", lab.describe(&out));
    assert!(text.contains("LAB-FS-WROTE"), "{}", lab.describe(&out));
    assert_eq!(line("OUTER-SEES="), "written-by-the-guest", "{}", lab.describe(&out));
    let (guest_sum, host_sum) = (line("LAB-FS-SUM="), line("OUTER-SUM="));
    assert_eq!(guest_sum.len(), 32, "{}", lab.describe(&out));
    assert_eq!(guest_sum, host_sum, "4 MiB written by the guest arrive intact: {}", lab.describe(&out));
    assert_eq!(line("LAB-FS-LS="), "a,b,", "{}", lab.describe(&out));
    // The device's counters in den-vmm's metrics line: the backend signalled used buffers, none
    // failed, and every guest notification went from KVM straight to virtiofsd (ioeventfds):
    // none passed through den-vmm.
    let counter = |name: &str| -> Option<u64> {
        text.split_whitespace().find_map(|w| w.strip_prefix(&format!("virtio1/26.{name}="))?.parse().ok())
    };
    assert!(counter("signals").is_some_and(|n| n > 0), "{}", lab.describe(&out));
    assert_eq!(counter("backend_failures"), Some(0), "{}", lab.describe(&out));
    assert_eq!((counter("notifies"), counter("kicks")), (Some(0), Some(0)), "{}", lab.describe(&out));
    Ok(())
}
