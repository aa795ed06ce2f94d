//! `/api/v1/docker`: where the Docker socket is and how its sandbox VM is doing.

use super::Services;
use axum::extract::State;
use axum::Json;
use den_api_types::{DockerBridge, DockerStatus};

/// `GET /api/v1/docker`: the socket, the sandbox VM and its state, and the policy's settings.
pub(super) async fn status(State(services): State<Services>) -> Json<DockerStatus> {
    let Some(d) = services.docker.as_ref() else {
        return Json(DockerStatus { enabled: false, bridge: None });
    };
    let state = services.den.store.vm(&d.vm).map(|v| v.state.as_str()).unwrap_or("not created yet");
    Json(DockerStatus {
        enabled: true,
        bridge: Some(DockerBridge {
            socket: d.socket.clone(),
            vm: d.vm.clone(),
            state: state.to_string(),
            allow: d.allow.clone(),
            share: d.share.clone(),
            idle_stop_secs: d.idle_stop_secs,
        }),
    })
}
