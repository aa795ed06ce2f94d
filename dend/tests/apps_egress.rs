//! App networks under QEMU guests: an app with `net.internet` reaches a server on a "WAN"
//! namespace and its attempt is audited as allowed; an app without it is refused and audited as
//! denied; neither reaches the other app or the host's own services. `den app traffic` shows it.
//! (Timeouts come from `timeout`: the busybox-static wget of Debian 12 crashes with `-T`.)

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::lpk::{colliding_package, first_network_name, hello_as, hello_v1, two_v2, write, HELLO, TWO};
use den_tests::netns::NetNs;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

fn den_ok(d: &Dend, args: &[&str]) -> String {
    let (code, out, err) = d.den(args);
    assert_eq!(code, 0, "den {args:?}:\n{out}{err}\n--- dend log:\n{}", d.log());
    out
}

/// Runs a script in a VM: (exit code, output).
fn sh(d: &Dend, vm: &str, script: &str) -> (i32, String) {
    let (code, out, err) = d.den(&["vm", "exec", vm, "--", "sh", "-c", script]);
    (code, format!("{out}{err}"))
}

/// The app's traffic records, waiting until `want` matches one (the audit is asynchronous).
fn traffic_until(d: &Dend, app: &str, want: impl Fn(&Value) -> bool) -> Vec<Value> {
    let t = Instant::now();
    loop {
        let recs: Vec<Value> = serde_json::from_str::<Value>(&den_ok(d, &["--json", "app", "traffic", app]))
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        if recs.iter().any(&want) || t.elapsed() > Duration::from_secs(20) {
            return recs;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn ip_of(d: &Dend, vm: &str) -> String {
    d.vm(vm)["nics"][0]["ip"].as_str().unwrap_or_default().to_string()
}

#[test]
fn egress_is_default_deny_permitted_by_net_internet_and_audited() {
    let store = den_tests::images::shared_store();
    for image in ["base", "app"] {
        den_tests::images::build_builtin(&store, image);
    }
    let work = tempfile::tempdir().unwrap();
    let wan = NetNs::new("appwan");
    let host = NetNs::new("apphost");
    host.veth("up0", "198.51.100.1/24", &wan, "wan0", "198.51.100.7/24");
    std::fs::write(work.path().join("index.html"), "internet page\n").unwrap();
    let _server =
        wan.background("busybox", &["httpd", "-f", "-p", "198.51.100.7:8080", "-h", work.path().to_str().unwrap()]);
    let d = Dend::start_in_with_config(Path::new(env!("CARGO_BIN_EXE_dend")), &host, "[docker]\nenabled = false\n");

    let open = write(&two_v2("1.0.0", &["net.internet"]).unwrap(), work.path(), "two.lpk", false);
    den_ok(&d, &["app", "install", open.to_str().unwrap()]);
    let closed = write(&hello_v1("1.0.0").unwrap(), work.path(), "hello.lpk", true);
    den_ok(&d, &["app", "install", closed.to_str().unwrap()]);

    // With net.internet: the server answers, and the attempt is audited as allowed.
    let (code, out) = sh(&d, "two-web", "timeout 10 wget -q -O - http://198.51.100.7:8080/");
    assert_eq!((code, out.trim()), (0, "internet page"));
    let recs = traffic_until(&d, TWO, |r| r["dest"] == "198.51.100.7" && r["verdict"] == "allowed");
    assert!(
        recs.iter().any(|r| r["dest"] == "198.51.100.7"
            && r["port"] == 8080
            && r["proto"] == "tcp"
            && r["verdict"] == "allowed"),
        "{recs:?}"
    );

    // Without it: refused, and audited as denied.
    let (code, out) = sh(&d, "hello-app", "timeout 5 busybox wget -q -O - http://198.51.100.7:8080/");
    assert!(code != 0 && !out.contains("internet page"), "{out}");
    let recs = traffic_until(&d, HELLO, |r| r["dest"] == "198.51.100.7" && r["verdict"] == "denied");
    assert!(
        recs.iter().any(|r| r["dest"] == "198.51.100.7" && r["port"] == 8080 && r["verdict"] == "denied"),
        "{recs:?}"
    );

    // Apps cannot reach each other, nor the host's services, whatever their permissions.
    let web = ip_of(&d, "two-web");
    let (code, out) = sh(&d, "hello-app", &format!("timeout 5 busybox wget -q -O - http://{web}:8080/"));
    assert_ne!(code, 0, "another app's service answered: {out}");
    let hello_ip = ip_of(&d, "hello-app");
    let (code, out) = sh(&d, "two-web", &format!("timeout 5 wget -q -O - http://{hello_ip}:3000/"));
    assert_ne!(code, 0, "an internet app reached another app: {out}");
    let gateway = format!("{}.1", web.rsplit_once('.').map(|(n, _)| n).unwrap_or_default());
    let (code, out) =
        sh(&d, "two-web", &format!("timeout 5 nc {gateway} 8006 </dev/null || timeout 5 nc {gateway} 2222 </dev/null"));
    assert_ne!(code, 0, "an app reached dend's own ports: {out}");
    // Nor another app's ingress through the host's port forward (its DNAT).
    let hello_gw = format!("{}.1", hello_ip.rsplit_once('.').map(|(n, _)| n).unwrap_or_default());
    let (code, out) = sh(&d, "hello-app", &format!("timeout 5 busybox wget -q -O - http://{hello_gw}:19000/"));
    assert_ne!(code, 0, "an isolated app reached another app's ingress through the forward: {out}");
    let recs = traffic_until(&d, HELLO, |r| r["dest"] == web.as_str());
    assert!(recs.iter().any(|r| r["dest"] == web.as_str() && r["verdict"] == "denied"), "{recs:?}");

    // An app's network is Den's: no VM joins it through the API, not even an admin's, and no
    // clone of a service either (it would answer the app's service names); it is not removable.
    let app_net = d.vm("hello-app")["nics"][0]["network"].as_str().unwrap_or_default().to_string();
    assert_eq!(app_net, first_network_name(HELLO));
    // Nor does a package whose id was chosen to give the same network name.
    let evil = colliding_package(HELLO);
    assert_eq!(first_network_name(&evil), app_net, "{evil} collides");
    let evil_lpk = write(&hello_as(&evil, "evil", "1.0.0").unwrap(), work.path(), "evil.lpk", true);
    den_ok(&d, &["app", "install", evil_lpk.to_str().unwrap()]);
    let evil_net = d.vm("evil-app")["nics"][0]["network"].as_str().unwrap_or_default().to_string();
    assert!(!evil_net.is_empty() && evil_net != app_net, "{evil} joined {HELLO}'s network {app_net}");
    let (code, out) = sh(&d, "evil-app", &format!("timeout 5 busybox wget -q -O - http://{hello_ip}:3000/"));
    assert_ne!(code, 0, "the colliding app reached hello: {out}");
    den_ok(&d, &["app", "uninstall", &evil]);
    let body = serde_json::json!({"name": "intruder", "image": "base", "nics": [{"network": app_net}]});
    let (s, b) = d.api("POST", "/api/v1/vms", body.to_string().as_bytes());
    assert!(
        s == 400 && b["field"] == "nics" && b["message"].as_str().unwrap_or("").contains("app's own network"),
        "{b}"
    );
    let (s, b) = d.api("POST", "/api/v1/vms/hello-app/clone", br#"{"name":"intruder"}"#);
    assert!(s == 400 && b["message"].as_str().unwrap_or("").contains("app's own network"), "{s} {b}");
    let (code, _, err) = d.den(&["net", "rm", &app_net]);
    assert!(code == 1 && err.contains("goes when the app is uninstalled"), "{err}");
    assert!(d.den(&["vm", "inspect", "intruder"]).0 != 0, "nothing half-made is left");

    // A flood is not all logged: over the audit's rate (50 a second per app network), packets
    // are counted instead, and the count is shown.
    let flood = "busybox ping -c 600 -i 0.005 -q -w 10 198.51.100.7 >/dev/null 2>&1; true";
    assert_eq!(sh(&d, "hello-app", flood).0, 0);
    let (_, app) = d.api("GET", &format!("/api/v1/apps/{HELLO}"), b"");
    let unlogged = app["traffic_unlogged"].as_u64().unwrap_or(0);
    assert!(unlogged >= 50, "600 pings in a few seconds, at most 100 + 50 a second logged: {unlogged} counted\n{app}");
    let table = den_ok(&d, &["app", "traffic", HELLO]);
    assert!(table.contains("more packets were not logged"), "{table}");

    // The CLI table.
    let table = den_ok(&d, &["app", "traffic", TWO]);
    assert!(table.contains("198.51.100.7:8080") && table.contains("allowed"), "{table}");
    for app in [TWO, HELLO] {
        den_ok(&d, &["app", "uninstall", app]);
    }
}
