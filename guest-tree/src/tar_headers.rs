//! Tar streams from the same parties (a package, an image layer). The `tar` crate reads a GNU
//! long name or link name and a pax record whole into memory, however large its header says
//! it is: an 8 GiB "long name" would exhaust dend. [`HeaderGuard`] reads the stream before the
//! `tar` crate does, block by block, and fails it (an `InvalidData` error) at an extension
//! header larger than [`MAX_EXTENSION`], at a GNU sparse file (whose extra header blocks it
//! does not parse), or past a number of entries, without reading the body. It follows the
//! `tar` crate's framing exactly: each header is a 512-byte block, its body the header's size
//! (or a pax `size` record's) rounded up to 512.

use std::io::{self, Read};

/// Largest extension header (GNU long name or link name, pax record) let through.
pub const MAX_EXTENSION: u64 = 64 << 10;
const BLOCK: u64 = 512;

/// A reader that refuses oversized tar extension headers before anything reads them.
pub struct HeaderGuard<R> {
    inner: R,
    head: [u8; 512],
    head_len: usize,
    head_out: usize,
    body_left: u64,
    /// A pax record being passed through: its bytes so far and its length.
    pax: Option<(Vec<u8>, u64)>,
    /// The pax `size` for the next entry.
    next_size: Option<u64>,
    entries: u64,
    max_entries: u64,
}

fn refuse(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// A tar number field: octal text, or base-256 when the top bit of its first byte is set.
fn number(field: &[u8]) -> io::Result<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] == 0xff {
            return Err(refuse("a negative size in a tar header".into()));
        }
        let mut n: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            n = n
                .checked_mul(256)
                .and_then(|n| n.checked_add(u64::from(*b)))
                .ok_or_else(|| refuse("a tar size overflows".into()))?;
        }
        return Ok(n);
    }
    let text: Vec<u8> =
        field.iter().copied().skip_while(|b| *b == b' ' || *b == 0).take_while(|b| *b != b' ' && *b != 0).collect();
    if text.is_empty() {
        return Ok(0);
    }
    let text = std::str::from_utf8(&text).map_err(|_| refuse("a tar size is not octal".into()))?;
    u64::from_str_radix(text, 8).map_err(|_| refuse(format!("the tar size `{text}` is not octal")))
}

/// The `size` of pax records (`<len> <key>=<value>\n` ...), if any.
fn pax_size(records: &[u8]) -> Option<u64> {
    let mut rest = records;
    let mut found = None;
    while !rest.is_empty() {
        let space = rest.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if len <= space || len > rest.len() {
            return found;
        }
        let record = &rest[space + 1..len];
        if let Some(v) = record.strip_prefix(b"size=") {
            found = std::str::from_utf8(v).ok().and_then(|v| v.trim_end_matches('\n').parse().ok());
        }
        rest = &rest[len..];
    }
    found
}

impl<R: Read> HeaderGuard<R> {
    /// Guards `inner`, refusing more than `max_entries` entries.
    pub fn new(inner: R, max_entries: u64) -> HeaderGuard<R> {
        HeaderGuard {
            inner,
            head: [0; 512],
            head_len: 0,
            head_out: 0,
            body_left: 0,
            pax: None,
            next_size: None,
            entries: 0,
            max_entries,
        }
    }

    /// Reads and checks the next header block; sets how much body follows it.
    fn next_header(&mut self) -> io::Result<()> {
        self.head_len = 0;
        self.head_out = 0;
        while self.head_len < self.head.len() {
            let n = self.inner.read(&mut self.head[self.head_len..])?;
            if n == 0 {
                return Ok(());
            }
            self.head_len += n;
        }
        if self.head.iter().all(|b| *b == 0) {
            return Ok(());
        }
        let size = number(&self.head[124..136])?;
        let kind = self.head[156];
        let size = match kind {
            b'L' | b'K' | b'x' | b'g' => {
                if size > MAX_EXTENSION {
                    let what = match kind {
                        b'L' => "a long name",
                        b'K' => "a long link name",
                        _ => "a pax record",
                    };
                    return Err(refuse(format!(
                        "the archive has {what} of {size} bytes; at most {MAX_EXTENSION} are read"
                    )));
                }
                if kind == b'x' {
                    self.pax = Some((Vec::new(), size));
                }
                size
            }
            b'S' => return Err(refuse("the archive holds a GNU sparse file, which Den does not read".into())),
            _ => {
                self.entries += 1;
                if self.entries > self.max_entries {
                    return Err(refuse(format!("the archive has more than {} entries", self.max_entries)));
                }
                self.next_size.take().unwrap_or(size)
            }
        };
        self.body_left =
            size.div_ceil(BLOCK).checked_mul(BLOCK).ok_or_else(|| refuse("a tar size overflows".into()))?;
        Ok(())
    }
}

impl<R: Read> Read for HeaderGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.head_out < self.head_len {
                let n = buf.len().min(self.head_len - self.head_out);
                buf[..n].copy_from_slice(&self.head[self.head_out..self.head_out + n]);
                self.head_out += n;
                return Ok(n);
            }
            if self.body_left > 0 {
                let want = buf.len().min(usize::try_from(self.body_left).unwrap_or(usize::MAX));
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 {
                    return Ok(0);
                }
                self.body_left -= n as u64;
                if let Some((got, len)) = &mut self.pax {
                    let take = n.min(usize::try_from(*len).unwrap_or(0).saturating_sub(got.len()));
                    got.extend_from_slice(&buf[..take]);
                }
                if self.body_left == 0 {
                    if let Some((got, _)) = self.pax.take() {
                        self.next_size = pax_size(&got);
                    }
                }
                return Ok(n);
            }
            self.next_header()?;
            if self.head_len == 0 {
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, kind: u8, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_mode(0o644);
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn through(bytes: &[u8]) -> io::Result<Vec<String>> {
        let guard = HeaderGuard::new(bytes, 100);
        let mut ar = tar::Archive::new(guard);
        let mut names = vec![];
        for e in ar.entries()? {
            let mut e = e?;
            names.push(e.path()?.display().to_string());
            io::copy(&mut e, &mut io::sink())?;
        }
        Ok(names)
    }

    #[test]
    fn ordinary_archives_pass_unchanged() {
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("{}/file", "d".repeat(300));
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, &long, &b"hello"[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        b.append_data(&mut h, "short", &b"abc"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let mut out = Vec::new();
        HeaderGuard::new(&bytes[..], 10).read_to_end(&mut out).unwrap();
        assert_eq!(out, bytes, "the guard passes every byte through");
        assert_eq!(through(&bytes).unwrap(), [long, "short".to_string()]);
    }

    #[test]
    fn huge_extension_headers_are_refused_unread() {
        for kind in [b'L', b'K', b'x'] {
            // An 8 GiB long name whose body is never there: refused at the header.
            let bytes = header("././@LongLink", kind, 8 << 30);
            let e = through(&bytes).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{}: {e}", kind as char);
            assert!(e.to_string().contains("at most 65536"), "{e}");
        }
        let e = through(&header("sparse", b'S', 10)).unwrap_err();
        assert!(e.to_string().contains("sparse"), "{e}");
        let mut many = Vec::new();
        for i in 0..101 {
            many.extend(header(&format!("f{i}"), b'0', 0));
        }
        assert!(through(&many).unwrap_err().to_string().contains("more than 100 entries"));
    }

    #[test]
    fn a_pax_size_moves_the_next_body_as_the_tar_crate_does() {
        let mut bytes = header("pax", b'x', 12);
        let mut rec = b"12 size=600\n".to_vec();
        rec.resize(512, 0);
        bytes.extend(rec);
        bytes.extend(header("big", b'0', 0));
        bytes.extend(vec![b'a'; 1024]);
        bytes.extend(header("next", b'0', 0));
        bytes.extend(vec![0; 1024]);
        assert_eq!(through(&bytes).unwrap(), ["big", "next"]);
    }
}
