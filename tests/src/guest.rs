//! A QEMU guest booted from a Den image, with the agent channel on a Unix socket.

use den_agent_proto::AgentClient;
use den_images::{ImageRecord, Store};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to boot.
#[derive(Debug, Clone)]
pub struct GuestOptions {
    /// Memory in MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub cpus: u32,
    /// QEMU's `-cpu` model (`max`; the KVM lab adds `+svm`).
    pub cpu: String,
    /// Extra kernel command line words.
    pub extra_cmdline: String,
    /// How long the agent may take to answer.
    pub agent_timeout: Duration,
    /// A stalled boot (no console output for this long) is killed and retried.
    pub stall: Duration,
    /// Boot attempts before giving up.
    pub attempts: u32,
    /// Give the guest a NIC on QEMU's isolated user network (`restrict=on`: nothing leaves the VM).
    pub isolated_nic: bool,
    /// Pass the host's TSC frequency to the guest kernel (`den_kvm_probe::tcg_guest_cmdline`),
    /// which keeps TCG boots from hanging in early TSC calibration.
    pub tsc_hint: bool,
    /// Raw disk files attached after the root disk, each as a virtio-blk device, in this order.
    pub disks: Vec<PathBuf>,
}

impl Default for GuestOptions {
    fn default() -> Self {
        GuestOptions {
            memory_mib: 512,
            cpus: 2,
            cpu: "max".into(),
            extra_cmdline: String::new(),
            agent_timeout: Duration::from_secs(120),
            stall: Duration::from_secs(30),
            attempts: 3,
            isolated_nic: false,
            tsc_hint: true,
            disks: Vec::new(),
        }
    }
}

/// A running guest; killed on drop.
pub struct Guest {
    child: Option<Child>,
    /// Working directory: disk copy, sockets, console log.
    pub dir: tempfile::TempDir,
    /// The agent socket.
    pub agent_sock: PathBuf,
    /// The serial console log.
    pub console: PathBuf,
    /// Boots that were retried because they stalled.
    pub retries: u32,
    /// Seconds from the start of the successful boot to the agent's answer.
    pub boot_secs: f64,
}

/// Kernel words that keep TCG boots from stalling at their start (see
/// `den_kvm_probe::tcg_guest_cmdline`); measured once per test process.
fn tcg_words() -> &'static str {
    static WORDS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    WORDS.get_or_init(den_kvm_probe::tcg_guest_cmdline)
}

fn kill_with_parent() -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only affects the calling (child) process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    Ok(())
}

impl Guest {
    /// Boots `image` (kernel, initramfs and, if it has one, a private copy of its root disk)
    /// and waits for the agent. Stalled boots are retried.
    pub async fn boot(store: &Store, image: &ImageRecord, opts: GuestOptions) -> (Guest, AgentClient) {
        let mut retries = 0;
        loop {
            match Guest::try_boot(store, image, &opts, retries).await {
                Ok(pair) => return pair,
                Err(why) if retries + 1 < opts.attempts => {
                    eprintln!("guest boot attempt {} failed ({why}); retrying", retries + 1);
                    retries += 1;
                }
                Err(why) => panic!("guest {} did not come up after {} attempts: {why}", image.name, retries + 1),
            }
        }
    }

    async fn try_boot(
        store: &Store,
        image: &ImageRecord,
        opts: &GuestOptions,
        retries: u32,
    ) -> Result<(Guest, AgentClient), String> {
        let dir = tempfile::Builder::new().prefix("den-guest-").tempdir().map_err(|e| e.to_string())?;
        let art = |role: &str| -> Result<PathBuf, String> {
            let d = image.artifacts.get(role).ok_or_else(|| format!("image has no {role}"))?;
            store.get(d, false).map_err(|e| e.to_string())
        };
        let agent_sock = dir.path().join("agent.sock");
        let console = dir.path().join("console.log");
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-M", "microvm,x-option-roms=off,rtc=off,isa-serial=on", "-accel", "tcg", "-cpu", &opts.cpu])
            .args(["-m", &opts.memory_mib.to_string(), "-smp", &opts.cpus.to_string()])
            .args(["-nographic", "-nodefaults", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-kernel")
            .arg(art("kernel")?)
            .arg("-initrd")
            .arg(art("initramfs")?)
            .arg("-append")
            .arg(format!("{} {} {}", image.cmdline, opts.extra_cmdline, if opts.tsc_hint { tcg_words() } else { "" }));
        if image.artifacts.contains_key("rootfs") {
            let disk = dir.path().join("root.ext4");
            let st = Command::new("cp").arg("--sparse=always").arg(art("rootfs")?).arg(&disk).status();
            if !st.map(|s| s.success()).unwrap_or(false) {
                return Err("cannot copy the root disk".into());
            }
            let _ = std::fs::set_permissions(&disk, std::os::unix::fs::PermissionsExt::from_mode(0o644));
            cmd.arg("-drive").arg(format!("id=root,file={},format=raw,if=none", disk.display()));
            cmd.args(["-device", "virtio-blk-device,drive=root"]);
        }
        for (i, disk) in opts.disks.iter().enumerate() {
            cmd.arg("-drive").arg(format!("id=extra{i},file={},format=raw,if=none", disk.display()));
            cmd.arg("-device").arg(format!("virtio-blk-device,drive=extra{i}"));
        }
        if opts.isolated_nic {
            cmd.args(["-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-device,netdev=n0"]);
        }
        cmd.args(["-device", "virtio-serial-device"])
            .arg("-chardev")
            .arg(format!("socket,id=agent,path={},server=on,wait=off", agent_sock.display()))
            .args(["-device", "virtserialport,chardev=agent,name=den.agent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // SAFETY: kill_with_parent only calls prctl.
        unsafe { cmd.pre_exec(kill_with_parent) };
        let start = Instant::now();
        let child = cmd.spawn().map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
        let mut guest = Guest { child: Some(child), dir, agent_sock, console, retries, boot_secs: 0.0 };
        let client = guest.wait_agent(opts, start).await?;
        guest.boot_secs = start.elapsed().as_secs_f64();
        Ok((guest, client))
    }

    async fn wait_agent(&mut self, opts: &GuestOptions, start: Instant) -> Result<AgentClient, String> {
        let mut last_len = 0;
        let mut last_change = Instant::now();
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!("qemu exited ({st}); console:\n{}", self.console_tail(30)));
                }
            }
            if self.agent_sock.exists() {
                if let Ok(client) = AgentClient::connect_unix(&self.agent_sock, Duration::from_secs(3)).await {
                    return Ok(client);
                }
            }
            let len = std::fs::metadata(&self.console).map(|m| m.len()).unwrap_or(0);
            if len != last_len {
                last_len = len;
                last_change = Instant::now();
            }
            if last_change.elapsed() > opts.stall {
                return Err(format!(
                    "boot stalled: no console output for {:?}; console:\n{}",
                    opts.stall,
                    self.console_tail(10)
                ));
            }
            if start.elapsed() > opts.agent_timeout {
                return Err(format!(
                    "agent did not answer within {:?}; console:\n{}",
                    opts.agent_timeout,
                    self.console_tail(30)
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last `n` lines of the serial console.
    pub fn console_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.console).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Kills the VM now (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for QEMU to exit by itself (after a guest power-off), up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.child = None;
                    return Some(st);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Path of the VM's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.kill();
    }
}
