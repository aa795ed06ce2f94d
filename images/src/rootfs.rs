//! Debian root disks: `mmdebstrap` makes a root tree (as a tar, cached), then the tree plus
//! den-agent and the spec's files become an ext4 image with `mkfs.ext4 -d` (no loop mounts).

use crate::spec::{FileSpec, RootfsSpec};
use crate::tool;
use crate::ImageError;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Where den-agent lives inside root disks.
pub const AGENT_PATH: &str = "/usr/local/lib/den/den-agent";

/// Base URL of the Debian archive; `DEN_DEBIAN_MIRROR` overrides it.
pub fn mirror() -> String {
    std::env::var("DEN_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into())
}

/// The sources mmdebstrap uses for a suite.
pub fn sources(suite: &str) -> Vec<String> {
    let m = mirror();
    vec![format!("deb {m} {suite} main"), format!("deb {m} {suite}-updates main")]
}

fn host_codename() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines().find_map(|l| l.strip_prefix("VERSION_CODENAME=")).map(|v| v.trim_matches('"').to_string())
}

/// Fails fast, naming the package, when a package does not exist (checked against the host's
/// apt lists when the host runs the same suite; otherwise mmdebstrap's own error is parsed).
pub fn check_packages(spec: &RootfsSpec) -> Result<(), ImageError> {
    if host_codename().as_deref() != Some(spec.suite.as_str()) {
        return Ok(());
    }
    for p in &spec.packages {
        crate::deb::resolve(p, "rootfs.packages")?;
    }
    Ok(())
}

fn missing_package_in(output: &str) -> Option<String> {
    output.lines().find_map(|l| {
        let l = l.trim();
        if let Some(rest) = l.strip_prefix("E: Unable to locate package ") {
            return Some(rest.trim().to_string());
        }
        let rest = l.strip_prefix("E: Package '")?;
        Some(rest.split('\'').next()?.to_string())
    })
}

/// Runs mmdebstrap into `out_tar`, reusing downloaded packages from `apt_cache`.
pub fn bootstrap(spec: &RootfsSpec, out_tar: &Path, apt_cache: &Path, line: &dyn Fn(&str)) -> Result<(), ImageError> {
    std::fs::create_dir_all(apt_cache).map_err(|e| ImageError::io(apt_cache, e))?;
    let cache = apt_cache.display().to_string();
    let mut cmd = Command::new("mmdebstrap");
    cmd.arg(format!("--variant={}", spec.variant))
        .arg("--skip=essential/unlink")
        .arg("--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/")
        .arg(format!("--setup-hook=sync-in {cache} /var/cache/apt/archives/"))
        .arg(format!("--customize-hook=sync-out /var/cache/apt/archives {cache}"));
    if !spec.packages.is_empty() {
        cmd.arg(format!("--include={}", spec.packages.join(",")));
    }
    for r in &spec.run {
        cmd.arg(format!("--customize-hook=chroot \"$1\" /bin/sh -ec {}", shell_quote(r)));
    }
    cmd.arg(&spec.suite).arg(out_tar).args(sources(&spec.suite));
    match tool::run_streaming(&mut cmd, line) {
        Ok(_) => Ok(()),
        Err(ImageError::Tool { output, command, status }) => match missing_package_in(&output) {
            Some(name) => Err(ImageError::MissingPackage { name, context: "rootfs.packages (mmdebstrap)".into() }),
            None => Err(ImageError::Tool { output, command, status }),
        },
        Err(e) => Err(e),
    }
}

/// Quotes a string for `sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Writes spec files under `root`.
pub fn write_files(root: &Path, files: &[FileSpec]) -> Result<(), ImageError> {
    for f in files {
        let dest = root.join(f.path.trim_start_matches('/'));
        if let Some(p) = dest.parent() {
            std::fs::create_dir_all(p).map_err(|e| ImageError::io(p, e))?;
        }
        std::fs::write(&dest, &f.contents).map_err(|e| ImageError::io(&dest, e))?;
        let perm = f.perm().map_err(|reason| ImageError::Spec { file: "rootfs.files".into(), reason })?;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(perm)).map_err(|e| ImageError::io(&dest, e))?;
    }
    Ok(())
}

const AGENT_UNIT: &str = "[Unit]
Description=Den guest agent
DefaultDependencies=no
After=local-fs.target

[Service]
ExecStart=/usr/local/lib/den/den-agent serve
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
";

/// Unpacks a root tree, adds the agent and files, and writes an ext4 image to `out`.
pub fn make_disk(tar: &Path, work: &Path, spec: &RootfsSpec, agent: &[u8], out: &Path) -> Result<u64, ImageError> {
    let root = work.join("root");
    std::fs::create_dir_all(&root).map_err(|e| ImageError::io(&root, e))?;
    tool::run(
        Command::new("tar")
            .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf"])
            .arg(tar)
            .arg("-C")
            .arg(&root),
    )?;
    let mut files = vec![FileSpec { path: AGENT_PATH.into(), contents: String::new(), mode: Some("0755".into()) }];
    if spec.systemd_agent {
        files.push(FileSpec {
            path: "/etc/systemd/system/den-agent.service".into(),
            contents: AGENT_UNIT.into(),
            mode: None,
        });
    }
    files.extend(spec.files.iter().cloned());
    write_files(&root, &files)?;
    let agent_dest = root.join(AGENT_PATH.trim_start_matches('/'));
    std::fs::write(&agent_dest, agent).map_err(|e| ImageError::io(&agent_dest, e))?;
    if spec.systemd_agent {
        let wants = root.join("etc/systemd/system/multi-user.target.wants");
        std::fs::create_dir_all(&wants).map_err(|e| ImageError::io(&wants, e))?;
        let link = wants.join("den-agent.service");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/etc/systemd/system/den-agent.service", &link)
            .map_err(|e| ImageError::io(&link, e))?;
    }
    let used = tree_size(&root);
    let size = match crate::spec::parse_size(&spec.size) {
        Some(s) => s,
        None => (used + used / 2 + (256 << 20)).div_ceil(1 << 20) << 20,
    };
    ext4_from_dir(&root, out, size, "den-root")?;
    Ok(size)
}

/// Makes an ext4 image of `size` bytes (sparse) holding `dir`.
pub fn ext4_from_dir(dir: &Path, out: &Path, size: u64, label: &str) -> Result<(), ImageError> {
    let f = std::fs::File::create(out).map_err(|e| ImageError::io(out, e))?;
    f.set_len(size).map_err(|e| ImageError::io(out, e))?;
    drop(f);
    tool::run(Command::new("mkfs.ext4").args(["-q", "-F", "-L", label, "-E", "root_owner=0:0", "-d"]).arg(dir).arg(out))
        .map(drop)
}

/// Bytes used by a tree (apparent sizes, plus a block per entry).
pub fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += m.len().div_ceil(4096) * 4096 + 4096;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// Converts a raw image to qcow2.
pub fn to_qcow2(raw: &Path, out: &Path) -> Result<(), ImageError> {
    tool::run(Command::new("qemu-img").args(["convert", "-q", "-f", "raw", "-O", "qcow2"]).arg(raw).arg(out)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_package_is_found_in_apt_output() {
        assert_eq!(missing_package_in("I: x\nE: Unable to locate package nosuchpkg\n").as_deref(), Some("nosuchpkg"));
        assert_eq!(missing_package_in("E: Package 'foo' has no installation candidate").as_deref(), Some("foo"));
        assert_eq!(missing_package_in("E: something else"), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("echo 'hi'"), "'echo '\\''hi'\\'''");
    }
}
