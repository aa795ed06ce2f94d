//! LPK apps running as microVMs under QEMU (TCG here), through the real `den` CLI: the v2
//! sample's two services from an embedded busybox image start in dependency order with health
//! gating, reach each other by service name on the app's own network, see `/lzcapp` and the
//! injected environment as the brief says, keep `/lzcapp/var` across a restart; the v1 sample's
//! `exec://` program runs in its entry service. The host's ingress serves both on their own
//! origins, `<subdomain>.<box domain>` (`/apps/<subdomain>/` on the console's host only redirects
//! there): proxied routes, static files,
//! `exec://`, public paths, logins (tokens and the app login page) and identity headers that
//! clients cannot forge. Everything goes on uninstall.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::lpk::{hello_v1, two_v2, two_v2_checked, write, HELLO, TWO};
use den_tests::netns::NetNs;
use serde_json::Value;
use std::path::Path;

fn den_ok(d: &Dend, args: &[&str]) -> String {
    let (code, out, err) = d.den(args);
    assert_eq!(code, 0, "den {args:?}:\n{out}{err}\n--- dend log:\n{}", d.log());
    out
}

fn sh(d: &Dend, vm: &str, script: &str) -> String {
    den_ok(d, &["vm", "exec", vm, "--", "sh", "-c", script])
}

/// An ingress request from inside the namespace: (status, body, headers).
fn get(ns: &NetNs, d: &Dend, host: &str, path: &str, extra: &[&str]) -> (u16, String, String) {
    d.ingress(ns, host, path, extra)
}

fn app(d: &Dend, name: &str) -> Value {
    serde_json::from_str(&den_ok(d, &["--json", "app", "show", name])).unwrap()
}

#[test]
fn apps_run_as_microvms() {
    let store = den_tests::images::shared_store();
    for image in ["base", "app"] {
        den_tests::images::build_builtin(&store, image);
    }
    let work = tempfile::tempdir().unwrap();
    let ns = NetNs::new("apprun");
    let lan = NetNs::new("lanrun");
    ns.veth("up0", "192.0.2.2/24", &lan, "lan0", "192.0.2.7/24");
    let config = "[docker]\nenabled = false\n[apps]\nbox_domain = \"box.test\"\nbox_name = \"den1\"\n";
    let d = Dend::start_in_with_config(Path::new(env!("CARGO_BIN_EXE_dend")), &ns, config);

    // v2: install starts it; `start` ends only once backend is healthy and both routes answer.
    let two = write(&two_v2("1.0.0", &[]).unwrap(), work.path(), "two-v1.0.0.lpk", false);
    let out = den_ok(&d, &["app", "install", two.to_str().unwrap()]);
    assert!(out.contains("started cloud.den.test.two"), "{out}");
    assert_eq!(app(&d, TWO)["state"], "running");

    // Service names resolve on the app's network; backend's setup_script wrote its page into a
    // bind of /lzcapp/var.
    let page = sh(&d, "two-web", "wget -q -O - http://backend:9000/");
    assert_eq!(page.trim(), "backend-backend");
    // The brief's paths and variables.
    let ls = sh(&d, "two-backend", "ls /lzcapp");
    assert_eq!(ls.split_whitespace().collect::<Vec<_>>(), ["cache", "pkg", "run", "var"]);
    assert!(sh(&d, "two-backend", "cat /lzcapp/run/manifest.yml").contains("subdomain: two"));
    assert!(sh(&d, "two-web", "cat /lzcapp/pkg/content/web/index.html").contains("two 1.0.0"));
    let ro = sh(&d, "two-web", "touch /lzcapp/pkg/x 2>&1; echo rc=$?");
    assert!(ro.contains("Read-only file system") && !ro.contains("rc=0"), "{ro}");
    let env = sh(&d, "two-web", "tr '\\0' '\\n' < /proc/$(pidof httpd)/environ | sort");
    for want in [
        "LAZYCAT_APP_ID=cloud.den.test.two",
        "LAZYCAT_APP_DOMAIN=two.box.test",
        "LAZYCAT_APP_SERVICE_NAME=web",
        "LAZYCAT_BOX_DOMAIN=box.test",
        "LAZYCAT_BOX_NAME=den1",
        "ROLE=web",
        "BACKEND=http://backend:9000/",
    ] {
        assert!(env.lines().any(|l| l == want), "missing {want} in:\n{env}");
    }

    // The ingress: without a login, a non-public path is refused (a browser is sent to the app's
    // login page); with a Den token both routes answer, by host name and by path prefix.
    let (code, _, _) = get(&ns, &d, "two.box.test", "/", &[]);
    assert_eq!(code, 401);
    let (code, _, head) = get(&ns, &d, "two.box.test", "/x?y=1", &["-H", "Accept: text/html"]);
    assert!(code == 303 && head.contains("location: /__den/login?next=/x%3Fy%3D1"), "{code} {head}");
    let (s, b) = d.api("POST", "/api/v1/users", br#"{"name":"ann","password":"correct horse 1","role":"viewer"}"#);
    assert_eq!(s, 201, "{b}");
    let (s, b) = d.api("POST", "/api/v1/tokens", br#"{"name":"apps","user":"ann"}"#);
    assert_eq!(s, 201, "{b}");
    let bearer = format!("Authorization: Bearer {}", b["token"].as_str().unwrap());
    let (code, body, _) = get(&ns, &d, "two.box.test", "/", &["-H", &bearer]);
    assert_eq!((code, body.as_str()), (200, "<h1>two 1.0.0</h1>\n"));
    let (code, body, _) = get(&ns, &d, "two.box.test", "/api/", &["-H", &bearer]);
    assert_eq!((code, body.trim()), (200, "backend-backend"), "the route to backend, by service name");
    let (code, body, head) = get(&ns, &d, "127.0.0.1", "/apps/two/api/?q=1", &["-H", &bearer]);
    let port = d.https_addr().rsplit(':').next().unwrap_or_default().to_string();
    assert_eq!(code, 308, "the old path prefix only redirects to the app's own origin: {body}");
    assert!(head.contains(&format!("location: https://two.box.test:{port}/api/?q=1")), "{head}");
    assert!(!body.contains("backend-backend"), "nothing of the app on the console's origin");
    // The app login: the password is typed on the console's origin, never on the app's (whose
    // scripts could read it there); a one-time code brings the login back to this app alone.
    let jar = work.path().join("jar");
    let jar = jar.to_str().unwrap();
    let begin = || {
        let (code, _, head) = get(&ns, &d, "two.box.test", "/__den/login?next=/api/", &["-c", jar]);
        let console_login =
            format!("location: https://box.test:{port}/__den/app-login?app=two.box.test&next=/api/&state=");
        assert!(code == 303 && head.contains(&console_login), "{code} {head}");
        assert!(head.contains("__Host-den_state="), "the browser that began holds the state: {head}");
        head.lines()
            .find_map(|l| l.strip_prefix("location: "))
            .unwrap()
            .trim()
            .rsplit_once("state=")
            .unwrap()
            .1
            .to_string()
    };
    let state = begin();
    let (code, form, head) =
        get(&ns, &d, "box.test", &format!("/__den/app-login?app=two.box.test&next=/api/&state={state}"), &[]);
    assert!(code == 200 && form.contains("name=password"), "{code} {form}");
    let csp = format!("form-action 'self' https://two.box.test:{port};");
    assert!(head.contains("default-src 'none'") && head.contains(&csp), "no script; forms lead only back: {head}");
    let (code, _, _) = get(&ns, &d, "box.test", "/__den/app-login?app=evil.example%2Fx-two.box.test&state=x", &[]);
    assert_eq!(code, 404, "only an app's own host names");
    let login_as = |pw: &str, state: &str, extra: &[&str]| {
        let fields = [("user", "ann"), ("password", pw), ("app", "two.box.test"), ("next", "/api/"), ("state", state)];
        let mut args: Vec<String> =
            fields.iter().flat_map(|(k, v)| ["--data-urlencode".into(), format!("{k}={v}")]).collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, body, head) = get(&ns, &d, "box.test", "/__den/app-login", &args);
        let callback = head.lines().find_map(|l| l.strip_prefix("location: ")).unwrap_or_default().trim().to_string();
        (code, body, callback.split_once(port.as_str()).map(|(_, p)| p.to_string()).unwrap_or_default())
    };
    let (code, body, _) = login_as("wrong", &state, &[]);
    assert!(code == 401 && body.contains("Log in"), "{code} {body}");
    let (code, body, _) = login_as(
        "correct horse 1",
        &state,
        &["-H", "Origin: https://evil.box.test", "-H", "Sec-Fetch-Site: same-site"],
    );
    assert!(code == 403 && body.contains("another site"), "a form sent from a sibling app: {code} {body}");
    // A code works only in the browser that began the login (a sibling app cannot plant its
    // own login in someone else's browser), only on this app's host, and once.
    let (code, _, callback) = login_as("correct horse 1", &state, &[]);
    assert!(code == 303 && callback.starts_with("/__den/callback?code="), "{code} {callback}");
    let (code, body, _) = get(&ns, &d, "two.box.test", &callback, &[]);
    assert!(code == 403 && body.contains("another browser"), "no state cookie: {code} {body}");
    let state = begin();
    let (_, _, callback) = login_as("correct horse 1", &state, &[]);
    let (code, _, _) = get(&ns, &d, "one.box.test", &callback, &["-b", jar]);
    assert_eq!(code, 404, "no other host takes the code");
    let state = begin();
    let (_, _, callback) = login_as("correct horse 1", &state, &[]);
    let (code, _, head) = get(&ns, &d, "two.box.test", &callback, &["-b", jar, "-c", jar]);
    assert!(code == 303 && head.contains("location: /api/"), "{code} {head}");
    assert!(head.contains("__Host-den_app="), "{head}");
    let (code, body, _) = get(&ns, &d, "two.box.test", &callback, &["-b", jar]);
    assert!(code == 403 && body.contains("spent"), "a code works once: {code} {body}");
    let (code, body, _) = get(&ns, &d, "two.box.test", "/api/", &["-b", jar]);
    assert_eq!((code, body.trim()), (200, "backend-backend"));
    // Other apps are on the same site: their pages may not send changes or open WebSockets
    // with this app's login; this app's own pages may.
    let sibling = format!("Origin: https://evil.box.test:{port}");
    for extra in [
        &["-X", "POST", "-H", &sibling, "-H", "Sec-Fetch-Site: same-site"][..],
        &["-X", "POST", "-H", "Sec-Fetch-Site: cross-site"],
        &["-H", "Upgrade: websocket", "-H", "Connection: Upgrade", "-H", &sibling],
    ] {
        let args: Vec<&str> = ["-b", jar].iter().chain(extra).copied().collect();
        let (code, body, _) = get(&ns, &d, "two.box.test", "/api/", &args);
        assert!(code == 403 && body.contains("own pages"), "{extra:?}: {code} {body}");
    }
    let own = format!("Origin: https://two.box.test:{port}");
    let (code, body, _) = get(
        &ns,
        &d,
        "two.box.test",
        "/api/",
        &["-b", jar, "-X", "POST", "-H", &own, "-H", "Sec-Fetch-Site: same-origin"],
    );
    assert!(!body.contains("den:"), "the app's own page reaches it: {code} {body}");

    // Resources, user, the TCP ingress, logs.
    assert_eq!(d.vm("two-backend")["spec"]["memory_mib"], 200, "mem_limit");
    assert_eq!(d.vm("two-backend")["spec"]["cpus"], 1, "cpus");
    let uid = sh(&d, "two-web", "grep Uid /proc/$(pidof httpd)/status");
    assert!(uid.split_whitespace().nth(1) == Some("1000"), "user: {uid}");
    let (code, out) = lan.sh("curl -s --max-time 10 http://192.0.2.2:19000/");
    assert_eq!((code, out.trim()), (0, "backend-backend"), "ingress: host port 19000 reaches backend:9000");
    let (code, out) = ns.sh("curl -s --max-time 5 http://127.0.0.1:19000/");
    assert!(code != 0 && !out.contains("backend"), "an app's port took the host's own connection: {out}");
    let logs = den_ok(&d, &["app", "logs", TWO, "--service", "backend"]);
    assert!(!logs.trim().is_empty(), "the service's console output");
    // A service that dies is started again.
    sh(&d, "two-backend", "kill $(pidof httpd)");
    let t = std::time::Instant::now();
    while d.den(&["vm", "exec", "two-web", "--", "sh", "-c", "wget -q -O - http://backend:9000/"]).1.trim()
        != "backend-backend"
    {
        assert!(t.elapsed() < std::time::Duration::from_secs(60), "backend's httpd was not restarted");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // /lzcapp/var survives a restart.
    sh(&d, "two-backend", "echo kept > /lzcapp/var/marker");
    den_ok(&d, &["app", "restart", TWO]);
    assert_eq!(sh(&d, "two-backend", "cat /lzcapp/var/marker").trim(), "kept");
    assert_eq!(sh(&d, "two-web", "wget -q -O - http://backend:9000/").trim(), "backend-backend");

    // Upgrade: the new version runs and /lzcapp/var stays. A version that never becomes
    // healthy is rolled back by itself: the running version comes back, data intact.
    let v2 = write(&two_v2("2.0.0", &[]).unwrap(), work.path(), "two-v2.0.0.lpk", false);
    assert!(den_ok(&d, &["app", "upgrade", v2.to_str().unwrap()]).contains("upgraded cloud.den.test.two"));
    assert_eq!(app(&d, TWO)["version"], "2.0.0");
    assert_eq!(get(&ns, &d, "two.box.test", "/", &["-H", &bearer]).1, "<h1>two 2.0.0</h1>\n");
    assert_eq!(sh(&d, "two-backend", "cat /lzcapp/var/marker").trim(), "kept");
    let broken = write(&two_v2_checked("3.0.0", &[], "[CMD, 'false']").unwrap(), work.path(), "two-v3.0.0.lpk", false);
    let (code, _, err) = d.den(&["app", "upgrade", broken.to_str().unwrap()]);
    assert!(code == 1 && err.contains("upgrade to 3.0.0 failed") && err.contains("rolled back to 2.0.0"), "{err}");
    let now = app(&d, TWO);
    assert_eq!((now["version"].as_str(), now["state"].as_str()), (Some("2.0.0"), Some("running")), "{now}");
    assert_eq!(get(&ns, &d, "two.box.test", "/", &["-H", &bearer]).1, "<h1>two 2.0.0</h1>\n");
    assert_eq!(sh(&d, "two-backend", "cat /lzcapp/var/marker").trim(), "kept");
    let (code, _, err) = d.den(&["app", "upgrade", v2.to_str().unwrap()]);
    assert!(code == 1 && err.contains("not newer than the installed 2.0.0"), "{err}");

    // v1: the exec:// program runs in the entry service (Den's base image), on loopback.
    let hello = write(&hello_v1("1.0.0").unwrap(), work.path(), "hello-v1.0.0.lpk", true);
    den_ok(&d, &["app", "install", hello.to_str().unwrap()]);
    let cgi = sh(&d, "hello-app", "busybox wget -q -O - http://127.0.0.1:3000/cgi-bin/env");
    assert!(cgi.contains("GREETING=hello from cloud.den.test.hello on hello.box.test"), "{cgi}");
    // Through the ingress: `/` is static files from the package (public), `/cgi/` the exec://
    // program; identity headers come from Den only.
    let (code, body, _) = get(&ns, &d, "hello.box.test", "/", &[]);
    assert_eq!((code, body.as_str()), (200, "<h1>hello 1.0.0</h1>\n"));
    let spoofs = [
        "X-HC-User-ID: admin",
        "X_HC_User_Id: admin",
        "x_hc_user_role: ADMIN",
        "Forwarded: for=10.9.9.9",
        "X-Real-IP: 10.9.9.9",
        "X_Forwarded_For: 10.9.9.9",
    ];
    let headers: Vec<&str> = spoofs.iter().flat_map(|h| ["-H", h]).collect();
    let (_, env, _) = get(&ns, &d, "hello.box.test", "/cgi/cgi-bin/env", &headers);
    assert!(env.contains("HTTP_X_FORWARDED_PROTO=https") && !env.contains("HTTP_X_HC_USER_ID"), "{env}");
    assert!(!env.contains("admin") && !env.contains("ADMIN") && !env.contains("10.9.9.9"), "every spelling: {env}");
    assert!(env.contains("HTTP_FORWARDED=for=") && env.contains("HTTP_X_REAL_IP="), "set by Den: {env}");
    // Paths are normalised before routing and forwarding: dot segments, encodings, `//`.
    for spelled in
        ["/x/../cgi/cgi-bin/env", "/x/%2e%2e/cgi//cgi-bin/env", "/%63gi/cgi-bin/./env", "/x/..;/cgi/cgi-bin/env"]
    {
        let (code, env, _) = get(&ns, &d, "hello.box.test", spelled, &["--path-as-is"]);
        assert!(code == 200 && env.contains("REQUEST_URI=/cgi-bin/env"), "{spelled}: {code} {env}");
    }
    let (code, _, _) = get(&ns, &d, "hello.box.test", "/cgi%2f..%2fcgi-bin/env", &["--path-as-is"]);
    assert_eq!(code, 400, "an encoded separator is refused");
    let (_, env, _) = get(&ns, &d, "hello.box.test", "/cgi/cgi-bin/env", &["-H", &bearer, "-H", "X-HC-User-ID: admin"]);
    assert!(env.contains("HTTP_X_HC_USER_ID=ann") && env.contains("HTTP_X_HC_USER_ROLE=NORMAL"), "{env}");
    assert!(!env.contains("den_"), "Den's credentials never reach the app: {env}");

    // Stop, then uninstall: VMs, networks and files go.
    den_ok(&d, &["app", "stop", TWO]);
    assert_eq!(app(&d, TWO)["state"], "stopped");
    for name in [TWO, HELLO] {
        den_ok(&d, &["app", "uninstall", name]);
    }
    assert_eq!(den_ok(&d, &["--json", "vm", "ls"]).trim(), "[]");
    assert!(!ns.ip("link show").contains("den-a"), "no app bridge is left");
}
