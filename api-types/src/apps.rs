//! `/api/v1/apps`: what a package check found, an install's answer, and the fields of an installed
//! app that clients rely on.
//!
//! The full app record (`den_lpk_host::AppRecord`) holds the image run configuration of
//! den-images, so it is not defined here; [`AppSummary`] is the part of it that clients read (all
//! fields a record always has), and a den-api test checks that a record reads as one.

use crate::Accepted;
use serde::{Deserialize, Serialize};

pub use den_core::app::{AppState, TrafficRecord};
pub use den_lpk::meta::Permissions;
pub use den_lpk::route::Route;
pub use den_lpk::Signed;

/// `POST /api/v1/apps?dry_run=true` (and the `check` of an install): what the package check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageCheck {
    /// Package id.
    pub package: String,
    /// Version.
    pub version: String,
    /// LPK format: 2 for a tar, or a zip with `package.yml` or images; else 1.
    pub format: u8,
    /// Display name, when the package gives one.
    pub name: Option<String>,
    /// Whether and by whom it is signed.
    pub signed: Signed,
    /// What it asks for.
    pub permissions: Permissions,
    /// The app's subdomain.
    pub subdomain: String,
    /// Its services' names.
    pub services: Vec<String>,
    /// Its HTTP routes.
    pub routes: Vec<Route>,
    /// How many files the package holds.
    pub files: usize,
    /// Bytes its files unpack to.
    pub unpacked_bytes: u64,
    /// What Den runs differently from the manifest.
    pub warnings: Vec<String>,
}

/// `POST /api/v1/apps` (202): the install or upgrade task, the app's package id and what the
/// check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInstalled {
    /// The task.
    #[serde(flatten)]
    pub task: Accepted,
    /// The app's package id.
    pub app: String,
    /// What the package check found.
    pub check: PackageCheck,
}

/// `GET /api/v1/apps` (each) and `GET /api/v1/apps/{name}`: the fields of an installed app that
/// clients rely on. The answers hold more (the checked plan, the services' VMs, the network).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSummary {
    /// Package id.
    pub package: String,
    /// Version.
    pub version: String,
    /// The app's subdomain label: it answers on `<subdomain>.<box domain>`.
    pub subdomain: String,
    /// Where it is in its life.
    pub state: AppState,
    /// Whether and by whom it is signed.
    pub signed: Signed,
    /// Packets of its traffic that were not logged because it sent more than the audit logs
    /// (only in `GET /api/v1/apps/{name}`).
    #[serde(default)]
    pub traffic_unlogged: u64,
}
