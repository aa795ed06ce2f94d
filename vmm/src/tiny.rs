//! Tiny hand-made guests: flat real-mode code loaded at 0x1000, one vCPU, run until `hlt`.
//! COM1 is an emulated 8250 (its output lands in [`TinyRun::console`]); writes to other ports
//! are collected per port; everything else the guest does ends the run with an error
//! instead of a panic. This is the exit plumbing later devices build on, and what runs on a
//! `/dev/kvm` that cannot run Linux.

use crate::devices::bus::Bus;
use crate::devices::irq::IrqLine;
use crate::devices::serial::{SerialPort, COM1, DEFAULT_RING};
use crate::{kvm, VmmError};
use kvm_ioctls::{Kvm, VcpuExit};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress};

/// Where the code is loaded and where the vCPU starts.
pub const LOAD_ADDR: u64 = 0x1000;

/// What a tiny guest did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TinyRun {
    /// What the guest printed on the serial console (COM1).
    pub console: Vec<u8>,
    /// Bytes written to each other I/O port, in order.
    pub port_writes: BTreeMap<u16, Vec<u8>>,
    /// Exits by kind (`io_out`, `io_in`, `hlt`).
    pub exits: BTreeMap<&'static str, u64>,
    /// Time from the start of `run` (VM creation) to the first exit of the guest.
    pub first_exit: Option<Duration>,
}

/// Runs `code` with `mem_size` bytes of guest memory, for at most `max_exits` exits.
pub fn run(code: &[u8], mem_size: usize, max_exits: u64) -> Result<TinyRun, VmmError> {
    let start = Instant::now();
    if code.len() as u64 + LOAD_ADDR > mem_size as u64 {
        return Err(VmmError::Memory(format!("{} bytes of code do not fit in {mem_size} bytes of memory", code.len())));
    }
    let kvm_fd = Kvm::new().map_err(kvm("open /dev/kvm"))?;
    let vm = kvm_fd.create_vm().map_err(kvm("create VM"))?;
    let mem = crate::memory::create(&vm, &[(0, mem_size as u64)], crate::memory::Backing::Private)?;
    mem.write_slice(code, GuestAddress(LOAD_ADDR)).map_err(|e| VmmError::Memory(e.to_string()))?;

    let mut vcpu = vm.create_vcpu(0).map_err(kvm("create vCPU"))?;
    let mut sregs = vcpu.get_sregs().map_err(kvm("get sregs"))?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).map_err(kvm("set sregs"))?;
    let regs = kvm_bindings::kvm_regs { rip: LOAD_ADDR, rflags: 2, ..Default::default() };
    vcpu.set_regs(&regs).map_err(kvm("set regs"))?;

    let serial = Arc::new(Mutex::new(SerialPort::new(IrqLine::counting(), DEFAULT_RING, None)));
    let mut pio = Bus::new();
    pio.insert(u64::from(COM1), 8, serial.clone()).map_err(|e| VmmError::Memory(e.to_string()))?;
    let mut out = TinyRun::default();
    let result = exit_loop(&mut vcpu, &pio, &mut out, max_exits, start);
    out.console = serial.lock().unwrap_or_else(|p| p.into_inner()).recent();
    result.map(|()| out)
}

fn exit_loop(
    vcpu: &mut kvm_ioctls::VcpuFd,
    pio: &Bus,
    out: &mut TinyRun,
    max_exits: u64,
    start: Instant,
) -> Result<(), VmmError> {
    for _ in 0..max_exits {
        let exit = vcpu.run().map_err(kvm("run vCPU"))?;
        if out.first_exit.is_none() {
            out.first_exit = Some(start.elapsed());
        }
        match exit {
            VcpuExit::IoOut(port, data) => {
                *out.exits.entry("io_out").or_default() += 1;
                if !pio.write(u64::from(port), data) {
                    out.port_writes.entry(port).or_default().extend_from_slice(data);
                }
            }
            VcpuExit::IoIn(port, data) => {
                *out.exits.entry("io_in").or_default() += 1;
                pio.read(u64::from(port), data);
            }
            VcpuExit::Hlt => {
                *out.exits.entry("hlt").or_default() += 1;
                return Ok(());
            }
            other => return Err(VmmError::UnhandledExit(format!("{other:?}"))),
        }
    }
    Err(VmmError::TooManyExits(max_exits))
}

/// Real-mode code that prints `text` on COM1 the way a driver does: for each byte, poll the line
/// status register until the transmitter is empty, then write the byte. Then halts.
pub fn serial_print_program(text: &[u8]) -> Vec<u8> {
    let mut code = vec![];
    for &b in text {
        code.extend_from_slice(&[0xBA, 0xFD, 0x03]); // mov dx, 0x3fd (LSR)
        code.extend_from_slice(&[0xEC, 0xA8, 0x20, 0x74, 0xFB]); // in al, dx; test al, 0x20; jz back to in
        code.extend_from_slice(&[0xBA, 0xF8, 0x03, 0xB0, b, 0xEE]); // mov dx, 0x3f8; mov al, b; out dx, al
    }
    code.push(0xF4); // hlt
    code
}

/// Real-mode code that writes `text` to `port` byte by byte, then halts.
pub fn print_program(port: u16, text: &[u8]) -> Vec<u8> {
    let mut code = vec![0xBA, port as u8, (port >> 8) as u8]; // mov dx, port
    for &b in text {
        code.extend_from_slice(&[0xB0, b, 0xEE]); // mov al, b; out dx, al
    }
    code.push(0xF4); // hlt
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_encoding() {
        assert_eq!(print_program(0x3f8, b"A"), vec![0xBA, 0xF8, 0x03, 0xB0, b'A', 0xEE, 0xF4]);
    }

    #[test]
    fn oversized_code_is_refused_before_touching_kvm() {
        assert!(matches!(run(&[0x90; 64], 32, 10), Err(VmmError::Memory(_))));
    }
}
