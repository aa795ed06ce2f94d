//! `/api/v1/images`: what VMs can be made from.

use super::ApiError;
use axum::extract::State;
use axum::Json;
use den_vms::{Den, VmError};
use serde_json::{json, Value};
use std::sync::Arc;

/// Whether an image is Den's own for LPK apps (the service runtime and the images dend makes
/// for services), not one to make VMs from.
pub(super) fn for_apps_only(name: &str) -> bool {
    name == den_lpk_host::images::RUNTIME || name.starts_with("lpk-")
}

/// `GET /api/v1/images`: the images VMs can be made from, with their root disk size.
pub(super) async fn list(State(den): State<Arc<Den>>) -> Result<Json<Value>, ApiError> {
    let store = den_images::Store::open(&den.paths.images).map_err(|e| VmError::Images(e.to_string()))?;
    let images = store.images().map_err(|e| VmError::Images(e.to_string()))?;
    let list: Vec<Value> = images
        .into_iter()
        .filter(|i| !for_apps_only(&i.name))
        .map(|i| {
            let root = i.artifacts.get("rootfs").and_then(|d| store.get(d, false).ok());
            let root_mib = root.and_then(|p| std::fs::metadata(p).ok()).map(|m| m.len().div_ceil(1 << 20));
            json!({"name": i.name, "kernel_release": i.kernel_release, "built": i.built,
                   "root_disk_mib": root_mib})
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn app_images_are_not_offered_for_vms() {
        assert!(super::for_apps_only("app") && super::for_apps_only("lpk-0123abcd"));
        assert!(!super::for_apps_only("base") && !super::for_apps_only("docker"));
    }
}
