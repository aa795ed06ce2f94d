//! What an installed app is: its record (package, version, state, the checked plan) and its
//! states. The plan is stored as checked at install, so running an app never re-reads its package.

use den_lpk::{AppPlan, PackageMeta, Signed};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where an app is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppState {
    /// Being unpacked (a crash here is rolled back at the next start).
    Installing,
    /// Installed, not running.
    Stopped,
    /// Its services are starting.
    Starting,
    /// Every service runs and the app answers.
    Running,
    /// Its services are stopping.
    Stopping,
    /// It failed to start or a service keeps failing; `error` says why.
    Failed,
    /// A newer version is being put in place.
    Upgrading,
    /// Being removed (a crash here is finished at the next start).
    Uninstalling,
}

impl AppState {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Installing => "installing",
            AppState::Stopped => "stopped",
            AppState::Starting => "starting",
            AppState::Running => "running",
            AppState::Stopping => "stopping",
            AppState::Failed => "failed",
            AppState::Upgrading => "upgrading",
            AppState::Uninstalling => "uninstalling",
        }
    }
}

/// An installed app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    /// Package id (unique).
    pub package: String,
    /// Version.
    pub version: String,
    /// What the package says about itself.
    pub meta: PackageMeta,
    /// `<subdomain>.<box domain>` (unique among apps).
    pub subdomain: String,
    /// State.
    pub state: AppState,
    /// LPK format (1 or 2).
    pub format: u8,
    /// Signature check result.
    pub signed: Signed,
    /// The checked manifest: services, routes, health checks.
    pub plan: AppPlan,
    /// Release directory name under the app's `releases/`.
    pub release: String,
    /// The release an upgrade replaced, kept until the new one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Service name -> VM name, once made.
    #[serde(default)]
    pub vms: BTreeMap<String, String>,
    /// Service name -> the image it runs and the image's run configuration.
    #[serde(default)]
    pub images: BTreeMap<String, super::images::ServiceImage>,
    /// The app's own network (isolated, audited).
    #[serde(default)]
    pub network: String,
    /// Who installed it.
    pub owner: String,
    /// Warnings from the install check (things Den runs differently).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The app as it was before an upgrade under way: what a failed or interrupted upgrade
    /// goes back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_upgrade: Option<Box<AppRecord>>,
    /// An uninstall under way keeps `/lzcapp/var`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_data: bool,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Install time (Unix seconds).
    pub installed: i64,
    /// Last change.
    pub updated: i64,
}

/// One outbound connection attempt of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficRecord {
    /// Sequence number.
    pub seq: i64,
    /// Unix seconds.
    pub time: i64,
    /// `tcp`, `udp`, `icmp`, ...
    pub proto: String,
    /// Source address (the service's).
    pub source: String,
    /// Destination address.
    pub dest: String,
    /// Destination port (0 where there is none).
    pub port: u16,
    /// `allowed` or `denied`.
    pub verdict: String,
}

#[cfg(test)]
impl AppRecord {
    /// A stopped app `package` on `subdomain` from a manifest (`images.lock` alias `box`).
    pub(crate) fn fixture(package: &str, manifest: &str) -> AppRecord {
        let m: den_lpk::manifest::Manifest = serde_yaml_ng::from_str(manifest).unwrap_or_default();
        let plan = den_lpk::AppPlan::from_manifest(&m, &["box".to_string()].into()).expect("a valid manifest");
        AppRecord {
            package: package.into(),
            version: "1.0.0".into(),
            meta: Default::default(),
            subdomain: plan.subdomain.clone(),
            state: AppState::Stopped,
            format: 2,
            signed: Signed::Unsigned,
            plan,
            release: "r1".into(),
            previous: None,
            vms: Default::default(),
            images: Default::default(),
            network: String::new(),
            owner: "root".into(),
            warnings: vec![],
            before_upgrade: None,
            keep_data: false,
            error: None,
            installed: 1,
            updated: 1,
        }
    }
}
