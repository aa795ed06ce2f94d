//! `den-vmm`: one microVM per process. This first slice refuses Linux guests on hosts whose
//! `/dev/kvm` cannot run them and runs tiny hand-made test guests.

use clap::{Parser, Subcommand};
use den_vmm::host::{kvm_kind, KvmKind, PVM_REFUSAL};
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
    /// Boot a Linux kernel (bzImage or ELF vmlinux).
    Boot {
        /// Kernel image.
        #[arg(long)]
        kernel: PathBuf,
        /// Initramfs.
        #[arg(long)]
        initrd: Option<PathBuf>,
        /// Kernel command line.
        #[arg(long, default_value = "console=ttyS0")]
        cmdline: String,
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
        Cmd::Boot { kernel, .. } => match kvm_kind(Path::new("/sys"), Path::new("/dev/kvm")) {
            KvmKind::Pvm => {
                eprintln!("{PVM_REFUSAL}");
                ExitCode::from(EXIT_UNSUPPORTED)
            }
            KvmKind::Missing(why) => {
                eprintln!("den-vmm: no usable KVM ({why}); load kvm_intel or kvm_amd");
                ExitCode::from(EXIT_UNSUPPORTED)
            }
            KvmKind::Hardware => {
                eprintln!("den-vmm: booting Linux ({}) lands in a later slice of issue 3", kernel.display());
                ExitCode::from(1)
            }
        },
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
