//! The business OS under QEMU: dend makes the system VM from the shipped `system` image and
//! keeps it running; updates to a good image commit, updates to an image whose kernel panics
//! and to one whose agent never reports roll back by themselves within their window, with the
//! data disk's files intact; `kill -9` of dend while a slot is written and during a trial, and of
//! the VM's engine during a trial, each end in one consistent slot; a rollback by hand works, and
//! so does an update from a spec file (built by the CLI first).

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::{alive, Dend};
use den_tests::netns::NetNs;
use den_tests::system::{build_images, explain, healthy, last_update, status, variant, wait_status};
use std::path::Path;
use std::time::{Duration, Instant};

const CONFIG: &str = "[docker]\nenabled = false\n\n[system]\ncpus = 1\nmemory_mib = 384\ndata_disk_mib = 256\n\
http_check = \"http://127.0.0.1:8080/healthz\"\ncheck_interval_secs = 2\nhealth_window_secs = 20\n\
ready_timeout_secs = 45\nmax_failed_boots = 2\n";

/// `sh -c` in the system VM.
fn sh(d: &Dend, script: &str) -> String {
    d.sh_until_ok("system", script)
}

/// `den system update IMAGE`: (exit code, output), timed.
fn update(d: &Dend, image: &str) -> (i32, String, f64) {
    let t = Instant::now();
    let (code, out, err) = d.den(&["system", "update", image]);
    (code, format!("{out}{err}"), t.elapsed().as_secs_f64())
}

fn engine_pid(d: &Dend) -> i64 {
    d.vm("system")["running"]["pid"].as_i64().unwrap_or(0)
}

#[test]
fn the_business_os_updates_commit_or_roll_back_and_survive_crashes() {
    build_images();
    let ns = NetNs::new("sysos");
    let mut d = Dend::start_in_with_config(Path::new(env!("CARGO_BIN_EXE_dend")), &ns, CONFIG);

    // dend makes the VM from the shipped image (slot A) and starts it; its root is read-only.
    let s = wait_status(&d, Duration::from_secs(240), "healthy on slot A", healthy);
    assert_eq!((s["active"].as_str(), s["a"]["version"].as_str()), (Some("a"), Some("1.0")), "{}", explain(&d, &s));
    assert!(s["b"].is_null(), "{}", explain(&d, &s));
    assert_eq!(d.vm("system")["spec"]["kind"], "system");
    sh(&d, "echo precious > /data/keep && sync");
    assert!(sh(&d, "touch /etc/x 2>&1 || echo refused").contains("refused"), "the root must be read-only");
    assert_eq!(sh(&d, ". /etc/den/os-release; echo $DEN_OS_VERSION").trim(), "1.0");

    // A good update commits; the data disk is the same disk.
    let (code, out, secs) = update(&d, "system-v2");
    assert_eq!(code, 0, "{out}\n{}", d.log());
    let s = status(&d);
    assert_eq!((s["active"].as_str(), s["b"]["version"].as_str()), (Some("b"), Some("2.0")), "{}", explain(&d, &s));
    assert_eq!(last_update(&s)["outcome"], "committed", "{}", explain(&d, &s));
    assert_eq!(sh(&d, ". /etc/den/os-release; echo $DEN_OS_VERSION").trim(), "2.0");
    assert_eq!(sh(&d, "cat /data/keep").trim(), "precious");
    println!("update to committed: {secs:.1} s\n{out}");

    // A kernel that panics: two failed boots, then the previous OS again.
    let (code, out, secs) = update(&d, "system-panic");
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("rolled back") && out.contains("failed 2 boot(s) in a row"), "{out}\n{}", d.log());
    let s = status(&d);
    assert_eq!((s["active"].as_str(), last_update(&s)["outcome"].as_str()), (Some("b"), Some("rolled_back")));
    assert!(healthy(&wait_status(&d, Duration::from_secs(60), "healthy after the panics", healthy)));
    assert_eq!(sh(&d, ". /etc/den/os-release; echo $DEN_OS_VERSION; cat /data/keep"), "2.0\nprecious\n");
    println!("panicking update to rolled back: {secs:.1} s\n{out}");

    // An OS whose agent never reports: rolled back at the ready timeout.
    let (code, out, secs) = update(&d, "system-mute");
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("did not pass a health check within 45 s"), "{out}\n{}", d.log());
    assert_eq!(sh(&d, ". /etc/den/os-release; echo $DEN_OS_VERSION; cat /data/keep"), "2.0\nprecious\n");
    println!("mute update to rolled back: {secs:.1} s\n{out}");

    // kill -9 of dend right after an update began writing slot A: the next dend ends in one
    // consistent slot (the write cut short and discarded, or finished and on trial).
    let pid = engine_pid(&d);
    let (code, out) = d.api("POST", "/api/v1/system/update", br#"{"image": "system"}"#);
    assert_eq!(code, 202, "{out}");
    d.kill9();
    d.spawn();
    let s = wait_status(&d, Duration::from_secs(240), "done with the cut update", |s| {
        s["phase"]["phase"] == "steady" && healthy(s)
    });
    let u = last_update(&s);
    match u["outcome"].as_str() {
        Some("failed") => {
            assert!(u["why"].as_str().unwrap_or("").contains("dend stopped while it was writing"), "{u:#}");
            assert!(s["a"].is_null() && s["active"] == "b", "{}", explain(&d, &s));
            assert_eq!(engine_pid(&d), pid, "the running OS was adopted, not restarted");
            println!("kill -9 while writing: the update failed, slot A discarded, slot B kept running");
        }
        Some("committed") => {
            assert_eq!(
                (s["active"].as_str(), s["a"]["version"].as_str()),
                (Some("a"), Some("1.0")),
                "{}",
                explain(&d, &s)
            );
            println!("kill -9 while writing: the write had finished; the update went on and committed");
        }
        other => panic!("the cut update ended as {other:?}: {}", explain(&d, &s)),
    }
    let data = d.dir.path().join("vms");
    let partial: Vec<_> = walk(&data).into_iter().filter(|p| p.to_string_lossy().ends_with(".partial")).collect();
    assert!(partial.is_empty(), "half-written files left: {partial:?}");

    // kill -9 of dend while a new OS is on trial: the next dend carries the trial on.
    let target = if s["active"] == "a" { "system-v2" } else { "system" };
    let (code, out) = d.api("POST", "/api/v1/system/update", format!(r#"{{"image": "{target}"}}"#).as_bytes());
    assert_eq!(code, 202, "{out}");
    wait_status(&d, Duration::from_secs(120), "booting the trial", |s| {
        s["phase"]["phase"] == "trial" && !s["phase"]["since"].is_null()
    });
    d.kill9();
    d.spawn();
    let s = wait_status(&d, Duration::from_secs(240), "committed after the dend restart", |s| {
        s["phase"]["phase"] == "steady" && last_update(s)["outcome"] != "in_progress"
    });
    assert_eq!(last_update(&s)["outcome"], "committed", "{}", explain(&d, &s));

    // kill -9 of the VM's engine during a trial: one failed boot, then the trial goes on.
    let target = if s["active"] == "a" { "system-v2" } else { "system" };
    let (code, out) = d.api("POST", "/api/v1/system/update", format!(r#"{{"image": "{target}"}}"#).as_bytes());
    assert_eq!(code, 202, "{out}");
    let trial_slot = wait_status(&d, Duration::from_secs(120), "running the trial", |s| {
        s["phase"]["phase"] == "trial" && s["booted"] == s["phase"]["slot"] && s["state"] == "running"
    })["phase"]["slot"]
        .clone();
    let pid = engine_pid(&d);
    assert!(pid > 0 && alive(pid));
    // SAFETY: kill(2) on the QEMU process this test's dend started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let s = wait_status(&d, Duration::from_secs(240), "done after the engine kill", |s| {
        s["phase"]["phase"] == "steady" && last_update(s)["outcome"] != "in_progress"
    });
    let u = last_update(&s);
    assert_eq!((u["outcome"].as_str(), &s["active"]), (Some("committed"), &trial_slot), "{}", explain(&d, &s));
    assert!(u["steps"].to_string().contains("boot 1 of the new OS ended by itself"), "{u:#}");

    // Back by hand, then the data disk is still the same.
    let before = s["active"].as_str().unwrap_or_default().to_string();
    let (code, out, err) = d.den(&["system", "rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    let s = status(&d);
    assert_ne!(s["active"].as_str(), Some(before.as_str()), "{}", explain(&d, &s));
    assert_eq!(
        (last_update(&s)["kind"].as_str(), last_update(&s)["outcome"].as_str()),
        (Some("rollback"), Some("committed"))
    );
    assert_eq!(sh(&d, "cat /data/keep").trim(), "precious");

    // An update from a spec file: the CLI builds it (into the store dend uses), then installs it.
    let cache = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(den_tests::images::download_cache().join("test-store"), cache.path().join("store"))
        .unwrap();
    let spec = cache.path().join("system-v3.yml");
    std::fs::write(&spec, variant("system-v3", "3.0", |t| t)).unwrap();
    let out = std::process::Command::new(den_tests::images::den_cli())
        .arg("--cache-dir")
        .arg(cache.path())
        .arg("--socket")
        .arg(d.socket())
        .args(["system", "update", spec.to_str().unwrap()])
        .env("DEN_DOWNLOAD_DIR", den_tests::images::download_cache())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("image system-v3 ready"), "{text}");
    assert_eq!(sh(&d, ". /etc/den/os-release; echo $DEN_OS_VERSION; cat /data/keep"), "3.0\nprecious\n");

    // The system VM is Den's: it cannot be deleted while [system] names it.
    let (code, _, err) = d.den(&["vm", "rm", "system"]);
    assert_ne!(code, 0);
    assert!(err.contains("business OS"), "{err}");
    let (code, out, _) = d.den(&["system", "status"]);
    assert_eq!(code, 0);
    assert!(out.contains("UPDATES") || out.contains("OUTCOME"), "{out}");
    println!("{out}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
