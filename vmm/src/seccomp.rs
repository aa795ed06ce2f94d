//! Seccomp filters (seccompiler), one per kind of thread, on by default. Each thread installs its
//! filter as the first thing it does, so everything a guest can reach runs filtered: vCPU threads
//! may only run KVM_RUN among ioctls and cannot open files or start processes; no thread can exec.
//! `--seccomp log` allows and logs (via the kernel audit log) what would have been refused, to
//! find a missing syscall; `--seccomp off` disables filtering.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// What a refused syscall does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Kill den-vmm (the default).
    Kill,
    /// Allow it, but log it to the kernel audit log.
    Log,
    /// No filters.
    Off,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "kill" => Ok(Mode::Kill),
            "log" => Ok(Mode::Log),
            "off" => Ok(Mode::Off),
            other => Err(format!("seccomp mode `{other}`: expected kill, log or off")),
        }
    }
}

/// The kinds of threads, each with its own allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// Runs a vCPU and the devices it reaches (disk I/O, vsock/net transmit).
    Vcpu,
    /// The control API (accepts connections, kicks vCPUs, reads /proc/self/status).
    Api,
    /// Console socket and stdin forwarding.
    Console,
    /// The host event loop (vsock and TAP sockets).
    Events,
    /// Waits for stop signals.
    Signals,
    /// The main thread after start: waits, flushes disks, exits.
    Main,
    /// A vhost-user backend's watchdog: waits, and shuts a socket down.
    Watchdog,
    /// A device's I/O worker: waits on its queues' eventfds, does the disk I/O.
    Worker,
}

/// Filters could not be built or installed.
#[derive(Debug, thiserror::Error)]
#[error("seccomp filter for {kind:?} threads: {why}")]
pub struct SeccompError {
    /// Which thread kind.
    pub kind: ThreadKind,
    /// What failed.
    pub why: String,
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// Sets the process-wide mode (once, before threads start; later calls are ignored).
pub fn set_mode(mode: Mode) {
    let _ = MODE.set(mode);
}

/// The process-wide mode (`Kill` unless set).
pub fn mode() -> Mode {
    *MODE.get().unwrap_or(&Mode::Kill)
}

const KVM_RUN: u64 = 0xae80;
const FIONBIO: u64 = 0x5421;
const FIOCLEX: u64 = 0x5451;

/// Syscalls every thread needs: memory, locks, time, signals, reading and writing its fds.
const COMMON: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_futex,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_sched_yield,
    libc::SYS_getrandom,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_restart_syscall,
    libc::SYS_rseq,
    libc::SYS_set_robust_list,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_lseek,
    libc::SYS_fcntl,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_shutdown,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
];

/// Starting threads (std's spawn) and accepting connections.
const SPAWN_ACCEPT: &[libc::c_long] =
    &[libc::SYS_clone, libc::SYS_clone3, libc::SYS_accept4, libc::SYS_sched_getaffinity, libc::SYS_prctl];

/// Host sockets and readiness (vsock's Unix sockets, TAP).
const SOCKETS: &[libc::c_long] = &[
    libc::SYS_socket,
    libc::SYS_connect,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_create1,
    libc::SYS_accept4,
    libc::SYS_unlink,
];

/// Waiting in an event loop.
const EPOLL: &[libc::c_long] = &[libc::SYS_epoll_ctl, libc::SYS_epoll_wait, libc::SYS_epoll_pwait];

/// Disk I/O.
const DISK: &[libc::c_long] = &[libc::SYS_pread64, libc::SYS_pwrite64, libc::SYS_fsync, libc::SYS_fdatasync];

fn extra(kind: ThreadKind) -> Vec<libc::c_long> {
    let mut v: Vec<libc::c_long> = match kind {
        ThreadKind::Vcpu => [DISK, SOCKETS].concat(),
        ThreadKind::Api => [SPAWN_ACCEPT, &[libc::SYS_tgkill, libc::SYS_openat, libc::SYS_fsync]].concat(),
        ThreadKind::Console => SPAWN_ACCEPT.to_vec(),
        ThreadKind::Events => [SOCKETS, DISK].concat(),
        ThreadKind::Signals => vec![libc::SYS_rt_sigtimedwait],
        ThreadKind::Main => [DISK, &[libc::SYS_unlink, libc::SYS_munmap]].concat(),
        ThreadKind::Watchdog => vec![],
        ThreadKind::Worker => [DISK, EPOLL].concat(),
    };
    v.extend_from_slice(COMMON);
    v.sort_unstable();
    v.dedup();
    v
}

/// A rule: argument `index` (32 bits) equals `value`.
fn arg_rule(index: u8, value: u64) -> Result<SeccompRule, String> {
    let c =
        SeccompCondition::new(index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value).map_err(|e| e.to_string())?;
    SeccompRule::new(vec![c]).map_err(|e| e.to_string())
}

fn ioctl_rule(request: u64) -> Result<SeccompRule, String> {
    arg_rule(1, request)
}

/// The BPF program for `kind` with refusals handled per `mode`.
pub fn program(kind: ThreadKind, mode: Mode) -> Result<BpfProgram, SeccompError> {
    let fail = |why: String| SeccompError { kind, why };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = extra(kind).into_iter().map(|s| (s, vec![])).collect();
    let mut ioctls = vec![ioctl_rule(FIONBIO).map_err(fail)?, ioctl_rule(FIOCLEX).map_err(fail)?];
    if kind == ThreadKind::Vcpu {
        ioctls.push(ioctl_rule(KVM_RUN).map_err(fail)?);
    }
    // The threads that raise device interrupts pulse their lines (`devices::irq`): vCPUs (devices
    // they reach), the API (Ctrl-Alt-Del through the i8042), console input (the serial port), the
    // event loop (received packets, virtio-fs completions) and the I/O workers.
    if matches!(
        kind,
        ThreadKind::Vcpu | ThreadKind::Api | ThreadKind::Console | ThreadKind::Events | ThreadKind::Worker
    ) {
        ioctls.push(ioctl_rule(crate::devices::irq::KVM_IRQ_LINE).map_err(fail)?);
    }
    rules.insert(libc::SYS_ioctl, ioctls);
    // Only Unix sockets (vsock's host side): den-vmm has no network, and other families widen
    // what the kernel exposes (AF_VSOCK is not even confined by a network namespace).
    if let Some(socket) = rules.get_mut(&libc::SYS_socket) {
        *socket = vec![arg_rule(0, libc::AF_UNIX as u64).map_err(fail)?];
    }
    // Threads name themselves; nothing else.
    if let Some(prctl) = rules.get_mut(&libc::SYS_prctl) {
        *prctl = vec![arg_rule(0, libc::PR_SET_NAME as u64).map_err(fail)?];
    }
    if let Some(clone) = rules.get_mut(&libc::SYS_clone) {
        // Threads only: a fork would outlive den-vmm holding the VM's disks, TAPs and sockets.
        let thread = libc::CLONE_THREAD as u64;
        let c = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(thread), thread)
            .map_err(|e| fail(e.to_string()))?;
        *clone = vec![SeccompRule::new(vec![c]).map_err(|e| fail(e.to_string()))?];
    }
    let refuse = if mode == Mode::Log { SeccompAction::Log } else { SeccompAction::KillProcess };
    let filter =
        SeccompFilter::new(rules, refuse, SeccompAction::Allow, TargetArch::x86_64).map_err(|e| fail(e.to_string()))?;
    BpfProgram::try_from(filter).map_err(|e| fail(e.to_string()))
}

/// A filter that fails `clone3` with ENOSYS: its flags are in memory, where seccomp cannot
/// check them, so the C library falls back to `clone`, whose flags the main filter checks.
pub fn clone3_enosys(kind: ThreadKind) -> Result<BpfProgram, SeccompError> {
    let fail = |why: String| SeccompError { kind, why };
    let rules: BTreeMap<i64, Vec<SeccompRule>> = [(libc::SYS_clone3, vec![])].into_iter().collect();
    let errno = SeccompAction::Errno(libc::ENOSYS as u32);
    let filter =
        SeccompFilter::new(rules, SeccompAction::Allow, errno, TargetArch::x86_64).map_err(|e| fail(e.to_string()))?;
    BpfProgram::try_from(filter).map_err(|e| fail(e.to_string()))
}

/// Installs the calling thread's filter for `kind` (per the process-wide mode).
pub fn install(kind: ThreadKind) -> Result<(), SeccompError> {
    let mode = mode();
    if mode == Mode::Off {
        return Ok(());
    }
    let apply =
        |prog: &BpfProgram| seccompiler::apply_filter(prog).map_err(|e| SeccompError { kind, why: e.to_string() });
    apply(&clone3_enosys(kind)?)?;
    apply(&program(kind, mode)?)
}

/// Installs the filter or ends den-vmm: a thread must never serve a guest unfiltered by accident.
pub fn enter(kind: ThreadKind) {
    if let Err(e) = install(kind) {
        eprintln!("den-vmm: {e}; refusing to run unfiltered (use --seccomp off to run without filters)");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_builds_and_modes_parse() {
        for k in [
            ThreadKind::Vcpu,
            ThreadKind::Api,
            ThreadKind::Console,
            ThreadKind::Events,
            ThreadKind::Signals,
            ThreadKind::Main,
            ThreadKind::Watchdog,
            ThreadKind::Worker,
        ] {
            assert!(!program(k, Mode::Kill).unwrap().is_empty());
        }
        assert_eq!("log".parse::<Mode>().unwrap(), Mode::Log);
        assert!("maybe".parse::<Mode>().unwrap_err().contains("kill, log or off"));
        assert!(!extra(ThreadKind::Vcpu).contains(&libc::SYS_execve));
        assert!(!extra(ThreadKind::Vcpu).contains(&libc::SYS_openat));
    }

    #[test]
    fn a_filtered_thread_is_killed_by_a_refused_syscall_only_in_a_child() {
        // Fork so that the kill hits the child, not the test runner.
        // SAFETY: the child only installs a filter and makes raw syscalls before _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = match install_for_test() {
                Ok(()) => {
                    // SAFETY: getppid is a plain syscall; allowed to fail the filter on purpose.
                    unsafe { libc::syscall(libc::SYS_getppid) };
                    0
                }
                Err(_) => 2,
            };
            // SAFETY: _exit ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS, "status {status:#x}");
    }

    #[test]
    fn threads_start_but_a_fork_kills_only_in_a_child() {
        // SAFETY: the child installs filters, starts a thread, forks, and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            if install_kind_for_test(ThreadKind::Api).is_err() {
                // SAFETY: as below.
                unsafe { libc::_exit(2) };
            }
            let thread_ok = std::thread::spawn(|| 7).join().ok() == Some(7);
            if !thread_ok {
                // SAFETY: as below.
                unsafe { libc::_exit(3) };
            }
            // SAFETY: a fork that the filter must refuse by killing the process.
            unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
            // SAFETY: _exit ends the child without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS, "status {status:#x}");
    }

    /// Runs `f` in a child under `kind`'s filters; its wait status.
    fn in_filtered_child(kind: ThreadKind, f: fn()) -> i32 {
        // SAFETY: the child installs filters, runs `f` (raw syscalls) and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            if install_kind_for_test(kind).is_ok() {
                f();
            }
            // SAFETY: _exit ends the child without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        status
    }

    #[test]
    fn only_unix_sockets_and_thread_names() {
        let killed = |s: i32| libc::WIFSIGNALED(s) && libc::WTERMSIG(s) == libc::SIGSYS;
        let unix = in_filtered_child(ThreadKind::Vcpu, || {
            // SAFETY: a plain syscall, in the filtered child.
            unsafe {
                libc::close(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0));
            }
        });
        assert!(libc::WIFEXITED(unix) && libc::WEXITSTATUS(unix) == 0, "{unix:#x}");
        let inet = in_filtered_child(ThreadKind::Vcpu, || {
            // SAFETY: a plain syscall, in the filtered child.
            unsafe {
                libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            }
        });
        assert!(killed(inet), "an AF_INET socket is refused: {inet:#x}");
        let vsock = in_filtered_child(ThreadKind::Events, || {
            // SAFETY: a plain syscall, in the filtered child.
            unsafe {
                libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0);
            }
        });
        assert!(killed(vsock), "an AF_VSOCK socket is refused: {vsock:#x}");
        let dumpable = in_filtered_child(ThreadKind::Api, || {
            // SAFETY: a plain syscall, in the filtered child.
            unsafe {
                libc::prctl(
                    libc::PR_SET_DUMPABLE,
                    1 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                );
            }
        });
        assert!(killed(dumpable), "PR_SET_DUMPABLE is refused: {dumpable:#x}");
        let named = in_filtered_child(ThreadKind::Api, || {
            // SAFETY: a plain syscall, in the filtered child.
            unsafe {
                libc::prctl(
                    libc::PR_SET_NAME,
                    c"den-test".as_ptr() as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                );
            }
        });
        assert!(libc::WIFEXITED(named), "a thread may name itself: {named:#x}");
    }

    fn install_kind_for_test(kind: ThreadKind) -> Result<(), SeccompError> {
        let apply =
            |prog: &BpfProgram| seccompiler::apply_filter(prog).map_err(|e| SeccompError { kind, why: e.to_string() });
        apply(&clone3_enosys(kind)?)?;
        apply(&program(kind, Mode::Kill)?)
    }

    fn install_for_test() -> Result<(), SeccompError> {
        let prog = program(ThreadKind::Signals, Mode::Kill)?;
        seccompiler::apply_filter(&prog).map_err(|e| SeccompError { kind: ThreadKind::Signals, why: e.to_string() })
    }
}
