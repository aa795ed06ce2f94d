//! dend's HTTPS API and its users, roles, grants and tokens, with the real `curl` and `den` CLI:
//! a self-signed certificate made once and kept; 401 without or with a bad token; argon2id logins
//! rate-limited per user and address; viewers and operators limited to what their role allows
//! (403); per-VM grants; tokens narrower than their user, revocable; all of it kept across a
//! dend restart. No VM boots here: these are the API's rules, not the engines'.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::images;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn den_stdin(d: &Dend, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(images::den_cli())
        .arg("--socket")
        .arg(d.socket())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn login(d: &Dend, user: &str, password: &str) -> (u16, Value, String) {
    d.https("POST", "/api/v1/login", None, Some(&json!({"user": user, "password": password}).to_string()))
}

fn token_of(d: &Dend, user: &str, password: &str) -> String {
    let (s, b, _) = login(d, user, password);
    assert_eq!(s, 200, "{b}");
    b["token"].as_str().unwrap().to_string()
}

#[test]
fn https_users_roles_grants_and_tokens() {
    let store = images::shared_store();
    images::build_builtin(&store, "base");
    let mut d = Dend::start(Path::new(env!("CARGO_BIN_EXE_dend")));

    // HTTPS with a certificate that verifies against the one dend generated.
    let crt = d.dir.path().join("tls/dend.crt");
    let port = d.https_addr().rsplit(':').next().unwrap().to_string();
    let out = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(&crt)
        .arg(format!("https://localhost:{port}/api/v1/login"))
        .args(["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "--data", "{}"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "400", "TLS verified; bad body refused");

    // The OpenAPI document is public.
    let (s, doc, _) = d.https("GET", "/api/v1/openapi.json", None, None);
    assert!(s == 200 && doc["openapi"] == "3.1.0" && doc["paths"]["/api/v1/vms"]["post"].is_object(), "{doc}");

    // No token, a bad token: 401 with the API's error format.
    let (s, b, _) = d.https("GET", "/api/v1/vms", None, None);
    assert_eq!((s, b["code"].as_str()), (401, Some("unauthorized")), "{b}");
    let bogus = format!("den_{}_{}", "0".repeat(16), "0".repeat(64));
    assert_eq!(d.https("GET", "/api/v1/vms", Some(&bogus), None).0, 401);
    assert_eq!(d.https("GET", "/api/v1/vms", Some("garbage"), None).0, 401);

    // Users, made by the local admin (root on the Unix socket) with the CLI.
    let (c, _, e) =
        den_stdin(&d, &["user", "add", "alice", "--role", "operator", "--password-stdin"], "alice-secret-1\n");
    assert_eq!(c, 0, "{e}");
    assert_eq!(den_stdin(&d, &["user", "add", "vic", "--role", "viewer", "--password-stdin"], "vic-secret-12\n").0, 0);
    assert_eq!(den_stdin(&d, &["user", "add", "gus", "--password-stdin"], "gus-secret-12\n").0, 0);
    let (c, _, e) = den_stdin(&d, &["user", "add", "bob", "--password-stdin"], "short\n");
    assert!(c == 1 && e.contains("at least 8"), "{e}");
    let (c, _, e) = d.den(&["user", "add", "root", "--no-password"]);
    assert!(c == 1 && e.contains("reserved"), "{e}");

    // Logins: wrong passwords are refused, then rate-limited (429 + Retry-After) even when right.
    for _ in 0..5 {
        let (s, b, _) = login(&d, "alice", "wrong-password");
        assert_eq!((s, b["code"].as_str()), (401, Some("unauthorized")), "{b}");
    }
    let (s, b, h) = login(&d, "alice", "alice-secret-1");
    assert_eq!((s, b["code"].as_str()), (429, Some("rate_limited")), "{b}");
    assert!(h.to_ascii_lowercase().contains("retry-after:"), "{h}");
    let (s, _, _) = login(&d, "nobody", "whatever-pw");
    assert_eq!(s, 429, "the source address is limited too");
    // The limit is in memory: a restart clears it (tokens and users persist).
    d.kill9();
    d.spawn();
    let alice = token_of(&d, "alice", "alice-secret-1");
    let vic = token_of(&d, "vic", "vic-secret-12");
    let gus = token_of(&d, "gus", "gus-secret-12");
    let (_, me, _) = d.https("GET", "/api/v1/whoami", Some(&alice), None);
    assert_eq!((me["user"].as_str(), me["role"].as_str()), (Some("alice"), Some("operator")), "{me}");

    // An operator creates a VM; a viewer sees it but may not change it; gus sees nothing.
    let spec = json!({"name": "web1", "image": "base"}).to_string();
    let (s, b, _) = d.https("POST", "/api/v1/vms", Some(&alice), Some(&spec));
    assert_eq!(s, 202, "{b}");
    d.wait_state("web1", "stopped", std::time::Duration::from_secs(60));
    let (s, b, _) =
        d.https("POST", "/api/v1/vms", Some(&vic), Some(&json!({"name": "v2", "image": "base"}).to_string()));
    assert_eq!((s, b["code"].as_str()), (403, Some("forbidden")), "{b}");
    assert!(b["message"].as_str().unwrap_or("").contains("operator"), "names the role: {b}");
    // Shared host folders hand the guest the host's files: an operator may not ask for them.
    let shared = json!({"name": "v3", "image": "base", "shares": [{"host": "/srv"}]}).to_string();
    let (s, b, _) = d.https("POST", "/api/v1/vms", Some(&alice), Some(&shared));
    assert_eq!((s, b["code"].as_str()), (403, Some("forbidden")), "{b}");
    assert!(b["message"].as_str().unwrap_or("").contains("only an admin may share"), "{b}");
    // Nor a forward of the host's own connections (it would take what host programs connect to).
    let local = json!({"name": "v4", "image": "base", "nics": [{}],
                       "ports": [{"host_port": 18080, "guest_port": 80, "local": true}]})
    .to_string();
    let (s, b, _) = d.https("POST", "/api/v1/vms", Some(&alice), Some(&local));
    assert_eq!((s, b["code"].as_str()), (403, Some("forbidden")), "{b}");
    assert!(b["message"].as_str().unwrap_or("").contains("`local` port forwards"), "{b}");
    // An admin may; operating that VM then takes an admin too (its root writes host files).
    let (s, b) = d.api("POST", "/api/v1/vms", shared.as_bytes());
    assert_eq!(s, 202, "{b}");
    d.wait_state("v3", "stopped", std::time::Duration::from_secs(60));
    let (s, b, _) = d.https("POST", "/api/v1/vms/v3/start", Some(&alice), None);
    assert_eq!(s, 403, "an operator may not start a VM with shared folders: {b}");
    // Nor clone it (its disks), read its console or snapshot it; seeing it is all.
    for (m, p) in [
        ("POST", "/api/v1/vms/v3/clone"),
        ("GET", "/api/v1/vms/v3/console"),
        ("POST", "/api/v1/vms/v3/snapshots"),
        ("GET", "/api/v1/vms/v3/files?path=/etc/passwd"),
    ] {
        let (s, b, _) = d.https(m, p, Some(&alice), Some(&json!({"name": "mine", "snapshot": "s"}).to_string()));
        assert_eq!(s, 403, "{m} {p}: {b}");
        assert!(b["message"].as_str().unwrap_or("").contains("shares host folders"), "says why: {b}");
    }
    assert_eq!(d.https("GET", "/api/v1/vms/v3", Some(&alice), None).0, 200);
    assert_eq!(d.den(&["vm", "rm", "v3"]).0, 0);
    // A task is cancelled by whoever started it or an admin, not by another user.
    let (_, tasks, _) = d.https("GET", "/api/v1/tasks", Some(&vic), None);
    let create = tasks
        .as_array()
        .and_then(|l| l.iter().find(|t| t["kind"] == "vm.create" && t["target"] == "web1"))
        .map(|t| t["id"].as_str().unwrap_or_default().to_string())
        .expect("web1's create task");
    let cancel = format!("/api/v1/tasks/{create}/cancel");
    let (s, b, _) = d.https("POST", &cancel, Some(&vic), None);
    assert_eq!(s, 403, "{b}");
    assert!(b["message"].as_str().unwrap_or("").contains("started by `alice`"), "{b}");
    assert_eq!(d.https("POST", &cancel, Some(&alice), None).0, 409, "alice may: it has ended already");
    let (s, b, _) = d.https("GET", "/api/v1/vms", Some(&vic), None);
    assert!(s == 200 && b.as_array().map(Vec::len) == Some(1), "{b}");
    for (m, p) in [("POST", "/api/v1/vms/web1/start"), ("DELETE", "/api/v1/vms/web1"), ("POST", "/api/v1/networks")] {
        assert_eq!(d.https(m, p, Some(&vic), Some("{}")).0, 403, "viewer {m} {p}");
    }
    assert_eq!(d.https("GET", "/api/v1/users", Some(&alice), None).0, 403, "users are for admins");
    let (s, b, _) = d.https("GET", "/api/v1/vms", Some(&gus), None);
    assert_eq!((s, b), (200, json!([])), "no role: no VMs");
    assert_eq!(d.https("GET", "/api/v1/vms/web1", Some(&gus), None).0, 403);

    // A per-VM grant lets gus see (not change) web1.
    let (c, _, e) = d.den(&["user", "grant", "gus", "web1", "viewer"]);
    assert_eq!(c, 0, "{e}");
    let gus = token_of(&d, "gus", "gus-secret-12");
    assert_eq!(d.https("GET", "/api/v1/vms/web1", Some(&gus), None).0, 200);
    assert_eq!(d.https("POST", "/api/v1/vms/web1/start", Some(&gus), None).0, 403);
    let (_, users, _) = d.den(&["user", "ls"]);
    assert!(users.contains("web1=viewer"), "{users}");

    // SSH public keys: fingerprints as ssh-keygen prints them; a key belongs to one user; users
    // manage their own keys, nobody else's.
    let kdir = tempfile::tempdir().unwrap();
    let mut fps = vec![];
    for k in ["k1", "k2"] {
        let path = kdir.path().join(k);
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", k, "-f"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success());
        let out = Command::new("ssh-keygen").arg("-lf").arg(path.with_extension("pub")).output().unwrap();
        fps.push(String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap_or_default().to_string());
    }
    let pub1 = format!("@{}", kdir.path().join("k1.pub").display());
    let (c, out, e) = d.den(&["user", "key", "add", "alice", &pub1]);
    assert!(c == 0 && out.contains(&fps[0]), "same fingerprint as ssh-keygen: {out}{e}");
    let (c, _, e) = d.den(&["user", "key", "add", "gus", &pub1]);
    assert!(c == 1 && e.contains("already exists"), "{e}");
    let k2 = std::fs::read_to_string(kdir.path().join("k2.pub")).unwrap();
    let body = json!({"key": k2.trim()}).to_string();
    assert_eq!(d.https("POST", "/api/v1/users/alice/keys", Some(&vic), Some(&body)).0, 403, "not vic's keys");
    let (s, b, _) = d.https("POST", "/api/v1/users/alice/keys", Some(&alice), Some(&body));
    assert_eq!((s, b["fingerprint"].as_str()), (201, Some(fps[1].as_str())), "{b}");
    let (s, b, _) =
        d.https("POST", "/api/v1/users/alice/keys", Some(&alice), Some(r#"{"key":"ssh-ed25519 bm90IGEga2V5"}"#));
    assert_eq!((s, b["field"].as_str()), (400, Some("key")), "{b}");
    let (_, ls, _) = d.den(&["user", "key", "ls", "alice"]);
    assert!(ls.contains(&fps[0]) && ls.contains(&fps[1]) && ls.contains("k2"), "{ls}");
    let path = format!("/api/v1/users/alice/keys/{}", fps[1].replace('/', "%2F").replace('+', "%2B"));
    assert_eq!(d.https("DELETE", &path, Some(&alice), None).0, 200);
    let (c, _, e) = d.den(&["user", "key", "rm", "alice", &fps[0]]);
    assert_eq!(c, 0, "{e}");
    assert_eq!(d.den(&["--json", "user", "key", "ls", "alice"]).1.trim(), "[]");

    // A token narrower than its user: read-only, limited to one VM; revocable.
    let body = json!({"name": "ci", "role": "viewer", "vms": ["web1"]}).to_string();
    let (s, t, _) = d.https("POST", "/api/v1/tokens", Some(&alice), Some(&body));
    assert_eq!(s, 201, "{t}");
    let ci = t["token"].as_str().unwrap().to_string();
    assert_eq!(d.https("GET", "/api/v1/vms/web1", Some(&ci), None).0, 200);
    assert_eq!(d.https("POST", "/api/v1/vms/web1/start", Some(&ci), None).0, 403, "capped at viewer");
    let up = json!({"name": "up", "role": "admin"}).to_string();
    let (_, t2, _) = d.https("POST", "/api/v1/tokens", Some(&ci), Some(&up));
    let up = t2["token"].as_str().unwrap_or_default().to_string();
    assert_eq!(d.https("GET", "/api/v1/users", Some(&up), None).0, 403, "no escalation through a token");
    // Tokens only narrow: a VM list is intersected, an expiry never extended.
    let wide = json!({"name": "wide", "vms": ["web1", "v9"]}).to_string();
    let (s, w, _) = d.https("POST", "/api/v1/tokens", Some(&ci), Some(&wide));
    assert_eq!((s, &w["scope"]["vms"]), (201, &json!(["web1"])), "{w}");
    let (_, me, _) = d.https("GET", "/api/v1/whoami", Some(w["token"].as_str().unwrap_or_default()), None);
    assert_eq!((&me["role"], &me["token"]["vms"]), (&json!("viewer"), &json!(["web1"])), "{me}");
    let short = json!({"name": "short", "expires_in": 3600}).to_string();
    let (_, p, _) = d.https("POST", "/api/v1/tokens", Some(&alice), Some(&short));
    let forever = json!({"name": "forever"}).to_string();
    let (_, c2, _) = d.https("POST", "/api/v1/tokens", Some(p["token"].as_str().unwrap_or_default()), Some(&forever));
    let (pe, ce) = (p["expires"].as_i64().unwrap_or(0), c2["expires"].as_i64().unwrap_or(i64::MAX));
    assert!(pe > 0 && ce <= pe, "the child ends with its parent: {p} {c2}");
    let (_, s2, _) = d.https("POST", "/api/v1/tokens", Some(&alice), Some(&forever));
    assert!(s2["expires"].is_null(), "a token made from a login session is not tied to the session: {s2}");
    let (_, list, _) = d.https("GET", "/api/v1/tokens", Some(&alice), None);
    assert!(
        list.as_array().is_some_and(|l| l.iter().all(|t| t.get("token").is_none() && t["user"] == "alice")),
        "{list}"
    );
    let (s, _, _) = d.https("DELETE", &format!("/api/v1/tokens/{}", t["id"].as_str().unwrap()), Some(&vic), None);
    assert_eq!(s, 404, "someone else's token is not even visible");
    let (c, _, e) = d.den(&["token", "rm", t["id"].as_str().unwrap()]);
    assert_eq!(c, 0, "{e}");
    assert_eq!(d.https("GET", "/api/v1/vms/web1", Some(&ci), None).0, 401, "revoked");

    // CLI-made token for alice, used over HTTPS; kept across a restart, as is the certificate.
    let (c, tok, e) = d.den(&["token", "create", "--name", "laptop", "--user", "alice"]);
    assert_eq!(c, 0, "{e}");
    let before = std::fs::read(&crt).unwrap();
    d.kill9();
    d.spawn();
    assert_eq!(std::fs::read(&crt).unwrap(), before, "same certificate after a restart");
    assert_eq!(d.https("GET", "/api/v1/vms/web1", Some(tok.trim()), None).0, 200);
    // Deleting a user ends their sessions.
    assert_eq!(d.den(&["user", "rm", "vic"]).0, 0);
    assert_eq!(d.https("GET", "/api/v1/vms", Some(&vic), None).0, 401);

    // Events name who did what.
    let (_, events) = d.api("GET", "/api/v1/events", b"");
    let has = |kind: &str, user: &str| {
        events.as_array().into_iter().flatten().any(|e| e["kind"] == kind && e["user"] == user)
    };
    assert!(has("vm.created", "alice") && has("user.login_failed", "alice") && has("user.granted", "root"), "{events}");
}
