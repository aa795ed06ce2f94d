//! `den doctor`: what this host can run, and what to install or change.

use crate::paths::Paths;
use serde::Serialize;
use std::path::Path;
use std::process::{Command, ExitCode};

/// How a check came out.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    /// Fine.
    Ok,
    /// Works, with limits.
    Warn,
    /// Missing; Den cannot do this here.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    /// What was checked.
    pub item: &'static str,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to install or change (empty when nothing).
    pub fix: String,
}

fn check(item: &'static str, status: Status, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { item, status, detail: detail.into(), fix: fix.into() }
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

fn version(tool: &str) -> String {
    Command::new(tool)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default()
}

/// What `/dev/kvm` can do here.
pub(crate) fn kvm() -> Check {
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    let f = match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(f) => f,
        Err(e) => {
            return check("kvm", Status::Fail, format!("/dev/kvm: {e}"), "enable virtualization in the firmware and load kvm_intel or kvm_amd; the qemu engine falls back to TCG (slow)");
        }
    };
    // SAFETY: KVM_GET_API_VERSION takes no argument.
    let api = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&f), KVM_GET_API_VERSION, 0) };
    if api != 12 {
        return check(
            "kvm",
            Status::Fail,
            format!("/dev/kvm answers API version {api}, expected 12"),
            "update the host kernel",
        );
    }
    if Path::new("/sys/module/kvm_pvm").exists() {
        return check(
            "kvm",
            Status::Warn,
            "/dev/kvm is PVM-backed (kvm_pvm): it cannot run stock Linux kernels, only PVM guests and tiny test guests",
            "run on hardware virtualization (kvm_intel/kvm_amd) for den-vmm; here VMs use QEMU with TCG (slow)",
        );
    }
    let module =
        ["kvm_intel", "kvm_amd"].into_iter().find(|m| Path::new("/sys/module").join(m).exists()).unwrap_or("kvm");
    check("kvm", Status::Ok, format!("/dev/kvm API 12 ({module}): hardware virtualization"), "")
}

/// Collects every check.
pub(crate) fn collect(paths: &Paths) -> Vec<Check> {
    let mut out = vec![kvm()];
    out.push(match which("qemu-system-x86_64") {
        Some(_) => check("qemu", Status::Ok, version("qemu-system-x86_64"), ""),
        None => check("qemu", Status::Fail, "qemu-system-x86_64 not found", "apt-get install qemu-system-x86"),
    });
    out.push(if Path::new("/dev/net/tun").exists() {
        check("tun", Status::Ok, "/dev/net/tun present", "")
    } else {
        check("tun", Status::Fail, "/dev/net/tun missing", "modprobe tun")
    });
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let bridge = Path::new("/sys/module/bridge").exists()
        || Path::new(&format!("/lib/modules/{}/kernel/net/bridge", release.trim())).exists();
    out.push(if bridge {
        check("bridge", Status::Ok, "Linux bridge available", "")
    } else {
        check("bridge", Status::Fail, "no bridge module", "install a kernel with CONFIG_BRIDGE (modprobe bridge)")
    });
    out.push(match which("nft") {
        Some(_) => check("nftables", Status::Ok, version("nft"), ""),
        None => check("nftables", Status::Fail, "nft not found", "apt-get install nftables"),
    });
    for (tool, pkg, why) in [
        ("mmdebstrap", "mmdebstrap", "root disks"),
        ("mkfs.ext4", "e2fsprogs", "root disks"),
        ("dpkg-deb", "dpkg", "kernels"),
        ("qemu-img", "qemu-utils", "qcow2 disks"),
        ("dnsmasq", "dnsmasq-base", "DHCP and DNS for VM networks"),
    ] {
        out.push(match which(tool) {
            Some(_) => check("tools", Status::Ok, format!("{tool} ({why})"), ""),
            None => check(
                "tools",
                Status::Fail,
                format!("{tool} not found (needed for {why})"),
                format!("apt-get install {pkg}"),
            ),
        });
    }
    out.push(if Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd").exists() {
        check("uefi", Status::Ok, "OVMF (UEFI firmware for ISO VMs)", "")
    } else {
        check("uefi", Status::Warn, "OVMF not found: ISO VMs boot with BIOS only", "apt-get install ovmf")
    });
    let _ = std::fs::create_dir_all(&paths.cache);
    let dir = if paths.cache.exists() { paths.cache.clone() } else { "/".into() };
    let free = free_bytes(&dir).unwrap_or(0);
    let gib = free as f64 / (1u64 << 30) as f64;
    out.push(if gib >= 10.0 {
        check("disk", Status::Ok, format!("{gib:.0} GiB free at {}", dir.display()), "")
    } else {
        check(
            "disk",
            Status::Warn,
            format!("only {gib:.1} GiB free at {}", dir.display()),
            "free space or set --cache-dir / DEN_CACHE_DIR to a larger disk (images need ~6 GiB)",
        )
    });
    out
}

fn free_bytes(p: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(p).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// Prints the report as a table.
pub(crate) fn print(report: &[Check]) {
    for c in report {
        let mark = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        println!("{mark} {:<9} {}", c.item, c.detail);
        if !c.fix.is_empty() {
            println!("     {:<9} -> {}", "", c.fix);
        }
    }
}

/// `den doctor`.
pub(crate) fn run(paths: &Paths, json: bool) -> anyhow::Result<ExitCode> {
    let report = collect(paths);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    let failed = report.iter().any(|c| c.status == Status::Fail);
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
