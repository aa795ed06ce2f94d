//! `den-agent`: PID 1 of Den's microVMs and the host's hands inside every guest.
//!
//! - as PID 1 (from an initramfs) it boots the guest and supervises itself and the services;
//! - `den-agent serve` serves the host on the agent channel (what PID 1 starts, and what a
//!   systemd unit runs in full VMs).

mod boot;
mod channel;
mod cmdline;
mod exec;
mod init;
mod net;
mod ops;
mod serve;
mod services;
mod users;

const USAGE: &str = "den-agent: Den's guest agent

Usage:
  den-agent            as PID 1: boot the guest (mounts, modules, root switch) and supervise
  den-agent serve      serve the host on the agent channel (virtio port `den.agent` or vsock)
  den-agent --version  print the version

Settings come from the kernel command line: den.root=, den.rootfstype=, den.ro, den.init=,
den.hostname=, den.ip=, den.gw=, den.dns=, den.console=shell, den.vsock_port=,
den.share=<tag>:<path> (virtio-fs). See docs/agent-protocol.md in the Den repository.";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if std::process::id() == 1 {
        init::run();
    }
    match args.first().map(String::as_str) {
        Some("serve") => serve_main(),
        Some("--version") | Some("-V") => println!("{}", serve::SOFTWARE),
        Some("--help") | Some("-h") => println!("{USAGE}"),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

fn serve_main() {
    init::unblock_all_signals();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("DEN_AGENT_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .init();
    let cmd = cmdline::Cmdline::from_proc();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("den-agent: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(serve::serve(cmd.vsock_port));
}
