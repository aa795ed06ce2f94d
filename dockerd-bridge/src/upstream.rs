//! Den's own calls to dockerd in the sandbox (not a user's): one request on a fresh connection
//! through the agent, for the container list and the events stream the port publisher follows.

use super::sandbox::GUEST_SOCKET;
use den_agent_proto::{AgentClient, ForwardTarget};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// `GET path` to dockerd: the response, its body still streaming.
pub async fn get(agent: &AgentClient, path: &str) -> Result<Response<Incoming>, String> {
    send(agent, Request::get(path).header(hyper::header::HOST, "docker").body(Full::new(Bytes::new()))).await
}

/// One request to dockerd on a fresh connection.
async fn send(
    agent: &AgentClient,
    req: Result<Request<Full<Bytes>>, hyper::http::Error>,
) -> Result<Response<Incoming>, String> {
    let req = req.map_err(|e| e.to_string())?;
    let io = agent
        .forward_io(ForwardTarget::Unix { path: GUEST_SOCKET.into() })
        .await
        .map_err(|e| format!("dockerd's socket: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| format!("dockerd: {e}"))?;
    tokio::spawn(conn);
    sender.send_request(req).await.map_err(|e| format!("dockerd: {e}"))
}

/// `POST path` with a JSON body to dockerd, answered within [`JSON_WAIT`]: an error unless
/// dockerd says it succeeded.
pub async fn post_json(agent: &AgentClient, path: &str, body: &serde_json::Value) -> Result<(), String> {
    let req = Request::post(path)
        .header(hyper::header::HOST, "docker")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())));
    let whole = async {
        let resp = send(agent, req).await?;
        let status = resp.status();
        let limited = http_body_util::Limited::new(resp.into_body(), 64 << 10);
        let text = limited.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("dockerd answered {status} to {path}: {}", den_vms::guest_text(&text)))
        }
    };
    tokio::time::timeout(JSON_WAIT, whole)
        .await
        .map_err(|_| format!("dockerd did not answer {path} within {} s", JSON_WAIT.as_secs()))?
}

/// How long dockerd may take to answer one of Den's own JSON calls, whole.
pub const JSON_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `GET path` to dockerd, answered whole within [`JSON_WAIT`]: its status and body.
async fn fetch(agent: &AgentClient, path: &str) -> Result<(hyper::StatusCode, Bytes), String> {
    let whole = async {
        let resp = get(agent, path).await?;
        let status = resp.status();
        let limited = http_body_util::Limited::new(resp.into_body(), super::proxy::MAX_BODY);
        let body = limited
            .collect()
            .await
            .map_err(|e| {
                format!(
                    "dockerd's answer to {path} broke off or is larger than {} MiB: {e}",
                    super::proxy::MAX_BODY >> 20
                )
            })?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    tokio::time::timeout(JSON_WAIT, whole)
        .await
        .map_err(|_| format!("dockerd did not answer {path} within {} s", JSON_WAIT.as_secs()))?
}

fn json_of(path: &str, status: hyper::StatusCode, body: &[u8]) -> Result<serde_json::Value, String> {
    if !status.is_success() {
        return Err(format!("dockerd answered {status} to {path}: {}", den_vms::guest_text(body)));
    }
    serde_json::from_slice(body).map_err(|e| format!("dockerd's answer to {path}: {e}"))
}

/// `GET path` to dockerd, answered with JSON within [`JSON_WAIT`].
pub async fn get_json(agent: &AgentClient, path: &str) -> Result<serde_json::Value, String> {
    let (status, body) = fetch(agent, path).await?;
    json_of(path, status, &body)
}

/// [`get_json`], with `None` when dockerd answers 404 (no such object).
pub async fn get_json_opt(agent: &AgentClient, path: &str) -> Result<Option<serde_json::Value>, String> {
    let (status, body) = fetch(agent, path).await?;
    if status == hyper::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    json_of(path, status, &body).map(Some)
}
