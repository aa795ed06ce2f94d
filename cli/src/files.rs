//! `den vm cp`: copies a file into or out of a running VM through its agent (`VM:/path` names
//! the guest side, like `docker cp` and `scp`).

use crate::client::{request_raw, typed, upload_with, Reply};
use crate::vm::enc;
use anyhow::{bail, Context};
use den_api_types::FileWritten;
use std::path::Path;

/// `VM:/abs/path` split into (VM, path), or `None` for a host path.
fn guest(arg: &str) -> Option<(&str, &str)> {
    let (vm, path) = arg.split_once(':')?;
    let vm_ok = !vm.is_empty() && vm.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (vm_ok && path.starts_with('/')).then_some((vm, path))
}

/// Where a guest file `path` lands for the host destination `dst`: inside it when it is a
/// directory (by the guest file's name), else `dst` itself.
fn local_target(dst: &str, path: &str) -> std::path::PathBuf {
    let d = Path::new(dst);
    match Path::new(path).file_name() {
        Some(name) if d.is_dir() => d.join(name),
        _ => d.to_path_buf(),
    }
}

/// Copies `src` to `dst`; one of them is `VM:/path`. A file sent in gets `mode` (octal).
pub(crate) fn cp(socket: &Path, src: &str, dst: &str, mode: Option<&str>) -> anyhow::Result<String> {
    match (guest(src), guest(dst)) {
        (None, Some((vm, path))) => {
            let mut url = format!("/api/v1/vms/{}/files?path={}", enc(vm), enc(path));
            let mode = match mode {
                Some(m) => m.to_string(),
                None => {
                    use std::os::unix::fs::PermissionsExt;
                    let meta = std::fs::metadata(src).with_context(|| format!("cannot read {src}"))?;
                    format!("{:o}", meta.permissions().mode() & 0o7777)
                }
            };
            url.push_str(&format!("&mode={mode}"));
            let r = upload_with(socket, "PUT", &url, Path::new(src))?.ok()?;
            let written = typed::<FileWritten>(&r, "the written file")?;
            Ok(format!("{src} -> {vm}:{path} ({} bytes)", written.bytes))
        }
        (Some((vm, path)), None) => {
            let url = format!("/api/v1/vms/{}/files?path={}", enc(vm), enc(path));
            let (status, body) = request_raw(socket, "GET", &url, None)?;
            if status != 200 {
                Reply { status, body: serde_json::from_slice(&body).unwrap_or_default() }.ok()?;
                bail!("dend refused the copy (HTTP {status})");
            }
            let to = local_target(dst, path);
            std::fs::write(&to, &body).with_context(|| format!("cannot write {}", to.display()))?;
            Ok(format!("{vm}:{path} -> {} ({} bytes)", to.display(), body.len()))
        }
        (Some(_), Some(_)) => {
            bail!("copy between two VMs through the host: `den vm cp a:/x tmp && den vm cp tmp b:/x`")
        }
        (None, None) => bail!("one side must be in a VM, written VM:/absolute/path"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn guest_sides_are_vm_colon_absolute_path() {
        assert_eq!(super::guest("web1:/etc/motd"), Some(("web1", "/etc/motd")));
        assert_eq!(super::guest("./a:b"), None);
        assert_eq!(super::guest("C:/x"), None, "upper case is no VM name");
        assert_eq!(super::guest("web1:rel"), None);
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_str().unwrap();
        assert_eq!(super::local_target(dir, "/etc/os-release"), d.path().join("os-release"));
        assert_eq!(super::local_target("out.txt", "/etc/os-release"), std::path::Path::new("out.txt"));
    }
}
