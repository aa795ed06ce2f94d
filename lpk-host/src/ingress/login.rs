//! Logins for apps on their own origins, where the console's session cookie (host only) is
//! never sent. A password is never typed on an app's origin, where the app's own scripts (a
//! service worker, a window it opened) could read it: `/__den/login` there sends the browser to
//! [`CONSOLE_LOGIN`] on the console's origin (the bare box domain), which takes the Den
//! password and sends the browser back to the app's [`CALLBACK`] with a one-time code
//! ([`Codes`]: one app, one use, [`CODE_TTL`]). The callback sets an app cookie for that host
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
/// The cookie that ties a login under way to the browser that started it (on the app's
/// origin): a code is good only with the same value.
pub const STATE_COOKIE: &str = "__Host-den_state";
/// Where a login starts, on the app's origin (it redirects to [`CONSOLE_LOGIN`]).
pub const LOGIN: &str = "/__den/login";
/// The login form, on the console's origin.
pub const CONSOLE_LOGIN: &str = "/__den/app-login";
/// Where the console's login form sends the browser back to, on the app's origin.
pub const CALLBACK: &str = "/__den/callback";
/// Logs out of an app, on the app's origin.
pub const LOGOUT: &str = "/__den/logout";
/// How long a login's one-time code is good for.
pub const CODE_TTL: Duration = Duration::from_secs(60);
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

/// Random keys, each naming a user's login to one app until a deadline, at most
/// [`MAX_SESSIONS`] (the one closest to its end goes first).
#[derive(Default)]
struct Logins(Mutex<HashMap<String, Session>>);

impl Logins {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new key for `user` and `package`, good for `ttl`.
    fn add(&self, user: &str, package: &str, ttl: Duration) -> Result<String, String> {
        let mut b = [0u8; 32];
        den_auth::token::getrandom(&mut b)?;
        let key = hex::encode(b);
        let mut m = self.lock();
        let now = Instant::now();
        m.retain(|_, s| s.until > now);
        if m.len() >= MAX_SESSIONS {
            if let Some(oldest) = m.iter().min_by_key(|(_, s)| s.until).map(|(k, _)| k.clone()) {
                m.remove(&oldest);
            }
        }
        m.insert(key.clone(), Session { user: user.into(), package: package.into(), until: now + ttl });
        Ok(key)
    }

    /// The user of a live `key` for `package` (removed first when `spend`).
    fn user(&self, key: &str, package: &str, spend: bool) -> Option<String> {
        let mut m = self.lock();
        let s = if spend { m.remove(key)? } else { m.get(key)?.clone() };
        (s.package == package && s.until > Instant::now()).then_some(s.user)
    }
}

/// Live app sessions.
#[derive(Default)]
pub struct Sessions(Logins);

impl Sessions {
    /// A new session of `user` for `package`: its cookie value.
    pub fn open(&self, user: &str, package: &str) -> Result<String, String> {
        self.0.add(user, package, TTL)
    }

    /// The user of a live session for `package`.
    pub fn user(&self, token: &str, package: &str) -> Option<String> {
        self.0.user(token, package, false)
    }

    /// Ends a session.
    pub fn close(&self, token: &str) {
        self.0.lock().remove(token);
    }
}

/// One-time codes that carry a login from the console's origin to one app's.
#[derive(Default)]
pub struct Codes(Logins);

impl Codes {
    /// A new code for `user` logging in to `package` from the browser that holds `state`.
    pub fn issue(&self, user: &str, package: &str, state: &str) -> Result<String, String> {
        self.0.add(user, &format!("{package}\n{state}"), CODE_TTL)
    }

    /// The user of `code` when it is live, for `package` and from the browser that holds
    /// `state`; the code is spent either way.
    pub fn take(&self, code: &str, package: &str, state: &str) -> Option<String> {
        self.0.user(code, &format!("{package}\n{state}"), true)
    }
}

/// A new login state: 128 random bits as hex.
pub fn new_state() -> Result<String, String> {
    let mut b = [0u8; 16];
    den_auth::token::getrandom(&mut b)?;
    Ok(hex::encode(b))
}

/// Whether `state` is one [`new_state`] could have made.
pub fn valid_state(state: &str) -> bool {
    state.len() == 32 && state.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The `Set-Cookie` value of a login state (an empty one with `max_age` 0 clears it).
pub fn state_cookie(state: &str, max_age: u64) -> String {
    format!("{STATE_COOKIE}={state}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax")
}

impl Codes {
    /// How many codes are live (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().len()
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

/// What Den's own pages (the login form, redirects) may do: no script, no frames, forms only to
/// this origin (the login form adds the one app it sends the browser back to).
pub const PAGE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the login form is for: the app (its name, subdomain and origin) and where to go after.
pub struct Form<'a> {
    /// The app's name, as people know it.
    pub app_name: &'a str,
    /// The app's subdomain (posted back with the form).
    pub subdomain: &'a str,
    /// The app's origin (`https://sub.domain:port`): the one place the form may lead to.
    pub app_origin: &'a str,
    /// The path on the app to open after logging in (already [`safe_next`]).
    pub next: &'a str,
    /// The login state of the browser that began (already [`valid_state`]).
    pub state: &'a str,
}

/// The login form, on the console's origin.
pub fn page(form: &Form<'_>, error: Option<&str>) -> Response<Body> {
    let err = error.map(|e| format!("<p class=err>{}</p>", esc(e))).unwrap_or_default();
    let html = format!(
        "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>\
         <title>Log in to {name}</title>\
         <style>body{{font:16px system-ui;max-width:22em;margin:4em auto}}input{{width:100%;margin:.3em 0;padding:.4em}}.err{{color:#b00}}</style>\
         <h1>{name}</h1><p>Log in with your Den account.</p>{err}\
         <form method=post action='{action}'><input name=user placeholder=User autocomplete=username required>\
         <input name=password type=password placeholder=Password autocomplete=current-password required>\
         <input type=hidden name=app value='{sub}'><input type=hidden name=next value='{next}'>\
         <input type=hidden name=state value='{state}'><input type=submit value='Log in'></form>",
        name = esc(form.app_name),
        action = CONSOLE_LOGIN,
        sub = esc(form.subdomain),
        next = esc(form.next),
        state = esc(form.state),
    );
    let mut r = Response::new(Full::new(Bytes::from(html)).map_err(|e| match e {}).boxed_unsync());
    if error.is_some() {
        *r.status_mut() = StatusCode::UNAUTHORIZED;
    }
    let h = r.headers_mut();
    h.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/html; charset=utf-8"));
    // Chromium holds a form's redirect to the `form-action` list too: the app's origin is on it.
    let csp = PAGE_CSP.replace("form-action 'self'", &format!("form-action 'self' {}", form.app_origin));
    if let Ok(v) = hyper::header::HeaderValue::from_str(&csp) {
        h.insert(hyper::header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-store"));
    r
}

/// A redirect to `to`, setting `cookies`.
pub fn redirect(to: &str, cookies: &[String]) -> Response<Body> {
    let mut r = plain(StatusCode::SEE_OTHER, "");
    if let Ok(v) = hyper::header::HeaderValue::from_str(to) {
        r.headers_mut().insert(hyper::header::LOCATION, v);
    }
    for c in cookies.iter().filter_map(|c| hyper::header::HeaderValue::from_str(c).ok()) {
        r.headers_mut().append(hyper::header::SET_COOKIE, c);
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
        let codes = Codes::default();
        let st = new_state().unwrap();
        assert!(valid_state(&st) && !valid_state("x") && !valid_state(&st.to_uppercase()));
        let c = codes.issue("ann", "a.one", &st).unwrap();
        assert_eq!(codes.take(&c, "a.two", &st), None, "a code is for one app...");
        assert_eq!(codes.take(&c, "a.one", &st), None, "...and spent by any try");
        let c = codes.issue("ann", "a.one", &st).unwrap();
        assert_eq!(codes.take(&c, "a.one", &new_state().unwrap()), None, "...for the browser that began");
        let c = codes.issue("ann", "a.one", &st).unwrap();
        assert_eq!(codes.take(&c, "a.one", &st).as_deref(), Some("ann"));
        assert_eq!(codes.take(&c, "a.one", &st), None, "once");
        assert_eq!(codes.len(), 0);
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
