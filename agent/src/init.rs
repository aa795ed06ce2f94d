//! PID 1 of a microVM: boots (mounts, modules, root switch), then supervises the agent and the
//! configured services, reaps orphans, and powers off or reboots cleanly on request.
//!
//! Signals (the same numbers systemd uses, so `den-agent` can ask either init):
//! `SIGRTMIN+4`, `SIGUSR2`, `SIGPWR` power off; `SIGRTMIN+5`, `SIGTERM`, `SIGINT` (Ctrl-Alt-Del) reboot.

use crate::boot;
use crate::cmdline::Cmdline;
use crate::services::{self, Service};
use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// Path of the agent binary copied into the new root for a distribution init to start.
pub(crate) const AGENT_COPY: &str = "/run/den/den-agent";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Halt {
    PowerOff,
    Reboot,
}

struct Child {
    name: String,
    started: Instant,
    failures: u32,
}

struct Supervisor {
    services: HashMap<String, Service>,
    running: HashMap<i32, Child>,
    pending: Vec<(Instant, String, u32)>,
}

/// `PATH` of everything init starts (the kernel hands init almost no environment).
pub(crate) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Debug-port code for "init started": den-vmm timestamps it, so the lab can time VMM start to
/// guest init.
const MILESTONE_INIT: u8 = 0x10;

/// Writes `code` to I/O port 0x80: den-vmm's debug port, a harmless POST-code port elsewhere.
/// Failures (no I/O privilege) are ignored: a milestone is only a measurement.
#[cfg(target_arch = "x86_64")]
fn milestone(code: u8) {
    // SAFETY: ioperm only changes this process's I/O permission bitmap; `out` runs only once
    // access to port 0x80 was granted, touches no memory, and the access is dropped right after
    // (ioperm rights would survive the exec of a distribution init).
    unsafe {
        if libc::ioperm(0x80, 1, 1) == 0 {
            core::arch::asm!("out dx, al", in("dx") 0x80u16, in("al") code, options(nomem, nostack, preserves_flags));
            libc::ioperm(0x80, 1, 0);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn milestone(_code: u8) {}

/// The first Ethernet interface gets `den.ip` and `den.gw`, when given.
fn configure_network(cmd: &Cmdline) {
    let Some(ip) = &cmd.ip else { return };
    match crate::net::first_ethernet(Duration::from_secs(5)) {
        Some(ifname) => {
            if let Err(e) = crate::net::configure(&ifname, ip, cmd.gateway.as_deref()) {
                eprintln!("den-agent: network: {e}");
            }
        }
        None => eprintln!("den-agent: den.ip={ip} given but the guest has no network interface"),
    }
}

/// Runs as PID 1; never returns.
pub(crate) fn run() -> ! {
    milestone(MILESTONE_INIT);
    // Still single-threaded: nothing else can be reading the environment.
    std::env::set_var("PATH", DEFAULT_PATH);
    boot::mount_basics();
    let cmd = Cmdline::from_proc();
    boot::load_modules();
    // Before the switch: addresses and routes are kernel state and stay for a distribution's
    // init, which then needs no DHCP client of its own.
    configure_network(&cmd);
    if let Some(root) = &cmd.root {
        if let Err(e) = boot::switch_root(root, &cmd.rootfstype, cmd.read_only) {
            eprintln!("den-agent: cannot switch to the root disk: {e}");
            halt(Halt::PowerOff);
        }
    }
    boot::mount_shares(&cmd.shares);
    if let Some(dns) = cmd.dns.as_deref().filter(|_| !cmd.read_only) {
        // Container images may have no /etc at all.
        let _ = std::fs::create_dir_all("/etc");
        if let Err(e) = std::fs::write("/etc/resolv.conf", format!("nameserver {dns}\nsearch den\n")) {
            eprintln!("den-agent: /etc/resolv.conf: {e}");
        }
    }
    if let Some(init) = &cmd.init {
        hand_over(init);
    }
    // Ctrl-Alt-Del becomes SIGINT to us (a clean reboot) instead of an immediate kernel restart.
    // SAFETY: reboot(RB_DISABLE_CAD) only changes the kernel's Ctrl-Alt-Del policy.
    unsafe { libc::reboot(libc::RB_DISABLE_CAD) };
    if let Some(h) = &cmd.hostname {
        boot::set_hostname(h);
    }
    if let Err(e) = crate::net::link_up("lo") {
        eprintln!("den-agent: loopback: {e}");
    }
    let _ = nix::sys::reboot::set_cad_enabled(false);
    let set = block_signals();
    let mut sup = Supervisor { services: HashMap::new(), running: HashMap::new(), pending: vec![] };
    sup.spawn_agent(0);
    let console = (cmd.console.as_deref() == Some("shell")).then(services::console_shell);
    let extra = cmd.services.as_deref().map(|d| services::load(std::path::Path::new(d))).unwrap_or_default();
    for s in services::load(std::path::Path::new(services::SERVICE_DIR)).into_iter().chain(extra).chain(console) {
        let name = s.name.clone();
        sup.services.insert(name.clone(), s);
        sup.spawn_service(&name, 0, true);
    }
    loop {
        let wait =
            sup.next_deadline().map(|d| d.saturating_duration_since(Instant::now())).unwrap_or(Duration::from_secs(5));
        match wait_signal(&set, wait) {
            Some(libc::SIGCHLD) | None => {}
            Some(sig) => {
                if let Some(h) = halt_for(sig) {
                    shutdown(h);
                }
            }
        }
        sup.reap();
        sup.run_due();
    }
}

/// Hands PID 1 to a distribution init (systemd) after leaving a copy of the agent in `/run`.
fn hand_over(init: &str) {
    let _ = std::fs::create_dir_all("/run/den");
    if let Err(e) = std::fs::copy("/proc/self/exe", AGENT_COPY) {
        eprintln!("den-agent: cannot copy the agent to {AGENT_COPY}: {e}");
    }
    let err = Command::new(init).exec();
    eprintln!("den-agent: cannot start {init}: {err}; staying init");
}

fn halt_for(sig: i32) -> Option<Halt> {
    let rt = libc::SIGRTMIN();
    if sig == rt + 4 || sig == libc::SIGUSR2 || sig == libc::SIGPWR {
        Some(Halt::PowerOff)
    } else if sig == rt + 5 || sig == libc::SIGTERM || sig == libc::SIGINT {
        Some(Halt::Reboot)
    } else {
        None
    }
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local, zero-initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        let rt = libc::SIGRTMIN();
        for s in
            [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGPWR, rt + 4, rt + 5]
        {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Gives a child the default signal mask (init blocks the signals it waits for).
pub(crate) fn unblock_all_signals() {
    // SAFETY: sigprocmask with a local empty set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

fn wait_signal(set: &libc::sigset_t, wait: Duration) -> Option<i32> {
    let ts = libc::timespec { tv_sec: wait.as_secs() as libc::time_t, tv_nsec: wait.subsec_nanos() as libc::c_long };
    // SAFETY: valid set and timespec; siginfo may be null.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

impl Supervisor {
    fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.0).min()
    }

    fn spawn_agent(&mut self, failures: u32) {
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg("serve");
        self.spawn("den-agent", cmd, failures);
    }

    fn spawn_service(&mut self, name: &str, failures: u32, first: bool) {
        let Some(svc) = self.services.get(name) else { return };
        if first {
            for b in &svc.binds {
                if let Err(e) = boot::bind(&b.source, &b.target, b.readonly) {
                    eprintln!("den-agent: service {name}: bind {} on {}: {e}", b.source, b.target);
                }
            }
            for t in &svc.tmpfs {
                if let Err(e) = boot::tmpfs(t) {
                    eprintln!("den-agent: service {name}: tmpfs {t}: {e}");
                }
            }
            for line in &svc.before {
                let ok = Command::new("/bin/sh")
                    .arg("-c")
                    .arg(line)
                    .envs(&svc.env)
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if !ok {
                    eprintln!("den-agent: service {name}: `{line}` failed");
                }
            }
        }
        let mut cmd = Command::new(&svc.exec[0]);
        cmd.args(&svc.exec[1..]).envs(&svc.env);
        if let Some(dir) = &svc.workdir {
            let _ = std::fs::create_dir_all(dir);
            cmd.current_dir(dir);
        }
        if let Some(tty) = &svc.tty {
            let opened = std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY).open(tty);
            let stdio = opened.and_then(|f| Ok((f.try_clone()?, f.try_clone()?, f)));
            match stdio {
                Ok((i, o, e)) => {
                    cmd.stdin(i).stdout(o).stderr(e);
                }
                Err(e) => {
                    eprintln!("den-agent: service {name}: {tty}: {e}");
                    return;
                }
            }
        }
        if let Some(user) = &svc.user {
            match crate::users::lookup_with_group(std::path::Path::new("/"), user) {
                Some(acct) => {
                    let creds = acct.credentials();
                    // SAFETY: Credentials::apply only makes async-signal-safe system calls.
                    unsafe { cmd.pre_exec(move || creds.apply()) };
                }
                None => {
                    eprintln!("den-agent: service {name}: unknown user {user}");
                    return;
                }
            }
        }
        self.spawn(name, cmd, failures);
    }

    fn spawn(&mut self, name: &str, mut cmd: Command, failures: u32) {
        // SAFETY: setsid, isatty, ioctl and sigprocmask are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                // A service on a terminal gets it as its controlling terminal (job control, ^C).
                if libc::isatty(0) == 1 {
                    libc::ioctl(0, libc::TIOCSCTTY, 0);
                }
                unblock_all_signals();
                Ok(())
            })
        };
        match cmd.spawn() {
            Ok(child) => {
                let pid = child.id() as i32;
                // The child is reaped by `reap` through waitpid(-1); the handle is not needed.
                std::mem::forget(child);
                self.running.insert(pid, Child { name: name.into(), started: Instant::now(), failures });
            }
            Err(e) => {
                eprintln!("den-agent: start {name}: {e}");
                self.schedule(name, failures + 1);
            }
        }
    }

    fn schedule(&mut self, name: &str, failures: u32) {
        let delay = Duration::from_millis(500u64 << failures.min(6)).min(Duration::from_secs(30));
        self.pending.push((Instant::now() + delay, name.into(), failures));
    }

    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let Some(child) = self.running.remove(&pid) else { continue };
            let success = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
            let failures = if child.started.elapsed() > Duration::from_secs(10) { 0 } else { child.failures + 1 };
            if child.name == "den-agent" {
                eprintln!("den-agent: agent process ended (status {status:#x}); restarting");
                self.schedule("den-agent", failures);
            } else if let Some(svc) = self.services.get(&child.name) {
                eprintln!("den-agent: service {} ended (status {status:#x})", child.name);
                if services::should_restart(svc.restart, success) {
                    self.schedule(&child.name, failures);
                }
            }
        }
    }

    fn run_due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|p| p.0 <= now);
        self.pending = later;
        for (_, name, failures) in due {
            if name == "den-agent" {
                self.spawn_agent(failures);
            } else {
                self.spawn_service(&name, failures, false);
            }
        }
    }
}

fn shutdown(how: Halt) -> ! {
    eprintln!("den-agent: {}", if how == Halt::PowerOff { "powering off" } else { "rebooting" });
    // SAFETY: kill(-1) signals every process but PID 1.
    unsafe { libc::kill(-1, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        // SAFETY: waitpid with a null status pointer is allowed.
        let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if pid < 0 {
            break;
        }
        if pid == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // SAFETY: as above.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    // SAFETY: waitpid with a null status pointer is allowed.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
    halt(how)
}

fn halt(how: Halt) -> ! {
    nix::unistd::sync();
    let _ = nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY,
        None::<&str>,
    );
    let mode = match how {
        Halt::PowerOff => nix::sys::reboot::RebootMode::RB_POWER_OFF,
        Halt::Reboot => nix::sys::reboot::RebootMode::RB_AUTOBOOT,
    };
    let _ = nix::sys::reboot::reboot(mode);
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}
