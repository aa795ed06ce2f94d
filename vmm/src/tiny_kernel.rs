//! Tiny hand-assembled "kernels" for den-vmm's real Linux boot path (`den-vmm boot
//! --tiny-test-guest`): a minimal ELF64 with one `PT_LOAD` segment at [`LOAD_ADDR`] whose long-mode
//! code writes [`FIRST_MILESTONE`] to the debug port as its first port write, then checks what
//! den-vmm prepared (zero page, e820 map, ACPI RSDP, a virtio-mmio device) and reports it on COM1
//! as `key=value` lines ([`BootReport`]). A few thousand instructions: they run even on a
//! PVM-backed `/dev/kvm`, where guest code is emulated one instruction at a time.
//!
//! The ELF also carries a PVH note pointing at a 32-bit stub with the same first port write, so
//! other VMMs (QEMU) can start the same file for comparisons.

/// Physical address of the kernel's loadable segment; its start is the 64-bit entry point.
pub const LOAD_ADDR: u64 = 0x100_0000;
/// The code every tiny kernel writes to the debug port (0x80) before anything else.
pub const FIRST_MILESTONE: u8 = 0x01;
/// First console line of every tiny kernel.
pub const BANNER: &str = "den-tiny";
/// How many e820 entries the report shows.
pub const E820_SHOWN: usize = 4;

const DEBUG_PORT: u8 = 0x80;
const COM1: u16 = 0x3f8;
const POWER_PORT: u16 = 0x600;
/// SLP_TYP = 5 (S5) with SLP_EN.
const S5: u8 = 0x34;
const VIRTIO_MMIO: u32 = 0xd000_0000;
const CODE_OFFSET: usize = 0x1000;

// Zero page (struct boot_params) offsets.
const ZP_RSDP: u32 = 0x70;
const ZP_E820_ENTRIES: u32 = 0x1e8;
const ZP_RAMDISK_IMAGE: u32 = 0x218;
const ZP_RAMDISK_SIZE: u32 = 0x21c;
const ZP_CMDLINE_PTR: u32 = 0x228;
const ZP_E820_TABLE: u32 = 0x2d0;

/// A growing code buffer with the few x86 encodings the kernels need.
#[derive(Default)]
struct Asm {
    code: Vec<u8>,
}

impl Asm {
    fn emit(&mut self, bytes: &[u8]) {
        self.code.extend_from_slice(bytes);
    }

    fn here(&self) -> usize {
        self.code.len()
    }

    /// `mov al, FIRST_MILESTONE; out 0x80, al; mov edx, COM1` (same bytes in 32- and 64-bit mode).
    fn prologue(&mut self) {
        let [lo, hi] = COM1.to_le_bytes();
        self.emit(&[0xb0, FIRST_MILESTONE, 0xe6, DEBUG_PORT, 0xba, lo, hi, 0, 0]);
    }

    /// Prints `s` on COM1 (`dx` holds the port): `mov al, c; out dx, al` per byte.
    fn text(&mut self, s: &str) {
        for &c in s.as_bytes() {
            self.emit(&[0xb0, c, 0xee]);
        }
    }

    fn call(&mut self, target: usize) {
        let rel = target as i64 - (self.here() as i64 + 5);
        self.emit(&[0xe8]);
        self.emit(&(rel as i32).to_le_bytes());
    }

    /// `hlt; jmp back to hlt`.
    fn halt_forever(&mut self) {
        self.emit(&[0xf4, 0xeb, 0xfd]);
    }

    /// `puts`: prints the NUL-terminated string at `rdi`.
    fn puts_routine(&mut self) -> usize {
        let at = self.here();
        // mov al,[rdi]; test al,al; jz +6; out dx,al; inc rdi; jmp -12; ret
        self.emit(&[0x8a, 0x07, 0x84, 0xc0, 0x74, 0x06, 0xee, 0x48, 0xff, 0xc7, 0xeb, 0xf4, 0xc3]);
        at
    }

    /// `hex`: prints the top `ecx` nibbles of `rbx` as lowercase hex.
    fn hex_routine(&mut self) -> usize {
        let at = self.here();
        self.emit(&[
            0x48,
            0xc1,
            0xc3,
            0x04, // rol rbx, 4
            0x88,
            0xd8, // mov al, bl
            0x24,
            0x0f, // and al, 0xf
            0x04,
            b'0', // add al, '0'
            0x3c,
            b'9', // cmp al, '9'
            0x76,
            0x02, // jbe +2
            0x04,
            b'a' - b'0' - 10, // add al, 'a' - '0' - 10
            0xee,             // out dx, al
            0xff,
            0xc9, // dec ecx
            0x75,
            0xeb, // jnz -21 (rol)
            0xc3, // ret
        ]);
        at
    }

    /// Runs `load` (which puts a value in `rbx`/`ebx`), then prints its low `nibbles` nibbles.
    fn hex(&mut self, hex: usize, load: &[u8], nibbles: u8) {
        self.emit(load);
        if nibbles < 16 {
            self.emit(&[0x48, 0xc1, 0xe3, 64 - 4 * nibbles]); // shl rbx, 64 - 4n
        }
        self.emit(&[0xb9, nibbles, 0, 0, 0]); // mov ecx, n
        self.call(hex);
    }
}

/// `mov rbx, [rbp + disp]` (64-bit field of the zero page).
fn zp_u64(disp: u32) -> Vec<u8> {
    [&[0x48, 0x8b, 0x9d][..], &disp.to_le_bytes()].concat()
}

/// `mov ebx, [rbp + disp]` (32-bit field of the zero page).
fn zp_u32(disp: u32) -> Vec<u8> {
    [&[0x8b, 0x9d][..], &disp.to_le_bytes()].concat()
}

/// `mov eax, addr; mov ebx, [rax]` (a 32-bit MMIO read).
fn mmio_u32(addr: u32) -> Vec<u8> {
    [&[0xb8][..], &addr.to_le_bytes(), &[0x8b, 0x18]].concat()
}

/// The 32-bit PVH entry: the same first port write, a console line, then halt.
fn pvh_stub(a: &mut Asm) -> usize {
    let at = a.here();
    a.prologue();
    a.text(BANNER);
    a.text(" pvh\n");
    a.halt_forever();
    at
}

/// The boot-protocol report kernel: prints a [`BootReport`], then powers off through the ACPI
/// sleep control register (S5), so den-vmm exits 0.
pub fn report_kernel() -> Vec<u8> {
    let mut a = Asm::default();
    a.prologue();
    a.emit(&[0x48, 0x89, 0xf5]); // mov rbp, rsi (the zero page)
    a.emit(&[0xeb, 0]); // jmp over the routines, patched below
    let jmp_end = a.here();
    let puts = a.puts_routine();
    let hex = a.hex_routine();
    a.code[jmp_end - 1] = (a.here() - jmp_end) as u8;

    a.text(&format!("{BANNER}\ncmdline="));
    a.emit(&[0x8b, 0xbd]); // mov edi, [rbp + cmd_line_ptr]
    a.emit(&ZP_CMDLINE_PTR.to_le_bytes());
    a.call(puts);
    a.text("\nramdisk_image=");
    a.hex(hex, &zp_u32(ZP_RAMDISK_IMAGE), 8);
    a.text("\nramdisk_size=");
    a.hex(hex, &zp_u32(ZP_RAMDISK_SIZE), 8);
    a.text("\ne820_entries=");
    let movzx = [&[0x0f, 0xb6, 0x9d][..], &ZP_E820_ENTRIES.to_le_bytes()].concat(); // movzx ebx, byte [rbp+d]
    a.hex(hex, &movzx, 2);
    for i in 0..E820_SHOWN as u32 {
        let entry = ZP_E820_TABLE + 20 * i;
        a.text("\ne820=");
        a.hex(hex, &zp_u64(entry), 16);
        a.text(" ");
        a.hex(hex, &zp_u64(entry + 8), 16);
        a.text(" ");
        a.hex(hex, &zp_u32(entry + 16), 8);
    }
    a.text("\nrsdp_addr=");
    a.hex(hex, &zp_u64(ZP_RSDP), 16);
    a.text("\nrsdp_sig=");
    a.emit(&[0x48, 0x8b, 0x45, ZP_RSDP as u8]); // mov rax, [rbp + acpi_rsdp_addr]
    a.emit(&[0x48, 0x8b, 0x18, 0xb9, 8, 0, 0, 0]); // mov rbx, [rax]; mov ecx, 8
                                                   // mov al, bl; out dx, al; shr rbx, 8; dec ecx; jnz -11
    a.emit(&[0x88, 0xd8, 0xee, 0x48, 0xc1, 0xeb, 0x08, 0xff, 0xc9, 0x75, 0xf5]);
    a.text("\nvirtio_magic=");
    a.hex(hex, &mmio_u32(VIRTIO_MMIO), 8);
    a.text("\nvirtio_id=");
    a.hex(hex, &mmio_u32(VIRTIO_MMIO + 8), 8);
    a.text("\ndone\n");
    let [lo, hi] = POWER_PORT.to_le_bytes();
    a.emit(&[0x66, 0xba, lo, hi, 0xb0, S5, 0xee]); // mov dx, 0x600; mov al, S5; out dx, al
    a.halt_forever();
    let pvh = pvh_stub(&mut a);
    elf(&a.code, pvh)
}

/// A kernel that prints `den-tiny halt` and then halts forever (with the in-kernel irqchip the
/// vCPU sleeps in KVM): a resting VM, for memory measurements.
pub fn halt_kernel() -> Vec<u8> {
    let mut a = Asm::default();
    a.prologue();
    a.text(BANNER);
    a.text(" halt\n");
    a.halt_forever();
    let pvh = pvh_stub(&mut a);
    elf(&a.code, pvh)
}

fn push16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn push32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn push64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// `(type, flags, offset, address, size, align)` of one program header.
fn phdr(v: &mut Vec<u8>, h: (u32, u32, u64, u64, u64, u64)) {
    let (kind, flags, offset, addr, size, align) = h;
    push32(v, kind);
    push32(v, flags);
    push64(v, offset);
    push64(v, addr);
    push64(v, addr);
    push64(v, size);
    push64(v, size);
    push64(v, align);
}

/// An x86-64 ELF executable: `code` as one loadable segment at [`LOAD_ADDR`] (entry: its start)
/// and a PVH note (`XEN_ELFNOTE_PHYS32_ENTRY`) with the 32-bit entry at `pvh_offset` in `code`.
pub fn elf(code: &[u8], pvh_offset: usize) -> Vec<u8> {
    const EHDR: u16 = 64;
    const PHDR: u16 = 56;
    let note_offset = u64::from(EHDR + 2 * PHDR);
    let mut v = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    push16(&mut v, 2); // ET_EXEC
    push16(&mut v, 0x3e); // EM_X86_64
    push32(&mut v, 1);
    push64(&mut v, LOAD_ADDR);
    push64(&mut v, u64::from(EHDR)); // program headers right after this header
    push64(&mut v, 0); // no section headers
    push32(&mut v, 0);
    for x in [EHDR, PHDR, 2, 64, 0, 0] {
        push16(&mut v, x);
    }
    let len = code.len() as u64;
    phdr(&mut v, (1, 5, CODE_OFFSET as u64, LOAD_ADDR, len, 0x1000)); // PT_LOAD, R+X
    phdr(&mut v, (4, 4, note_offset, 0, 20, 4)); // PT_NOTE
    push32(&mut v, 4); // namesz
    push32(&mut v, 4); // descsz
    push32(&mut v, 18); // XEN_ELFNOTE_PHYS32_ENTRY
    v.extend_from_slice(b"Xen\0");
    push32(&mut v, (LOAD_ADDR + pvh_offset as u64) as u32);
    v.resize(CODE_OFFSET, 0);
    v.extend_from_slice(code);
    v
}

/// What the report kernel printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootReport {
    /// The command line read through `cmd_line_ptr`.
    pub cmdline: String,
    /// `ramdisk_image`.
    pub ramdisk_image: u64,
    /// `ramdisk_size`.
    pub ramdisk_size: u64,
    /// `e820_entries`.
    pub e820_entries: u64,
    /// The first [`E820_SHOWN`] e820 entries (address, size, type).
    pub e820: Vec<(u64, u64, u32)>,
    /// `acpi_rsdp_addr`.
    pub rsdp_addr: u64,
    /// The 8 bytes at `acpi_rsdp_addr`.
    pub rsdp_signature: String,
    /// The 32-bit read of virtio-mmio register 0 (magic).
    pub virtio_magic: u64,
    /// The 32-bit read of virtio-mmio register 8 (device id).
    pub virtio_id: u64,
}

fn hex_field(v: &str, key: &str) -> Result<u64, String> {
    u64::from_str_radix(v, 16).map_err(|e| format!("{key}={v}: {e}"))
}

impl BootReport {
    /// Parses the report kernel's console output; fails unless it reached `done`.
    pub fn parse(console: &str) -> Result<BootReport, String> {
        let mut r = BootReport::default();
        let mut done = false;
        for line in console.lines() {
            let (key, value) = line.split_once('=').unwrap_or((line, ""));
            match key {
                "cmdline" => r.cmdline = value.to_string(),
                "ramdisk_image" => r.ramdisk_image = hex_field(value, key)?,
                "ramdisk_size" => r.ramdisk_size = hex_field(value, key)?,
                "e820_entries" => r.e820_entries = hex_field(value, key)?,
                "e820" => {
                    let f: Vec<&str> = value.split(' ').collect();
                    let [a, s, t] = f[..] else { return Err(format!("e820 line `{value}`")) };
                    r.e820.push((hex_field(a, key)?, hex_field(s, key)?, hex_field(t, key)? as u32));
                }
                "rsdp_addr" => r.rsdp_addr = hex_field(value, key)?,
                "rsdp_sig" => r.rsdp_signature = value.to_string(),
                "virtio_magic" => r.virtio_magic = hex_field(value, key)?,
                "virtio_id" => r.virtio_id = hex_field(value, key)?,
                "done" => done = true,
                _ => {}
            }
        }
        if done {
            Ok(r)
        } else {
            Err(format!("the report is incomplete:\n{console}"))
        }
    }

    /// The e820 entries the zero page says it has, of those shown.
    pub fn valid_e820(&self) -> &[(u64, u64, u32)] {
        &self.e820[..self.e820.len().min(self.e820_entries as usize)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linux_loader::loader::{elf::PvhBootCapability, Elf, KernelLoader};
    use std::io::Cursor;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    #[test]
    fn linux_loader_loads_the_elf_with_its_pvh_note() {
        let image = report_kernel();
        let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 32 << 20)]).unwrap();
        let r = Elf::load(&mem, None, &mut Cursor::new(&image), Some(GuestAddress(0x10_0000))).unwrap();
        assert_eq!(r.kernel_load, GuestAddress(LOAD_ADDR));
        let code = &image[CODE_OFFSET..];
        assert_eq!(r.kernel_end, LOAD_ADDR + code.len() as u64);
        let mut first = [0u8; 4];
        mem.read_slice(&mut first, GuestAddress(LOAD_ADDR)).unwrap();
        assert_eq!(first, [0xb0, FIRST_MILESTONE, 0xe6, 0x80]);
        let PvhBootCapability::PvhEntryPresent(pvh) = r.pvh_boot_cap else { panic!("{:?}", r.pvh_boot_cap) };
        let stub = (pvh.0 - LOAD_ADDR) as usize;
        assert_eq!(&code[stub..stub + 4], &first);
        assert!(code.len() < 4096, "{} bytes", code.len());
    }

    #[test]
    fn calls_and_jumps_land_on_routines() {
        let image = report_kernel();
        let code = &image[CODE_OFFSET..];
        // The jmp after the prologue skips exactly the two routines.
        assert_eq!(&code[12..14], &[0xeb, 13 + 22]);
        // Every call targets the start of `puts` (14) or `hex` (27).
        let mut calls = 0;
        for i in 0..code.len() - 5 {
            if code[i] == 0xe8 && code[i.saturating_sub(5)] == 0xb9 {
                let rel = i32::from_le_bytes(code[i + 1..i + 5].try_into().unwrap());
                assert_eq!(i as i64 + 5 + i64::from(rel), 27);
                calls += 1;
            }
        }
        assert_eq!(calls, 6 + 3 * E820_SHOWN);
    }

    #[test]
    fn report_parsing() {
        let text = "den-tiny\ncmdline=a b\nramdisk_image=0fff0000\nramdisk_size=00003039\ne820_entries=03\n\
                    e820=0000000000000000 000000000009fc00 00000001\ne820=0 0 0\nrsdp_addr=00000000000e0000\n\
                    rsdp_sig=RSD PTR \nvirtio_magic=74726976\nvirtio_id=00000004\ndone\n";
        let r = BootReport::parse(text).unwrap();
        assert_eq!(r.cmdline, "a b");
        assert_eq!((r.ramdisk_image, r.ramdisk_size, r.e820_entries), (0x0fff_0000, 12345, 3));
        assert_eq!(r.valid_e820(), &[(0, 0x9fc00, 1), (0, 0, 0)]);
        assert_eq!(r.rsdp_signature, "RSD PTR ");
        assert_eq!((r.virtio_magic, r.virtio_id), (0x7472_6976, 4));
        assert!(BootReport::parse("den-tiny\ncmdline=x\n").is_err());
        assert!(BootReport::parse("e820=1 2\ndone").is_err());
    }
}
