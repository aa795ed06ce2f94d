//! The KVM lab: a QEMU TCG guest with an emulated AMD SVM (`-cpu max,+svm`) whose kernel loads
//! kvm-amd, so den-vmm runs against a real `/dev/kvm` with hardware-virtualization semantics on a
//! host whose own `/dev/kvm` cannot run Linux. The outer guest's init is den-agent; the harness
//! copies den-vmm and the inner guest's files in over the agent channel and runs scenarios with
//! agent exec, returning their output to the test. Stalled outer boots are retried by [`Guest`].

use crate::images;
use crate::{Guest, GuestOptions};
use bytes::Bytes;
use den_agent_proto::{AgentClient, ExecOutput};
use den_images::SilentProgress;
use den_images::{Digest256, ImageRecord, Store};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The outer guest's image spec.
pub const OUTER_SPEC: &str = include_str!("../lab/outer.yml");

/// The longest a lab script may run.
pub const SH_LIMIT: Duration = Duration::from_secs(420);
/// The longest an inner boot may take before the lab counts as wedged (see [`Lab::try_sh`]).
pub const BOOT_LIMIT: Duration = Duration::from_secs(200);

/// How many fresh labs a scenario gets when the outer guest dies or wedges under it.
pub const LAB_ATTEMPTS: u32 = 3;

/// Where den-vmm lives inside the outer guest.
pub const VMM: &str = "/lab/den-vmm";

/// A running lab: the outer guest and its agent.
pub struct Lab {
    /// The outer guest (killed on drop).
    pub guest: Guest,
    /// Its agent.
    pub agent: AgentClient,
    /// The image store the lab's images come from.
    pub store: Store,
}

impl Lab {
    /// Builds (or finds) the outer image, boots it and copies den-vmm in.
    pub async fn start() -> Lab {
        let store = images::shared_store();
        let outer = images::build_spec_text(&store, OUTER_SPEC, "tests/lab/outer.yml", &SilentProgress)
            .unwrap_or_else(|e| panic!("building the lab's outer image: {e}"));
        let opts = GuestOptions {
            cpu: "max,+svm".into(),
            memory_mib: 2048,
            cpus: 2,
            agent_timeout: Duration::from_secs(180),
            stall: Duration::from_secs(12),
            tsc_hint: false,
            // The outer TCG boot stalls at random, more often while other guests load the
            // host's two cores; a stalled attempt costs only the 12 s it takes to notice.
            attempts: 6,
            ..Default::default()
        };
        let (guest, agent) = Guest::boot(&store, &outer, opts).await;
        eprintln!("lab: outer guest answered after {:.1}s ({} retries)", guest.boot_secs, guest.retries);
        let lab = Lab { guest, agent, store };
        let kvm = lab.sh("ls -l /dev/kvm && grep -c svm /proc/cpuinfo").await;
        assert_eq!(kvm.code, Some(0), "the lab guest has no /dev/kvm: {}", lab.describe(&kvm));
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
    let mut artifacts = BTreeMap::new();
    let roles = ["kernel", "initramfs", "vmlinux"].into_iter().filter(|r| image.artifacts.contains_key(*r));
    for role in roles {
        let src = from.get(&image.artifacts[role], false).unwrap_or_else(|e| panic!("{role} of {}: {e}", image.name));
        let tmp = dir.join(format!("{role}.tmp"));
        std::fs::copy(&src, &tmp).unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
        let digest = to.insert_file(&tmp, role, "lab", BTreeMap::new()).unwrap_or_else(|e| panic!("{role}: {e}"));
        artifacts.insert(role.to_string(), digest);
    }
    artifacts
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
        for attempt in 1..=LAB_ATTEMPTS {
            match scenario(Lab::start().await).await {
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
    /// Copies the host's `virtiofsd` and the libraries it links (as `ldd` lists them) to
    /// `/lab/vfs/`, and puts a script at [`HOST_VIRTIOFSD`] in the outer guest that runs it through
    /// that loader and library folder, in `chroot` sandbox mode: the outer guest's root is an
    /// initramfs, which `pivot_root` (the default sandbox) cannot leave.
    pub async fn put_virtiofsd(&self) {
        let ldd = std::process::Command::new("ldd").arg(HOST_VIRTIOFSD).output().expect("running ldd");
        assert!(ldd.status.success(), "ldd {HOST_VIRTIOFSD}: {}", String::from_utf8_lossy(&ldd.stderr));
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
            self.put(&lib, &format!("/lab/vfs/{name}"), 0o755).await;
        }
        let loader = loader.expect("virtiofsd names its loader");
        self.put(Path::new(HOST_VIRTIOFSD), "/lab/vfs/virtiofsd", 0o755).await;
        let wrapper = format!(
            "#!/bin/sh\nexec /lab/vfs/{loader} --library-path /lab/vfs /lab/vfs/virtiofsd \"$@\" -o sandbox=chroot\n"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("virtiofsd"), wrapper).expect("writing the wrapper");
        self.put(&dir.path().join("virtiofsd"), HOST_VIRTIOFSD, 0o755).await;
    }
}
