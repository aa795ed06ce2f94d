//! `/api/v1/system`: the business OS's status, updates and rollbacks.

use super::Services;
use super::{ApiError, Caller};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use den_api_types::system::{SystemStatus, UpdateAccepted};
use den_api_types::Accepted;
use den_system::{configured, SystemError};
use serde::Deserialize;

impl From<SystemError> for ApiError {
    fn from(e: SystemError) -> ApiError {
        match e {
            SystemError::NotConfigured | SystemError::NoVm(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            SystemError::Busy(_) | SystemError::NoPrevious(_) => {
                ApiError::new(StatusCode::CONFLICT, "wrong_state", e.to_string())
            }
            SystemError::Image(m) => ApiError::invalid_field("image", m),
            SystemError::Vm(v) => v.into(),
            SystemError::Store(s) => s.into(),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct StatusQuery {
    /// How many health checks to include (default 20).
    health: Option<u32>,
}

/// `GET /api/v1/system`: slots, phase, updates with their steps and outcomes, recent checks.
pub(super) async fn status(
    State(services): State<Services>,
    Query(q): Query<StatusQuery>,
) -> Result<Json<SystemStatus>, ApiError> {
    let s = configured(services.system.as_ref())?.status(&services.den, q.health.unwrap_or(20).min(2000))?;
    Ok(Json(s))
}

/// Body of `POST /api/v1/system/update`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateBody {
    /// The image to install (`den image ls`).
    image: String,
}

/// `POST /api/v1/system/update`: writes the image into the inactive slot and puts it on trial.
pub(super) async fn update(
    State(services): State<Services>,
    Extension(caller): Extension<Caller>,
    super::body::Body(b): super::body::Body<UpdateBody>,
) -> Result<(StatusCode, Json<UpdateAccepted>), ApiError> {
    let (task, update) = configured(services.system.as_ref())?.update(&services.den, &b.image, &caller.user)?;
    Ok((StatusCode::ACCEPTED, Json(UpdateAccepted { update, task: Some(Accepted::new(&task)) })))
}

/// `POST /api/v1/system/rollback`: ends a trial, or goes back to the other slot's OS.
pub(super) async fn rollback(
    State(services): State<Services>,
    Extension(caller): Extension<Caller>,
) -> Result<(StatusCode, Json<UpdateAccepted>), ApiError> {
    let update = configured(services.system.as_ref())?.rollback(&services.den, &caller.user)?;
    Ok((StatusCode::ACCEPTED, Json(UpdateAccepted { update, task: None })))
}
