//! The packaged systemd service, for real, in a systemd guest (the `dev` image under QEMU):
//! `scripts/install-service.sh` sets dend up as dend.service; `den daemon update` to another
//! build restarts the service onto it; an update to a dend that cannot start is undone by
//! dend-fallback.service, which puts the previous binary back and starts dend again.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::netns::NetNs;
use std::path::{Path, PathBuf};

/// Stands in for a broken dend build: it says its version, then fails every start.
const BROKEN_DEND: &str = "#!/bin/sh\ncase \"$1\" in\n  --version) echo 'dend 0.2.0-broken' ;;\n  \
                           *) echo 'dend: cannot open /var/lib/den/state.db: schema too new' >&2; exit 1 ;;\nesac\n";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

fn cp(d: &Dend, host: &Path, guest: &str) {
    let (code, out, err) = d.den(&["vm", "cp", host.to_str().unwrap(), &format!("sd:{guest}")]);
    assert_eq!(code, 0, "{} -> {guest}: {out}{err}", host.display());
}

/// `sh -c` in the guest: (exit code, output).
fn sh(d: &Dend, script: &str) -> (i32, String) {
    let (code, out, err) = d.den(&["vm", "exec", "sd", "--", "sh", "-c", script]);
    (code, format!("{out}{err}"))
}

#[test]
fn the_packaged_service_updates_dend_and_falls_back_when_it_cannot_start() {
    let store = den_tests::images::shared_store();
    den_tests::images::build_builtin(&store, "dev");
    let ns = NetNs::new("dendsvc");
    let d = Dend::start_in_with_config(Path::new(env!("CARGO_BIN_EXE_dend")), &ns, "[docker]\nenabled = false\n");
    let (code, out, err) = d.den(&[
        "vm", "create", "sd", "--image", "dev", "--memory", "1024", "--cpus", "2", "--engine", "qemu", "--start",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    d.sh_until_ok(
        "sd",
        "systemctl is-system-running --wait >/dev/null; mkdir -p /root/build /root/den/packaging /root/den/scripts",
    );

    let build = Path::new("/root/build");
    for (bin, name) in [
        (den_tests::images::dend_static_binary(), "dend"),
        (den_tests::images::den_cli_static_binary(), "den"),
        (den_tests::images::agent_binary(), "den-agent"),
    ] {
        cp(&d, &bin, build.join(name).to_str().unwrap());
    }
    for f in ["dend.service", "dend-fallback.service", "dend-fallback", "den.toml"] {
        cp(&d, &repo().join("packaging").join(f), &format!("/root/den/packaging/{f}"));
    }
    cp(&d, &repo().join("scripts/install-service.sh"), "/root/den/scripts/install-service.sh");
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("dend-bad"), BROKEN_DEND).unwrap();
    cp(&d, &work.path().join("dend-bad"), "/root/dend-bad");
    let (code, out) = sh(&d, "chmod 755 /root/dend-bad && cp /root/build/dend /root/dend-new");
    assert_eq!(code, 0, "{out}");

    // Installed as the packaged service: running, and answering.
    let (code, out) =
        sh(&d, "DEN_AGENT_BIN=/root/build/den-agent bash /root/den/scripts/install-service.sh /root/build 2>&1");
    assert_eq!(code, 0, "{out}");
    let (code, out) = sh(&d, "for i in $(seq 60); do den daemon status | grep -q 'running dend:   0' && break; sleep 1; done; den daemon status; systemctl is-active dend");
    assert_eq!(code, 0, "{out}\n{}", sh(&d, "journalctl -u dend --no-pager | tail -30").1);

    // An update to another build: the service restarts onto it and the update commits.
    let (code, out) = sh(&d, "den daemon update /root/dend-new 2>&1");
    assert_eq!(code, 0, "{out}\n{}", sh(&d, "journalctl -u dend --no-pager | tail -30").1);
    assert!(out.contains("is up"), "{out}");
    println!("good update:\n{out}");
    let (code, _) = sh(&d, "test ! -e /usr/lib/den/dend.trial && test -x /usr/lib/den/dend.previous");
    assert_eq!(code, 0, "the good update committed and kept the previous binary");

    // An update to a dend that cannot start: systemd gives up on it, the fallback puts the
    // previous binary back, and dend runs again.
    let (code, out) = sh(&d, "den daemon update /root/dend-bad 2>&1");
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("went back to dend 0"), "{out}");
    println!("update to a dend that cannot start:\n{out}");
    let (code, out) = sh(
        &d,
        "systemctl is-active dend && cmp /usr/lib/den/dend /root/dend-new && cmp /usr/lib/den/dend.failed /root/dend-bad \
         && test ! -e /usr/lib/den/dend.trial && den daemon status && journalctl --no-pager | grep dend-fallback",
    );
    assert_eq!(code, 0, "{out}\n{}", sh(&d, "journalctl -u dend -u dend-fallback --no-pager | tail -40").1);
    assert!(out.contains("the previous one is back"), "{out}");
}
