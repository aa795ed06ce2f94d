//! Guest RAM: anonymous host mappings registered with KVM as memory slots.

use crate::{kvm, VmmError};
use kvm_ioctls::VmFd;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Maps `ranges` (guest address, length) and registers each as a KVM memory slot.
pub fn create(vm: &VmFd, ranges: &[(u64, u64)]) -> Result<GuestMemoryMmap, VmmError> {
    let ranges: Vec<(GuestAddress, usize)> = ranges.iter().map(|&(s, l)| (GuestAddress(s), l as usize)).collect();
    let mem: GuestMemoryMmap =
        GuestMemoryMmap::from_ranges(&ranges).map_err(|e| VmmError::Memory(format!("mapping guest RAM: {e}")))?;
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
