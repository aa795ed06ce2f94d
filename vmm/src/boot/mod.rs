//! Linux direct boot (64-bit boot protocol): [`loader`] puts the kernel, initramfs, command line
//! and zero page into guest memory; [`cpu`] puts the boot vCPU in long mode at the kernel's entry
//! and describes each vCPU (CPUID, local APIC); [`acpi`] writes the tables that describe the
//! machine.

pub mod acpi;
pub mod cpu;
pub mod loader;
