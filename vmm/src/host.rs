//! What the host's `/dev/kvm` can run.

use std::path::Path;

/// The kind of KVM behind `/dev/kvm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmKind {
    /// Hardware virtualization (kvm_intel / kvm_amd): runs stock Linux guests.
    Hardware,
    /// PVM (`kvm_pvm`): only PVM guests run at native speed; anything else is emulated
    /// instruction by instruction, and stock kernels stop with an emulation failure.
    Pvm,
    /// No usable `/dev/kvm`.
    Missing(String),
}

/// Inspects the host (`sys` is normally `/sys`).
pub fn kvm_kind(sys: &Path, dev_kvm: &Path) -> KvmKind {
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(dev_kvm) {
        return KvmKind::Missing(format!("{}: {e}", dev_kvm.display()));
    }
    if sys.join("module/kvm_pvm").exists() {
        KvmKind::Pvm
    } else {
        KvmKind::Hardware
    }
}

/// The one line den-vmm prints when it refuses to boot Linux here.
pub const PVM_REFUSAL: &str =
    "den-vmm: this host's /dev/kvm is PVM-backed (kvm_pvm): it cannot run stock Linux kernels \
(they stop with an emulation failure); run den-vmm on a host with kvm_intel/kvm_amd or in the KVM lab, \
use the qemu engine here, or pass --tiny-test-guest for a hand-made test guest";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvm_is_recognised_from_sysfs() {
        let d = std::env::temp_dir().join(format!("den-vmm-sys-{}", std::process::id()));
        std::fs::create_dir_all(d.join("module/kvm_pvm")).unwrap();
        let fake_kvm = d.join("kvm");
        std::fs::write(&fake_kvm, b"").unwrap();
        assert_eq!(kvm_kind(&d, &fake_kvm), KvmKind::Pvm);
        std::fs::remove_dir_all(d.join("module/kvm_pvm")).unwrap();
        assert_eq!(kvm_kind(&d, &fake_kvm), KvmKind::Hardware);
        assert!(matches!(kvm_kind(&d, &d.join("nope")), KvmKind::Missing(_)));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
