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
pub mod server;
pub mod session;
mod ssh;
mod system;
mod users;
mod vms;
pub mod web;
mod ws;

pub use error::ApiError;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use den_vms::Den;
use serde::Deserialize;
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

/// The API's routes.
pub fn router(services: Services) -> Router {
    Router::new()
        .route("/api/v1/host", get(host))
        .route("/api/v1/host/metrics", get(metrics::host))
        .route("/api/v1/images", get(images::list))
        .route("/api/v1/docker", get(docker::status))
        .route("/api/v1/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/api/v1/vms", get(vms::list).post(vms::create))
        .route("/api/v1/vms/:name", get(vms::get).delete(vms::delete))
        .route("/api/v1/vms/:name/start", post(vms::start))
        .route("/api/v1/vms/:name/stop", post(vms::stop))
        .route("/api/v1/vms/:name/reboot", post(vms::reboot))
        .route("/api/v1/vms/:name/exec", post(vms::exec))
        .route("/api/v1/vms/:name/files", get(files::get).put(files::put))
        .route("/api/v1/vms/:name/pause", post(vms::pause))
        .route("/api/v1/vms/:name/resume", post(vms::resume))
        .route("/api/v1/vms/:name/metrics", get(metrics::vm))
        .route("/api/v1/vms/:name/console", get(vms::console))
        .route("/api/v1/vms/:name/console/ws", get(ws::console))
        .route("/api/v1/vms/:name/console/ticket", post(session::console_ticket))
        .route("/api/v1/vms/:name/snapshots", get(vms::snapshots).post(vms::snapshot))
        .route("/api/v1/vms/:name/snapshots/:snap", axum::routing::delete(vms::delete_snapshot))
        .route("/api/v1/vms/:name/snapshots/:snap/rollback", post(vms::rollback))
        .route("/api/v1/vms/:name/clone", post(vms::clone))
        .route("/api/v1/vms/:name/resize", post(vms::resize))
        .route("/api/v1/apps", get(apps::list).post(apps::install))
        .route("/api/v1/apps/:name", get(apps::get).delete(apps::uninstall))
        .route("/api/v1/apps/:name/traffic", get(apps::traffic))
        .route("/api/v1/apps/:name/logs", get(apps::logs))
        .route("/api/v1/apps/:name/start", post(apps::start))
        .route("/api/v1/apps/:name/stop", post(apps::stop))
        .route("/api/v1/system", get(system::status))
        .route("/api/v1/system/update", post(system::update))
        .route("/api/v1/system/rollback", post(system::rollback))
        .route("/api/v1/isos", get(networks::isos).post(networks::import_iso))
        .route("/api/v1/isos/:name", axum::routing::delete(networks::delete_iso))
        .route("/api/v1/networks", get(networks::list).post(networks::create))
        .route("/api/v1/networks/:name", axum::routing::delete(networks::delete))
        .route("/api/v1/login", post(users::login))
        .route("/api/v1/whoami", get(users::whoami))
        .route("/api/v1/session", get(session::current).post(session::login).delete(session::logout))
        .route("/api/v1/users", get(users::list).post(users::create))
        .route("/api/v1/users/:name", axum::routing::delete(users::delete))
        .route("/api/v1/users/:name/password", axum::routing::put(users::password))
        .route("/api/v1/users/:name/role", axum::routing::put(users::role))
        .route("/api/v1/users/:name/grants/:vm", axum::routing::put(users::grant))
        .route("/api/v1/users/:name/keys", get(users::keys).post(users::add_key))
        .route("/api/v1/users/:name/keys/:fingerprint", axum::routing::delete(users::delete_key))
        .route("/api/v1/tokens", get(users::tokens).post(users::create_token))
        .route("/api/v1/tokens/:id", axum::routing::delete(users::revoke_token))
        .route("/api/v1/ssh/sessions", get(ssh::sessions))
        .route("/api/v1/ssh/sessions/:id/recording", get(ssh::recording))
        .route("/api/v1/tasks", get(tasks))
        .route("/api/v1/tasks/:id", get(task))
        .route("/api/v1/tasks/:id/cancel", post(cancel_task))
        .route("/api/v1/events", get(events))
        .route("/api/v1/events/ws", get(ws::events))
        .fallback(|| async {
            ApiError::new(axum::http::StatusCode::NOT_FOUND, "no_route", "no such API path; see /api/v1/host")
        })
        .layer(axum::middleware::from_fn_with_state(services.clone(), auth::authenticate))
        .layer(axum::middleware::from_fn(error::json_errors))
        .with_state(services)
}

async fn host(State(den): State<Arc<Den>>) -> Json<serde_json::Value> {
    let kvm = den_kvm_probe::kvm_kind(std::path::Path::new("/sys"), std::path::Path::new("/dev/kvm"));
    let mut warnings = vec![];
    if kvm != den_kvm_probe::KvmKind::Hardware {
        warnings.push(
            "this host's /dev/kvm cannot run Linux guests: VMs run on QEMU with TCG (software emulation), slowly"
                .to_string(),
        );
    }
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "kvm": format!("{kvm:?}"),
        "max_cpus": den.limits.max_cpus,
        "max_memory_mib": den.limits.max_memory_mib,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "usage": den.metrics.host_now(),
        "warnings": warnings,
    }))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<u32>,
}

async fn tasks(State(den): State<Arc<Den>>, Query(q): Query<Limit>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::to_value(den.store.tasks(q.limit.unwrap_or(50).min(1000))?).unwrap_or_default()))
}

async fn task(State(den): State<Arc<Den>>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::to_value(den.store.task(&id)?).unwrap_or_default()))
}

async fn cancel_task(
    State(den): State<Arc<Den>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> Result<(axum::http::StatusCode, Json<serde_json::Value>), ApiError> {
    den.cancel_task(&id, &caller.user)?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(serde_json::json!({"task": id, "cancelling": true}))))
}

#[derive(Deserialize)]
struct After {
    after: Option<i64>,
    limit: Option<u32>,
    /// The newest `tail` events instead (still oldest first).
    tail: Option<u32>,
}

async fn events(
    State(den): State<Arc<Den>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Query(q): Query<After>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut ev = match q.tail {
        Some(n) => den.store.recent_events(n.min(5000))?,
        None => den.store.events(q.after.unwrap_or(0), q.limit.unwrap_or(500).min(5000))?,
    };
    let mut filter = auth::EventFilter::new(&caller);
    ev.retain(|e| filter.allows(&den, e));
    Ok(Json(serde_json::to_value(ev).unwrap_or_default()))
}
