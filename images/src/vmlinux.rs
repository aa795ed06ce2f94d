//! Extracts the uncompressed ELF `vmlinux` from a bzImage whose payload is LZ4 (legacy frame
//! format, as the kernel's `lz4 -l` writes it), for VMMs that load ELF kernels.

use crate::ImageError;

const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// The compressed payload of a bzImage (boot protocol >= 2.08).
pub fn payload(bz: &[u8]) -> Result<&[u8], ImageError> {
    let bad = |m: &str| ImageError::Kernel(format!("not a usable bzImage: {m}"));
    if le32(bz, 0x202) != Some(0x5372_6448) {
        return Err(bad("no `HdrS` boot header"));
    }
    let setup_sects = match bz.get(0x1f1).copied().ok_or_else(|| bad("too short"))? {
        0 => 4,
        n => n as usize,
    };
    let pm_start = (setup_sects + 1) * 512;
    let off = le32(bz, 0x248).ok_or_else(|| bad("no payload offset"))? as usize;
    let len = le32(bz, 0x24c).ok_or_else(|| bad("no payload length"))? as usize;
    let start = pm_start.checked_add(off).ok_or_else(|| bad("payload offset overflows"))?;
    bz.get(start..start.checked_add(len).ok_or_else(|| bad("payload length overflows"))?)
        .ok_or_else(|| bad("payload lies outside the file"))
}

/// Decompresses a legacy LZ4 stream.
pub fn lz4_legacy(data: &[u8]) -> Result<Vec<u8>, ImageError> {
    let bad = |m: String| ImageError::Kernel(format!("LZ4 payload: {m}"));
    if le32(data, 0) != Some(LZ4_LEGACY_MAGIC) {
        return Err(bad("not the LZ4 legacy format (is the kernel compressed with something else?)".into()));
    }
    let mut out = Vec::new();
    let mut pos = 4;
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
    while pos + 4 <= data.len() {
        let size = le32(data, pos).unwrap_or(0);
        if size == LZ4_LEGACY_MAGIC {
            pos += 4;
            continue;
        }
        let size = size as usize;
        // The kernel appends the uncompressed size after the last block.
        if pos + 4 + size > data.len() {
            break;
        }
        let chunk = &data[pos + 4..pos + 4 + size];
        let n = lz4_flex::block::decompress_into(chunk, &mut block).map_err(|e| bad(format!("block at {pos}: {e}")))?;
        out.extend_from_slice(&block[..n]);
        pos += 4 + size;
    }
    Ok(out)
}

/// bzImage bytes to vmlinux ELF bytes.
pub fn extract(bz: &[u8]) -> Result<Vec<u8>, ImageError> {
    let elf = lz4_legacy(payload(bz)?)?;
    if !crate::elf::is_elf64(&elf) {
        return Err(ImageError::Kernel("decompressed payload is not an ELF64 file".into()));
    }
    Ok(elf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_stream_round_trip() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let block = lz4_flex::block::compress(&data);
        let mut stream = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        stream.extend_from_slice(&(block.len() as u32).to_le_bytes());
        stream.extend_from_slice(&block);
        stream.extend_from_slice(&(data.len() as u32).to_le_bytes());
        assert_eq!(lz4_legacy(&stream).unwrap(), data);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(payload(&[0u8; 100]).is_err());
        assert!(lz4_legacy(b"\x02\x21\x4c\x18\xff\xff\xff\x00junk").is_ok());
        assert!(lz4_legacy(b"nope").is_err());
        let mut hdr = vec![0u8; 0x300];
        hdr[0x202..0x206].copy_from_slice(b"HdrS");
        hdr[0x248..0x24c].copy_from_slice(&u32::MAX.to_le_bytes());
        hdr[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(payload(&hdr).is_err());
    }
}
