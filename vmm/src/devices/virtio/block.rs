//! virtio-blk on a raw file: read, write, flush (= fsync), get-id, with an optional read-only
//! flag. Every request is checked against the disk's size before the file is touched; bad
//! requests complete with an error status instead of reaching the file.

use super::{complete, read_config_window, types, VirtioDevice};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

const SECTOR: u64 = 512;
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;
const F_SEG_MAX: u64 = 1 << 2;
const F_RO: u64 = 1 << 5;
const F_FLUSH: u64 = 1 << 9;
const ID_BYTES: usize = 20;
const SEG_MAX: u32 = 126;
const CHUNK: usize = 128 * 1024;

/// Errors opening a disk.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The file could not be opened.
    #[error("disk {path}: {source}")]
    Open {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// A virtio-blk device.
pub struct Block {
    file: File,
    sectors: u64,
    read_only: bool,
    id: [u8; ID_BYTES],
    reads: u64,
    writes: u64,
    read_bytes: u64,
    write_bytes: u64,
    flushes: u64,
    errors: u64,
}

/// One parsed request.
enum Outcome {
    Done(u8, u32),
}

impl Block {
    /// Opens `path` (read-only when `read_only`); `id` is what the guest reads as the serial.
    pub fn open(path: &Path, read_only: bool, id: &str) -> Result<Block, BlockError> {
        let open_err = |source| BlockError::Open { path: path.display().to_string(), source };
        let file = crate::files::open(path, !read_only).map_err(open_err)?;
        let len = file.metadata().map_err(open_err)?.len();
        let mut ident = [0u8; ID_BYTES];
        for (d, s) in ident.iter_mut().zip(id.bytes()) {
            *d = s;
        }
        Ok(Block {
            file,
            sectors: len / SECTOR,
            read_only,
            id: ident,
            reads: 0,
            writes: 0,
            read_bytes: 0,
            write_bytes: 0,
            flushes: 0,
            errors: 0,
        })
    }

    fn in_range(&self, sector: u64, len: usize) -> Option<u64> {
        let off = sector.checked_mul(SECTOR)?;
        let end = off.checked_add(len as u64)?;
        (end <= self.sectors * SECTOR).then_some(off)
    }

    fn handle(&mut self, chain: virtio_queue::DescriptorChain<&GuestMemoryMmap>, mem: &GuestMemoryMmap) -> u32 {
        let (Ok(mut reader), Ok(mut writer)) = (chain.clone().reader(mem), chain.writer(mem)) else {
            self.errors += 1;
            return 0;
        };
        let Some(status_at) = writer.available_bytes().checked_sub(1) else {
            self.errors += 1;
            return 0; // no room for a status byte: nothing can be reported
        };
        let Ok(mut status) = writer.split_at(status_at) else {
            self.errors += 1;
            return 0;
        };
        let (code, data_len) = match (reader.read_obj::<u32>(), reader.read_obj::<u32>(), reader.read_obj::<u64>()) {
            (Ok(kind), Ok(_), Ok(sector)) => match self.request(kind, sector, &mut reader, &mut writer) {
                Outcome::Done(c, n) => (c, n),
            },
            _ => (S_IOERR, 0),
        };
        if code != S_OK {
            self.errors += 1;
        }
        if status.write_all(&[code]).is_err() {
            return data_len;
        }
        data_len + 1
    }

    fn request(
        &mut self,
        kind: u32,
        sector: u64,
        reader: &mut virtio_queue::Reader<'_>,
        writer: &mut virtio_queue::Writer<'_>,
    ) -> Outcome {
        match kind {
            T_IN => {
                let len = writer.available_bytes();
                let Some(mut off) = self.in_range(sector, len) else { return Outcome::Done(S_IOERR, 0) };
                let mut buf = vec![0u8; len.min(CHUNK)];
                let mut done = 0usize;
                while done < len {
                    let n = (len - done).min(CHUNK);
                    if self.file.read_exact_at(&mut buf[..n], off).is_err() || writer.write_all(&buf[..n]).is_err() {
                        return Outcome::Done(S_IOERR, done as u32);
                    }
                    done += n;
                    off += n as u64;
                }
                self.reads += 1;
                self.read_bytes += len as u64;
                Outcome::Done(S_OK, len as u32)
            }
            T_OUT => {
                if self.read_only {
                    return Outcome::Done(S_IOERR, 0);
                }
                let len = reader.available_bytes();
                let Some(mut off) = self.in_range(sector, len) else { return Outcome::Done(S_IOERR, 0) };
                let mut buf = vec![0u8; len.min(CHUNK)];
                let mut done = 0usize;
                while done < len {
                    let n = (len - done).min(CHUNK);
                    if reader.read_exact(&mut buf[..n]).is_err() || self.file.write_all_at(&buf[..n], off).is_err() {
                        return Outcome::Done(S_IOERR, 0);
                    }
                    done += n;
                    off += n as u64;
                }
                self.writes += 1;
                self.write_bytes += len as u64;
                Outcome::Done(S_OK, 0)
            }
            T_FLUSH => {
                self.flushes += 1;
                if self.read_only || self.file.sync_all().is_ok() {
                    Outcome::Done(S_OK, 0)
                } else {
                    Outcome::Done(S_IOERR, 0)
                }
            }
            T_GET_ID => {
                let n = writer.available_bytes().min(ID_BYTES);
                match writer.write_all(&self.id[..n]) {
                    Ok(()) => Outcome::Done(S_OK, n as u32),
                    Err(_) => Outcome::Done(S_IOERR, 0),
                }
            }
            _ => Outcome::Done(S_UNSUPP, 0),
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        types::BLOCK
    }

    fn queue_sizes(&self) -> &[u16] {
        &[256]
    }

    fn features(&self) -> u64 {
        F_FLUSH | F_SEG_MAX | if self.read_only { F_RO } else { 0 }
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // capacity (le64) at 0, size_max at 8, seg_max at 12.
        let mut cfg = [0u8; 16];
        cfg[..8].copy_from_slice(&self.sectors.to_le_bytes());
        cfg[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        read_config_window(&cfg, offset, data);
    }

    fn process_queue(&mut self, _index: usize, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool {
        let Some(q) = queues.first_mut() else { return false };
        let mut notify = false;
        while let Some(chain) = q.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let written = self.handle(chain, mem);
            notify |= complete(q, mem, head, written);
        }
        notify
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.read_only {
            Ok(())
        } else {
            self.file.sync_all()
        }
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("reads", self.reads),
            ("writes", self.writes),
            ("read_bytes", self.read_bytes),
            ("write_bytes", self.write_bytes),
            ("flushes", self.flushes),
            ("errors", self.errors),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{TestQueue, BUFFERS};
    use super::*;

    fn disk(bytes: &[u8], ro: bool) -> (tempfile::NamedTempFile, Block) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let b = Block::open(f.path(), ro, "den-disk-0").unwrap();
        (f, b)
    }

    fn header(tq: &TestQueue, at: u64, kind: u32, sector: u64) {
        let mut h = kind.to_le_bytes().to_vec();
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&sector.to_le_bytes());
        tq.write(at, &h);
    }

    const HDR: u64 = BUFFERS;
    const DATA: u64 = BUFFERS + 0x1000;
    const STATUS: u64 = BUFFERS + 0x100;

    #[test]
    fn read_write_flush_and_id() {
        let mut content = vec![0u8; 4096];
        content[512..516].copy_from_slice(b"abcd");
        let (f, mut blk) = disk(&content, false);
        let mut tq = TestQueue::new(16);
        let mut qs = vec![tq.queue()];

        header(&tq, HDR, T_IN, 1);
        tq.add_chain(&[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)]);
        assert!(blk.process_queue(0, &mut qs, &tq.mem));
        assert_eq!((tq.used_idx(), tq.used(0).1), (1, 513));
        assert_eq!(&tq.read(DATA, 4), b"abcd");
        assert_eq!(tq.read(STATUS, 1), [S_OK]);

        header(&tq, HDR + 0x20, T_OUT, 7);
        tq.write(DATA + 0x800, &[0x5a; 512]);
        tq.add_chain(&[(HDR + 0x20, 16, false), (DATA + 0x800, 512, false), (STATUS + 1, 1, true)]);
        header(&tq, HDR + 0x40, T_FLUSH, 0);
        tq.add_chain(&[(HDR + 0x40, 16, false), (STATUS + 2, 1, true)]);
        header(&tq, HDR + 0x60, T_GET_ID, 0);
        tq.add_chain(&[(HDR + 0x60, 16, false), (DATA + 0x400, 20, true), (STATUS + 3, 1, true)]);
        blk.process_queue(0, &mut qs, &tq.mem);
        assert_eq!(tq.read(STATUS + 1, 3), [S_OK, S_OK, S_OK]);
        assert_eq!(std::fs::read(f.path()).unwrap()[7 * 512..8 * 512], [0x5a; 512]);
        assert_eq!(&tq.read(DATA + 0x400, 10), b"den-disk-0");
        let mut cap = [0u8; 8];
        blk.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 8);
    }

    #[test]
    fn malformed_requests_fail_alone() {
        let (f, mut blk) = disk(&[1u8; 4096], true);
        let mut tq = TestQueue::new(64);
        let mut qs = vec![tq.queue()];
        // past the end of the disk
        header(&tq, HDR, T_IN, 8);
        tq.add_chain(&[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)]);
        // sector overflow
        header(&tq, HDR + 0x20, T_IN, u64::MAX / 2);
        tq.add_chain(&[(HDR + 0x20, 16, false), (DATA, 512, true), (STATUS + 1, 1, true)]);
        // write to a read-only disk
        header(&tq, HDR + 0x40, T_OUT, 0);
        tq.add_chain(&[(HDR + 0x40, 16, false), (DATA, 512, false), (STATUS + 2, 1, true)]);
        // short header
        tq.add_chain(&[(HDR + 0x60, 4, false), (STATUS + 3, 1, true)]);
        // unknown type
        header(&tq, HDR + 0x80, 99, 0);
        tq.add_chain(&[(HDR + 0x80, 16, false), (STATUS + 4, 1, true)]);
        // no status byte at all, and a buffer outside guest memory
        header(&tq, HDR + 0xa0, T_IN, 0);
        tq.add_chain(&[(HDR + 0xa0, 16, false)]);
        tq.add_chain(&[(HDR, 16, false), (1 << 40, 512, true), (STATUS + 5, 1, true)]);
        // a descriptor loop: 40 -> 41 -> 40
        tq.put_desc(40, HDR, 16, 1, 41);
        tq.put_desc(41, STATUS + 6, 1, 1 | 2, 40);
        tq.publish(40);
        blk.process_queue(0, &mut qs, &tq.mem);
        assert_eq!(tq.used_idx(), 8, "every chain completes");
        assert_eq!(tq.read(STATUS, 5), [S_IOERR, S_IOERR, S_IOERR, S_IOERR, S_UNSUPP]);
        assert_eq!(std::fs::read(f.path()).unwrap(), vec![1u8; 4096], "the read-only disk is untouched");
        assert!(blk.counters().iter().any(|&(n, v)| n == "errors" && v >= 6));
    }
}
