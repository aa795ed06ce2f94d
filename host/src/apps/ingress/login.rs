//! Logins for apps on their own origins, where the console's session cookie (host only) is
//! never sent: `/__den/login` takes a Den user's password and sets an app cookie for that host
//! alone (`__Host-`: the browser refuses it from any other host, and it cannot be given a
//! `Domain`). The cookie names an in-memory session bound to one app; it is never the user's
//! Den token, and apps never see it (the proxy strips it).

use super::{plain, Body};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The app cookie's name.
pub const COOKIE: &str = "__Host-den_app";
/// Where the login page is, on the app's origin.
pub const LOGIN: &str = "/__den/login";
/// How long an app login lasts.
pub const TTL: Duration = Duration::from_secs(12 * 3600);
/// Most live app sessions (the oldest go first).
const MAX_SESSIONS: usize = 10_000;

#[derive(Clone)]
struct Session {
    user: String,
    package: String,
    until: Instant,
}

/// Live app sessions.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session of `user` for `package`: its cookie value.
    pub fn open(&self, user: &str, package: &str) -> Result<String, String> {
        let mut b = [0u8; 32];
        crate::auth::token::getrandom(&mut b)?;
        let token = hex::encode(b);
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        m.retain(|_, s| s.until > now);
        if m.len() >= MAX_SESSIONS {
            if let Some(oldest) = m.iter().min_by_key(|(_, s)| s.until).map(|(k, _)| k.clone()) {
                m.remove(&oldest);
            }
        }
        m.insert(token.clone(), Session { user: user.into(), package: package.into(), until: now + TTL });
        Ok(token)
    }

    /// The user of a live session for `package`.
    pub fn user(&self, token: &str, package: &str) -> Option<String> {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.get(token).filter(|s| s.package == package && s.until > Instant::now()).map(|s| s.user.clone())
    }

    /// Ends a session.
    pub fn close(&self, token: &str) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(token);
    }
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A `next` that stays on this origin: an absolute path, not `//host`, `/\\host` or a URL, with
/// no whitespace or control character anywhere (browsers drop tabs and newlines from a
/// `Location`, so `/\t/evil.example` would become `//evil.example`). Anything else is `/`.
pub fn safe_next(next: &str) -> String {
    let bytes = next.as_bytes();
    let ok = bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && !next.chars().any(|c| c == '\\' || c.is_whitespace() || c.is_control());
    if ok {
        next.to_string()
    } else {
        "/".to_string()
    }
}

/// What Den's own pages on an app's origin (the login form, redirects) may do: no script, no
/// frames, forms only to this origin.
pub const PAGE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The login form.
pub fn page(app_name: &str, action: &str, next: &str, error: Option<&str>) -> Response<Body> {
    let err = error.map(|e| format!("<p class=err>{}</p>", esc(e))).unwrap_or_default();
    let html = format!(
        "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>\
         <title>Log in to {name}</title>\
         <style>body{{font:16px system-ui;max-width:22em;margin:4em auto}}input{{width:100%;margin:.3em 0;padding:.4em}}.err{{color:#b00}}</style>\
         <h1>{name}</h1><p>Log in with your Den account.</p>{err}\
         <form method=post action='{action}'><input name=user placeholder=User autocomplete=username required>\
         <input name=password type=password placeholder=Password autocomplete=current-password required>\
         <input type=hidden name=next value='{next}'><input type=submit value='Log in'></form>",
        name = esc(app_name),
        action = esc(action),
        next = esc(next),
    );
    let mut r = Response::new(Full::new(Bytes::from(html)).map_err(|e| match e {}).boxed_unsync());
    if error.is_some() {
        *r.status_mut() = StatusCode::UNAUTHORIZED;
    }
    let h = r.headers_mut();
    h.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(hyper::header::CONTENT_SECURITY_POLICY, hyper::header::HeaderValue::from_static(PAGE_CSP));
    h.insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-store"));
    r
}

/// A redirect to `to`, optionally setting a cookie.
pub fn redirect(to: &str, cookie: Option<String>) -> Response<Body> {
    let mut r = plain(StatusCode::SEE_OTHER, "");
    if let Ok(v) = hyper::header::HeaderValue::from_str(to) {
        r.headers_mut().insert(hyper::header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| hyper::header::HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(hyper::header::SET_COOKIE, c);
    }
    r
}

/// The `Set-Cookie` value of an app session (an empty `token` with `max_age` 0 clears it).
pub fn set_cookie(token: &str, max_age: u64) -> String {
    format!("{COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_per_app_and_next_stays_here() {
        let s = Sessions::default();
        let t = s.open("ann", "a.one").unwrap();
        assert_eq!(s.user(&t, "a.one").as_deref(), Some("ann"));
        assert_eq!(s.user(&t, "a.two"), None, "an app's cookie does not open another app");
        s.close(&t);
        assert_eq!(s.user(&t, "a.one"), None);
        for good in ["/x?y=1", "/", "/a/b%20c"] {
            assert_eq!(safe_next(good), good);
        }
        for bad in [
            "//evil.example/",
            "/\\evil.example",
            "/\t/evil.example",
            "\t//evil.example",
            "/x\n/y",
            "https://evil.example/",
            "javascript:alert(1)",
            "evil.example",
            "",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad:?}");
        }
        assert!(esc("<a href='x'>").contains("&lt;a href=&#39;x&#39;&gt;"));
    }
}
