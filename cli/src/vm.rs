//! `den vm ...`: VMs through dend's API.

use crate::client::{request, typed, wait_task};
use anyhow::Context;
use clap::{Args, Subcommand};
use den_api_types::{Accepted, ConsoleOutput, ExecOutput, ExecRequest, Snapshot, VmRecord};
use serde_json::{json, Value};
use std::path::Path;
use std::process::ExitCode;

/// VM commands.
#[derive(Subcommand)]
pub(crate) enum VmCmd {
    /// Create a VM from an image (waits for its disk unless --detach).
    Create(Box<CreateArgs>),
    /// List VMs.
    Ls,
    /// Show one VM.
    Inspect {
        /// VM name or id.
        name: String,
    },
    /// Start a VM.
    Start {
        /// VM name or id.
        name: String,
        /// Return at once with the task id.
        #[arg(long)]
        detach: bool,
    },
    /// Stop a VM (the guest shuts down; hard stop after a timeout).
    Stop {
        /// VM name or id.
        name: String,
        /// Return at once with the task id.
        #[arg(long)]
        detach: bool,
    },
    /// Reboot a VM: the guest shuts down, then starts again on the same disks.
    Reboot {
        /// VM name or id.
        name: String,
        /// Return at once with the task id.
        #[arg(long)]
        detach: bool,
    },
    /// Pause a running VM (its vCPUs stop).
    Pause {
        /// VM name or id.
        name: String,
    },
    /// Resume a paused VM.
    Resume {
        /// VM name or id.
        name: String,
    },
    /// Print a VM's recent serial console output, or --attach to it (Ctrl-] detaches).
    Console {
        /// VM name or id.
        name: String,
        /// Interactive: type into the console and see its output live.
        #[arg(long)]
        attach: bool,
    },
    /// Delete a stopped VM and its disks.
    Rm {
        /// VM name or id.
        name: String,
    },
    /// Disk snapshots: create, ls, rollback, rm.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// Clone a VM (its disks, settings and networks; new addresses, no port forwards).
    Clone {
        /// The VM to copy.
        name: String,
        /// The new VM's name.
        new_name: String,
        /// Return at once with the task id.
        #[arg(long)]
        detach: bool,
    },
    /// Grow a VM's root disk (a running QEMU VM sees it at once; then `resize2fs` in the guest).
    Resize {
        /// VM name or id.
        name: String,
        /// New size: MiB, or with a suffix M, G or T (e.g. 8G).
        #[arg(long)]
        disk: String,
    },
    /// Run a command in a running VM through its agent; exits with the command's status.
    Exec {
        /// VM name or id.
        name: String,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, required = true)]
        argv: Vec<String>,
    },
    /// Copy a file into or out of a running VM through its agent: `den vm cp ./f web1:/root/f`,
    /// `den vm cp web1:/etc/os-release .`.
    Cp {
        /// Source: a host file, or VM:/path.
        src: String,
        /// Destination: a host file, or VM:/path.
        dst: String,
        /// Permission bits of a file copied in, octal (default: the host file's).
        #[arg(long)]
        mode: Option<String>,
    },
}

/// `den vm snapshot ...`.
#[derive(Subcommand)]
pub(crate) enum SnapshotCmd {
    /// Snapshot a VM's disks (a running VM pauses for the copy).
    Create {
        /// VM name or id.
        vm: String,
        /// Snapshot name.
        name: String,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List a VM's snapshots.
    Ls {
        /// VM name or id.
        vm: String,
    },
    /// Put a stopped VM's disks back to a snapshot.
    Rollback {
        /// VM name or id.
        vm: String,
        /// Snapshot name.
        name: String,
    },
    /// Delete a snapshot.
    Rm {
        /// VM name or id.
        vm: String,
        /// Snapshot name.
        name: String,
    },
}

/// Parses `4096`, `4096M`, `8G` or `1T` into MiB.
pub(crate) fn parse_mib(s: &str) -> anyhow::Result<u64> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'M' | 'm')) => (&s[..i], 1),
        Some((i, 'G' | 'g')) => (&s[..i], 1024),
        Some((i, 'T' | 't')) => (&s[..i], 1024 * 1024),
        _ => (s, 1),
    };
    let n: u64 = num.parse().with_context(|| format!("`{s}` is not a size: write MiB, or 512M, 8G, 1T"))?;
    n.checked_mul(mult).with_context(|| format!("`{s}` is too large"))
}

/// `den vm create`.
#[derive(Args)]
pub(crate) struct CreateArgs {
    /// VM name (a-z, 0-9, -).
    name: String,
    /// Image name.
    #[arg(long, default_value = "base")]
    image: String,
    /// vCPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u32,
    /// Memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u64,
    /// Boot this installation ISO (`den iso ls`) through firmware onto an empty disk of --disk
    /// (QEMU; the image is not used).
    #[arg(long)]
    iso: Option<String>,
    /// Firmware for --iso VMs: bios or uefi.
    #[arg(long, requires = "iso")]
    firmware: Option<String>,
    /// Root disk size (MiB, or 8G...; default: the image's).
    #[arg(long)]
    disk: Option<String>,
    /// Engine: auto, vmm or qemu.
    #[arg(long, default_value = "auto")]
    engine: String,
    /// Restart policy: always, on-failure or never.
    #[arg(long, default_value = "on-failure")]
    restart: String,
    /// Network for a NIC (repeat for more NICs); default: one NIC on `default`.
    #[arg(long = "network", value_name = "NAME")]
    networks: Vec<String>,
    /// No NIC at all.
    #[arg(long, conflicts_with = "networks")]
    no_network: bool,
    /// Forward a host port to the VM: HOST:GUEST or HOST:GUEST/udp, for connections from
    /// elsewhere; add `,local` for the host's own connections too (`8080:80,local`). Repeatable.
    #[arg(short = 'p', long = "publish", value_name = "HOST:GUEST[/udp][,local]")]
    publish: Vec<String>,
    /// Share a host folder with the guest over virtio-fs: HOST (mounted at the same path),
    /// HOST:GUEST, and `,ro` for read-only (`/srv/data:/data,ro`). Admins only: the guest's root
    /// writes there as root. Repeatable.
    #[arg(long = "share", value_name = "HOST[:GUEST][,ro]")]
    shares: Vec<String>,
    /// A user account to create in the guest on first boot, with sudo (repeatable).
    #[arg(long = "user", value_name = "NAME")]
    users: Vec<String>,
    /// An SSH public key for root and those users: the key itself or @FILE (repeatable).
    #[arg(long = "ssh-key", value_name = "KEY|@FILE")]
    ssh_keys: Vec<String>,
    /// Kind: dev, app or system (system VMs start first when the host boots).
    #[arg(long, default_value = "dev")]
    kind: String,
    /// Start it when the host boots.
    #[arg(long)]
    autostart: bool,
    /// Order among autostarted VMs (lower first).
    #[arg(long, default_value_t = 0)]
    start_order: u32,
    /// Start it once created.
    #[arg(long)]
    start: bool,
    /// Return at once with the task id.
    #[arg(long)]
    detach: bool,
}

/// Percent-encodes a name for a URL path.
pub(crate) fn enc(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn run_task(socket: &Path, reply: Value, detach: bool, json: bool, done: &str) -> anyhow::Result<ExitCode> {
    let task = typed::<Accepted>(&reply, "a started task")?.task;
    if detach {
        if json {
            println!("{reply}");
        } else {
            println!("task {task}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let t = wait_task(socket, &task)?;
    if json {
        println!("{}", serde_json::to_value(&t)?);
    } else {
        println!("{done}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a `den vm` command.
/// `--share HOST[:GUEST][,ro]` as the API's share object; dend checks the paths.
fn parse_share(s: &str) -> anyhow::Result<Value> {
    let (paths, readonly) = match s.strip_suffix(",ro") {
        Some(p) => (p, true),
        None => (s, false),
    };
    let (host, guest) = match paths.split_once(':') {
        Some((h, g)) => (h, Some(g)),
        None => (paths, None),
    };
    if host.is_empty() || guest == Some("") || paths.contains(',') {
        anyhow::bail!("--share {s}: write HOST, HOST:GUEST, or either with `,ro` (`/srv/data:/data,ro`)");
    }
    Ok(json!({"host": host, "guest": guest, "readonly": readonly}))
}

pub(crate) fn run(cmd: VmCmd, socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        VmCmd::Create(a) => {
            let networks = match (a.no_network, a.networks.is_empty()) {
                (true, _) => vec![],
                (false, true) => vec!["default".to_string()],
                (false, false) => a.networks,
            };
            let nics: Vec<Value> = networks.iter().map(|n| json!({"network": n})).collect();
            let mut ports = vec![];
            for p in &a.publish {
                let (spec, local) = match p.split_once(',') {
                    Some((s, "local")) => (s, true),
                    Some((_, o)) => anyhow::bail!("--publish {p}: `{o}` is not an option (`,local` is)"),
                    None => (p.as_str(), false),
                };
                let (hp, rest) =
                    spec.split_once(':').with_context(|| format!("--publish {p}: write HOST:GUEST[/udp][,local]"))?;
                let (gp, proto) = rest.split_once('/').unwrap_or((rest, "tcp"));
                let num = |s: &str| s.parse::<u16>().with_context(|| format!("--publish {p}: `{s}` is not a port"));
                ports.push(json!({"host_port": num(hp)?, "guest_port": num(gp)?, "proto": proto, "local": local}));
            }
            let disk = a.disk.as_deref().map(parse_mib).transpose()?;
            let shares = a.shares.iter().map(|s| parse_share(s)).collect::<anyhow::Result<Vec<_>>>()?;
            let mut keys = vec![];
            for k in &a.ssh_keys {
                match k.strip_prefix('@') {
                    Some(file) => {
                        let text = std::fs::read_to_string(file).with_context(|| format!("--ssh-key @{file}"))?;
                        keys.extend(
                            text.lines()
                                .map(str::trim)
                                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                                .map(String::from),
                        );
                    }
                    None => keys.push(k.clone()),
                }
            }
            let image = if a.iso.is_some() { String::new() } else { a.image };
            let spec = json!({"name": a.name, "image": image, "iso": a.iso, "firmware": a.firmware, "cpus": a.cpus, "memory_mib": a.memory,
                              "engine": a.engine, "restart": a.restart, "nics": nics, "ports": ports, "shares": shares,
                              "disk_mib": disk, "kind": a.kind, "autostart": a.autostart,
                              "start_order": a.start_order,
                              "first_boot": {"users": a.users, "ssh_keys": keys}});
            let reply = request(socket, "POST", "/api/v1/vms", Some(&spec))?.ok()?;
            let code = run_task(socket, reply, a.detach, json, &format!("created VM {}", a.name))?;
            if a.start {
                return run(VmCmd::Start { name: a.name, detach: a.detach }, socket, json);
            }
            Ok(code)
        }
        VmCmd::Ls => {
            let vms = request(socket, "GET", "/api/v1/vms", None)?.ok()?;
            if json {
                println!("{vms}");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<20} {:<10} {:<8} {:<6} {:>5} {:>8} {:>8}  ADDRESS",
                "NAME", "STATE", "IMAGE", "ENGINE", "CPUS", "MEM MiB", "PID"
            );
            for v in typed::<Vec<VmRecord>>(&vms, "the VM list")? {
                let ips: Vec<String> = v.nics.iter().map(|n| n.ip.to_string()).collect();
                println!(
                    "{:<20} {:<10} {:<8} {:<6} {:>5} {:>8} {:>8}  {}",
                    v.spec.name,
                    v.state.as_str(),
                    v.spec.image,
                    v.engine.as_str(),
                    v.spec.cpus,
                    v.spec.memory_mib,
                    v.running.as_ref().map(|r| r.pid.to_string()).unwrap_or_else(|| "-".into()),
                    if ips.is_empty() { "-".to_string() } else { ips.join(",") },
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        VmCmd::Inspect { name } => {
            let v = request(socket, "GET", &format!("/api/v1/vms/{}", enc(&name)), None)?.ok()?;
            println!("{}", if json { v.to_string() } else { serde_json::to_string_pretty(&v)? });
            Ok(ExitCode::SUCCESS)
        }
        VmCmd::Start { name, detach } => {
            let reply = request(socket, "POST", &format!("/api/v1/vms/{}/start", enc(&name)), None)?.ok()?;
            run_task(socket, reply, detach, json, &format!("started VM {name}"))
        }
        VmCmd::Stop { name, detach } => {
            let reply = request(socket, "POST", &format!("/api/v1/vms/{}/stop", enc(&name)), None)?.ok()?;
            run_task(socket, reply, detach, json, &format!("stopped VM {name}"))
        }
        VmCmd::Reboot { name, detach } => {
            let reply = request(socket, "POST", &format!("/api/v1/vms/{}/reboot", enc(&name)), None)?.ok()?;
            run_task(socket, reply, detach, json, &format!("rebooted VM {name}"))
        }
        VmCmd::Pause { name } => {
            let v = request(socket, "POST", &format!("/api/v1/vms/{}/pause", enc(&name)), None)?.ok()?;
            println!("{}", if json { v.to_string() } else { format!("paused VM {name}") });
            Ok(ExitCode::SUCCESS)
        }
        VmCmd::Resume { name } => {
            let v = request(socket, "POST", &format!("/api/v1/vms/{}/resume", enc(&name)), None)?.ok()?;
            println!("{}", if json { v.to_string() } else { format!("resumed VM {name}") });
            Ok(ExitCode::SUCCESS)
        }
        VmCmd::Console { name, attach: true } => crate::console::attach(socket, &name),
        VmCmd::Console { name, attach: false } => {
            let v = request(socket, "GET", &format!("/api/v1/vms/{}/console", enc(&name)), None)?.ok()?;
            if json {
                println!("{v}");
            } else {
                print!("{}", typed::<ConsoleOutput>(&v, "the console")?.output);
            }
            Ok(ExitCode::SUCCESS)
        }
        VmCmd::Rm { name } => {
            let reply = request(socket, "DELETE", &format!("/api/v1/vms/{}", enc(&name)), None)?.ok()?;
            run_task(socket, reply, false, json, &format!("deleted VM {name}"))
        }
        VmCmd::Snapshot(c) => snapshot(c, socket, json),
        VmCmd::Clone { name, new_name, detach } => {
            let path = format!("/api/v1/vms/{}/clone", enc(&name));
            let reply = request(socket, "POST", &path, Some(&json!({"name": new_name})))?.ok()?;
            run_task(socket, reply, detach, json, &format!("cloned VM {name} as {new_name}"))
        }
        VmCmd::Resize { name, disk } => {
            let body = json!({"disk_mib": parse_mib(&disk)?});
            let v = request(socket, "POST", &format!("/api/v1/vms/{}/resize", enc(&name)), Some(&body))?.ok()?;
            println!("{}", if json { v.to_string() } else { format!("root disk of {name} is now {disk}") });
            Ok(ExitCode::SUCCESS)
        }
        VmCmd::Cp { src, dst, mode } => {
            let done = crate::files::cp(socket, &src, &dst, mode.as_deref())?;
            if !json {
                println!("{done}");
            }
            Ok(ExitCode::SUCCESS)
        }
        VmCmd::Exec { name, argv } => {
            let body = serde_json::to_value(ExecRequest { argv })?;
            let out = request(socket, "POST", &format!("/api/v1/vms/{}/exec", enc(&name)), Some(&body))?.ok()?;
            if json {
                println!("{out}");
                return Ok(ExitCode::SUCCESS);
            }
            let out: ExecOutput = typed(&out, "the command's output")?;
            print!("{}", out.stdout);
            eprint!("{}", out.stderr);
            Ok(ExitCode::from(out.shell_status().clamp(0, 255) as u8))
        }
    }
}

fn snapshot(cmd: SnapshotCmd, socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        SnapshotCmd::Create { vm, name, description } => {
            let body = json!({"name": name, "description": description});
            let reply = request(socket, "POST", &format!("/api/v1/vms/{}/snapshots", enc(&vm)), Some(&body))?.ok()?;
            run_task(socket, reply, false, json, &format!("snapshot {name} of VM {vm} taken"))
        }
        SnapshotCmd::Ls { vm } => {
            let list = request(socket, "GET", &format!("/api/v1/vms/{}/snapshots", enc(&vm)), None)?.ok()?;
            if json {
                println!("{list}");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<24} {:<12} DESCRIPTION", "NAME", "CREATED");
            for s in typed::<Vec<Snapshot>>(&list, "the snapshot list")? {
                println!("{:<24} {:<12} {}", s.name, s.created, s.description);
            }
            Ok(ExitCode::SUCCESS)
        }
        SnapshotCmd::Rollback { vm, name } => {
            let path = format!("/api/v1/vms/{}/snapshots/{}/rollback", enc(&vm), enc(&name));
            let reply = request(socket, "POST", &path, None)?.ok()?;
            run_task(socket, reply, false, json, &format!("VM {vm} rolled back to {name}"))
        }
        SnapshotCmd::Rm { vm, name } => {
            let path = format!("/api/v1/vms/{}/snapshots/{}", enc(&vm), enc(&name));
            let v = request(socket, "DELETE", &path, None)?.ok()?;
            println!("{}", if json { v.to_string() } else { format!("deleted snapshot {name} of VM {vm}") });
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_mib("4096").unwrap(), 4096);
        assert_eq!(super::parse_mib("8G").unwrap(), 8192);
        assert_eq!(super::parse_mib("512m").unwrap(), 512);
        assert_eq!(super::parse_mib("1T").unwrap(), 1 << 20);
        assert!(super::parse_mib("8X").is_err() && super::parse_mib("G").is_err());
    }

    #[test]
    fn shares() {
        let share = |s: &str| super::parse_share(s).unwrap();
        assert_eq!(share("/srv"), serde_json::json!({"host": "/srv", "guest": null, "readonly": false}));
        assert_eq!(
            share("/srv/data:/data,ro"),
            serde_json::json!({"host": "/srv/data", "guest": "/data", "readonly": true})
        );
        for bad in ["", ",ro", "/a:", "/a,rw", "/a,ro,ro"] {
            assert!(super::parse_share(bad).is_err(), "{bad}");
        }
    }
}
