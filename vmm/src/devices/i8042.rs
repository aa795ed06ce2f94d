//! A minimal i8042 keyboard controller with a keyboard behind it: enough for Linux's i8042 and
//! atkbd drivers to find a keyboard, for the guest to reset the machine (command 0xFE), and for
//! den-vmm to send Ctrl-Alt-Del (scan code set 2, untranslated). No mouse (AUX) port.

use super::bus::{reply_byte, BusDevice};
use super::irq::IrqLine;
use crate::exit::{ExitReason, ExitSignal};
use std::collections::VecDeque;
use std::sync::Arc;

/// Base port (data at +0, status/command at +4).
pub const I8042_PORT: u16 = 0x60;
/// Ports it owns.
pub const I8042_LEN: u64 = 5;
/// Keyboard interrupt line (GSI).
pub const KBD_GSI: u32 = 1;

const DATA: u64 = 0;
const STATUS_COMMAND: u64 = 4;

const SB_OUT_FULL: u8 = 0x01;
const SB_SYSTEM: u8 = 0x04;
const SB_COMMAND: u8 = 0x08;
const SB_KBD_ENABLED: u8 = 0x10;

const CB_KBD_INT: u8 = 0x01;
const CB_POST_OK: u8 = 0x04;

const OUT_CAP: usize = 16;

/// Set-2 scan codes of Ctrl, Alt and Delete pressed, then released.
const CTRL_ALT_DEL: &[u8] = &[0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14];

/// What the next byte on the data port is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    WriteControl,
    WriteOutputBuffer,
    Discard,
    KeyboardArgument,
}

/// The controller.
pub struct I8042 {
    control: u8,
    status: u8,
    out: VecDeque<u8>,
    pending: Pending,
    irq: IrqLine,
    exit: Arc<ExitSignal>,
}

impl I8042 {
    /// A controller raising `irq` for keyboard data and ending the VM on reset.
    pub fn new(irq: IrqLine, exit: Arc<ExitSignal>) -> I8042 {
        I8042 {
            control: CB_KBD_INT | CB_POST_OK,
            status: SB_SYSTEM | SB_KBD_ENABLED,
            out: VecDeque::new(),
            pending: Pending::None,
            irq,
            exit,
        }
    }

    /// Types Ctrl-Alt-Del. Returns false when the output buffer had no room (the guest is not
    /// reading its keyboard).
    pub fn ctrl_alt_del(&mut self) -> bool {
        if self.out.len() + CTRL_ALT_DEL.len() > OUT_CAP {
            return false;
        }
        for &b in CTRL_ALT_DEL {
            self.push(b);
        }
        true
    }

    fn push(&mut self, b: u8) {
        if self.out.len() < OUT_CAP {
            self.out.push_back(b);
            self.status |= SB_OUT_FULL;
            if self.control & CB_KBD_INT != 0 {
                // A lost edge only delays the byte until the guest polls the status port.
                let _ = self.irq.raise();
            }
        }
    }

    fn command(&mut self, cmd: u8) {
        self.status |= SB_COMMAND;
        match cmd {
            0x20 => self.push(self.control),
            0x60 => self.pending = Pending::WriteControl,
            0xaa => self.push(0x55), // controller self test passed
            0xab => self.push(0x00), // keyboard interface test passed
            0xad => self.status &= !SB_KBD_ENABLED,
            0xae => self.status |= SB_KBD_ENABLED,
            0xa9 => self.push(0xff), // no AUX port
            0xd0 => self.push(0x01), // output port: system not in reset
            0xd1 | 0xd3 | 0xd4 => self.pending = Pending::Discard,
            0xd2 => self.pending = Pending::WriteOutputBuffer,
            0xfe => self.exit.set(ExitReason::Reset),
            _ => {}
        }
    }

    fn data(&mut self, b: u8) {
        self.status &= !SB_COMMAND;
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::WriteControl => self.control = b,
            Pending::WriteOutputBuffer => self.push(b),
            Pending::Discard => {}
            Pending::KeyboardArgument => self.push(0xfa),
            Pending::None => self.keyboard(b),
        }
    }

    fn keyboard(&mut self, cmd: u8) {
        match cmd {
            0xff => {
                self.push(0xfa);
                self.push(0xaa);
            }
            0xf2 => {
                self.push(0xfa);
                self.push(0xab);
                self.push(0x83);
            }
            0xee => self.push(0xee),
            0xed | 0xf0 | 0xf3 => {
                self.push(0xfa);
                self.pending = Pending::KeyboardArgument;
            }
            _ => self.push(0xfa),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = match offset {
            DATA => {
                let v = self.out.pop_front().unwrap_or(0);
                if self.out.is_empty() {
                    self.status &= !SB_OUT_FULL;
                } else if self.control & CB_KBD_INT != 0 {
                    let _ = self.irq.raise();
                }
                v
            }
            STATUS_COMMAND => self.status,
            _ => 0xff,
        };
        reply_byte(data, v);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&b) = data.first() else { return };
        match offset {
            DATA => self.data(b),
            STATUS_COMMAND => self.command(b),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> (I8042, Arc<ExitSignal>) {
        let exit = Arc::new(ExitSignal::new());
        (I8042::new(IrqLine::counting(), exit.clone()), exit)
    }

    fn read(d: &mut I8042, off: u64) -> u8 {
        let mut b = [0u8];
        d.read(off, &mut b);
        b[0]
    }

    #[test]
    fn probe_sequence_like_linux() {
        let (mut d, exit) = dev();
        d.write(STATUS_COMMAND, &[0x20]);
        assert_eq!(read(&mut d, STATUS_COMMAND) & SB_OUT_FULL, SB_OUT_FULL);
        assert_eq!(read(&mut d, DATA), CB_KBD_INT | CB_POST_OK);
        d.write(STATUS_COMMAND, &[0x60]);
        d.write(DATA, &[0x45]);
        d.write(STATUS_COMMAND, &[0x20]);
        assert_eq!(read(&mut d, DATA), 0x45);
        d.write(STATUS_COMMAND, &[0xaa]);
        assert_eq!(read(&mut d, DATA), 0x55);
        d.write(DATA, &[0xf2]);
        assert_eq!([read(&mut d, DATA), read(&mut d, DATA), read(&mut d, DATA)], [0xfa, 0xab, 0x83]);
        assert_eq!(read(&mut d, STATUS_COMMAND) & SB_OUT_FULL, 0);
        d.write(DATA, &[0xed]);
        d.write(DATA, &[0x07]);
        assert_eq!([read(&mut d, DATA), read(&mut d, DATA)], [0xfa, 0xfa]);
        assert_eq!(exit.get(), None);
        d.write(STATUS_COMMAND, &[0xfe]);
        assert_eq!(exit.get(), Some(ExitReason::Reset));
    }

    #[test]
    fn ctrl_alt_del_is_bounded_and_interrupts() {
        let (mut d, _) = dev();
        assert!(d.ctrl_alt_del());
        assert_eq!(d.irq.count(), CTRL_ALT_DEL.len() as u64);
        assert!(!d.ctrl_alt_del(), "the output buffer is full until the guest reads");
        let got: Vec<u8> = (0..CTRL_ALT_DEL.len()).map(|_| read(&mut d, DATA)).collect();
        assert_eq!(got, CTRL_ALT_DEL);
        for _ in 0..100 {
            d.write(DATA, &[0xff]); // garbage floods the buffer but never grows it
        }
        assert!(d.out.len() <= OUT_CAP);
        d.write(9, &[1]);
        assert_eq!(read(&mut d, 9), 0xff);
    }
}
