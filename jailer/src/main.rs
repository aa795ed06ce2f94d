//! `den-jailer`: starts den-vmm jailed (see the crate's README).

use clap::Parser;
use den_jailer::{JailSpec, Resource};
use std::path::PathBuf;
use std::process::ExitCode;

/// Start den-vmm for one VM in a jail: its files opened as descriptors 3, 4, ... (in the order
/// of --fd), its own cgroup with limits, new mount/network/IPC/UTS namespaces, an empty
/// read-only root, its own uid and gid, no capabilities. Runs as root; execs den-vmm in place.
#[derive(Parser)]
#[command(name = "den-jailer", version)]
struct Cli {
    /// The VM's id (names its cgroup, `den/<id>`).
    #[arg(long)]
    id: String,
    /// The user den-vmm runs as (not 0; one per VM).
    #[arg(long)]
    uid: u32,
    /// The group den-vmm runs as (not 0).
    #[arg(long)]
    gid: u32,
    /// The den-vmm binary (absolute path).
    #[arg(long)]
    exec: PathBuf,
    /// The folder the jail's root is mounted on (created if missing).
    #[arg(long)]
    root: PathBuf,
    /// Memory limit for den-vmm with its guest, in MiB.
    #[arg(long)]
    memory_mib: u64,
    /// CPU time limit, in CPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u32,
    /// Most processes and threads.
    #[arg(long, default_value_t = 256)]
    pids: u32,
    /// Most open descriptors.
    #[arg(long, default_value_t = 4096)]
    files: u64,
    /// The cgroup hierarchy's root.
    #[arg(long, default_value = "/sys/fs/cgroup")]
    cgroup_root: PathBuf,
    /// A file den-vmm gets open: `kvm:PATH`, `ro:PATH`, `rw:PATH`, `tap:NAME` or `listen:PATH`
    /// (a socket bound there); the Nth --fd is den-vmm's `fd:<N+2>`.
    #[arg(long = "fd", value_parser = Resource::parse)]
    fds: Vec<Resource>,
    /// den-vmm's arguments.
    #[arg(last = true)]
    args: Vec<String>,
}

fn main() -> ExitCode {
    let c = Cli::parse();
    let spec = JailSpec {
        id: c.id,
        uid: c.uid,
        gid: c.gid,
        exec: c.exec,
        root: c.root,
        memory_mib: c.memory_mib,
        cpus: c.cpus,
        pids: c.pids,
        files: c.files,
        cgroup_root: c.cgroup_root,
        resources: c.fds,
        args: c.args,
    };
    match den_jailer::run(&spec) {
        Err(e) => {
            eprintln!("den-jailer: VM {}: {e}", spec.id);
            ExitCode::from(1)
        }
        Ok(never) => match never {},
    }
}
