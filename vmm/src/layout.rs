//! The guest physical memory map of a den-vmm machine (x86-64).
//!
//! ```text
//! 0x0000_0500  GDT                      0x0009_fc00  EBDA (reserved up to 1 MiB)
//! 0x0000_0520  IDT (empty)              0x000e_0000  RSDP, then the other ACPI tables
//! 0x0000_7000  zero page (boot_params)  0x0010_0000  kernel
//! 0x0000_8ff0  boot stack top            ...         initramfs at the top of low RAM
//! 0x0000_9000  page tables (PML4, PDPT, PDs: the first 4 GiB identity-mapped with 2 MiB pages)
//! 0x0002_0000  kernel command line        0x000f_fff0  reset stub (reset vector)
//! 0xd000_0000  MMIO hole: virtio-mmio devices, 4 KiB each; IOAPIC at 0xfec0_0000,
//!              local APIC at 0xfee0_0000; RAM above the hole starts at 4 GiB.
//! ```

/// GDT.
pub const GDT: u64 = 0x500;
/// IDT.
pub const IDT: u64 = 0x520;
/// The Linux zero page.
pub const ZERO_PAGE: u64 = 0x7000;
/// Initial stack pointer.
pub const BOOT_STACK: u64 = 0x8ff0;
/// PML4 table; the PDPT follows at +0x1000 and four page directories at +0x2000..+0x6000.
pub const PML4: u64 = 0x9000;
/// Kernel command line.
pub const CMDLINE: u64 = 0x20000;
/// Longest command line accepted.
pub const CMDLINE_MAX: usize = 4096;
/// Start of the EBDA (RAM below it is usable).
pub const EBDA: u64 = 0x9fc00;
/// RSDP; ACPI tables follow it.
pub const RSDP: u64 = 0xe0000;
/// End of the ACPI table area.
pub const ACPI_END: u64 = 0x100000;
/// The x86 reset vector (real mode F000:FFF0). Linux's last-resort reboot on a hardware-reduced
/// ACPI machine jumps here, as it would into a BIOS; den-vmm's stub asks for a reset instead.
pub const RESET_VECTOR: u64 = 0xffff0;
/// Where high memory (and the kernel) starts.
pub const HIMEM: u64 = 0x100000;
/// Start of the MMIO hole below 4 GiB.
pub const MMIO_HOLE: u64 = 0xd000_0000;
/// First virtio-mmio device; each takes [`VIRTIO_MMIO_SIZE`].
pub const VIRTIO_MMIO_BASE: u64 = MMIO_HOLE;
/// Size of one virtio-mmio device window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// First GSI handed to virtio devices (legacy ISA lines stay below).
pub const VIRTIO_GSI_BASE: u32 = 5;
/// Last GSI of the in-kernel IOAPIC.
pub const GSI_MAX: u32 = 23;
/// IOAPIC.
pub const IOAPIC: u64 = 0xfec0_0000;
/// Local APIC.
pub const LAPIC: u64 = 0xfee0_0000;
/// The first address above 4 GiB.
pub const FOUR_GIB: u64 = 1 << 32;

/// RAM ranges (start, length) for `mem_bytes` of guest memory.
pub fn ram_ranges(mem_bytes: u64) -> Vec<(u64, u64)> {
    if mem_bytes <= MMIO_HOLE {
        vec![(0, mem_bytes)]
    } else {
        vec![(0, MMIO_HOLE), (FOUR_GIB, mem_bytes - MMIO_HOLE)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_skips_the_mmio_hole() {
        assert_eq!(ram_ranges(256 << 20), vec![(0, 256 << 20)]);
        assert_eq!(ram_ranges(4 << 30), vec![(0, MMIO_HOLE), (FOUR_GIB, (4 << 30) - MMIO_HOLE)]);
        assert!(ACPI_END <= HIMEM && CMDLINE + CMDLINE_MAX as u64 <= EBDA && PML4 + 0x6000 <= CMDLINE);
    }
}
