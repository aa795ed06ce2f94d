//! virtio-rng: fills the guest's buffers from the host's getrandom(2).

use super::{complete, types, VirtioDevice};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

/// Most bytes handed out per request.
const MAX_PER_REQUEST: usize = 64 * 1024;

/// The entropy device.
#[derive(Debug, Default)]
pub struct Rng {
    bytes: u64,
    requests: u64,
}

impl Rng {
    /// A new device.
    pub fn new() -> Rng {
        Rng::default()
    }
}

fn fill_random(buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: getrandom writes at most `len` bytes into the valid buffer we pass.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n <= 0 {
            return false;
        }
        done += n as usize;
    }
    true
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        types::RNG
    }

    fn queue_sizes(&self) -> &[u16] {
        &[256]
    }

    fn features(&self) -> u64 {
        0
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn process_queue(&mut self, _index: usize, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool {
        let Some(q) = queues.first_mut() else { return false };
        let mut notify = false;
        while let Some(chain) = q.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let written = match chain.writer(mem) {
                Ok(mut w) => {
                    let mut buf = vec![0u8; w.available_bytes().min(MAX_PER_REQUEST)];
                    if fill_random(&mut buf) && std::io::Write::write_all(&mut w, &buf).is_ok() {
                        buf.len() as u32
                    } else {
                        0
                    }
                }
                Err(_) => 0,
            };
            self.requests += 1;
            self.bytes += u64::from(written);
            notify |= complete(q, mem, head, written);
        }
        notify
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![("requests", self.requests), ("bytes", self.bytes)]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{TestQueue, BUFFERS};
    use super::*;

    #[test]
    fn fills_writable_buffers_and_skips_bad_ones() {
        let mut tq = TestQueue::new(16);
        let mut qs = vec![tq.queue()];
        tq.add_chain(&[(BUFFERS, 64, true)]);
        tq.add_chain(&[(BUFFERS + 0x100, 16, false)]); // read-only: nothing to fill
        tq.add_chain(&[(u64::MAX - 8, 64, true)]); // outside guest memory
        let mut rng = Rng::new();
        assert!(rng.process_queue(0, &mut qs, &tq.mem));
        assert_eq!(tq.used_idx(), 3);
        assert_eq!(tq.used(0).1, 64);
        assert_ne!(tq.read(BUFFERS, 64), vec![0u8; 64]);
        assert_eq!(tq.used(1).1, 0);
        assert_eq!(tq.used(2).1, 0);
        assert_eq!(rng.counters()[1], ("bytes", 64));
    }
}
