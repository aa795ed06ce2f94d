//! Just enough ELF64 reading to find a section (the `.modinfo` of kernel modules) and to tell an
//! ELF file from other bytes.

/// Whether `b` starts like a 64-bit little-endian ELF file.
pub fn is_elf64(b: &[u8]) -> bool {
    b.len() >= 64 && &b[..4] == b"\x7fELF" && b[4] == 2 && b[5] == 1
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off.checked_add(4)?)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off.checked_add(8)?)?.try_into().ok()?))
}

/// The bytes of the section called `name`, if the file has it. Every offset is bounds-checked.
pub fn section<'a>(b: &'a [u8], name: &str) -> Option<&'a [u8]> {
    if !is_elf64(b) {
        return None;
    }
    let shoff = usize::try_from(u64_at(b, 0x28)?).ok()?;
    let shentsize = u16_at(b, 0x3A)? as usize;
    let shnum = u16_at(b, 0x3C)? as usize;
    let shstrndx = u16_at(b, 0x3E)? as usize;
    if shentsize < 64 {
        return None;
    }
    let sh = |i: usize| -> Option<(u32, usize, usize)> {
        let base = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let name = u32_at(b, base)?;
        let off = usize::try_from(u64_at(b, base.checked_add(0x18)?)?).ok()?;
        let size = usize::try_from(u64_at(b, base.checked_add(0x20)?)?).ok()?;
        Some((name, off, size))
    };
    let (_, stroff, strsize) = sh(shstrndx)?;
    let strtab = b.get(stroff..stroff.checked_add(strsize)?)?;
    for i in 0..shnum {
        let (n, off, size) = sh(i)?;
        let rest = strtab.get(n as usize..)?;
        let end = rest.iter().position(|&c| c == 0)?;
        if &rest[..end] == name.as_bytes() {
            return b.get(off..off.checked_add(size)?);
        }
    }
    None
}

/// Whether an ELF64 executable is statically linked (has no `PT_INTERP` program header).
pub fn is_static(b: &[u8]) -> bool {
    let Some(phoff) = u64_at(b, 0x20).and_then(|v| usize::try_from(v).ok()) else { return false };
    let (Some(phentsize), Some(phnum)) = (u16_at(b, 0x36), u16_at(b, 0x38)) else { return false };
    if !is_elf64(b) || phentsize < 56 {
        return false;
    }
    (0..phnum as usize).all(|i| {
        let at = (i * phentsize as usize).checked_add(phoff);
        at.and_then(|a| u32_at(b, a)).is_some_and(|ty| ty != 3)
    })
}

/// Values of `key=` entries in a `.modinfo` section.
pub fn modinfo<'a>(section: &'a [u8], key: &str) -> Vec<&'a str> {
    section
        .split(|&c| c == 0)
        .filter_map(|e| std::str::from_utf8(e).ok())
        .filter_map(|e| e.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_elf_and_never_panics() {
        assert!(section(b"not an elf", ".modinfo").is_none());
        let mut fake = vec![0u8; 64];
        fake[..6].copy_from_slice(b"\x7fELF\x02\x01");
        fake[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        fake[0x3A] = 64;
        fake[0x3C] = 3;
        assert!(section(&fake, ".modinfo").is_none());
    }

    #[test]
    fn modinfo_values() {
        let s = b"license=GPL\0depends=virtio,virtio_ring\0alias=x\0";
        assert_eq!(modinfo(s, "depends"), vec!["virtio,virtio_ring"]);
        assert!(modinfo(s, "missing").is_empty());
    }

    #[test]
    fn reads_own_test_binary_sections() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(is_elf64(&exe));
        assert!(section(&exe, ".text").is_some_and(|t| !t.is_empty()));
    }
}
