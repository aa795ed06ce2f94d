//! Installation ISOs and the VMs that boot them. ISOs live in `<data>/isos/<name>.iso`, put
//! there by an admin (`den iso import`, a task: ISOs are large); a VM created with `iso` gets an
//! empty disk of `disk_mib` and boots the ISO through firmware (SeaBIOS, or OVMF for `uefi`)
//! on QEMU's q35 machine, with a VGA display on a VNC socket.

use super::{invalid, Den, TaskHandle, VmError};
use den_core::valid_name;
use den_core::vm::{Firmware, VmRecord};
use den_engine::{DiskSpec, FirmwareBoot, LaunchSpec, OVMF_VARS};
use std::path::PathBuf;
use std::sync::Arc;

pub use den_core::vm::Iso;

impl Den {
    fn iso_dir(&self) -> PathBuf {
        self.paths.data.join("isos")
    }

    /// The file of ISO `name`; a field error when there is none.
    pub fn iso_path(&self, name: &str) -> Result<PathBuf, VmError> {
        let p = self.iso_dir().join(format!("{name}.iso"));
        if !valid_name(name) || !p.is_file() {
            return Err(invalid(
                "iso",
                format!("ISO `{name}` not found; `den iso ls` lists them, `den iso import` adds one"),
            ));
        }
        Ok(p)
    }

    /// ISOs, by name.
    pub fn isos(&self) -> Vec<Iso> {
        let mut v: Vec<Iso> = std::fs::read_dir(self.iso_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().strip_suffix(".iso")?.to_string();
                Some(Iso { name, size: e.metadata().ok()?.len() })
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Starts the import task: copies the host file `from` in as ISO `name`.
    pub fn import_iso(self: &Arc<Self>, name: &str, from: &str, user: &str) -> Result<String, VmError> {
        if !valid_name(name) {
            return Err(invalid("name", format!("`{name}` is not an ISO name: a-z, 0-9 and -, 1 to 63 characters")));
        }
        let src = PathBuf::from(from);
        if !src.is_absolute() || den_guest_tree::open_regular(&src).is_err() {
            return Err(invalid("path", format!("{from} is not a regular file on the host (give an absolute path)")));
        }
        if self.iso_dir().join(format!("{name}.iso")).exists() {
            return Err(VmError::Store(den_store::StoreError::Exists { kind: "ISO", name: name.into() }));
        }
        let (den, name2, user2) = (self.clone(), name.to_string(), user.to_string());
        self.spawn_task("iso.import", name, user, move |task: TaskHandle| async move {
            std::fs::create_dir_all(den.iso_dir()).map_err(|e| e.to_string())?;
            let dst = den.iso_dir().join(format!("{name2}.iso"));
            task.log(format!("copying {}", src.display()));
            super::disks::copy_disk(&src, &dst, Some(&task)).await?;
            den.event(&user2, "iso.imported", &name2, &src.display().to_string());
            Ok(())
        })
    }

    /// Removes an ISO no VM uses.
    pub fn delete_iso(&self, name: &str, user: &str) -> Result<(), VmError> {
        let p = self.iso_path(name)?;
        if let Some(v) = self.store.vms()?.into_iter().find(|v| v.spec.iso.as_deref() == Some(name)) {
            return Err(invalid("name", format!("ISO `{name}` is used by VM `{}`", v.spec.name)));
        }
        std::fs::remove_file(&p).map_err(|e| VmError::Images(format!("{}: {e}", p.display())))?;
        self.event(user, "iso.deleted", name, "");
        Ok(())
    }

    /// An ISO VM's disks: an empty (sparse) root disk and, for UEFI, its own variable store.
    pub(crate) fn make_blank_disks(&self, vm: &VmRecord, task: &TaskHandle) -> Result<(), String> {
        let dir = self.paths.vm_data(&vm.id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mib = vm.spec.disk_mib.unwrap_or(0);
        let root = dir.join("root.img");
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&root);
        f.and_then(|f| f.set_len(mib << 20)).map_err(|e| format!("{}: {e}", root.display()))?;
        task.log(format!("empty {mib} MiB disk for the installer"));
        if vm.spec.firmware == Some(Firmware::Uefi) {
            let vars = dir.join("efivars.fd");
            std::fs::copy(OVMF_VARS, &vars).map_err(|e| format!("{OVMF_VARS} (package ovmf): {e}"))?;
        }
        Ok(())
    }

    /// How an ISO VM starts: firmware, the ISO on a CD-ROM, its disk.
    pub(crate) fn firmware_launch_spec(&self, vm: &VmRecord) -> Result<LaunchSpec, String> {
        let iso = vm.spec.iso.as_deref().unwrap_or_default();
        let iso = self.iso_path(iso).map_err(|e| e.to_string())?;
        let dir = self.paths.vm_run(&vm.id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let data = self.paths.vm_data(&vm.id);
        let uefi = vm.spec.firmware == Some(Firmware::Uefi);
        Ok(LaunchSpec {
            id: vm.id.clone(),
            dir,
            cpus: vm.spec.cpus,
            memory_mib: vm.spec.memory_mib,
            kernel: PathBuf::new(),
            initrd: PathBuf::new(),
            cmdline: String::new(),
            disks: vec![DiskSpec { path: data.join("root.img"), read_only: false }],
            nics: self.nic_specs(vm),
            kernel_elf: None,
            firmware: Some(FirmwareBoot { uefi, iso: Some(iso), vars: uefi.then(|| data.join("efivars.fd")) }),
            shares: vec![],
        })
    }
}
