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
    let script = "echo LAB-INIT-OK cpus=$(grep -c ^processor /proc/cpuinfo)\nkill -USR2 1\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scenario.cpio"), scenario_cpio(script)).unwrap();
    lab.put(&dir.path().join("scenario.cpio"), "/lab/scenario.cpio", 0o644).await;

    // Boot to den-agent as init with 2 vCPUs; the scenario powers the guest off (exit 0).
    let out = lab
        .sh(&format!(
            "cat /lab/base/initramfs /lab/scenario.cpio > /lab/boot.img && \
             timeout 120 {VMM} boot --kernel /lab/base/kernel --initrd /lab/boot.img --cpus 2 --memory-mib 256 \
             --cmdline 'console=ttyS0 panic=-1' --console stdio < /dev/null"
        ))
        .await;
    let console = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("inner console:\n{console}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(console.contains("LAB-INIT-OK cpus=2"), "{}", lab.describe(&out));
    assert_eq!(out.code, Some(0), "clean power-off exits 0: {}", lab.describe(&out));
}
