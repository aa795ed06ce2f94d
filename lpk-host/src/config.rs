//! `[apps]` of den.toml: trusted package keys, the box's domain and name, package size.

use serde::Deserialize;
use std::path::PathBuf;

/// `[apps]`: LPK packages and how apps are reached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppsConfig {
    /// Public keys trusted to sign packages: `<name>.pub` files (base64 or hex ed25519).
    pub keys_dir: PathBuf,
    /// The box's domain: apps answer on `<subdomain>.<box_domain>` (`LAZYCAT_BOX_DOMAIN`).
    pub box_domain: String,
    /// The box's name (`LAZYCAT_BOX_NAME`; default: the host name).
    pub box_name: Option<String>,
    /// Largest package accepted, in MiB.
    pub max_package_mib: u64,
}

impl Default for AppsConfig {
    fn default() -> Self {
        AppsConfig {
            keys_dir: PathBuf::from("/etc/den/lpk-keys"),
            box_domain: "den.internal".into(),
            box_name: None,
            max_package_mib: 8192,
        }
    }
}
