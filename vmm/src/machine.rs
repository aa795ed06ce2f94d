//! Assembles a VM from its configuration: KVM VM with the in-kernel irqchip and PIT, guest RAM,
//! the legacy devices (COM1, i8042, ACPI power), the kernel loaded with ACPI tables, and the
//! vCPUs; then runs it until the guest or the controller ends it.

use crate::api::ApiState;
use crate::boot::{acpi, cpu, loader};
use crate::config::{Console, VmConfig};
use crate::console::{self, ConsoleHub, HubWriter};
use crate::control::RunControl;
use crate::devices::bus::{Bus, SharedDevice};
use crate::devices::debug_port::{self, DebugPort, Milestones};
use crate::devices::i8042::{self, I8042};
use crate::devices::irq::IrqLine;
use crate::devices::power::{self, PowerDevice};
use crate::devices::pvpanic::{self, PvPanic};
use crate::devices::serial::{self, SerialPort, DEFAULT_RING};
use crate::devices::virtio::block::Block;
use crate::devices::virtio::fs::Fs;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::net::Net;
use crate::devices::virtio::rng::Rng;
use crate::devices::virtio::tap::Tap;
use crate::devices::virtio::vsock::Vsock;
use crate::devices::virtio::worker::{self, QueueWorker};
use crate::devices::virtio::{types, VirtioDevice, VirtioInterrupt};
use crate::event_loop::{EventLoop, EventTarget};
use crate::exit::{ExitReason, ExitSignal};
use crate::vcpu::{self, ExitCounters, VcpuContext};
use crate::{kvm, layout, memory, VmmError};
use kvm_ioctls::{IoEventAddress, Kvm, VcpuFd, VmFd};
use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vm_memory::GuestMemoryMmap;

/// Address KVM needs for the TSS on Intel hosts (three pages just below the IOAPIC's neighbourhood).
const TSS_ADDR: usize = 0xfffb_d000;

/// A built VM, ready to start.
pub struct Machine {
    /// Where the VM's end is recorded.
    pub exit: Arc<ExitSignal>,
    /// COM1.
    pub serial: Arc<Mutex<SerialPort>>,
    /// The keyboard controller (Ctrl-Alt-Del).
    pub i8042: Arc<Mutex<I8042>>,
    /// vCPU exit counters.
    pub counters: Arc<ExitCounters>,
    /// Milestone codes the guest wrote to the debug port, timed from the process start.
    pub milestones: Arc<Milestones>,
    /// Pause and resume.
    pub control: Arc<RunControl>,
    /// Set once the API sent Ctrl-Alt-Del.
    pub ctrl_alt_del: Arc<AtomicBool>,
    /// The virtio devices, in guest order.
    pub transports: Vec<Arc<Mutex<MmioTransport>>>,
    /// When building started.
    pub started: Instant,
    vcpus: Vec<VcpuFd>,
    /// Disks' I/O workers (started with the vCPUs), with their thread names.
    workers: Vec<(String, QueueWorker)>,
    pio: Bus,
    mmio: Bus,
    events: EventLoop,
    _mem: GuestMemoryMmap,
    _vm: Arc<VmFd>,
    _kvm: Kvm,
}

fn console_sink(c: &Console) -> Result<Option<Box<dyn Write + Send>>, VmmError> {
    Ok(match c {
        Console::Stdio => Some(Box::new(std::io::stdout())),
        Console::File(p) => {
            let f =
                crate::files::append(p).map_err(|e| VmmError::Input(format!("console file {}: {e}", p.display())))?;
            Some(Box::new(f))
        }
        Console::None | Console::Socket(_) => None,
    })
}

fn place(bus: &mut Bus, base: u64, len: u64, dev: SharedDevice) -> Result<(), VmmError> {
    bus.insert(base, len, dev).map_err(|e| VmmError::Input(e.to_string()))
}

impl Machine {
    /// Builds the VM described by `cfg` on `/dev/kvm`.
    pub fn build(cfg: &VmConfig) -> Result<Machine, VmmError> {
        Machine::build_on(Kvm::new().map_err(kvm("open /dev/kvm"))?, cfg)
    }

    /// Builds the VM described by `cfg` on an open `/dev/kvm`.
    pub fn build_on(kvm_fd: Kvm, cfg: &VmConfig) -> Result<Machine, VmmError> {
        let started = Instant::now();
        let milestones = Arc::new(Milestones::since_process_start());
        cfg.validate().map_err(VmmError::Input)?;
        let vm = Arc::new(kvm_fd.create_vm().map_err(kvm("create VM"))?);
        vm.set_tss_address(TSS_ADDR).map_err(kvm("set TSS address"))?;
        vm.create_irq_chip().map_err(kvm("create irqchip"))?;
        let pit = kvm_bindings::kvm_pit_config { flags: kvm_bindings::KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
        vm.create_pit2(pit).map_err(kvm("create PIT"))?;

        let mem_bytes = cfg.memory_mib << 20;
        // A vhost-user backend maps guest RAM too: then it is one shared memfd.
        let backing = if cfg.fs.is_empty() { memory::Backing::Private } else { memory::Backing::Shared };
        let mem = memory::create(&vm, &layout::ram_ranges(mem_bytes), backing)?;

        let exit = Arc::new(ExitSignal::new());
        let serial = Arc::new(Mutex::new(SerialPort::new(
            IrqLine::gsi(&vm, serial::COM1_GSI),
            DEFAULT_RING,
            console_sink(&cfg.console)?,
        )));
        if let Console::Socket(path) = &cfg.console {
            let hub = Arc::new(ConsoleHub::default());
            serial.lock().unwrap_or_else(|p| p.into_inner()).set_sink(Some(Box::new(HubWriter(hub.clone()))));
            console::listen(path, hub, serial.clone())
                .map_err(|e| VmmError::Input(format!("console socket {}: {e}", path.display())))?;
        }
        let i8042 = Arc::new(Mutex::new(I8042::new(IrqLine::gsi(&vm, i8042::KBD_GSI), exit.clone())));
        let mut pio = Bus::new();
        place(&mut pio, u64::from(serial::COM1), 8, serial.clone())?;
        place(&mut pio, u64::from(i8042::I8042_PORT), i8042::I8042_LEN, i8042.clone())?;
        let power = Arc::new(Mutex::new(PowerDevice::new(exit.clone())));
        place(&mut pio, u64::from(power::POWER_PORT), power::POWER_LEN, power)?;
        let pvpanic = Arc::new(Mutex::new(PvPanic::new(exit.clone())));
        place(&mut pio, u64::from(pvpanic::PVPANIC_PORT), 1, pvpanic)?;
        place(&mut pio, debug_port::DEBUG_PORT.into(), 1, Arc::new(Mutex::new(DebugPort::new(milestones.clone()))))?;
        let mut mmio = Bus::new();
        let mut virtio: Vec<Box<dyn VirtioDevice>> = Vec::new();
        for (i, d) in cfg.disks.iter().enumerate() {
            let id = format!("den-disk-{i}");
            virtio.push(Box::new(Block::open(&d.path, d.read_only, &id).map_err(|e| VmmError::Input(e.to_string()))?));
        }
        if cfg.rng {
            virtio.push(Box::new(Rng::new()));
        }
        // Host sockets (vsock, TAP) are watched by the event loop, bound to the device's transport.
        let events = EventLoop::new().map_err(|e| VmmError::Io("create the event loop", e))?;
        let mut bind = Vec::new();
        if let Some(v) = &cfg.vsock {
            let r = events.registrar();
            let dev = Vsock::new(v.guest_cid, &v.uds_path, r.clone()).map_err(|e| VmmError::Input(e.to_string()))?;
            virtio.push(Box::new(dev));
            bind.push((virtio.len() - 1, r));
        }
        for n in &cfg.nets {
            let r = events.registrar();
            let tap = Tap::open(&n.tap).map_err(|e| VmmError::Input(format!("TAP interface {}: {e}", n.tap)))?;
            let mac = n.mac_bytes().map_err(VmmError::Input)?;
            virtio.push(Box::new(Net::new(Box::new(tap), mac, r.clone())));
            bind.push((virtio.len() - 1, r));
        }
        for f in &cfg.fs {
            let r = events.registrar();
            let stream = crate::files::connect(&f.socket).map_err(|e| {
                VmmError::Input(format!("virtio-fs `{}`: vhost-user socket {}: {e}", f.tag, f.socket.display()))
            })?;
            virtio.push(Box::new(Fs::new(stream, &f.tag, r.clone()).map_err(|e| VmmError::Input(e.to_string()))?));
            bind.push((virtio.len() - 1, r));
        }
        let mut slots = Vec::new();
        let mut workers = Vec::new();
        let mut transports = Vec::new();
        for (i, dev) in virtio.into_iter().enumerate() {
            let slot = acpi::MmioSlot {
                base: layout::VIRTIO_MMIO_BASE + i as u64 * layout::VIRTIO_MMIO_SIZE,
                len: layout::VIRTIO_MMIO_SIZE,
                gsi: layout::VIRTIO_GSI_BASE + i as u32,
            };
            let interrupt = Arc::new(VirtioInterrupt::new(IrqLine::gsi(&vm, slot.gsi)));
            let t = Arc::new(Mutex::new(MmioTransport::new(dev, mem.clone(), interrupt)));
            place(&mut mmio, slot.base, slot.len, t.clone())?;
            let (notifiers, ty, queues) = {
                let d = t.lock().unwrap_or_else(|p| p.into_inner());
                (d.queue_notifiers(), d.device_type(), d.queue_count())
            };
            // A vhost-user backend's kicks: the guest's notifications go to it from KVM.
            for (q, kick) in notifiers.iter().enumerate() {
                let at = IoEventAddress::Mmio(slot.base + worker::QUEUE_NOTIFY);
                if let Err(e) = vm.register_ioevent(kick, &at, q as u32) {
                    eprintln!("den-vmm: virtio{i} queue {q}: no ioeventfd ({e}); notifications pass through den-vmm");
                }
            }
            if cfg.io_workers && ty == types::BLOCK {
                match QueueWorker::new(&vm, slot.base, queues, t.clone()) {
                    Ok(w) => workers.push((format!("io-virtio{i}"), w)),
                    Err(e) => eprintln!("den-vmm: virtio{i}: no ioeventfd ({e}); its requests run on the vCPUs"),
                }
            }
            transports.push(t);
            slots.push(slot);
        }
        for (i, r) in &bind {
            if let Some(t) = transports.get(*i) {
                let target: Arc<dyn EventTarget> = t.clone();
                r.bind(&target);
            }
        }

        let loaded = loader::load(&mem, mem_bytes, &cfg.kernel, cfg.initrd.as_deref(), &cfg.cmdline)?;
        eprintln!("den-vmm: kernel: {}", if loaded.elf { "ELF vmlinux" } else { "bzImage" });
        acpi::write_tables(&mem, cfg.cpus, &slots)?;
        cpu::write_boot_tables(&mem)?;
        cpu::write_reset_stub(&mem)?;

        let supported =
            kvm_fd.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES).map_err(kvm("get supported CPUID"))?;
        let mut vcpus = Vec::with_capacity(cfg.cpus as usize);
        for i in 0..cfg.cpus {
            let v = vm.create_vcpu(u64::from(i)).map_err(kvm("create vCPU"))?;
            cpu::setup_vcpu(&v, &cpu::vcpu_cpuid(&supported, i, cfg.cpus))?;
            if i == 0 {
                cpu::setup_boot_vcpu(&v, loaded.entry.0)?;
            }
            vcpus.push(v);
        }
        Ok(Machine {
            exit,
            serial,
            i8042,
            counters: Arc::new(ExitCounters::default()),
            milestones,
            control: Arc::new(RunControl::new()),
            ctrl_alt_del: Arc::new(AtomicBool::new(false)),
            transports,
            started,
            vcpus,
            workers,
            pio,
            mmio,
            events,
            _mem: mem,
            _vm: vm,
            _kvm: kvm_fd,
        })
    }

    /// Starts the host event loop and the vCPU threads.
    pub fn start(&mut self) -> Result<(), VmmError> {
        let events_filter = || crate::seccomp::enter(crate::seccomp::ThreadKind::Events);
        self.events.start_with(events_filter).map_err(|e| VmmError::Io("start the event loop", e))?;
        for (name, w) in &mut self.workers {
            w.start(name).map_err(|e| VmmError::Io("start a disk's I/O worker", e))?;
        }
        crate::control::install_kick_handler().map_err(|e| VmmError::Io("install the vCPU kick handler", e))?;
        for (i, v) in self.vcpus.drain(..).enumerate() {
            let ctx = VcpuContext {
                pio: self.pio.clone(),
                mmio: self.mmio.clone(),
                exit: self.exit.clone(),
                counters: self.counters.clone(),
                control: self.control.clone(),
            };
            std::thread::Builder::new()
                .name(format!("vcpu{i}"))
                .spawn(move || vcpu::run(v, i as u8, ctx))
                .map_err(|e| VmmError::Io("spawn vCPU thread", e))?;
        }
        Ok(())
    }

    /// What the control API needs; `start` releases a VM built to wait for the API's start.
    pub fn api_state(&self, cfg: &VmConfig, start: Option<Sender<()>>) -> ApiState {
        let devices: Vec<serde_json::Value> = self
            .transports
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let ty = t.lock().unwrap_or_else(|p| p.into_inner()).device_type();
                serde_json::json!({
                    "type": ty,
                    "mmio_base": layout::VIRTIO_MMIO_BASE + i as u64 * layout::VIRTIO_MMIO_SIZE,
                    "gsi": layout::VIRTIO_GSI_BASE + i as u32,
                })
            })
            .collect();
        ApiState {
            exit: self.exit.clone(),
            control: self.control.clone(),
            i8042: self.i8042.clone(),
            serial: self.serial.clone(),
            counters: self.counters.clone(),
            transports: self.transports.clone(),
            facts: serde_json::json!({
                "cpus": cfg.cpus,
                "memory_mib": cfg.memory_mib,
                "kernel": cfg.kernel,
                "initrd": cfg.initrd,
                "cmdline": cfg.cmdline,
                "devices": devices,
            }),
            started: self.started,
            ctrl_alt_del: self.ctrl_alt_del.clone(),
            start: Mutex::new(start),
        }
    }

    /// Exit and device counters on one line (`vcpu.io_out=12 vda.reads=3 ...`).
    pub fn metrics_line(&self) -> String {
        let mut parts: Vec<String> = self.counters.snapshot().iter().map(|(n, v)| format!("vcpu.{n}={v}")).collect();
        for (i, t) in self.transports.iter().enumerate() {
            let t = t.lock().unwrap_or_else(|p| p.into_inner());
            for (n, v) in t.counters() {
                parts.push(format!("virtio{i}/{}.{n}={v}", t.device_type()));
            }
        }
        parts.join(" ")
    }

    /// Waits until the VM ends, then flushes the disks.
    pub fn wait(&self) -> ExitReason {
        let reason = loop {
            if let Some(r) = self.exit.wait_timeout(std::time::Duration::from_secs(3600)) {
                break r;
            }
        };
        self.control.wake_all();
        for t in &self.transports {
            t.lock().unwrap_or_else(|p| p.into_inner()).end();
        }
        for t in &self.transports {
            if let Err(e) = t.lock().unwrap_or_else(|p| p.into_inner()).flush() {
                return ExitReason::Error(format!("flushing a disk: {e}"));
            }
        }
        reason
    }
}
