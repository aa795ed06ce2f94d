//! An ISO install VM end to end: a bootable ISO (GRUB from `grub-mkrescue`, with the base
//! image's kernel and initramfs on it) is imported, a VM boots it through SeaBIOS on QEMU's q35
//! machine onto an empty disk, its agent answers, its VGA display is served on a VNC socket,
//! and the ISO cannot be removed while a VM uses it.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::images;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn make_iso(store: &den_images::Store, image: &den_images::ImageRecord, out: &Path) {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("boot/grub")).unwrap();
    for (role, name) in [("kernel", "vmlinuz"), ("initramfs", "initrd")] {
        std::fs::copy(store.get(&image.artifacts[role], false).unwrap(), root.path().join(name)).unwrap();
    }
    let cfg = "serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n\
               set timeout=0\nmenuentry den {\n  linux /vmlinuz console=ttyS0 panic=-1 den.console=shell den-iso-boot\n  initrd /initrd\n}\n";
    std::fs::write(root.path().join("boot/grub/grub.cfg"), cfg).unwrap();
    let st = Command::new("grub-mkrescue").arg("-o").arg(out).arg(root.path()).output().unwrap();
    assert!(st.status.success(), "grub-mkrescue: {}", String::from_utf8_lossy(&st.stderr));
}

fn ok(d: &Dend, args: &[&str]) -> String {
    let (code, out, err) = d.den(args);
    assert_eq!(code, 0, "{args:?}: {err}\n{}", d.log());
    out
}

#[test]
fn iso_vm_boots_through_firmware_with_a_display() {
    let store = images::shared_store();
    let base = images::build_builtin(&store, "base");
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("den-test.iso");
    make_iso(&store, &base, &iso);
    let d = Dend::start(Path::new(env!("CARGO_BIN_EXE_dend")));

    ok(&d, &["iso", "import", "installer", iso.to_str().unwrap()]);
    assert!(ok(&d, &["iso", "ls"]).contains("installer"));
    let (s, b) = d.api("POST", "/api/v1/vms", br#"{"name":"x","iso":"installer"}"#);
    assert_eq!((s, b["field"].as_str()), (400, Some("disk_mib")), "{b}");
    let (s, b) = d.api("POST", "/api/v1/vms", br#"{"name":"x","iso":"nope","disk_mib":64}"#);
    assert_eq!((s, b["field"].as_str()), (400, Some("iso")), "{b}");
    let (s, b) = d.api("POST", "/api/v1/vms", br#"{"name":"x","iso":"installer","disk_mib":64,"engine":"vmm"}"#);
    assert_eq!((s, b["field"].as_str()), (400, Some("engine")), "{b}");

    ok(
        &d,
        &["vm", "create", "inst", "--iso", "installer", "--disk", "64M", "--memory", "512", "--no-network", "--start"],
    );
    let t = Instant::now();
    let cmdline = loop {
        let (code, out, _) = d.den(&["vm", "exec", "inst", "--", "cat", "/proc/cmdline", "/sys/block/vda/size"]);
        if code == 0 {
            break out;
        }
        assert!(
            t.elapsed() < Duration::from_secs(240),
            "the ISO never booted to its agent:\n{}",
            d.den(&["vm", "console", "inst"]).1
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    eprintln!("ISO VM: agent answered {:.1}s after the start finished", t.elapsed().as_secs_f64());
    assert!(cmdline.contains("den-iso-boot"), "booted by GRUB from the CD: {cmdline}");
    assert!(cmdline.lines().any(|l| l.trim() == "131072"), "an empty 64 MiB disk: {cmdline}");

    // The VGA display on the VNC socket speaks RFB.
    let id = d.vm("inst")["id"].as_str().unwrap().to_string();
    let vnc = d.dir.path().join("run/vms").join(&id).join("vnc.sock");
    let mut s = std::os::unix::net::UnixStream::connect(&vnc).unwrap();
    let mut banner = [0u8; 12];
    s.read_exact(&mut banner).unwrap();
    assert!(banner.starts_with(b"RFB 003."), "{:?}", String::from_utf8_lossy(&banner));

    let (code, _, err) = d.den(&["iso", "rm", "installer"]);
    assert!(code == 1 && err.contains("used by VM `inst`"), "{err}");
    ok(&d, &["vm", "stop", "inst"]);
    ok(&d, &["vm", "rm", "inst"]);

    // The same ISO under UEFI (OVMF), with the VM's own variable store.
    ok(
        &d,
        &[
            "vm",
            "create",
            "efi",
            "--iso",
            "installer",
            "--firmware",
            "uefi",
            "--disk",
            "64M",
            "--memory",
            "512",
            "--no-network",
            "--start",
        ],
    );
    let efi_id = d.vm("efi")["id"].as_str().unwrap().to_string();
    assert!(d.dir.path().join("vms").join(&efi_id).join("efivars.fd").is_file());
    let t = Instant::now();
    loop {
        let (code, out, _) =
            d.den(&["vm", "exec", "efi", "--", "sh", "-c", "cat /proc/cmdline; ls -d /sys/firmware/efi"]);
        if code == 0 {
            assert!(out.contains("den-iso-boot") && out.contains("/sys/firmware/efi"), "booted by UEFI: {out}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(240), "no UEFI boot:\n{}", d.den(&["vm", "console", "efi"]).1);
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!("UEFI ISO VM: agent answered {:.1}s after the start finished", t.elapsed().as_secs_f64());
    ok(&d, &["vm", "stop", "efi"]);
    ok(&d, &["vm", "rm", "efi"]);
    ok(&d, &["iso", "rm", "installer"]);
    assert!(!ok(&d, &["iso", "ls"]).contains("installer"));
}
