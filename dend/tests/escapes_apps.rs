//! The host never trusts a guest or a package, tried as each attacker would, against a real
//! dend, real QEMU guests (TCG) and the real `den` CLI and `curl`:
//!
//! - a package author: link chains across the package and its `content.tar` (several deep), a
//!   link added to a signed package, an image layer with a link where Den writes the image's
//!   run configuration;
//! - root in an app's service VM: links to `/`, `..` chains, absolute and magic links
//!   (`/proc/self/root`) and FIFOs served through a `file://` route on `/lzcapp/var`; device
//!   nodes; writes, remounts, renames and hard links against the read-only `/lzcapp`; a loop
//!   swapping the route's folder for a link to `/` while the host serves it; links left for
//!   dend's own stop, start and uninstall; output floods through exec and the serial console;
//! - root in a VM with shared folders: device nodes, and writes to a read-only share.
//!
//! Each attack checks that nothing outside was read, written or removed (marker files outside,
//! what the ingress answered) and that dend still serves.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_lpk::pack::{tar_bytes, Item, Packer};
use den_tests::dend::Dend;
use den_tests::netns::NetNs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ESC: &str = "cloud.den.test.esc";
const VM: &str = "esc-box";
const HOST: &str = "esc.box.test";
const SECRET: &str = "host secret";

/// A folder outside everything Den owns, with a marker file, that attacks aim at.
struct Outside {
    dir: PathBuf,
}

impl Outside {
    fn new(work: &Path) -> Outside {
        let dir = work.join("outside");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("marker"), SECRET).unwrap();
        Outside { dir }
    }

    fn marker(&self) -> String {
        self.dir.join("marker").display().to_string()
    }

    /// The marker is there, unchanged, alone.
    fn intact(&self, after: &str) {
        assert_eq!(std::fs::read_to_string(self.dir.join("marker")).ok().as_deref(), Some(SECRET), "{after}");
        let names: Vec<_> = std::fs::read_dir(&self.dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["marker"], "something was written beside the marker {after}");
    }
}

fn file(name: &str, data: &str) -> Item {
    Item::File { name: name.into(), data: data.as_bytes().to_vec(), mode: 0o644 }
}

/// The app: one service whose setup writes its page into `/lzcapp/var/www` (served by a
/// `file://` route), then runs the image's command; `image` is `embed:box` or `base`.
fn packer(image: &str) -> Packer {
    let manifest = format!(
        "application:
  subdomain: esc
  public_path: [/]
  routes: [/=file:///lzcapp/var/www/, /pkg/=file:///lzcapp/pkg/content/]
services:
  box:
    image: {image}
    setup_script: mkdir -p /lzcapp/var/www && echo guest-page > /lzcapp/var/www/index.html
"
    );
    let mut p = Packer::new();
    p.file("package.yml", format!("package: {ESC}\nversion: 1.0.0\nname: Esc\n")).file("manifest.yml", manifest);
    p
}

/// The busybox layer, plus `etc/den/oci-config.json` as a link to `target` on the host: where
/// Den writes the image's run configuration once the layers are applied.
fn layer_with_link(target: &str) -> Vec<u8> {
    let mut layer = den_tests::docker::busybox_layer().unwrap();
    while layer.len() >= 512 && layer[layer.len() - 512..].iter().all(|b| *b == 0) {
        layer.truncate(layer.len() - 512);
    }
    let extra = [
        Item::Dir("etc/".into()),
        Item::Dir("etc/den/".into()),
        Item::Symlink("etc/den/oci-config.json".into(), target.into()),
    ];
    layer.extend(tar_bytes(&extra).unwrap());
    layer
}

/// Packages a package author would send, and what Den says of each.
fn hostile_packages(secret: &[u8; 32]) -> Vec<(&'static str, Packer, &'static str)> {
    let tar = |items: &[Item]| tar_bytes(items).unwrap();
    let mut out = vec![];
    for depth in 1..=3 {
        let mut p = packer("base");
        den_lpk::pack::link_chain(&mut p, depth, "escaped", b"pwned").unwrap();
        out.push(("a link chain across the package and content.tar", p, "under the symlink"));
    }
    let mut p = packer("base");
    p.file("content.tar", tar(&[Item::Symlink("s".into(), "..".into())]));
    p.item(Item::Symlink("x".into(), "content/s/..".into())).item(file("x/escaped", "pwned"));
    out.push(("a package link through a content.tar link", p, "symlink"));
    let mut signed = packer("base");
    signed.item(file("content/index.html", "signed"));
    signed.sign("den-test", secret);
    signed.item(Item::Symlink("content/escaped".into(), "index.html".into()));
    out.push(("a link added to a signed package", signed, "added after signing"));
    out
}

/// No file named `escaped` anywhere under `root`.
fn nothing_named_escaped(root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            assert_ne!(e.file_name(), "escaped", "a package wrote {}", p.display());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
}

fn den_ok(d: &Dend, args: &[&str]) -> String {
    let (code, out, err) = d.den(args);
    assert_eq!(code, 0, "den {args:?}:\n{out}{err}\n--- dend log:\n{}", d.log());
    out
}

/// `sh -c script` as root in the app's VM: (exit code, stdout + stderr).
fn guest(d: &Dend, script: &str) -> (i32, String) {
    let (code, out, err) = d.den(&["vm", "exec", VM, "--", "sh", "-c", script]);
    (code, format!("{out}{err}"))
}

fn dend_rss_kib(d: &Dend) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid().unwrap())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().to_string();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn guests_and_packages_cannot_reach_the_host() {
    let store = den_tests::images::shared_store();
    for image in ["base", "app"] {
        den_tests::images::build_builtin(&store, image);
    }
    let work = tempfile::tempdir().unwrap();
    let outside = Outside::new(work.path());
    let ns = NetNs::new("escapes");
    let secret = [7u8; 32];
    let keys = work.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::write(keys.join("den-test.pub"), den_lpk::pack::public_key_hex(&secret)).unwrap();
    let config =
        format!("[docker]\nenabled = false\n[apps]\nbox_domain = \"box.test\"\nkeys_dir = \"{}\"\n", keys.display());
    let d = Dend::start_in_with_config(Path::new(env!("CARGO_BIN_EXE_dend")), &ns, &config);

    // A package author: every chain and tampered package is refused, naming the entry, and
    // nothing was written anywhere.
    for (i, (what, p, says)) in hostile_packages(&secret).into_iter().enumerate() {
        let pkg = den_tests::lpk::write(&p, work.path(), &format!("hostile-{i}.lpk"), false);
        let (code, out, err) = d.den(&["app", "install", pkg.to_str().unwrap()]);
        assert_ne!(code, 0, "{what}: installed:\n{out}");
        assert!(err.contains(says), "{what}: {err}");
    }
    nothing_named_escaped(d.dir.path());
    nothing_named_escaped(work.path());
    outside.intact("after the hostile packages");

    // The app; its image's layer has etc/den/oci-config.json -> the host's marker.
    let mut p = packer("embed:box");
    p.item(file("content/index.html", "from the package"));
    p.item(Item::Symlink("content/inside".into(), "index.html".into()));
    p.item(Item::Symlink("content/up".into(), "../manifest.yml".into()));
    let config = serde_json::json!({"Cmd": ["sleep", "2147483647"], "Env": ["PATH=/bin"]});
    p.image("box", &layer_with_link(&outside.marker()), &config).unwrap();
    let pkg = den_tests::lpk::write(&p, work.path(), "esc.lpk", false);
    den_ok(&d, &["app", "install", pkg.to_str().unwrap()]);
    outside.intact("after making the image whose layer links to it");
    let get = |path: &str| d.ingress(&ns, HOST, path, &[]);
    let (status, body, _) = get("/");
    assert_eq!((status, body.as_str()), (200, "guest-page\n"), "the legitimate path works");
    assert_eq!(get("/pkg/inside").1, "from the package", "a package link inside the package is followed");
    assert_eq!(get("/pkg/up").0, 403, "nor one out of the route's folder");

    // Root in the app's VM, through the ingress: links to / and out, magic links, a FIFO. The
    // host must answer 403 or 404, never a host file.
    let host_files = ["/etc/passwd", "/etc/hostname", "/proc/self/environ"];
    let (code, out) = guest(&d, "cd /lzcapp/var && mv www www.real && ln -s / www");
    assert_eq!(code, 0, "{out}");
    for f in host_files {
        let (status, body, _) = get(f);
        assert!(status == 403 || status == 404, "{f} through www -> /: {status} {body}");
    }
    let (code, out) = guest(
        &d,
        "cd /lzcapp/var && rm www && mv www.real www && cd www && ln -s /etc/passwd abs && \
         ln -s ../../../../../../../../etc/passwd dots && ln -s /proc/self/root/etc/passwd magic && \
         ln -s /proc/self/root proc && ln -s .. up && mkfifo fifo",
    );
    assert_eq!(code, 0, "{out}");
    for f in ["/abs", "/dots", "/magic", "/proc/etc/passwd", "/up/www/index.html", "/fifo"] {
        let t = Instant::now();
        let (status, body, _) = get(f);
        assert_eq!(status, 403, "{f}: {body}");
        assert!(t.elapsed() < Duration::from_secs(10), "{f}: the host waited on it");
    }

    // Device nodes, and the read-only /lzcapp: no write, rename, remount or hard link lands.
    for script in ["mknod /lzcapp/var/sda b 8 0", "mknod /lzcapp/var/mem c 1 1", "mknod /lzcapp/cache/null c 1 3"] {
        let (code, out) = guest(&d, script);
        assert_ne!(code, 0, "{script}: {out}");
    }
    let manifest = d.dir.path().join(format!("apps/{ESC}/lzcapp/run/manifest.yml"));
    let before = std::fs::read(&manifest).unwrap();
    for script in [
        "touch /lzcapp/pkg/x",
        "echo evil > /lzcapp/run/manifest.yml",
        "rm -rf /lzcapp/run",
        "mv /lzcapp/run /lzcapp/run.old",
        "ln -s / /lzcapp/root",
        "mount -o remount,rw /lzcapp && touch /lzcapp/run/x",
        "ln /lzcapp/run/manifest.yml /lzcapp/var/hard",
    ] {
        let (code, out) = guest(&d, script);
        assert_ne!(code, 0, "{script}: {out}");
    }
    assert_eq!(std::fs::read(&manifest).unwrap(), before, "the host's /lzcapp/run is untouched");
    let (_, devices) = guest(&d, "ls -l /lzcapp/var /lzcapp/cache");
    assert!(!devices.contains("sda") && !devices.contains("mem") && !devices.contains("null"), "{devices}");

    // A guest swapping the route's folder for a link to / while the host serves it: every
    // answer is the guest's page or a refusal, never a host file.
    let (code, out) = guest(
        &d,
        "cd /lzcapp/var && (while :; do mv www www.d; ln -s / www; rm www; mv www.d www; done) \
         >/dev/null 2>&1 </dev/null & echo $! > /tmp/racer",
    );
    assert_eq!(code, 0, "{out}");
    let (mut served, mut refused) = (0, 0);
    for i in 0..150 {
        let path = if i % 2 == 0 { "/index.html" } else { "/etc/passwd" };
        let (status, body, _) = get(path);
        match status {
            200 => {
                assert_eq!((path, body.as_str()), ("/index.html", "guest-page\n"), "served a host file");
                served += 1;
            }
            403 | 404 => refused += 1,
            s => panic!("{path}: {s} {body}"),
        }
    }
    let (code, out) = guest(
        &d,
        "kill $(cat /tmp/racer); sleep 1; cd /lzcapp/var; [ -L www ] && rm www; [ -d www.d ] && mv www.d www; ls",
    );
    assert_eq!(code, 0, "{out}");
    assert!(served > 0 && refused > 0, "the race showed one side only: {served} served, {refused} refused");
    eprintln!("race: {served} answers with the guest's page, {refused} refusals, no host file");

    // Links left where dend itself works: a stop and start (dend prepares the folders and
    // rewrites /lzcapp/run), then an uninstall that removes the data, never follow them.
    let target = outside.dir.display().to_string();
    let plant = format!(
        "ln -s {target} /lzcapp/var/victim && ln -s {target}/marker /lzcapp/var/victim-file && \
         ln -s {target} /lzcapp/cache/victim && mkdir -p /lzcapp/var/a/b/c && ln -s {target} /lzcapp/var/a/b/c/d"
    );
    let (code, out) = guest(&d, &plant);
    assert_eq!(code, 0, "{out}");
    den_ok(&d, &["app", "stop", ESC]);
    den_ok(&d, &["app", "start", ESC]);
    outside.intact("after a stop and start with links in var and cache");
    // The service's setup script writes the page again as it starts: wait for it.
    let t = Instant::now();
    loop {
        let (status, body, head) = get("/");
        if body == "guest-page\n" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "the page after a restart: {status} {head}{body}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // Floods: output far beyond what Den takes through exec, and through the serial console.
    let rss = dend_rss_kib(&d);
    let (code, out, err) = d.den(&["vm", "exec", VM, "--", "sh", "-c", "head -c 100000000 /dev/zero"]);
    assert_ne!(code, 0, "100 MB of output taken whole: {}", out.len());
    assert!(err.contains("more than 16777216 bytes"), "{err}");
    let grown = dend_rss_kib(&d).saturating_sub(rss);
    assert!(grown < 100 << 10, "dend grew by {grown} KiB for an exec flood");
    eprintln!("exec flood of 100 MB: refused; dend's RSS grew by {grown} KiB");
    let vm_id = d.vm(VM)["id"].as_str().unwrap().to_string();
    let console = d.dir.path().join(format!("run/vms/{vm_id}/console.log"));
    let (code, out) = guest(&d, "head -c 12000000 /dev/zero | tr '\\0' x > /dev/ttyS0");
    assert_eq!(code, 0, "{out}");
    let t = Instant::now();
    while !console.with_extension("log.1").exists() {
        assert!(t.elapsed() < Duration::from_secs(60), "console.log was never cut");
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(3));
    let size = std::fs::metadata(&console).unwrap().len();
    assert!(size <= 8 << 20, "console.log holds {size} bytes after a 12 MB flood");
    eprintln!("console flood of 12 MB: console.log holds {size} bytes, its end kept in console.log.1");
    den_ok(&d, &["vm", "ls"]);

    // Uninstall, data and all: links are removed as links.
    den_ok(&d, &["app", "uninstall", ESC]);
    assert!(!d.dir.path().join(format!("apps/{ESC}")).exists());
    outside.intact("after uninstalling an app whose data held links to it");
    den_ok(&d, &["vm", "ls"]);
}

#[test]
fn a_guest_cannot_make_devices_in_or_write_read_only_shares() {
    let store = den_tests::images::shared_store();
    den_tests::images::build_builtin(&store, "base");
    let work = tempfile::tempdir().unwrap();
    let (rw, ro) = (work.path().join("rw"), work.path().join("ro"));
    std::fs::create_dir(&rw).unwrap();
    std::fs::create_dir(&ro).unwrap();
    std::fs::write(ro.join("kept"), "host").unwrap();
    let ns = NetNs::new("escshare");
    let d = Dend::start_in_with_config(Path::new(env!("CARGO_BIN_EXE_dend")), &ns, "[docker]\nenabled = false\n");
    let spec = serde_json::json!({
        "name": "sharer", "image": "base", "nics": [],
        "shares": [{"host": rw, "guest": "/mnt/rw"}, {"host": ro, "guest": "/mnt/ro", "readonly": true}],
    });
    let (status, body) = d.api("POST", "/api/v1/vms", spec.to_string().as_bytes());
    assert_eq!(status, 202, "{body}");
    d.wait_state("sharer", "stopped", Duration::from_secs(300));
    den_ok(&d, &["vm", "start", "sharer"]);
    assert_eq!(d.sh_until_ok("sharer", "echo ok > /mnt/rw/file && cat /mnt/ro/kept").trim(), "host");
    assert_eq!(std::fs::read_to_string(rw.join("file")).unwrap(), "ok\n", "the read-write share works");
    for script in [
        "mknod /mnt/rw/sda b 8 0",
        "mknod /mnt/rw/mem c 1 1",
        "touch /mnt/ro/new",
        "echo evil > /mnt/ro/kept",
        "rm /mnt/ro/kept",
        "mount -o remount,rw /mnt/ro && touch /mnt/ro/new",
    ] {
        let (code, out, err) = d.den(&["vm", "exec", "sharer", "--", "sh", "-c", script]);
        assert_ne!(code, 0, "{script}: {out}{err}");
    }
    let names = |p: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&rw), ["file"], "no device node was made in the read-write share");
    assert_eq!(names(&ro), ["kept"]);
    assert_eq!(std::fs::read_to_string(ro.join("kept")).unwrap(), "host");
}
