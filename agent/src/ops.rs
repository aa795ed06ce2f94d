//! Requests other than exec: forwards, files, info, clock, SSH keys, shutdown.

use crate::serve::Failed;
use bytes::BytesMut;
use den_agent_proto::frame::CHAN_STDIO;
use den_agent_proto::msg::{Control, ErrorReply, ForwardTarget, Info, Request};
use den_agent_proto::mux::{splice, Event, Stream};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn io_err(what: &str, e: std::io::Error) -> ErrorReply {
    let code = match e.kind() {
        std::io::ErrorKind::NotFound => "not_found",
        std::io::ErrorKind::PermissionDenied => "permission_denied",
        std::io::ErrorKind::ConnectionRefused => "connection_refused",
        _ => "io",
    };
    ErrorReply::new(code, format!("{what}: {e}"))
}

fn started(stream: &Stream, pid: Option<u32>) {
    let _ = stream.tx.control(&Control::Started { pid });
}

/// Connects to a guest endpoint and splices it to the stream.
pub(crate) async fn forward(target: ForwardTarget, stream: Stream) -> Result<(), Failed> {
    match &target {
        ForwardTarget::Tcp { host, port } => {
            let conn = tokio::net::TcpStream::connect((host.as_str(), *port)).await;
            match conn {
                Ok(c) => {
                    let _ = c.set_nodelay(true);
                    started(&stream, None);
                    splice(stream, c).await;
                }
                Err(e) => return Err((io_err(&format!("connect {host}:{port}"), e), stream.tx)),
            }
        }
        ForwardTarget::Unix { path } => match tokio::net::UnixStream::connect(path).await {
            Ok(c) => {
                started(&stream, None);
                splice(stream, c).await;
            }
            Err(e) => return Err((io_err(&format!("connect {path}"), e), stream.tx)),
        },
    }
    Ok(())
}

/// Receives a file: written to `<path>.den-tmp`, synced and renamed once the host sends EOF.
pub(crate) async fn put_file(path: &str, mode: u32, stream: Stream) -> Result<(), Failed> {
    if !path.starts_with('/') {
        return Err((ErrorReply::new("bad_request", format!("path `{path}` must be absolute")), stream.tx));
    }
    let tmp = format!("{path}.den-tmp");
    let mut file = match tokio::fs::File::create(&tmp).await {
        Ok(f) => f,
        Err(e) => return Err((io_err(&format!("create {tmp}"), e), stream.tx)),
    };
    started(&stream, None);
    let Stream { tx, mut rx } = stream;
    let mut written = 0u64;
    loop {
        match rx.recv().await {
            Event::Data { bytes, .. } => {
                if let Err(e) = file.write_all(&bytes).await {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err((io_err(&format!("write {tmp}"), e), tx));
                }
                written += bytes.len() as u64;
            }
            Event::Eof { .. } => break,
            Event::Closed(_) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Ok(());
            }
            Event::Control(_) => {}
        }
    }
    let finish = async {
        file.sync_all().await?;
        tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode & 0o7777)).await?;
        tokio::fs::rename(&tmp, path).await
    };
    if let Err(e) = finish.await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err((io_err(&format!("finish {path}"), e), tx));
    }
    let _ = tx.control(&Control::Result { value: serde_json::json!({ "size": written }) });
    tx.close(None);
    Ok(())
}

/// Streams a file to the host.
pub(crate) async fn get_file(path: &str, stream: Stream) -> Result<(), Failed> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) => return Err((io_err(&format!("open {path}"), e), stream.tx)),
    };
    started(&stream, None);
    let tx = stream.tx.clone();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut size = 0u64;
    loop {
        buf.reserve(64 * 1024);
        match file.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                size += n as u64;
                if tx.data(CHAN_STDIO, buf.split().freeze()).await.is_err() {
                    return Ok(());
                }
            }
            Err(e) => return Err((io_err(&format!("read {path}"), e), tx)),
        }
    }
    let _ = tx.control(&Control::Result { value: serde_json::json!({ "size": size }) });
    tx.close(None);
    Ok(())
}

/// Requests answered with one result.
pub(crate) async fn one_shot(req: Request) -> Result<serde_json::Value, ErrorReply> {
    match req {
        Request::Info => serde_json::to_value(info()).map_err(|e| ErrorReply::new("internal", e.to_string())),
        Request::SetTime { unix_nanos } => set_time(unix_nanos).map(|()| serde_json::Value::Null),
        Request::SetAuthorizedKeys { user, keys } => {
            set_authorized_keys(Path::new("/"), &user, &keys).map(|()| serde_json::Value::Null)
        }
        Request::Shutdown { reboot } => {
            let rt = libc::SIGRTMIN();
            let sig = if reboot { rt + 5 } else { rt + 4 };
            // Answer first, then ask init: the reply must reach the host before the guest goes down.
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                // SAFETY: sending a signal to PID 1.
                unsafe { libc::kill(1, sig) };
            });
            Ok(serde_json::Value::Null)
        }
        other => Err(ErrorReply::new("bad_request", format!("{other:?} is not a one-shot request"))),
    }
}

fn set_time(unix_nanos: u64) -> Result<(), ErrorReply> {
    let ts = nix::sys::time::TimeSpec::new((unix_nanos / 1_000_000_000) as i64, (unix_nanos % 1_000_000_000) as i64);
    nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts)
        .map_err(|e| ErrorReply::new("io", format!("set clock: {e}")))
}

/// Writes `~user/.ssh/authorized_keys` (0600, owned by the user) atomically.
pub(crate) fn set_authorized_keys(root: &Path, user: &str, keys: &[String]) -> Result<(), ErrorReply> {
    let acct = crate::users::lookup(root, user)
        .ok_or_else(|| ErrorReply::new("not_found", format!("user `{user}` does not exist in the guest")))?;
    if let Some(bad) = keys.iter().find(|k| k.contains('\n') || k.trim().is_empty()) {
        return Err(ErrorReply::new("bad_request", format!("invalid SSH key entry {bad:?}: one key per entry")));
    }
    let home = root.join(acct.home.trim_start_matches('/'));
    let dir = home.join(".ssh");
    let run = || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let tmp = dir.join("authorized_keys.den-tmp");
        let mut body = keys.join("\n");
        body.push('\n');
        std::fs::write(&tmp, body)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::os::unix::fs::chown(&tmp, Some(acct.uid), Some(acct.gid))?;
        std::os::unix::fs::chown(&dir, Some(acct.uid), Some(acct.gid))?;
        std::fs::rename(&tmp, dir.join("authorized_keys"))
    };
    run().map_err(|e| io_err(&format!("write {}/authorized_keys", dir.display()), e))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn meminfo(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Whether PID 1 runs this very binary (den-agent's init), rather than systemd or another init.
fn agent_is_init() -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata("/proc/1/exe"), std::fs::metadata("/proc/self/exe")) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Collects [`Info`] from `/proc` and the interfaces.
pub(crate) fn info() -> Info {
    let mem = read("/proc/meminfo");
    let load: Vec<f64> = read("/proc/loadavg").split_whitespace().take(3).filter_map(|v| v.parse().ok()).collect();
    let mut addresses: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Ok(ifs) = nix::ifaddrs::getifaddrs() {
        for ifa in ifs {
            let (Some(addr), Some(mask)) = (ifa.address, ifa.netmask) else { continue };
            let cidr = if let (Some(a), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
                format!("{}/{}", a.ip(), u32::from(m.ip()).count_ones())
            } else if let (Some(a), Some(m)) = (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
                format!("{}/{}", a.ip(), u128::from(m.ip()).count_ones())
            } else {
                continue;
            };
            addresses.entry(ifa.interface_name).or_default().push(cidr);
        }
    }
    let uname = nix::sys::utsname::uname().ok();
    Info {
        agent_version: env!("CARGO_PKG_VERSION").into(),
        kernel: uname.as_ref().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
        hostname: uname.as_ref().map(|u| u.nodename().to_string_lossy().into_owned()).unwrap_or_default(),
        uptime_secs: read("/proc/uptime").split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0.0),
        load: [
            load.first().copied().unwrap_or(0.0),
            load.get(1).copied().unwrap_or(0.0),
            load.get(2).copied().unwrap_or(0.0),
        ],
        mem_total_kib: meminfo(&mem, "MemTotal"),
        mem_available_kib: meminfo(&mem, "MemAvailable"),
        addresses,
        pid1: agent_is_init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields() {
        let t = "MemTotal:        1014300 kB\nMemFree:  5 kB\nMemAvailable:     900000 kB\n";
        assert_eq!(meminfo(t, "MemTotal"), 1014300);
        assert_eq!(meminfo(t, "MemAvailable"), 900000);
        assert_eq!(meminfo(t, "Missing"), 0);
    }

    #[test]
    fn authorized_keys_are_written_and_bad_keys_refused() {
        let d = std::env::temp_dir().join(format!("den-keys-{}", std::process::id()));
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::write(d.join("etc/passwd"), format!("me:x:{0}:{0}::/home/me:/bin/sh\n", nix::unistd::getuid()))
            .unwrap();
        let keys = vec!["ssh-ed25519 AAAA one".to_string(), "ssh-ed25519 BBBB two".to_string()];
        set_authorized_keys(&d, "me", &keys).unwrap();
        let body = std::fs::read_to_string(d.join("home/me/.ssh/authorized_keys")).unwrap();
        assert_eq!(body, "ssh-ed25519 AAAA one\nssh-ed25519 BBBB two\n");
        let err = set_authorized_keys(&d, "me", &["a\nb".into()]).unwrap_err();
        assert_eq!(err.code, "bad_request");
        assert_eq!(set_authorized_keys(&d, "ghost", &keys).unwrap_err().code, "not_found");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
