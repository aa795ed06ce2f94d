//! One HTTP/1.1 `GET` over a stream the guest agent opened to a guest port: how dend checks
//! that something inside a guest answers (app readiness, the business OS's health check).

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// The status of `GET path` with `Host: host` over `io`, within `limit`.
pub async fn get_status(io: tokio::io::DuplexStream, host: &str, path: &str, limit: Duration) -> Result<u16, String> {
    let ask = async {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, host)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        Ok::<u16, String>(resp.status().as_u16())
    };
    tokio::time::timeout(limit, ask).await.map_err(|_| format!("no answer within {} s", limit.as_secs()))?
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_the_status_and_sends_the_host() {
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move {
            let mut buf = vec![0u8; 1024];
            let n = theirs.read(&mut buf).await.unwrap();
            theirs.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n").await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let status = super::get_status(ours, "web", "/healthz", std::time::Duration::from_secs(5)).await;
        assert_eq!(status, Ok(503));
        let req = server.await.unwrap();
        assert!(req.starts_with("GET /healthz HTTP/1.1\r\n") && req.to_lowercase().contains("host: web"), "{req}");
        let (ours, _silent) = tokio::io::duplex(64);
        let err = super::get_status(ours, "web", "/", std::time::Duration::from_millis(200)).await.unwrap_err();
        assert!(err.contains("no answer"), "{err}");
    }
}
