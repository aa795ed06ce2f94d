//! Docker objects belong to the Den user who made them, with the real `docker` CLI run as three
//! local users (uids mapped to Den users by `[docker] users`) against a real dockerd in a QEMU
//! sandbox: the bridge labels every container, volume and build with its owner (a forged label
//! is replaced); a second operator cannot exec into, copy into or out of, stop, remove or
//! mount the volume of the first's containers; a viewer lists but cannot copy out, export or
//! save; operators cannot prune; a container binding a shared host folder is an admin's to act
//! on, whoever made it; tags of others' or shared images cannot be moved (tag, build, commit,
//! load of an archive naming them), nor others' images, networks or containers reached from a
//! create or connect; BuildKit's own API (`/grpc`) is refused.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::docker::{busybox_image, DockerCli};
use den_tests::images;
use den_tests::netns::NetNs;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const ALICE: u32 = 47101;
const BOB: u32 = 47102;
const VIC: u32 = 47103;

fn user(d: &Dend, name: &str, role: &str) {
    let body = json!({"name": name, "role": role}).to_string();
    let (s, b) = d.api("POST", "/api/v1/users", body.as_bytes());
    assert_eq!(s, 201, "{b}");
}

fn refused(cli: &DockerCli, args: &[&str], says: &str) {
    let err = cli.fails(args);
    assert!(err.contains(says), "docker {args:?} should be refused with `{says}`: {err}");
}

/// A refusal of a request the CLI sends as `HEAD` first (`docker cp` asks for a path's stat):
/// the answer has no body to show, so only the failure and the absence of the file are seen.
fn refused_head(cli: &DockerCli, args: &[&str]) {
    let out = cli.run(args);
    assert!(!out.status.success(), "docker {args:?} should be refused");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("from alice"), "no file content came out");
}

/// `docker save` output `from`, written to `to` with every tag it names replaced by
/// `repo:tag` (in `manifest.json` and `repositories`).
fn retag(from: &Path, to: &Path, repo: &str, tag: &str) {
    let mut out = tar::Builder::new(std::fs::File::create(to).unwrap());
    let mut archive = tar::Archive::new(std::fs::File::open(from).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        let mut header = entry.header().clone();
        let data = match name.as_str() {
            "manifest.json" => {
                let mut m: serde_json::Value = serde_json::from_slice(&data).unwrap();
                m[0]["RepoTags"] = json!([format!("{repo}:{tag}")]);
                serde_json::to_vec(&m).unwrap()
            }
            "repositories" => {
                let r: serde_json::Value = serde_json::from_slice(&data).unwrap();
                let id = r.as_object().unwrap().values().next().unwrap().as_object().unwrap().values().next().unwrap();
                serde_json::to_vec(&json!({ repo: { tag: id } })).unwrap()
            }
            _ => data,
        };
        header.set_size(data.len() as u64);
        header.set_cksum();
        out.append_data(&mut header, &name, data.as_slice()).unwrap();
    }
    out.finish().unwrap();
}

/// A raw Docker API `POST` of JSON as local user `uid` (with `curl`): the status and body.
fn api_as(uid: u32, sock: &Path, path: &str, body: &str) -> (u16, String) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    post_as(uid, sock, path, "application/json", file.path())
}

/// A raw Docker API `POST` of a file as local user `uid` (with `curl`): the status and body.
fn post_as(uid: u32, sock: &Path, path: &str, content_type: &str, body: &Path) -> (u16, String) {
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "300", "-w", "\n%{http_code}", "--unix-socket", sock.to_str().unwrap()])
        .args(["-H", &format!("Content-Type: {content_type}"), "--data-binary"])
        .arg(format!("@{}", body.display()))
        .arg(format!("http://docker{path}"))
        .uid(uid)
        .gid(uid)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn docker_objects_belong_to_their_owners() {
    let store = images::shared_store();
    images::build_builtin(&store, "docker");
    let ns = NetNs::new("dko");
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let den_toml = format!(
        "[docker]\nmemory_mib = 2048\nshare = [{:?}]\nusers = {{ \"{ALICE}\" = \"alice\", \"{BOB}\" = \"bob\", \"{VIC}\" = \"vic\" }}\n",
        shared.path().display().to_string()
    );
    let d = Dend::start_in_with_config(Path::new(env!("CARGO_BIN_EXE_dend")), &ns, &den_toml);
    // The local users reach the socket through the test's folders.
    for dir in [d.dir.path().to_path_buf(), d.dir.path().join("run")] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    user(&d, "alice", "operator");
    user(&d, "bob", "operator");
    user(&d, "vic", "viewer");
    let sock = d.dir.path().join("run/docker.sock");
    let root = DockerCli::new(&sock);
    let (alice, bob, vic) =
        (DockerCli::as_uid(&sock, ALICE), DockerCli::as_uid(&sock, BOB), DockerCli::as_uid(&sock, VIC));

    root.until_ok(&["version", "--format", "{{.Server.Version}}"], Duration::from_secs(600));
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("busybox.tar");
    busybox_image(&tar).unwrap();
    root.ok(&["load", "-i", tar.to_str().unwrap()]);

    // Alice's container carries her name, even when she claims another.
    let a1 = alice.ok(&["run", "-d", "--name", "a1", "--label", "den.owner=root", "busybox", "sleep", "600"]);
    let label = root.ok(&["inspect", "--format", "{{index .Config.Labels \"den.owner\"}}", "a1"]);
    assert_eq!(label.trim(), "alice", "the bridge sets the owner: {a1}");
    alice.ok(&["volume", "create", "--label", "den.owner=bob", "av"]);
    assert_eq!(root.ok(&["volume", "inspect", "--format", "{{index .Labels \"den.owner\"}}", "av"]).trim(), "alice");
    assert_eq!(alice.ok(&["exec", "a1", "echo", "mine"]).trim(), "mine");
    let src = dir.path().join("f.txt");
    std::fs::write(&src, "from alice\n").unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();
    alice.ok(&["cp", src.to_str().unwrap(), "a1:/tmp/f.txt"]);
    assert_eq!(alice.ok(&["exec", "a1", "cat", "/tmp/f.txt"]).trim(), "from alice");

    // Bob may not touch it, or mount her volume.
    refused_head(&bob, &["cp", src.to_str().unwrap(), "a1:/tmp/g.txt"]);
    refused_head(&bob, &["cp", "a1:/tmp/f.txt", "-"]);
    for args in [
        &["exec", "a1", "true"][..],
        &["stop", "a1"],
        &["restart", "a1"],
        &["rm", "-f", "a1"],
        &["export", "a1"],
        &["run", "--rm", "-v", "av:/data", "busybox", "true"],
        &["run", "--rm", "--network", "container:a1", "busybox", "true"],
        &["volume", "rm", "av"],
    ] {
        refused(&bob, args, "belongs to `alice`");
    }
    assert_eq!(bob.ok(&["run", "--rm", "busybox", "echo", "bob's own"]).trim(), "bob's own");

    // A viewer lists everything but reads no files.
    assert!(vic.ok(&["ps", "--format", "{{.Names}}"]).contains("a1"));
    refused_head(&vic, &["cp", "a1:/tmp/f.txt", "-"]);
    for args in [&["export", "a1"][..], &["save", "busybox"]] {
        refused(&vic, args, "operator");
    }
    refused(&vic, &["run", "--rm", "busybox", "true"], "operator");

    // Builds are labelled for their maker; others may not remove or save them.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::set_permissions(ctx.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dockerfile = ctx.path().join("Dockerfile");
    std::fs::write(&dockerfile, "FROM busybox\nLABEL den.owner=root\nRUN echo built > /built\n").unwrap();
    std::fs::set_permissions(&dockerfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    let built = bob
        .cmd(&["build", "-t", "bobimg:1", ctx.path().to_str().unwrap()])
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(built.status.success(), "docker build: {}", String::from_utf8_lossy(&built.stderr));
    let label = root.ok(&["image", "inspect", "--format", "{{index .Config.Labels \"den.owner\"}}", "bobimg:1"]);
    assert_eq!(label.trim(), "bob");
    refused(&alice, &["rmi", "bobimg:1"], "belongs to `bob`");
    refused(&alice, &["save", "bobimg:1"], "belongs to `bob`");
    let saved = alice.run(&["save", "busybox"]);
    assert!(saved.status.success() && saved.stdout.len() > 10_000, "a loaded image is everyone's");

    // A tag is what people run: an operator sets new ones and moves their own, never one of
    // someone else's image or of a shared (loaded) one, by tag, build, commit or load.
    let busybox_id = root.ok(&["image", "inspect", "--format", "{{.Id}}", "busybox"]);
    bob.ok(&["tag", "busybox", "bobbusy:1"]);
    bob.ok(&["tag", "bobimg:1", "bobimg:2"]);
    bob.ok(&["rmi", "bobimg:2"]);
    refused(&alice, &["tag", "busybox", "bobimg:1"], "belongs to `bob`");
    refused(&bob, &["tag", "bobimg:1", "busybox"], "only an admin");
    refused(&bob, &["rmi", "busybox"], "only an admin");
    let built = alice
        .cmd(&["build", "-t", "bobimg:1", ctx.path().to_str().unwrap()])
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&built.stderr);
    assert!(!built.status.success() && err.contains("belongs to `bob`"), "a build over bob's tag: {err}");
    refused(&alice, &["commit", "a1", "busybox:latest"], "only an admin");
    refused(&alice, &["commit", "--change", "LABEL den.owner=root", "a1", "alice/forged:1"], "may not set");
    alice.ok(&["commit", "--change", "LABEL den\\.owner=root", "a1", "alice/forged:2"]);
    let label = root.ok(&["image", "inspect", "--format", "{{index .Config.Labels \"den.owner\"}}", "alice/forged:2"]);
    assert_eq!(label.trim(), "alice", "Den's own label change comes last and wins");
    let saved = dir.path().join("bob.tar");
    let out = bob.run(&["save", "bobimg:1"]);
    assert!(out.status.success(), "bob saves his own image: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&saved, &out.stdout).unwrap();
    let evil = dir.path().join("evil.tar");
    retag(&saved, &evil, "busybox", "latest");
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(&bob, &["load", "-i", evil.to_str().unwrap()], "nothing was loaded");
    let gz = dir.path().join("evil.tar.gz");
    let packed = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c {} > {} && chmod 644 {}", evil.display(), gz.display(), gz.display()))
        .status()
        .unwrap();
    assert!(packed.success());
    refused(&bob, &["load", "-i", gz.to_str().unwrap()], "compressed");
    let now = root.ok(&["image", "inspect", "--format", "{{.Id}}", "busybox"]);
    assert_eq!(now, busybox_id, "`busybox` still names the image the admin loaded");
    let copy = dir.path().join("copy.tar");
    retag(&saved, &copy, "bobcopy", "1");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(bob.ok(&["load", "-i", copy.to_str().unwrap()]).contains("bobcopy:1"), "a new tag loads");

    // A tag that names nothing yet is held by the request that may set it until that request
    // ends: an admin cannot give it to an image while bob's slow build still runs (bob's build
    // would otherwise take it over at its end).
    let slow = tempfile::tempdir().unwrap();
    std::fs::set_permissions(slow.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let slow_file = slow.path().join("Dockerfile");
    std::fs::write(&slow_file, "FROM busybox\nRUN sleep 20\n").unwrap();
    std::fs::set_permissions(&slow_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let builds = || d.log().lines().filter(|l| l.contains("bob") && l.contains("POST /v1.41/build")).count();
    let before = builds();
    let mut building = bob
        .cmd(&["build", "-q", "-t", "pg:16", slow.path().to_str().unwrap()])
        .env("DOCKER_BUILDKIT", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while builds() == before {
        assert!(t.elapsed() < Duration::from_secs(60), "bob's build did not reach the bridge");
        std::thread::sleep(Duration::from_millis(200));
    }
    refused(&root, &["tag", "busybox", "pg:16"], "still under way");
    assert!(building.wait().unwrap().success(), "bob's build");
    let label = root.ok(&["image", "inspect", "--format", "{{index .Config.Labels \"den.owner\"}}", "pg:16"]);
    assert_eq!(label.trim(), "bob");
    root.ok(&["tag", "busybox", "pg:16"]);

    // What a create or connect names is decided on too: someone else's image and network.
    refused(&alice, &["run", "--rm", "bobimg:1", "true"], "belongs to `bob`");
    bob.ok(&["network", "create", "bnet"]);
    bob.ok(&["run", "-d", "--name", "b1", "busybox", "sleep", "600"]);
    let create = r#"{"Image":"busybox","NetworkingConfig":{"EndpointsConfig":{"bnet":{}}}}"#;
    let (code, body) = api_as(ALICE, &sock, "/containers/create", create);
    assert!(code == 403 && body.contains("belongs to `bob`"), "joining bob's network: {code} {body}");
    alice.ok(&["network", "create", "anet"]);
    refused(&alice, &["network", "connect", "anet", "b1"], "belongs to `bob`");
    let bnet = root.ok(&["network", "inspect", "--format", "{{.Id}}", "bnet"]);
    let create = format!(
        r#"{{"Image":"busybox","NetworkingConfig":{{"EndpointsConfig":{{"anet":{{"NetworkID":"{}"}}}}}}}}"#,
        bnet.trim()
    );
    let (code, body) = api_as(ALICE, &sock, "/containers/create", &create);
    assert!(code == 403 && body.contains("belongs to `bob`"), "bob's network by NetworkID: {code} {body}");

    // BuildKit builds (`version=2`) are ordinary builds: labelled, and held to the same tags.
    let ctxtar = dir.path().join("ctx.tar");
    let packed = std::process::Command::new("tar")
        .args(["-C", ctx.path().to_str().unwrap(), "-cf", ctxtar.to_str().unwrap(), "Dockerfile"])
        .status()
        .unwrap();
    assert!(packed.success());
    std::fs::set_permissions(&ctxtar, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out) = post_as(BOB, &sock, "/v1.41/build?version=2&t=bobbk:1", "application/x-tar", &ctxtar);
    assert!(code == 200 && out.contains("moby.buildkit.trace") && !out.contains("errorDetail"), "{code} {out}");
    let label = root.ok(&["image", "inspect", "--format", "{{index .Config.Labels \"den.owner\"}}", "bobbk:1"]);
    assert_eq!(label.trim(), "bob");
    let (code, out) = post_as(ALICE, &sock, "/v1.41/build?version=2&t=bobbk:1", "application/x-tar", &ctxtar);
    assert!(code == 403 && out.contains("belongs to `bob`"), "{code} {out}");
    let outputs = "%5B%7B%22Type%22%3A%22moby%22%2C%22Attrs%22%3A%7B%22name%22%3A%22bobbk%3A1%22%7D%7D%5D";
    let (code, out) =
        post_as(ALICE, &sock, &format!("/v1.41/build?version=2&outputs={outputs}"), "application/x-tar", &ctxtar);
    assert!(code == 403 && out.contains("belongs to `bob`"), "a tag named by BuildKit's outputs: {code} {out}");

    // A named volume a create mounts that is not there yet is made as its maker's; a container
    // that is not there yet is not let through (it could appear as someone else's first).
    alice.ok(&["run", "--rm", "-v", "fresh:/data", "busybox", "true"]);
    assert_eq!(root.ok(&["volume", "inspect", "--format", "{{index .Labels \"den.owner\"}}", "fresh"]).trim(), "alice");
    alice.ok(&["volume", "rm", "fresh"]);
    let (code, out) = api_as(BOB, &sock, "/v1.41/containers/nosuch/exec", r#"{"Cmd":["true"]}"#);
    assert!(code == 404 && out.contains("den: no such container"), "{code} {out}");
    // A form body would be read by dockerd as options Den does not see.
    let form = dir.path().join("form");
    std::fs::write(&form, "repo=busybox&tag=latest").unwrap();
    std::fs::set_permissions(&form, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out) =
        post_as(BOB, &sock, "/v1.41/images/bobimg:1/tag?repo=bobx&tag=1", "application/x-www-form-urlencoded", &form);
    assert!(code == 403 && out.contains("form-urlencoded"), "{code} {out}");

    // Pruning reaches everyone's objects: admins only.
    refused(&alice, &["container", "prune", "-f"], "admin");

    // A container that binds a shared host folder is an admin's to act on, even for its maker.
    let (s, b) = d.api("PUT", "/api/v1/users/alice/role", br#"{"role": "admin"}"#);
    assert_eq!(s, 200, "{b}");
    let bind = format!("{}:/s", shared.path().display());
    alice.ok(&["run", "-d", "--name", "withshare", "-v", &bind, "busybox", "sleep", "600"]);
    let (s, b) = d.api("PUT", "/api/v1/users/alice/role", br#"{"role": "operator"}"#);
    assert_eq!(s, 200, "{b}");
    refused(&alice, &["exec", "withshare", "sh", "-c", "touch /s/x && chmod u+s /s/x"], "shared into the sandbox");
    refused_head(&alice, &["cp", src.to_str().unwrap(), "withshare:/s/planted"]);
    assert!(
        !shared.path().join("x").exists() && !shared.path().join("planted").exists(),
        "nothing landed in the share"
    );

    // BuildKit's own API is refused, so build options cannot go around the policy.
    let out = ns.sh(&format!(
        "curl -s --unix-socket {} -X POST -H 'Upgrade: h2c' -H 'Connection: Upgrade' http://docker/grpc",
        sock.display()
    ));
    assert!(out.1.contains("BuildKit's own API"), "{out:?}");

    // The admin acts on everyone's; every refusal above is an event naming its user.
    root.ok(&["rm", "-f", "a1", "withshare", "b1"]);
    let (_, events) = d.api("GET", "/api/v1/events?limit=5000", b"");
    let by = |u: &str| events.as_array().into_iter().flatten().any(|e| e["kind"] == "docker.refused" && e["user"] == u);
    assert!(by("bob") && by("vic") && by("alice"), "refusals audited: {events}");
}
