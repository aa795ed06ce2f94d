//! Engine processes. They are started detached from `dend` (their own session, stdin from
//! `/dev/null`, output appended to `engine.log`, no parent-death signal) so that they survive
//! `kill -9 dend`; they are recognised again by pid and start time, and waited for with a pidfd,
//! which works whether or not this `dend` is their parent. Children of this `dend` are also
//! reaped here, so they leave no zombies and their exit status is kept.

use super::EngineError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Stdio;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::watch;

/// A process, identified so that a reused pid does not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Proc {
    /// Process id.
    pub pid: i32,
    /// Start time (clock ticks after boot, `/proc/<pid>/stat` field 22).
    pub start_time: u64,
}

/// How a process ended, when this `dend` was its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (None, Some(s)) => write!(f, "signal {s}"),
            (None, None) => write!(f, "unknown status"),
        }
    }
}

/// What the reaper of one of our children has seen.
#[derive(Debug, Clone, Copy)]
enum Seen {
    Running,
    Ended(Option<ExitStatus>),
}

/// Children started by this process, with the exit status their reaper saw.
static CHILDREN: LazyLock<Mutex<HashMap<Proc, watch::Receiver<Seen>>>> = LazyLock::new(Default::default);

fn children() -> std::sync::MutexGuard<'static, HashMap<Proc, watch::Receiver<Seen>>> {
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts `cmd` detached: a new session, stdin `/dev/null`, stdout and stderr appended to
/// `log`, its pid recorded next to it (`<log>.pid`). A task reaps it and keeps its exit status
/// for [`wait_exit`]. `what` names the binary in errors. Needs a tokio runtime.
pub fn spawn(cmd: std::process::Command, what: &str, log: &Path) -> Result<Proc, EngineError> {
    spawn_recorded(cmd, what, log, &log.with_extension("pid"))
}

/// [`spawn`], recording the pid in `record` (for several processes sharing one log).
pub fn spawn_recorded(
    mut cmd: std::process::Command,
    what: &str,
    log: &Path,
    record: &Path,
) -> Result<Proc, EngineError> {
    let open_err = |e| EngineError::Io(format!("cannot open engine log {}", log.display()), e);
    let out = OpenOptions::new().create(true).append(true).open(log).map_err(open_err)?;
    let err = out.try_clone().map_err(open_err)?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: the hook runs in the child between fork and exec; setsid is async-signal-safe and
    // only affects the child.
    unsafe { cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from)) };
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(false);
    let mut child = cmd.spawn().map_err(|source| EngineError::Spawn { what: what.into(), source })?;
    let Some(pid) = child.id().map(|p| p as i32) else {
        return Err(EngineError::Startup(format!("{what} ended before its pid could be read")));
    };
    // Not reaped yet (the reaper starts below), so /proc/<pid> exists even if it already exited.
    let Some(start_time) = stat(pid).map(|s| s.start_time) else {
        let _ = child.start_kill();
        return Err(EngineError::Startup(format!("{what} (pid {pid}): cannot read /proc/{pid}/stat")));
    };
    let proc = Proc { pid, start_time };
    // Before anything else can fail or dend can die: how a later dend finds this process if its
    // launch is cut short before the VM's record names it ([`kill_orphans`]).
    if let Err(e) = std::fs::write(record, format!("{pid} {start_time}\n")) {
        tracing::warn!(pid, %e, "cannot record the engine's pid next to its log");
    }
    let (tx, rx) = watch::channel(Seen::Running);
    children().insert(proc, rx);
    tokio::spawn(async move {
        let status = child.wait().await.ok().map(|s| ExitStatus { code: s.code(), signal: s.signal() });
        let _ = tx.send(Seen::Ended(status));
    });
    Ok(proc)
}

/// Fields of `/proc/<pid>/stat` that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    state: char,
    start_time: u64,
    /// User plus system CPU time, in clock ticks.
    cpu_ticks: u64,
    /// Resident set size, in pages.
    rss_pages: u64,
}

/// Parses a `/proc/<pid>/stat` line: the command name (field 2) is in parentheses and may hold
/// spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime (14, 15) are fields[11..13], starttime (22)
    // is fields[19], rss (24) is fields[21].
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let state = fields.first()?.chars().next()?;
    Some(Stat {
        state,
        start_time: num(19)?,
        cpu_ticks: num(11)?.saturating_add(num(12)?),
        rss_pages: num(21).unwrap_or(0),
    })
}

fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The start time of process `pid`, if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|s| s.start_time)
}

/// CPU time used so far (clock ticks) and resident memory (bytes) of the process `p`, when it
/// is still the same process.
pub fn usage(p: Proc) -> Option<(u64, u64)> {
    let s = stat(p.pid).filter(|s| s.start_time == p.start_time)?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(4096);
    Some((s.cpu_ticks, s.rss_pages.saturating_mul(page)))
}

/// The process exists, is not a zombie, and is the one that started at `start_time`.
pub fn alive(p: Proc) -> bool {
    p.pid > 0 && matches!(stat(p.pid), Some(s) if s.start_time == p.start_time && !matches!(s.state, 'Z' | 'X' | 'x'))
}

fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `sig` to `p` if it is still that process (through a pidfd, so a pid reused between
/// the check and the signal is not hit). Returns whether it was alive.
pub fn signal(p: Proc, sig: i32) -> Result<bool, EngineError> {
    let fd = match pidfd_open(p.pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(false),
        Err(e) => return Err(EngineError::Io(format!("pidfd_open({})", p.pid), e)),
    };
    if !alive(p) {
        return Ok(false);
    }
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal with a valid pidfd, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0)
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(false);
        }
        return Err(EngineError::Io(format!("signal {sig} to process {}", p.pid), e));
    }
    Ok(true)
}

/// Kills the processes recorded by `*.pid` files in `dir` (written by [`spawn`]) that still
/// run: engine processes of a launch cut short by a dend restart, which no VM record names.
/// Returns their pids. Call only for a VM whose recorded process is gone.
pub fn kill_orphans(dir: &Path) -> Vec<i32> {
    kill_recorded(dir, "")
}

/// The `*.pid` files in `dir` whose names start with `prefix`, each with the process it records
/// (whether or not that still runs), or `None` when the file holds no valid record.
pub fn recorded(dir: &Path, prefix: &str) -> Vec<(std::path::PathBuf, Option<Proc>)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    let named = |p: &Path| {
        p.extension().is_some_and(|x| x == "pid")
            && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix))
    };
    let mut found = vec![];
    for path in entries.flatten().map(|e| e.path()).filter(|p| named(p)) {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut words = text.split_whitespace().map(str::parse::<u64>);
        let proc = match (words.next(), words.next()) {
            (Some(Ok(pid)), Some(Ok(start_time))) if pid > 0 => Some(Proc { pid: pid as i32, start_time }),
            _ => None,
        };
        found.push((path, proc));
    }
    found
}

/// Kills the processes [`recorded`] in `dir` under `prefix` that still run (pid and start time
/// must both match) and removes their files. Blocks up to 2 s per process while it ends.
/// Returns their pids.
pub fn kill_recorded(dir: &Path, prefix: &str) -> Vec<i32> {
    let mut killed = vec![];
    for (path, p) in recorded(dir, prefix) {
        if let Some(p) = p.filter(|p| signal(*p, libc::SIGKILL).unwrap_or(false)) {
            killed.push(p.pid);
            for _ in 0..100 {
                if !alive(p) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    killed
}

/// Waits until `p` has ended. Returns its exit status when this process started it (and its
/// reaper still runs); `None` when it was adopted, which says only that it ended.
pub async fn wait_exit(p: Proc) -> Option<ExitStatus> {
    let rx = children().get(&p).cloned();
    if let Some(mut rx) = rx {
        loop {
            if let Seen::Ended(status) = *rx.borrow_and_update() {
                return status;
            }
            if rx.changed().await.is_err() {
                // The reaper is gone (its runtime ended): it may still have left a status.
                if let Seen::Ended(status) = *rx.borrow() {
                    return status;
                }
                break;
            }
        }
    }
    wait_pidfd(p).await;
    None
}

/// Waits for a process that may not be our child: a pidfd becomes readable when it exits.
async fn wait_pidfd(p: Proc) {
    let fd = match pidfd_open(p.pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return,
        Err(e) => {
            tracing::warn!(pid = p.pid, "pidfd_open: {e}; polling /proc instead");
            return poll_until_gone(p).await;
        }
    };
    // Checked after opening: the descriptor refers to this process if it still has our start time.
    if !alive(p) {
        return;
    }
    // SAFETY: `fd` is an open pidfd that the AsyncFd owns (and closes) and nothing replaces.
    match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
        Ok(afd) => {
            let _ = afd.readable().await;
        }
        Err(e) => {
            tracing::warn!(pid = p.pid, "cannot watch pidfd: {e}; polling /proc instead");
            poll_until_gone(p).await
        }
    }
}

async fn poll_until_gone(p: Proc) {
    while alive(p) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends SIGKILL and waits up to `timeout` for the end. Returns the exit status when known.
pub async fn kill(p: Proc, timeout: Duration) -> Result<Option<ExitStatus>, EngineError> {
    signal(p, libc::SIGKILL)?;
    tokio::time::timeout(timeout, wait_exit(p)).await.map_err(|_| {
        EngineError::Io(
            format!("process {} did not end within {timeout:?} after SIGKILL", p.pid),
            std::io::ErrorKind::TimedOut.into(),
        )
    })
}

/// The last `lines` lines of a log file (at most its last 64 KiB), for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let read = || -> std::io::Result<String> {
        Ok(String::from_utf8_lossy(&super::logs::tail(path, 64 * 1024)?).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sleeper(dir: &Path) -> Proc {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        spawn(cmd, "sleep", &dir.join("engine.log")).unwrap()
    }

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let line = "1234 (a) b) (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let want = Stat { state: 'S', start_time: 987654, cpu_ticks: 3, rss_pages: 10 };
        assert_eq!(parse_stat(line), Some(want));
        assert_eq!(parse_stat("1 (x) S 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[tokio::test]
    async fn own_child_is_detached_reaped_and_its_status_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = sleeper(dir.path());
        assert!(alive(p));
        assert!(!alive(Proc { start_time: p.start_time + 1, ..p }), "another start time is another process");
        // Its own session (setsid): session id = its pid.
        assert_eq!(nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(p.pid))), Ok(nix::unistd::Pid::from_raw(p.pid)));
        let status = kill(p, Duration::from_secs(5)).await.unwrap();
        assert_eq!(status, Some(ExitStatus { code: None, signal: Some(libc::SIGKILL) }));
        assert!(!alive(p));
        // Reaped: no zombie left behind.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(start_time(p.pid).is_none(), "pid {} still in /proc (zombie?)", p.pid);
        assert_eq!(wait_exit(p).await, status, "a second waiter sees the same status");
        assert!(!signal(p, libc::SIGKILL).unwrap(), "signalling an ended process is a no-op");
    }

    #[tokio::test]
    async fn output_goes_to_the_engine_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("engine.log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; read x || echo stdin-closed; exit 3"]);
        let p = spawn(cmd, "sh", &log).unwrap();
        let st = tokio::time::timeout(Duration::from_secs(5), wait_exit(p)).await.unwrap();
        assert_eq!(st, Some(ExitStatus { code: Some(3), signal: None }));
        assert_eq!(log_tail(&log, 2), "err\nstdin-closed");
        assert!(log_tail(&dir.path().join("nope"), 2).contains("nope"));
    }

    #[tokio::test]
    async fn a_process_that_is_not_our_child_is_waited_for_with_a_pidfd() {
        // A grandchild, re-parented away from us once `sh` exits: as after a dend restart.
        let out = Command::new("sh").args(["-c", "setsid sleep 30 >/dev/null 2>&1 & echo $!"]).output().unwrap();
        let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let p = Proc { pid, start_time: start_time(pid).unwrap() };
        assert!(alive(p));
        let waiter = tokio::spawn(wait_exit(p));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished());
        assert!(signal(p, libc::SIGKILL).unwrap());
        let st = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert_eq!(st, None, "the status of a process we did not start is unknown");
    }

    #[tokio::test]
    async fn orphans_are_found_by_their_pid_files_and_killed() {
        let dir = tempfile::tempdir().unwrap();
        let p = sleeper(dir.path());
        let pid_file = dir.path().join("engine.pid");
        assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), format!("{} {}\n", p.pid, p.start_time));
        std::fs::write(dir.path().join("old.pid"), "4194000 1\n").unwrap(); // a stale record: nothing runs
        assert_eq!(kill_orphans(dir.path()), vec![p.pid]);
        assert!(!alive(p));
        assert!(!pid_file.exists() && !dir.path().join("old.pid").exists());
        assert!(kill_orphans(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn recorded_processes_are_killed_by_prefix_only() {
        let dir = tempfile::tempdir().unwrap();
        let engine = sleeper(dir.path());
        let log = dir.path().join("virtiofsd.log");
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let share = spawn_recorded(cmd, "sleep", &log, &dir.path().join("virtiofsd-0.pid")).unwrap();
        assert_eq!(recorded(dir.path(), "virtiofsd-").into_iter().map(|r| r.1).collect::<Vec<_>>(), vec![Some(share)]);
        assert_eq!(kill_recorded(dir.path(), "virtiofsd-"), vec![share.pid]);
        assert!(!alive(share) && alive(engine), "only the share's process");
        assert!(!dir.path().join("virtiofsd-0.pid").exists() && dir.path().join("engine.pid").exists());
        assert_eq!(kill_orphans(dir.path()), vec![engine.pid]);
    }

    #[tokio::test]
    async fn a_missing_binary_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = spawn(Command::new("/nonexistent/qemu"), "qemu", &dir.path().join("l")).unwrap_err();
        assert!(err.to_string().starts_with("cannot start qemu:"), "{err}");
    }
}
