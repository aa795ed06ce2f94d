//! Guest RAM: host mappings registered with KVM as memory slots. Private anonymous memory by
//! default; one memfd mapped shared when a vhost-user backend (virtiofsd) must map the guest's
//! memory too.

use crate::{kvm, VmmError};
use kvm_ioctls::VmFd;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// How guest RAM is backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// Private anonymous memory, only den-vmm maps it.
    Private,
    /// A memfd mapped shared, whose descriptor vhost-user backends are given.
    Shared,
}

/// Maps `ranges` (guest address, length) and registers each as a KVM memory slot.
pub fn create(vm: &VmFd, ranges: &[(u64, u64)], backing: Backing) -> Result<GuestMemoryMmap, VmmError> {
    let mem = map(ranges, backing)?;
    for (slot, region) in mem.iter().enumerate() {
        let host = mem.get_host_address(region.start_addr()).map_err(|e| VmmError::Memory(e.to_string()))?;
        let r = kvm_bindings::kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: the mapping belongs to `mem`, which the caller keeps alive for as long as the VM
        // runs (both are owned by the same machine and dropped together at process end).
        unsafe { vm.set_user_memory_region(r) }.map_err(kvm("set memory region"))?;
    }
    Ok(mem)
}

/// Maps `ranges` without registering them with KVM.
pub fn map(ranges: &[(u64, u64)], backing: Backing) -> Result<GuestMemoryMmap, VmmError> {
    let mapped = match backing {
        Backing::Private => {
            let ranges: Vec<(GuestAddress, usize)> =
                ranges.iter().map(|&(s, l)| (GuestAddress(s), l as usize)).collect();
            GuestMemoryMmap::from_ranges(&ranges)
        }
        Backing::Shared => {
            let total: u64 = ranges.iter().map(|r| r.1).sum();
            use nix::sys::memfd::MemFdCreateFlag;
            let flags = MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING;
            let fd = nix::sys::memfd::memfd_create(c"den-vmm-ram", flags)
                .map_err(|e| VmmError::Memory(format!("memfd_create for shared guest RAM: {e}")))?;
            let file = std::fs::File::from(fd);
            file.set_len(total)
                .map_err(|e| VmmError::Memory(format!("sizing shared guest RAM to {total} bytes: {e}")))?;
            // Its size is fixed for good: a backend given the memfd cannot shrink it under
            // den-vmm's mapping (which would end den-vmm with SIGBUS).
            use nix::fcntl::{fcntl, FcntlArg, SealFlag};
            let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
            fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), FcntlArg::F_ADD_SEALS(seals))
                .map_err(|e| VmmError::Memory(format!("sealing shared guest RAM: {e}")))?;
            let file = std::sync::Arc::new(file);
            let mut offset = 0;
            let mut with_files = Vec::new();
            for &(start, len) in ranges {
                with_files.push((GuestAddress(start), len as usize, Some(FileOffset::from_arc(file.clone(), offset))));
                offset += len;
            }
            GuestMemoryMmap::from_ranges_with_files(&with_files)
        }
    };
    mapped.map_err(|e| VmmError::Memory(format!("mapping guest RAM: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryRegion;

    #[test]
    fn shared_ram_is_one_sealed_memfd_and_private_ram_has_no_file() {
        let mem = map(&[(0, 1 << 20), (2 << 20, 1 << 20)], Backing::Shared).unwrap();
        let files: Vec<_> = mem.iter().map(|r| r.file_offset().unwrap().clone()).collect();
        assert_eq!((files[0].start(), files[1].start()), (0, 1 << 20), "one file, regions one after another");
        let file = files[0].file();
        assert_eq!(file.metadata().unwrap().len(), 2 << 20);
        assert!(file.set_len(1 << 20).is_err(), "nobody can shrink guest RAM under den-vmm");
        assert!(file.set_len(4 << 20).is_err(), "nor grow it");
        let private = map(&[(0, 1 << 20)], Backing::Private).unwrap();
        assert!(private.iter().all(|r| r.file_offset().is_none()));
    }
}
