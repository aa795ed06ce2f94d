//! HTTP routes: the request goes to `127.0.0.1:<port>` in the service's VM through its agent, on
//! a fresh upstream connection, with hop-by-hop headers dropped, the caller's identity headers
//! set (and any a client sent removed), bodies streamed both ways, and `101` upgrades
//! (WebSockets) spliced.

use super::Body;
use crate::{AppRecord, Apps};
use http_body_util::BodyExt;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// Headers that belong to one connection, not the request.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Who is asking, as the app is told.
pub struct Identity {
    /// Den user, if logged in.
    pub user: Option<String>,
    /// `ADMIN` or `NORMAL`.
    pub role: &'static str,
    /// The client's address.
    pub client: Option<String>,
    /// The host the client asked for.
    pub host: String,
}

/// Rewrites the client's headers for the app.
pub fn upstream_headers(h: &mut HeaderMap, id: &Identity, host: &str) {
    let upgrade = h.get(hyper::header::UPGRADE).cloned();
    for name in HOP_BY_HOP {
        h.remove(*name);
    }
    if let Some(u) = upgrade {
        h.insert(hyper::header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(hyper::header::UPGRADE, u);
    }
    let spoofable: Vec<HeaderName> = h.keys().filter(|k| set_by_den_only(k.as_str())).cloned().collect();
    for k in spoofable {
        h.remove(k);
    }
    super::strip_den_credentials(h);
    let set = |h: &mut HeaderMap, k: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    if let Some(u) = &id.user {
        set(h, "x-hc-user-id", u);
        set(h, "x-hc-user-role", id.role);
    }
    set(h, "x-forwarded-proto", "https");
    set(h, "x-forwarded-host", &id.host);
    let mut forwarded = format!("host=\"{}\";proto=https", id.host.replace(['"', '\\'], ""));
    if let Some(c) = &id.client {
        set(h, "x-forwarded-for", c);
        set(h, "x-real-ip", c);
        forwarded = format!("for=\"{}\";{forwarded}", if c.contains(':') { format!("[{c}]") } else { c.clone() });
    }
    set(h, "forwarded", &forwarded);
    set(h, "host", host);
}

/// Whether a request header (by name, lowercase) is one only Den sets: identity headers in any
/// spelling (`X-HC-User-Id`, `x_hc_user_id`), and the proxy headers (`Forwarded`,
/// `X-Forwarded-*`, `X-Real-IP`). Servers such as nginx and CGI map `_` to `-`, so both count.
pub fn set_by_den_only(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace('_', "-");
    n.starts_with("x-hc-") || n == "forwarded" || n.starts_with("x-forwarded-") || n == "x-real-ip"
}

/// Cookie names an app may not set: Den's own (whatever the case).
fn dens_cookie(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    n.starts_with("__host-den") || n.starts_with("den_") || n.starts_with("__secure-den")
}

/// Filters an app's `Set-Cookie` headers: Den's cookie names are dropped, and a `Domain`
/// attribute is removed, so an app's cookie stays on the app's own host and never reaches the
/// console or another app.
pub fn app_cookies(h: &mut HeaderMap) {
    let set: Vec<HeaderValue> = h.get_all(hyper::header::SET_COOKIE).iter().cloned().collect();
    h.remove(hyper::header::SET_COOKIE);
    for v in set {
        let Ok(text) = v.to_str() else { continue };
        let mut parts = text.split(';');
        let first = parts.next().unwrap_or("");
        let name = first.split('=').next().unwrap_or("");
        if name.trim().is_empty() || dens_cookie(name) {
            continue;
        }
        let kept: Vec<&str> = std::iter::once(first)
            .chain(parts.filter(|a| !a.trim().to_ascii_lowercase().starts_with("domain")))
            .collect();
        if let Ok(v) = HeaderValue::from_str(&kept.join(";")) {
            h.append(hyper::header::SET_COOKIE, v);
        }
    }
}

fn bad_gateway(msg: String) -> Response<Body> {
    super::plain(StatusCode::BAD_GATEWAY, &msg)
}

/// Sends `req` (already rewritten) to `service:port` of `app`.
pub async fn forward(apps: &Apps, app: &AppRecord, service: &str, port: u16, mut req: Request<Body>) -> Response<Body> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let io = match apps.app_connect(app, service, port).await {
        Ok(io) => io,
        Err(e) => {
            return bad_gateway(format!("den: the app's service `{service}` cannot be reached on port {port}: {e}"))
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
        Ok(x) => x,
        Err(e) => return bad_gateway(format!("den: service `{service}`: {e}")),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%e, "app upstream connection");
        }
    });
    let mut resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => return bad_gateway(format!("den: service `{service}` did not answer: {e}")),
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            if let (Ok(client), Ok(guest)) = tokio::join!(client_upgrade, upstream_upgrade) {
                let (mut client, mut guest) = (TokioIo::new(client), TokioIo::new(guest));
                let _ = tokio::io::copy_bidirectional(&mut client, &mut guest).await;
            }
        });
    }
    for name in HOP_BY_HOP {
        resp.headers_mut().remove(*name);
    }
    app_cookies(resp.headers_mut());
    resp.map(|b| b.map_err(super::BodyError::new).boxed_unsync())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_cannot_be_forged() {
        let mut h = HeaderMap::new();
        h.insert("x-hc-user-id", HeaderValue::from_static("admin"));
        h.insert("X-HC-User-Role", HeaderValue::from_static("ADMIN"));
        h.insert("connection", HeaderValue::from_static("keep-alive"));
        h.insert("cookie", HeaderValue::from_static("__Host-den_session=den_x; theme=dark; __Host-den_app=abc"));
        for spoof in ["x_hc_user_id", "X-Hc-User-Role", "forwarded", "x-forwarded-for", "x_forwarded_host", "x-real-ip"]
        {
            h.insert(
                HeaderName::from_bytes(spoof.to_ascii_lowercase().as_bytes()).unwrap(),
                HeaderValue::from_static("admin"),
            );
        }
        h.insert("authorization", HeaderValue::from_static("Bearer den_0123456789abcdef_00"));
        let anon = Identity { user: None, role: "NORMAL", client: Some("10.0.0.9".into()), host: "a.box".into() };
        upstream_headers(&mut h, &anon, "a.box");
        assert!(h.get("x-hc-user-id").is_none() && h.get("x-hc-user-role").is_none());
        assert!(h.get("x_hc_user_id").is_none() && h.get("x_forwarded_host").is_none(), "every spelling");
        assert_eq!(h.get("forwarded").unwrap(), "for=\"10.0.0.9\";host=\"a.box\";proto=https");
        assert_eq!(h.get("x-real-ip").unwrap(), "10.0.0.9");
        assert!(h.get("connection").is_none());
        assert_eq!(h.get("cookie").unwrap(), "theme=dark", "Den's cookies never reach the app");
        assert!(h.get("authorization").is_none(), "nor Den's tokens");
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.9");
        let ann = Identity { user: Some("ann".into()), role: "NORMAL", client: None, host: "a.box".into() };
        upstream_headers(&mut h, &ann, "backend:9000");
        assert_eq!(h.get("x-hc-user-id").unwrap(), "ann");
        assert_eq!(h.get("host").unwrap(), "backend:9000");
    }

    #[test]
    fn app_cookies_stay_on_the_apps_host() {
        let mut h = HeaderMap::new();
        for c in [
            "sid=1; Path=/; Domain=box.test; HttpOnly",
            "__Host-den_session=evil; Path=/; Secure",
            "DEN_SESSION=evil",
            "theme=dark",
            "x=1; domain=.box.test; Secure",
        ] {
            h.append("set-cookie", HeaderValue::from_static(c));
        }
        app_cookies(&mut h);
        let got: Vec<&str> = h.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).collect();
        assert_eq!(got, ["sid=1; Path=/; HttpOnly", "theme=dark", "x=1; Secure"]);
    }
}
