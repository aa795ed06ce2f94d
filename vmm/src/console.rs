//! The serial console on a Unix socket, for `dend` and the web console: every client that
//! connects first gets the ring buffer of recent output, then live output; what clients write is
//! the guest's console input. A client that cannot keep up is dropped (it can reconnect and gets
//! the recent output again); it never slows the guest down.

use crate::devices::serial::SerialPort;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one write to a console client may block before the client is dropped.
const SLOW_CLIENT: Duration = Duration::from_millis(50);

/// The connected console clients.
#[derive(Debug, Default)]
pub struct ConsoleHub {
    clients: Mutex<Vec<UnixStream>>,
}

/// The serial port's live sink: copies output to every client.
pub struct HubWriter(pub Arc<ConsoleHub>);

impl Write for HubWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut clients = self.0.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.retain_mut(|c| c.write_all(data).is_ok());
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Listens on `path` (replacing a stale socket file) and serves console clients.
pub fn listen(path: &Path, hub: Arc<ConsoleHub>, serial: Arc<Mutex<SerialPort>>) -> std::io::Result<()> {
    let listener = crate::files::listen(path)?;
    std::thread::Builder::new().name("console".into()).spawn(move || {
        crate::seccomp::enter(crate::seccomp::ThreadKind::Console);
        for conn in listener.incoming().flatten() {
            attach(conn, &hub, &serial);
        }
    })?;
    Ok(())
}

fn attach(conn: UnixStream, hub: &Arc<ConsoleHub>, serial: &Arc<Mutex<SerialPort>>) {
    let Ok(reader) = conn.try_clone() else { return };
    {
        // Holding the serial lock while replaying the ring and registering the client means no
        // output is lost or repeated in between.
        let port = serial.lock().unwrap_or_else(|p| p.into_inner());
        let mut conn = conn;
        let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
        // The reader shares the socket, so it stays blocking; a send timeout bounds how long a
        // stuck client can hold up output before it is dropped.
        if conn.write_all(&port.recent()).is_err() || conn.set_write_timeout(Some(SLOW_CLIENT)).is_err() {
            return;
        }
        hub.clients.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
    }
    let serial = serial.clone();
    let _ = std::thread::Builder::new().name("console-in".into()).spawn(move || forward_input(reader, &serial));
}

/// Copies a client's bytes into the guest's receive FIFO, waiting while it is full.
pub fn forward_input(mut from: impl Read, serial: &Mutex<SerialPort>) {
    let mut buf = [0u8; 256];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let done = serial.lock().unwrap_or_else(|p| p.into_inner()).enqueue_input(rest);
            rest = &rest[done..];
            if done == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::bus::BusDevice;
    use crate::devices::irq::IrqLine;

    #[test]
    fn clients_get_recent_then_live_output_and_send_input() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("console.sock");
        let hub = Arc::new(ConsoleHub::default());
        let serial =
            Arc::new(Mutex::new(SerialPort::new(IrqLine::counting(), 1024, Some(Box::new(HubWriter(hub.clone()))))));
        serial.lock().unwrap().write(0, b"a");
        serial.lock().unwrap().write(0, b"b");
        listen(&sock, hub.clone(), serial.clone()).unwrap();
        let mut c = UnixStream::connect(&sock).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = [0u8; 2];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ab");
        while hub.clients.lock().unwrap().is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
        serial.lock().unwrap().write(0, b"c");
        let mut live = [0u8; 1];
        c.read_exact(&mut live).unwrap();
        assert_eq!(&live, b"c");
        c.write_all(b"x").unwrap();
        let mut rbr = [0u8; 1];
        for _ in 0..500 {
            serial.lock().unwrap().read(5, &mut rbr);
            if rbr[0] & 1 == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        serial.lock().unwrap().read(0, &mut rbr);
        assert_eq!(&rbr, b"x");
    }
}
