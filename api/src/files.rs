//! `/api/v1/vms/{name}/files?path=`: copying files into and out of a running guest through its
//! agent (`den vm cp`), like `incus file push` and `docker cp`.

use super::ApiError;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use den_vms::Den;
use futures_util::StreamExt;
use serde::Deserialize;
use std::sync::Arc;

/// Largest file copied in one request, either way (each is held whole in memory).
const MAX_FILE: usize = 1 << 30;
/// How long a copy out of a guest may take.
const FILE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1800);

#[derive(Deserialize)]
pub(super) struct FileQuery {
    /// Absolute path in the guest.
    path: String,
    /// Octal permission bits for a file sent in (default 644).
    mode: Option<String>,
}

fn guest_path(p: &str) -> Result<&str, ApiError> {
    if !p.starts_with('/') || p.contains('\0') || p.len() > 4096 {
        return Err(ApiError::invalid_field("path", format!("`{p}` is not an absolute guest path")));
    }
    Ok(p)
}

fn agent_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "agent", format!("agent: {e}"))
}

/// `PUT /api/v1/vms/{name}/files?path=/x&mode=755`: writes the body to the guest file (a
/// temporary name, renamed when complete).
pub(super) async fn put(
    State(den): State<Arc<Den>>,
    Path(name): Path<String>,
    Query(q): Query<FileQuery>,
    req: Request,
) -> Result<Response, ApiError> {
    let path = guest_path(&q.path)?;
    let mode = match q.mode.as_deref() {
        None => 0o644,
        Some(m) => u32::from_str_radix(m, 8)
            .ok()
            .filter(|v| *v <= 0o7777)
            .ok_or_else(|| ApiError::invalid_field("mode", format!("`{m}` is not octal permission bits like 755")))?,
    };
    let agent = den.agent(&den.store.vm(&name)?).await?;
    let mut body = Vec::new();
    let mut stream = req.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid_field("body", format!("the upload broke off: {e}")))?;
        if body.len() + chunk.len() > MAX_FILE {
            let msg = format!("files larger than {} MiB are not copied in one request", MAX_FILE >> 20);
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", msg));
        }
        body.extend_from_slice(&chunk);
    }
    let len = body.len();
    agent.put_file(path, mode, body.into()).await.map_err(agent_error)?;
    let written = den_api_types::FileWritten { path: path.to_string(), bytes: len, mode: format!("{mode:o}") };
    Ok(axum::Json(written).into_response())
}

/// `GET /api/v1/vms/{name}/files?path=/x`: the guest file's bytes.
pub(super) async fn get(
    State(den): State<Arc<Den>>,
    Path(name): Path<String>,
    Query(q): Query<FileQuery>,
) -> Result<Response, ApiError> {
    let path = guest_path(&q.path)?;
    let agent = den.agent(&den.store.vm(&name)?).await?;
    let bytes =
        agent.get_file(path, den_agent_proto::Bounds::new(MAX_FILE, FILE_DEADLINE)).await.map_err(agent_error)?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}
