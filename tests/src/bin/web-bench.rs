//! Web console numbers in one run (run by `bench/web-bench.sh`): the JavaScript a browser
//! downloads (gzip), navigation to a usable VM list with many VMs next to the API round trip it
//! waits for, and console keystroke echo through xterm.js next to the same echo over a bare
//! WebSocket. Measured in Debian's Chromium by `web/e2e/bench.mjs` against a real dend with a
//! running QEMU guest.

// A benchmark's setup may panic: a step that cannot be taken ends the run with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::images;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const VMS: usize = 30;

fn main() {
    let dend = std::env::args().nth(1).expect("usage: web-bench <dend binary>");
    let store = images::shared_store();
    images::build_builtin(&store, "base");
    let d = Dend::start(Path::new(&dend));
    let body = r#"{"name":"bench","password":"bench-password-1","role":"admin"}"#;
    let (code, resp) = d.api("POST", "/api/v1/users", body.as_bytes());
    assert_eq!(code, 201, "{resp}");
    let create = |name: &str| {
        let (code, _, err) =
            d.den(&["vm", "create", name, "--image", "base", "--memory", "256", "--engine", "qemu", "--no-network"]);
        assert_eq!(code, 0, "{name}: {err}");
    };
    create("console1");
    let (code, _, err) = d.den(&["vm", "start", "console1"]);
    assert_eq!(code, 0, "{err}");
    for i in 1..VMS {
        create(&format!("vm{i:02}"));
    }
    d.sh_until_ok("console1", "true");
    std::thread::sleep(Duration::from_secs(2));

    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    let out = Command::new("node")
        .arg("e2e/bench.mjs")
        .current_dir(&web)
        .env("DEN_URL", format!("https://{}", d.https_addr()))
        .env("DEN_ADMIN", "bench:bench-password-1")
        .env("DEN_VM", "console1")
        .env("DEN_VMS", VMS.to_string())
        .env("DEN_RUNS", "10")
        .output()
        .expect("node runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench.mjs failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let m: Value = text.lines().last().and_then(|l| serde_json::from_str(l).ok()).expect("a JSON line");
    let n = |k: &str| m[k].as_f64().unwrap_or(f64::NAN);

    println!("Web console (Chromium headless, base guest on QEMU; medians of 10 loads / 20 keystrokes)");
    println!("{:<44} {:>12} {:>12} {:>8}", "", "console", "baseline", "ratio");
    let kb = |b: f64| b / 1024.0;
    println!(
        "{:<44} {:>9.1} KB {:>9.1} KB {:>7.0}%",
        "JavaScript + CSS, first visit (gzip) / goal",
        kb(n("js_initial_gzip")),
        300.0,
        100.0 * kb(n("js_initial_gzip")) / 300.0
    );
    println!(
        "{:<44} {:>9.1} KB {:>9.1} KB {:>7.0}%",
        "... plus the console (xterm.js) / goal",
        kb(n("js_initial_gzip") + n("js_console_gzip")),
        300.0,
        100.0 * kb(n("js_initial_gzip") + n("js_console_gzip")) / 300.0
    );
    println!(
        "{:<44} {:>9.1} ms {:>9.1} ms {:>7.1}x",
        format!("navigation to usable list of {VMS} VMs / API"),
        n("list_ms"),
        n("api_ms"),
        n("list_ms") / n("api_ms")
    );
    println!("{:<44} {:>9.1} ms {:>9.1} ms", "  (p95 of the list; goal < 1000 ms)", n("list_p95_ms"), 1000.0);
    println!(
        "{:<44} {:>9.1} ms {:>9.1} ms {:>7.2}x",
        "keystroke echo: xterm.js / bare WebSocket",
        n("echo_xterm_ms"),
        n("echo_raw_ms"),
        n("echo_xterm_ms") / n("echo_raw_ms")
    );
    println!("{:<44} {:>9.1} ms {:>9.1} ms", "  (p95 of each)", n("echo_xterm_p95_ms"), n("echo_raw_p95_ms"));
    let (code, _, _) = d.den(&["vm", "stop", "console1"]);
    assert_eq!(code, 0);
}
