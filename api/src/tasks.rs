//! `/api/v1/tasks` and `/api/v1/events`: long operations with their logs, and the event log.

use super::{ApiError, Caller};
use axum::extract::{Path, Query, State};
use axum::Json;
use den_vms::Den;
use serde::Deserialize;
use std::sync::Arc;

/// `?limit=`.
#[derive(Deserialize)]
pub(crate) struct Limit {
    limit: Option<u32>,
}

/// `GET /api/v1/tasks`.
pub(crate) async fn list(
    State(den): State<Arc<Den>>,
    Query(q): Query<Limit>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::to_value(den.store.tasks(q.limit.unwrap_or(50).min(1000))?).unwrap_or_default()))
}

/// `GET /api/v1/tasks/:id`.
pub(crate) async fn get(
    State(den): State<Arc<Den>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::to_value(den.store.task(&id)?).unwrap_or_default()))
}

/// `POST /api/v1/tasks/:id/cancel`.
pub(crate) async fn cancel(
    State(den): State<Arc<Den>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> Result<(axum::http::StatusCode, Json<serde_json::Value>), ApiError> {
    den.cancel_task(&id, &caller.user)?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(serde_json::json!({"task": id, "cancelling": true}))))
}

/// `?after=&limit=` or `?tail=`.
#[derive(Deserialize)]
pub(crate) struct After {
    after: Option<i64>,
    limit: Option<u32>,
    /// The newest `tail` events instead (still oldest first).
    tail: Option<u32>,
}

/// `GET /api/v1/events`.
pub(crate) async fn events(
    State(den): State<Arc<Den>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Query(q): Query<After>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut ev = match q.tail {
        Some(n) => den.store.recent_events(n.min(5000))?,
        None => den.store.events(q.after.unwrap_or(0), q.limit.unwrap_or(500).min(5000))?,
    };
    let mut filter = super::auth::EventFilter::new(&caller);
    ev.retain(|e| filter.allows(&den, e));
    Ok(Json(serde_json::to_value(ev).unwrap_or_default()))
}
