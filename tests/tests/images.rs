//! Image builds for real: Debian packages, mmdebstrap, mkfs.ext4, the store's cache and its
//! verification, spec errors, OCI layouts and vmlinux extraction.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_images::store::Store;
use den_images::ImageError;
use den_tests::images::{self, Recorder};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn den(cache: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(images::den_cli())
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .env("DEN_AGENT_BIN", images::agent_binary())
        .output()
        .expect("run den");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn cold_then_warm_build_and_corruption_is_rebuilt() {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(&cache.path().join("store")).unwrap();

    let cold = Recorder::default();
    let first = images::build_recorded(&store, "base", &cold).expect("cold build");
    let ends = cold.ends.lock().unwrap().clone();
    eprintln!("cold build stages: {ends:?}");
    assert!(ends.iter().all(|(_, cached, _)| !cached), "an empty store has no hits: {ends:?}");
    for stage in ["kernel", "busybox", "initramfs", "rootfs", "disk"] {
        assert!(ends.iter().any(|(s, _, _)| s == stage), "stage {stage} ran: {ends:?}");
    }
    assert!(first.kernel_release.ends_with("-cloud-amd64"), "{first:?}");

    let warm = Recorder::default();
    let second = images::build_recorded(&store, "base", &warm).expect("warm build");
    let ends = warm.ends.lock().unwrap().clone();
    assert!(!ends.is_empty() && ends.iter().all(|(_, cached, _)| *cached), "second build is all cache hits: {ends:?}");
    assert_eq!(first, second);

    // The CLI lists it.
    let (code, out, _) = den(cache.path(), &["image", "ls"]);
    assert_eq!(code, 0);
    assert!(out.contains("base") && out.contains(&first.kernel_release), "{out}");

    // Corrupt the initramfs object behind the store's back.
    let d = &first.artifacts["initramfs"];
    let p = store.object_path(d);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(b"tampered").unwrap();
    drop(f);
    assert!(matches!(store.get(d, false), Err(ImageError::Corrupt { .. })));
    let (code, out, err) = den(cache.path(), &["image", "verify", "base"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("CORRUPT") && out.contains("initramfs") && err.contains("den image build base"), "{out}{err}");

    // A build notices, says so, and rebuilds the same content.
    let fix = Recorder::default();
    let third = images::build_recorded(&store, "base", &fix).expect("rebuild");
    let warnings = fix.warnings.lock().unwrap().clone();
    assert!(warnings.iter().any(|w| w.contains("corrupt") && w.contains("initramfs")), "{warnings:?}");
    assert_eq!(third.artifacts, first.artifacts, "the rebuilt object has the original digest");
    let (code, out, err) = den(cache.path(), &["image", "verify", "base"]);
    assert_eq!(code, 0, "{out}{err}");

    // gc keeps what images use, and frees what they do not.
    let (code, out, _) = den(cache.path(), &["image", "rm", "base"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = den(cache.path(), &["--json", "image", "gc"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["objects"].as_u64().unwrap() >= 3, "{v}");
    assert!(matches!(store.get(d, false), Err(ImageError::MissingObject { .. })));
}

#[test]
fn default_images_rebuild_from_cache() {
    let store = images::shared_store();
    for name in ["base", "dev", "docker"] {
        images::build_recorded(&store, name, &Recorder::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let warm = Recorder::default();
        let rec = images::build_recorded(&store, name, &warm).unwrap();
        let ends = warm.ends.lock().unwrap().clone();
        assert!(ends.iter().all(|(_, cached, _)| *cached), "{name}: {ends:?}");
        assert!(rec.artifacts.contains_key("rootfs"), "{name}: {rec:?}");
    }
}

#[test]
fn spec_errors_name_the_key_or_package() {
    let cache = tempfile::tempdir().unwrap();
    let spec = cache.path().join("typo.yml");
    std::fs::write(&spec, "name: typo\nkernel:\n  modules: [virtio_blk]\n  vmlinux_please: true\n").unwrap();
    let (code, _, err) = den(cache.path(), &["image", "build", spec.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("vmlinux_please") && err.contains("typo.yml"), "{err}");

    std::fs::write(&spec, "name: nopkg\nrootfs:\n  packages: [iproute2, den-no-such-package]\n").unwrap();
    let (code, _, err) = den(cache.path(), &["image", "build", spec.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("`den-no-such-package` not found"), "{err}");

    std::fs::write(&spec, "name: nomod\nkernel:\n  modules: [den_no_such_module]\n").unwrap();
    let (code, _, err) = den(cache.path(), &["image", "build", spec.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("den_no_such_module"), "{err}");

    let (code, _, err) = den(cache.path(), &["image", "build", "nonesuch"]);
    assert_eq!(code, 1);
    assert!(err.contains("nonesuch") && err.contains("base"), "{err}");
}

fn gz_layer(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (path, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        if path.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
        }
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn put_blob(layout: &Path, data: &[u8]) -> String {
    use sha2::Digest;
    let hex = hex::encode(sha2::Sha256::digest(data));
    std::fs::write(layout.join("blobs/sha256").join(&hex), data).unwrap();
    format!("sha256:{hex}")
}

/// Runs a debugfs request: (stdout, stdout and stderr).
fn debugfs(img: &Path, req: &str) -> (String, String) {
    let out = Command::new("debugfs").arg("-R").arg(req).arg(img).output().expect("debugfs (e2fsprogs)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (stdout, all)
}

#[test]
fn oci_layout_becomes_an_ext4_disk() {
    let cache = tempfile::tempdir().unwrap();
    let layout = cache.path().join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let l1 = gz_layer(&[("etc/", b""), ("etc/a", b"lower a"), ("etc/b", b"lower b"), ("opt/", b""), ("opt/old", b"x")]);
    let l2 = gz_layer(&[("etc/.wh.a", b""), ("opt/", b""), ("opt/.wh..wh..opq", b""), ("opt/new", b"upper")]);
    let (d1, d2) = (put_blob(&layout, &l1), put_blob(&layout, &l2));
    let config =
        put_blob(&layout, br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/app"],"Env":["A=1"]}}"#);
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 0},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d1, "size": l1.len()},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d2, "size": l2.len()}]});
    let m = put_blob(&layout, manifest.to_string().as_bytes());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": m, "size": 0, "platform": {"architecture": "amd64", "os": "linux"}}]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();

    let (code, out, err) = den(cache.path(), &["--json", "image", "import-oci", layout.to_str().unwrap(), "app"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["config"]["Cmd"][0], "/bin/app");
    let (_, path, _) = den(cache.path(), &["image", "path", "app", "rootfs"]);
    let img = Path::new(path.trim());
    assert_eq!(debugfs(img, "cat /etc/b").0, "lower b");
    assert!(debugfs(img, "stat /etc/a").1.contains("not found"), "whiteout removed /etc/a");
    assert!(debugfs(img, "stat /opt/old").1.contains("not found"), "opaque dir hid /opt/old");
    assert_eq!(debugfs(img, "cat /opt/new").0, "upper");
    assert!(debugfs(img, "cat /etc/den/oci-config.json").0.contains("/bin/app"));

    // A blob that does not match its digest is refused, naming it.
    std::fs::write(layout.join("blobs/sha256").join(d2.trim_start_matches("sha256:")), b"garbage").unwrap();
    let (code, _, err) = den(cache.path(), &["image", "import-oci", layout.to_str().unwrap(), "app2"]);
    assert_eq!(code, 1);
    assert!(err.contains(&d2) && err.contains("corrupt"), "{err}");
}

#[test]
fn vmlinux_is_extracted_from_the_debian_bzimage() {
    let store = images::shared_store();
    let base = images::build_builtin(&store, "base");
    let bz = std::fs::read(store.get(&base.artifacts["kernel"], false).unwrap()).unwrap();
    let elf = den_images::vmlinux::extract(&bz).expect("LZ4 payload decompresses");
    assert!(den_images::elf::is_elf64(&elf));
    assert!(elf.len() > bz.len(), "vmlinux {} bytes vs bzImage {}", elf.len(), bz.len());
    assert!(den_images::elf::section(&elf, ".text").is_some(), "vmlinux has a .text section");
}
