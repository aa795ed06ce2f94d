//! Business OS images for tests and benchmarks: the shipped `system` spec, and variants of it
//! that are good (another version), whose kernel panics after every boot, or whose init never
//! starts the agent. They share the shipped spec's root file system (cached), so each costs
//! only a new ext4 disk.

use crate::dend::Dend;
use den_images::spec::ImageSpec;
use den_images::{ImageRecord, Store};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// The shipped spec with another `name` and `version`, then `edit`ed.
pub fn variant(name: &str, version: &str, edit: impl Fn(String) -> String) -> String {
    let (_, base) = den_images::spec::BUILTIN.iter().find(|(n, _)| *n == "system").expect("the system spec");
    let text = base
        .replace("name: system\n", &format!("name: {name}\n"))
        .replace("version: \"1.0\"", &format!("version: \"{version}\""))
        .replace("DEN_OS_VERSION=1.0", &format!("DEN_OS_VERSION={version}"));
    edit(text)
}

/// An OS that panics its kernel three seconds after its services start, every boot.
pub fn panicking(text: String) -> String {
    text.replace(
        "  files:\n",
        "  files:\n    - path: /etc/den/services/panic.toml\n      contents: |\n        exec = [\"/bin/sh\", \"-c\", \"sleep 3; echo c > /proc/sysrq-trigger\"]\n",
    )
}

/// An OS whose init never starts the agent.
pub fn mute(text: String) -> String {
    text.replace("den.console=shell", "den.console=shell den.init=/sbin/os-init").replace(
        "  files:\n",
        "  files:\n    - path: /sbin/os-init\n      mode: \"0755\"\n      contents: |\n        #!/bin/sh\n        exec /bin/busybox sleep 100000\n",
    )
}

/// Builds `system` and the variants `system-v2` (2.0), `system-panic` and `system-mute` into
/// the shared test store.
pub fn build_images() {
    let store = crate::images::shared_store();
    crate::images::build_builtin(&store, "system");
    for (name, text) in [
        ("system-v2", variant("system-v2", "2.0", |t| t)),
        ("system-panic", variant("system-panic", "3.0-panics", panicking)),
        ("system-mute", variant("system-mute", "3.0-mute", mute)),
    ] {
        crate::images::build_spec_text(&store, &text, name, &den_images::SilentProgress)
            .unwrap_or_else(|e| panic!("building {name}: {e}"));
    }
}

/// `den system status` as JSON, with the newest `health` checks.
pub fn status(d: &Dend) -> Value {
    let (code, out, err) = d.den(&["--json", "system", "status", "--health", "5"]);
    assert_eq!(code, 0, "{err}\n{}", d.log());
    serde_json::from_str(&out).expect("status JSON")
}

/// Waits until `cond` holds for the status, for up to `limit`.
pub fn wait_status(d: &Dend, limit: Duration, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let t = Instant::now();
    loop {
        let s = status(d);
        if cond(&s) {
            return s;
        }
        assert!(t.elapsed() < limit, "never {what}:\n{}", explain(d, &s));
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What a failed wait shows, the essentials first (a CI log keeps only part of a long message):
/// the phase and slots, the newest update's steps, the newest checks and events, the end of
/// dend's log; then the whole status.
pub fn explain(d: &Dend, s: &Value) -> String {
    let mut out =
        format!("state {} | phase {} | active {} | booted {}\n", s["state"], s["phase"], s["active"], s["booted"]);
    let u = last_update(s);
    out += &format!("update {} ({} -> {}): {} {}\n", u["id"], u["from_label"], u["to_label"], u["outcome"], u["why"]);
    for step in u["steps"].as_array().into_iter().flatten() {
        out += &format!("  {} {}\n", step["time"], step["what"]);
    }
    for h in s["health"].as_array().into_iter().flatten() {
        out += &format!("check {} slot {} ok {}: {}\n", h["time"], h["slot"], h["ok"], h["detail"]);
    }
    let (_, events) = d.api("GET", "/api/v1/events?limit=40", b"");
    for e in events.as_array().into_iter().flatten() {
        out += &format!("event {} {} {}: {}\n", e["time"], e["kind"], e["target"], e["detail"]);
    }
    let log = d.log();
    let tail: Vec<&str> = log.lines().rev().take(60).collect();
    out += "--- the end of dend's log:\n";
    for line in tail.into_iter().rev() {
        out += line;
        out += "\n";
    }
    format!("{out}--- the whole status:\n{s:#}")
}

/// Running, and its newest check passed.
pub fn healthy(s: &Value) -> bool {
    s["state"] == "running" && s["health"].as_array().and_then(|h| h.last()).is_some_and(|h| h["ok"] == true)
}

/// The newest update's record.
pub fn last_update(s: &Value) -> Value {
    s["updates"].as_array().and_then(|u| u.last()).cloned().unwrap_or_default()
}

/// The time (ms) of an update's first step whose text starts with `prefix`.
pub fn step_time(update: &Value, prefix: &str) -> Option<u64> {
    update["steps"].as_array()?.iter().find(|s| s["what"].as_str().is_some_and(|w| w.starts_with(prefix)))?["time"]
        .as_u64()
}

/// Business OS images for the KVM lab, written into a new store at `dir`: `sys1` (1.0), `sys2`
/// (2.0), `sys-panic` and `sys-mute`, the same variants as [`build_images`]. They keep the
/// shipped image's kernel, initramfs and command line, and the files and services of its spec,
/// but on a small root disk made here with busybox instead of a Debian tree: the lab's outer
/// guest holds every file copied into it in memory, 16 MiB per OS instead of 600.
pub fn lab_images(dir: &Path) {
    let from = crate::images::shared_store();
    let shipped = crate::images::build_builtin(&from, "system");
    let store = Store::open(dir).expect("a store for the lab");
    let shared = crate::lab::copy_boot_files(&from, &shipped, &store, dir);
    for (name, version, edit) in [
        ("sys1", "1.0", (|t| t) as fn(String) -> String),
        ("sys2", "2.0", |t| t),
        ("sys-panic", "3.0-panics", panicking),
        ("sys-mute", "3.0-mute", mute),
    ] {
        let text = variant(name, version, edit);
        let spec = ImageSpec::parse(&text, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let files = spec.rootfs.as_ref().map(|r| r.files.clone()).unwrap_or_default();
        let rootfs = busybox_root(dir, name, &files);
        let mut artifacts = shared.clone();
        artifacts
            .insert("rootfs".into(), store.insert_file(&rootfs, "rootfs", "lab", BTreeMap::new()).expect("insert"));
        let rec = ImageRecord {
            name: name.into(),
            version: version.into(),
            artifacts,
            cmdline: spec.cmdline.clone(),
            ..shipped.clone()
        };
        store.put_image(&rec).expect("writing the lab image record");
    }
}

/// A 16 MiB ext4 root disk with busybox (every applet linked), the mount points the agent's
/// read-only root switch needs, and `files`.
fn busybox_root(dir: &Path, name: &str, files: &[den_images::spec::FileSpec]) -> std::path::PathBuf {
    let root = dir.join(format!("{name}.root"));
    for d in ["bin", "sbin", "dev", "proc", "sys", "run", "tmp", "data", "etc/den/services"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("/bin/busybox (busybox-static)");
    let list = std::process::Command::new("/bin/busybox").arg("--list").output().expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| *a != "busybox") {
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
    }
    // util-linux's `mount -L` and `mountpoint`, which the shipped spec's service uses, on busybox.
    let shims = [
        ("bin/mount", "if [ \"$1\" = -L ]; then exec /bin/busybox mount \"$(/bin/busybox findfs LABEL=$2)\" \"$3\"; fi\nexec /bin/busybox mount \"$@\"\n"),
        ("bin/mountpoint", "for a; do d=$a; done\nexec /bin/busybox grep -q \" $d \" /proc/mounts\n"),
    ];
    for (path, body) in shims {
        let path = root.join(path);
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, format!("#!/bin/busybox sh\n{body}")).expect("write");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    }
    for f in files {
        let path = root.join(f.path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().expect("a file in a folder")).expect("mkdir");
        std::fs::write(&path, &f.contents).expect("write");
        let mode = f.perm().unwrap_or(0o644);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode)).expect("chmod");
    }
    let img = dir.join(format!("{name}.ext4"));
    let st = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "den-root", "-d"])
        .arg(&root)
        .arg(&img)
        .arg("16M")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("mkfs.ext4 runs");
    assert!(st.success(), "mkfs.ext4 -d {}", root.display());
    std::fs::remove_dir_all(&root).expect("rm");
    img
}
