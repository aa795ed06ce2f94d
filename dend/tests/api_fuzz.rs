//! dend's API under schemathesis (from PyPI, pinned by `scripts/install-test-tools.sh`): cases
//! generated from `/api/v1/openapi.json` against a real dend in its own network namespace, for a
//! bounded time, as an admin and as a viewer. No answer may be a 5xx; every answer must have a
//! documented status and content type, and every error must be Den's JSON error. dend's memory
//! before and after is printed for the closing note.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::netns::NetNs;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Seconds of generated cases per identity.
const SECONDS: &str = "60";

fn schemathesis() -> PathBuf {
    let venv = std::env::var_os("DEN_SCHEMATHESIS").map(PathBuf::from).unwrap_or_else(|| {
        let out =
            std::process::Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-test-tools.sh"))
                .output()
                .expect("scripts/install-test-tools.sh runs");
        assert!(out.status.success(), "installing schemathesis: {}", String::from_utf8_lossy(&out.stderr));
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    });
    venv.join("bin/st")
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap_or("0");
    line.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn token(d: &Dend, user: &str, role: &str) -> String {
    let body = json!({"name": user, "password": format!("{user}-password-1"), "role": role}).to_string();
    let (s, b) = d.api("POST", "/api/v1/users", body.as_bytes());
    assert_eq!(s, 201, "{b}");
    let (s, b) = d.api("POST", "/api/v1/tokens", json!({"name": "fuzz", "user": user}).to_string().as_bytes());
    assert_eq!(s, 201, "{b}");
    b["token"].as_str().unwrap_or_default().to_string()
}

#[test]
fn the_api_under_generated_requests() {
    let st = schemathesis();
    let ns = NetNs::new("apifuzz");
    let d = Dend::start_in_with_config(Path::new(env!("CARGO_BIN_EXE_dend")), &ns, "[docker]\nenabled = false\n");
    let pid = d.pid().expect("dend runs");
    let admin = token(&d, "ada", "admin");
    let viewer = token(&d, "vic", "viewer");
    let before = rss_kb(pid);
    let base = format!("https://{}", d.https_addr());
    let work = tempfile::tempdir().unwrap();
    for (who, tok) in [("admin", &admin), ("viewer", &viewer)] {
        let report = work.path().join(format!("{who}.txt"));
        let out = ns
            .command(st.to_str().unwrap_or("st"))
            .arg("run")
            .arg(format!("{base}/api/v1/openapi.json"))
            .args(["--url", &format!("{base}/")])
            .args(["--header", &format!("Authorization: Bearer {tok}")])
            .args(["--tls-verify", "false", "--max-time", SECONDS, "--workers", "2", "--request-timeout", "30"])
            // dend closes a keep-alive connection idle for 15 s; a request sent on it just then
            // meets a closed socket, which clients answer by sending it again on a new one.
            .args(["--request-retries", "2"])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            // WebSockets are not HTTP request/answer pairs; the session endpoints would log the
            // token's user out or in as someone else mid-run.
            .args(["--exclude-path-regex", "/ws$", "--exclude-path", "/api/v1/session"])
            .args(["--suppress-health-check", "all", "--no-color", "--generation-database", "none"])
            .current_dir(work.path())
            .output()
            .expect("schemathesis runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let _ = std::fs::write(&report, &text);
        println!(
            "--- schemathesis as {who}:\n{}",
            text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        assert!(out.status.success(), "schemathesis as {who} found problems:\n{text}\n--- dend log:\n{}", d.log());
    }
    let after = rss_kb(pid);
    println!("dend RSS: {before} kB before, {after} kB after both runs");
    let (s, _) = d.api("GET", "/api/v1/host", b"");
    assert_eq!(s, 200, "dend still answers");
}
