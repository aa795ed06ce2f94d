//! The SSH gateway's sessions and their recordings: admins see everyone's, others their own.

use super::ApiError;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use den_auth::Caller;
use den_vms::{Den, VmError};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// Filters of the session list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SessionQuery {
    /// Only this user's (admins; others always see their own).
    #[serde(default)]
    user: Option<String>,
    /// At most this many (default 100).
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /api/v1/ssh/sessions`: newest first, with user, VM, times, exit and whether recorded.
pub(super) async fn sessions(
    State(den): State<Arc<Den>>,
    Extension(c): Extension<Caller>,
    Query(q): Query<SessionQuery>,
) -> Result<Json<Value>, ApiError> {
    let user = if c.is_admin() { q.user } else { Some(c.user.clone()) };
    let list = den.store.ssh_sessions(user.as_deref(), q.limit.unwrap_or(100).min(10_000))?;
    Ok(Json(serde_json::to_value(list).unwrap_or_default()))
}

/// `GET /api/v1/ssh/sessions/{id}/recording`: the asciicast v2 file.
pub(super) async fn recording(
    State(den): State<Arc<Den>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::from(VmError::Store(den_store::StoreError::NotFound {
            kind: "SSH session recording",
            name: id.clone(),
        }))
    };
    let (session, file) = den.store.ssh_session(&id)?;
    if !(c.is_admin() || c.user == session.user) {
        return Err(not_found());
    }
    let file = file.ok_or_else(not_found)?;
    // Streamed (a recording may be tens of MiB), with its length at the time of asking: a live
    // session's recording keeps growing.
    let f = tokio::fs::File::open(&file).await.map_err(|_| not_found())?;
    let len = f.metadata().await.map_err(|_| not_found())?.len();
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(tokio::io::AsyncReadExt::take(f, len)));
    let head =
        [(header::CONTENT_TYPE, "application/x-asciicast".to_string()), (header::CONTENT_LENGTH, len.to_string())];
    Ok((StatusCode::OK, head, body).into_response())
}
