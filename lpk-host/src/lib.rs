//! LPK apps: install a package (checked completely by `den-lpk` before anything is written),
//! keep its files in the layout of [`layout`], and remove it again. A crash at any step leaves
//! a state [`Apps::reconcile_apps`] finishes or undoes at the next start. [`Apps`] is the service:
//! it runs each app's services as VMs of the VM service, which knows nothing of apps.

pub mod audit;
mod config;
pub mod images;
pub mod ingress;
mod install;
pub mod layout;
mod model;
mod reach;
mod reconcile;
mod run;
pub mod services;
mod store;
mod upgrade;

pub use layout::AppDirs;
pub use model::{AppRecord, AppState, TrafficRecord};
pub use store::AppTable;

pub use config::AppsConfig;
use den_store::StoreError;
use den_vms::Den;
use std::sync::Arc;

/// The LPK app service: installs, runs, upgrades and removes apps over the VM service.
pub struct Apps {
    /// The VM service the apps' services run on.
    pub den: Arc<Den>,
    /// `[apps]` of den.toml.
    config: AppsConfig,
}

impl Apps {
    /// The app service over `den`, configured by `[apps]`.
    pub fn new(den: Arc<Den>, config: AppsConfig) -> Arc<Apps> {
        Arc::new(Apps { den, config })
    }
}

/// Errors of the app service, mapped to API errors by the API layer.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The package was refused.
    #[error(transparent)]
    Package(#[from] den_lpk::LpkError),
    /// No such app.
    #[error("app `{0}` not found; `den app ls` lists apps")]
    NotFound(String),
    /// The app is in a state (or has a name) that does not allow this.
    #[error("{0}")]
    Conflict(String),
    /// The state database failed.
    #[error(transparent)]
    Store(StoreError),
    /// Something on the host failed.
    #[error("{0}")]
    Failed(String),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> AppError {
        match e {
            StoreError::NotFound { kind: "app", name } => AppError::NotFound(name),
            StoreError::Exists { kind, name } => AppError::Conflict(match kind {
                "app" => format!("app `{name}` is installed already; `den app upgrade` installs a newer version"),
                _ => format!("the {kind} {name} is taken; an app's subdomain must be unique"),
            }),
            e => AppError::Store(e),
        }
    }
}

impl From<den_vms::VmError> for AppError {
    fn from(e: den_vms::VmError) -> AppError {
        AppError::Failed(e.to_string())
    }
}

/// Runs file work (unpacking, removing, writing an app's folders) on a blocking thread: it may
/// take long on a tree a guest filled, and must not hold up the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work).await.map_err(|e| format!("the app's file work stopped: {e}"))?
}
