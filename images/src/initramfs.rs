//! The initramfs: busybox-static, den-agent as `/init`, the spec's files, then the kernel's
//! module archive appended (the kernel unpacks concatenated cpio archives in order).

use crate::cpio::CpioWriter;
use crate::spec::FileSpec;
use crate::ImageError;
use std::collections::BTreeSet;
use std::path::Path;

/// Directories every initramfs has.
const DIRS: &[&str] = &[
    "/bin",
    "/sbin",
    "/usr",
    "/usr/bin",
    "/usr/sbin",
    "/dev",
    "/proc",
    "/sys",
    "/run",
    "/tmp",
    "/etc",
    "/etc/den",
    "/etc/den/services",
    "/newroot",
    "/root",
    "/var",
    "/lib",
    "/lib/modules",
];

/// Inputs of the initramfs.
pub struct Parts<'a> {
    /// The static den-agent binary.
    pub agent: &'a [u8],
    /// busybox-static and its applet paths (`usr/bin/awk`, ...), if wanted.
    pub busybox: Option<(&'a [u8], Vec<String>)>,
    /// Extra files.
    pub files: &'a [FileSpec],
    /// The kernel's module archive.
    pub modules_cpio: &'a [u8],
}

/// Builds the whole initramfs image.
pub fn build(p: &Parts) -> Result<Vec<u8>, ImageError> {
    let io = |e: std::io::Error| ImageError::io("initramfs", e);
    let mut w = CpioWriter::new(Vec::new());
    let mut made: BTreeSet<String> = BTreeSet::new();
    for d in DIRS {
        w.dir(d, 0o755).map_err(io)?;
        made.insert(d.to_string());
    }
    w.char_dev("/dev/console", 0o600, 5, 1).map_err(io)?;
    w.char_dev("/dev/null", 0o666, 1, 3).map_err(io)?;
    w.file("/init", 0o755, p.agent).map_err(io)?;
    w.symlink("/sbin/den-agent", "/init").map_err(io)?;
    if let Some((bb, applets)) = &p.busybox {
        w.file("/bin/busybox", 0o755, bb).map_err(io)?;
        for a in applets {
            let path = format!("/{}", a.trim_start_matches('/'));
            if path == "/bin/busybox" || path == "/init" || path.contains("..") || !made.contains(parent(&path)) {
                continue;
            }
            w.symlink(&path, "/bin/busybox").map_err(io)?;
        }
    }
    for f in p.files {
        let mut d = String::new();
        for comp in parent(&f.path).split('/').filter(|c| !c.is_empty()) {
            d.push('/');
            d.push_str(comp);
            if made.insert(d.clone()) {
                w.dir(&d, 0o755).map_err(io)?;
            }
        }
        let perm = f.perm().map_err(|reason| ImageError::Spec { file: "files".into(), reason })?;
        w.file(&f.path, perm, f.contents.as_bytes()).map_err(io)?;
    }
    let mut out = w.finish().map_err(io)?;
    out.extend_from_slice(p.modules_cpio);
    Ok(out)
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Lists busybox's applets by running it (`--list-full`).
pub fn busybox_applets(busybox: &Path) -> Result<Vec<String>, ImageError> {
    let out = crate::tool::run(std::process::Command::new(busybox).arg("--list-full"))?;
    Ok(out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initramfs_unpacks_with_gnu_cpio() {
        let Ok(status) = std::process::Command::new("cpio").arg("--version").output() else { return };
        assert!(status.status.success());
        let files =
            vec![FileSpec { path: "/etc/den/services/x.toml".into(), contents: "exec=['a']\n".into(), mode: None }];
        let parts = Parts {
            agent: b"#!agent",
            busybox: Some((b"bb", vec!["bin/sh".into(), "usr/bin/awk".into(), "weird/dir/x".into()])),
            files: &files,
            modules_cpio: &CpioWriter::new(Vec::new()).finish().unwrap(),
        };
        let img = build(&parts).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-idm", "--quiet", "--no-absolute-filenames"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&img).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(std::fs::read(dir.path().join("init")).unwrap(), b"#!agent");
        assert_eq!(std::fs::read_link(dir.path().join("bin/sh")).unwrap(), Path::new("/bin/busybox"));
        assert!(std::fs::symlink_metadata(dir.path().join("usr/bin/awk")).is_ok());
        assert!(!dir.path().join("weird").exists());
        assert_eq!(std::fs::read_to_string(dir.path().join("etc/den/services/x.toml")).unwrap(), "exec=['a']\n");
    }
}
