//! Exec: runs a program as a user, with pipes or a pseudo-terminal, streaming its stdio.

use crate::channel::FdStream;
use crate::serve::Failed;
use crate::users;
use bytes::BytesMut;
use den_agent_proto::frame::{CHAN_STDERR, CHAN_STDIO};
use den_agent_proto::msg::{Control, ErrorReply, ExecRequest, TtySize};
use den_agent_proto::mux::{Event, Stream, StreamReceiver, StreamSender};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

fn winsize(s: TtySize) -> libc::winsize {
    libc::winsize { ws_row: s.rows, ws_col: s.cols, ws_xpixel: 0, ws_ypixel: 0 }
}

fn set_winsize(fd: &OwnedFd, s: TtySize) {
    let ws = winsize(s);
    // SAFETY: TIOCSWINSZ on a pty master with a valid winsize.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

fn bad(code: &str, msg: String) -> ErrorReply {
    ErrorReply::new(code, msg)
}

/// Runs an exec request to its end.
pub(crate) async fn run(req: ExecRequest, stream: Stream) -> Result<(), Failed> {
    let Some(prog) = req.argv.first() else {
        return Err((bad("bad_request", "exec needs a non-empty argv".into()), stream.tx));
    };
    let who = req.user.clone().unwrap_or_else(|| "root".into());
    let Some(acct) = users::lookup(Path::new("/"), &who) else {
        return Err((bad("not_found", format!("user `{who}` does not exist in the guest")), stream.tx));
    };
    let mut cmd = std::process::Command::new(prog);
    cmd.args(&req.argv[1..]).env_clear();
    cmd.env("PATH", crate::init::DEFAULT_PATH);
    cmd.env("HOME", &acct.home).env("USER", &acct.name).env("LOGNAME", &acct.name).env("SHELL", &acct.shell);
    if req.tty.is_some() {
        cmd.env("TERM", "xterm-256color");
    }
    cmd.envs(&req.env);
    let cwd = req.cwd.clone().unwrap_or_else(|| acct.home.clone());
    cmd.current_dir(if Path::new(&cwd).is_dir() { cwd.as_str() } else { "/" });
    let is_root = acct.uid == 0;
    let tty_master = match req.tty {
        Some(size) => {
            let pty = match nix::pty::openpty(Some(&winsize(size)), None) {
                Ok(p) => p,
                Err(e) => return Err((bad("io", format!("openpty: {e}")), stream.tx)),
            };
            let slave = pty.slave;
            let dup = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
            match (dup(&slave), dup(&slave), dup(&slave)) {
                (Ok(a), Ok(b), Ok(c)) => {
                    cmd.stdin(a).stdout(b).stderr(c);
                }
                _ => return Err((bad("io", "cannot duplicate the pty".into()), stream.tx)),
            }
            // SAFETY: setsid and TIOCSCTTY are async-signal-safe; fd 0 is the pty slave.
            unsafe {
                cmd.pre_exec(|| {
                    libc::setsid();
                    libc::ioctl(0, libc::TIOCSCTTY, 0);
                    Ok(())
                })
            };
            Some(pty.master)
        }
        None => {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
            None
        }
    };
    if !is_root {
        let creds = acct.credentials();
        // SAFETY: Credentials::apply only makes async-signal-safe system calls.
        unsafe { cmd.pre_exec(move || creds.apply()) };
    }
    let mut child = match tokio::process::Command::from(cmd).kill_on_drop(true).spawn() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound { "not_found" } else { "io" };
            return Err((bad(code, format!("cannot run `{prog}`: {e}")), stream.tx));
        }
    };
    let pid = child.id();
    let Stream { tx, rx } = stream;
    let _ = tx.control(&Control::Started { pid });
    match tty_master {
        Some(master) => {
            let ctl = match master.try_clone() {
                Ok(c) => c,
                Err(e) => return Err((bad("io", format!("dup pty: {e}")), tx)),
            };
            if let Err(e) =
                nix::fcntl::fcntl(master.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))
            {
                return Err((bad("io", format!("pty non-blocking: {e}")), tx));
            }
            let io = match FdStream::new(master) {
                Ok(io) => io,
                Err(e) => return Err((bad("io", format!("pty: {e}")), tx)),
            };
            let (rd, wr) = tokio::io::split(io);
            let input = tokio::spawn(pump_in(rx, wr, pid, Some(ctl), true));
            let output = pump_out(rd, tx.clone(), CHAN_STDIO);
            let (_, status) = tokio::join!(output, child.wait());
            input.abort();
            finish(&tx, status);
        }
        None => {
            let (Some(stdin), Some(stdout), Some(stderr)) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take())
            else {
                return Err((bad("io", "child pipes missing".into()), tx));
            };
            for fd in [stdin.as_raw_fd(), stdout.as_raw_fd()] {
                widen_pipe(fd);
            }
            let input = tokio::spawn(pump_in(rx, stdin, pid, None, false));
            let out = pump_out(stdout, tx.clone(), CHAN_STDIO);
            let err = pump_out(stderr, tx.clone(), CHAN_STDERR);
            let (_, _, status) = tokio::join!(out, err, child.wait());
            input.abort();
            finish(&tx, status);
        }
    }
    Ok(())
}

fn finish(tx: &StreamSender, status: std::io::Result<std::process::ExitStatus>) {
    let msg = match status {
        Ok(s) => Control::Exit { code: s.code(), signal: s.signal() },
        Err(e) => Control::Error(bad("io", format!("wait: {e}"))),
    };
    let _ = tx.control(&msg);
    tx.close(None);
}

/// Host to process: stdin bytes, EOF, resizes and signals.
async fn pump_in<W: AsyncWrite + Unpin>(
    mut rx: StreamReceiver,
    stdin: W,
    pid: Option<u32>,
    tty: Option<OwnedFd>,
    is_tty: bool,
) {
    // `None` once closed: dropping a pipe's write end is what delivers EOF to the process.
    let mut stdin = Some(stdin);
    loop {
        match rx.recv().await {
            Event::Data { bytes, .. } => {
                if let Some(w) = stdin.as_mut() {
                    if w.write_all(&bytes).await.is_err() {
                        stdin = None;
                    }
                }
            }
            Event::Eof { .. } => {
                if is_tty {
                    // A terminal has no half-close: end-of-file is the EOF character.
                    if let Some(w) = stdin.as_mut() {
                        let _ = w.write_all(&[4]).await;
                    }
                } else if let Some(mut w) = stdin.take() {
                    let _ = w.shutdown().await;
                }
            }
            Event::Control(Control::Resize(size)) => {
                if let Some(fd) = &tty {
                    set_winsize(fd, size);
                }
            }
            Event::Control(Control::Signal { signal }) => {
                if let Some(pid) = pid {
                    // With a TTY the process leads its own group: signal the whole job.
                    let target = if is_tty { -(pid as i32) } else { pid as i32 };
                    // SAFETY: kill with a pid we started.
                    unsafe { libc::kill(target, signal) };
                }
            }
            Event::Control(_) => {}
            Event::Closed(_) => {
                if let Some(pid) = pid {
                    // The host is gone: do not leave the process behind.
                    // SAFETY: kill with a pid we started.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
                return;
            }
        }
    }
}

/// Bytes a stdio pipe holds: a bulk stream (an `sshd -i` behind the SSH gateway, a `tar`)
/// then moves in large reads and writes instead of waking the agent every 64 KiB. Best effort:
/// the default size stays when the kernel refuses.
const PIPE_SIZE: libc::c_int = 1 << 20;

fn widen_pipe(fd: std::os::fd::RawFd) {
    // SAFETY: F_SETPIPE_SZ on a descriptor we own; it changes only the pipe's capacity.
    let _ = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_SIZE) };
}

/// Process to host: output until EOF (a pty reports EIO once the last slave closes).
async fn pump_out<R: AsyncRead + Unpin>(mut out: R, tx: StreamSender, chan: u8) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        buf.reserve(64 * 1024);
        match out.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if tx.data(chan, buf.split().freeze()).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.eof(chan);
}
