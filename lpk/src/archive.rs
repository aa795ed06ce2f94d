//! Reading the two container formats, one entry at a time: ZIP (v1, and v2 with `package.yml`)
//! and POSIX tar (v2). Nothing is unpacked here; each entry's bytes are handed to a visitor.

use crate::LpkError;
use std::io::{Read, Seek, SeekFrom};

/// Which archive format the package uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    /// A ZIP archive.
    Zip,
    /// A POSIX tar archive.
    Tar,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link, with its target.
    Symlink(Vec<u8>),
    /// A hard link, with the entry it links to.
    Hardlink(Vec<u8>),
    /// A tar global header: carries no file.
    Skip,
    /// Anything else (devices, FIFOs, sparse files), named.
    Other(&'static str),
}

/// One archive entry as the archive describes it.
#[derive(Debug, Clone)]
pub struct RawEntry {
    /// The name as stored.
    pub name: Vec<u8>,
    /// Its type.
    pub kind: RawKind,
    /// Its size once unpacked, as declared.
    pub size: u64,
    /// Its stored (compressed) size, for ZIP entries.
    pub packed: Option<u64>,
    /// Permission bits.
    pub mode: u32,
}

/// The visitor called for each entry with a reader of its bytes.
pub type Visit<'a> = dyn FnMut(RawEntry, &mut dyn Read) -> Result<(), LpkError> + 'a;

/// Tells ZIP from tar by their magic bytes; anything else is refused.
pub fn detect<R: Read + Seek>(file: &mut R) -> Result<Container, LpkError> {
    let mut head = [0u8; 512];
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(LpkError::Archive(format!("cannot read the package: {e}"))),
        }
    }
    file.seek(SeekFrom::Start(0)).map_err(|e| LpkError::Archive(format!("cannot read the package: {e}")))?;
    if got >= 4 && (head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06")) {
        return Ok(Container::Zip);
    }
    if got >= 262 && &head[257..262] == b"ustar" {
        return Ok(Container::Tar);
    }
    Err(LpkError::Archive("this is not an LPK package: neither a ZIP (v1) nor a POSIX tar (v2) archive".into()))
}

/// Visits every entry of a ZIP archive, in central-directory order.
pub fn walk_zip<R: Read + Seek>(file: R, visit: &mut Visit) -> Result<(), LpkError> {
    let mut zip = zip::ZipArchive::new(file).map_err(|e| LpkError::Archive(format!("malformed ZIP: {e}")))?;
    if zip.has_duplicate_names() {
        return Err(LpkError::Archive("the ZIP lists the same entry name twice".into()));
    }
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| LpkError::Archive(format!("malformed ZIP entry #{i}: {e}")))?;
        let name = f.name_raw().to_vec();
        let mode = f.unix_mode().unwrap_or(0);
        let kind = match mode & 0o170000 {
            _ if f.is_dir() => RawKind::Dir,
            0o120000 => {
                let mut t = Vec::new();
                (&mut f).take(4097).read_to_end(&mut t).map_err(|e| zip_read(&name, e))?;
                if t.len() > 4096 {
                    return Err(LpkError::entry(lossy(&name), "the symlink target is longer than 4096 bytes"));
                }
                RawKind::Symlink(t)
            }
            0 | 0o100000 => RawKind::File,
            0o020000 | 0o060000 => RawKind::Other("device file"),
            0o010000 => RawKind::Other("FIFO"),
            _ => RawKind::Other("special file"),
        };
        let entry = RawEntry { name, kind, size: f.size(), packed: Some(f.compressed_size()), mode: mode & 0o7777 };
        visit(entry, &mut f)?;
    }
    Ok(())
}

fn zip_read(name: &[u8], e: std::io::Error) -> LpkError {
    LpkError::entry(lossy(name), format!("cannot be read: {e}"))
}

/// Visits every entry of a tar stream in order. Extension headers (long names, pax records)
/// larger than 64 KiB are refused before the `tar` crate would read them whole.
pub fn walk_tar<R: Read>(stream: R, visit: &mut Visit) -> Result<(), LpkError> {
    let mut ar = tar::Archive::new(den_guest_tree::tar_headers::HeaderGuard::new(stream, u64::MAX));
    let entries = ar.entries().map_err(tar_err)?;
    for entry in entries {
        let mut e = entry.map_err(tar_err)?;
        let name = e.path_bytes().into_owned();
        let h = e.header();
        let link = || e.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default();
        use tar::EntryType as T;
        let kind = match h.entry_type() {
            T::Regular | T::Continuous => RawKind::File,
            T::Directory => RawKind::Dir,
            T::Symlink => RawKind::Symlink(link()),
            T::Link => RawKind::Hardlink(link()),
            T::XGlobalHeader => RawKind::Skip,
            T::Char | T::Block => RawKind::Other("device file"),
            T::Fifo => RawKind::Other("FIFO"),
            T::GNUSparse => RawKind::Other("sparse file"),
            _ => RawKind::Other("special entry"),
        };
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let size = e.size();
        visit(RawEntry { name, kind, size, packed: None, mode }, &mut e)?;
    }
    Ok(())
}

fn tar_err(e: std::io::Error) -> LpkError {
    match crate::limits::exceeded(&e) {
        Some(limit) => LpkError::Archive(limit),
        None => LpkError::Archive(format!("malformed tar: {e}")),
    }
}

/// The name for messages.
pub fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}
