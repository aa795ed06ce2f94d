//! Engine logs that a guest can fill: `console.log` (QEMU writes everything the guest prints on
//! its serial port, whether or not anyone watches), `engine.log` (QEMU's or den-vmm's own
//! output, which guests can provoke) and `virtiofsd.log`. They live in `/run` (memory on most
//! hosts), so dend keeps each under [`LOG_CAP`]: every [`CHECK_EVERY`] it looks at the logs of
//! every VM, and a log past the cap keeps its last [`KEEP`] bytes in `<name>.1` and is cut to
//! empty. The writers opened them for appending, so their next write lands at the new end.
//! A guest can thus add at most what it writes in [`CHECK_EVERY`] beyond the cap.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

/// Largest a log may grow before it is cut.
pub const LOG_CAP: u64 = 4 << 20;
/// What is kept of a cut log, in `<name>.1`.
pub const KEEP: u64 = 1 << 20;
/// How often the logs are looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// The logs of a VM's runtime directory that are capped.
pub const CAPPED: [&str; 3] = ["console.log", "engine.log", "virtiofsd.log"];

/// The last `max` bytes of a file at most, read without following it past that (it may keep
/// growing while it is read).
pub fn tail(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let from = len.saturating_sub(max);
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    f.take(len - from).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Cuts `path` if it is past [`LOG_CAP`]; `true` if it was cut.
pub fn cap(path: &Path) -> std::io::Result<bool> {
    let len = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= LOG_CAP {
        return Ok(false);
    }
    let kept = tail(path, KEEP)?;
    let old = path.with_extension("log.1");
    std::fs::write(&old, kept)?;
    std::fs::OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// Caps the logs of every VM under `vms` (the runtime directory of each VM), for ever.
pub async fn run(vms: std::path::PathBuf) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let dir = vms.clone();
        let _ = tokio::task::spawn_blocking(move || cap_all(&dir)).await;
    }
}

fn cap_all(vms: &Path) {
    let Ok(rd) = std::fs::read_dir(vms) else { return };
    for vm in rd.flatten() {
        for name in CAPPED {
            let path = vm.path().join(name);
            match cap(&path) {
                Ok(true) => {
                    tracing::info!(log = %path.display(), "log past {} MiB: cut, its end kept in .1", LOG_CAP >> 20)
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(log = %path.display(), %e, "cannot cap the log"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_log_past_the_cap_is_cut_and_its_end_kept() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("console.log");
        // The writer appends, as QEMU does.
        let mut w = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        w.write_all(&vec![b'a'; LOG_CAP as usize]).unwrap();
        assert!(!cap(&path).unwrap(), "at the cap: left alone");
        w.write_all(b"the end").unwrap();
        assert!(cap(&path).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        let old = std::fs::read(d.path().join("console.log.1")).unwrap();
        assert_eq!(old.len() as u64, KEEP);
        assert!(old.ends_with(b"the end"));
        w.write_all(b"next").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"next", "the writer's next append starts the log again");
        assert_eq!(tail(&path, 2).unwrap(), b"xt");
    }
}
