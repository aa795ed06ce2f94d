//! Loads a Linux kernel (bzImage or ELF vmlinux, through linux-loader), an initramfs and the
//! command line, and writes the zero page with the e820 map and the RSDP address.

use crate::layout::{self, ram_ranges};
use crate::VmmError;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::{load_cmdline, BzImage, Cmdline, Elf, KernelLoader};
use std::path::Path;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
const KERNEL_LOADER_OTHER: u8 = 0xff;
/// Offset of the 64-bit entry point from the start of a bzImage's protected-mode code.
const BZIMAGE_64BIT_ENTRY: u64 = 0x200;
/// Highest initramfs end the kernel accepts when its header does not say.
const INITRD_MAX_DEFAULT: u64 = 0x37ff_ffff;

/// What was loaded: where the boot vCPU starts.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    /// The kernel's 64-bit entry point.
    pub entry: GuestAddress,
    /// End of the kernel image in guest memory.
    pub kernel_end: u64,
    /// Initramfs (address, size), if any.
    pub initrd: Option<(u64, u64)>,
    /// The kernel was an ELF `vmlinux` (else a bzImage, which decompresses itself).
    pub elf: bool,
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> VmmError {
    move |e| VmmError::Io(what, e)
}

/// Loads `kernel`, `initrd` and `cmdline` into `mem` (`mem_bytes` of RAM laid out per
/// [`layout::ram_ranges`]) and writes the zero page.
pub fn load(
    mem: &GuestMemoryMmap,
    mem_bytes: u64,
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
) -> Result<Loaded, VmmError> {
    let mut f =
        crate::files::open(kernel, false).map_err(|e| VmmError::Input(format!("kernel {}: {e}", kernel.display())))?;
    let (entry, kernel_end, header) = match BzImage::load(mem, None, &mut f, Some(GuestAddress(layout::HIMEM))) {
        Ok(r) => (r.kernel_load.unchecked_add(BZIMAGE_64BIT_ENTRY), r.kernel_end, r.setup_header),
        Err(bz_err) => match Elf::load(mem, None, &mut f, Some(GuestAddress(layout::HIMEM))) {
            Ok(r) => (r.kernel_load, r.kernel_end, None),
            Err(elf_err) => {
                return Err(VmmError::Input(format!(
                    "kernel {} is neither a bzImage ({bz_err}) nor an ELF vmlinux ({elf_err})",
                    kernel.display()
                )))
            }
        },
    };

    let elf = header.is_none();
    let mut hdr = header.unwrap_or_else(|| setup_header {
        boot_flag: KERNEL_BOOT_FLAG_MAGIC,
        header: KERNEL_HDR_MAGIC,
        kernel_alignment: 0x0100_0000,
        ..Default::default()
    });
    let low_end = ram_ranges(mem_bytes).first().map(|(s, l)| s + l).unwrap_or(0);
    let initrd = match initrd {
        Some(p) => Some(load_initrd(mem, p, &hdr, low_end, kernel_end)?),
        None => None,
    };

    let cl = Cmdline::try_from(cmdline, layout::CMDLINE_MAX)
        .map_err(|e| VmmError::Input(format!("kernel command line: {e}")))?;
    load_cmdline(mem, GuestAddress(layout::CMDLINE), &cl)
        .map_err(|e| VmmError::Memory(format!("command line: {e}")))?;

    hdr.type_of_loader = KERNEL_LOADER_OTHER;
    hdr.cmd_line_ptr = layout::CMDLINE as u32;
    hdr.cmdline_size = cmdline.len() as u32 + 1;
    if let Some((addr, size)) = initrd {
        hdr.ramdisk_image = addr as u32;
        hdr.ramdisk_size = size as u32;
    }
    let mut params = boot_params { hdr, acpi_rsdp_addr: layout::RSDP, ..Default::default() };
    let mut e820 = vec![(0, layout::EBDA, E820_RAM), (layout::EBDA, layout::HIMEM - layout::EBDA, E820_RESERVED)];
    for (start, len) in ram_ranges(mem_bytes) {
        let (s, e) = (start.max(layout::HIMEM), start + len);
        if e > s {
            e820.push((s, e - s, E820_RAM));
        }
    }
    write_e820(&mut params, &e820)?;
    LinuxBootConfigurator::write_bootparams(&BootParams::new(&params, GuestAddress(layout::ZERO_PAGE)), mem)
        .map_err(|e| VmmError::Memory(format!("zero page: {e}")))?;
    Ok(Loaded { entry, kernel_end, initrd, elf })
}

fn write_e820(params: &mut boot_params, entries: &[(u64, u64, u32)]) -> Result<(), VmmError> {
    if entries.len() > params.e820_table.len() {
        return Err(VmmError::Memory(format!("{} e820 entries do not fit the zero page", entries.len())));
    }
    for (slot, &(addr, size, type_)) in params.e820_table.iter_mut().zip(entries) {
        *slot = boot_e820_entry { addr, size, r#type: type_ };
    }
    params.e820_entries = entries.len() as u8;
    Ok(())
}

/// Puts the initramfs as high in low memory as the kernel allows, page aligned.
fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    hdr: &setup_header,
    low_end: u64,
    kernel_end: u64,
) -> Result<(u64, u64), VmmError> {
    let mut f =
        crate::files::open(path, false).map_err(|e| VmmError::Input(format!("initramfs {}: {e}", path.display())))?;
    let size = f.metadata().map_err(io("initramfs size"))?.len();
    let max = if hdr.initrd_addr_max != 0 { u64::from(hdr.initrd_addr_max) } else { INITRD_MAX_DEFAULT };
    let top = low_end.min(max.saturating_add(1));
    let addr = top.checked_sub(size).map(|a| a & !0xfff).filter(|a| *a >= kernel_end).ok_or_else(|| {
        VmmError::Input(format!(
            "initramfs {} ({size} bytes) does not fit between the kernel and {top:#x}: give the VM more memory",
            path.display()
        ))
    })?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut f, size as usize)
        .map_err(|e| VmmError::Input(format!("reading initramfs {} into guest memory: {e}", path.display())))?;
    Ok((addr, size))
}
