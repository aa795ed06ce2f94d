//! Tiny hand-made guests on this machine's real `/dev/kvm` (PVM-backed here: they run by
//! emulation, which is fine for a few instructions).

use den_vmm::tiny;
use std::process::Command;

#[test]
fn tiny_guest_prints_on_the_8250_console_and_halts() {
    let text = b"hello from a tiny guest\n";
    let run = tiny::run(&tiny::serial_print_program(text), 16 << 20, 10_000).expect("tiny guest runs");
    assert_eq!(run.console, text);
    assert!(run.port_writes.is_empty(), "{:?}", run.port_writes);
    assert_eq!(run.exits.get("io_out"), Some(&(text.len() as u64)));
    assert!(run.exits.get("io_in").is_some_and(|n| *n >= text.len() as u64), "LSR polled: {:?}", run.exits);
    assert_eq!(run.exits.get("hlt"), Some(&1));
}

#[test]
fn writes_to_other_ports_are_collected() {
    let run = tiny::run(&tiny::print_program(0x80, b"\x01\x02"), 1 << 20, 100).expect("runs");
    assert_eq!(run.port_writes.get(&0x80).map(Vec::as_slice), Some(&[1u8, 2][..]));
    assert!(run.console.is_empty());
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
    let kind = den_kvm_probe::kvm_kind(std::path::Path::new("/sys"), std::path::Path::new("/dev/kvm"));
    let out = Command::new(env!("CARGO_BIN_EXE_den-vmm")).args(["boot", "--kernel", "/nonexistent"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    match kind {
        den_kvm_probe::KvmKind::Pvm => {
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
    std::fs::write(&code, tiny::serial_print_program(b"ok")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_den-vmm")).arg("tiny-test-guest").arg(&code).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("console: ok") && stdout.contains("\"hlt\": 1"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}
