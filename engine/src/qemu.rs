//! The `qemu` engine: a `microvm` machine with direct kernel boot, virtio-mmio disks and NICs,
//! the agent on a virtio-serial port, the serial console on a Unix socket (and logged to
//! `console.log`), driven over QMP. `-accel kvm` where `/dev/kvm` has hardware virtualization,
//! else TCG with a warning. `-no-reboot`: a guest reboot ends QEMU with the `SHUTDOWN` reason
//! `guest-reset`, and `dend` starts it again.
//!
//! Files in the VM's directory: `qmp.sock`, `console.sock`, `console.log`, `agent.sock`,
//! `engine.log` (QEMU's own output).

use super::process::{self, Proc};
use super::qmp::Qmp;
use super::virtiofs;
use super::{EndReason, EngineError, EngineKind, LaunchSpec, Running, VmState};
use den_kvm_probe::{kvm_kind, KvmKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

/// The QEMU binary.
pub const QEMU_BIN: &str = "qemu-system-x86_64";
/// How long QEMU may take to answer on QMP after it was started.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How QEMU runs guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
    /// QEMU's software CPU (tens of times slower).
    Tcg,
}

/// The accelerator chosen for this host, and what to tell people when it is TCG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccelChoice {
    /// The accelerator.
    pub accel: Accel,
    /// A one-line warning for `den doctor`, the API and the web console (TCG only).
    pub warning: Option<String>,
}

/// Chooses the accelerator from what `/dev/kvm` can run (`den_kvm_probe::kvm_kind`).
pub fn choose_accel() -> AccelChoice {
    accel_for(&kvm_kind(Path::new("/sys"), Path::new("/dev/kvm")))
}

/// The accelerator for a given kind of KVM.
pub fn accel_for(kind: &KvmKind) -> AccelChoice {
    let why = match kind {
        KvmKind::Hardware => return AccelChoice { accel: Accel::Kvm, warning: None },
        KvmKind::Pvm => "this host's /dev/kvm is PVM-backed (kvm_pvm) and cannot run stock Linux kernels".to_string(),
        KvmKind::Missing(why) => format!("no usable /dev/kvm ({why})"),
    };
    AccelChoice {
        accel: Accel::Tcg,
        warning: Some(format!(
            "QEMU runs VMs with TCG software emulation, much slower than hardware virtualization: {why}"
        )),
    }
}

/// The kernel command line word that makes a guest reboot (or a kernel panic) end QEMU.
const REBOOT_WORD: &str = "reboot=t";

/// Kernel command line words that keep TCG boots from stalling (measured once per process).
fn tcg_words() -> &'static str {
    static WORDS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    WORDS.get_or_init(den_kvm_probe::tcg_guest_cmdline)
}

/// Escapes a value for a QEMU `key=value,...` option (commas are doubled).
pub(super) fn opt(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// QEMU's command line (without the binary) for `spec`.
pub fn args(spec: &LaunchSpec, accel: Accel) -> Vec<OsString> {
    let dir = &spec.dir;
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
    let (accel_name, cpu) = match accel {
        Accel::Kvm => ("kvm", "host"),
        Accel::Tcg => ("tcg", "max"),
    };
    let mut machine =
        if spec.firmware.is_some() { "q35" } else { "microvm,x-option-roms=off,rtc=off,isa-serial=on" }.to_string();
    if !spec.shares.is_empty() {
        // vhost-user devices need guest memory another process can map.
        machine.push_str(",memory-backend=mem");
        push(&["-object", &format!("memory-backend-memfd,id=mem,size={}M,share=on", spec.memory_mib)]);
        // virtiofsd's libvhost-user serves only modern (virtio 1.0) devices; microvm's
        // virtio-mmio transport is legacy unless told otherwise.
        if spec.firmware.is_none() {
            push(&["-global", "virtio-mmio.force-legacy=false"]);
        }
    }
    push(&["-name", &format!("den-{}", spec.id), "-M", &machine]);
    // TCG's translation cache defaults to 1 GiB, and what a guest touches of it stays resident:
    // a quarter of the guest's memory (32 to 256 MiB) holds a microVM's hot code just as well.
    let accel_arg = match accel {
        Accel::Kvm => accel_name.to_string(),
        Accel::Tcg => format!("{accel_name},tb-size={}", (spec.memory_mib / 4).clamp(32, 256)),
    };
    push(&["-accel", &accel_arg, "-cpu", cpu, "-m", &spec.memory_mib.to_string(), "-smp", &spec.cpus.to_string()]);
    push(&["-nodefaults", "-no-user-config", "-no-reboot", "-msg", "timestamp=on"]);
    match &spec.firmware {
        None => {
            push(&["-display", "none", "-kernel"]);
            a.push(spec.kernel.clone().into());
            a.push("-initrd".into());
            a.push(spec.initrd.clone().into());
            a.push("-append".into());
            // Linux's default reboot methods do not always reset the microvm machine (a kernel
            // panic with panic=-1 was seen to hang it); a triple fault always does, and with
            // -no-reboot it ends QEMU, which is what dend watches for.
            let cmdline = format!("{} {REBOOT_WORD}", spec.cmdline);
            a.push(match accel {
                Accel::Tcg => format!("{cmdline} {}", tcg_words()).trim_end().into(),
                Accel::Kvm => cmdline.into(),
            });
        }
        Some(fw) => {
            push(&["-device", "VGA", "-display", "none", "-vnc", &format!("unix:{}", opt(&dir.join("vnc.sock")))]);
            if fw.uefi {
                push(&[
                    "-drive",
                    &format!("if=pflash,format=raw,unit=0,readonly=on,file={}", opt(Path::new(super::OVMF_CODE))),
                ]);
                if let Some(vars) = &fw.vars {
                    push(&["-drive", &format!("if=pflash,format=raw,unit=1,file={}", opt(vars))]);
                }
            }
            if let Some(iso) = &fw.iso {
                let drive = format!("id=cd0,file={},format=raw,if=none,media=cdrom,readonly=on", opt(iso));
                push(&["-drive", &drive, "-device", "ide-cd,drive=cd0,bus=ide.1,bootindex=0"]);
            }
        }
    }
    let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
    let console = format!(
        "socket,id=console,path={},server=on,wait=off,logfile={},logappend=on",
        opt(&dir.join("console.sock")),
        opt(&dir.join("console.log"))
    );
    push(&["-chardev", &console, "-serial", "chardev:console"]);
    let qmp = format!("socket,id=qmp,path={},server=on,wait=off", opt(&dir.join("qmp.sock")));
    push(&["-chardev", &qmp, "-mon", "chardev=qmp,mode=control"]);
    // microvm has virtio-mmio devices; q35 has PCI ones (and the first disk boots after the CD).
    let bus = if spec.firmware.is_some() { "pci" } else { "device" };
    for (i, d) in spec.disks.iter().enumerate() {
        let ro = if d.read_only { ",readonly=on" } else { "" };
        let drive = format!("id=disk{i},file={},format=raw,if=none,cache=writeback{ro}", opt(&d.path));
        let boot = if spec.firmware.is_some() && i == 0 { ",bootindex=1" } else { "" };
        push(&["-drive", &drive, "-device", &format!("virtio-blk-{bus},drive=disk{i}{boot}")]);
    }
    for (i, n) in spec.nics.iter().enumerate() {
        let netdev = format!("tap,id=net{i},ifname={},script=no,downscript=no", n.tap);
        push(&["-netdev", &netdev, "-device", &format!("virtio-net-{bus},netdev=net{i},mac={}", n.mac)]);
    }
    a.extend(super::virtiofs::qemu_args(spec, bus).into_iter().map(OsString::from));
    let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
    let agent = format!("socket,id=agent,path={},server=on,wait=off", opt(&dir.join("agent.sock")));
    push(&["-device", &format!("virtio-serial-{bus}"), "-chardev", &agent]);
    push(&["-device", "virtserialport,chardev=agent,name=den.agent"]);
    a
}

/// A QEMU VM under control.
pub struct Qemu {
    qmp: Qmp,
    accel: Accel,
}

/// Starts QEMU for `spec` and waits until it answers on QMP. On failure nothing is left running.
pub async fn launch(spec: &LaunchSpec) -> Result<(Running, Qemu), EngineError> {
    let choice = choose_accel();
    if let Some(w) = &choice.warning {
        tracing::warn!(vm = %spec.id, "{w}");
    }
    let dir = &spec.dir;
    let running = Running {
        engine: EngineKind::Qemu,
        pid: 0,
        start_time: 0,
        console: dir.join("console.sock"),
        control: dir.join("qmp.sock"),
        agent: dir.join("agent.sock"),
    };
    super::refuse_live_socket(spec, &running.control).await?;
    for f in [&running.console, &running.control, &running.agent] {
        let _ = std::fs::remove_file(f);
    }
    let shares = virtiofs::start(spec).await?;
    let mut cmd = std::process::Command::new(QEMU_BIN);
    cmd.args(args(spec, choice.accel)).current_dir(dir);
    let log = dir.join("engine.log");
    let p = match process::spawn(cmd, QEMU_BIN, &log) {
        Ok(p) => p,
        Err(e) => {
            virtiofs::stop(shares).await;
            return Err(e);
        }
    };
    let running = Running { pid: p.pid, start_time: p.start_time, ..running };
    match wait_qmp(p, &running.control, &log).await {
        Ok(qmp) => Ok((running, Qemu { qmp, accel: choice.accel })),
        Err(e) => {
            let _ = process::kill(p, Duration::from_secs(5)).await;
            virtiofs::stop(shares).await;
            Err(e)
        }
    }
}

async fn wait_qmp(p: Proc, path: &Path, log: &Path) -> Result<Qmp, EngineError> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        if !process::alive(p) {
            let status = tokio::time::timeout(Duration::from_secs(1), process::wait_exit(p)).await.ok().flatten();
            let how = status.map(|s| format!(" ({s})")).unwrap_or_default();
            return Err(EngineError::Startup(format!(
                "QEMU (pid {}) exited at start{how}; {}:\n{}",
                p.pid,
                log.display(),
                process::log_tail(log, 20)
            )));
        }
        if path.exists() {
            match Qmp::connect(path, Duration::from_secs(5)).await {
                Ok(q) => return Ok(q),
                Err(e) => last = e.to_string(),
            }
        }
        if start.elapsed() > STARTUP_TIMEOUT {
            return Err(EngineError::Startup(format!(
                "QEMU (pid {}) did not answer on QMP within {STARTUP_TIMEOUT:?} ({last}); {}:\n{}",
                p.pid,
                log.display(),
                process::log_tail(log, 20)
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reconnects to a QEMU VM a previous `dend` started.
pub async fn adopt(running: &Running) -> Result<Qemu, EngineError> {
    let qmp = Qmp::connect(&running.control, Duration::from_secs(5)).await?;
    let kvm = qmp.execute("query-kvm", None).await?;
    let accel = if kvm.get("enabled").and_then(Value::as_bool) == Some(true) { Accel::Kvm } else { Accel::Tcg };
    Ok(Qemu { qmp, accel })
}

impl Qemu {
    /// The QMP connection (events, raw commands).
    pub fn qmp(&self) -> &Qmp {
        &self.qmp
    }

    /// The accelerator this QEMU runs with.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// `query-status`.
    pub async fn state(&self) -> Result<VmState, EngineError> {
        let v = self.qmp.execute("query-status", None).await?;
        let status = v.get("status").and_then(Value::as_str).unwrap_or("unknown");
        Ok(match status {
            "running" => VmState::Running,
            "paused" => VmState::Paused,
            "prelaunch" => VmState::Created,
            "shutdown" | "guest-panicked" => VmState::ShutDown,
            other => VmState::Other(other.to_string()),
        })
    }

    /// Stops the vCPUs (`stop`).
    pub async fn pause(&self) -> Result<(), EngineError> {
        self.qmp.execute("stop", None).await.map(drop)
    }

    /// Continues (`cont`).
    pub async fn resume(&self) -> Result<(), EngineError> {
        self.qmp.execute("cont", None).await.map(drop)
    }

    /// Presses the ACPI power button (`system_powerdown`); guests with acpid/systemd power off.
    pub async fn powerdown(&self) -> Result<(), EngineError> {
        self.qmp.execute("system_powerdown", None).await.map(drop)
    }

    /// Ends QEMU now (`quit`; disks are flushed). A connection closed by the exit counts as done.
    pub async fn quit(&self) -> Result<(), EngineError> {
        match self.qmp.execute_timeout("quit", None, Duration::from_secs(5)).await {
            Ok(_) => Ok(()),
            Err(EngineError::Control { .. }) if self.qmp.closed_reason().is_some() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Recent serial console output (the tail of `console.log`, at most `max` bytes).
    pub fn console_recent(running: &Running, max: usize) -> Result<String, EngineError> {
        let path = running.console.with_file_name("console.log");
        tail_bytes(&path, max).map_err(|e| EngineError::Io(format!("reading {}", path.display()), e))
    }
}

/// What a QMP `SHUTDOWN` reason means for a QEMU run with `-no-reboot`.
pub fn end_reason(reason: &str) -> EndReason {
    match reason {
        "guest-shutdown" => EndReason::PowerOff,
        "guest-reset" => EndReason::Reboot,
        "guest-panic" => EndReason::Crash,
        r if r.starts_with("host-") => EndReason::HostStop,
        _ => EndReason::Unknown,
    }
}

fn tail_bytes(path: &Path, max: usize) -> std::io::Result<String> {
    Ok(String::from_utf8_lossy(&super::logs::tail(path, max as u64)?).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DiskSpec, NicSpec};
    use std::path::PathBuf;

    #[test]
    fn command_line() {
        let spec = LaunchSpec {
            id: "vm1".into(),
            dir: PathBuf::from("/run/den/vm,1"),
            cpus: 2,
            memory_mib: 512,
            kernel: "/k".into(),
            initrd: "/i".into(),
            cmdline: "console=ttyS0 quiet".into(),
            disks: vec![
                DiskSpec { path: "/d/root.img".into(), read_only: false },
                DiskSpec { path: "/d/seed.img".into(), read_only: true },
            ],
            nics: vec![NicSpec { tap: "den-tap0".into(), mac: "52:54:00:12:34:56".into() }],
            firmware: None,
            kernel_elf: None,
            shares: vec![],
        };
        let a: Vec<String> = args(&spec, Accel::Tcg).iter().map(|s| s.to_string_lossy().into_owned()).collect();
        let line = a.join(" ");
        for want in [
            "-name den-vm1 -M microvm,x-option-roms=off,rtc=off,isa-serial=on -accel tcg,tb-size=128 -cpu max -m 512 -smp 2",
            "-no-reboot",
            "-kernel /k -initrd /i -append console=ttyS0 quiet reboot=t",
            "socket,id=console,path=/run/den/vm,,1/console.sock,server=on,wait=off,logfile=/run/den/vm,,1/console.log",
            "-mon chardev=qmp,mode=control",
            "-drive id=disk0,file=/d/root.img,format=raw,if=none,cache=writeback -device virtio-blk-device,drive=disk0",
            "file=/d/seed.img,format=raw,if=none,cache=writeback,readonly=on",
            "-netdev tap,id=net0,ifname=den-tap0,script=no,downscript=no",
            "-device virtio-net-device,netdev=net0,mac=52:54:00:12:34:56",
            "-device virtserialport,chardev=agent,name=den.agent",
        ] {
            assert!(line.contains(want), "missing `{want}` in {line}");
        }
        let append = a.iter().position(|x| x == "-append").unwrap();
        assert!(
            a[append + 1].starts_with("console=ttyS0 quiet reboot=t tsc_early_khz="),
            "one argument, TCG words added"
        );
        let kvm_append = args(&spec, Accel::Kvm).iter().position(|x| x == "-append").unwrap();
        assert_eq!(args(&spec, Accel::Kvm)[kvm_append + 1], "console=ttyS0 quiet reboot=t", "no TCG words under KVM");
        let kvm: Vec<String> = args(&spec, Accel::Kvm).iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert!(kvm.join(" ").contains("-accel kvm -cpu host"));
        assert!(!line.contains("memory-backend"), "private memory without shares");

        let shared = LaunchSpec {
            shares: vec![crate::ShareSpec { tag: "den0".into(), host: "/home/ann".into(), readonly: false }],
            ..spec
        };
        let line =
            args(&shared, Accel::Tcg).iter().map(|s| s.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
        for want in [
            "-object memory-backend-memfd,id=mem,size=512M,share=on",
            "-global virtio-mmio.force-legacy=false",
            "isa-serial=on,memory-backend=mem",
            "-chardev socket,id=fs0,path=/run/den/vm,,1/fs0.sock -device vhost-user-fs-device,chardev=fs0,tag=den0",
        ] {
            assert!(line.contains(want), "missing `{want}` in {line}");
        }
    }

    #[test]
    fn accel_follows_the_kind_of_kvm() {
        assert_eq!(accel_for(&KvmKind::Hardware), AccelChoice { accel: Accel::Kvm, warning: None });
        let pvm = accel_for(&KvmKind::Pvm);
        assert_eq!(pvm.accel, Accel::Tcg);
        assert!(pvm.warning.unwrap().contains("PVM"));
        let none = accel_for(&KvmKind::Missing("/dev/kvm: No such file".into()));
        assert!(none.warning.unwrap().contains("No such file"));
    }
}
