//! Unix sockets bound safely in folders others may write.

use std::path::Path;

/// Binds a Unix socket at `path` with `mode`, replacing what was there. The socket is made and
/// given its mode in a fresh folder only root can write (beside `path`), then renamed into
/// place: nobody who can write `path`'s folder can turn the mode change onto another file, and
/// a link at `path` is replaced, not followed.
pub fn bind_socket(path: &Path, mode: u32) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let private = tempfile::Builder::new().prefix(".den-sock-").tempdir_in(parent)?;
    let staged = private.path().join("s");
    let listener = std::os::unix::net::UnixListener::bind(&staged)?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&staged, path)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}
