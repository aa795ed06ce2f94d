//! vCPU state for the 64-bit Linux boot protocol: an identity-mapped long mode with a flat GDT for
//! the boot vCPU, and for every vCPU its CPUID (APIC IDs and topology), local APIC wiring and FPU.
//! Other vCPUs wait in KVM for the INIT/SIPI the kernel sends them.

use crate::layout;
use crate::{kvm, VmmError};
use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, CpuId};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const CR0_PE: u64 = 1;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const PAGE_PRESENT_RW: u64 = 0x3;
const PAGE_HUGE: u64 = 0x80;

/// GDT entries: null, 64-bit code, data, TSS (flags, base, limit).
const GDT_ENTRIES: [(u16, u32, u32); 4] = [(0, 0, 0), (0xa09b, 0, 0xfffff), (0xc093, 0, 0xfffff), (0x808b, 0, 0xfffff)];

fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let (flags, base, limit) = (u64::from(flags), u64::from(base), u64::from(limit));
    ((base & 0xff00_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0xffff)
        | ((limit & 0xf_0000) << 32)
        | ((flags & 0xf0ff) << 40)
}

fn segment(index: u16) -> kvm_segment {
    let (flags, base, limit) = GDT_ENTRIES[index as usize];
    let g = (flags >> 15) & 1;
    kvm_segment {
        base: u64::from(base),
        limit: if g == 1 { (limit << 12) | 0xfff } else { limit },
        selector: index * 8,
        type_: (flags & 0xf) as u8,
        present: ((flags >> 7) & 1) as u8,
        dpl: ((flags >> 5) & 3) as u8,
        db: ((flags >> 14) & 1) as u8,
        s: ((flags >> 4) & 1) as u8,
        l: ((flags >> 13) & 1) as u8,
        g: g as u8,
        avl: ((flags >> 12) & 1) as u8,
        unusable: u8::from((flags >> 7) & 1 == 0),
        padding: 0,
    }
}

fn mem_err(what: &str) -> impl FnOnce(vm_memory::GuestMemoryError) -> VmmError + '_ {
    move |e| VmmError::Memory(format!("{what}: {e}"))
}

/// Writes the GDT, an empty IDT and page tables identity-mapping the first 4 GiB.
pub fn write_boot_tables(mem: &GuestMemoryMmap) -> Result<(), VmmError> {
    for (i, &(f, b, l)) in GDT_ENTRIES.iter().enumerate() {
        mem.write_obj(gdt_entry(f, b, l), GuestAddress(layout::GDT + 8 * i as u64)).map_err(mem_err("GDT"))?;
    }
    mem.write_obj(0u64, GuestAddress(layout::IDT)).map_err(mem_err("IDT"))?;
    let pdpt = layout::PML4 + 0x1000;
    mem.write_obj(pdpt | PAGE_PRESENT_RW, GuestAddress(layout::PML4)).map_err(mem_err("PML4"))?;
    for gib in 0..4u64 {
        let pd = pdpt + 0x1000 * (gib + 1);
        mem.write_obj(pd | PAGE_PRESENT_RW, GuestAddress(pdpt + 8 * gib)).map_err(mem_err("PDPT"))?;
        for i in 0..512u64 {
            let page = (gib << 30) | (i << 21);
            mem.write_obj(page | PAGE_PRESENT_RW | PAGE_HUGE, GuestAddress(pd + 8 * i)).map_err(mem_err("PD"))?;
        }
    }
    Ok(())
}

/// Real-mode code at the reset vector: write the reset value to the ACPI reset register, then
/// halt. A guest that jumps to the reset vector (Linux does, after ACPI and keyboard-controller
/// resets, when it believes it runs on EFI firmware) so resets the machine instead of running
/// through zeroed memory forever.
pub fn write_reset_stub(mem: &GuestMemoryMmap) -> Result<(), VmmError> {
    let port = crate::devices::power::POWER_PORT + crate::devices::power::RESET as u16;
    let [lo, hi] = port.to_le_bytes();
    let stub = [0xba, lo, hi, 0xb0, crate::devices::power::RESET_VALUE, 0xee, 0xf4, 0xeb, 0xfd];
    mem.write_slice(&stub, GuestAddress(layout::RESET_VECTOR)).map_err(mem_err("reset stub"))
}

/// Puts the boot vCPU in long mode at `entry` with the zero page in `rsi`.
pub fn setup_boot_vcpu(vcpu: &VcpuFd, entry: u64) -> Result<(), VmmError> {
    let mut sregs = vcpu.get_sregs().map_err(kvm("get sregs"))?;
    let code = segment(1);
    let data = segment(2);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment(3);
    sregs.gdt.base = layout::GDT;
    sregs.gdt.limit = (GDT_ENTRIES.len() * 8 - 1) as u16;
    sregs.idt.base = layout::IDT;
    sregs.idt.limit = 7;
    sregs.cr0 |= CR0_PE | CR0_PG;
    sregs.cr3 = layout::PML4;
    sregs.cr4 |= CR4_PAE;
    sregs.efer |= EFER_LME | EFER_LMA;
    vcpu.set_sregs(&sregs).map_err(kvm("set sregs"))?;
    let regs = kvm_regs {
        rip: entry,
        rsp: layout::BOOT_STACK,
        rbp: layout::BOOT_STACK,
        rsi: layout::ZERO_PAGE,
        rflags: 2,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(kvm("set regs"))
}

/// CPUID for vCPU `index` of `count`: the host's supported set with this vCPU's APIC ID and the
/// machine's topology (one socket, `count` cores, one thread each).
pub fn vcpu_cpuid(supported: &CpuId, index: u8, count: u8) -> CpuId {
    let mut cpuid = supported.clone();
    let bits = u32::BITS - u32::from(count.max(1) - 1).leading_zeros();
    for e in cpuid.as_mut_slice() {
        match e.function {
            0x1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | (u32::from(index) << 24) | (u32::from(count) << 16);
                e.ecx |= 1 << 31; // running under a hypervisor
                if count > 1 {
                    e.edx |= 1 << 28; // HTT: the logical count field is valid
                }
            }
            0xb | 0x1f => {
                e.edx = u32::from(index);
                match e.index {
                    0 => {
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = 0x100;
                    }
                    1 => {
                        e.eax = bits;
                        e.ebx = u32::from(count);
                        e.ecx = 0x200 | 1;
                    }
                    i => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = i;
                    }
                }
            }
            0x8000_0008 => e.ecx = (e.ecx & !0xff) | u32::from(count.max(1) - 1),
            0x8000_001e => e.eax = u32::from(index),
            _ => {}
        }
    }
    cpuid
}

/// Sets CPUID, the local APIC's LINT0 (ExtINT, for the PIC) and LINT1 (NMI), and the FPU.
pub fn setup_vcpu(vcpu: &VcpuFd, cpuid: &CpuId) -> Result<(), VmmError> {
    vcpu.set_cpuid2(cpuid).map_err(kvm("set CPUID"))?;
    let mut lapic = vcpu.get_lapic().map_err(kvm("get local APIC"))?;
    for (reg, mode) in [(0x350usize, 7u32), (0x360, 4)] {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[reg + i] as u8);
        let v = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
        for (i, b) in v.to_le_bytes().iter().enumerate() {
            lapic.regs[reg + i] = *b as _;
        }
    }
    vcpu.set_lapic(&lapic).map_err(kvm("set local APIC"))?;
    let fpu = kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() };
    vcpu.set_fpu(&fpu).map_err(kvm("set FPU"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_match_the_kernel_layout() {
        assert_eq!(gdt_entry(0xa09b, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(0xc093, 0, 0xfffff), 0x00cf_9300_0000_ffff);
        let cs = segment(1);
        assert_eq!((cs.l, cs.db, cs.g, cs.type_, cs.present, cs.selector), (1, 0, 1, 0xb, 1, 8));
        assert_eq!(cs.limit, 0xffff_ffff);
    }

    #[test]
    fn page_tables_identity_map_4_gib() {
        let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write_boot_tables(&mem).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(layout::PML4)).unwrap();
        assert_eq!(pml4, (layout::PML4 + 0x1000) | 3);
        let pd3: u64 = mem.read_obj(GuestAddress(layout::PML4 + 0x1000 + 24)).unwrap();
        let last: u64 = mem.read_obj(GuestAddress((pd3 & !0xfff) + 8 * 511)).unwrap();
        assert_eq!(last, ((3 << 30) | (511 << 21)) | 0x83);
    }
}
