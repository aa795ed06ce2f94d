//! Create, start, stop, delete and exec, and the watcher that notices a VM process ending.

use super::disks::DATA_DISK;
use super::{conflict, Den, TaskHandle, VmError};
use den_core::new_id;
use den_core::vm::{EngineChoice, Kind, RestartPolicy, VmRecord, VmSpec, VmState};
use den_engine::{self as engine, DiskSpec, EngineKind, LaunchSpec, Running};
use den_net::NetError;
use den_store::now;
use std::sync::Arc;
use std::time::Duration;

/// What a boot uses besides the VM's settings.
pub struct BootFiles {
    /// The kernel.
    pub kernel: std::path::PathBuf,
    /// The initramfs.
    pub initrd: std::path::PathBuf,
    /// The same kernel as an uncompressed ELF `vmlinux`, when the image has one: den-vmm
    /// boots it (faster: the guest has nothing to decompress).
    pub kernel_elf: Option<std::path::PathBuf>,
    /// The image's (or slot's) kernel command line.
    pub cmdline: String,
    /// Disks, root first.
    pub disks: Vec<DiskSpec>,
}

/// Boot attempts under QEMU TCG (see [`Den::boot`]).
const TCG_BOOT_ATTEMPTS: u32 = 3;
/// A TCG boot whose console has not moved past its first line for this long has stalled.
const TCG_STALL: Duration = Duration::from_secs(25);

/// Whether the guest's console stays at its first line (or empty) for [`TCG_STALL`]; returns as
/// soon as the boot shows progress (or the process ends).
async fn stalled_at_start(running: &Running) -> bool {
    let t = std::time::Instant::now();
    while t.elapsed() < TCG_STALL {
        if !engine::is_alive(running) {
            return false;
        }
        let console = engine::console_recent(running, 4096).await.unwrap_or_default();
        if console.lines().filter(|l| !l.trim().is_empty()).count() > 1 {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    true
}

/// `%XX` for every byte of `s` that is not plainly safe in a kernel command line word (the
/// agent undoes it for `den.share`).
fn cmdline_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'_' | b'-' | b'+' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Longest kernel command line Den passes (Linux on x86 keeps 2048 bytes; QEMU's microvm adds a
/// `virtio_mmio.device=` word per device, and TCG adds clock words).
const MAX_CMDLINE: usize = 1536;

/// How long a guest gets to shut down before its engine is stopped hard.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The engine an engine choice means on this host.
pub fn engine_for(choice: EngineChoice) -> EngineKind {
    match choice {
        EngineChoice::Qemu => EngineKind::Qemu,
        EngineChoice::Vmm => EngineKind::Vmm,
        EngineChoice::Auto => {
            match den_kvm_probe::kvm_kind(std::path::Path::new("/sys"), std::path::Path::new("/dev/kvm")) {
                den_kvm_probe::KvmKind::Hardware => EngineKind::Vmm,
                _ => EngineKind::Qemu,
            }
        }
    }
}

impl Den {
    /// Validates `spec` and starts the create task: the VM's own copy of the image's root disk.
    /// Nothing is written if validation fails.
    pub fn create(self: &Arc<Self>, spec: VmSpec, user: &str) -> Result<(String, VmRecord), VmError> {
        spec.validate(self.limits).map_err(VmError::Invalid)?;
        if spec.kind == Kind::System {
            return Err(super::invalid(
                "kind",
                "the business OS is declared under [system] in den.toml, and dend makes its VM".into(),
            ));
        }
        let image = match &spec.iso {
            Some(iso) => {
                self.iso_path(iso)?;
                None
            }
            None => Some(self.images()?.image(&spec.image).map_err(|e| VmError::Images(e.to_string()))?.ok_or_else(
                || {
                    VmError::Invalid(den_core::FieldError {
                        field: "image",
                        message: format!(
                            "image `{}` not found; `den image ls` lists images, `den image build` makes them",
                            spec.image
                        ),
                    })
                },
            )?),
        };
        if let Some(image) = &image {
            self.check_disk_size(&spec, image)?;
        }
        // ISO installs need firmware; shared folders run on either engine (virtio-fs).
        let engine = if spec.iso.is_some() { EngineKind::Qemu } else { engine_for(spec.engine) };
        let vm = self.insert_creating(spec, engine, user)?;
        let den = self.clone();
        let rec = vm.clone();
        let task = self.spawn_task("vm.create", &vm.spec.name, user, move |task| async move {
            let disks = async {
                match &image {
                    Some(image) => den.make_disks(&rec, image, &task).await,
                    None => den.make_blank_disks(&rec, &task),
                }
            };
            let res = task.cancellable(disks).await;
            let from = match &rec.spec.iso {
                Some(iso) => format!("ISO {iso}"),
                None => format!("image {}", rec.spec.image),
            };
            den.finish_creating(&rec, res, &task, &from).await
        })?;
        Ok((task, vm))
    }

    /// Claims a new VM's name and addresses: its `creating` record, stored under the address
    /// allocation lock so two creates cannot take the same name, address or port.
    pub fn insert_creating(&self, spec: VmSpec, engine: EngineKind, user: &str) -> Result<VmRecord, VmError> {
        let t = now();
        let id = new_id();
        let _guard = self.net.allocation_guard();
        if self.store.vm(&spec.name).is_ok() {
            return Err(VmError::Store(den_store::StoreError::Exists { kind: "VM", name: spec.name }));
        }
        let nics = self.net.allocate(&self.store, &id, &spec, den_net::By::user(user))?;
        let vm = VmRecord {
            id,
            engine,
            spec,
            owner: user.into(),
            state: VmState::Creating,
            running: None,
            nics,
            provisioned: false,
            created: t,
            updated: t,
        };
        self.store.insert_vm(&vm)?;
        Ok(vm)
    }

    /// Ends a create or clone task whose disks are made (`disks`): the network learns the new
    /// addresses and forwards, then the VM is stopped and `vm.created` says `from` what; on any
    /// failure everything the VM had is removed.
    pub async fn finish_creating(
        &self,
        rec: &VmRecord,
        disks: Result<(), String>,
        task: &TaskHandle,
        from: &str,
    ) -> Result<(), String> {
        let mut res = disks;
        if res.is_ok() && !rec.nics.is_empty() {
            task.log("network: address reservations and port forwards");
            res = self.net.sync(&self.store).await.map_err(|e| e.to_string());
        }
        match &res {
            Ok(()) => {
                self.store.set_vm_state(&rec.id, VmState::Stopped, None).map_err(|e| e.to_string())?;
                self.event(&rec.owner, "vm.created", &rec.spec.name, from);
            }
            Err(_) => self.remove_vm_files_and_record(rec).await,
        }
        res
    }

    /// A requested disk size must hold the image's root disk.
    fn check_disk_size(&self, spec: &VmSpec, image: &den_images::ImageRecord) -> Result<(), VmError> {
        let (Some(mib), Some(rootfs)) = (spec.disk_mib, image.artifacts.get("rootfs")) else { return Ok(()) };
        let path = self.images()?.get(rootfs, false).map_err(|e| VmError::Images(e.to_string()))?;
        let need = std::fs::metadata(&path).map(|m| m.len().div_ceil(1 << 20)).unwrap_or(0);
        if mib < need {
            return Err(VmError::Invalid(den_core::FieldError {
                field: "disk_mib",
                message: format!("{mib} MiB is smaller than image `{}`'s root disk ({need} MiB)", spec.image),
            }));
        }
        Ok(())
    }

    async fn make_disks(
        &self,
        vm: &VmRecord,
        image: &den_images::ImageRecord,
        task: &TaskHandle,
    ) -> Result<(), String> {
        let dir = self.paths.vm_data(&vm.id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let Some(rootfs) = image.artifacts.get("rootfs") else {
            task.log("image has no root disk: the VM runs from its initramfs");
            return Ok(());
        };
        let src = self.images().map_err(|e| e.to_string())?.get(rootfs, false).map_err(|e| e.to_string())?;
        let dst = dir.join("root.img");
        task.log(format!("copying root disk {} (sparse)", src.display()));
        super::disks::copy_disk(&src, &dst, Some(task)).await?;
        if let Some(mib) = vm.spec.disk_mib {
            let f =
                std::fs::OpenOptions::new().write(true).open(&dst).map_err(|e| format!("{}: {e}", dst.display()))?;
            if f.metadata().map(|m| m.len()).unwrap_or(0) < mib << 20 {
                task.log(format!("growing the root disk to {mib} MiB"));
                f.set_len(mib << 20).map_err(|e| format!("{}: {e}", dst.display()))?;
            }
        }
        task.log("root disk ready");
        if let Some(mib) = vm.spec.data_disk_mib {
            task.log(format!("making a {mib} MiB data disk (ext4, label den-data)"));
            super::disks::make_data_disk(&dir.join(DATA_DISK), mib).await?;
        }
        Ok(())
    }

    /// Removes a VM's disks, runtime directory, TAPs and record (a failed create, a delete),
    /// then drops its address reservations and forwards from the host.
    pub(crate) async fn remove_vm_files_and_record(&self, vm: &VmRecord) {
        self.net.unplug(vm).await;
        for d in [self.paths.vm_data(&vm.id), self.paths.vm_run(&vm.id)] {
            if let Err(e) = std::fs::remove_dir_all(&d) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %d.display(), %e, "cannot remove");
                }
            }
        }
        if let Err(e) = self.store.delete_vm(&vm.id) {
            tracing::error!(vm = %vm.spec.name, %e, "cannot delete the record");
        }
        if !vm.nics.is_empty() {
            if let Err(e) = self.net.sync(&self.store).await {
                tracing::error!(vm = %vm.spec.name, %e, "cannot update the host network");
            }
        }
    }

    /// The kernel, initramfs, command line and disks of a VM made from an image: its own root
    /// disk first and its data disk (if any) second.
    fn image_boot(&self, vm: &VmRecord) -> Result<BootFiles, String> {
        let images = self.images().map_err(|e| e.to_string())?;
        let image = images
            .image(&vm.spec.image)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("image `{}` is gone from the image store; rebuild it", vm.spec.image))?;
        let art = |role: &str| -> Result<std::path::PathBuf, String> {
            let d = image.artifacts.get(role).ok_or_else(|| format!("image `{}` has no {role}", image.name))?;
            images.get(d, false).map_err(|e| e.to_string())
        };
        let root = self.paths.vm_data(&vm.id).join("root.img");
        let data = self.paths.vm_data(&vm.id).join(DATA_DISK);
        let disks =
            [root, data].into_iter().filter(|d| d.exists()).map(|path| DiskSpec { path, read_only: false }).collect();
        let kernel_elf = if image.artifacts.contains_key("vmlinux") { Some(art("vmlinux")?) } else { None };
        Ok(BootFiles {
            kernel: art("kernel")?,
            kernel_elf,
            initrd: art("initramfs")?,
            cmdline: image.cmdline.clone(),
            disks,
        })
    }

    /// Starts the engine from the VM's image (or, for the business OS, from its boot slot).
    fn launch_spec(&self, vm: &VmRecord) -> Result<LaunchSpec, String> {
        if vm.spec.iso.is_some() {
            return self.firmware_launch_spec(vm);
        }
        let boot = match (vm.spec.kind, self.keeper_of(vm)) {
            (_, Some(keeper)) => keeper.boot_files(self, vm)?,
            // Its OS lives in slots only its supervisor knows; the image's own boot would take
            // the data disk for a root disk.
            (Kind::System, None) => {
                return Err(format!(
                    "VM `{}` is a business OS that no [system] section in den.toml names: put it back to run it",
                    vm.spec.name
                ))
            }
            _ => self.image_boot(vm)?,
        };
        let dir = self.paths.vm_run(&vm.id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut cmdline = format!("{} den.hostname={}", boot.cmdline, vm.spec.name);
        if let Some(n) = vm.nics.first() {
            cmdline.push_str(&self.net_cmdline(n).map_err(|e| e.to_string())?);
        }
        let shares: Vec<engine::ShareSpec> = vm
            .spec
            .shares
            .iter()
            .enumerate()
            .map(|(i, s)| engine::ShareSpec { tag: format!("den{i}"), host: s.host.clone(), readonly: s.readonly })
            .collect();
        for (sh, s) in shares.iter().zip(&vm.spec.shares) {
            let key = if s.readonly { "den.share_ro" } else { "den.share" };
            cmdline.push_str(&format!(" {key}={}:{}", sh.tag, cmdline_escape(&s.guest_path().to_string_lossy())));
        }
        cmdline = format!("{cmdline} {}", vm.spec.cmdline_extra);
        if cmdline.len() > MAX_CMDLINE {
            return Err(format!(
                "the kernel command line would be {} bytes, more than the {MAX_CMDLINE} Den allows (x86 Linux \
                 keeps 2048, and QEMU adds its own words): shorten cmdline_extra or the shared folders' paths",
                cmdline.len()
            ));
        }
        Ok(LaunchSpec {
            id: vm.id.clone(),
            dir,
            cpus: vm.spec.cpus,
            memory_mib: vm.spec.memory_mib,
            kernel: boot.kernel,
            initrd: boot.initrd,
            cmdline: cmdline.trim().to_string(),
            disks: boot.disks,
            nics: self.nic_specs(vm),
            kernel_elf: boot.kernel_elf,
            firmware: None,
            shares,
        })
    }

    /// The engine's view of the VM's NICs.
    pub(crate) fn nic_specs(&self, vm: &VmRecord) -> Vec<engine::NicSpec> {
        vm.nics.iter().map(|n| engine::NicSpec { tap: n.tap.clone(), mac: n.mac.clone() }).collect()
    }

    /// The kernel command line words that give the guest agent its first NIC's settings
    /// directly (no DHCP round trip at boot; the DHCP server hands out the same address).
    fn net_cmdline(&self, nic: &den_net::Nic) -> Result<String, VmError> {
        let nets = self.net.networks(&self.store)?;
        let Some(net) = nets.iter().find(|x| x.name == nic.network) else {
            return Err(VmError::Net(NetError::Bad(nic.network.clone(), "not found".into())));
        };
        let sub = net.subnet().map_err(|e| VmError::Net(NetError::Bad(net.name.clone(), e)))?;
        let gw = if net.routed() { format!(" den.gw={}", sub.gateway()) } else { String::new() };
        Ok(format!(" den.ip={}/{}{gw} den.dns={}", nic.ip, sub.prefix, sub.gateway()))
    }

    /// Starts the start task.
    pub fn start(self: &Arc<Self>, name: &str, user: &str) -> Result<String, VmError> {
        let vm = self.store.vm(name)?;
        self.not_busy(&vm)?;
        if !matches!(vm.state, VmState::Stopped | VmState::Crashed) {
            return Err(conflict(&vm, "only a stopped VM can be started"));
        }
        self.store.set_vm_state(&vm.id, VmState::Starting, None)?;
        let den = self.clone();
        let user = user.to_string();
        self.spawn_task("vm.start", &vm.spec.name.clone(), &user.clone(), move |task| async move {
            den.boot_recorded(&vm, &task, &user, "vm.started").await?;
            den.first_boot_after_start(&vm.id, &task).await
        })
    }

    /// [`Den::boot`], then the event `done` on success, or the VM back to stopped and a
    /// `vm.start_failed` event on failure.
    async fn boot_recorded(
        self: &Arc<Self>,
        vm: &VmRecord,
        task: &TaskHandle,
        user: &str,
        done: &str,
    ) -> Result<(), String> {
        let res = self.boot(vm, task).await;
        match &res {
            Ok(()) => self.event(user, done, &vm.spec.name, ""),
            Err(e) => {
                let _ = self.store.set_vm_state(&vm.id, VmState::Stopped, None);
                self.net.unplug(vm).await;
                self.event(user, "vm.start_failed", &vm.spec.name, e);
            }
        }
        res
    }

    /// Launches the VM's engine process and starts watching it. Under QEMU's TCG, a boot that
    /// stalls at its very start (a known problem of TCG on these hosts: the kernel stops after
    /// its first console line, at random) is killed and started again, a bounded number of times.
    async fn boot(self: &Arc<Self>, vm: &VmRecord, task: &TaskHandle) -> Result<(), String> {
        let spec = self.launch_spec(vm)?;
        if !vm.nics.is_empty() {
            task.log(format!("network: {} TAP device(s)", vm.nics.len()));
            self.net.plug(&self.store, vm).await.map_err(|e| e.to_string())?;
        }
        let kind = vm.engine;
        // Firmware boots print nothing on the serial console for a while: no stall detection.
        let tcg = kind == EngineKind::Qemu
            && spec.firmware.is_none()
            && engine::qemu::choose_accel().accel == engine::qemu::Accel::Tcg;
        for attempt in 1..=TCG_BOOT_ATTEMPTS {
            task.log(format!("starting {kind:?} engine: {} vCPUs, {} MiB", spec.cpus, spec.memory_mib));
            let running = engine::launch(kind, &spec).await.map_err(|e| e.to_string())?;
            self.store.set_vm_state(&vm.id, VmState::Starting, Some(&running)).map_err(|e| e.to_string())?;
            if tcg && attempt < TCG_BOOT_ATTEMPTS && stalled_at_start(&running).await {
                task.log("the guest stalled at the start of its boot (QEMU TCG); starting it again");
                self.event("dend", "vm.boot_retried", &vm.spec.name, "TCG boot stalled at start");
                let _ = engine::kill(&running).await;
                continue;
            }
            self.store.set_vm_state(&vm.id, VmState::Running, Some(&running)).map_err(|e| e.to_string())?;
            task.log(format!("engine process {} running", running.pid));
            self.watch(vm.id.clone(), running);
            return Ok(());
        }
        Err("the guest's boot stalled every time".into())
    }

    /// Watches a VM process: when it ends by itself, records it and applies the restart policy.
    pub(crate) fn watch(self: &Arc<Self>, id: String, running: Running) {
        let den = self.clone();
        tokio::spawn(async move {
            let _ = engine::wait_exit(&running).await;
            if den.take_expected_exit(&id) {
                return;
            }
            let Ok(vm) = den.store.vm(&id) else { return };
            if vm.running.as_ref().map(|r| (r.pid, r.start_time)) != Some((running.pid, running.start_time)) {
                return; // a newer process took over
            }
            den.event("dend", "vm.exited", &vm.spec.name, "the VM's engine process ended by itself");
            // Its keeper (the business OS's supervisor) decides what an exit means.
            if let Some(keeper) = den.keeper_of(&vm) {
                let _ = den.store.set_vm_state(&id, VmState::Crashed, None);
                den.net.unplug(&vm).await;
                keeper.exited(&vm);
                return;
            }
            let restart = matches!(vm.spec.restart, RestartPolicy::Always | RestartPolicy::OnFailure);
            if restart {
                let _ = den.store.set_vm_state(&id, VmState::Stopped, None);
                match den.start(&id, "dend") {
                    Ok(task) => {
                        den.event("dend", "vm.restarted", &vm.spec.name, &format!("restart policy; task {task}"))
                    }
                    Err(e) => den.event("dend", "vm.restart_failed", &vm.spec.name, &e.to_string()),
                }
            } else {
                let _ = den.store.set_vm_state(&id, VmState::Crashed, None);
                den.net.unplug(&vm).await;
            }
        });
    }

    fn expect_exit(&self, id: &str) {
        *self.expected_exit.lock().unwrap_or_else(|p| p.into_inner()).entry(id.into()).or_default() += 1;
    }

    fn take_expected_exit(&self, id: &str) -> bool {
        let mut m = self.expected_exit.lock().unwrap_or_else(|p| p.into_inner());
        match m.get_mut(id) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// Marks a running (or paused) VM as stopping and its coming exit as intended; `hint` is the
    /// conflict message for any other state.
    fn begin_shutdown(&self, name: &str, hint: &'static str) -> Result<(VmRecord, Running), VmError> {
        let vm = self.store.vm(name)?;
        self.not_busy(&vm)?;
        let Some(running) = vm.running.clone().filter(|_| matches!(vm.state, VmState::Running | VmState::Paused))
        else {
            return Err(conflict(&vm, hint));
        };
        self.store.set_vm_state(&vm.id, VmState::Stopping, Some(&running))?;
        self.expect_exit(&vm.id);
        Ok((vm, running))
    }

    /// Starts the stop task: graceful shutdown, then hard after [`STOP_TIMEOUT`].
    pub fn stop(self: &Arc<Self>, name: &str, user: &str) -> Result<String, VmError> {
        self.stop_within(name, user, STOP_TIMEOUT)
    }

    /// Starts the stop task: graceful shutdown, then hard after `limit`.
    pub fn stop_within(self: &Arc<Self>, name: &str, user: &str, limit: Duration) -> Result<String, VmError> {
        let (vm, running) = self.begin_shutdown(name, "only a running VM can be stopped")?;
        let den = self.clone();
        let user = user.to_string();
        self.spawn_task("vm.stop", &vm.spec.name.clone(), &user.clone(), move |task| async move {
            task.log(format!("asking the guest to shut down ({}s before a hard stop)", limit.as_secs()));
            let res = engine::shutdown(&running, limit).await.map_err(|e| e.to_string());
            den.store.set_vm_state(&vm.id, VmState::Stopped, None).map_err(|e| e.to_string())?;
            den.net.unplug(&vm).await;
            den.event(&user, "vm.stopped", &vm.spec.name, "");
            res
        })
    }

    /// Starts the reboot task: a graceful shutdown (hard after [`STOP_TIMEOUT`]), then a fresh
    /// engine process on the same disks.
    pub fn reboot(self: &Arc<Self>, name: &str, user: &str) -> Result<String, VmError> {
        let (vm, running) = self.begin_shutdown(name, "only a running VM can be rebooted")?;
        let den = self.clone();
        let user = user.to_string();
        self.spawn_task("vm.reboot", &vm.spec.name.clone(), &user.clone(), move |task| async move {
            task.log("shutting the guest down");
            if let Err(e) = engine::shutdown(&running, STOP_TIMEOUT).await {
                task.log(format!("shutdown: {e}; starting again anyway"));
            }
            den.store.set_vm_state(&vm.id, VmState::Starting, None).map_err(|e| e.to_string())?;
            den.boot_recorded(&vm, &task, &user, "vm.rebooted").await
        })
    }

    /// Starts the delete task (the VM must be stopped): disks, runtime files and record go.
    pub fn delete(self: &Arc<Self>, name: &str, user: &str) -> Result<String, VmError> {
        let vm = self.store.vm(name)?;
        self.not_busy(&vm)?;
        if let Some(keeper) = self.keeper_of(&vm) {
            return Err(conflict(&vm, keeper.delete_refusal(&vm)));
        }
        if !matches!(vm.state, VmState::Stopped | VmState::Crashed) {
            return Err(conflict(&vm, "stop it first (`den vm stop`)"));
        }
        self.store.set_vm_state(&vm.id, VmState::Deleting, None)?;
        let den = self.clone();
        let user = user.to_string();
        self.spawn_task("vm.delete", &vm.spec.name.clone(), &user.clone(), move |task| async move {
            task.log("removing disks, runtime files and network devices");
            den.remove_vm_files_and_record(&vm).await;
            den.event(&user, "vm.deleted", &vm.spec.name, "");
            Ok(())
        })
    }

    /// Pauses (`pause = true`) or resumes a running VM; quick, so not a task.
    pub async fn set_paused(&self, name: &str, pause: bool, user: &str) -> Result<VmRecord, VmError> {
        let vm = self.store.vm(name)?;
        self.not_busy(&vm)?;
        let (from, to) = if pause { (VmState::Running, VmState::Paused) } else { (VmState::Paused, VmState::Running) };
        let Some(running) = vm.running.clone().filter(|_| vm.state == from) else {
            return Err(conflict(
                &vm,
                if pause { "only a running VM can be paused" } else { "only a paused VM can be resumed" },
            ));
        };
        let res = if pause { engine::pause(&running).await } else { engine::resume(&running).await };
        res.map_err(|e| VmError::Engine(e.to_string()))?;
        self.store.set_vm_state(&vm.id, to, Some(&running))?;
        self.event(user, if pause { "vm.paused" } else { "vm.resumed" }, &vm.spec.name, "");
        Ok(self.store.vm(&vm.id)?)
    }

    /// Recent serial console output of a VM that has (or had) a process.
    pub async fn console(&self, name: &str, max: usize) -> Result<String, VmError> {
        let vm = self.store.vm(name)?;
        match &vm.running {
            Some(r) => engine::console_recent(r, max).await.map_err(|e| VmError::Engine(e.to_string())),
            None => {
                let log = self.paths.vm_run(&vm.id).join("console.log");
                let text = engine::logs::tail(&log, max as u64).unwrap_or_default();
                Ok(String::from_utf8_lossy(&text).into_owned())
            }
        }
    }

    /// The agent of a running VM (the shared session of its engine).
    pub async fn agent(&self, vm: &VmRecord) -> Result<den_agent_proto::AgentClient, VmError> {
        let Some(running) = vm.running.clone().filter(|_| vm.state == VmState::Running) else {
            return Err(conflict(vm, "start it first (`den vm start`)"));
        };
        engine::agent(&running).await.map_err(|e| VmError::Engine(e.to_string()))
    }

    /// Runs a command in the guest through its agent, taking its output within `bounds`.
    pub async fn exec(
        &self,
        name: &str,
        argv: &[String],
        bounds: den_agent_proto::Bounds,
    ) -> Result<den_agent_proto::ExecOutput, VmError> {
        let agent = self.agent(&self.store.vm(name)?).await?;
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        agent.exec_output(&args, bytes::Bytes::new(), bounds).await.map_err(|e| VmError::Engine(format!("agent: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cmdline_words_escape_what_the_kernel_would_split() {
        assert_eq!(super::cmdline_escape("/home/ann/my proj,1"), "/home/ann/my%20proj%2C1");
        assert_eq!(super::cmdline_escape("/ü"), "/%C3%BC");
    }
}
