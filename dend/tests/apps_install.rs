//! LPK install and uninstall through the real `den` CLI and dend, in a network namespace (apps
//! are installed with `--no-start`: their VMs and networks are made, not booted): v1 ZIP and v2
//! tar packages, signatures, every kind of refusal leaving nothing behind, uninstall with and
//! without data (VMs, network and files go), and a `kill -9` of dend in the middle of an install.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_lpk::pack::{Item, Packer};
use den_tests::dend::Dend;
use den_tests::lpk::{hello_v1, two_v2, write, HELLO, TWO};
use den_tests::netns::NetNs;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn dend(ns: &NetNs, keys: &Path) -> Dend {
    let store = den_tests::images::shared_store();
    for image in ["base", "app"] {
        den_tests::images::build_builtin(&store, image);
    }
    let config =
        format!("[docker]\nenabled = false\n[apps]\nkeys_dir = \"{}\"\nbox_domain = \"box.test\"\n", keys.display());
    Dend::start_in_with_config(Path::new(env!("CARGO_BIN_EXE_dend")), ns, &config)
}

fn vms(d: &Dend) -> Vec<String> {
    let (_, out, _) = d.den(&["--json", "vm", "ls"]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v.as_array().into_iter().flatten().filter_map(|v| v["spec"]["name"].as_str().map(str::to_string)).collect()
}

fn apps(d: &Dend) -> Vec<Value> {
    let (code, out, err) = d.den(&["--json", "app", "ls"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<Value>(&out).unwrap().as_array().cloned().unwrap_or_default()
}

/// Everything under `<data>/apps`, relative, sorted.
fn tree(d: &Dend) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            out.push(e.path().strip_prefix(root).unwrap().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(root, &e.path(), out);
            }
        }
    }
    let root = d.dir.path().join("apps");
    let mut out = vec![];
    walk(&root, &root, &mut out);
    out.sort();
    out
}

fn release(d: &Dend, package: &str) -> PathBuf {
    let (_, out, _) = d.den(&["--json", "app", "show", package]);
    let app: Value = serde_json::from_str(&out).unwrap();
    d.dir.path().join("apps").join(package).join("releases").join(app["release"].as_str().unwrap())
}

#[test]
fn install_check_refuse_and_uninstall() {
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let secret = [9u8; 32];
    let public = den_lpk::pack::public_key_hex(&secret);
    std::fs::write(keys.join("den-test.pub"), &public).unwrap();
    let ns = NetNs::new("apps");
    let d = dend(&ns, &keys);
    let empty = tree(&d);

    // v1 ZIP: installed, unpacked read-only, manifest rendered with the box's variables.
    let v1 = write(&hello_v1("1.0.0").unwrap(), work.path(), "hello-v1.0.0.lpk", true);
    let (code, out, err) = d.den(&["app", "install", "--no-start", v1.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}\n{}", d.log());
    assert!(out.contains("cloud.den.test.hello 1.0.0 (LPK v1), unsigned") && out.contains("installed"), "{out}");
    let rel = release(&d, HELLO);
    let pkg = d.dir.path().join("apps").join(HELLO).join("lzcapp/pkg");
    assert_eq!(std::fs::read_to_string(pkg.join("content/www/index.html")).unwrap(), "<h1>hello 1.0.0</h1>\n");
    assert!(rel.exists() && !rel.join("pkg").exists(), "the current release's files are in /lzcapp/pkg");
    let manifest =
        std::fs::read_to_string(d.dir.path().join("apps").join(HELLO).join("lzcapp/run/manifest.yml")).unwrap();
    assert!(manifest.contains("hello from cloud.den.test.hello on hello.box.test"), "{manifest}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(pkg.join("content/serve.sh")).unwrap().permissions().mode() & 0o777, 0o555);

    // v2 tar, signed by a trusted key: `check` says who signed, install keeps the image layout.
    let mut p2 = two_v2("1.0.0", &["net.internet"]).unwrap();
    p2.sign("den-test", &secret);
    let v2 = write(&p2, work.path(), "two-v1.0.0.lpk", false);
    let (code, out, err) = d.den(&["app", "check", v2.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(LPK v2), signed by den-test") && out.contains("services:  backend web"), "{out}");
    assert!(out.contains("required [net.internet]"), "{out}");
    let (code, _, err) = d.den(&["app", "install", "--no-start", v2.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}\n{}", d.log());
    assert!(release(&d, TWO).join("images/index.json").exists());
    assert_eq!(
        vms(&d),
        ["hello-app", "two-backend", "two-web"],
        "a VM per service (v1's exec:// needs the entry service)"
    );
    let (_, nets, _) = d.den(&["net", "ls"]);
    assert_eq!(nets.matches("isolated").count(), 2, "an isolated network per app:\n{nets}");
    let listed = apps(&d);
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|a| a["state"] == "stopped"), "{listed:?}");
    assert_eq!(listed[1]["signed"]["signers"][0], "den-test");

    // Installing again, or another package on a taken subdomain: refused.
    let (code, _, err) = d.den(&["app", "install", "--no-start", v1.to_str().unwrap()]);
    assert!(code == 1 && err.contains("is installed already"), "{err}");
    let mut clash = hello_v1("1.0.0").unwrap();
    if let Some(Item::File { data, .. }) = clash.items.first_mut() {
        *data = String::from_utf8_lossy(data).replace(HELLO, "cloud.den.test.other").into_bytes();
    }
    let clash = write(&clash, work.path(), "other.lpk", true);
    let (code, _, err) = d.den(&["app", "install", "--no-start", clash.to_str().unwrap()]);
    assert!(code == 1 && err.contains("subdomain hello") && err.contains(HELLO), "{err}");
    let installed = tree(&d);

    // Every refusal names the entry or field and the rule, and leaves nothing behind.
    let bad: Vec<(Packer, bool, &str)> = vec![
        (
            with(hello_v1("2.0.0").unwrap(), Item::File { name: "../escape".into(), data: vec![1], mode: 0o644 }),
            false,
            "`../escape`: the path leaves the package",
        ),
        (
            with(hello_v1("2.0.0").unwrap(), Item::File { name: "/etc/cron.d/x".into(), data: vec![1], mode: 0o644 }),
            false,
            "absolute paths are not allowed",
        ),
        (
            with(hello_v1("2.0.0").unwrap(), Item::Symlink("up".into(), "../../etc/passwd".into())),
            false,
            "`up`: is a symlink that points to `../../etc/passwd`, outside the package",
        ),
        (
            with(hello_v1("2.0.0").unwrap(), Item::Hardlink("hl".into(), "/etc/shadow".into())),
            false,
            "`hl`: is a hard link",
        ),
        (
            with(
                hello_v1("2.0.0").unwrap(),
                Item::File { name: "manifest.yml".into(), data: b"x: 1".to_vec(), mode: 0o644 },
            ),
            false,
            "`manifest.yml`: appears twice",
        ),
        (
            with(
                hello_v1("2.0.0").unwrap(),
                Item::File { name: "zeros.bin".into(), data: vec![0; 48 << 20], mode: 0o644 },
            ),
            true,
            "`zeros.bin`: declares",
        ),
        (
            Packer::new().file("package.yml", "package: a.b\nversion: 1.0.0\n").clone(),
            false,
            "`manifest.yml`: is missing",
        ),
        (
            Packer::new()
                .file("manifest.yml", "application: {subdomain: x}\n")
                .file("package.yml", "version: 1.0.0\n")
                .clone(),
            false,
            "package.yml: `package` is missing",
        ),
        (
            Packer::new()
                .file("manifest.yml", "application: {subdomain: x}\n")
                .file("package.yml", "package: Bad_Id\nversion: 1.0.0\n")
                .clone(),
            false,
            "invalid label `Bad_Id`",
        ),
        (
            Packer::new()
                .file("manifest.yml", "application: {subdomain: x}\n")
                .file("package.yml", "package: a.b\nversion: 1.0\n")
                .clone(),
            false,
            "package.yml: `version` `1.0` is not a version",
        ),
        (
            Packer::new()
                .file("manifest.yml", "application: {subdomain: x}\n")
                .file("package.yml", "package: a.b\nversion: 1.0.0\npermissions: {required: [net.everything]}\n")
                .clone(),
            false,
            "`net.everything` is not a known permission",
        ),
        (
            Packer::new()
                .file("manifest.yml", "application: {subdomain: x}\n")
                .file(
                    "package.yml",
                    "package: a.b\nversion: 1.0.0\npermissions: {required: [net.lan], optional: [net.lan]}\n",
                )
                .clone(),
            false,
            "`net.lan` is both required and optional",
        ),
        (
            Packer::new()
                .file(
                    "manifest.yml",
                    "application: {subdomain: x}\nservices: {s: {image: busybox, binds: ['/etc:/x']}}\n",
                )
                .file("package.yml", "package: a.b\nversion: 1.0.0\n")
                .clone(),
            false,
            "`services.s.binds[0]` binds `/etc`",
        ),
        (
            Packer::new()
                .file("manifest.yml", "application: {subdomain: x}\n")
                .file("package.yml", "package: a.b\nversion: 1.0.0\nmin_os_version: 99.0.0\n")
                .clone(),
            false,
            "needs LPK host version 99.0.0",
        ),
        (
            {
                let mut p = two_v2("2.0.0", &[]).unwrap();
                p.sign("den-test", &[1u8; 32]);
                p
            },
            false,
            "META/signatures/den-test.sig does not match",
        ),
        (
            {
                let mut p = two_v2("2.0.0", &[]).unwrap();
                p.sign("den-test", &secret);
                p.file("added-later", "x");
                p
            },
            false,
            "`added-later` is not in META/release.lock",
        ),
    ];
    for (i, (p, zip, want)) in bad.iter().enumerate() {
        let f = write(p, work.path(), &format!("bad{i}.lpk"), *zip);
        let (code, out, err) = d.den(&["app", "install", "--no-start", f.to_str().unwrap()]);
        assert!(code == 1 && err.contains(want), "case {i}: wanted `{want}`:\n{out}{err}");
    }
    assert_eq!(tree(&d), installed, "refused packages leave nothing behind");
    assert_eq!(apps(&d).len(), 2);

    // Uninstall keeping data: /lzcapp/var (on the host, beside the read-only /lzcapp) stays and a
    // new install finds it; then all of it goes.
    let var = d.dir.path().join("apps").join(HELLO).join("var");
    std::fs::write(var.join("notes.txt"), "kept").unwrap();
    let (code, _, err) = d.den(&["app", "uninstall", HELLO, "--keep-data"]);
    assert_eq!(code, 0, "{err}");
    assert!(var.join("notes.txt").exists() && !d.dir.path().join("apps").join(HELLO).join("releases").exists());
    let (code, _, err) = d.den(&["app", "install", "--no-start", v1.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(var.join("notes.txt")).unwrap(), "kept");
    for app in [HELLO, TWO] {
        let (code, _, err) = d.den(&["app", "uninstall", app]);
        assert_eq!(code, 0, "{err}");
    }
    assert!(apps(&d).is_empty());
    assert_eq!(tree(&d), empty, "uninstall removes every file of the apps");
    assert!(vms(&d).is_empty(), "and their VMs");
    let (_, nets, _) = d.den(&["net", "ls"]);
    assert!(!nets.contains("isolated"), "and their networks:\n{nets}");
    assert!(!ns.ip("link show").contains("den-a"), "and the bridges");
    let (code, _, err) = d.den(&["app", "uninstall", HELLO]);
    assert!(code == 1 && err.contains("not found; `den app ls` lists apps"), "{err}");
}

fn with(mut p: Packer, item: Item) -> Packer {
    p.item(item);
    p
}

#[test]
fn a_killed_install_is_rolled_back_at_the_next_start() {
    let work = tempfile::tempdir().unwrap();
    let ns = NetNs::new("appkill");
    let mut d = dend(&ns, &work.path().join("keys"));
    let empty = tree(&d);
    // Incompressible content, so that unpacking takes long enough to be caught in the middle.
    let mut noise = vec![0u8; 96 << 20];
    let mut x = 0x2545f4914f6cdd1du64;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut p = hello_v1("1.0.0").unwrap();
    p.item(Item::File { name: "noise.bin".into(), data: noise, mode: 0o644 });
    let f = write(&p, work.path(), "big.lpk", true);
    let (code, _, err) = d.den(&["app", "install", "--detach", "--no-start", f.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let staging = d.dir.path().join("apps/.staging");
    let t = Instant::now();
    while std::fs::read_dir(&staging).map(|mut r| r.next().is_none()).unwrap_or(true) {
        assert!(t.elapsed() < Duration::from_secs(60), "the install never started unpacking:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    d.kill9();
    d.spawn();
    assert!(apps(&d).is_empty(), "the half-done install is rolled back");
    assert_eq!(tree(&d), empty, "and its files are gone");
    assert!(d.log().contains("rolling back an install"), "{}", d.log());
}
