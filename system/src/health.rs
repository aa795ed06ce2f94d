//! One health check of the business OS: its agent must answer, and the optional HTTP check
//! inside the guest (reached through the agent, no guest port opened) must answer 2xx or 3xx.

use den_agent_proto::ForwardTarget;
use den_core::system::Check;
use den_core::vm::VmRecord;
use den_vms::Den;
use std::time::{Duration, Instant};

/// How long each part of a check may take.
const LIMIT: Duration = Duration::from_secs(5);

/// `http_check` of `[system]`: a port and path inside the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    /// The host name sent.
    pub host: String,
    /// Guest port (on its loopback).
    pub port: u16,
    /// Path and query.
    pub path: String,
}

impl HttpCheck {
    /// Parses `http://127.0.0.1:8080/healthz` (http only; the host is sent, the connection
    /// always goes to the guest's loopback).
    pub fn parse(url: &str) -> Result<HttpCheck, String> {
        match den_lpk::route::parse_upstream(url).map_err(|e| format!("`{url}` {e}"))? {
            den_lpk::route::Upstream::Http { scheme, host, port, path } if scheme == "http" => {
                Ok(HttpCheck { host, port, path })
            }
            _ => Err(format!("`{url}` is not an http:// URL (like http://127.0.0.1:8080/healthz)")),
        }
    }
}

/// Checks the running VM `vm`.
pub(crate) async fn check(den: &Den, vm: &VmRecord, http: Option<&HttpCheck>) -> Check {
    let t = Instant::now();
    let agent = match tokio::time::timeout(LIMIT, den.agent(vm)).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return fail(false, format!("agent: {e}")),
        Err(_) => return fail(false, format!("agent: no connection within {} s", LIMIT.as_secs())),
    };
    let info = match tokio::time::timeout(LIMIT, agent.info()).await {
        Ok(Ok(i)) => i,
        Ok(Err(e)) => return fail(false, format!("agent: {e}")),
        Err(_) => return fail(false, format!("agent: no answer within {} s", LIMIT.as_secs())),
    };
    let mut detail = format!("agent answered in {} ms (up {:.0} s)", t.elapsed().as_millis(), info.uptime_secs);
    if let Some(h) = http {
        let target = ForwardTarget::Tcp { host: "127.0.0.1".into(), port: h.port };
        let ask = async {
            let io = agent.forward_io(target).await.map_err(|e| e.to_string())?;
            den_vms::guest_http::get_status(io, &h.host, &h.path, LIMIT).await
        };
        let status = tokio::time::timeout(LIMIT, ask)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", LIMIT.as_secs())));
        let url = format!("http://{}:{}{}", h.host, h.port, h.path);
        match status {
            Ok(s) if (200..400).contains(&s) => detail.push_str(&format!("; GET {url}: {s}")),
            Ok(s) => return fail(true, format!("{detail}; GET {url}: {s}")),
            Err(e) => return fail(true, format!("{detail}; GET {url}: {e}")),
        }
    }
    Check { ok: true, agent: true, detail }
}

fn fail(agent: bool, detail: String) -> Check {
    Check { ok: false, agent, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_checks_are_plain_http_urls() {
        let h = HttpCheck::parse("http://127.0.0.1:8080/healthz?full=1").unwrap();
        assert_eq!((h.host.as_str(), h.port, h.path.as_str()), ("127.0.0.1", 8080, "/healthz?full=1"));
        assert_eq!(HttpCheck::parse("http://localhost").unwrap().port, 80);
        assert!(HttpCheck::parse("https://127.0.0.1/").unwrap_err().contains("not an http:// URL"));
        assert!(HttpCheck::parse("file:///lzcapp/x").is_err());
        assert!(HttpCheck::parse("ftp://x/").is_err());
    }
}
