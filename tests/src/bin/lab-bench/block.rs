//! Disks side by side: den-vmm with its I/O workers (the default: notifications through KVM
//! ioeventfds to a thread per disk), den-vmm with `--inline-io` (requests worked on the vCPU
//! thread, as before the workers), and QEMU's `virtio-blk-device`, each on a fresh 64 MiB raw
//! file in the KVM lab's outer guest. The inner guest bypasses its page cache (`O_DIRECT`):
//! 32 MiB written and read in 1 MiB requests, then 2000 4 KiB writes and reads (IOPS); times
//! from the guest's /proc/uptime (10 ms).

use den_tests::lab::{Lab, VMM};

/// The guest's side: prints `BLK <write ms> <read ms> <4k write ms> <4k read ms>` and powers off.
pub(crate) const SCENARIO: &str = r#"
t() { cut -d' ' -f1 /proc/uptime | tr -d .; }
a=$(t); dd if=/dev/zero of=/dev/vda bs=1M count=32 oflag=direct 2>/dev/null; b=$(t)
dd if=/dev/vda of=/dev/null bs=1M count=32 iflag=direct 2>/dev/null; c=$(t)
dd if=/dev/zero of=/dev/vda bs=4k count=2000 oflag=direct 2>/dev/null; d=$(t)
dd if=/dev/vda of=/dev/null bs=4k count=2000 iflag=direct 2>/dev/null; e=$(t)
echo "BLK $(( (b-a)*10 )) $(( (c-b)*10 )) $(( (d-c)*10 )) $(( (e-d)*10 ))"
kill -USR2 1
"#;

/// Megabytes moved in large requests, and the count of 4 KiB requests.
pub(crate) const MIB: f64 = 32.0;
/// 4 KiB requests each way.
pub(crate) const SMALL: f64 = 2000.0;

/// One run's times in ms: 1 MiB writes, 1 MiB reads, 4 KiB writes, 4 KiB reads.
pub(crate) type Times = [f64; 4];

/// The engines, in the order they alternate.
pub(crate) const ENGINES: [&str; 3] = ["den-vmm (I/O workers)", "den-vmm --inline-io", "qemu"];

/// One run on `engine` (one of [`ENGINES`]); `Err` when the lab failed under it.
pub(crate) async fn run(lab: &Lab, engine: &str, qemu: &str) -> Result<Times, String> {
    let cmdline = "console=ttyS0 quiet panic=-1";
    let boot = match engine {
        "qemu" => format!(
            "{qemu} -M microvm,x-option-roms=off,rtc=off,isa-serial=on \
             -drive id=d0,file=/lab/blk.img,format=raw,if=none -device virtio-blk-device,drive=d0 \
             -kernel /lab/base/kernel -initrd /lab/blkbench.img -append '{cmdline}'"
        ),
        _ => format!(
            "{VMM} boot --kernel /lab/base/vmlinux --initrd /lab/blkbench.img --memory-mib 256 --no-rng \
             --cmdline '{cmdline}' --disk /lab/blk.img --console stdio{}",
            if engine.contains("inline") { " --inline-io" } else { "" }
        ),
    };
    let script = format!(
        "rm -f /lab/blk.img && truncate -s 64M /lab/blk.img
         timeout 110 {boot} </dev/null 2>/lab/blk.err | grep -a '^BLK' || {{ tail -5 /lab/blk.err; exit 1; }}"
    );
    match crate::guest_times(lab, engine, &script, "BLK").await?[..] {
        [a, b, c, d] => Ok([a, b, c, d]),
        _ => Err(format!("{engine}: not 4 BLK times")),
    }
}
