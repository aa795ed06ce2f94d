//! Reaching an app's services from the host: every connection goes through the service VM's
//! agent to `127.0.0.1:<port>` inside it (no guest port is opened to any network, and the same
//! path works for `exec://` programs that listen on loopback only).

use super::AppRecord;
use super::Apps;
use den_agent_proto::ForwardTarget;
use std::time::Duration;

/// The service a route host names: its first label (`backend`, `backend.<anything>`), or the
/// entry service for `127.0.0.1` and `localhost`.
pub(crate) fn service_of(host: &str) -> String {
    if host == "127.0.0.1" || host == "localhost" {
        return den_lpk::plan::ENTRY.into();
    }
    host.split('.').next().unwrap_or(host).to_string()
}

impl Apps {
    /// A stream to `127.0.0.1:port` in `service`'s VM.
    pub(super) async fn app_connect(
        &self,
        app: &AppRecord,
        service: &str,
        port: u16,
    ) -> Result<tokio::io::DuplexStream, String> {
        let vm = app.vms.get(service).ok_or_else(|| format!("the app has no service `{service}`"))?;
        let rec = self.den.store.vm(vm).map_err(|e| e.to_string())?;
        let agent = self.den.agent(&rec).await.map_err(|e| e.to_string())?;
        agent.forward_io(ForwardTarget::Tcp { host: "127.0.0.1".into(), port }).await.map_err(|e| e.to_string())
    }
}

/// The status of `GET url`, where the URL's host is a service of the app.
pub(super) async fn get_status(apps: &Apps, app: &AppRecord, url: &str) -> Result<u16, String> {
    // The manifest check parsed it already; https:// test URLs are not spoken here.
    let (host, port, path) = match den_lpk::route::parse_upstream(url)? {
        den_lpk::route::Upstream::Http { scheme, host, port, path } if scheme == "http" => (host, port, path),
        _ => return Err(format!("`{url}` is not an http:// URL")),
    };
    let io = apps.app_connect(app, &service_of(&host), port).await?;
    den_vms::guest_http::get_status(io, &host, &path, Duration::from_secs(10)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_services() {
        assert_eq!(service_of("backend.cloud.den.test.lzcapp"), "backend");
        assert_eq!(service_of("127.0.0.1"), "app");
    }
}
