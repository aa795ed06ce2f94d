//! The KVM lab: a QEMU TCG guest with an emulated AMD SVM (`-cpu max,+svm`) whose kernel loads
//! kvm-amd, so den-vmm runs against a real `/dev/kvm` with hardware-virtualization semantics on a
//! host whose own `/dev/kvm` cannot run Linux. The outer guest's init is den-agent; the harness
//! copies den-vmm and the inner guest's files in over the agent channel and runs scenarios with
//! agent exec, returning their output to the test. Stalled outer boots are retried by [`Guest`].

use crate::images;
use crate::{Guest, GuestOptions};
use bytes::Bytes;
use den_agent_proto::AgentClient;
/// What a lab script left: its exit, stdout and stderr.
pub use den_agent_proto::ExecOutput;
use den_images::SilentProgress;
use den_images::{Digest256, ImageRecord, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The outer guest's image spec.
pub const OUTER_SPEC: &str = include_str!("../lab/outer.yml");

/// The longest a lab script may run.
pub const SH_LIMIT: Duration = Duration::from_secs(420);
/// The longest an inner boot may take before the lab counts as wedged (see [`Lab::try_sh`]).
pub const BOOT_LIMIT: Duration = Duration::from_secs(200);

/// How many fresh labs a scenario gets when the outer guest dies or wedges under it.
pub const LAB_ATTEMPTS: u32 = 3;

/// QEMU in the outer guest as [`Lab::put_qemu`] leaves it, run straight through its loader (no
/// wrapper script, so a timed start costs no extra exec), with the microvm firmware.
pub const LAB_QEMU: &str =
    "/lab/dyn/ld-linux-x86-64.so.2 --library-path /lab/dyn /lab/dyn/qemu-system-x86_64 -L /lab/qemu/share";

/// Where den-vmm lives inside the outer guest.
pub const VMM: &str = "/lab/den-vmm";

/// How big a lab to start.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// The outer guest's memory in MiB.
    pub memory_mib: u32,
    /// A host folder whose files the outer guest gets on a disk of its own (an ext4 filesystem
    /// made from the folder, attached as a virtio-blk device, mounted at [`LAB_DISK`] with room to
    /// spare): for files too big to copy in over the agent channel, such as root disks.
    pub disk_from: Option<PathBuf>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions { memory_mib: 2048, disk_from: None }
    }
}

/// Where the outer guest mounts the disk made from [`LabOptions::disk_from`].
pub const LAB_DISK: &str = "/lab/disk";

/// Free room on the lab disk beyond its files, in MiB.
const LAB_DISK_ROOM_MIB: u64 = 6 * 1024;

/// A running lab: the outer guest and its agent.
pub struct Lab {
    /// The outer guest (killed on drop).
    pub guest: Guest,
    /// Its agent.
    pub agent: AgentClient,
    /// The image store the lab's images come from.
    pub store: Store,
    /// Holds the lab disk's file while the outer guest runs.
    _disk_dir: Option<tempfile::TempDir>,
}

impl Lab {
    /// Builds (or finds) the outer image, boots it and copies den-vmm in.
    pub async fn start() -> Lab {
        Lab::start_with(&LabOptions::default()).await
    }

    /// Like [`Lab::start`], with the memory and the disk `opts` asks for.
    pub async fn start_with(lab: &LabOptions) -> Lab {
        let store = images::shared_store();
        let outer = images::build_spec_text(&store, OUTER_SPEC, "tests/lab/outer.yml", &SilentProgress)
            .unwrap_or_else(|e| panic!("building the lab's outer image: {e}"));
        let disk_dir = lab.disk_from.as_deref().map(make_lab_disk);
        let opts = GuestOptions {
            cpu: "max,+svm".into(),
            memory_mib: lab.memory_mib,
            cpus: 2,
            agent_timeout: Duration::from_secs(180),
            stall: Duration::from_secs(12),
            // Without the TSC frequency the outer kernel calibrates its TSC against the emulated
            // PIT, which fails now and then ("tsc: Unable to calibrate against PIT", then "No
            // reference (HPET/PMTIMER) available") and the boot hangs in the delay loop's
            // calibration right after. On a slower host day that was most boots (2 of 3, 4 of 5
            // and 6 of 6 attempts of three labs in a row); with the hint, none.
            tsc_hint: true,
            // A boot that still stalls costs only the 12 s it takes to notice.
            attempts: 6,
            disks: disk_dir.iter().map(|d| d.path().join("lab.ext4")).collect(),
            ..Default::default()
        };
        let (guest, agent) = Guest::boot(&store, &outer, opts).await;
        eprintln!("lab: outer guest answered after {:.1}s ({} retries)", guest.boot_secs, guest.retries);
        let lab = Lab { guest, agent, store, _disk_dir: disk_dir };
        let kvm = lab.sh("ls -l /dev/kvm && grep -c svm /proc/cpuinfo").await;
        assert_eq!(kvm.code, Some(0), "the lab guest has no /dev/kvm: {}", lab.describe(&kvm));
        if lab._disk_dir.is_some() {
            let out = lab.sh(&format!("mkdir -p {LAB_DISK} && mount -t ext4 /dev/vda {LAB_DISK}")).await;
            assert_eq!(out.code, Some(0), "mounting the lab disk: {}", lab.describe(&out));
        }
        lab.put(&images::vmm_static_binary(), VMM, 0o755).await;
        lab
    }

    /// Copies a host file into the outer guest.
    pub async fn put(&self, host: &Path, guest: &str, mode: u32) {
        let bytes = std::fs::read(host).unwrap_or_else(|e| panic!("reading {}: {e}", host.display()));
        self.sh(&format!("mkdir -p \"$(dirname {guest})\"")).await;
        self.agent
            .put_file(guest, mode, Bytes::from(bytes))
            .await
            .unwrap_or_else(|e| panic!("copying {} to the lab as {guest}: {e}", host.display()));
    }

    /// Copies the files under host folder `root` to the outer guest's folder `to`.
    pub async fn put_tree(&self, root: &Path, to: &str) {
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())).flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(root) {
                    self.put(&p, &format!("{to}/{}", rel.display()), 0o644).await;
                }
            }
        }
    }

    /// Copies an image's kernel and initramfs to `<dir>/kernel` and `<dir>/initramfs`.
    pub async fn put_image(&self, image: &ImageRecord, dir: &str) {
        for role in ["kernel", "initramfs"] {
            let digest = image.artifacts.get(role).unwrap_or_else(|| panic!("image {} has no {role}", image.name));
            let path = self.store.get(digest, false).unwrap_or_else(|e| panic!("{role} of {}: {e}", image.name));
            self.put(&path, &format!("{dir}/{role}"), 0o644).await;
        }
        // The same kernel as an ELF vmlinux, which den-vmm boots when an image has one.
        if let Some(digest) = image.artifacts.get("vmlinux") {
            let path = self.store.get(digest, false).unwrap_or_else(|e| panic!("vmlinux of {}: {e}", image.name));
            self.put(&path, &format!("{dir}/vmlinux"), 0o644).await;
        }
    }

    /// Runs a shell script in the outer guest; a script that runs past [`SH_LIMIT`] fails the test
    /// (with the outer console) instead of hanging it.
    pub async fn sh(&self, script: &str) -> ExecOutput {
        self.try_sh(script, SH_LIMIT).await.unwrap_or_else(|wedged| panic!("{wedged}"))
    }

    /// Like [`Lab::sh`], but a script still running after `limit` is reported as `Err` (with the
    /// outer console): the outer guest is wedged. Emulated SVM sometimes leaves an inner vCPU
    /// running without ever exiting to the outer kernel ("soft lockup ... [vcpu0]"); tests that
    /// boot inner VMs start a fresh lab and try again then.
    pub async fn try_sh(&self, script: &str, limit: Duration) -> Result<ExecOutput, String> {
        let argv = ["/bin/sh", "-c", script];
        let run = self.agent.exec_output(&argv, Bytes::new(), crate::EXEC);
        match tokio::time::timeout(limit, run).await {
            Ok(Ok(out)) => Ok(out),
            // A wedged outer kernel stops its agent too: the request then fails (the agent did
            // not take it in time) rather than running over, and is the same fault.
            Ok(Err(e)) => Err(format!("lab exec `{script}`: {e}; outer console:\n{}", self.guest.console_tail(40))),
            Err(_) => {
                Err(format!("lab exec `{script}` ran over {limit:?}; outer console:\n{}", self.guest.console_tail(40)))
            }
        }
    }

    /// The rest of the first line of a scenario's output that starts with `key`, trimmed; empty
    /// when no line does. Lab scripts print what the test checks as `KEY=value` lines.
    pub fn field(out: &ExecOutput, key: &str) -> String {
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).unwrap_or("").to_string()
    }

    /// Output and the outer console's tail, for assertion messages.
    pub fn describe(&self, out: &ExecOutput) -> String {
        format!(
            "exit {:?} signal {:?}\nstdout:\n{}\nstderr:\n{}\nouter console:\n{}",
            out.code,
            out.signal,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.guest.console_tail(20)
        )
    }
}

/// Copies `image`'s kernel and initramfs from `from` into the store `to` (kept at `dir`), for a
/// store the lab gets a copy of; returns their digests by role.
pub fn copy_boot_files(from: &Store, image: &ImageRecord, to: &Store, dir: &Path) -> BTreeMap<String, Digest256> {
    copy_artifacts(from, image, to, dir, &["kernel", "initramfs", "vmlinux"])
}

/// Copies the artifacts of `image` named in `roles` (those it has) from `from` into the store `to`
/// (kept at `dir`); returns their digests by role. Copies are sparse, so a root disk costs only
/// its data.
pub fn copy_artifacts(
    from: &Store,
    image: &ImageRecord,
    to: &Store,
    dir: &Path,
    roles: &[&str],
) -> BTreeMap<String, Digest256> {
    let mut artifacts = BTreeMap::new();
    for role in roles.iter().filter(|r| image.artifacts.contains_key(**r)) {
        let src = from.get(&image.artifacts[*role], false).unwrap_or_else(|e| panic!("{role} of {}: {e}", image.name));
        let tmp = dir.join(format!("{role}.tmp"));
        let st = std::process::Command::new("cp").arg("--sparse=always").arg(&src).arg(&tmp).status();
        assert!(st.is_ok_and(|s| s.success()), "copying {} to {}", src.display(), tmp.display());
        let digest = to.insert_file(&tmp, role, "lab", BTreeMap::new()).unwrap_or_else(|e| panic!("{role}: {e}"));
        artifacts.insert(role.to_string(), digest);
    }
    artifacts
}

/// Makes `<temp dir>/lab.ext4`: an ext4 filesystem holding the files under `folder` (owned by
/// root), with [`LAB_DISK_ROOM_MIB`] free beyond them. The file is sparse, and `mkfs.ext4 -d`
/// skips the holes of sparse files it copies.
fn make_lab_disk(folder: &Path) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("den-lab-disk-").tempdir().expect("temp dir");
    let mut bytes = 0u64;
    let mut stack = vec![folder.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())).flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => bytes += m.len(),
                Err(_) => {}
            }
        }
    }
    let mib = bytes / (1 << 20) + LAB_DISK_ROOM_MIB;
    let out = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "den-lab", "-E", "root_owner=0:0", "-d"])
        .arg(folder)
        .arg(dir.path().join("lab.ext4"))
        .arg(format!("{mib}M"))
        .output()
        .expect("running mkfs.ext4");
    assert!(out.status.success(), "mkfs.ext4 -d {}: {}", folder.display(), String::from_utf8_lossy(&out.stderr));
    dir
}

/// A cpio archive that, appended to an initramfs whose init is den-agent, makes the agent run
/// `script` (with /bin/sh) as a one-shot service: the way lab scenarios run inside inner guests.
pub fn scenario_cpio(script: &str) -> Vec<u8> {
    let mut w = den_images::cpio::CpioWriter::new(Vec::new());
    let service = b"exec = [\"/bin/sh\", \"/lab/scenario.sh\"]\nrestart = \"never\"\n";
    let written = ["etc", "etc/den", "etc/den/services", "lab"]
        .iter()
        .try_for_each(|d| w.dir(d, 0o755))
        .and_then(|()| w.file("lab/scenario.sh", 0o755, script.as_bytes()))
        .and_then(|()| w.file("etc/den/services/scenario.toml", 0o644, service));
    written.expect("writing a cpio archive to memory");
    w.finish().expect("writing a cpio archive to memory")
}

impl Lab {
    /// Copies the `base` image's kernel and initramfs to `/lab/base/` and writes
    /// `/lab/<name>.img`: that initramfs with `script` appended as a scenario service.
    pub async fn put_scenario(&self, name: &str, script: &str) -> ImageRecord {
        let base = images::build_builtin(&self.store, "base");
        if self.sh("test -f /lab/base/kernel").await.code != Some(0) {
            self.put_image(&base, "/lab/base").await;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let cpio = dir.path().join("scenario.cpio");
        std::fs::write(&cpio, scenario_cpio(script)).expect("writing the scenario");
        self.put(&cpio, &format!("/lab/{name}.cpio"), 0o644).await;
        let out = self.sh(&format!("cat /lab/base/initramfs /lab/{name}.cpio > /lab/{name}.img")).await;
        assert_eq!(out.code, Some(0), "{}", self.describe(&out));
        base
    }

    /// Waits until `path` exists in the outer guest.
    pub async fn wait_for_file(&self, path: &str, timeout: Duration) {
        self.try_wait_for_file(path, timeout).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Lab::wait_for_file`], but a dead or wedged outer guest is an `Err`.
    pub async fn try_wait_for_file(&self, path: &str, timeout: Duration) -> Result<(), String> {
        let start = std::time::Instant::now();
        while self.try_sh(&format!("test -e {path}"), SH_LIMIT).await?.code != Some(0) {
            if start.elapsed() > timeout {
                return Err(format!(
                    "{path} did not appear within {timeout:?}; outer console:\n{}",
                    self.guest.console_tail(40)
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// Runs `scenario` on a fresh lab; if the outer guest dies or wedges (emulated SVM is not
    /// flawless: see [`Lab::try_sh`]), runs it again on another fresh lab, up to [`LAB_ATTEMPTS`] in all (each counted and printed). Assertion failures
    /// inside the scenario are not retried.
    pub async fn run_with_retry<F, Fut>(scenario: F)
    where
        F: Fn(Lab) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        Lab::run_with_retry_on(&LabOptions::default(), scenario).await
    }

    /// [`Lab::run_with_retry`] on labs started with `opts`.
    pub async fn run_with_retry_on<F, Fut>(opts: &LabOptions, scenario: F)
    where
        F: Fn(Lab) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        for attempt in 1..=LAB_ATTEMPTS {
            match scenario(Lab::start_with(opts).await).await {
                Ok(()) => {
                    eprintln!("lab: scenario passed on attempt {attempt} of {LAB_ATTEMPTS}");
                    return;
                }
                Err(e) if attempt < LAB_ATTEMPTS => {
                    eprintln!(
                        "lab: attempt {attempt} of {LAB_ATTEMPTS}: the outer guest died or wedged; a fresh lab: {e}"
                    )
                }
                Err(e) => panic!("lab: the outer guest died or wedged on all {LAB_ATTEMPTS} attempts; the last: {e}"),
            }
        }
    }
}

/// Where the host's `virtiofsd` is (Debian 12: QEMU's, from qemu-system-common).
pub const HOST_VIRTIOFSD: &str = "/usr/lib/qemu/virtiofsd";

impl Lab {
    /// Copies the host's `virtiofsd` (see [`Lab::put_dynamic`]) and puts a script at
    /// [`HOST_VIRTIOFSD`] in the outer guest that runs it in `chroot` sandbox mode: the outer
    /// guest's root is an initramfs, which `pivot_root` (the default sandbox) cannot leave.
    pub async fn put_virtiofsd(&self) {
        self.put_dynamic(Path::new(HOST_VIRTIOFSD), HOST_VIRTIOFSD, "-o sandbox=chroot").await;
    }

    /// Copies QEMU (see [`Lab::put_dynamic`]: `/lab/dyn/qemu-system-x86_64`, run by [`LAB_QEMU`])
    /// and the microvm firmware to `/lab/qemu/share`, and puts a `qemu-system-x86_64` in `/lab/bin`
    /// that runs it with them, for dend's QEMU engine.
    pub async fn put_qemu(&self) {
        for fw in ["bios-microvm.bin", "linuxboot_dma.bin", "pvh.bin"] {
            self.put(&Path::new("/usr/share/qemu").join(fw), &format!("/lab/qemu/share/{fw}"), 0o644).await;
        }
        self.put_dynamic(Path::new("/usr/bin/qemu-system-x86_64"), "/lab/bin/qemu-system-x86_64", "-L /lab/qemu/share")
            .await;
    }

    /// Copies a dynamically linked host program and the libraries it links (as `ldd` lists them)
    /// to `/lab/dyn/`, and puts a script at `wrapper` in the outer guest that runs it through that
    /// loader and library folder with its arguments, then `extra` (shell words).
    pub async fn put_dynamic(&self, program: &Path, wrapper: &str, extra: &str) {
        let ldd = std::process::Command::new("ldd").arg(program).output().expect("running ldd");
        assert!(ldd.status.success(), "ldd {}: {}", program.display(), String::from_utf8_lossy(&ldd.stderr));
        let text = String::from_utf8_lossy(&ldd.stdout).to_string();
        let libs = text.lines().filter_map(|l| {
            let path = l.split("=>").nth(1).unwrap_or(l).split_whitespace().next()?;
            path.starts_with('/').then(|| Path::new(path).to_path_buf())
        });
        let mut loader = None;
        for lib in libs {
            let name = lib.file_name().expect("a library file").to_string_lossy().to_string();
            if name.starts_with("ld-linux") {
                loader = Some(name.clone());
            }
            self.put(&lib, &format!("/lab/dyn/{name}"), 0o755).await;
        }
        let loader = loader.unwrap_or_else(|| panic!("{} names its loader", program.display()));
        let name = program.file_name().expect("a program file").to_string_lossy().to_string();
        self.put(program, &format!("/lab/dyn/{name}"), 0o755).await;
        let script =
            format!("#!/bin/sh\nexec /lab/dyn/{loader} --library-path /lab/dyn /lab/dyn/{name} \"$@\" {extra}\n");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("wrapper"), script).expect("writing the wrapper");
        self.put(&dir.path().join("wrapper"), wrapper, 0o755).await;
    }
}
