//! The OS slots on disk: `<vm data>/slot-a/` and `slot-b/`, each holding `kernel`,
//! `initramfs`, `root.img` (attached read-only: the OS cannot change itself) and `slot.json`.
//! A slot is written under `slot-X.partial/`, flushed, then renamed into place, so a slot
//! directory is whole or absent; the record in the store names a slot only once it is.

use den_core::system::{Slot, SlotInfo};
use den_store::now_ms;
use den_vms::TaskHandle;
use std::path::{Path, PathBuf};

/// Files of a slot, by artifact role.
pub const FILES: [(&str, &str); 3] = [("kernel", "kernel"), ("initramfs", "initramfs"), ("rootfs", "root.img")];

/// A slot's directory.
pub fn dir(vm_data: &Path, slot: Slot) -> PathBuf {
    vm_data.join(format!("slot-{}", slot.as_str()))
}

fn partial(vm_data: &Path, slot: Slot) -> PathBuf {
    dir(vm_data, slot).with_extension("partial")
}

/// Removes a slot's files (whole or partial).
pub fn clear(vm_data: &Path, slot: Slot) -> Result<(), String> {
    for d in [dir(vm_data, slot), partial(vm_data, slot)] {
        match std::fs::remove_dir_all(&d) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(format!("{}: {e}", d.display())),
            _ => {}
        }
    }
    Ok(())
}

/// What an image must have to be a business OS.
pub fn info_of(image: &den_images::ImageRecord) -> Result<SlotInfo, String> {
    for (role, _) in FILES {
        if !image.artifacts.contains_key(role) {
            return Err(format!(
                "image `{}` has no {role}; a business OS image needs a kernel, an initramfs and a root disk",
                image.name
            ));
        }
    }
    Ok(SlotInfo {
        image: image.name.clone(),
        version: image.version.clone(),
        spec_digest: image.spec_digest.0.clone(),
        kernel_release: image.kernel_release.clone(),
        cmdline: image.cmdline.clone(),
        artifacts: FILES
            .iter()
            .filter_map(|(r, _)| image.artifacts.get(*r).map(|d| (r.to_string(), d.0.clone())))
            .collect(),
        written: now_ms(),
        failed: None,
    })
}

/// Writes `image` into `slot` (replacing what it held): each artifact is verified against its
/// digest while copied, flushed, and the directory renamed into place.
pub async fn write(
    images: &den_images::Store,
    image: &den_images::ImageRecord,
    vm_data: &Path,
    slot: Slot,
    task: &TaskHandle,
) -> Result<SlotInfo, String> {
    let info = info_of(image)?;
    clear(vm_data, slot)?;
    let tmp = partial(vm_data, slot);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    for (role, file) in FILES {
        let digest = image.artifacts.get(role).ok_or_else(|| format!("image `{}` has no {role}", image.name))?;
        let src = images.get(digest, true).map_err(|e| format!("image `{}`'s {role}: {e}", image.name))?;
        task.log(format!("writing {role} ({})", human(std::fs::metadata(&src).map(|m| m.len()).unwrap_or(0))));
        let dst = tmp.join(file);
        den_vms::copy_disk(&src, &dst, Some(task)).await?;
        sync(&dst)?;
    }
    let meta = tmp.join("slot.json");
    let text = serde_json::to_vec_pretty(&info).map_err(|e| e.to_string())?;
    std::fs::write(&meta, text).map_err(|e| format!("{}: {e}", meta.display()))?;
    sync(&meta)?;
    sync(&tmp)?;
    let to = dir(vm_data, slot);
    std::fs::rename(&tmp, &to).map_err(|e| format!("{}: {e}", to.display()))?;
    sync(vm_data)?;
    Ok(info)
}

/// The files a boot from `slot` uses, checked to be there and to be what the record says.
pub fn boot_files(vm_data: &Path, slot: Slot, info: &SlotInfo) -> Result<[PathBuf; 3], String> {
    let d = dir(vm_data, slot);
    let on_disk: Option<SlotInfo> =
        std::fs::read(d.join("slot.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if on_disk.as_ref().map(|i| &i.artifacts) != Some(&info.artifacts) {
        return Err(format!(
            "slot {} on disk ({}) is not the OS its record names ({})",
            slot.as_str().to_uppercase(),
            d.display(),
            info.label()
        ));
    }
    let [k, i, r] = FILES.map(|(_, f)| d.join(f));
    for f in [&k, &i, &r] {
        if !f.is_file() {
            return Err(format!("slot {}: {} is missing", slot.as_str().to_uppercase(), f.display()));
        }
    }
    Ok([k, i, r])
}

fn sync(p: &Path) -> Result<(), String> {
    std::fs::File::open(p).and_then(|f| f.sync_all()).map_err(|e| format!("flushing {}: {e}", p.display()))
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_files_must_match_the_record() {
        let d = tempfile::tempdir().unwrap();
        let info = SlotInfo {
            image: "system".into(),
            version: "1".into(),
            spec_digest: "ab".into(),
            kernel_release: String::new(),
            cmdline: String::new(),
            artifacts: [("kernel".to_string(), "k1".to_string())].into(),
            written: 0,
            failed: None,
        };
        let err = boot_files(d.path(), Slot::A, &info).unwrap_err();
        assert!(err.contains("is not the OS its record names (system 1)"), "{err}");
        let s = dir(d.path(), Slot::A);
        std::fs::create_dir_all(&s).unwrap();
        std::fs::write(s.join("slot.json"), serde_json::to_vec(&info).unwrap()).unwrap();
        assert!(boot_files(d.path(), Slot::A, &info).unwrap_err().contains("kernel is missing"));
        for (_, f) in FILES {
            std::fs::write(s.join(f), b"x").unwrap();
        }
        assert_eq!(boot_files(d.path(), Slot::A, &info).unwrap()[2], s.join("root.img"));
        let mut other = info.clone();
        other.artifacts.insert("kernel".into(), "k2".into());
        assert!(boot_files(d.path(), Slot::A, &other).is_err(), "another OS's record");
        std::fs::create_dir_all(partial(d.path(), Slot::A)).unwrap();
        clear(d.path(), Slot::A).unwrap();
        assert!(!s.exists() && !partial(d.path(), Slot::A).exists());
    }
}
