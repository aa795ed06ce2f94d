//! The app ingress on dend's HTTPS port: requests for `<subdomain>.<box domain>`, each app's
//! own origin, go to the app's routes ([`route`]): reverse proxies to its services through their
//! agents ([`proxy`]), static files ([`files`]), and `exec://` programs. Nothing of an app is
//! served on the console's origin (`/apps/<subdomain>/` there redirects to the app's own), so
//! an app's scripts never share an origin with Den's API or cookies. Paths are normalised once
//! ([`path`]) before anything is decided. `public_path` is open to anyone; everything else needs
//! a Den user (an API token, or an app login ([`login`])) and reaches the app with identity
//! headers.

pub mod files;
pub mod login;
pub mod path;
pub mod proxy;
pub mod route;

use crate::AppTable;
use crate::{AppRecord, AppState, Apps};
use den_auth::policy::{self, Action};
use den_auth::transport::{cookie, cookies, SESSION_COOKIE};
use den_auth::Caller;
use den_auth::Transport;
use den_lpk::route::Upstream;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;

/// An error of a body going through the ingress (a concrete type: hyper's bounds on boxed
/// trait-object errors trip the compiler's lifetime inference in async code).
#[derive(Debug)]
pub struct BodyError(pub Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyError {}

impl BodyError {
    /// Wraps any error.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> BodyError {
        BodyError(Box::new(e))
    }
}

/// Bodies going through the ingress.
pub type Body = UnsyncBoxBody<Bytes, BodyError>;

/// A short text answer.
pub fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(text.to_string())).map_err(|e| match e {}).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// Removes Den's own credentials (session and app cookies, Den bearer tokens) from a request
/// before it reaches an app.
pub fn strip_den_credentials(h: &mut HeaderMap) {
    let kept: Vec<String> = cookies(h)
        .filter(|(name, _, _)| *name != SESSION_COOKIE && *name != login::COOKIE)
        .map(|(_, _, pair)| pair.to_string())
        .collect();
    h.remove(hyper::header::COOKIE);
    if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
        if !kept.is_empty() {
            h.insert(hyper::header::COOKIE, v);
        }
    }
    let den_bearer = h
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().strip_prefix("Bearer ").is_some_and(|t| t.trim().starts_with("den_")));
    if den_bearer {
        h.remove(hyper::header::AUTHORIZATION);
    }
}

/// The ingress, shared by every HTTPS connection.
pub struct Ingress {
    apps: Arc<Apps>,
    accounts: Arc<den_auth::Accounts>,
    sessions: login::Sessions,
    codes: login::Codes,
}

fn host_of<B>(req: &Request<B>) -> String {
    req.headers()
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

impl Ingress {
    /// The ingress of `den`.
    pub fn new(apps: Arc<Apps>, accounts: Arc<den_auth::Accounts>) -> Arc<Ingress> {
        Arc::new(Ingress { apps, accounts, sessions: login::Sessions::default(), codes: login::Codes::default() })
    }

    /// Whether a request is for an app (its host is under the box domain, or its path under
    /// `/apps/`) or the apps' login form; others go to the API and the console.
    pub fn claims<B>(&self, req: &Request<B>) -> bool {
        let host = route::bare_host(&host_of(req));
        let domain = self.apps.apps_cfg().box_domain.to_ascii_lowercase();
        let path = req.uri().path();
        host.ends_with(&format!(".{domain}")) || path.starts_with(route::PATH_PREFIX) || path == login::CONSOLE_LOGIN
    }

    /// Who is asking: a Den bearer token, or an app login (then `true`: a browser sends that
    /// cookie by itself). The console's session cookie is Den's alone and never stands for anyone
    /// here.
    fn caller<B>(&self, req: &Request<B>, package: &str) -> Option<(Caller, bool)> {
        let den = &self.apps.den;
        let bearer = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().strip_prefix("Bearer "))
            .map(str::trim);
        if let Some(t) = bearer {
            return self.accounts.verify_token(&den.store, t).ok().map(|c| (c, false));
        }
        let token = cookie(req.headers(), login::COOKIE)?;
        let user = self.sessions.user(token, package)?;
        self.accounts.caller(&den.store, &user).ok().map(|c| (c, true))
    }

    /// `/apps/<subdomain>/rest` on the console's origin: a redirect to the app's own origin.
    fn to_own_origin(&self, host: &str, path: &str, query: Option<&str>) -> Response<Body> {
        let Some((sub, rest)) = route::prefix_redirect(path) else {
            return plain(StatusCode::NOT_FOUND, "den: no such app");
        };
        let apps: Vec<AppRecord> = self.apps.den.store.apps().unwrap_or_default();
        if !apps.iter().any(|a| a.subdomain == sub) {
            return plain(
                StatusCode::NOT_FOUND,
                &format!("den: no app has the subdomain `{sub}`; `den app ls` lists apps"),
            );
        }
        let domain = self.apps.apps_cfg().box_domain.to_ascii_lowercase();
        let port = port_of(host);
        let query = query.map(|q| format!("?{q}")).unwrap_or_default();
        let to = format!("https://{sub}.{domain}{port}{rest}{query}");
        let mut r = plain(
            StatusCode::PERMANENT_REDIRECT,
            &format!("den: apps answer on their own origin now: {to} (the name must resolve to this box)"),
        );
        if let Ok(v) = HeaderValue::from_str(&to) {
            r.headers_mut().insert(hyper::header::LOCATION, v);
        }
        r
    }

    /// Answers a request the ingress [`Ingress::claims`].
    pub fn handle(
        self: Arc<Self>,
        req: axum::extract::Request,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = axum::response::Response> + Send>> {
        Box::pin(async move {
            let req = req.map(|b| b.map_err(BodyError::new).boxed_unsync());
            self.answer(req).await.map(axum::body::Body::new)
        })
    }

    async fn answer(&self, req: Request<Body>) -> Response<Body> {
        let apps: Vec<AppRecord> = self.apps.den.store.apps().unwrap_or_default();
        let cfg = self.apps.apps_cfg();
        let host = host_of(&req);
        let query = req.uri().query().map(str::to_string);
        let Some((app, _)) = route::locate(&apps, &cfg.box_domain, &host) else {
            if req.uri().path() == login::CONSOLE_LOGIN {
                return self.console_login(req, &apps).await;
            }
            if route::prefix_redirect(req.uri().path()).is_some() {
                return self.to_own_origin(&host, req.uri().path(), query.as_deref());
            }
            return plain(
                StatusCode::NOT_FOUND,
                &format!("den: no app answers on {}; `den app ls` lists apps", route::bare_host(&host)),
            );
        };
        let app_path = match path::normalize(req.uri().path()) {
            Ok(p) => p,
            Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("den: {e}")),
        };
        let app = app.clone();
        if [login::LOGIN, login::CALLBACK, login::LOGOUT].contains(&app_path.as_str()) {
            return self.app_login(&req, &app, &host, &app_path);
        }
        let caller = self.caller(&req, &app.package);
        if caller.as_ref().is_some_and(|(_, cookie)| *cookie) && !from_own_pages(&req, &host) {
            let origin =
                req.headers().get(hyper::header::ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or("another site");
            return plain(
                StatusCode::FORBIDDEN,
                &format!(
                    "den: {}: a change or WebSocket from {origin} with this app's login was refused: an app's login \
                     counts only on the app's own pages (call it from elsewhere with a Den API token)",
                    app.package
                ),
            );
        }
        let caller = caller.map(|(c, _)| c);
        if let Some(Err(e)) =
            caller.as_ref().map(|c| policy::authorize(c, &Action::UseApp { admin_only: app.meta.admin_only }))
        {
            return plain(StatusCode::FORBIDDEN, &format!("den: {}: {e}", app.package));
        }
        if caller.is_none() && (!route::is_public(&app, &app_path) || app.meta.admin_only) {
            let wants_page = req.method() == Method::GET
                && req
                    .headers()
                    .get(hyper::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("text/html"));
            if wants_page {
                let next = format!("{app_path}{}", query.as_deref().map(|q| format!("?{q}")).unwrap_or_default());
                let to = format!("{}?next={}", login::LOGIN, den_net_util::url::encode(&next));
                return login::redirect(&to, &[]);
            }
            return plain(
                StatusCode::UNAUTHORIZED,
                "den: log in first (a Den API token as `Authorization: Bearer`, or the app's login page)",
            );
        }
        if app.state != AppState::Running {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "den: app {} is {}; `den app start {}` starts it",
                    app.package,
                    app.state.as_str(),
                    app.subdomain
                ),
            );
        }
        let Some(target) = route::matches(&apps, &cfg.box_domain, &host, &app_path, query.as_deref()) else {
            return plain(StatusCode::NOT_FOUND, &format!("den: app {} has no route for {app_path}", app.package));
        };
        let r = app.plan.routes[target.route].clone();
        let client = client_ip(&req);
        let id = proxy::Identity {
            role: if caller.as_ref().is_some_and(Caller::is_admin) { "ADMIN" } else { "NORMAL" },
            user: caller.map(|c| c.user),
            client,
            host: route::bare_host(&host),
        };
        let (service, port, backend_host) = match &r.upstream {
            Upstream::File { dir } => {
                let tree = self.apps.app_dirs().route_tree(&app.package, dir);
                return files::serve(tree, &target.upstream_path, req.method() == Method::HEAD).await;
            }
            Upstream::Http { scheme, .. } if scheme == "https" => {
                return plain(
                    StatusCode::BAD_GATEWAY,
                    "den: https:// upstreams inside apps are not supported yet; use http://",
                );
            }
            Upstream::Http { host, port, .. } => (crate::reach::service_of(host), *port, format!("{host}:{port}")),
            Upstream::Exec { port, .. } => (den_lpk::plan::ENTRY.to_string(), *port, format!("127.0.0.1:{port}")),
        };
        let (mut parts, body) = req.into_parts();
        let upstream_host = if r.use_backend_host { backend_host } else { host.clone() };
        proxy::upstream_headers(&mut parts.headers, &id, &upstream_host);
        parts.uri = match target.upstream_path.parse() {
            Ok(u) => u,
            Err(_) => return plain(StatusCode::BAD_REQUEST, "den: bad path"),
        };
        proxy::forward(&self.apps, &app, &service, port, Request::from_parts(parts, body)).await
    }

    /// Den's pages on an app's origin: the start of a login (a redirect to the console's
    /// origin, where the password is typed), the callback with its one-time code, and logout.
    fn app_login<B>(&self, req: &Request<B>, app: &AppRecord, host: &str, app_path: &str) -> Response<Body> {
        let query = req.uri().query().unwrap_or("");
        let next = login::safe_next(&query_param(query, "next").unwrap_or_default());
        match app_path {
            login::LOGOUT if sent_by_another_site(req.headers()) => {
                plain(StatusCode::FORBIDDEN, "den: log out from the app's own pages (another site sent this)")
            }
            login::LOGOUT => {
                if let Some(t) = cookie(req.headers(), login::COOKIE) {
                    self.sessions.close(t);
                }
                login::redirect("/", &[login::set_cookie("", 0)])
            }
            login::CALLBACK => {
                let code = query_param(query, "code").unwrap_or_default();
                let state = cookie(req.headers(), login::STATE_COOKIE).unwrap_or_default();
                let Some(user) = self.codes.take(&code, &app.package, state) else {
                    return plain(
                        StatusCode::FORBIDDEN,
                        "den: this login link is spent, expired, for another app or from another browser; \
                         open the app again to log in",
                    );
                };
                match self.sessions.open(&user, &app.package) {
                    Ok(token) => login::redirect(
                        &next,
                        &[login::set_cookie(&token, login::TTL.as_secs()), login::state_cookie("", 0)],
                    ),
                    Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("den: {e}")),
                }
            }
            _ => {
                let state = match login::new_state() {
                    Ok(s) => s,
                    Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("den: {e}")),
                };
                let domain = self.apps.apps_cfg().box_domain.to_ascii_lowercase();
                let to = format!(
                    "https://{domain}{}{}?app={}&next={}&state={state}",
                    port_of(host),
                    login::CONSOLE_LOGIN,
                    den_net_util::url::encode(&route::bare_host(host)),
                    den_net_util::url::encode(&next)
                );
                login::redirect(&to, &[login::state_cookie(&state, login::CODE_TTL.as_secs() * 10)])
            }
        }
    }

    /// The apps' login form on the console's origin (`?app=<the app's host>&next=<path>`): a
    /// Den password there sends the browser back to the app with a one-time code.
    async fn console_login(&self, req: Request<Body>, apps: &[AppRecord]) -> Response<Body> {
        let domain = self.apps.apps_cfg().box_domain.to_ascii_lowercase();
        let port = port_of(&host_of(&req));
        let from = client_ip(&req).unwrap_or_else(|| "local".into());
        let post = req.method() == Method::POST;
        if post && !from_own_pages(&req, &host_of(&req)) {
            return plain(
                StatusCode::FORBIDDEN,
                "den: the login form was sent from another site; log in from Den's page",
            );
        }
        let fields = if post {
            match Limited::new(req.into_body(), 16 << 10).collect().await {
                Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "den: the login form is too large"),
            }
        } else {
            req.uri().query().unwrap_or("").to_string()
        };
        let app_host = route::bare_host(&query_param(&fields, "app").unwrap_or_default());
        let Some((app, _)) = route::locate(apps, &domain, &app_host) else {
            return plain(
                StatusCode::NOT_FOUND,
                &format!("den: no app answers on `{app_host}`; open the app's own address to log in"),
            );
        };
        let origin = format!("https://{app_host}{port}");
        let next = login::safe_next(&query_param(&fields, "next").unwrap_or_default());
        let state = query_param(&fields, "state").unwrap_or_default();
        if !login::valid_state(&state) {
            return plain(StatusCode::BAD_REQUEST, "den: this login has no valid state; open the app again to log in");
        }
        let name = app.meta.name.clone().unwrap_or_else(|| app.package.clone());
        let form =
            login::Form { app_name: &name, subdomain: &app_host, app_origin: &origin, next: &next, state: &state };
        if !post {
            return login::page(&form, None);
        }
        let user = query_param(&fields, "user").unwrap_or_default();
        let pw = query_param(&fields, "password").unwrap_or_default();
        if let Err(e) = self.accounts.check_password(&self.apps.den.store, &user, &pw, &from).await {
            return login::page(&form, Some(&e.to_string()));
        }
        let allowed = match self.accounts.caller(&self.apps.den.store, &user) {
            Ok(c) => policy::authorize(&c, &Action::UseApp { admin_only: app.meta.admin_only }).map_err(|e| e.0),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = allowed {
            return login::page(&form, Some(&e));
        }
        match self.codes.issue(&user, &app.package, &state) {
            Ok(code) => {
                let to = format!("{origin}{}?code={code}&next={}", login::CALLBACK, den_net_util::url::encode(&next));
                login::redirect(&to, &[])
            }
            Err(e) => plain(StatusCode::SERVICE_UNAVAILABLE, &format!("den: {e}")),
        }
    }
}

/// Whether a request a browser may have sent by itself (a change: any method but `GET`, `HEAD`
/// and `OPTIONS`; or a WebSocket) came from the pages of `host` itself. Every app is on the
/// same site as every other (`*.<box domain>`), so `SameSite` cookies do not keep one app's
/// pages from sending requests to another with its login: the browser's `Sec-Fetch-Site` and
/// `Origin` do. A client that sends neither is no browser acting for someone else.
pub fn from_own_pages<B>(req: &Request<B>, host: &str) -> bool {
    let h = req.headers();
    let quiet = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if quiet && !h.contains_key(hyper::header::UPGRADE) {
        return true;
    }
    if sent_by_another_site(h) {
        return false;
    }
    match h.get(hyper::header::ORIGIN) {
        None => true,
        Some(o) => o.to_str().is_ok_and(|o| o.eq_ignore_ascii_case(&format!("https://{host}"))),
    }
}

/// Whether the browser says another site (or another origin of this one) sent the request
/// (`Sec-Fetch-Site` other than `same-origin` or `none`).
fn sent_by_another_site(h: &HeaderMap) -> bool {
    h.get("sec-fetch-site").is_some_and(|v| !matches!(v.to_str().unwrap_or("?"), "same-origin" | "none"))
}

/// The address of a remote client (none for a local one).
fn client_ip<B>(req: &Request<B>) -> Option<String> {
    match req.extensions().get::<Transport>()? {
        Transport::Remote(a) => Some(a.ip().to_string()),
        Transport::Local(_) => None,
    }
}

/// The `:port` of a `Host` value, or nothing.
fn port_of(host: &str) -> String {
    let port = host.rsplit_once(':').map(|(_, p)| p).filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    port.map(|p| format!(":{p}")).unwrap_or_default()
}

/// The first value of `key` in a query string or form body, decoded.
fn query_param(query: &str, key: &str) -> Option<String> {
    den_net_util::url::query_values(query, key).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn an_apps_login_counts_only_on_its_own_pages() {
        let host = "two.box.test:8006";
        let own = [("origin", "https://two.box.test:8006"), ("sec-fetch-site", "same-origin")];
        assert!(from_own_pages(&req("POST", &own), host));
        assert!(from_own_pages(&req("GET", &[("sec-fetch-site", "same-site")]), host), "a link from a sibling");
        assert!(from_own_pages(&req("POST", &[]), host), "no browser");
        for bad in [
            &[("origin", "https://evil.box.test:8006"), ("sec-fetch-site", "same-site")][..],
            &[("origin", "https://evil.box.test:8006")],
            &[("sec-fetch-site", "cross-site")],
            &[("origin", "null")],
            &[("origin", "http://two.box.test:8006")],
        ] {
            assert!(!from_own_pages(&req("POST", bad), host), "{bad:?}");
            assert!(!from_own_pages(&req("DELETE", bad), host), "{bad:?}");
        }
        let ws = [("upgrade", "websocket"), ("origin", "https://evil.box.test:8006")];
        assert!(!from_own_pages(&req("GET", &ws), host), "a WebSocket from a sibling app");
        assert_eq!(
            (port_of("a.b:8006"), port_of("a.b"), port_of("[::1]")),
            (":8006".into(), String::new(), String::new())
        );
        assert_eq!(query_param("a=1&next=%2Fx&next=y", "next").as_deref(), Some("/x"));
    }
}
