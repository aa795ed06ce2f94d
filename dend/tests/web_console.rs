//! The web console: browser sessions over real HTTPS with `curl` (the cookie's flags, CSRF on
//! every change, same-origin WebSockets, the embedded page and its headers), then the whole
//! console in Debian's Chromium driven by playwright-core (`web/e2e/console.test.mjs`) against
//! this dend and a real QEMU guest: log in, create a VM, see it run without a reload, type
//! `uname -a` in its console, stop and delete it; a wrong password; a viewer without
//! destructive buttons; screenshots of each page on a desktop and a phone, kept in
//! `target/web-screenshots/`.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::images;
use den_tests::netns::NetNs;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `curl` against dend's HTTPS port with a cookie jar: (status, body, response headers).
struct Browser<'a> {
    d: &'a Dend,
    jar: PathBuf,
}

impl Browser<'_> {
    fn call(&self, method: &str, path: &str, headers: &[&str], body: Option<&Value>) -> (u16, Value, String) {
        let head = self.jar.with_extension("headers");
        let mut c = Command::new("curl");
        c.args(["-sk", "-o", "-", "-w", "\n%{http_code}", "--max-time", "30", "-X", method]);
        c.arg("-D").arg(&head).arg("-b").arg(&self.jar).arg("-c").arg(&self.jar);
        for h in headers {
            c.args(["-H", h]);
        }
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "--data-binary", &b.to_string()]);
        }
        let out = c.arg(format!("https://{}{path}", self.d.https_addr())).output().expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let headers = std::fs::read_to_string(&head).unwrap_or_default();
        (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null), headers)
    }

    /// The status of a WebSocket upgrade of `path` sent with the cookie and `origin`.
    fn websocket(&self, path: &str, origin: &str) -> u16 {
        let mut c = Command::new("curl");
        c.args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", "-b"]).arg(&self.jar);
        for h in ["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13"] {
            c.args(["-H", h]);
        }
        c.args(["-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "-H", &format!("Origin: {origin}")]);
        let out = c.arg(format!("https://{}{path}", self.d.https_addr())).output().expect("curl runs");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
    }
}

fn add_user(d: &Dend, name: &str, password: &str, role: &str) {
    let body = json!({"name": name, "password": password, "role": role}).to_string();
    let (code, resp) = d.api("POST", "/api/v1/users", body.as_bytes());
    assert_eq!(code, 201, "{resp}");
}

#[test]
fn browser_sessions_use_a_strict_cookie_and_csrf() {
    let d = Dend::start(Path::new(env!("CARGO_BIN_EXE_dend")));
    add_user(&d, "ada", "ada-password-1", "admin");
    let jar = d.dir.path().join("cookies");
    let b = Browser { d: &d, jar };

    // The page itself, with its security headers; deep links get the page too.
    let (code, _, head) = b.call("GET", "/", &["Accept-Encoding: gzip"], None);
    let lower = head.to_lowercase();
    assert_eq!(code, 200, "{head}");
    assert!(lower.contains("content-security-policy: default-src 'self'"), "{head}");
    assert!(lower.contains("content-encoding: gzip") && lower.contains("x-frame-options: deny"), "{head}");
    assert_eq!(b.call("GET", "/vms/web1", &[], None).0, 200);
    assert_eq!(b.call("GET", "/assets/missing.js", &[], None).0, 404);
    assert_eq!(b.call("GET", "/api/v1/nonsense", &[], None).0, 401, "the API still answers under /api/");

    // A wrong password, then a login that sets an HttpOnly, Secure, SameSite=Strict cookie.
    let (code, resp, _) = b.call("POST", "/api/v1/session", &[], Some(&json!({"user": "ada", "password": "nope"})));
    assert_eq!(code, 401, "{resp}");
    assert!(resp["message"].as_str().unwrap_or("").contains("wrong user name or password"), "{resp}");
    let login = json!({"user": "ada", "password": "ada-password-1"});
    let (code, session, head) = b.call("POST", "/api/v1/session", &[], Some(&login));
    assert_eq!(code, 200, "{session}");
    let cookie = head.lines().find(|l| l.to_lowercase().starts_with("set-cookie:")).unwrap_or_default();
    for flag in ["__Host-den_session=den_", "HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert_eq!((session["user"].as_str(), session["role"].as_str()), (Some("ada"), Some("admin")));
    let csrf = session["csrf"].as_str().expect("a CSRF value").to_string();

    // Reads need only the cookie; changes also need the CSRF header, which must be the right one.
    let (code, again, _) = b.call("GET", "/api/v1/session", &[], None);
    assert_eq!((code, again["csrf"].as_str()), (200, Some(csrf.as_str())), "{again}");
    assert_eq!(b.call("GET", "/api/v1/vms", &[], None).0, 200);
    let token = json!({"name": "from-the-page"});
    let (code, resp, _) = b.call("POST", "/api/v1/tokens", &[], Some(&token));
    assert_eq!(code, 403, "no CSRF header: {resp}");
    assert!(resp["message"].as_str().unwrap_or("").contains("x-csrf-token"), "{resp}");
    let (code, _, _) = b.call("POST", "/api/v1/tokens", &["X-CSRF-Token: 00ff"], Some(&token));
    assert_eq!(code, 403, "a wrong CSRF value");
    let with_csrf = format!("X-CSRF-Token: {csrf}");
    let (code, resp, _) = b.call("POST", "/api/v1/tokens", &[&with_csrf], Some(&token));
    assert_eq!(code, 201, "{resp}");

    // A WebSocket with the cookie from another site is refused; from the page's origin it opens
    // (curl does not speak WebSocket: the 101 before it gives up is what matters).
    assert_eq!(b.websocket("/api/v1/events/ws?after=0", "https://evil.example"), 403);
    assert_eq!(b.websocket("/api/v1/events/ws?after=0", &format!("https://{}", d.https_addr())), 101);

    // Console tickets need the operator role on the VM; a made-up ticket opens nothing.
    assert_eq!(b.call("POST", "/api/v1/vms/nope/console/ticket", &[&with_csrf], None).0, 404);
    let (code, _, _) = b.call("GET", "/api/v1/vms/nope/console/ws?ticket=abc", &[], None);
    assert_eq!(code, 401, "a made-up ticket");

    // Logging out revokes the session: the same cookie no longer works.
    let old_cookie = std::fs::read_to_string(&b.jar).unwrap();
    let (code, _, head) = b.call("DELETE", "/api/v1/session", &[&with_csrf], None);
    assert_eq!(code, 200);
    assert!(head.contains("__Host-den_session=;") && head.contains("Max-Age=0"), "the cookie is cleared: {head}");
    std::fs::write(&b.jar, old_cookie).unwrap();
    let (code, resp, _) = b.call("GET", "/api/v1/session", &[], None);
    assert_eq!(code, 401, "{resp}");
    assert!(resp["message"].as_str().unwrap_or("").contains("log in again"), "{resp}");
}

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web")
}

#[test]
fn the_web_console_in_chromium() {
    let store = images::shared_store();
    let base = images::build_builtin(&store, "base");
    // The VM the browser makes joins the default network: dend, and the browser, run in a
    // namespace of their own.
    let ns = NetNs::new("web");
    let d = Dend::start_in(Path::new(env!("CARGO_BIN_EXE_dend")), &ns);
    add_user(&d, "ada", "ada-password-1", "admin");
    add_user(&d, "vic", "vic-password-1", "viewer");
    // A VM the viewer looks at (never started: what matters is which buttons they get).
    let (code, _, err) =
        d.den(&["vm", "create", "keep1", "--image", "base", "--memory", "256", "--engine", "qemu", "--no-network"]);
    assert_eq!(code, 0, "{err}");
    d.wait_state("keep1", "stopped", std::time::Duration::from_secs(120));

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/web-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let out = ns
        .command("node")
        .args(["--test", "--test-reporter=spec", "e2e/console.test.mjs"])
        .current_dir(web_dir())
        .env("DEN_URL", format!("https://{}", d.https_addr()))
        .env("DEN_ADMIN", "ada:ada-password-1")
        .env("DEN_VIEWER", "vic:vic-password-1")
        .env("DEN_VIEWED_VM", "keep1")
        .env("DEN_KERNEL", &base.kernel_release)
        .env("DEN_SCREENSHOTS", &shots)
        .output()
        .expect("node runs (make deps installs Node.js)");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{report}");
    assert!(out.status.success(), "the browser test failed:\n{report}\ndend log:\n{}", d.log());

    // What the browser did, seen from dend: the VM it made is gone, the events say who did it.
    let (code, _) = d.api("GET", "/api/v1/vms/webvm1", b"");
    assert_eq!(code, 404, "the VM deleted in the browser is gone");
    let (_, events) = d.api("GET", "/api/v1/events?limit=5000", b"");
    let by_ada = |kind: &str| {
        events
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["kind"] == kind && e["user"] == "ada" && e["target"] == "webvm1")
    };
    for kind in ["vm.created", "vm.started", "vm.console_attached", "vm.stopped", "vm.deleted"] {
        assert!(by_ada(kind), "{kind} by ada");
    }
    // A user with a grant on one VM only follows that VM's events, and no one else's.
    add_user(&d, "gus", "gus-password-1", "viewer");
    let (code, resp) = d.api("PUT", "/api/v1/users/gus/role", br#"{"role": null}"#);
    assert_eq!(code, 200, "{resp}");
    let (code, resp) = d.api("PUT", "/api/v1/users/gus/grants/keep1", br#"{"role": "viewer"}"#);
    assert_eq!(code, 200, "{resp}");
    let (code, login, _) =
        d.https("POST", "/api/v1/login", None, Some(r#"{"user":"gus","password":"gus-password-1"}"#));
    assert_eq!(code, 200, "{login}");
    let (code, seen, _) = d.https("GET", "/api/v1/events?limit=5000", login["token"].as_str(), None);
    assert_eq!(code, 200, "{seen}");
    let targets: Vec<&str> = seen.as_array().into_iter().flatten().filter_map(|e| e["target"].as_str()).collect();
    assert!(!targets.is_empty() && targets.iter().all(|t| *t == "keep1"), "only keep1's events: {targets:?}");

    let n = std::fs::read_dir(&shots).map(|r| r.count()).unwrap_or(0);
    assert!(n >= 20, "screenshots of each page on desktop and phone: {n} in {}", shots.display());
}
