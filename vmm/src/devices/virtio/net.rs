//! virtio-net on a frame backend (a TAP device): one receive and one transmit queue, a MAC in the
//! configuration space, no offloads (so the 12-byte virtio header carries nothing and is zeroed
//! on receive and dropped on transmit). Receiving is driven by the host event loop when the TAP
//! is readable and by the guest when it adds receive buffers; a frame that finds no buffer waits
//! (one frame) and the TAP is not watched until the guest adds buffers, so nothing spins.

use super::tap::Frames;
use super::{complete, read_config_window, types, VirtioDevice};
use crate::event_loop::{Interest, Registrar, Registration};
use std::io::{ErrorKind, Read, Write};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

const RX: usize = 0;
const TX: usize = 1;
const F_MAC: u64 = 1 << 5;
/// virtio_net_hdr_v1: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers.
const HDR: usize = 12;
/// Largest frame accepted either way (no GSO: an MTU-sized frame plus VLAN tag and slack).
const MAX_FRAME: usize = 65_562;
/// Frames moved per host event before yielding to other devices.
const BUDGET: usize = 256;
const TAP_TOKEN: u32 = 0;

/// The network device.
pub struct Net {
    backend: Box<dyn Frames>,
    mac: [u8; 6],
    registrar: Registrar,
    watch: Option<Registration>,
    pending: Option<Vec<u8>>,
    buf: Vec<u8>,
    rx_packets: u64,
    rx_bytes: u64,
    rx_dropped: u64,
    tx_packets: u64,
    tx_bytes: u64,
    tx_dropped: u64,
}

impl Net {
    /// A device with `mac` on `backend`; host readiness arrives through `registrar`.
    pub fn new(backend: Box<dyn Frames>, mac: [u8; 6], registrar: Registrar) -> Net {
        Net {
            backend,
            mac,
            registrar,
            watch: None,
            pending: None,
            buf: vec![0; MAX_FRAME],
            rx_packets: 0,
            rx_bytes: 0,
            rx_dropped: 0,
            tx_packets: 0,
            tx_bytes: 0,
            tx_dropped: 0,
        }
    }

    fn watch(&mut self, interest: Interest) {
        if let Some(w) = &self.watch {
            // Failing to re-arm only delays receiving until the guest's next rx notification.
            let _ = w.set_interest(interest);
        }
    }

    /// Moves waiting frames into the guest's receive buffers.
    fn receive(&mut self, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool {
        let Some(q) = queues.get_mut(RX) else { return false };
        let mut notify = false;
        for _ in 0..BUDGET {
            let frame = match self.pending.take() {
                Some(f) => f,
                None => match self.backend.recv(&mut self.buf) {
                    Ok(0) => continue,
                    Ok(n) => self.buf[..n].to_vec(),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        self.watch(Interest::READ);
                        return notify;
                    }
                    Err(_) => {
                        self.rx_dropped += 1;
                        continue;
                    }
                },
            };
            let Some(chain) = q.pop_descriptor_chain(mem) else {
                // No buffer: keep the frame and stop watching the TAP until the guest adds some.
                self.pending = Some(frame);
                return notify;
            };
            let head = chain.head_index();
            let written = match chain.writer(mem) {
                Ok(mut w) if w.available_bytes() >= HDR + frame.len() => {
                    let mut hdr = [0u8; HDR];
                    hdr[10] = 1; // num_buffers
                    if w.write_all(&hdr).and_then(|()| w.write_all(&frame)).is_ok() {
                        self.rx_packets += 1;
                        self.rx_bytes += frame.len() as u64;
                        (HDR + frame.len()) as u32
                    } else {
                        self.rx_dropped += 1;
                        0
                    }
                }
                _ => {
                    self.rx_dropped += 1;
                    0
                }
            };
            notify |= complete(q, mem, head, written);
        }
        self.watch(Interest::READ);
        notify
    }

    fn transmit(&mut self, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool {
        let Some(q) = queues.get_mut(TX) else { return false };
        let mut notify = false;
        while let Some(chain) = q.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let sent = match chain.reader(mem) {
                Ok(mut r) if r.available_bytes() > HDR && r.available_bytes() <= HDR + MAX_FRAME => {
                    let len = r.available_bytes();
                    let mut frame = vec![0u8; len];
                    r.read_exact(&mut frame).is_ok() && self.backend.send(&frame[HDR..]).is_ok() && {
                        self.tx_bytes += (len - HDR) as u64;
                        true
                    }
                }
                _ => false,
            };
            if sent {
                self.tx_packets += 1;
            } else {
                self.tx_dropped += 1;
            }
            notify |= complete(q, mem, head, 0);
        }
        notify
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        types::NET
    }

    fn queue_sizes(&self) -> &[u16] {
        &[256, 256]
    }

    fn features(&self) -> u64 {
        F_MAC
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // mac[6], status (unused without F_STATUS), max_virtqueue_pairs.
        let mut cfg = [0u8; 10];
        cfg[..6].copy_from_slice(&self.mac);
        cfg[8] = 1;
        read_config_window(&cfg, offset, data);
    }

    fn activate(&mut self, _features: u64) -> Result<(), String> {
        let fd = self.backend.as_raw_fd();
        let reg = self.registrar.register(fd, TAP_TOKEN, Interest::READ).map_err(|e| format!("watch TAP: {e}"))?;
        self.watch = Some(reg);
        Ok(())
    }

    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool {
        match index {
            RX => self.receive(queues, mem),
            TX => self.transmit(queues, mem),
            _ => false,
        }
    }

    fn host_event(&mut self, _token: u32, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool {
        self.receive(queues, mem)
    }

    fn reset(&mut self) {
        self.watch = None;
        self.pending = None;
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("rx_packets", self.rx_packets),
            ("rx_bytes", self.rx_bytes),
            ("rx_dropped", self.rx_dropped),
            ("tx_packets", self.tx_packets),
            ("tx_bytes", self.tx_bytes),
            ("tx_dropped", self.tx_dropped),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{TestQueue, BUFFERS};
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn net() -> (Net, UnixDatagram) {
        let (ours, theirs) = UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        (Net::new(Box::new(ours), [0x52, 0x54, 0, 1, 2, 3], Registrar::inert().unwrap()), theirs)
    }

    #[test]
    fn frames_both_ways_and_config() {
        let (mut dev, host) = net();
        let mut mac = [0u8; 6];
        dev.read_config(0, &mut mac);
        assert_eq!(mac, [0x52, 0x54, 0, 1, 2, 3]);
        dev.activate(0).unwrap();
        let mut rxq = TestQueue::new(16);
        let mut txq = TestQueue::at(rxq.mem.clone(), 0x5000, 16);
        let mut qs = vec![rxq.queue(), txq.queue()];

        // transmit: header + frame, header dropped
        let frame: Vec<u8> = (0..100u8).collect();
        let mut pkt = vec![0u8; HDR];
        pkt.extend_from_slice(&frame);
        txq.write(BUFFERS, &pkt);
        txq.add_chain(&[(BUFFERS, 4, false), (BUFFERS + 4, pkt.len() as u32 - 4, false)]);
        assert!(dev.process_queue(TX, &mut qs, &rxq.mem));
        let mut got = [0u8; 200];
        assert_eq!(host.recv(&mut got).unwrap(), 100);
        assert_eq!(&got[..100], &frame[..]);

        // receive: a frame waits for a buffer, then lands with a zeroed header
        host.send(b"hello-guest").unwrap();
        assert!(!dev.host_event(0, &mut qs, &rxq.mem));
        assert!(dev.pending.is_some(), "kept until the guest adds a buffer");
        rxq.add_chain(&[(BUFFERS + 0x1000, 2048, true)]);
        assert!(dev.process_queue(RX, &mut qs, &rxq.mem));
        assert_eq!(rxq.used(0).1 as usize, HDR + 11);
        assert_eq!(&rxq.read(BUFFERS + 0x1000 + HDR as u64, 11), b"hello-guest");
        assert_eq!(rxq.read(BUFFERS + 0x1000, HDR)[10], 1);
    }

    #[test]
    fn bad_chains_are_dropped_alone() {
        let (mut dev, host) = net();
        let rxq = TestQueue::new(16);
        let mut txq = TestQueue::at(rxq.mem.clone(), 0x5000, 16);
        let mut qs = vec![rxq.queue(), txq.queue()];
        txq.add_chain(&[(BUFFERS, 4, false)]); // shorter than the header
        txq.add_chain(&[(1 << 40, 64, false)]); // outside memory
        txq.add_chain(&[(BUFFERS, 64, true)]); // device-writable: nothing to send
        dev.process_queue(TX, &mut qs, &rxq.mem);
        assert_eq!(dev.counters()[5], ("tx_dropped", 3));
        host.set_nonblocking(true).unwrap();
        let mut b = [0u8; 64];
        assert!(host.recv(&mut b).is_err(), "nothing reached the host");
        // a receive buffer too small for the frame
        let mut rxq = rxq;
        host.send(&[7u8; 500]).unwrap();
        rxq.add_chain(&[(BUFFERS, 100, true)]);
        dev.process_queue(RX, &mut qs, &rxq.mem);
        assert_eq!(dev.counters()[2], ("rx_dropped", 1));
        assert_eq!(rxq.used(0).1, 0);
    }
}
