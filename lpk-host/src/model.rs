//! What an installed app is: its record (package, version, state, the checked plan). The plan is
//! stored as checked at install, so running an app never re-reads its package. Its state and its
//! traffic records are den-core's (the CLI reads them too).

pub use den_core::app::{AppState, TrafficRecord};
use den_lpk::{AppPlan, PackageMeta, Signed};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An installed app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    /// Package id (unique).
    pub package: String,
    /// Version.
    pub version: String,
    /// What the package says about itself.
    pub meta: PackageMeta,
    /// The app's subdomain label (unique among apps): it answers on `<subdomain>.<box domain>`.
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

#[cfg(any(test, feature = "testkit"))]
impl AppRecord {
    /// A stopped app `package` from a manifest (`images.lock` alias `box`), for tests.
    ///
    /// # Panics
    /// When the manifest is not valid: tests give fixed ones.
    #[allow(clippy::expect_used, reason = "a test fixture from a fixed manifest")]
    pub fn fixture(package: &str, manifest: &str) -> AppRecord {
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
