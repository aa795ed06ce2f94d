//! LPK apps running as microVMs under QEMU (TCG here), through the real `den` CLI: the v2
//! sample's two services from an embedded busybox image start in dependency order with health
//! gating, reach each other by service name on the app's own network, see `/lzcapp` and the
//! injected environment as the brief says, keep `/lzcapp/var` across a restart; the v1 sample's
//! `exec://` program runs in its entry service. Everything goes on uninstall.

use den_tests::dend::Dend;
use den_tests::lpk::{hello_v1, two_v2, write, HELLO, TWO};
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

    // /lzcapp/var survives a restart.
    sh(&d, "two-backend", "echo kept > /lzcapp/var/marker");
    den_ok(&d, &["app", "restart", TWO]);
    assert_eq!(sh(&d, "two-backend", "cat /lzcapp/var/marker").trim(), "kept");
    assert_eq!(sh(&d, "two-web", "wget -q -O - http://backend:9000/").trim(), "backend-backend");

    // v1: the exec:// program runs in the entry service (Den's base image), on loopback.
    let hello = write(&hello_v1("1.0.0").unwrap(), work.path(), "hello-v1.0.0.lpk", true);
    den_ok(&d, &["app", "install", hello.to_str().unwrap()]);
    let cgi = sh(&d, "hello-app", "busybox wget -q -O - http://127.0.0.1:3000/cgi-bin/env");
    assert!(cgi.contains("GREETING=hello from cloud.den.test.hello on hello.box.test"), "{cgi}");

    // Stop, then uninstall: VMs, networks and files go.
    den_ok(&d, &["app", "stop", TWO]);
    assert_eq!(app(&d, TWO)["state"], "stopped");
    for name in [TWO, HELLO] {
        den_ok(&d, &["app", "uninstall", name]);
    }
    assert_eq!(den_ok(&d, &["--json", "vm", "ls"]).trim(), "[]");
    assert!(!ns.ip("link show").contains("den-a"), "no app bridge is left");
}
