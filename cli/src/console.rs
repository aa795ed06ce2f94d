//! `den vm console NAME --attach`: the serial console in this terminal, over dend's WebSocket.
//! On a terminal, input is raw (every key goes to the guest) and Ctrl-] detaches. With input from
//! a pipe, it is sent as it comes; after its end the output keeps coming until 2 s of quiet.

use crate::client::websocket;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// The detach key (Ctrl-]).
const DETACH: u8 = 0x1d;

/// Restores the terminal's settings when dropped.
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return RawMode(None);
        }
        let Ok(old) = nix::sys::termios::tcgetattr(&stdin) else { return RawMode(None) };
        let mut raw = old.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &raw);
        RawMode(Some(old))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, old);
        }
    }
}

/// Attaches to `vm`'s console until Ctrl-], the end of piped input (plus quiet), or the VM's end.
pub(crate) fn attach(socket: &Path, vm: &str) -> anyhow::Result<ExitCode> {
    let path = format!("/api/v1/vms/{}/console/ws", crate::vm::enc(vm));
    let mut ws = websocket(socket, &path)?;
    ws.get_mut().set_read_timeout(Some(Duration::from_millis(10)))?;
    let tty = std::io::stdin().is_terminal();
    if tty {
        eprint!("attached to the console of {vm}; Ctrl-] detaches\r\n");
    }
    let _raw = RawMode::enter();
    let mut stdin_open = true;
    let mut last_output = Instant::now();
    let mut out = std::io::stdout();
    let mut buf = [0u8; 4096];
    loop {
        if stdin_open {
            let stdin = std::io::stdin();
            let mut fds = [nix::poll::PollFd::new(stdin.as_fd(), nix::poll::PollFlags::POLLIN)];
            let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10u8)).unwrap_or(0);
            if ready > 0 {
                let n = stdin.lock().read(&mut buf).unwrap_or(0);
                let data = &buf[..n];
                let detach = data.iter().position(|b| *b == DETACH);
                let send = &data[..detach.unwrap_or(n)];
                if !send.is_empty() {
                    ws.send(Message::Binary(send.to_vec()))?;
                }
                if detach.is_some() {
                    break;
                }
                if n == 0 {
                    stdin_open = false;
                    last_output = Instant::now();
                }
            }
        } else if last_output.elapsed() > Duration::from_secs(2) {
            break;
        }
        loop {
            match ws.read() {
                Ok(Message::Binary(b)) => {
                    out.write_all(&b)?;
                    out.flush()?;
                    last_output = Instant::now();
                }
                Ok(Message::Text(t)) => {
                    out.write_all(t.as_bytes())?;
                    out.flush()?;
                }
                Ok(Message::Close(_)) => {
                    if tty {
                        eprint!("\r\nthe console closed (the VM stopped?)\r\n");
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    break
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Ok(ExitCode::SUCCESS)
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    let _ = ws.close(None);
    if tty {
        eprint!("\r\ndetached\r\n");
    }
    Ok(ExitCode::SUCCESS)
}
