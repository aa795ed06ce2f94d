//! The REST API under `/api/v1/` (served on the local Unix socket; HTTPS comes next). Every
//! long operation answers 202 with the task's location; errors are JSON `{code, message, field?}`.

mod apps;
pub mod auth;
mod body;
mod docker;
mod error;
mod files;
mod images;
#[cfg(test)]
mod matrix;
mod metrics;
mod networks;
pub mod openapi;
mod routes;
pub mod server;
pub mod session;
mod ssh;
mod system;
mod tasks;
mod users;
mod vms;
pub mod web;
mod ws;

pub use error::ApiError;

use axum::extract::State;
use axum::{Json, Router};
use den_vms::Den;
use std::sync::Arc;

pub use den_auth::Caller;
pub use den_auth::Transport;

/// What the API's handlers reach: the VM service and the parts that run beside it. Handlers that
/// need only the VM service take `State<Arc<Den>>`.
#[derive(Clone)]
pub struct Services {
    /// The VM service.
    pub den: Arc<Den>,
    /// The LPK app service.
    pub apps: Arc<den_lpk_host::Apps>,
    /// Users, logins, tokens and sessions.
    pub accounts: Arc<den_auth::Accounts>,
    /// The business OS's supervisor, when `[system]` is configured.
    pub system: Option<Arc<den_system::System>>,
    /// The Docker bridge's settings, when it is on.
    pub docker: Option<den_dockerd_bridge::Status>,
}

impl Services {
    /// The VM and app services and the accounts (no business OS, no Docker bridge).
    pub fn new(den: Arc<Den>, apps: Arc<den_lpk_host::Apps>, accounts: Arc<den_auth::Accounts>) -> Services {
        Services { den, apps, accounts, system: None, docker: None }
    }
}

impl axum::extract::FromRef<Services> for Arc<den_auth::Accounts> {
    fn from_ref(services: &Services) -> Arc<den_auth::Accounts> {
        services.accounts.clone()
    }
}

impl axum::extract::FromRef<Services> for Arc<den_lpk_host::Apps> {
    fn from_ref(services: &Services) -> Arc<den_lpk_host::Apps> {
        services.apps.clone()
    }
}

impl axum::extract::FromRef<Services> for Arc<Den> {
    fn from_ref(services: &Services) -> Arc<Den> {
        services.den.clone()
    }
}

/// The API's router: every route of the one table (`routes.rs`), behind authentication.
pub fn router(services: Services) -> Router {
    let mut router = Router::new();
    for (path, methods) in routes::method_routers() {
        router = router.route(path, methods);
    }
    router
        .fallback(|| async {
            ApiError::new(axum::http::StatusCode::NOT_FOUND, "no_route", "no such API path; see /api/v1/host")
        })
        .layer(axum::middleware::from_fn_with_state(services.clone(), auth::authenticate))
        .layer(axum::middleware::from_fn(error::json_errors))
        .with_state(services)
}

/// `GET /api/v1/host`: version, KVM kind, limits, usage and warnings.
pub(crate) async fn host(State(den): State<Arc<Den>>) -> Json<den_api_types::HostInfo> {
    let kvm = den_kvm_probe::kvm_kind(std::path::Path::new("/sys"), std::path::Path::new("/dev/kvm"));
    let mut warnings = vec![];
    if kvm != den_kvm_probe::KvmKind::Hardware {
        warnings.push(
            "this host's /dev/kvm cannot run Linux guests: VMs run on QEMU with TCG (software emulation), slowly"
                .to_string(),
        );
    }
    Json(den_api_types::HostInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        kvm: format!("{kvm:?}"),
        max_cpus: den.limits.max_cpus,
        max_memory_mib: den.limits.max_memory_mib,
        cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        usage: den.metrics.host_now(),
        warnings,
    })
}
