//! The usage graphs: `/api/v1/host/metrics` and `/api/v1/vms/{name}/metrics`.

use super::ApiError;
use axum::extract::{Path, State};
use axum::Json;
use den_vms::{Den, VmError};
use serde_json::{json, Value};
use std::sync::Arc;

/// `GET /api/v1/host/metrics`: the host's samples of the last hour.
pub(super) async fn host(State(den): State<Arc<Den>>) -> Json<Value> {
    Json(json!({"interval": den_vms::metrics::INTERVAL.as_secs(), "samples": den.metrics.host()}))
}

/// `GET /api/v1/vms/{name}/metrics`: the VM's samples of the last hour.
pub(super) async fn vm(State(den): State<Arc<Den>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let vm = den.store.vm(&name).map_err(VmError::from)?;
    Ok(Json(json!({"interval": den_vms::metrics::INTERVAL.as_secs(), "samples": den.metrics.vm(&vm.id)})))
}
