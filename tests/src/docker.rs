//! Docker test helpers: a `busybox:latest` image in `docker save` form, made from the host's
//! busybox-static (no registry is reachable here), and the real `docker` CLI pointed at a
//! socket with a configuration directory of its own.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A GNU header with owner root and time 0 (image unpackers read them as numbers).
fn header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// A root file system layer (tar) with `/bin/busybox` from the host's busybox-static, a link
/// per applet, `/tmp` and `/www`.
pub fn busybox_layer() -> std::io::Result<Vec<u8>> {
    let busybox = std::fs::read("/bin/busybox")?;
    let applets = Command::new("/bin/busybox").arg("--list").output()?;
    let mut layer = tar::Builder::new(Vec::new());
    let mut dir = |path: &str, mode: u32| -> std::io::Result<()> {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        layer.append_data(&mut h, path, std::io::empty())
    };
    dir("bin/", 0o755)?;
    dir("tmp/", 0o1777)?;
    dir("www/", 0o755)?;
    let mut h = header();
    h.set_mode(0o755);
    h.set_size(busybox.len() as u64);
    layer.append_data(&mut h, "bin/busybox", busybox.as_slice())?;
    for applet in String::from_utf8_lossy(&applets.stdout).lines().filter(|a| !a.is_empty() && *a != "busybox") {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        layer.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    layer.into_inner()
}

/// Writes `busybox:latest` as a `docker load` archive to `out`: the [`busybox_layer`] and a
/// config whose command is `sh`.
pub fn busybox_image(out: &Path) -> std::io::Result<()> {
    let layer = busybox_layer()?;
    let layer_id = hex::encode(Sha256::digest(&layer));
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_id}")]},
    })
    .to_string();
    let config_id = hex::encode(Sha256::digest(config.as_bytes()));
    let manifest = serde_json::json!([{
        "Config": format!("{config_id}.json"),
        "RepoTags": ["busybox:latest"],
        "Layers": [format!("{layer_id}/layer.tar")],
    }])
    .to_string();
    let mut image = tar::Builder::new(std::fs::File::create(out)?);
    let mut add = |path: &str, data: &[u8]| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        image.append_data(&mut h, path, data)
    };
    add(&format!("{layer_id}/layer.tar"), &layer)?;
    add(&format!("{config_id}.json"), config.as_bytes())?;
    add("manifest.json", manifest.as_bytes())?;
    image.finish()
}

/// A `docker build` context: a tar holding only `Dockerfile`.
pub fn build_context(dockerfile: &str) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(dockerfile.len() as u64);
    tar.append_data(&mut h, "Dockerfile", dockerfile.as_bytes()).expect("an in-memory tar");
    tar.into_inner().expect("an in-memory tar")
}

/// The real `docker` CLI talking to one socket, with its own (empty) configuration directory.
pub struct DockerCli {
    socket: PathBuf,
    config: tempfile::TempDir,
    uid: Option<u32>,
}

impl DockerCli {
    /// A CLI for the socket at `socket`.
    pub fn new(socket: &Path) -> DockerCli {
        DockerCli { socket: socket.into(), config: tempfile::tempdir().expect("temp dir"), uid: None }
    }

    /// A CLI that runs as the local user `uid` (group `uid`), with its own config folder.
    pub fn as_uid(socket: &Path, uid: u32) -> DockerCli {
        let cli = DockerCli { uid: Some(uid), ..DockerCli::new(socket) };
        std::os::unix::fs::chown(cli.config.path(), Some(uid), Some(uid)).expect("chown the config folder");
        cli
    }

    /// A `docker` command with the socket and config set.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.config.path())
            .env_remove("DOCKER_CONTEXT")
            .args(args);
        if let Some(uid) = self.uid {
            use std::os::unix::process::CommandExt;
            c.uid(uid).gid(uid).env("HOME", self.config.path());
        }
        c
    }

    /// Runs `docker args` until it succeeds (every 2 s, at most `limit`): its stdout.
    pub fn until_ok(&self, args: &[&str], limit: std::time::Duration) -> String {
        let start = std::time::Instant::now();
        loop {
            let o = self.run(args);
            if o.status.success() {
                return String::from_utf8_lossy(&o.stdout).into_owned();
            }
            assert!(start.elapsed() < limit, "docker {args:?}: {}", String::from_utf8_lossy(&o.stderr));
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
    }

    /// Runs the shell line `line` (which calls `docker`) on a terminal made by `script`, typing
    /// `input` into it: everything the terminal showed.
    pub fn on_terminal(&self, line: &str, input: &str) -> String {
        use std::io::Write;
        let c = self.cmd(&[]);
        let mut child = Command::new("script")
            .args(["-qec", line, "/dev/null"])
            .envs(c.get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))))
            .env_remove("DOCKER_CONTEXT")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("script(1) runs");
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(input.as_bytes()).expect("typing into the terminal");
        drop(stdin);
        let out = child.wait_with_output().expect("script(1) ends");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `docker args...`: the output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("the docker CLI runs")
    }

    /// Runs `docker args...`, which must succeed: its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "docker {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs `docker args...`, which must fail: its standard error.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(!o.status.success(), "docker {args:?} should have failed: {}", String::from_utf8_lossy(&o.stdout));
        String::from_utf8_lossy(&o.stderr).into_owned()
    }
}
