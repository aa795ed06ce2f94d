//! `dend`: Den's host daemon. Owns the VMs and their state; serves the API on a Unix socket.

use anyhow::Context;
use clap::Parser;
use den_core::vm::Limits;
use den_store::Store;
use den_vms::paths::{default_image_store, Paths};
use den_vms::Den;
use std::path::{Path, PathBuf};

/// Den's host daemon.
#[derive(Parser)]
#[command(name = "dend", version, about)]
struct Cli {
    /// State directory (database, VM disks).
    #[arg(long, env = "DEN_DATA_DIR", default_value = "/var/lib/den")]
    data_dir: PathBuf,
    /// Runtime directory (API socket, VM sockets); defaults to /run/den, or <data-dir>/run when
    /// --data-dir is given.
    #[arg(long, env = "DEN_RUN_DIR")]
    run_dir: Option<PathBuf>,
    /// The image store VMs are created from (default: the one `den image build` fills).
    #[arg(long, env = "DEN_IMAGE_STORE")]
    image_store: Option<PathBuf>,
    /// Subnet of the `default` network (its bridge is `den-default`, with NAT to the uplink).
    #[arg(long, env = "DEN_SUBNET", default_value = den_net::DEFAULT_SUBNET)]
    subnet: String,
    /// HTTPS address of the API (and later the web console); `off` serves only the Unix socket.
    #[arg(long, env = "DEN_LISTEN", default_value = "0.0.0.0:8006")]
    listen: String,
    /// SSH gateway address (`ssh VM@host -p 2222`); `off` disables it.
    #[arg(long, env = "DEN_SSH_LISTEN", default_value = "0.0.0.0:2222")]
    ssh_listen: String,
    /// Den's configuration file (every key optional; a missing file means the defaults).
    #[arg(long, env = "DEN_CONFIG", default_value = "/etc/den/den.toml")]
    config: PathBuf,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

/// Binds a TCP listener and writes its real address to `record` (tests and tools that asked
/// for port 0 read it there).
/// Keeps the port from VMs' port forwards.
async fn bind_recorded(den: &Den, addr: &str, flag: &str, record: &Path) -> anyhow::Result<tokio::net::TcpListener> {
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("{flag} {addr}: cannot bind (is another dend, or Proxmox, using it?)"))?;
    let bound = tcp.local_addr()?;
    den.net.reserve(den_net::Proto::Tcp, bound.port());
    std::fs::write(record, bound.to_string()).with_context(|| format!("writing {}", record.display()))?;
    tracing::info!(addr = %bound, "{flag} listening");
    Ok(tcp)
}

fn host_limits() -> Limits {
    use nix::unistd::{sysconf, SysconfVar};
    let value = |var| sysconf(var).ok().flatten().unwrap_or(0).max(0) as u64;
    let cpus = value(SysconfVar::_NPROCESSORS_ONLN).max(1) as u32;
    let pages = value(SysconfVar::_PHYS_PAGES);
    let page = value(SysconfVar::PAGE_SIZE);
    Limits { max_cpus: cpus.max(1) * 4, max_memory_mib: ((pages * page) >> 20).max(64) }
}

/// Makes the allocator give large buffers back to the system when they are freed. glibc's
/// default raises its mmap threshold after the first large free, so the 19 MiB of every argon2
/// hash (and big request bodies) would then stay in dend's heap for good: a burst of logins left
/// it hundreds of MB larger. A fixed threshold keeps such buffers mmapped and returns them.
fn return_large_buffers() {
    // SAFETY: mallopt only changes allocator parameters, under the allocator's own locks.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    return_large_buffers();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if cli.log_json {
        tracing_subscriber::fmt().with_env_filter(filter).json().init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let cfg = dend::config::load(&cli.config).map_err(|e| anyhow::anyhow!("--config: {e}"))?;
    let jail = cfg.vmm.policy();
    match &jail {
        Some(p) if p.can_limit_memory() => {
            tracing::info!(uids = p.uid_base, jailer = %p.jailer.display(), "den-vmm runs jailed")
        }
        Some(p) => tracing::warn!(
            cgroups = %p.cgroup_root.display(),
            "den-vmm runs jailed, but there is no cgroup memory controller to limit it: VMs on den-vmm will not start \
             (mount cgroup2 on /sys/fs/cgroup, or set [vmm] jail = false)"
        ),
        None => tracing::warn!("[vmm] jail = false: den-vmm runs unjailed, as root"),
    }
    den_engine::vmm::jail::set_policy(jail).map_err(|e| anyhow::anyhow!("[vmm]: {e}"))?;
    let run = cli.run_dir.clone().unwrap_or_else(|| {
        if cli.data_dir == std::path::Path::new("/var/lib/den") {
            "/run/den".into()
        } else {
            cli.data_dir.join("run")
        }
    });
    let mut paths = Paths::new(&cli.data_dir, &run, &cli.image_store.clone().unwrap_or_else(default_image_store));
    paths.create().with_context(|| format!("creating {} and {}", paths.data.display(), paths.run.display()))?;
    // Folders Den shares into guests are opened with no link followed on their path: the data
    // directory is used by its real path (it may be a link, /var/lib/den -> /srv/den say).
    paths.data = std::fs::canonicalize(&paths.data).with_context(|| format!("resolving {}", paths.data.display()))?;
    let store = Store::open(&paths.db()).with_context(|| format!("opening {}", paths.db().display()))?;
    den_core::net::ipam::Subnet::parse(&cli.subnet).map_err(|e| anyhow::anyhow!("--subnet: {e}"))?;
    let den = Den::new(store, paths.clone(), host_limits(), &cli.subnet);
    // Guests get the gateway's key at first boot, also those autostarted by the reconcile below.
    let client_key = den_sshgw::client_key(&paths.data).context("the SSH gateway's key for guests")?;
    let _ = den.gateway_key.set(den_sshgw::public_line(&client_key));
    let apps = den_lpk_host::Apps::new(den.clone(), cfg.apps.clone());
    let accounts = std::sync::Arc::new(den_auth::Accounts::default());
    let _ = std::fs::remove_file(paths.run.join("https.addr"));
    let _ = std::fs::remove_file(paths.run.join("ssh.addr"));
    // Bound first: it also refuses to run next to another dend on the same directories.
    let unix = den_api::server::bind_unix(&paths.socket()).await?;
    // dend's own ports are kept from port forwards before anything can make one.
    for addr in [&cli.listen, &cli.ssh_listen] {
        if let Some(port) = addr.parse::<std::net::SocketAddr>().ok().map(|a| a.port()).filter(|p| *p != 0) {
            den.net.reserve(den_net::Proto::Tcp, port);
        }
    }
    let system = cfg.system.clone().map(|sys| den_system::System::new(&den, sys)).transpose();
    let system = system.map_err(|e| anyhow::anyhow!("[system]: {e}"))?;
    let keepers = system.iter().map(|s| s.clone() as std::sync::Arc<dyn den_vms::VmKeeper>).collect();
    let booted = den.reconcile(keepers).await.context("reconciling the state left by the previous dend")?;
    apps.reconcile_apps().await.context("reconciling the apps left by the previous dend")?;
    // The business OS starts before every other VM.
    let mut services = den_api::Services::new(den.clone(), apps.clone(), accounts.clone());
    if let Some(supervisor) = system {
        supervisor.run(&den);
        services.system = Some(supervisor);
    }
    if booted {
        tracing::info!("the host booted since dend last ran: starting autostart VMs");
        den.autostart();
    }
    den_lpk_host::audit::start(den.clone());
    tokio::spawn(den_vms::metrics::run(den.clone()));
    tokio::spawn(den_vms::net_watch::watch(den.clone()));
    tokio::spawn(den_engine::logs::run(paths.run.join("vms")));
    let mut bridge = None;
    if cfg.docker.enabled {
        let path = den_dockerd_bridge::socket_path(&cfg.docker, &paths.run);
        let listener = den_dockerd_bridge::bind(&path)
            .with_context(|| format!("binding the Docker socket {} ([docker] socket)", path.display()))?;
        tracing::info!(socket = %path.display(), "Docker socket listening");
        services.docker = Some(den_dockerd_bridge::Status::new(&cfg.docker, &path));
        let b = den_dockerd_bridge::Bridge::new(den.clone(), accounts.clone(), &cfg.docker);
        bridge = Some(b.clone());
        tokio::spawn(den_dockerd_bridge::serve(b, listener));
    }
    if cli.listen != "off" {
        let tls = dend::tls::server_config(&paths.data).context("loading dend's TLS certificate")?;
        let tcp = bind_recorded(&den, &cli.listen, "--listen", &paths.run.join("https.addr")).await?;
        tokio::spawn(den_api::server::serve_https(services.clone(), tcp, tls));
    }
    if cli.ssh_listen != "off" {
        let key = den_sshgw::host_key(&paths.data).context("the SSH gateway's host key")?;
        let tcp = bind_recorded(&den, &cli.ssh_listen, "--ssh-listen", &paths.run.join("ssh.addr")).await?;
        tokio::spawn(den_sshgw::serve(den.clone(), accounts.clone(), tcp, key, client_key));
    }
    tracing::info!(socket = %paths.socket().display(), "dend serving");
    dend::service::notify("READY=1");
    if let Some(what) = std::env::current_exe().ok().and_then(|exe| dend::service::commit_update(&exe)) {
        tracing::info!(%what, "this dend is a new version and it is up: the update is committed");
        den.event("dend", "dend.updated", "", &what);
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        () = den_api::server::serve_unix(services, unix) => {}
        _ = term.recv() => tracing::info!("SIGTERM: stopping (VMs keep running)"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping (VMs keep running)"),
    }
    dend::service::notify("STOPPING=1");
    // Streams through the Docker socket end cleanly rather than break off.
    if let Some(b) = bridge {
        b.shut_down();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    Ok(())
}
