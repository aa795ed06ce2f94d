//! What the host's `/dev/kvm` can run, and the kernel command line Linux guests need under
//! QEMU's TCG. Its own crate (no dependencies) so that dend, den-vmm and the tests share one
//! probe without linking each other.

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

impl KvmKind {
    /// Its name, as `den-vmm probe` prints it and `den-vmm boot --kvm-kind` takes it
    /// (`hardware`, `pvm`), or why KVM is missing.
    pub fn name(&self) -> Result<&'static str, &str> {
        match self {
            KvmKind::Hardware => Ok("hardware"),
            KvmKind::Pvm => Ok("pvm"),
            KvmKind::Missing(why) => Err(why),
        }
    }

    /// The kind [`KvmKind::name`] names.
    pub fn from_name(name: &str) -> Option<KvmKind> {
        [KvmKind::Hardware, KvmKind::Pvm].into_iter().find(|k| k.name() == Ok(name))
    }
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

/// The host's TSC frequency in kHz, measured against the monotonic clock over 50 ms.
pub fn tsc_khz() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        let t0 = std::time::Instant::now();
        // SAFETY: rdtsc has no preconditions on x86-64.
        let c0 = unsafe { core::arch::x86_64::_rdtsc() };
        std::thread::sleep(std::time::Duration::from_millis(50));
        // SAFETY: as above.
        let c1 = unsafe { core::arch::x86_64::_rdtsc() };
        let us = t0.elapsed().as_micros() as u64;
        (us > 0 && c1 > c0).then(|| (c1 - c0) * 1000 / us)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Kernel command line words for Linux guests under QEMU's TCG. Without them the guest's early
/// TSC calibration against the emulated PIT fails now and then and the boot hangs right after
/// "Unable to read current time from RTC" (measured here: 3 to 5 boots in 10); with the TSC
/// frequency given (the emulated TSC runs at the host's rate) and the delay loop preset, none did.
pub fn tcg_guest_cmdline() -> String {
    match tsc_khz() {
        // lpj for HZ=250 (Debian's kernels) with a TSC-based delay loop.
        Some(khz) => format!("tsc_early_khz={khz} lpj={}", khz * 1000 / 250),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_go_both_ways() {
        for k in [KvmKind::Hardware, KvmKind::Pvm] {
            assert_eq!(KvmKind::from_name(k.name().unwrap()), Some(k));
        }
        assert_eq!(KvmKind::Missing("no /dev/kvm".into()).name(), Err("no /dev/kvm"));
        assert_eq!(KvmKind::from_name("missing"), None);
    }

    #[test]
    fn tsc_frequency_is_plausible() {
        let khz = tsc_khz().expect("x86-64 has a TSC");
        assert!((100_000..20_000_000).contains(&khz), "{khz} kHz");
        assert!(tcg_guest_cmdline().starts_with("tsc_early_khz="));
    }

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
