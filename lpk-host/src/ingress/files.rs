//! `file://` routes: static files from the app's `/lzcapp`, served by the host. Every request is
//! resolved beneath the route's directory by a [`GuestTree`] (`AppDirs::route_tree` opened it,
//! itself without following any link): in the folders guests write (`var`, `cache`) no link is
//! followed at all; in the package's files, links are followed only while they stay inside the
//! route's folder. Only regular files are served (never a FIFO or device node a guest made).

use crate::ingress::{plain, Body};
use den_guest_tree::{GuestTree, Opened, TreeError};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::{Response, StatusCode};

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

/// What a lookup failure answers: refusals (links, ways out, special files) are 403, a
/// missing route directory or file 404.
fn status(e: &TreeError) -> StatusCode {
    if e.is_refusal() {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::NOT_FOUND
    }
}

/// Serves `path` (the upstream path, query dropped) from the route's `tree`: a file, or a
/// directory's `index.html`. `head` answers without the body.
pub async fn serve(tree: Result<GuestTree, TreeError>, path: &str, head: bool) -> Response<Body> {
    let path = path.split('?').next().unwrap_or("/");
    let decoded = den_net_util::url::decode_path(path);
    let rel = decoded.trim_start_matches('/').to_string();
    if rel.split('/').any(|c| c == "..") || rel.contains('\0') {
        return plain(StatusCode::BAD_REQUEST, "bad path");
    }
    let opened = tokio::task::spawn_blocking(move || -> Result<(std::fs::File, String), StatusCode> {
        let tree = tree.map_err(|e| status(&e))?;
        // `a//b` and a trailing `/` are the same file; anything else unclean is refused.
        let clean: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        let rel = clean.join("/");
        match tree.open_entry(&rel).map_err(|e| status(&e))? {
            Opened::File(f) => Ok((f, rel)),
            Opened::Dir(dir) => {
                let f = dir.open_file("index.html").map_err(|e| status(&e))?;
                Ok((f, "index.html".to_string()))
            }
        }
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

    async fn get(root: &std::path::Path, path: &str) -> (StatusCode, String) {
        let r = serve(GuestTree::open(root, den_guest_tree::Links::Never), path, false).await;
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
        assert_eq!(get(&www, "/in").await.0, StatusCode::FORBIDDEN, "a guest's folder: no link is followed");
        let inside = serve(GuestTree::open(&www, den_guest_tree::Links::Inside), "/in", false).await;
        assert_eq!(inside.status(), StatusCode::OK, "a package's links that stay inside are followed");
        let out = serve(GuestTree::open(&www, den_guest_tree::Links::Inside), "/out", false).await;
        assert_eq!(out.status(), StatusCode::FORBIDDEN);
        assert_eq!(get(&www, "/out").await.0, StatusCode::FORBIDDEN);
        assert_eq!(get(&www, "/abs").await.0, StatusCode::FORBIDDEN);
        assert_eq!(get(&www, "/%2e%2e/secret").await.0, StatusCode::BAD_REQUEST);
        assert_eq!(get(&www, "/nope").await.0, StatusCode::NOT_FOUND);
        assert_eq!(get(&www, "/sub//a.css").await.1, "css");
        nix::unistd::mkfifo(&www.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        assert_eq!(get(&www, "/fifo").await.0, StatusCode::FORBIDDEN, "a FIFO is refused, not opened");
        std::os::unix::fs::symlink("/", d.path().join("rootlink")).unwrap();
        assert_eq!(
            get(&d.path().join("rootlink"), "/etc/passwd").await.0,
            StatusCode::FORBIDDEN,
            "a route dir that is a link"
        );
        assert_eq!(content_type("a.JS"), "text/javascript; charset=utf-8");
    }
}
