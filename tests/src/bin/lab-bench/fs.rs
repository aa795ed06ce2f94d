//! Shared folders side by side: den-vmm's virtio-fs device and QEMU's `vhost-user-fs-device`,
//! each in front of a fresh Debian `virtiofsd` (the same binary, folder and options) in the KVM
//! lab. The inner guest writes 32 MiB with `fsync`, drops its page cache and reads the file back,
//! then creates, lists and removes 200 files; times come from the guest's /proc/uptime (10 ms).

use den_tests::lab::{Lab, HOST_VIRTIOFSD, VMM};

/// The guest's side: prints `FSB <write ms> <read ms> <metadata ms>` and powers off.
pub(crate) const SCENARIO: &str = r#"
t() { cut -d' ' -f1 /proc/uptime | tr -d .; }
cd /mnt/s || { echo FSB-NO-MOUNT; kill -USR2 1; exit; }
a=$(t); dd if=/dev/zero of=w.bin bs=1M count=32 conv=fsync 2>/dev/null; b=$(t)
echo 3 > /proc/sys/vm/drop_caches
c=$(t); dd if=w.bin of=/dev/null bs=1M 2>/dev/null; d=$(t)
mkdir m; i=0; while [ $i -lt 200 ]; do : > m/$i; i=$((i+1)); done; ls -l m >/dev/null; rm -r m; e=$(t)
echo "FSB $(( (b-a)*10 )) $(( (d-c)*10 )) $(( (e-d)*10 ))"
rm -f w.bin; sync
kill -USR2 1
"#;

/// Megabytes the scenario writes and reads.
pub(crate) const MIB: f64 = 32.0;
/// Files it creates (and removes).
pub(crate) const FILES: f64 = 200.0;

/// One run's times: write, cold read, metadata, in ms.
pub(crate) type Times = (f64, f64, f64);

/// One run on `engine` (`den-vmm` or `qemu`); `Err` when the outer guest died or wedged.
pub(crate) async fn run(lab: &Lab, engine: &str, qemu: &str) -> Result<Times, String> {
    let cmdline = "console=ttyS0 quiet panic=-1 den.share=lab0:/mnt/s";
    let boot = match engine {
        "den-vmm" => format!(
            "{VMM} boot --kernel /lab/base/vmlinux --initrd /lab/fsbench.img --memory-mib 256 --no-rng \
             --cmdline '{cmdline}' --fs /lab/fsb.sock,tag=lab0 --console stdio"
        ),
        // As Den's QEMU engine runs shares: virtiofsd serves only modern virtio-mmio devices.
        _ => format!(
            "{qemu} -object memory-backend-memfd,id=mem,size=256M,share=on \
             -M microvm,x-option-roms=off,rtc=off,isa-serial=on,memory-backend=mem \
             -global virtio-mmio.force-legacy=false \
             -chardev socket,id=fs0,path=/lab/fsb.sock -device vhost-user-fs-device,chardev=fs0,tag=lab0 \
             -kernel /lab/base/kernel -initrd /lab/fsbench.img -append '{cmdline}'"
        ),
    };
    let script = format!(
        "rm -rf /lab/fsb /lab/fsb.sock; mkdir -p /lab/fsb
         ({HOST_VIRTIOFSD} --socket-path=/lab/fsb.sock -o source=/lab/fsb -o cache=auto >/lab/fsb-vfs.log 2>&1 &)
         for i in $(seq 1 100); do test -S /lab/fsb.sock && break; sleep 0.1; done
         timeout 110 {boot} </dev/null 2>/lab/fsb.err | grep -a '^FSB' || {{ tail -5 /lab/fsb.err /lab/fsb-vfs.log; exit 1; }}"
    );
    match crate::guest_times(lab, engine, &script, "FSB").await?[..] {
        [w, r, m] => Ok((w, r, m)),
        _ => Err(format!("{engine}: not 3 FSB times")),
    }
}
