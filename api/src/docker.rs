//! `/api/v1/docker`: where the Docker socket is and how its sandbox VM is doing.

use super::Services;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

/// `GET /api/v1/docker`: the socket, the sandbox VM and its state, and the policy's settings.
pub(super) async fn status(State(services): State<Services>) -> Json<Value> {
    let Some(d) = services.docker.as_ref() else {
        return Json(json!({"enabled": false}));
    };
    let state = services.den.store.vm(&d.vm).map(|v| v.state.as_str()).unwrap_or("not created yet");
    Json(json!({
        "enabled": true,
        "socket": d.socket,
        "vm": d.vm,
        "state": state,
        "allow": d.allow,
        "share": d.share,
        "idle_stop_secs": d.idle_stop_secs,
    }))
}
