//! `den-vmm`: one microVM per process. This first slice refuses Linux guests on hosts whose
//! `/dev/kvm` cannot run them and runs tiny hand-made test guests.

use clap::{Parser, Subcommand};
use den_kvm_probe::{kvm_kind, KvmKind};
use den_vmm::config::{Console, DiskConfig, FsConfig, NetConfig, VmConfig, VsockConfig};
use den_vmm::exit::ExitReason;
use den_vmm::machine::Machine;
use den_vmm::PVM_REFUSAL;
use kvm_ioctls::Kvm;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Den's KVM microVM monitor.
#[derive(Parser)]
#[command(name = "den-vmm", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once at start-up: the size of the `Boot` variant does not matter.
#[allow(clippy::large_enum_variant)]
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
        /// Serial console: `stdio`, `none`, `socket:PATH` (a Unix socket clients attach to), or a
        /// file path to append to.
        #[arg(long, default_value = "stdio")]
        console: String,
        /// A raw disk image as virtio-blk (`PATH` or `PATH,ro`); repeat for more disks.
        #[arg(long = "disk", value_parser = DiskConfig::parse)]
        disks: Vec<DiskConfig>,
        /// Do not offer a virtio-rng device.
        #[arg(long)]
        no_rng: bool,
        /// A virtio-vsock device for guest CID `CID`; den-vmm listens on the Unix socket `PATH`
        /// (`CONNECT <port>` reaches guest ports; guest connections to host port P go to `PATH_P`).
        #[arg(long, value_name = "CID,PATH", value_parser = VsockConfig::parse)]
        vsock: Option<VsockConfig>,
        /// A virtio-net card on a TAP interface (`TAP` or `TAP,mac=52:54:00:12:34:56`); repeat
        /// for more cards.
        #[arg(long = "net", value_parser = NetConfig::parse)]
        nets: Vec<NetConfig>,
        /// A shared folder: a virtio-fs device served by the vhost-user backend (virtiofsd)
        /// listening on SOCKET (or a connected socket handed over as `fd:N`), mounted in the
        /// guest by TAG; repeat for more folders. Guest RAM is then a shared memfd.
        #[arg(long = "fs", value_name = "SOCKET,tag=TAG", value_parser = FsConfig::parse)]
        fs: Vec<FsConfig>,
        /// Work disk requests on the vCPU thread that notified the disk, instead of on a thread
        /// per disk woken through an ioeventfd (the default); for comparisons.
        #[arg(long)]
        inline_io: bool,
        /// The kernel is a tiny hand-made test guest: boot it even on a /dev/kvm that cannot run
        /// Linux (PVM-backed), where only tiny guests run (by emulation).
        #[arg(long)]
        tiny_test_guest: bool,
        /// Serve the control API (JSON lines: start, pause, resume, ctrl_alt_del, stop, info,
        /// metrics, console_recent) on this Unix socket.
        #[arg(long)]
        api_sock: Option<PathBuf>,
        /// Build the VM but start its vCPUs only on the API's `start` request.
        #[arg(long, requires = "api_sock")]
        wait_start: bool,
        /// The KVM device: a path, or `fd:N` handed over open (then `--kvm-kind` says what it
        /// can run, since den-vmm may have no `/sys` to look in).
        #[arg(long, default_value = "/dev/kvm")]
        kvm: PathBuf,
        /// What the KVM device runs (`hardware` or `pvm`), as its opener found out; probed
        /// from `/sys` and `--kvm` when absent.
        #[arg(long, value_parser = parse_kvm_kind)]
        kvm_kind: Option<KvmKind>,
        /// Seccomp filters: `kill` (default) ends den-vmm on a refused syscall, `log` allows and
        /// logs it to the kernel audit log, `off` runs without filters.
        #[arg(long, default_value = "kill")]
        seccomp: den_vmm::seccomp::Mode,
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

fn parse_kvm_kind(s: &str) -> Result<KvmKind, String> {
    KvmKind::from_name(s).ok_or_else(|| format!("KVM kind `{s}`: expected hardware or pvm"))
}

/// Opens the KVM device `path` or claims it when it is `fd:N`.
fn open_kvm(path: &Path) -> Result<Kvm, String> {
    let Some(fd) = den_vmm::files::fd_number(path) else {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("--kvm {}: a path with a NUL byte", path.display()))?;
        return Kvm::new_with_path(&c).map_err(|e| format!("cannot open {}: {e}", path.display()));
    };
    let owned = den_vmm::files::claim(fd).map_err(|e| format!("--kvm: {e}"))?;
    // SAFETY: the descriptor is open and owned by nobody else ([`den_vmm::files::claim`]);
    // KVM ioctls on it fail cleanly if it is not /dev/kvm.
    let kvm = unsafe { Kvm::from_raw_fd(owned.into_raw_fd()) };
    if kvm.get_api_version() != 12 {
        return Err(format!("--kvm fd:{fd} is not /dev/kvm (KVM_GET_API_VERSION failed)"));
    }
    Ok(kvm)
}

/// Exit code when the host cannot run the requested guest.
const EXIT_UNSUPPORTED: u8 = 3;

fn read_config(path: &Path) -> Result<VmConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("config {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
}

/// How `boot` runs, beyond the VM's configuration.
struct BootOptions {
    kvm: PathBuf,
    kvm_kind: Option<KvmKind>,
    seccomp: den_vmm::seccomp::Mode,
    tiny_test_guest: bool,
    api_sock: Option<PathBuf>,
    wait_start: bool,
}

fn boot(cfg: VmConfig, opts: BootOptions) -> ExitCode {
    let kind = match (&opts.kvm_kind, den_vmm::files::is_handed_over(&opts.kvm)) {
        (Some(k), _) => k.clone(),
        (None, false) => kvm_kind(Path::new("/sys"), &opts.kvm),
        (None, true) => {
            eprintln!("den-vmm: --kvm {} needs --kvm-kind (hardware or pvm)", opts.kvm.display());
            return ExitCode::from(2);
        }
    };
    match kind {
        KvmKind::Pvm if !opts.tiny_test_guest => {
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
    den_vmm::seccomp::set_mode(opts.seccomp);
    if let Err(e) = den_vmm::signals::block_stop_signals() {
        eprintln!("den-vmm: cannot set up signal handling: {e}");
        return ExitCode::from(1);
    }
    let kvm = match open_kvm(&opts.kvm) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("den-vmm: {e}");
            return ExitCode::from(1);
        }
    };
    let mut machine = match Machine::build_on(kvm, &cfg) {
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
        let serial = machine.serial.clone();
        let _ = std::thread::Builder::new().name("stdin".into()).spawn(move || {
            den_vmm::seccomp::enter(den_vmm::seccomp::ThreadKind::Console);
            den_vmm::console::forward_input(std::io::stdin(), &serial)
        });
    }
    let (start_tx, start_rx) = std::sync::mpsc::channel();
    if let Some(sock) = &opts.api_sock {
        let state = machine.api_state(&cfg, opts.wait_start.then_some(start_tx));
        if let Err(e) = den_vmm::api::serve(sock, std::sync::Arc::new(state)) {
            eprintln!("den-vmm: cannot serve the API on {}: {e}", sock.display());
            return ExitCode::from(1);
        }
    }
    if opts.wait_start && start_rx.recv().is_err() {
        eprintln!("den-vmm: --wait-start needs --api-sock to receive the start request");
        return ExitCode::from(2);
    }
    if let Err(e) = machine.start() {
        eprintln!("den-vmm: cannot start the VM: {e}");
        return ExitCode::from(1);
    }
    den_vmm::seccomp::enter(den_vmm::seccomp::ThreadKind::Main);
    let mut reason = machine.wait();
    if reason == ExitReason::Reset && machine.ctrl_alt_del.load(std::sync::atomic::Ordering::SeqCst) {
        eprintln!("den-vmm: the guest reset after Ctrl-Alt-Del: a clean stop");
        reason = ExitReason::Stopped;
    }
    eprintln!("den-vmm: guest ended: {reason:?} after {:.3}s", machine.started.elapsed().as_secs_f64());
    eprintln!("den-vmm: {}", machine.metrics_line());
    if let Some(m) = machine.milestones.line() {
        eprintln!("den-vmm: guest milestones: {m}");
    }
    ExitCode::from(reason.code())
}

fn main() -> ExitCode {
    // Before anything opens a descriptor: which ones were handed over.
    den_vmm::files::note_inherited();
    // Not dumpable: no core file of guest memory, and no ptrace or /proc/<pid>/mem access by
    // another process of the same uid.
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_SET_DUMPABLE,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
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
        Cmd::Boot {
            config,
            kernel,
            initrd,
            cmdline,
            cpus,
            memory_mib,
            console,
            disks,
            no_rng,
            vsock,
            nets,
            fs,
            inline_io,
            tiny_test_guest,
            api_sock,
            wait_start,
            kvm,
            kvm_kind,
            seccomp,
        } => {
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
                        s if s.starts_with("socket:") => Console::Socket(s["socket:".len()..].into()),
                        path => Console::File(path.into()),
                    },
                    disks,
                    rng: !no_rng,
                    vsock,
                    nets,
                    fs,
                    io_workers: !inline_io,
                },
            };
            boot(cfg, BootOptions { kvm, kvm_kind, seccomp, tiny_test_guest, api_sock, wait_start })
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
