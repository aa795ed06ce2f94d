//! The real OpenSSH client (`ssh`, `scp`, `sftp`, `ssh-keygen`, `ssh-agent`) driven against
//! the SSH gateway, and tmux for interactive sessions with a real terminal.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Makes an Ed25519 key pair `dir/name` (no passphrase).
pub fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"]).arg(&path).status();
    assert!(st.is_ok_and(|s| s.success()), "ssh-keygen");
    path
}

/// Options every client call uses: no config, no known-hosts prompts, quiet.
pub fn common_opts(port: &str) -> Vec<String> {
    [
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=20",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["-o".to_string(), format!("Port={port}")])
    .collect()
}

/// A client for one gateway address and key.
#[derive(Clone)]
pub struct Client {
    /// Gateway host.
    pub host: String,
    /// Gateway port.
    pub port: String,
    /// Private key file.
    pub key: PathBuf,
    /// A prefix the client commands run under (e.g. `ip netns exec NAME`).
    pub wrap: Vec<String>,
}

impl Client {
    /// A client of `addr` (`host:port`) with `key`.
    pub fn new(addr: &str, key: &Path) -> Client {
        let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "22"));
        Client { host: host.into(), port: port.into(), key: key.into(), wrap: Vec::new() }
    }

    /// The same client, run inside network namespace `ns`.
    pub fn in_netns(mut self, ns: &str) -> Client {
        self.wrap = ["ip", "netns", "exec", ns].map(String::from).to_vec();
        self
    }

    /// A command for `program`, under the prefix.
    pub fn command(&self, program: &str) -> Command {
        match self.wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Options with the key, batch mode.
    pub fn opts(&self) -> Vec<String> {
        let mut o = common_opts(&self.port);
        o.extend(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"].map(String::from));
        o.push(self.key.display().to_string());
        o
    }

    /// `ssh [extra] target@host cmd`.
    pub fn ssh(&self, target: &str, extra: &[&str], cmd: &str) -> Output {
        self.command("ssh")
            .args(self.opts())
            .args(extra)
            .arg(format!("{target}@{}", self.host))
            .arg(cmd)
            .output()
            .expect("ssh runs")
    }

    /// Runs `cmd` until it exits 0 (the guest may still be booting); its stdout.
    pub fn ssh_until_ok(&self, target: &str, cmd: &str, timeout: Duration) -> String {
        let t = Instant::now();
        loop {
            let o = self.ssh(target, &[], cmd);
            if o.status.success() {
                return String::from_utf8_lossy(&o.stdout).into_owned();
            }
            assert!(t.elapsed() < timeout, "ssh {target} {cmd}: {:?}", text(&o));
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// `scp [-O] from to` (remote paths as `target:path`).
    pub fn scp(&self, extra: &[&str], from: &str, to: &str) -> Output {
        let fix = |p: &str| match p.split_once(':') {
            Some((t, path)) if !p.starts_with('/') => format!("{t}@{}:{path}", self.host),
            _ => p.to_string(),
        };
        self.command("scp").args(self.opts()).args(extra).args([fix(from), fix(to)]).output().expect("scp runs")
    }

    /// `sftp -b batch target@host`.
    pub fn sftp(&self, target: &str, batch: &Path) -> Output {
        self.command("sftp")
            .args(self.opts())
            .arg("-b")
            .arg(batch)
            .arg(format!("{target}@{}", self.host))
            .output()
            .expect("sftp runs")
    }

    /// The `ssh` command line for an interactive session in tmux.
    pub fn interactive_cmd(&self, target: &str) -> String {
        let mut parts = vec!["ssh".to_string()];
        parts.extend(self.opts());
        parts.push("-tt".into());
        parts.push(format!("{target}@{}", self.host));
        parts.join(" ")
    }
}

/// An interactive session in an 80x24 tmux terminal: types a command and checks its output
/// and `stty size`, resizes to `cols`x`rows` and checks that the guest sees it, then exits.
pub fn interactive_resize(client: &Client, target: &str, cols: u16, rows: u16) {
    let tmux = Tmux::start(&client.interactive_cmd(target), 80, 24);
    tmux.type_line("echo typed-$((6*7)); stty size");
    tmux.wait_for("typed-42", Duration::from_secs(60));
    tmux.wait_for("24 80", Duration::from_secs(10));
    tmux.resize(cols, rows);
    std::thread::sleep(Duration::from_millis(500));
    tmux.type_line("stty size");
    tmux.wait_for(&format!("{rows} {cols}"), Duration::from_secs(20));
    tmux.type_line("exit");
    std::thread::sleep(Duration::from_secs(1));
}

/// (exit code, stdout, stderr).
pub fn text(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

/// A detached tmux session on its own server socket, killed when dropped.
pub struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    /// Starts `cmd` in a `cols`x`rows` terminal.
    pub fn start(cmd: &str, cols: u16, rows: u16) -> Tmux {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Tmux { socket: dir.path().join("tmux.sock"), _dir: dir };
        let st = t
            .tmux()
            .args(["new-session", "-d", "-s", "den", "-x", &cols.to_string(), "-y", &rows.to_string(), cmd])
            .status();
        assert!(st.is_ok_and(|s| s.success()), "tmux new-session");
        t
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket).arg("-f").arg("/dev/null");
        c
    }

    /// Types `keys` then Enter.
    pub fn type_line(&self, keys: &str) {
        let st = self.tmux().args(["send-keys", "-t", "den", "-l", keys]).status();
        assert!(st.is_ok_and(|s| s.success()), "tmux send-keys");
        let st = self.tmux().args(["send-keys", "-t", "den", "Enter"]).status();
        assert!(st.is_ok_and(|s| s.success()), "tmux send-keys Enter");
    }

    /// Resizes the terminal.
    pub fn resize(&self, cols: u16, rows: u16) {
        let st =
            self.tmux().args(["resize-window", "-t", "den", "-x", &cols.to_string(), "-y", &rows.to_string()]).status();
        assert!(st.is_ok_and(|s| s.success()), "tmux resize-window");
    }

    /// The screen and its scrollback.
    pub fn screen(&self) -> String {
        let o = self.tmux().args(["capture-pane", "-p", "-J", "-S", "-200", "-t", "den"]).output();
        o.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    }

    /// Waits until the screen contains `what`; the screen.
    pub fn wait_for(&self, what: &str, timeout: Duration) -> String {
        let t = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(what) {
                return s;
            }
            assert!(t.elapsed() < timeout, "waiting for {what:?} on the terminal:\n{s}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").stderr(std::process::Stdio::null()).status();
    }
}
