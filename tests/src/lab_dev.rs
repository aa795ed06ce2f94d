//! dend in the KVM lab: an image store for the lab disk (see [`LabOptions::disk_from`]) whose
//! root disks dend copies there, a shell prelude that starts dend, and the `dev` image through
//! dend for the lab test and the bench alike: dend runs with its SSH gateway on the outer guest's
//! loopback, GNU `cp` for its disk copies, and QEMU and the OpenSSH client beside it.

use crate::images;
use crate::lab::{copy_artifacts, Lab, LabOptions};
use crate::ssh::keygen;
use den_images::{ImageRecord, Store};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Free room left on the lab's copy of `dev`'s root disk, for what its boots write.
const ROOT_ROOM_MIB: u64 = 256;

/// The outer guest's memory: a 1 GiB `dev` VM, dend and the page cache of the lab disk.
const OUTER_MEMORY_MIB: u32 = 3072;

/// Runs a host command; panics with its output if it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Shrinks an ext4 image file to its contents plus [`ROOT_ROOM_MIB`]: the lab's store checks an
/// object's digest the first time it sees it, and hashing the 3 GiB of `dev`'s full-size disk
/// under TCG would take minutes.
fn shrink_ext4(file: &Path) {
    // e2fsck exits 1 when it corrected something, which is fine here.
    let st = Command::new("e2fsck").args(["-f", "-y"]).arg(file).output().expect("running e2fsck");
    assert!(matches!(st.status.code(), Some(0 | 1)), "e2fsck {}: {st:?}", file.display());
    run(Command::new("resize2fs").arg("-M").arg(file));
    let header = run(Command::new("dumpe2fs").arg("-h").arg(file));
    let field = |name: &str| -> u64 {
        header
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("dumpe2fs -h {} has no {name}", file.display()))
    };
    let bytes = field("Block count:") * field("Block size:") + (ROOT_ROOM_MIB << 20);
    run(Command::new("truncate").arg("-s").arg(bytes.to_string()).arg(file));
    run(Command::new("resize2fs").arg(file));
}

/// Writes an image store at `store_dir` (for the lab disk) holding `images` from `from` with
/// their kernel, initramfs, vmlinux and, where they have one, a shrunk copy of their root disk.
pub fn lab_store(from: &Store, images: &[&ImageRecord], store_dir: &Path) {
    std::fs::create_dir_all(store_dir).expect("making the lab store");
    let store = Store::open(store_dir).expect("opening the lab store");
    for image in images {
        let mut artifacts = copy_artifacts(from, image, &store, store_dir, &["kernel", "initramfs", "vmlinux"]);
        if let Some(digest) = image.artifacts.get("rootfs") {
            let root = store_dir.join("rootfs.tmp");
            let src = from.get(digest, false).unwrap_or_else(|e| panic!("{}'s root disk: {e}", image.name));
            run(Command::new("cp").arg("--sparse=always").arg(src).arg(&root));
            shrink_ext4(&root);
            let digest = store.insert_file(&root, "rootfs", "lab", Default::default()).expect("storing a root disk");
            artifacts.insert("rootfs".into(), digest);
        }
        store.put_image(&ImageRecord { artifacts, ..(*image).clone() }).expect("storing an image record");
    }
}

/// What a lab running `dev` through dend needs from the host: the lab disk's folder and a key
/// for the Den user `alice`.
pub struct DevLab {
    folder: tempfile::TempDir,
    _keys: tempfile::TempDir,
    /// alice's private key (its public half beside it, `.pub`).
    pub alice: PathBuf,
    /// The `dev` image as the host's store has it.
    pub image: ImageRecord,
}

impl DevLab {
    /// Builds (or finds) `dev` in `from`, and writes the lab disk's folder: an image store at
    /// `store/` holding `dev` with its kernel, initramfs, vmlinux and a shrunk copy of its root disk.
    pub fn new(from: &Store) -> DevLab {
        DevLab::with_images(from, &[])
    }

    /// Like [`DevLab::new`], with `others` in the lab's store beside `dev`.
    pub fn with_images(from: &Store, others: &[&ImageRecord]) -> DevLab {
        let image = images::build_builtin(from, "dev");
        let folder = tempfile::Builder::new().prefix("den-lab-dev-").tempdir().expect("temp dir");
        let all: Vec<&ImageRecord> = std::iter::once(&image).chain(others.iter().copied()).collect();
        lab_store(from, &all, &folder.path().join("store"));
        let keys = tempfile::tempdir().expect("temp dir");
        let alice = keygen(keys.path(), "alice");
        DevLab { folder, _keys: keys, alice, image }
    }

    /// The lab to start: more memory, and the lab disk.
    pub fn options(&self) -> LabOptions {
        LabOptions { memory_mib: OUTER_MEMORY_MIB, disk_from: Some(self.folder.path().to_path_buf()) }
    }

    /// The host folder the lab disk is made from (its store is at `store/`), for more files.
    pub fn folder(&self) -> &Path {
        self.folder.path()
    }

    /// Copies dend and its programs ([`put_dend`]), the OpenSSH client, QEMU and alice's key into
    /// a fresh lab.
    pub async fn prepare(&self, lab: &Lab) {
        put_dend(lab, &["/usr/bin/ssh"]).await;
        lab.put_qemu().await;
        lab.put(&self.alice, "/lab/alice", 0o600).await;
        lab.put(&self.alice.with_extension("pub"), "/lab/alice.pub", 0o644).await;
    }
}

/// The host programs dend runs for networks, disks and images.
const DEND_TOOLS: [&str; 4] = ["/usr/sbin/nft", "/usr/sbin/dnsmasq", "/usr/sbin/mkfs.ext4", "/usr/bin/cp"];

/// Copies dend, the CLI, den-jailer and `virtiofsd` into a fresh lab, and into `/lab/bin` the host
/// programs dend runs ([`DEND_TOOLS`]) and `extra` ones (see [`Lab::put_dynamic`]).
pub async fn put_dend(lab: &Lab, extra: &[&str]) {
    lab.put(&images::dend_static_binary(), "/lab/dend", 0o755).await;
    lab.put(&images::den_cli_static_binary(), "/lab/den", 0o755).await;
    lab.put(&images::jailer_static_binary(), "/lab/den-jailer", 0o755).await;
    lab.put_virtiofsd().await;
    for program in DEND_TOOLS.iter().chain(extra) {
        let name = Path::new(program).file_name().and_then(|n| n.to_str()).unwrap_or("program");
        lab.put_dynamic(Path::new(program), &format!("/lab/bin/{name}"), "").await;
    }
    lab.put(Path::new("/etc/mke2fs.conf"), "/etc/mke2fs.conf", 0o644).await;
}

/// A shell prelude for lab scripts: defines `start_dend` (dend with its data on the lab disk and
/// `args` after `--data-dir` and `--image-store`), calls it unless dend runs, and defines `den`,
/// `up` (seconds since boot), `ms A B` and `running RE`.
pub fn dend(args: &str) -> String {
    format!(
        r#"
D=/lab/disk/den; mkdir -p $D
grep -q " /sys/fs/cgroup cgroup2" /proc/mounts || {{ mkdir -p /sys/fs/cgroup; mount -t cgroup2 none /sys/fs/cgroup; }}
# dend copies disks with GNU cp through /dev/fd; the OpenSSH client wants a passwd entry, and
# dnsmasq a user to drop to.
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
grep -q '^root:' /etc/passwd 2>/dev/null || echo 'root:x:0:0:root:/root:/bin/sh' >> /etc/passwd
grep -q '^nobody:' /etc/passwd || echo 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >> /etc/passwd
grep -q '^nogroup:' /etc/group 2>/dev/null || echo 'nogroup:x:65534:' >> /etc/group
mkdir -p /root
export PATH=/lab/bin:$PATH
den() {{ /lab/den --socket $D/run/dend.sock "$@"; }}
up() {{ cut -d' ' -f1 /proc/uptime; }}
ms() {{ echo "$1 $2" | awk '{{printf "%d", ($2-$1)*1000}}'; }}
# running RE: a process has an argument that matches RE whole (the outer guest has no pgrep).
# Write RE so that it does not match itself (`/lab/dyn/virtiofs[d]`).
running() {{ for c in /proc/[0-9]*/cmdline; do tr '\0' '\n' < $c 2>/dev/null | grep -qx "$1" && return 0; done; return 1; }}
start_dend() {{
  /lab/dend --data-dir $D --image-store /lab/disk/store {args} >> $D/dend.log 2>&1 &
  i=0; while ! den vm ls >/dev/null 2>&1; do
    i=$((i+1)); [ $i -lt 300 ] || {{ echo LAB-DEND-DID-NOT-START; cat $D/dend.log; exit 9; }}; sleep 0.1
  done
}}
den vm ls >/dev/null 2>&1 || start_dend
"#
    )
}

/// dend's arguments for `dev`: no HTTPS, the SSH gateway on 127.0.0.1:2222.
const DEV_DEND_ARGS: &str = "--listen off --ssh-listen 127.0.0.1:2222";

/// A lab script: dend started as [`dend`] does, then [`boot_steps`].
pub fn boot_script(vm: &str, engine: &str) -> String {
    format!("{}{}", dend(DEV_DEND_ARGS), boot_steps(vm, engine))
}

/// Lab script steps (after [`dend`]'s prelude) that create `vm` from `dev` on `engine` (1 vCPU,
/// 1 GiB, no NIC) unless it exists, start it and wait for its agent, and print `LAB-CREATE-MS=`
/// (the create, a copy of the root disk) and `LAB-AGENT-MS=` (from `den vm start` to the agent's
/// first answer).
pub fn boot_steps(vm: &str, engine: &str) -> String {
    format!(
        r#"
t0=$(up)
den vm inspect {vm} >/dev/null 2>&1 || den vm create {vm} --image dev --engine {engine} --cpus 1 --memory 1024 --no-network \
  || {{ echo LAB-CREATE-FAILED; tail -20 $D/dend.log; exit 6; }}
t1=$(up)
den vm start {vm} || {{ echo LAB-START-FAILED; tail -20 $D/dend.log; exit 6; }}
i=0; until den vm exec {vm} -- true 2>$D/exec.err; do
  i=$((i+1)); [ $i -lt 1800 ] || {{ echo LAB-NO-AGENT; cat $D/exec.err; den vm console {vm} | tail -30; exit 8; }}; sleep 0.1
done
t2=$(up)
echo "LAB-CREATE-MS=$(ms $t0 $t1)"
echo "LAB-AGENT-MS=$(ms $t1 $t2)"
"#
    )
}
