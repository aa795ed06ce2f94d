//! `/api/v1/vms`.

use super::body::Body;
use super::{ApiError, Caller};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use den_api_types::{Accepted, ConsoleOutput, ExecOutput, ExecRequest};
use den_auth::policy::{self, Action, VmAction};
use den_core::vm::VmSpec;
use den_vms::Den;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// 202 with the task's id and location (and `extra` fields).
pub(super) fn accepted(task: &str, extra: serde_json::Value) -> Response {
    let answer = Accepted::new(task);
    let location = answer.location.clone();
    let mut body = serde_json::to_value(answer).unwrap_or_default();
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    (StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(body)).into_response()
}

/// What reaches into the host itself needs an admin: shared host folders give the guest the
/// host's files, and a `local` port forward takes the host's own connections to its port
/// (whatever host program, another user's included, listens there later).
fn host_reach_needs_admin(caller: &Caller, spec: &VmSpec) -> Result<(), ApiError> {
    if caller.is_admin() {
        return Ok(());
    }
    let why = if !spec.shares.is_empty() {
        "only an admin may share host folders with a VM (`shares`)"
    } else if spec.ports.iter().any(|p| p.local) {
        "only an admin may forward the host's own connections to a VM (`local` port forwards, `-p HOST:GUEST,local`); drop `local` to forward connections from elsewhere"
    } else {
        return Ok(());
    };
    Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", why.to_string()))
}

/// `GET /api/v1/vms`: the VMs the caller may see.
pub(super) async fn list(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<den_core::vm::VmRecord>>, ApiError> {
    let mut vms = den.store.vms()?;
    if !caller.has(den_auth::Role::Viewer) || caller.token.as_ref().is_some_and(|t| t.vms.is_some()) {
        vms.retain(|v| policy::authorize(&caller, &Action::Vm(v, VmAction::See)).is_ok());
    }
    Ok(Json(vms))
}

/// `GET /api/v1/vms/{name}`.
pub(super) async fn get(
    State(den): State<Arc<Den>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::to_value(den.store.vm(&name).map_err(den_vms::VmError::from)?).unwrap_or_default()))
}

/// `POST /api/v1/vms`: 202 with the create task.
pub(super) async fn create(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    Body(spec): Body<VmSpec>,
) -> Result<Response, ApiError> {
    host_reach_needs_admin(&caller, &spec)?;
    let (task, vm) = den.create(spec, &caller.user)?;
    Ok(accepted(&task, json!({"vm": vm})))
}

/// `POST /api/v1/vms/{name}/start`.
pub(super) async fn start(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(accepted(&den.start(&name, &caller.user)?, json!({})))
}

/// `POST /api/v1/vms/{name}/stop`.
pub(super) async fn stop(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(accepted(&den.stop(&name, &caller.user)?, json!({})))
}

/// `POST /api/v1/vms/{name}/reboot`.
pub(super) async fn reboot(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(accepted(&den.reboot(&name, &caller.user)?, json!({})))
}

/// `DELETE /api/v1/vms/{name}`.
pub(super) async fn delete(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(accepted(&den.delete(&name, &caller.user)?, json!({})))
}

/// What `POST .../exec` takes of a command's output, and how long it waits: longer commands
/// and bigger output belong on `den vm exec -it` or `den vm cp`, which stream.
const EXEC_BOUNDS: den_agent_proto::Bounds =
    den_agent_proto::Bounds::new(16 << 20, std::time::Duration::from_secs(3600));

/// `POST /api/v1/vms/{name}/exec`: runs a command through the guest agent; waits for it.
pub(super) async fn exec(
    State(den): State<Arc<Den>>,
    Path(name): Path<String>,
    Body(req): Body<ExecRequest>,
) -> Result<Json<ExecOutput>, ApiError> {
    if req.argv.is_empty() {
        return Err(ApiError::invalid_field("argv", "argv: give the command to run"));
    }
    let out = den.exec(&name, &req.argv, EXEC_BOUNDS).await?;
    Ok(Json(ExecOutput {
        code: out.code,
        signal: out.signal,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }))
}

/// `POST /api/v1/vms/{name}/pause`.
pub(super) async fn pause(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::to_value(den.set_paused(&name, true, &caller.user).await?).unwrap_or_default()))
}

/// `POST /api/v1/vms/{name}/resume`.
pub(super) async fn resume(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::to_value(den.set_paused(&name, false, &caller.user).await?).unwrap_or_default()))
}

/// `GET /api/v1/vms/{name}/console`: recent serial console output (up to 64 KiB).
pub(super) async fn console(
    State(den): State<Arc<Den>>,
    Path(name): Path<String>,
) -> Result<Json<ConsoleOutput>, ApiError> {
    Ok(Json(ConsoleOutput { output: den.console(&name, 64 * 1024).await? }))
}

/// A snapshot request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SnapshotBody {
    name: String,
    #[serde(default)]
    description: String,
}

/// `GET /api/v1/vms/{name}/snapshots`.
pub(super) async fn snapshots(
    State(den): State<Arc<Den>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::to_value(den.snapshots(&name)?).unwrap_or_default()))
}

/// `POST /api/v1/vms/{name}/snapshots`: 202 with the snapshot task.
pub(super) async fn snapshot(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Body(req): Body<SnapshotBody>,
) -> Result<Response, ApiError> {
    Ok(accepted(&den.snapshot_create(&name, &req.name, &req.description, &caller.user)?, json!({})))
}

/// `POST /api/v1/vms/{name}/snapshots/{snap}/rollback`: 202 with the rollback task.
pub(super) async fn rollback(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    Path((name, snap)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(accepted(&den.snapshot_rollback(&name, &snap, &caller.user)?, json!({})))
}

/// `DELETE /api/v1/vms/{name}/snapshots/{snap}`.
pub(super) async fn delete_snapshot(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    Path((name, snap)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    den.snapshot_delete(&name, &snap, &caller.user)?;
    Ok(Json(json!({"deleted": snap})))
}

/// A clone request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CloneBody {
    name: String,
}

/// `POST /api/v1/vms/{name}/clone`: 202 with the clone task and the new VM.
pub(super) async fn clone(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Body(req): Body<CloneBody>,
) -> Result<Response, ApiError> {
    // A clone gets the source's folders, not its forwards.
    let mut spec = den.store.vm(&name).map_err(den_vms::VmError::from)?.spec;
    spec.ports.clear();
    host_reach_needs_admin(&caller, &spec)?;
    let (task, vm) = den.clone_vm(&name, &req.name, &caller.user)?;
    Ok(accepted(&task, json!({"vm": vm})))
}

/// A resize request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResizeBody {
    disk_mib: u64,
}

/// `POST /api/v1/vms/{name}/resize`: grows the root disk; the VM as it is now.
pub(super) async fn resize(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Body(req): Body<ResizeBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::to_value(den.resize(&name, req.disk_mib, &caller.user).await?).unwrap_or_default()))
}
