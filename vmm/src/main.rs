//! `den-vmm`: one microVM per process. This first slice refuses Linux guests on hosts whose
//! `/dev/kvm` cannot run them and runs tiny hand-made test guests.

use clap::{Parser, Subcommand};
use den_vmm::config::{Console, DiskConfig, VmConfig};
use den_vmm::host::{kvm_kind, KvmKind, PVM_REFUSAL};
use den_vmm::machine::Machine;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Den's KVM microVM monitor.
#[derive(Parser)]
#[command(name = "den-vmm", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Boot a Linux kernel (bzImage or ELF vmlinux) with an initramfs. Exit codes: 0 the guest
    /// powered off (or was stopped), 1 den-vmm failed, 2 usage, 3 this host cannot run Linux
    /// guests, 4 the guest crashed, 10 the guest rebooted (restart den-vmm to boot it again).
    Boot {
        /// A JSON VM configuration (see `den_vmm::config::VmConfig`); flags are ignored with it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Kernel image.
        #[arg(long, required_unless_present = "config")]
        kernel: Option<PathBuf>,
        /// Initramfs.
        #[arg(long)]
        initrd: Option<PathBuf>,
        /// Kernel command line.
        #[arg(long, default_value = "console=ttyS0")]
        cmdline: String,
        /// vCPUs.
        #[arg(long, default_value_t = 1)]
        cpus: u8,
        /// Memory in MiB.
        #[arg(long, default_value_t = 256)]
        memory_mib: u64,
        /// Serial console: `stdio`, `none`, or a file path to append to.
        #[arg(long, default_value = "stdio")]
        console: String,
        /// A raw disk image as virtio-blk (`PATH` or `PATH,ro`); repeat for more disks.
        #[arg(long = "disk", value_parser = DiskConfig::parse)]
        disks: Vec<DiskConfig>,
        /// Do not offer a virtio-rng device.
        #[arg(long)]
        no_rng: bool,
        /// The kernel is a tiny hand-made test guest: boot it even on a /dev/kvm that cannot run
        /// Linux (PVM-backed), where only tiny guests run (by emulation).
        #[arg(long)]
        tiny_test_guest: bool,
    },
    /// Say what this host's /dev/kvm can run (`hardware`, `pvm`, or `missing: <why>`); exit 0 only
    /// for hardware virtualization.
    Probe,
    /// Run a flat real-mode test guest (loaded at 0x1000) until it halts; prints its serial
    /// console (COM1, an emulated 8250), what it wrote to other I/O ports, and the exit counts.
    TinyTestGuest {
        /// The guest code.
        code: PathBuf,
        /// Guest memory in MiB.
        #[arg(long, default_value_t = 16)]
        memory_mib: usize,
    },
}

/// Exit code when the host cannot run the requested guest.
const EXIT_UNSUPPORTED: u8 = 3;

fn read_config(path: &Path) -> Result<VmConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("config {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
}

fn boot(cfg: VmConfig, tiny_test_guest: bool) -> ExitCode {
    match kvm_kind(Path::new("/sys"), Path::new("/dev/kvm")) {
        KvmKind::Pvm if !tiny_test_guest => {
            eprintln!("{PVM_REFUSAL}");
            return ExitCode::from(EXIT_UNSUPPORTED);
        }
        KvmKind::Missing(why) => {
            eprintln!("den-vmm: no usable KVM ({why}); load kvm_intel or kvm_amd");
            return ExitCode::from(EXIT_UNSUPPORTED);
        }
        KvmKind::Hardware | KvmKind::Pvm => {}
    }
    if let Err(e) = cfg.validate() {
        eprintln!("den-vmm: {e}");
        return ExitCode::from(2);
    }
    let mut machine = match Machine::build(&cfg) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("den-vmm: cannot build the VM: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = den_vmm::signals::stop_on_signals(machine.exit.clone()) {
        eprintln!("den-vmm: cannot set up signal handling: {e}");
        return ExitCode::from(1);
    }
    if cfg.console == Console::Stdio {
        forward_stdin(machine.serial.clone());
    }
    if let Err(e) = machine.start() {
        eprintln!("den-vmm: cannot start the VM: {e}");
        return ExitCode::from(1);
    }
    let reason = machine.wait();
    eprintln!("den-vmm: guest ended: {reason:?} after {:.3}s", machine.started.elapsed().as_secs_f64());
    eprintln!("den-vmm: {}", machine.metrics_line());
    ExitCode::from(reason.code())
}

/// Copies stdin to the serial console, waiting while the guest's receive FIFO is full.
fn forward_stdin(serial: std::sync::Arc<std::sync::Mutex<den_vmm::devices::serial::SerialPort>>) {
    let _ = std::thread::Builder::new().name("stdin".into()).spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin();
        while let Ok(n @ 1..) = stdin.read(&mut buf) {
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let done = serial.lock().unwrap_or_else(|p| p.into_inner()).enqueue_input(rest);
                rest = &rest[done..];
                if done == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        }
    });
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Probe => match kvm_kind(Path::new("/sys"), Path::new("/dev/kvm")) {
            KvmKind::Hardware => {
                println!("hardware");
                ExitCode::SUCCESS
            }
            KvmKind::Pvm => {
                println!("pvm");
                ExitCode::from(EXIT_UNSUPPORTED)
            }
            KvmKind::Missing(why) => {
                println!("missing: {why}");
                ExitCode::from(EXIT_UNSUPPORTED)
            }
        },
        Cmd::Boot { config, kernel, initrd, cmdline, cpus, memory_mib, console, disks, no_rng, tiny_test_guest } => {
            let cfg = match config {
                Some(p) => match read_config(&p) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("den-vmm: {e}");
                        return ExitCode::from(2);
                    }
                },
                None => VmConfig {
                    cpus,
                    memory_mib,
                    kernel: kernel.unwrap_or_default(),
                    initrd,
                    cmdline,
                    console: match console.as_str() {
                        "stdio" => Console::Stdio,
                        "none" => Console::None,
                        path => Console::File(path.into()),
                    },
                    disks,
                    rng: !no_rng,
                },
            };
            boot(cfg, tiny_test_guest)
        }
        Cmd::TinyTestGuest { code, memory_mib } => {
            let bytes = match std::fs::read(&code) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("den-vmm: cannot read test guest {}: {e}", code.display());
                    return ExitCode::from(1);
                }
            };
            match den_vmm::tiny::run(&bytes, memory_mib << 20, 1_000_000) {
                Ok(run) => {
                    println!("console: {}", String::from_utf8_lossy(&run.console));
                    for (port, data) in &run.port_writes {
                        println!("port {port:#x}: {}", String::from_utf8_lossy(data));
                    }
                    println!("exits: {:?}", run.exits);
                    if let Some(t) = run.first_exit {
                        println!("first guest exit after {:.3} ms", t.as_secs_f64() * 1000.0);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("den-vmm: test guest {}: {e}", code.display());
                    ExitCode::from(1)
                }
            }
        }
    }
}
