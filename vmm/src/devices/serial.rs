//! The 8250 serial console (vm-superio's `Serial`) on the legacy COM1 ports, with a ring buffer of
//! recent output that `dend` and the web console can read back, and an optional live sink.

use std::collections::VecDeque;
use std::io::Write;
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};

/// COM1's base port.
pub const COM1: u16 = 0x3f8;
/// Bytes of recent output kept by default.
pub const DEFAULT_RING: usize = 64 * 1024;

/// The last `cap` bytes written.
#[derive(Debug, Clone)]
pub struct Ring {
    buf: VecDeque<u8>,
    cap: usize,
}

impl Ring {
    /// An empty ring keeping at most `cap` bytes.
    pub fn new(cap: usize) -> Ring {
        Ring { buf: VecDeque::with_capacity(cap.min(4096)), cap }
    }

    /// The bytes kept, oldest first.
    pub fn contents(&self) -> Vec<u8> {
        self.buf.iter().copied().collect()
    }

    fn push(&mut self, data: &[u8]) {
        let data = &data[data.len().saturating_sub(self.cap)..];
        let overflow = (self.buf.len() + data.len()).saturating_sub(self.cap);
        self.buf.drain(..overflow);
        self.buf.extend(data);
    }
}

/// Where console output goes: the ring, and a live sink if one is attached.
pub struct ConsoleOut {
    ring: Ring,
    sink: Option<Box<dyn Write + Send>>,
}

impl Write for ConsoleOut {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.ring.push(data);
        if let Some(s) = self.sink.as_mut() {
            // A slow or closed sink must not stop the guest: its errors drop the sink.
            if s.write_all(data).is_err() {
                self.sink = None;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(s) = self.sink.as_mut() {
            let _ = s.flush();
        }
        Ok(())
    }
}

/// Interrupt line of the serial port. The tiny runner has no interrupt controller yet, so this
/// counts raised interrupts; an irqfd takes its place with the in-kernel irqchip.
#[derive(Debug, Default)]
pub struct CountingIrq(std::sync::atomic::AtomicU64);

impl CountingIrq {
    /// Interrupts raised so far.
    pub fn count(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Trigger for CountingIrq {
    type E = std::io::Error;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// COM1 on the port I/O bus.
pub struct SerialPort {
    inner: Serial<CountingIrq, NoEvents, ConsoleOut>,
    base: u16,
}

impl SerialPort {
    /// A port at `base` keeping `ring` bytes of output, copying it live to `sink` if given.
    pub fn new(base: u16, ring: usize, sink: Option<Box<dyn Write + Send>>) -> SerialPort {
        let out = ConsoleOut { ring: Ring::new(ring), sink };
        SerialPort { inner: Serial::new(CountingIrq::default(), out), base }
    }

    fn offset(&self, port: u16) -> Option<u8> {
        port.checked_sub(self.base).filter(|o| *o < 8).map(|o| o as u8)
    }

    /// Whether `port` belongs to this device.
    pub fn claims(&self, port: u16) -> bool {
        self.offset(port).is_some()
    }

    /// A guest `out` to one of our ports (only the first byte of a wider access counts).
    pub fn pio_write(&mut self, port: u16, data: &[u8]) {
        if let (Some(off), Some(&b)) = (self.offset(port), data.first()) {
            // Register writes cannot fail except through the interrupt line, which cannot fail.
            let _ = self.inner.write(off, b);
        }
    }

    /// A guest `in` from one of our ports.
    pub fn pio_read(&mut self, port: u16, data: &mut [u8]) {
        let v = self.offset(port).map(|off| self.inner.read(off)).unwrap_or(0xff);
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = v;
        }
    }

    /// Recent output, oldest first.
    pub fn recent(&self) -> Vec<u8> {
        self.inner.writer().ring.contents()
    }

    /// Interrupts the device raised.
    pub fn interrupts(&self) -> u64 {
        self.inner.interrupt_evt().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest_bytes() {
        let mut r = Ring::new(5);
        r.push(b"abc");
        r.push(b"defg");
        assert_eq!(r.contents(), b"cdefg");
        r.push(b"0123456789");
        assert_eq!(r.contents(), b"56789");
    }

    #[test]
    fn registers_are_bounds_checked() {
        let mut s = SerialPort::new(COM1, 16, None);
        assert!(s.claims(COM1) && s.claims(COM1 + 7) && !s.claims(COM1 + 8) && !s.claims(COM1 - 1));
        s.pio_write(COM1, b"x");
        s.pio_write(COM1, &[]);
        s.pio_write(0x80, b"y");
        let mut lsr = [0u8; 4];
        s.pio_read(COM1 + 5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "transmitter empty");
        assert_eq!(&lsr[1..], &[0, 0, 0]);
        assert_eq!(s.recent(), b"x");
    }
}
