//! dend as a service: telling systemd (`Type=notify`) that it is ready or stopping, and
//! committing a `den daemon update` once the new binary is up (removing the `dend.trial` marker
//! the update left next to it, which `dend-fallback` would otherwise act on).

use std::path::{Path, PathBuf};

/// The marker an update leaves next to the new binary until it has started.
pub const TRIAL_MARKER: &str = "dend.trial";
/// The binary an update replaced, kept for the fallback.
pub const PREVIOUS: &str = "dend.previous";

/// Sends `state` (`READY=1`, `STOPPING=1`) to the service manager, when there is one.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    if let Err(e) = send(&PathBuf::from(path), state) {
        tracing::warn!(%e, state, "cannot notify the service manager");
    }
}

fn send(path: &Path, state: &str) -> std::io::Result<()> {
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let sock = UnixDatagram::unbound()?;
    let text = path.to_string_lossy();
    let addr = match text.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None => SocketAddr::from_pathname(path)?,
    };
    sock.send_to_addr(state.as_bytes(), &addr).map(|_| ())
}

/// Commits an update of the binary at `exe`: removes its trial marker and returns what it
/// said (the versions), or `None` when this start was not the first of an update.
pub fn commit_update(exe: &Path) -> Option<String> {
    let marker = exe.with_file_name(TRIAL_MARKER);
    let text = std::fs::read_to_string(&marker).ok()?;
    if let Err(e) = std::fs::remove_file(&marker) {
        tracing::warn!(marker = %marker.display(), %e, "cannot commit the dend update");
        return None;
    }
    Some(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifies_a_datagram_socket_and_commits_once() {
        let d = tempfile::tempdir().unwrap();
        let sock_path = d.path().join("notify");
        let rx = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
        send(&sock_path, "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        let exe = d.path().join("dend");
        assert_eq!(commit_update(&exe), None, "no marker: an ordinary start");
        std::fs::write(d.path().join(TRIAL_MARKER), "0.1.0 -> 0.2.0\n").unwrap();
        assert_eq!(commit_update(&exe).as_deref(), Some("0.1.0 -> 0.2.0"));
        assert_eq!(commit_update(&exe), None, "committed once");
    }
}
