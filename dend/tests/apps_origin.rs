//! Origins are boundaries: an app never shares an origin with Den's console. Against a real
//! dend, with the real `den` CLI, `curl` and Debian's Chromium (`web/e2e/app_origin.test.mjs`):
//! an app whose page is a script attacking Den is installed; an admin logged in to the console
//! opens it (the old `/apps/<subdomain>/` address redirects to the app's own origin), logs in to
//! the app, and the script's attempts to read the session, call the API (with and without a
//! CSRF value), plant Den's cookie and open the events WebSocket all fail, while the app works.
//! With `curl`: the console's session cookie never authenticates a request to an app, the
//! password is asked on the console's origin (never the app's) by a page that runs no script,
//! and the old address redirects.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_lpk::pack::{Item, Packer};
use den_tests::dend::Dend;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The attacking page: every attempt's outcome ends up in `window.denDone`.
const EVIL_PAGE: &str = r#"<!doctype html><meta charset=utf-8><title>evil</title><h1>evil app</h1><pre id=out>running</pre>
<script>
(async () => {
  const DEN = `https://box.test:${location.port}`;
  const r = {};
  const attempt = async (name, f) => { try { r[name] = String(await f()); } catch (e) { r[name] = 'blocked: ' + e.name; } };
  await attempt('read_session', async () => {
    const x = await fetch(DEN + '/api/v1/session', { credentials: 'include' });
    return 'read ' + x.status + ' ' + (await x.text());
  });
  await attempt('own_origin_session', async () => {
    const x = await fetch('/api/v1/session', { credentials: 'include' });
    return 'status ' + x.status + ' ' + (await x.text()).slice(0, 200);
  });
  await attempt('create_admin_no_csrf', async () => {
    const body = JSON.stringify({ name: 'mallory', password: 'mallory-pw-1', role: 'admin' });
    const x = await fetch(DEN + '/api/v1/users', { method: 'POST', credentials: 'include', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body });
    return 'sent ' + x.type;
  });
  await attempt('create_admin_with_csrf', async () => {
    const body = JSON.stringify({ name: 'mallory2', password: 'mallory-pw-1', role: 'admin' });
    const x = await fetch(DEN + '/api/v1/users', { method: 'POST', credentials: 'include', headers: { 'content-type': 'application/json', 'x-csrf-token': 'guess' }, body });
    return 'status ' + x.status;
  });
  await attempt('set_cookie', async () => {
    document.cookie = '__Host-den_session=planted; Secure; Path=/';
    document.cookie = '__Host-den_session=planted; Secure; Path=/; Domain=box.test';
    document.cookie = 'den_session=planted; Secure; Path=/; Domain=box.test';
    return document.cookie;
  });
  await attempt('own_login_page', async () => {
    const x = await fetch('/__den/login', { redirect: 'manual' });
    return x.type + ' ' + x.status + ' ' + (await x.text());
  });
  await attempt('events_ws', () => new Promise((resolve) => {
    const ws = new WebSocket(`wss://box.test:${location.port}/api/v1/events/ws`);
    ws.onopen = () => resolve('open');
    ws.onmessage = (m) => resolve('message ' + String(m.data).slice(0, 100));
    ws.onerror = () => resolve('blocked: error');
    ws.onclose = (e) => resolve('blocked: closed ' + e.code);
    setTimeout(() => resolve('blocked: no answer'), 5000);
  }));
  document.getElementById('out').textContent = JSON.stringify(r);
  window.denDone = r;
})();
</script>
"#;

fn evil_package() -> Packer {
    let manifest = "lzc-sdk-version: '0.1'
package: cloud.den.test.evil
version: 1.0.0
name: Evil
application:
  subdomain: evil
  routes:
    - /=file:///lzcapp/pkg/content/www
";
    let mut p = Packer::new();
    p.file("manifest.yml", manifest);
    let page = Item::File { name: "www/index.html".into(), data: EVIL_PAGE.as_bytes().to_vec(), mode: 0o644 };
    p.content(&[Item::Dir("www".into()), page]).expect("content");
    p
}

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web")
}

#[test]
fn an_apps_page_cannot_reach_the_console() {
    let work = tempfile::tempdir().unwrap();
    let config = "[docker]\nenabled = false\n[apps]\nbox_domain = \"box.test\"\n";
    let d = Dend::start_with_config(Path::new(env!("CARGO_BIN_EXE_dend")), config);
    let (s, b) = d.api(
        "POST",
        "/api/v1/users",
        json!({"name": "ada", "password": "ada-password-1", "role": "admin"}).to_string().as_bytes(),
    );
    assert_eq!(s, 201, "{b}");
    let lpk = den_tests::lpk::write(&evil_package(), work.path(), "evil-v1.0.0.lpk", true);
    let (code, out, err) = d.den(&["app", "install", lpk.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}\n{}", d.log());
    let port = d.https_addr().rsplit(':').next().unwrap_or_default().to_string();

    // The console's session cookie is not an identity on an app's origin.
    let (s, login, head) =
        d.https("POST", "/api/v1/session", None, Some(r#"{"user":"ada","password":"ada-password-1"}"#));
    assert_eq!(s, 200, "{login}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    assert!(cookie.starts_with("__Host-den_session=den_"), "{cookie}");
    let curl = |host: &str, path: &str, extra: &[&str]| -> (String, String) {
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "20", "-D", "/dev/stderr", "-o", "-"])
            .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
            .args(extra)
            .arg(format!("https://{host}:{port}{path}"))
            .output()
            .expect("curl");
        (String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    };
    let (_, head) = curl("evil.box.test", "/", &["-H", &format!("Cookie: {cookie}")]);
    assert!(head.starts_with("HTTP/1.1 401"), "the console's cookie opens nothing here: {head}");
    let (_, head) = curl("evil.box.test", "/__den/login?next=/x", &[]);
    let to_console = format!("location: https://box.test:{port}/__den/app-login?app=evil.box.test&next=/x");
    assert!(head.starts_with("HTTP/1.1 303") && head.contains(&to_console), "no password on the app's origin: {head}");
    let (_, head) =
        curl("box.test", "/__den/app-login?app=evil.box.test&next=/x&state=0123456789abcdef0123456789abcdef", &[]);
    assert!(head.to_ascii_lowercase().contains("content-security-policy: default-src 'none'"), "{head}");
    let (_, head) = curl("box.test", "/apps/evil/x?y=1", &[]);
    assert!(head.contains(&format!("location: https://evil.box.test:{port}/x?y=1")), "{head}");

    let out = Command::new("node")
        .args(["--test", "--test-reporter=spec", "e2e/app_origin.test.mjs"])
        .current_dir(web_dir())
        .env("DEN_PORT", &port)
        .env("DEN_ADMIN", "ada:ada-password-1")
        .output()
        .expect("node runs (make deps installs Node.js)");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{report}");
    assert!(out.status.success(), "the browser test failed:\n{report}\ndend log:\n{}", d.log());

    // Seen from dend: no user was made, and the refusals were Den's.
    let (_, users) = d.api("GET", "/api/v1/users", b"");
    let names: Vec<&str> = users.as_array().into_iter().flatten().filter_map(|u| u["name"].as_str()).collect();
    assert_eq!(names, ["ada"], "{users}");
}
