//! The Docker bridge with the real `docker` CLI against a real dockerd in a QEMU guest: the
//! first request makes and starts the sandbox VM; images are loaded (no registry here),
//! containers run, stream logs, take stdin through an attach, and the policy refuses what would
//! reach the sandbox (with its message printed by the CLI) while plain requests keep working.
//! A shared host folder is bound into a container; `bollard_api` walks the same paths in Rust.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bollard_api;

use den_tests::dend::Dend;
use den_tests::docker::{busybox_image, DockerCli};
use den_tests::images;
use den_tests::netns::NetNs;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// One HTTP request written by hand (`Content-Length: len`, then `body`, then the write side
/// closed): the answer's head and body as text.
fn raw_request(sock: &Path, method: &str, path: &str, body: &str, len: usize) -> String {
    use std::io::Read;
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

/// A BuildKit session (`POST /session`, `Upgrade: h2c`) through the bridge: after the `101`,
/// dockerd speaks HTTP/2 as the client (its connection preface and SETTINGS reach us) and our
/// server SETTINGS reach it (it acknowledges them): bytes flow both ways over the splice.
fn h2c_session(sock: &Path) {
    use std::io::Read;
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = "POST /v1.41/session HTTP/1.1\r\nHost: docker\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\
                X-Docker-Expose-Session-Uuid: den-bridge-test\r\nX-Docker-Expose-Session-Name: test\r\n\
                X-Docker-Expose-Session-Sharedkey: k\r\nContent-Length: 0\r\n\r\n";
    s.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8];
    while !answer.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        answer.push(byte[0]);
    }
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 101") && answer.contains("upgrade: h2c"), "{answer}");
    let mut preface = [0u8; 24];
    s.read_exact(&mut preface).unwrap();
    assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "dockerd's HTTP/2 client preface");
    // Our (server) preface: an empty SETTINGS frame. Then read frames until dockerd's ACK.
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
    loop {
        let mut frame = [0u8; 9];
        s.read_exact(&mut frame).unwrap();
        let len = u32::from_be_bytes([0, frame[0], frame[1], frame[2]]) as usize;
        s.read_exact(&mut vec![0; len]).unwrap();
        if frame[3] == 4 && frame[4] & 1 == 1 {
            return;
        }
    }
}

#[test]
fn docker_cli_through_the_bridge() {
    let store = images::shared_store();
    images::build_builtin(&store, "docker");
    let ns = NetNs::new("dkb");
    let shared = tempfile::tempdir().unwrap();
    let den_toml = format!("[docker]\nmemory_mib = 2048\nshare = [{:?}]\n", shared.path().display().to_string());
    let mut d = Dend::start_in_with_config(Path::new(env!("CARGO_BIN_EXE_dend")), &ns, &den_toml);
    let cli = DockerCli::new(&d.dir.path().join("run/docker.sock"));

    // The first call makes and starts the sandbox; `docker version` shows both ends.
    let version =
        cli.until_ok(&["version", "--format", "{{.Server.Version}} {{.Server.Os}}"], Duration::from_secs(600));
    assert!(version.trim().ends_with("linux"), "{version}");
    assert_eq!(cli.ok(&["info", "--format", "{{.OSType}}"]).trim(), "linux");
    let vm = d.vm("docker-sandbox");
    assert_eq!(vm["state"], "running", "{vm}");
    assert_eq!(vm["spec"]["kind"], "app");
    let (code, mounted, err) = d.den(&["vm", "exec", "docker-sandbox", "--", "mountpoint", "/var/lib/docker"]);
    assert_eq!(code, 0, "/var/lib/docker is on the data disk: {mounted}{err}");

    // `den docker context` makes the plain `docker` CLI use the bridge with no flags.
    let config = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(images::den_cli())
        .arg("--socket")
        .arg(d.socket())
        .args(["docker", "context"])
        .env("DOCKER_CONFIG", config.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plain = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Os}}"])
        .env("DOCKER_CONFIG", config.path())
        .env_remove("DOCKER_HOST")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&plain.stdout).trim(), "linux", "{}", String::from_utf8_lossy(&plain.stderr));
    let (code, status, _) = d.den(&["docker", "status", "--json"]);
    assert_eq!(code, 0);
    assert!(status.contains("\"state\":\"running\""), "{status}");

    // An image made here, loaded, listed, run.
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("busybox.tar");
    busybox_image(&tar).unwrap();
    let loaded = cli.ok(&["load", "-i", tar.to_str().unwrap()]);
    assert!(loaded.contains("busybox:latest"), "{loaded}");
    assert!(cli.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).contains("busybox:latest"));
    assert_eq!(cli.ok(&["run", "--rm", "busybox", "echo", "hi"]).trim(), "hi");

    // A shared host folder (virtio-fs), bound at its host path: read and written by a container.
    std::fs::write(shared.path().join("in.txt"), "from the host\n").unwrap();
    let bind = format!("{}:/src", shared.path().display());
    let seen =
        cli.ok(&["run", "--rm", "-v", &bind, "busybox", "sh", "-c", "cat /src/in.txt; echo made > /src/out.txt"]);
    assert_eq!(seen.trim(), "from the host");
    assert_eq!(std::fs::read_to_string(shared.path().join("out.txt")).unwrap(), "made\n", "written through the share");
    let err = cli.fails(&["run", "--rm", "-v", "/etc:/x", "busybox", "true"]);
    assert!(
        err.contains("not shared with the Docker sandbox") && err.contains("share = ["),
        "says how to allow: {err}"
    );

    // `docker build` with the classic builder, FROM a loaded image.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), "FROM busybox\nRUN echo built > /built\nCMD [\"cat\", \"/built\"]\n")
        .unwrap();
    let built =
        cli.cmd(&["build", "-t", "mine:1", ctx.path().to_str().unwrap()]).env("DOCKER_BUILDKIT", "0").output().unwrap();
    assert!(built.status.success(), "docker build: {}", String::from_utf8_lossy(&built.stderr));
    assert_eq!(cli.ok(&["run", "--rm", "mine:1"]).trim(), "built");

    // stdin through an attach (`Upgrade: tcp`), with half-close ending the container's input.
    let mut child = cli
        .cmd(&["run", "--rm", "-i", "busybox", "wc", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&vec![b'x'; 100_000]).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "100000", "stdin reached the container and ended");

    // A detached container and a following log stream.
    let id = cli.ok(&["run", "-d", "busybox", "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 1; done"]);
    let logs = cli.ok(&["logs", "-f", id.trim()]);
    assert_eq!(logs.lines().collect::<Vec<_>>(), ["line1", "line2", "line3"], "logs -f follows to the end");
    cli.ok(&["rm", id.trim()]);

    // The policy: each refusal comes back as the CLI's own error with Den's message.
    for (args, says) in [
        (&["run", "--rm", "--privileged", "busybox", "true"][..], "--privileged"),
        (&["run", "--rm", "--pid", "host", "busybox", "true"], "PidMode: host"),
        (&["run", "--rm", "--cap-add", "SYS_ADMIN", "busybox", "true"], "SYS_ADMIN"),
        (&["run", "--rm", "--device", "/dev/kvm", "busybox", "true"], "Devices"),
        (&["run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "true"], "seccomp=unconfined"),
        (&["run", "--rm", "-v", "/etc:/x", "busybox", "true"], "/etc"),
        (&["run", "--rm", "--sysctl", "net.ipv4.ip_forward=1", "busybox", "true"], "--sysctl"),
        (&["run", "--rm", "--mount", "type=bind,src=/,dst=/host", "busybox", "true"], "`/`"),
        (&["volume", "create", "--opt", "o=bind", "--opt", "device=/etc", "--opt", "type=none", "v1"], "o=bind"),
    ] {
        let err = cli.fails(args);
        assert!(err.contains("refused by Den's Docker policy") && err.contains(says), "{args:?}: {err}");
    }
    let sleeper = cli.ok(&["run", "-d", "busybox", "sleep", "60"]);
    let err = cli.fails(&["exec", "--privileged", sleeper.trim(), "true"]);
    assert!(err.contains("refused by Den's Docker policy"), "{err}");
    assert_eq!(cli.ok(&["exec", sleeper.trim(), "echo", "in"]).trim(), "in", "a plain exec right after works");
    // `exec -it` on a terminal: typed input reaches a shell on the container's own terminal.
    let shown = cli.on_terminal(&format!("docker exec -it {} sh", sleeper.trim()), "echo typed-$((40+2)); tty; exit\n");
    assert!(shown.contains("typed-42") && shown.contains("/dev/pts/"), "{shown}");
    cli.ok(&["stop", "-t", "1", sleeper.trim()]);
    let state = cli.ok(&["inspect", "--format", "{{.State.Status}}", sleeper.trim()]);
    assert_eq!(state.trim(), "exited", "docker stop stopped it");
    cli.ok(&["rm", sleeper.trim()]);
    assert_eq!(cli.ok(&["run", "--rm", "busybox", "echo", "still"]).trim(), "still");

    // Malformed bodies are refused, never forwarded: empty, not JSON, cut short.
    let sock = d.dir.path().join("run/docker.sock");
    for (body, len) in [("", 0), ("not json", 8), ("[1]", 3), ("{}", 100)] {
        let answer = raw_request(&sock, "POST", "/v1.41/containers/create", body, len);
        assert!(answer.starts_with("HTTP/1.1 403"), "{body:?} with length {len}: {answer}");
        assert!(answer.contains("refused by Den's Docker policy"), "{answer}");
    }
    // What dockerd would read differently from a naive check: an encoded path, the deprecated
    // top-level host configuration, a key given twice, an old API version.
    let top = r#"{"Image":"busybox","Privileged":true}"#;
    let twins = r#"{"Image":"busybox","HostConfig":{"Privileged":true},"HostConfig":{}}"#;
    for (path, body) in [
        ("/v1.41/containers/%63reate", "{}"),
        ("/v1.41/containers/create", top),
        ("/v1.41/containers/create", twins),
        ("/v1.23/containers/x/start", "{}"),
    ] {
        let answer = raw_request(&sock, "POST", path, body, body.len());
        assert!(answer.starts_with("HTTP/1.1 403") && answer.contains("refused by Den"), "{path} {body}: {answer}");
    }
    assert_eq!(cli.ok(&["run", "--rm", "busybox", "echo", "after"]).trim(), "after");

    // A published port reaches the container from the host's loopback, and goes with it.
    let web = cli.ok(&[
        "run",
        "-d",
        "-p",
        "8080:80",
        "busybox",
        "sh",
        "-c",
        "echo hello > /www/index.html; httpd -f -p 80 -h /www",
    ]);
    let curl = "curl -s --max-time 5 http://127.0.0.1:8080/";
    let start = Instant::now();
    while ns.sh(curl).1.trim() != "hello" {
        assert!(start.elapsed() < Duration::from_secs(60), "127.0.0.1:8080 never answered: {:?}", ns.sh(curl));
        std::thread::sleep(Duration::from_millis(500));
    }
    cli.ok(&["rm", "-f", web.trim()]);
    let start = Instant::now();
    while ns.sh(curl).0 == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "the forward outlived its container");
        std::thread::sleep(Duration::from_millis(500));
    }

    // The same API paths through bollard, a Rust client; an h2c upgrade spliced both ways.
    bollard_api::check(&sock);
    h2c_session(&sock);

    // A volume's data, kept for after the sandbox restarts below.
    cli.ok(&["volume", "create", "keep"]);
    cli.ok(&["run", "--rm", "-v", "keep:/data", "busybox", "sh", "-c", "echo kept > /data/f"]);

    // dend restarted during `docker logs -f`: the client sees its stream end cleanly; the
    // container keeps running in the sandbox and is there when dend is back.
    let ticker = cli.ok(&["run", "-d", "busybox", "sh", "-c", "while true; do echo tick; sleep 1; done"]);
    let ticker = ticker.trim().to_string();
    let mut follow = cli.cmd(&["logs", "-f", &ticker]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let relaxed = format!("{den_toml}idle_stop_secs = 6\nallow = [\"sysctls\"]\n");
    std::fs::write(d.dir.path().join("den.toml"), relaxed).unwrap();
    d.terminate();
    let start = Instant::now();
    let ended = loop {
        if let Some(status) = follow.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "docker logs -f did not end when dend went away");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(ended.success(), "a clean end of the log stream: {ended:?}");
    let mut seen = String::new();
    std::io::Read::read_to_string(&mut follow.stdout.take().unwrap(), &mut seen).unwrap();
    assert!(seen.contains("tick"), "{seen}");
    d.spawn();
    let running = cli.until_ok(&["ps", "--format", "{{.ID}}"], Duration::from_secs(120));
    assert!(ticker.starts_with(running.trim()), "the container kept running across dend's restart: {running}");
    cli.ok(&["rm", "-f", &ticker]);
    // The admin relaxed one rule (`allow`): that rule no longer refuses; the others still do.
    let sysctl =
        ["run", "--rm", "--sysctl", "net.ipv4.ip_forward=1", "busybox", "cat", "/proc/sys/net/ipv4/ip_forward"];
    assert_eq!(cli.ok(&sysctl).trim(), "1");
    assert!(cli.fails(&["run", "--rm", "--privileged", "busybox", "true"]).contains("refused by Den's Docker policy"));

    // The resource saver: idle, the sandbox stops; `docker version` and `docker ps` answer
    // without waking it; a run wakes it, and the volume's data is still there.
    let start = Instant::now();
    while d.vm("docker-sandbox")["state"] != "stopped" {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the idle sandbox did not stop: {}",
            d.vm("docker-sandbox")
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(cli.ok(&["version", "--format", "{{.Server.Version}}"]).trim().len() > 2);
    assert_eq!(cli.ok(&["ps", "-q"]).trim(), "", "nothing runs in a sleeping sandbox");
    assert_eq!(d.vm("docker-sandbox")["state"], "stopped", "version and ps did not wake it");
    assert_eq!(cli.ok(&["run", "--rm", "-v", "keep:/data", "busybox", "cat", "/data/f"]).trim(), "kept");
    assert_eq!(d.vm("docker-sandbox")["state"], "running", "the run woke it");

    // Every refusal is an event naming the user.
    let (_, events) = d.api("GET", "/api/v1/events?limit=5000", b"");
    let refusals = events.as_array().into_iter().flatten().filter(|e| e["kind"] == "docker.refused").count();
    assert!(refusals >= 12, "refusals recorded: {events}");
}
