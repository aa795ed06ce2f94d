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
            let fd = nix::sys::memfd::memfd_create(c"den-vmm-ram", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
                .map_err(|e| VmmError::Memory(format!("memfd_create for shared guest RAM: {e}")))?;
            let file = std::fs::File::from(fd);
            file.set_len(total)
                .map_err(|e| VmmError::Memory(format!("sizing shared guest RAM to {total} bytes: {e}")))?;
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
