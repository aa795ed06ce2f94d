//! Docker objects belong to the Den user who made them, with the real `docker` CLI run as three
//! local users (uids mapped to Den users by `[docker] users`) against a real dockerd in a QEMU
//! sandbox: the bridge labels every container, volume and build with its owner (a forged label
//! is replaced); a second operator cannot exec into, copy into or out of, stop, remove or
//! mount the volume of the first's containers; a viewer lists but cannot copy out, export or
//! save; operators cannot prune; a container binding a shared host folder is an admin's to act
//! on, whoever made it; BuildKit's own API (`/grpc`) is refused.

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
    std::fs::write(&dockerfile, "FROM busybox\nRUN echo built > /built\n").unwrap();
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
    root.ok(&["rm", "-f", "a1", "withshare"]);
    let (_, events) = d.api("GET", "/api/v1/events?limit=5000", b"");
    let by = |u: &str| events.as_array().into_iter().flatten().any(|e| e["kind"] == "docker.refused" && e["user"] == u);
    assert!(by("bob") && by("vic") && by("alice"), "refusals audited: {events}");
}
