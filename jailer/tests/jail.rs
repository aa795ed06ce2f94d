//! den-jailer with a real den-vmm on this machine's bare `/dev/kvm` (tiny hand-made guests,
//! which run even where KVM is PVM-backed): the VM boots from descriptors alone; den-vmm runs
//! as its own user with no capabilities, in its own namespaces and cgroup, sees only its own
//! binary, cannot open `/dev/kvm` or a disk by name, and is killed by its cgroup's memory
//! limit. Needs root, `/dev/kvm`, a cgroup memory controller and `target/debug/den-vmm`
//! (`cargo build --workspace`); skipped without them.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_kvm_probe::kvm_kind;
use den_vmm::tiny_kernel;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const UID: u32 = 2_000_000_000 + 4242;
const CGROUPS: &str = "/sys/fs/cgroup";
const KVM: &str = "kvm:/dev/kvm";

fn jailer() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_den-jailer"))
}

/// The kind of KVM here, or `None` (and why) if these tests cannot run.
fn ready() -> Option<&'static str> {
    let why = if !nix::unistd::geteuid().is_root() {
        "not root"
    } else if !den_jailer::cgroup::can_limit_memory(Path::new(CGROUPS)) {
        "no cgroup hierarchy with a memory controller"
    } else if !vmm().is_file() {
        "target/debug/den-vmm is not built (cargo build --workspace)"
    } else {
        let kvm = kvm_kind(Path::new("/sys"), Path::new("/dev/kvm"));
        if let Err(why) = kvm.name() {
            eprintln!("skipped: {why}");
        }
        return kvm.name().ok();
    };
    eprintln!("skipped: {why}");
    None
}

fn vmm() -> PathBuf {
    jailer().with_file_name("den-vmm")
}

/// A jailed den-vmm, killed and its cgroup removed when the test ends, also when it fails.
struct Jailed {
    child: Child,
    id: String,
}

impl Jailed {
    /// Its cgroup's name.
    fn group(&self) -> String {
        den_jailer::cgroup::group_name(&self.id, self.child.id())
    }
}

impl Drop for Jailed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = den_jailer::cgroup::remove(Path::new(CGROUPS), &self.group());
    }
}

/// Starts den-jailer for VM `id` with `fds` (as `--fd`) and den-vmm arguments `args`.
fn jail(dir: &Path, id: &str, memory_mib: u64, fds: &[String], args: &[String]) -> Jailed {
    let mut c = Command::new(jailer());
    c.args(["--id", id, "--uid", &UID.to_string(), "--gid", &UID.to_string(), "--exec"])
        .arg(vmm())
        .arg("--root")
        .arg(dir.join("jail"))
        .args(["--memory-mib", &memory_mib.to_string()]);
    for f in fds {
        c.args(["--fd", f]);
    }
    c.arg("--").args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    Jailed { child: c.spawn().unwrap(), id: id.into() }
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p.to_string_lossy().into_owned()
}

/// den-vmm's arguments to boot a tiny guest on KVM of `kind`, then `rest`.
fn boot_args(kind: &str, rest: &[&str]) -> Vec<String> {
    ["boot", "--tiny-test-guest", "--kvm-kind", kind].iter().chain(rest).map(|s| s.to_string()).collect()
}

/// Waits (bounded) for the jailed process to end; its exit status and both outputs.
fn finish(j: &mut Jailed) -> (std::process::ExitStatus, String, String) {
    let t = Instant::now();
    loop {
        if let Some(status) = j.child.try_wait().unwrap() {
            let (mut out, mut err) = (String::new(), String::new());
            j.child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
            j.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return (status, out, err);
        }
        assert!(t.elapsed() < Duration::from_secs(30), "the jailed den-vmm ran over 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_vm_boots_from_handed_over_descriptors_alone() {
    let Some(kind) = ready() else { return };
    let dir = tempfile::tempdir().unwrap();
    let kernel = write(dir.path(), "kernel.elf", &tiny_kernel::report_kernel());
    let initrd: Vec<u8> = (0..12_345u32).map(|i| (i * 7) as u8).collect();
    let initrd = write(dir.path(), "initrd", &initrd);
    let disk = write(dir.path(), "disk.img", &[0u8; 1 << 16]);
    let fds = [KVM.to_string(), format!("ro:{kernel}"), format!("ro:{initrd}"), format!("rw:{disk}")];
    let args =
        boot_args(kind, &["--kvm", "fd:3", "--kernel", "fd:4", "--initrd", "fd:5", "--disk", "fd:6", "--no-rng"]);
    let (status, out, err) = finish(&mut jail(dir.path(), "jail-boot", 128, &fds, &args));
    assert_eq!(status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let report = tiny_kernel::BootReport::parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}\n{err}"));
    assert_eq!(report.ramdisk_size, 12_345, "the initramfs came through its descriptor");
    assert_eq!(report.virtio_magic, 0x7472_6976, "the disk is a virtio device");
    assert_eq!(report.virtio_id, 2, "the first virtio device is the block device");
}

/// A field of `/proc/<pid>/status`.
fn status_field(pid: u32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string()).unwrap_or_default()
}

#[test]
fn den_vmm_runs_as_its_own_user_with_nothing_but_its_own_files() {
    let Some(kind) = ready() else { return };
    let dir = tempfile::tempdir().unwrap();
    let kernel = write(dir.path(), "halt.elf", &tiny_kernel::halt_kernel());
    let api = dir.path().join("api.sock");
    let fds = [KVM.to_string(), format!("ro:{kernel}"), format!("listen:{}", api.display())];
    let args = boot_args(kind, &["--kvm", "fd:3", "--kernel", "fd:4", "--api-sock", "fd:5", "--console", "stdio"]);
    let mut j = jail(dir.path(), "jail-look", 128, &fds, &args);
    let pid = j.child.id();
    let mut line = String::new();
    BufReader::new(j.child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("den-tiny halt"), "the guest runs: {line:?}");

    // Its own user and group, no capabilities, no way to gain any, filtered.
    let uid = UID.to_string();
    assert_eq!(status_field(pid, "Uid:").split_whitespace().collect::<Vec<_>>(), [uid.as_str(); 4]);
    assert_eq!(status_field(pid, "Gid:").split_whitespace().collect::<Vec<_>>(), [uid.as_str(); 4]);
    assert_eq!(status_field(pid, "Groups:"), "");
    for cap in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(status_field(pid, cap), "0000000000000000", "{cap}");
    }
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
    assert_eq!(status_field(pid, "Seccomp:"), "2");
    // Not dumpable: its /proc files are root's, so its own uid cannot read its memory either.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(format!("/proc/{pid}/mem")).unwrap().uid(), 0, "den-vmm is not dumpable");
    // Its own namespaces (not the PID namespace: dend re-adopts it by pid).
    for ns in ["mnt", "net", "ipc", "uts"] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_ne!(theirs, std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap(), "{ns}");
    }
    // Its root holds den-vmm and nothing else; it is read-only.
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let names: Vec<String> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    let libs = ["lib", "lib64", "usr"];
    assert!(names.contains(&"den-vmm".to_string()), "{names:?}");
    assert!(
        names.iter().all(|n| n == "den-vmm" || libs.contains(&n.as_str())),
        "only den-vmm (and a debug build's libraries): {names:?}"
    );
    for gone in ["dev", "proc", "sys", "tmp", "etc", "root", "home", "var", "run"] {
        assert!(!root.join(gone).exists(), "/{gone} is in the jail");
    }
    // Its cgroup, with the memory limit asked for.
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cgroup.contains("/den/jail-look"), "{cgroup}");
    // The API answers through the handed-over socket, which stays root's.
    let mut s = std::os::unix::net::UnixStream::connect(&api).unwrap();
    std::io::Write::write_all(&mut s, b"{\"op\":\"info\"}\n").unwrap();
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).unwrap();
    assert!(reply.contains("\"running\""), "{reply}");
    assert_eq!(std::fs::metadata(&api).unwrap().uid(), 0);
    // Exactly one /dev/kvm descriptor: the one handed over.
    let kvm_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter(|e| std::fs::read_link(e.as_ref().unwrap().path()).is_ok_and(|t| t == Path::new("/dev/kvm")))
        .count();
    assert_eq!(kvm_fds, 1);

    // A second jailer of the same VM (a racing start) is refused before it binds a socket
    // over this one's, which still answers.
    let (status, out, err) = finish(&mut jail(dir.path(), "jail-look", 128, &fds, &args));
    assert_eq!(status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("a den-vmm of this VM runs"), "{err}");
    let mut s = std::os::unix::net::UnixStream::connect(&api).unwrap();
    std::io::Write::write_all(&mut s, b"{\"op\":\"info\"}\n").unwrap();
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).unwrap();
    assert!(reply.contains("\"running\""), "the first VM still answers: {reply}");
    drop(j);
}

#[test]
fn den_vmm_cannot_open_kvm_or_a_disk_by_name_in_its_jail() {
    let Some(kind) = ready() else { return };
    let dir = tempfile::tempdir().unwrap();
    let kernel = write(dir.path(), "halt.elf", &tiny_kernel::halt_kernel());
    let other = write(dir.path(), "other-vm-disk.img", &[0u8; 4096]);
    // A second /dev/kvm by name, beside the one handed over.
    let args = boot_args(kind, &["--kvm", "/dev/kvm", "--kernel", "fd:3"]);
    let (status, out, err) = finish(&mut jail(dir.path(), "jail-kvm", 64, &[format!("ro:{kernel}")], &args));
    assert_eq!(status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("cannot open /dev/kvm"), "{err}");
    // Another VM's disk by name.
    let args = boot_args(kind, &["--kvm", "fd:3", "--kernel", "fd:4", "--disk", &other]);
    let (status, out, err) =
        finish(&mut jail(dir.path(), "jail-disk", 64, &[KVM.to_string(), format!("ro:{kernel}")], &args));
    assert_eq!(status.code(), Some(2), "{out}\n{err}");
    assert!(err.contains("disks[0]") && err.contains("is not a file"), "{err}");
    // The same descriptor twice.
    let args = boot_args(kind, &["--kvm", "fd:3", "--kernel", "fd:3"]);
    let (status, _, err) = finish(&mut jail(dir.path(), "jail-twice", 64, &[KVM.to_string()], &args));
    assert_ne!(status.code(), Some(0), "{err}");
    assert!(err.contains("named twice"), "{err}");
}

#[test]
fn the_cgroup_memory_limit_kills_den_vmm_not_the_host() {
    let Some(kind) = ready() else { return };
    let dir = tempfile::tempdir().unwrap();
    let kernel = write(dir.path(), "halt.elf", &tiny_kernel::halt_kernel());
    // den-vmm copies the initramfs into guest memory: 96 MiB of it cannot fit a 48 MiB limit.
    let initrd = write(dir.path(), "initrd", &vec![0x5a_u8; 96 << 20]);
    let fds = [KVM.to_string(), format!("ro:{kernel}"), format!("ro:{initrd}")];
    let args = boot_args(kind, &["--kvm", "fd:3", "--kernel", "fd:4", "--initrd", "fd:5", "--memory-mib", "256"]);
    let mut j = jail(dir.path(), "jail-oom", 48, &fds, &args);
    let groups = den_jailer::cgroup::hierarchies(Path::new(CGROUPS));
    let (status, out, err) = finish(&mut j);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "killed by the OOM killer: {status:?}\n{out}\n{err}");
    let oom_kills: u64 = groups
        .iter()
        .filter_map(|h| {
            let (p, file) = match h {
                den_jailer::cgroup::Hierarchy::V2(p) => (p, "memory.events"),
                den_jailer::cgroup::Hierarchy::V1("memory", p) => (p, "memory.oom_control"),
                _ => return None,
            };
            let text = std::fs::read_to_string(p.join("den").join(j.group()).join(file)).ok()?;
            text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum();
    assert!(oom_kills >= 1, "the VM's own cgroup counted the OOM kill");
}
