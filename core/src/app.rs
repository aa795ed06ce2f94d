//! Records of LPK apps that need nothing of the package format: an app's state and its audited
//! outbound connection attempts. The app record itself (which holds the checked package) is
//! den-lpk-host's.

use serde::{Deserialize, Serialize};

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
