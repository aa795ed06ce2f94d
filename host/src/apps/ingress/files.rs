//! `file://` routes: static files from the app's `/lzcapp`, served by the host. Guests can write
//! under `/lzcapp`, so every lookup is confined to the route's directory by the kernel
//! (`openat2` with `RESOLVE_BENEATH`: no `..`, no absolute or escaping symlinks, no magic links).

use crate::apps::ingress::{plain, Body};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::{Response, StatusCode};
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

/// A content type by file extension.
pub fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "pdf" => "application/pdf",
        "xml" => "application/xml",
        _ => "application/octet-stream",
    }
}

fn open_beneath(dir: &OwnedFd, rel: &str, flags: OFlag) -> nix::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let rel = if rel.is_empty() { "." } else { rel };
    let fd = nix::fcntl::openat2(dir.as_raw_fd(), rel, how)?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Serves `path` (the upstream path, query dropped) from `root` on the host: a file, or a
/// directory's `index.html`. `head` answers without the body.
pub async fn serve(root: &Path, path: &str, head: bool) -> Response<Body> {
    let path = path.split('?').next().unwrap_or("/");
    let decoded = crate::urlcode::percent_decode(path, false);
    let rel = decoded.trim_start_matches('/').to_string();
    if rel.split('/').any(|c| c == "..") || rel.contains('\0') {
        return plain(StatusCode::BAD_REQUEST, "bad path");
    }
    let root = root.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || -> Result<(std::fs::File, String), StatusCode> {
        let dir = std::fs::File::open(&root).map_err(|_| StatusCode::NOT_FOUND)?;
        let dir = OwnedFd::from(dir);
        let fd = open_beneath(&dir, &rel, OFlag::O_RDONLY).map_err(|e| match e {
            nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR => StatusCode::NOT_FOUND,
            _ => StatusCode::FORBIDDEN,
        })?;
        let f = std::fs::File::from(fd);
        let meta = f.metadata().map_err(|_| StatusCode::NOT_FOUND)?;
        if meta.is_dir() {
            let index = if rel.is_empty() {
                "index.html".to_string()
            } else {
                format!("{}/index.html", rel.trim_end_matches('/'))
            };
            let fd = open_beneath(&dir, &index, OFlag::O_RDONLY).map_err(|_| StatusCode::NOT_FOUND)?;
            let f = std::fs::File::from(fd);
            return Ok((f, index));
        }
        if !meta.is_file() {
            return Err(StatusCode::NOT_FOUND);
        }
        Ok((f, rel))
    })
    .await;
    let (file, name) = match opened {
        Ok(Ok(x)) => x,
        Ok(Err(status)) => {
            return plain(status, if status == StatusCode::NOT_FOUND { "not found" } else { "forbidden" })
        }
        Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "file server stopped"),
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let body: Body = if head {
        Full::new(Bytes::new()).map_err(|e| match e {}).boxed_unsync()
    } else {
        let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
        let frames = futures_util::StreamExt::map(stream, |r| r.map(Frame::data).map_err(super::BodyError::new));
        BodyExt::boxed_unsync(StreamBody::new(frames))
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type(&name)));
    h.insert(hyper::header::CONTENT_LENGTH, len.into());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(root: &Path, path: &str) -> (StatusCode, String) {
        let r = serve(root, path, false).await;
        let status = r.status();
        let body = r.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn files_stay_beneath_their_directory() {
        let d = tempfile::tempdir().unwrap();
        let www = d.path().join("www");
        std::fs::create_dir_all(www.join("sub")).unwrap();
        std::fs::write(www.join("index.html"), "home").unwrap();
        std::fs::write(www.join("sub/a.css"), "css").unwrap();
        std::fs::write(d.path().join("secret"), "no").unwrap();
        std::os::unix::fs::symlink("../secret", www.join("out")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", www.join("abs")).unwrap();
        std::os::unix::fs::symlink("sub/a.css", www.join("in")).unwrap();
        assert_eq!(get(&www, "/").await, (StatusCode::OK, "home".into()));
        assert_eq!(get(&www, "/sub/a.css?x=1").await, (StatusCode::OK, "css".into()));
        assert_eq!(get(&www, "/in").await.1, "css", "links inside are followed");
        assert_eq!(get(&www, "/out").await.0, StatusCode::FORBIDDEN);
        assert_eq!(get(&www, "/abs").await.0, StatusCode::FORBIDDEN);
        assert_eq!(get(&www, "/%2e%2e/secret").await.0, StatusCode::BAD_REQUEST);
        assert_eq!(get(&www, "/nope").await.0, StatusCode::NOT_FOUND);
        assert_eq!(content_type("a.JS"), "text/javascript; charset=utf-8");
    }
}
