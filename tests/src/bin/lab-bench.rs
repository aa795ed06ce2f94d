//! den-vmm against QEMU (`-M microvm -accel kvm`) in the KVM lab, side by side in one run: the same
//! inner kernel, initramfs (den-agent as init) and command line, 1 vCPU, 256 MiB; time from the
//! engine's spawn to the guest init's first console line (den-vmm with the ELF vmlinux it boots by
//! default, and with the bzImage), measured the same way for both (the
//! outer guest's /proc/uptime, 10 ms resolution), plus den-vmm's own debug-port milestone for
//! init (code 0x10, timed inside the VMM). Prints a table; run by `bench/lab-bench.sh [RUNS]`.

// A benchmark's setup may panic: a step that cannot be taken ends the run with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::lab::{Lab, VMM};
use std::path::Path;

/// The scenario: print the marker and power off.
const SCENARIO: &str = "echo LAB-BENCH-INIT\nkill -USR2 1\n";
const CMDLINE: &str = "console=ttyS0 quiet panic=-1";

/// Copies QEMU, its libraries and the microvm firmware into the outer guest.
async fn put_qemu(lab: &Lab) {
    let ldd = std::process::Command::new("ldd").arg("/usr/bin/qemu-system-x86_64").output().expect("ldd");
    let text = String::from_utf8_lossy(&ldd.stdout).to_string();
    for lib in text.split_whitespace().filter(|w| w.starts_with('/')) {
        let name = Path::new(lib).file_name().and_then(|n| n.to_str()).unwrap_or("lib");
        lab.put(Path::new(lib), &format!("/lab/qemu/lib/{name}"), 0o755).await;
    }
    lab.put(Path::new("/usr/bin/qemu-system-x86_64"), "/lab/qemu/qemu-system-x86_64", 0o755).await;
    for fw in ["bios-microvm.bin", "linuxboot_dma.bin", "pvh.bin"] {
        lab.put(&Path::new("/usr/share/qemu").join(fw), &format!("/lab/qemu/share/{fw}"), 0o644).await;
    }
}

/// One timed boot; returns (ms to the marker, den-vmm's init milestone in ms if any).
async fn run(lab: &Lab, engine: &str) -> (f64, Option<f64>) {
    let cmd = match engine {
        "den-vmm" | "den-vmm-bzimage" => format!(
            "{VMM} boot --kernel /lab/base/{} --initrd /lab/bench.img --memory-mib 256 --no-rng \
             --cmdline '{CMDLINE}' --console stdio",
            if engine == "den-vmm" { "vmlinux" } else { "kernel" }
        ),
        _ => format!(
            "/lab/qemu/lib/ld-linux-x86-64.so.2 --library-path /lab/qemu/lib /lab/qemu/qemu-system-x86_64 \
             -L /lab/qemu/share -M microvm,x-option-roms=off,rtc=off,isa-serial=on -accel kvm -cpu host \
             -m 256 -smp 1 -nographic -nodefaults -no-reboot -serial stdio -kernel /lab/base/kernel \
             -initrd /lab/bench.img -append '{CMDLINE}'"
        ),
    };
    let script = format!(
        "up() {{ cut -d' ' -f1 /proc/uptime | tr -d .; }}\n\
         rm -f /lab/b.log; t0=$(up)\n\
         {cmd} </dev/null >/lab/b.log 2>/lab/b.err & pid=$!\n\
         while ! grep -q LAB-BENCH-INIT /lab/b.log 2>/dev/null; do\n\
           kill -0 $pid 2>/dev/null || grep -q LAB-BENCH-INIT /lab/b.log || {{ tail -c 3000 /lab/b.log >&2; cat /lab/b.err >&2; exit 1; }}\n\
           usleep 5000; done\n\
         t1=$(up); wait $pid\n\
         echo ms=$(( (t1 - t0) * 10 ))\n\
         grep -o 'milestones: 0x10@[0-9.]*' /lab/b.err || true\n"
    );
    let out = lab.sh(&script).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.code, Some(0), "{engine}: {}", lab.describe(&out));
    let ms = text.lines().find_map(|l| l.strip_prefix("ms=")?.parse().ok()).unwrap_or(f64::NAN);
    let milestone = text.lines().find_map(|l| l.split('@').nth(1)?.parse().ok());
    (ms, milestone)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let lab = Lab::start().await;
    lab.put_scenario("bench", SCENARIO).await;
    put_qemu(&lab).await;
    let (mut vmm, mut bz, mut qemu, mut milestones) = (vec![], vec![], vec![], vec![]);
    for i in 0..runs {
        // Alternate, so every engine sees the same conditions.
        let (ms, m) = run(&lab, "den-vmm").await;
        vmm.push(ms);
        milestones.extend(m);
        bz.push(run(&lab, "den-vmm-bzimage").await.0);
        qemu.push(run(&lab, "qemu").await.0);
        eprintln!("run {}: den-vmm {ms:.0} ms, den-vmm bzImage {:.0} ms, qemu {:.0} ms", i + 1, bz[i], qemu[i]);
    }
    let (v, q) = (median(vmm.clone()), median(qemu.clone()));
    println!("KVM lab (QEMU TCG outer guest, kvm-amd), {runs} runs each, 1 vCPU, 256 MiB, same kernel/initramfs");
    println!("| spawn to guest init's first console line | median ms | min ms | max ms |");
    println!("|---|--:|--:|--:|");
    let rows = [
        ("den-vmm, ELF vmlinux (Den's default)", &vmm),
        ("den-vmm, bzImage", &bz),
        ("qemu -M microvm -accel kvm, bzImage", &qemu),
    ];
    for (name, xs) in rows {
        let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = xs.iter().copied().fold(0.0, f64::max);
        println!("| {name} | {:.0} | {min:.0} | {max:.0} |", median(xs.to_vec()));
    }
    println!(
        "| den-vmm (vmlinux) debug-port milestone 0x10 (init started), inside the VMM | {:.0} | | |",
        median(milestones)
    );
    println!("\nratio qemu / den-vmm: {:.2}x (den-vmm {:.0} ms faster)", q / v, q - v);
    println!("ratio den-vmm bzImage / vmlinux: {:.2}x", median(bz) / v);
}
