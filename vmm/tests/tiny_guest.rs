//! Tiny hand-made guests on this machine's real `/dev/kvm` (PVM-backed here: they run by
//! emulation, which is fine for a few instructions).

use den_vmm::tiny;
use std::process::Command;

#[test]
fn tiny_guest_writes_to_the_serial_port_and_halts() {
    let run = tiny::run(&tiny::print_program(0x3f8, b"hello from a tiny guest\n"), 16 << 20, 10_000)
        .expect("tiny guest runs");
    assert_eq!(run.port_writes.get(&0x3f8).map(Vec::as_slice), Some(&b"hello from a tiny guest\n"[..]));
    assert_eq!(run.exits.get("io_out"), Some(&24));
    assert_eq!(run.exits.get("hlt"), Some(&1));
}

#[test]
fn a_guest_that_never_halts_is_stopped_with_an_error() {
    // jmp to itself after one port write: bounded by max_exits, never a hang or a panic.
    let mut code = tiny::print_program(0x80, b"x");
    code.pop();
    code.extend_from_slice(&[0xBA, 0x80, 0x00, 0xEE, 0xEB, 0xFD]); // mov dx,0x80; out dx,al; jmp -3 (back to the out)
    let err = tiny::run(&code, 1 << 20, 50).unwrap_err();
    assert!(matches!(err, den_vmm::VmmError::TooManyExits(50)), "{err}");
}

#[test]
fn booting_linux_on_a_pvm_host_is_refused_in_one_line() {
    let kind = den_vmm::host::kvm_kind(std::path::Path::new("/sys"), std::path::Path::new("/dev/kvm"));
    let out = Command::new(env!("CARGO_BIN_EXE_den-vmm")).args(["boot", "--kernel", "/nonexistent"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    match kind {
        den_vmm::host::KvmKind::Pvm => {
            assert_eq!(out.status.code(), Some(3));
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains("PVM") && err.contains("cannot run stock Linux kernels"), "{err}");
        }
        _ => assert_ne!(out.status.code(), Some(0), "{err}"),
    }
}

#[test]
fn cli_runs_a_tiny_guest_from_a_file() {
    let dir = std::env::temp_dir().join(format!("den-vmm-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let code = dir.join("guest.bin");
    std::fs::write(&code, tiny::print_program(0x3f8, b"ok")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_den-vmm")).arg("tiny-test-guest").arg(&code).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("port 0x3f8: ok") && stdout.contains("\"hlt\": 1"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}
