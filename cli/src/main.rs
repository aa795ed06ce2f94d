//! `den`: Den's command-line client. Nouns and verbs: `den doctor`, `den image build|ls|rm|gc|...`,
//! `den up`, `den vm create|ls|inspect|start|stop|rm|exec`, `den net ls|create|rm`, `den iso ls|import|rm`, `den app install|ls|...`, `den system status|update|rollback`, `den user ...`, `den token ...`, `den event ls`, `den task ls|log` (through dend).
//! Human tables by default, `--json` everywhere; exit codes 0 ok, 1 error, 2 usage.

mod app;
mod client;
mod console;
mod daemon;
mod docker;
mod doctor;
mod events;
mod files;
mod image;
mod iso;
mod net;
mod paths;
mod progress;
mod ssh;
mod system;
mod task;
mod user;
mod vm;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Den: a developer-mode hypervisor manager for home microservers.
#[derive(Parser)]
#[command(name = "den", version, about, long_about = None)]
struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Cache directory for guest artifacts (default: $DEN_CACHE_DIR or ~/.cache/den).
    #[arg(long, global = true, env = "DEN_CACHE_DIR")]
    cache_dir: Option<std::path::PathBuf>,
    /// dend's API socket (default: $DEN_SOCKET or /run/den/dend.sock).
    #[arg(long, global = true)]
    socket: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Report what this host can run and what to install or change.
    Doctor,
    /// Guest images: build, list, inspect, verify, remove, garbage-collect.
    #[command(subcommand)]
    Image(image::ImageCmd),
    /// Get Den ready on this host: check it, then build the default guest images.
    Up,
    /// Virtual machines (through dend): create, ls, inspect, start, stop, reboot, pause, resume, console, rm, exec.
    #[command(subcommand)]
    Vm(vm::VmCmd),
    /// Installation ISOs (through dend): ls, import, rm.
    #[command(subcommand)]
    Iso(iso::IsoCmd),
    /// Networks (through dend): ls, create, rm.
    #[command(subcommand)]
    Net(net::NetCmd),
    /// Users (through dend): ls, add, rm, passwd, role, grant.
    #[command(subcommand)]
    User(user::UserCmd),
    /// API tokens (through dend): create, ls, rm.
    #[command(subcommand)]
    Token(user::TokenCmd),
    /// The lifecycle and audit log: ls [--follow].
    #[command(subcommand)]
    Event(events::EventCmd),
    /// dend's tasks: ls, log.
    #[command(subcommand)]
    Task(task::TaskCmd),
    /// The SSH gateway: sessions and their recordings.
    #[command(subcommand)]
    Ssh(ssh::SshCmd),
    /// LPK apps (through dend): install, check, upgrade, ls, show, start, stop, restart, logs, uninstall, traffic.
    #[command(subcommand)]
    App(app::AppCmd),
    /// The Docker bridge: status, and the `den` context for the docker CLI.
    #[command(subcommand)]
    Docker(docker::DockerCmd),
    /// dend itself: status, update (installs a new binary; VMs keep running; falls back when it
    /// cannot start under the packaged service).
    #[command(subcommand)]
    Daemon(daemon::DaemonCmd),
    /// The business OS (through dend): status, update (A/B, rolled back by itself), rollback.
    #[command(subcommand)]
    System(system::SystemCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let paths = paths::Paths::new(cli.cache_dir.clone());
    let res = match cli.cmd {
        Cmd::Doctor => doctor::run(&paths, cli.json),
        Cmd::Image(c) => image::run(c, &paths, cli.json),
        Cmd::Up => up(&paths, cli.json),
        Cmd::Vm(c) => vm::run(c, &cli.socket.clone().unwrap_or_else(client::default_socket), cli.json),
        Cmd::Iso(c) => iso::run(c, &cli.socket.clone().unwrap_or_else(client::default_socket), cli.json),
        Cmd::Net(c) => net::run(c, &cli.socket.clone().unwrap_or_else(client::default_socket), cli.json),
        Cmd::User(c) => user::run(c, &cli.socket.clone().unwrap_or_else(client::default_socket), cli.json),
        Cmd::Token(c) => user::run_token(c, &cli.socket.clone().unwrap_or_else(client::default_socket), cli.json),
        Cmd::Event(c) => events::run(c, &cli.socket.clone().unwrap_or_else(client::default_socket), cli.json),
        Cmd::Task(c) => task::run(c, &cli.socket.clone().unwrap_or_else(client::default_socket), cli.json),
        Cmd::Ssh(c) => ssh::run(c, &cli.socket.clone().unwrap_or_else(client::default_socket), cli.json),
        Cmd::App(c) => app::run(c, &cli.socket.clone().unwrap_or_else(client::default_socket), cli.json),
        Cmd::Docker(c) => docker::run(c, &cli.socket.clone().unwrap_or_else(client::default_socket), cli.json),
        Cmd::Daemon(c) => daemon::run(c, &cli.socket.clone().unwrap_or_else(client::default_socket), cli.json),
        Cmd::System(c) => system::run(c, &cli.socket.clone().unwrap_or_else(client::default_socket), &paths, cli.json),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("den: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn up(paths: &paths::Paths, json: bool) -> anyhow::Result<ExitCode> {
    let report = doctor::collect(paths);
    if !json {
        doctor::print(&report);
        println!();
    }
    let names: Vec<String> = den_images::spec::BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
    let code = image::run(image::ImageCmd::Build(image::BuildArgs { specs: names, agent: None }), paths, json)?;
    if !json {
        println!("\nDen's guest images are ready (`den image ls`). Start the daemon with `dend`, then");
        println!("`den vm create web1 --image base --start` and `den vm exec web1 -- uname -a`.");
    }
    Ok(code)
}
