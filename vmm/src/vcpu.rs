//! The vCPU threads: each runs `KVM_RUN` and routes port I/O and MMIO exits to the buses until
//! the VM ends. Guest-caused failures (triple fault, entry failure, emulation failure) end the VM
//! as a crash; nothing the guest does panics the thread.

use crate::control::{self, RunControl};
use crate::devices::bus::Bus;
use crate::exit::{ExitReason, ExitSignal};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Exit counts of all vCPUs, for the metrics API.
#[derive(Debug, Default)]
pub struct ExitCounters {
    /// Port reads.
    pub io_in: AtomicU64,
    /// Port writes.
    pub io_out: AtomicU64,
    /// MMIO reads.
    pub mmio_read: AtomicU64,
    /// MMIO writes.
    pub mmio_write: AtomicU64,
    /// Accesses to addresses no device owns.
    pub unclaimed: AtomicU64,
    /// Other exits (HLT, interrupted runs, ...).
    pub other: AtomicU64,
}

impl ExitCounters {
    /// (name, count) pairs.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        [
            ("io_in", &self.io_in),
            ("io_out", &self.io_out),
            ("mmio_read", &self.mmio_read),
            ("mmio_write", &self.mmio_write),
            ("unclaimed", &self.unclaimed),
            ("other", &self.other),
        ]
        .iter()
        .map(|(n, c)| (*n, c.load(Ordering::Relaxed)))
        .collect()
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// With `DEN_VMM_TRACE_UNCLAIMED=1`, writes to addresses no device owns are logged (a debugging
/// aid for new guests; off by default because guests probe absent hardware on purpose).
fn trace_unclaimed(kind: &str, addr: u64, data: &[u8]) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("DEN_VMM_TRACE_UNCLAIMED").is_some()) {
        eprintln!("den-vmm: unclaimed {kind} {addr:#x} {data:02x?}");
    }
}

/// What one vCPU thread needs.
pub struct VcpuContext {
    /// Port I/O bus.
    pub pio: Bus,
    /// MMIO bus.
    pub mmio: Bus,
    /// Where the VM's end is recorded.
    pub exit: Arc<ExitSignal>,
    /// Shared exit counters.
    pub counters: Arc<ExitCounters>,
    /// Pause and resume.
    pub control: Arc<RunControl>,
}

/// Runs `vcpu` until the VM ends.
pub fn run(mut vcpu: VcpuFd, index: u8, ctx: VcpuContext) {
    crate::seccomp::enter(crate::seccomp::ThreadKind::Vcpu);
    control::set_immediate_exit_ptr(&mut vcpu.get_kvm_run().immediate_exit);
    ctx.control.register_current_thread();
    while ctx.exit.get().is_none() {
        if ctx.control.is_paused() {
            ctx.control.park_while_paused(&ctx.exit);
            continue;
        }
        match vcpu.run() {
            Ok(VcpuExit::IoOut(port, data)) => {
                bump(&ctx.counters.io_out);
                if !ctx.pio.write(u64::from(port), data) {
                    bump(&ctx.counters.unclaimed);
                    trace_unclaimed("out", u64::from(port), data);
                }
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                bump(&ctx.counters.io_in);
                if !ctx.pio.read(u64::from(port), data) {
                    bump(&ctx.counters.unclaimed);
                }
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                bump(&ctx.counters.mmio_write);
                if !ctx.mmio.write(addr, data) {
                    bump(&ctx.counters.unclaimed);
                    trace_unclaimed("mmio write", addr, data);
                }
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                bump(&ctx.counters.mmio_read);
                if !ctx.mmio.read(addr, data) {
                    bump(&ctx.counters.unclaimed);
                }
            }
            Ok(VcpuExit::Hlt) | Ok(VcpuExit::Intr) => bump(&ctx.counters.other),
            Ok(VcpuExit::Shutdown) => ctx.exit.set(ExitReason::Crash(format!("vCPU {index}: triple fault"))),
            Ok(VcpuExit::SystemEvent(kind, _)) => ctx.exit.set(match kind {
                kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => ExitReason::PowerOff,
                kvm_bindings::KVM_SYSTEM_EVENT_RESET => ExitReason::Reset,
                other => ExitReason::Crash(format!("vCPU {index}: system event {other}")),
            }),
            Ok(VcpuExit::FailEntry(reason, cpu)) => ctx.exit.set(ExitReason::Crash(format!(
                "vCPU {index}: KVM could not enter the guest (reason {reason:#x}, cpu {cpu})"
            ))),
            Ok(VcpuExit::InternalError) => {
                ctx.exit.set(ExitReason::Crash(format!("vCPU {index}: KVM internal error (emulation failure)")))
            }
            Ok(other) => ctx.exit.set(ExitReason::Crash(format!("vCPU {index}: unexpected exit {other:?}"))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                vcpu.set_kvm_immediate_exit(0);
                bump(&ctx.counters.other);
            }
            Err(e) => ctx.exit.set(ExitReason::Error(format!("vCPU {index}: KVM_RUN: {e}"))),
        }
    }
    control::set_immediate_exit_ptr(std::ptr::null_mut());
}
