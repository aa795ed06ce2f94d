//! A VM's disks beyond create and delete: snapshots (create, list, roll back, delete), clone
//! and resize. Disks are raw files; copies are sparse (and reflinks where the filesystem can).
//! A running VM is paused for the copy, so every copy is crash-consistent, like a power cut.

use super::{conflict, invalid, Den, TaskHandle, VmError};
use den_core::valid_name;
use den_core::vm::{VmRecord, VmSpec, VmState};
use den_engine as engine;
use den_net::NicRequest;
use den_store::{Snapshot, StoreError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The data disk's file name in a VM's data directory.
pub const DATA_DISK: &str = "data.img";

/// Makes a sparse data disk of `mib` MiB at `path`, formatted ext4 with the label `den-data`
/// (the guest mounts it by label), through a temporary name so that `path` is whole or absent.
pub async fn make_data_disk(path: &Path, mib: u64) -> Result<(), String> {
    let tmp = path.with_extension("partial");
    let f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.set_len(mib << 20).map_err(|e| format!("{}: {e}", tmp.display()))?;
    drop(f);
    let out = tokio::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "den-data", "-E", "lazy_itable_init=1,lazy_journal_init=1"])
        .arg(&tmp)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("mkfs.ext4 (install e2fsprogs): {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("mkfs.ext4 {}: {}", tmp.display(), String::from_utf8_lossy(&out.stderr).trim()));
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Copies `src` to `dst` keeping holes (and sharing blocks where the filesystem can); `dst`
/// gets mode 0600. Through a temporary name, so `dst` is either the old file or the whole copy.
/// With a task, its progress follows the copy (the copy's length against the source's).
///
/// `src` is opened once, as a regular file only (never a FIFO or device node someone swapped
/// in), and `cp` copies from that open file: what was checked is what is copied.
pub async fn copy_disk(src: &Path, dst: &Path, task: Option<&TaskHandle>) -> Result<(), String> {
    let tmp = dst.with_extension("partial");
    let file = den_guest_tree::open_regular(src).map_err(|e| e.to_string())?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0).max(1);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let mut cmd = tokio::process::Command::new("cp");
    cmd.args(["--sparse=always", "--reflink=auto", "/dev/fd/3"]).arg(&tmp).kill_on_drop(true);
    // SAFETY: dup2 and fcntl are async-signal-safe; the open source becomes the child's
    // descriptor 3, kept across exec (dup2 onto itself would keep close-on-exec).
    unsafe {
        cmd.pre_exec(move || {
            let r = if fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(fd, 3) };
            if r == -1 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
    }
    let copy = cmd.status();
    tokio::pin!(copy);
    let st = loop {
        tokio::select! {
            st = &mut copy => break st,
            () = tokio::time::sleep(std::time::Duration::from_millis(300)) => {
                if let (Some(t), Ok(m)) = (task, std::fs::metadata(&tmp)) {
                    t.progress((m.len().saturating_mul(100) / total).min(99) as u8);
                }
            }
        }
    }
    .map_err(|e| format!("cp: {e}"))?;
    drop(file);
    if !st.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("copying {} to {} failed ({st})", src.display(), dst.display()));
    }
    use std::os::unix::fs::PermissionsExt;
    let done =
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).and_then(|_| std::fs::rename(&tmp, dst));
    done.map_err(|e| format!("{}: {e}", dst.display()))
}

impl Den {
    /// The VM's disk files (root disk first).
    /// The VM's disk files: the root disk and the data disk, those that exist.
    fn disk_files(&self, vm: &VmRecord) -> Vec<PathBuf> {
        let dir = self.paths.vm_data(&vm.id);
        [dir.join("root.img"), dir.join(DATA_DISK)].into_iter().filter(|d| d.exists()).collect()
    }

    fn snapshot_dir(&self, vm: &VmRecord, snap: &str) -> PathBuf {
        self.paths.vm_data(&vm.id).join("snapshots").join(snap)
    }

    /// Copies the VM's disks into `dst_dir`, pausing a running VM meanwhile.
    async fn copy_disks_quiesced(&self, vm: &VmRecord, dst_dir: &Path, task: &TaskHandle) -> Result<(), String> {
        std::fs::create_dir_all(dst_dir).map_err(|e| format!("{}: {e}", dst_dir.display()))?;
        let pause = vm.state == VmState::Running && vm.running.is_some();
        if let (true, Some(r)) = (pause, &vm.running) {
            task.log("pausing the VM for a consistent copy");
            engine::pause(r).await.map_err(|e| e.to_string())?;
        }
        let mut res = Ok(());
        for src in self.disk_files(vm) {
            let name = src.file_name().map(PathBuf::from).unwrap_or_else(|| "root.img".into());
            task.log(format!("copying {}", name.display()));
            // Only the copy is cancellable: a paused VM is always resumed below.
            res = task.cancellable(copy_disk(&src, &dst_dir.join(name), Some(task))).await;
            if res.is_err() {
                break;
            }
        }
        if let (true, Some(r)) = (pause, &vm.running) {
            engine::resume(r).await.map_err(|e| format!("resuming the VM after the copy: {e}"))?;
            task.log("resumed");
        }
        res
    }

    /// Starts the snapshot task: a copy of the VM's disks under `snap` (running VMs are paused
    /// for the copy).
    pub fn snapshot_create(
        self: &Arc<Self>,
        name: &str,
        snap: &str,
        description: &str,
        user: &str,
    ) -> Result<String, VmError> {
        let vm = self.store.vm(name)?;
        if !valid_name(snap) {
            return Err(invalid(
                "name",
                format!("`{snap}` is not a snapshot name: a-z, 0-9 and -, 1 to 63 characters"),
            ));
        }
        if !matches!(vm.state, VmState::Stopped | VmState::Running | VmState::Paused | VmState::Crashed) {
            return Err(conflict(&vm, "wait until it is stopped or running"));
        }
        if self.store.snapshots(&vm.id)?.iter().any(|s| s.name == snap) {
            return Err(VmError::Store(StoreError::Exists { kind: "snapshot", name: snap.into() }));
        }
        self.claim(&vm)?;
        let (den, snap, description, user2) =
            (self.clone(), snap.to_string(), description.to_string(), user.to_string());
        let (id, vm_name) = (vm.id.clone(), vm.spec.name.clone());
        let res = self.spawn_task("vm.snapshot", &vm_name, user, move |task| async move {
            let dir = den.snapshot_dir(&vm, &snap);
            let partial = dir.with_extension("partial");
            let res = async {
                den.copy_disks_quiesced(&vm, &partial, &task).await?;
                std::fs::rename(&partial, &dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                den.store.insert_snapshot(&vm.id, &snap, &description).map_err(|e| e.to_string())
            }
            .await;
            if res.is_err() {
                let _ = std::fs::remove_dir_all(&partial);
                let _ = std::fs::remove_dir_all(&dir);
            } else {
                den.event(&user2, "vm.snapshot_created", &vm.spec.name, &snap);
            }
            den.release(&vm.id);
            res
        });
        if res.is_err() {
            self.release(&id);
        }
        res
    }

    /// A VM's snapshots.
    pub fn snapshots(&self, name: &str) -> Result<Vec<Snapshot>, VmError> {
        let vm = self.store.vm(name)?;
        Ok(self.store.snapshots(&vm.id)?)
    }

    fn snapshot_of(&self, vm: &VmRecord, snap: &str) -> Result<PathBuf, VmError> {
        if !self.store.snapshots(&vm.id)?.iter().any(|s| s.name == snap) {
            return Err(VmError::Store(StoreError::NotFound { kind: "snapshot", name: snap.into() }));
        }
        Ok(self.snapshot_dir(vm, snap))
    }

    /// Starts the rollback task: the VM's disks become the snapshot's again (the VM must be
    /// stopped; the snapshot is kept).
    pub fn snapshot_rollback(self: &Arc<Self>, name: &str, snap: &str, user: &str) -> Result<String, VmError> {
        let vm = self.store.vm(name)?;
        let dir = self.snapshot_of(&vm, snap)?;
        if !matches!(vm.state, VmState::Stopped | VmState::Crashed) {
            return Err(conflict(&vm, "stop it first (`den vm stop`): a rollback replaces its disks"));
        }
        self.claim(&vm)?;
        let (den, snap, user2) = (self.clone(), snap.to_string(), user.to_string());
        let (id, vm_name) = (vm.id.clone(), vm.spec.name.clone());
        let res = self.spawn_task("vm.rollback", &vm_name, user, move |task| async move {
            let res = async {
                for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?.flatten() {
                    task.log(format!("restoring {}", entry.file_name().to_string_lossy()));
                    copy_disk(&entry.path(), &den.paths.vm_data(&vm.id).join(entry.file_name()), Some(&task)).await?;
                }
                Ok(())
            }
            .await;
            if res.is_ok() {
                // The disk is the snapshot's size again.
                let root = den.paths.vm_data(&vm.id).join("root.img");
                if let (Ok(mut now), Ok(meta)) = (den.store.vm(&vm.id), std::fs::metadata(&root)) {
                    now.spec.disk_mib = Some(meta.len() >> 20);
                    let _ = den.store.set_vm_spec(&now);
                }
                den.event(&user2, "vm.rolled_back", &vm.spec.name, &snap);
            }
            den.release(&vm.id);
            res
        });
        if res.is_err() {
            self.release(&id);
        }
        res
    }

    /// Deletes a snapshot (quick: not a task).
    pub fn snapshot_delete(&self, name: &str, snap: &str, user: &str) -> Result<(), VmError> {
        let vm = self.store.vm(name)?;
        let dir = self.snapshot_of(&vm, snap)?;
        self.store.delete_snapshot(&vm.id, snap)?;
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), %e, "cannot remove a snapshot's files");
        }
        self.event(user, "vm.snapshot_deleted", &vm.spec.name, snap);
        Ok(())
    }

    /// Starts the clone task: a new VM `new_name` with copies of `name`'s disks and the same
    /// settings, but its own MAC and addresses and no port forwards (those belong to the
    /// original). A running source is paused for the copy.
    pub fn clone_vm(self: &Arc<Self>, name: &str, new_name: &str, user: &str) -> Result<(String, VmRecord), VmError> {
        let src = self.store.vm(name)?;
        if src.spec.kind == den_core::vm::Kind::System {
            return Err(invalid(
                "name",
                format!("`{name}` is the business OS: it cannot be cloned (its OS lives in slots)"),
            ));
        }
        if !matches!(src.state, VmState::Stopped | VmState::Running | VmState::Paused | VmState::Crashed) {
            return Err(conflict(&src, "wait until it is stopped or running"));
        }
        let spec = VmSpec {
            name: new_name.into(),
            nics: src
                .spec
                .nics
                .iter()
                .map(|n| NicRequest { network: n.network.clone(), mac: None, alias: None })
                .collect(),
            ports: vec![],
            ..src.spec.clone()
        };
        spec.validate(self.limits).map_err(VmError::Invalid)?;
        // The source first: a busy source must not leave a half-made clone record behind.
        self.claim(&src)?;
        let vm = match self.insert_creating(spec, src.engine, user) {
            Ok(vm) => vm,
            Err(e) => {
                self.release(&src.id);
                return Err(e);
            }
        };
        let (den, rec, src_id) = (self.clone(), vm.clone(), src.id.clone());
        let task = self.spawn_task("vm.clone", &vm.spec.name, user, move |task| async move {
            task.log(format!("cloning VM {}", src.spec.name));
            let res = den.copy_disks_quiesced(&src, &den.paths.vm_data(&rec.id), &task).await;
            den.release(&src.id);
            den.finish_creating(&rec, res, &task, &format!("clone of {}", src.spec.name)).await
        });
        match task {
            Ok(t) => Ok((t, vm)),
            Err(e) => {
                self.release(&src_id);
                Err(e)
            }
        }
    }

    /// Grows the root disk to `disk_mib` (never shrinks: that would cut the filesystem). A
    /// stopped VM's file grows; a running QEMU VM sees the new size at once (`block_resize`).
    /// The guest grows its filesystem itself (`resize2fs /dev/vda`).
    pub async fn resize(&self, name: &str, disk_mib: u64, user: &str) -> Result<VmRecord, VmError> {
        let mut vm = self.store.vm(name)?;
        if vm.spec.kind == den_core::vm::Kind::System {
            return Err(invalid(
                "disk_mib",
                format!("`{name}` is the business OS: its root comes from its image, its data disk from data_disk_mib"),
            ));
        }
        let Some(root) = self.disk_files(&vm).into_iter().next() else {
            return Err(invalid("disk_mib", format!("VM `{name}` has no disk (its image boots from memory)")));
        };
        let now_bytes =
            std::fs::metadata(&root).map_err(|e| VmError::Engine(format!("{}: {e}", root.display())))?.len();
        let bytes = disk_mib << 20;
        if bytes < now_bytes || disk_mib > den_core::vm::MAX_DISK_MIB {
            let have = now_bytes >> 20;
            return Err(invalid(
                "disk_mib",
                format!("{disk_mib} MiB: disks only grow (now {have} MiB, at most {} MiB)", den_core::vm::MAX_DISK_MIB),
            ));
        }
        self.claim(&vm)?;
        let res = match (&vm.state, &vm.running) {
            (VmState::Stopped | VmState::Crashed, _) => std::fs::OpenOptions::new()
                .write(true)
                .open(&root)
                .and_then(|f| f.set_len(bytes))
                .map_err(|e| VmError::Engine(format!("{}: {e}", root.display()))),
            (VmState::Running | VmState::Paused, Some(r)) => {
                engine::grow_disk(r, 0, bytes).await.map_err(|e| VmError::Engine(e.to_string()))
            }
            _ => Err(conflict(&vm, "wait until it is stopped or running")),
        };
        self.release(&vm.id);
        res?;
        vm.spec.disk_mib = Some(disk_mib);
        self.store.set_vm_spec(&vm)?;
        self.event(user, "vm.resized", &vm.spec.name, &format!("root disk {disk_mib} MiB"));
        Ok(self.store.vm(&vm.id)?)
    }
}
