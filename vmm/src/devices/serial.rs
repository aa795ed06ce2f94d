//! The 8250 serial console (vm-superio's `Serial`) on the legacy COM1 ports, with a ring buffer of
//! recent output that `dend` and the web console can read back, and an optional live sink.

use super::bus::{reply_byte, BusDevice};
use super::irq::IrqLine;
use std::collections::VecDeque;
use std::io::Write;
use vm_superio::serial::NoEvents;
use vm_superio::Serial;

/// COM1's base port.
pub const COM1: u16 = 0x3f8;
/// COM1's interrupt line (GSI).
pub const COM1_GSI: u32 = 4;
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

/// COM1: an 8250 UART on the port I/O bus.
pub struct SerialPort {
    inner: Serial<IrqLine, NoEvents, ConsoleOut>,
}

impl SerialPort {
    /// A port raising `irq`, keeping `ring` bytes of output, copying it live to `sink` if given.
    pub fn new(irq: IrqLine, ring: usize, sink: Option<Box<dyn Write + Send>>) -> SerialPort {
        let out = ConsoleOut { ring: Ring::new(ring), sink };
        SerialPort { inner: Serial::new(irq, out) }
    }

    /// Queues console input for the guest; returns how many bytes fit in the receive FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        let room = self.inner.fifo_capacity().min(bytes.len());
        self.inner.enqueue_raw_bytes(&bytes[..room]).unwrap_or(0)
    }

    /// Free space in the receive FIFO.
    pub fn input_room(&self) -> usize {
        self.inner.fifo_capacity()
    }

    /// Recent output, oldest first.
    pub fn recent(&self) -> Vec<u8> {
        self.inner.writer().ring.contents()
    }

    /// Attaches (or replaces) the live output sink.
    pub fn set_sink(&mut self, sink: Option<Box<dyn Write + Send>>) {
        self.inner.writer_mut().sink = sink;
    }

    /// Interrupts the device raised.
    pub fn interrupts(&self) -> u64 {
        self.inner.interrupt_evt().count()
    }
}

impl BusDevice for SerialPort {
    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(off @ 0..=7), Some(&b)) = (u8::try_from(offset), data.first()) {
            // Only the interrupt line can make a register write fail; a lost interrupt is
            // recovered by the guest driver's polling.
            let _ = self.inner.write(off, b);
        }
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = match u8::try_from(offset) {
            Ok(off @ 0..=7) => self.inner.read(off),
            _ => 0xff,
        };
        reply_byte(data, v);
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
        let mut s = SerialPort::new(IrqLine::counting(), 16, None);
        s.write(0, b"x");
        s.write(0, &[]);
        s.write(8, b"y");
        s.write(u64::MAX, b"z");
        let mut lsr = [0u8; 4];
        s.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "transmitter empty");
        assert_eq!(&lsr[1..], &[0, 0, 0]);
        let mut far = [0u8; 1];
        s.read(1 << 40, &mut far);
        assert_eq!(far, [0xff]);
        assert_eq!(s.recent(), b"x");
    }

    #[test]
    fn input_reaches_the_receive_register_and_raises_the_irq() {
        let mut s = SerialPort::new(IrqLine::counting(), 16, None);
        s.write(1, &[0x01]); // IER: interrupt on received data
        assert_eq!(s.enqueue_input(b"hi"), 2);
        assert!(s.interrupts() >= 1);
        let mut b = [0u8; 1];
        s.read(0, &mut b);
        assert_eq!(&b, b"h");
        let huge = vec![b'a'; 10_000];
        assert!(s.enqueue_input(&huge) < huge.len(), "the FIFO is bounded");
    }
}
