//! `/api/v1/networks` and `/api/v1/isos`: what VMs are made with besides images.

use super::body::Body;
use super::{ApiError, Caller};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use den_api_types::{Iso, NetworkInfo, NetworkVm};
use den_net::NetworkSpec;
use den_vms::{Den, VmError};
use serde_json::{json, Value};
use std::sync::Arc;

/// `GET /api/v1/networks`: each network with its bridge, whether it is up, and its VMs.
pub(super) async fn list(State(den): State<Arc<Den>>) -> Result<Json<Vec<NetworkInfo>>, ApiError> {
    let mut leases = den.net.leases(&den.store)?;
    let nets = den
        .net
        .networks(&den.store)?
        .into_iter()
        .map(|n| {
            let vms = leases
                .remove(&n.name)
                .unwrap_or_default()
                .into_iter()
                .map(|(vm, nic)| NetworkVm { vm, ip: nic.ip, mac: nic.mac })
                .collect();
            let bridge = n.bridge();
            let up = den_net::link::index(&bridge).is_some();
            NetworkInfo {
                name: n.name,
                subnet: n.subnet,
                isolated: n.isolated,
                bridge,
                host_ports: n.host_ports,
                up,
                vms,
            }
        })
        .collect();
    Ok(Json(nets))
}

/// `POST /api/v1/networks`: 201 with the network.
pub(super) async fn create(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    Body(spec): Body<NetworkSpec>,
) -> Result<(StatusCode, Json<NetworkSpec>), ApiError> {
    den.net.create_network(&den.store, &spec, den_net::By::Person).map_err(VmError::from)?;
    den.event(&caller.user, "network.created", &spec.name, &spec.subnet);
    Ok((StatusCode::CREATED, Json(spec)))
}

/// `DELETE /api/v1/networks/{name}`.
pub(super) async fn delete(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    den.net.delete_network(&den.store, &name, den_net::By::Person).map_err(VmError::from)?;
    den.event(&caller.user, "network.deleted", &name, "");
    Ok(Json(json!({"deleted": name})))
}

/// `GET /api/v1/isos`.
pub(super) async fn isos(State(den): State<Arc<Den>>) -> Json<Vec<Iso>> {
    Json(den.isos())
}

/// An ISO import.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportIso {
    name: String,
    path: String,
}

/// `POST /api/v1/isos` (admin): 202 with the import task (it copies a host file).
pub(super) async fn import_iso(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    Body(req): Body<ImportIso>,
) -> Result<axum::response::Response, ApiError> {
    Ok(super::vms::accepted(&den.import_iso(&req.name, &req.path, &caller.user)?, json!({})))
}

/// `DELETE /api/v1/isos/{name}` (admin).
pub(super) async fn delete_iso(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    den.delete_iso(&name, &caller.user)?;
    Ok(Json(json!({"deleted": name})))
}
