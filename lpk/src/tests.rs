//! Whole packages through [`inspect`] and [`extract`].

use super::*;
use pack::{Item, Packer};

const V1_MANIFEST: &str = "lzc-sdk-version: '0.1'
package: cloud.den.test.hello
version: 1.0.0
name: Hello
application:
  subdomain: hello
  routes:
    - /=file:///lzcapp/pkg/content/www
    - /cgi/=exec://3000,/lzcapp/pkg/content/serve.sh
  environment:
    - GREETING=hi from ${LAZYCAT_APP_ID}
";

const V2_PACKAGE: &str = "package: cloud.den.test.two
version: 2.1.0
permissions: {required: [net.internet]}
";

const V2_MANIFEST: &str = "application:
  subdomain: two
  routes: [/=http://web:8080/, /api/=http://backend:9000/]
  depends_on: [web]
services:
  web:
    image: embed:box
    command: httpd -f -p 8080
    depends_on: [backend]
  backend:
    image: embed:box
    binds: [/lzcapp/var/db:/data]
    environment: {DOMAIN: '${LAZYCAT_APP_DOMAIN}'}
";

fn v1() -> Packer {
    let mut p = Packer::new();
    p.file("manifest.yml", V1_MANIFEST);
    p.content(&[
        Item::Dir("www".into()),
        Item::File { name: "www/index.html".into(), data: b"<h1>hello</h1>".to_vec(), mode: 0o644 },
        Item::File { name: "serve.sh".into(), data: b"#!/bin/sh\n".to_vec(), mode: 0o755 },
        Item::Symlink("www/home.html".into(), "index.html".into()),
    ])
    .unwrap();
    p.file("icon.png", vec![0x89, b'P', b'N', b'G']);
    p
}

fn v2() -> Packer {
    let rootfs = pack::tar_bytes(&[Item::File { name: "bin/hello".into(), data: b"x".to_vec(), mode: 0o755 }]).unwrap();
    let mut p = Packer::new();
    p.file("package.yml", V2_PACKAGE).file("manifest.yml", V2_MANIFEST);
    p.image("box", &rootfs, &serde_json::json!({"Cmd": ["/bin/hello"]})).unwrap();
    p
}

fn opts() -> Options {
    let mut o = Options::default();
    o.vars.insert("LAZYCAT_BOX_DOMAIN".into(), "box.test".into());
    o
}

fn write(p: &Packer, zip: bool) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(if zip { "p.lpk" } else { "p.tar.lpk" });
    if zip {
        p.write_zip(&path).unwrap()
    } else {
        p.write_tar(&path).unwrap()
    }
    (dir, path)
}

fn refused(p: &Packer, zip: bool) -> String {
    let (_d, path) = write(p, zip);
    inspect(&path, &opts()).map(|_| "accepted".to_string()).unwrap_or_else(|e| e.to_string())
}

#[test]
fn a_v1_zip_is_read_and_rendered() {
    let (_d, path) = write(&v1(), true);
    let pkg = inspect(&path, &opts()).unwrap();
    assert_eq!((pkg.format, pkg.container), (1, archive::Container::Zip));
    assert_eq!(pkg.meta.package, "cloud.den.test.hello");
    assert_eq!(pkg.version, Version(1, 0, 0));
    assert_eq!(pkg.signed, Signed::Unsigned);
    assert_eq!(pkg.content, Some((2, 24)));
    let app = &pkg.plan.services[0];
    assert_eq!(app.name, "app", "exec:// runs in the entry service");
    assert_eq!(app.env, [("GREETING".to_string(), "hi from cloud.den.test.hello".to_string())]);
    assert!(pkg.rendered.contains("hi from cloud.den.test.hello"));
}

#[test]
fn a_v2_tar_with_an_image_is_read() {
    let (_d, path) = write(&v2(), false);
    let pkg = inspect(&path, &opts()).unwrap();
    assert_eq!(pkg.format, 2);
    let names: Vec<_> = pkg.plan.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["backend", "web"]);
    assert_eq!(pkg.plan.services[0].env, [("DOMAIN".to_string(), "two.box.test".to_string())]);
    let emb = pkg.embedded.as_ref().unwrap();
    assert_eq!(emb.resolve("box").unwrap().layers.len(), 1);
    assert!(pkg.meta.wants("net.internet"));
}

#[test]
fn extraction_writes_read_only_files_where_the_brief_says() {
    use std::os::unix::fs::PermissionsExt;
    let (d, path) = write(&v1(), true);
    let dest = d.path().join("out");
    extract(&path, &opts(), &dest).unwrap();
    let page = dest.join("pkg/content/www/index.html");
    assert_eq!(std::fs::read(&page).unwrap(), b"<h1>hello</h1>");
    assert_eq!(std::fs::metadata(&page).unwrap().permissions().mode() & 0o777, 0o444);
    assert_eq!(std::fs::metadata(dest.join("pkg/content/serve.sh")).unwrap().permissions().mode() & 0o777, 0o555);
    assert_eq!(std::fs::read_link(dest.join("pkg/content/www/home.html")).unwrap(), std::path::Path::new("index.html"));
    assert!(dest.join("pkg/manifest.yml").exists());
    assert!(!dest.join("pkg/content.tar").exists(), "content.tar is unpacked, not kept");
    let (d2, path2) = write(&v2(), false);
    let dest2 = d2.path().join("out");
    extract(&path2, &opts(), &dest2).unwrap();
    assert!(dest2.join("images/index.json").exists() && dest2.join("images/blobs/sha256").is_dir());
    assert!(extract(&path2, &opts(), &dest2).is_err(), "never unpacks over an existing directory");
}

#[test]
fn signatures_are_checked_and_say_who_signed() {
    let secret = [3u8; 32];
    let public = ed25519_dalek::SigningKey::from_bytes(&secret).verifying_key();
    let mut o = opts();
    o.keyring.add("den-test", &hex::encode(public.as_bytes())).unwrap();
    let mut p = v2();
    p.sign("den-test", &secret);
    let (_d, path) = write(&p, false);
    assert_eq!(inspect(&path, &o).unwrap().signed, Signed::Verified(vec!["den-test".into()]));
    assert_eq!(inspect(&path, &opts()).unwrap().signed, Signed::UnknownSigner(vec!["den-test".into()]));
    // A file changed after signing.
    let mut tampered = v2();
    tampered.sign("den-test", &secret);
    if let Some(Item::File { data, .. }) =
        tampered.items.iter_mut().find(|i| matches!(i, Item::File { name, .. } if name == "manifest.yml"))
    {
        data.extend_from_slice(b"# changed\n");
    }
    let (_d, path) = write(&tampered, false);
    let e = inspect(&path, &o).unwrap_err().to_string();
    assert!(e.contains("manifest.yml") && e.contains("changed after signing"), "{e}");
    // Signed by another key under the trusted name.
    let mut forged = v2();
    forged.sign("den-test", &[4u8; 32]);
    let (_d, path) = write(&forged, false);
    assert!(inspect(&path, &o).unwrap_err().to_string().contains("does not match"));
}

#[test]
fn hostile_entries_are_refused_by_name_and_rule() {
    let cases: Vec<(Item, &str)> = vec![
        (Item::File { name: "../evil".into(), data: vec![], mode: 0o644 }, "`../evil`: the path leaves the package"),
        (Item::File { name: "/etc/evil".into(), data: vec![], mode: 0o644 }, "absolute paths"),
        (Item::Symlink("out".into(), "../../etc".into()), "`out`: is a symlink that"),
        (Item::Symlink("abs".into(), "/etc/shadow".into()), "absolute path `/etc/shadow`"),
        (Item::Hardlink("hl".into(), "/etc/shadow".into()), "`hl`: is a hard link"),
        (Item::Fifo("pipe".into()), "`pipe`: is a FIFO"),
        (Item::File { name: "manifest.yml".into(), data: b"again".to_vec(), mode: 0o644 }, "appears twice"),
    ];
    for (item, want) in cases {
        let mut p = v2();
        p.item(item);
        let e = refused(&p, false);
        assert!(e.contains(want), "wanted `{want}`, got: {e}");
    }
    let mut p = v1();
    p.file("./manifest.yml", "dup");
    assert!(refused(&p, true).contains("twice"));
    let mut p = v1();
    p.item(Item::Symlink("esc".into(), "../x".into()));
    let e = refused(&p, true);
    assert!(e.contains("`esc`: is a symlink that points to `../x`, outside the package"), "{e}");
}

#[test]
fn nested_content_is_held_to_the_same_rules() {
    let mut p = Packer::new();
    p.file("manifest.yml", V1_MANIFEST);
    p.content(&[Item::File { name: "../../outside".into(), data: vec![], mode: 0o644 }]).unwrap();
    let e = refused(&p, true);
    assert!(e.contains("content.tar!/../../outside"), "{e}");
    let mut p = Packer::new();
    p.file("manifest.yml", V1_MANIFEST);
    p.content(&[Item::Symlink("l".into(), "/etc".into())]).unwrap();
    assert!(refused(&p, true).contains("content.tar!/l"));
}

#[test]
fn bombs_and_limits() {
    // A 64 MiB file of zeros in a ZIP compresses about 1000:1.
    let mut p = v1();
    p.file("zeros", vec![0u8; 64 << 20]);
    let e = refused(&p, true);
    assert!(e.contains("`zeros`") && e.contains("archive bomb"), "{e}");
    // The same as a gzip layer.
    let mut p = v2();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &vec![0u8; 64 << 20]).unwrap();
    let blob = gz.finish().unwrap();
    let name = format!("images/blobs/sha256/{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&blob)));
    p.file(&name, blob);
    let e = refused(&p, false);
    assert!(e.contains(&name) && e.contains("archive bomb"), "{e}");
    // Total size.
    let (_d, path) = write(&v2(), false);
    let small = Options { limits: Limits { max_unpacked: 1000, ..Limits::default() }, ..opts() };
    assert!(inspect(&path, &small).unwrap_err().to_string().contains("unpacks to more than"));
    let few = Options { limits: Limits { max_entries: 3, ..Limits::default() }, ..opts() };
    assert!(inspect(&path, &few).unwrap_err().to_string().contains("limit of 3 entries"));
}

#[test]
fn metadata_errors_name_the_file_and_field() {
    let cases: Vec<(Packer, bool, &str)> = vec![
        (
            {
                let mut p = Packer::new();
                p.file("package.yml", V2_PACKAGE);
                p
            },
            false,
            "manifest.yml`: is missing",
        ),
        (
            {
                let mut p = Packer::new();
                p.file("manifest.yml", V2_MANIFEST);
                p
            },
            false,
            "package.yml`: is missing",
        ),
        (
            {
                let mut p = Packer::new();
                p.file("manifest.yml", ": : :");
                p
            },
            true,
            "not valid YAML",
        ),
        (
            {
                let mut p = Packer::new();
                p.file("manifest.yml", V1_MANIFEST.replace("cloud.den.test.hello", "Bad.Id"));
                p
            },
            true,
            "manifest.yml: `package`",
        ),
        (
            {
                let mut p = Packer::new();
                p.file("manifest.yml", V1_MANIFEST.replace("1.0.0", "one"));
                p
            },
            true,
            "`version`",
        ),
        (
            {
                let mut p = Packer::new();
                p.file("manifest.yml", format!("{V1_MANIFEST}permissions: {{required: [net.all]}}\n"));
                p
            },
            true,
            "net.all",
        ),
        (
            {
                let mut p = Packer::new();
                p.file("manifest.yml", format!("{V1_MANIFEST}min_os_version: 99.0.0\n"));
                p
            },
            true,
            "needs LPK host version 99.0.0",
        ),
        (
            {
                let mut p = Packer::new();
                p.file("package.yml", V2_PACKAGE)
                    .file("manifest.yml", V2_MANIFEST.replace("/lzcapp/var/db", "/var/db"));
                p
            },
            false,
            "services.backend.binds[0]",
        ),
        (
            {
                let mut p = Packer::new();
                p.file("package.yml", V2_PACKAGE).file("manifest.yml", V2_MANIFEST);
                p
            },
            false,
            "images.lock does not list",
        ),
        (
            {
                let mut p = Packer::new();
                p.file("manifest.yml", V1_MANIFEST.replace("${LAZYCAT_APP_ID}", "${NEEDED:?set NEEDED}"));
                p
            },
            true,
            "set NEEDED",
        ),
        (
            {
                let mut p = v2();
                p.file("images/blobs/sha256/00", "x");
                p
            },
            false,
            "does not match its name",
        ),
        (
            {
                let mut p = Packer::new();
                p.file("package.yml", V2_PACKAGE)
                    .file("manifest.yml", "application: {subdomain: x}")
                    .file("images.lock", "a: b");
                p
            },
            false,
            "no images/ layout",
        ),
    ];
    for (p, zip, want) in cases {
        let e = refused(&p, zip);
        assert!(e.contains(want), "wanted `{want}`, got: {e}");
    }
    assert!(
        refused(&Packer::new(), false).contains("not an LPK package")
            || refused(&Packer::new(), false).contains("missing")
    );
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("x.lpk"), b"hello, not an archive").unwrap();
    assert!(inspect(&d.path().join("x.lpk"), &opts()).unwrap_err().to_string().contains("neither a ZIP"));
}

#[test]
fn a_zip_with_images_is_v2() {
    let (_d, path) = write(&v2(), true);
    assert_eq!(inspect(&path, &opts()).unwrap().format, 2);
}
