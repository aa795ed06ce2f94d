//! Unpacking never writes outside its destination, whatever the package holds: the chains a
//! package author would try (links across the package and its `content.tar`, several deep),
//! and then any archive at all (property tests), both through the whole reader and straight
//! into the sink with no rule in front of it.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_lpk::pack::{tar_bytes, Item, Packer};
use den_lpk::sink::{Area, DirSink, Sink};
use den_lpk::{extract, inspect, Options};
use proptest::prelude::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const PACKAGE: &str = "package: cloud.den.test.esc\nversion: 1.0.0\n";
const MANIFEST: &str = "application:\n  subdomain: esc\n  routes: [/=file:///lzcapp/pkg/content/]\n";

fn packer() -> Packer {
    let mut p = Packer::new();
    p.file("package.yml", PACKAGE).file("manifest.yml", MANIFEST);
    p
}

/// A temp dir with a marker beside the destination and one above it.
struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        std::fs::write(dir.path().join("marker"), "top").unwrap();
        std::fs::write(dir.path().join("root/marker"), "beside").unwrap();
        Scene { dir }
    }

    fn dest(&self) -> PathBuf {
        self.dir.path().join("root/dest")
    }

    fn package(&self) -> PathBuf {
        self.dir.path().join("p.lpk")
    }

    /// Everything under the scene is the markers, the package, or beneath `dest`.
    fn nothing_outside(&self) {
        let top = self.dir.path();
        assert_eq!(std::fs::read_to_string(top.join("marker")).unwrap(), "top");
        assert_eq!(std::fs::read_to_string(top.join("root/marker")).unwrap(), "beside");
        let mut stack = vec![top.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.starts_with(self.dest()) {
                    continue;
                }
                let rel = p.strip_prefix(top).unwrap().to_string_lossy().into_owned();
                assert!(["marker", "root", "root/marker", "p.lpk"].contains(&rel.as_str()), "written outside: {rel}");
                if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                    stack.push(p);
                }
            }
        }
    }
}

fn file(name: &str) -> Item {
    Item::File { name: name.into(), data: b"pwned".to_vec(), mode: 0o644 }
}

/// Chains of links that a package author builds across the package and its `content.tar`
/// (each would pass a rule set that saw only its own half), and what Den says of each.
fn chains() -> Vec<(&'static str, Packer, &'static str)> {
    let tar = |items: &[Item]| tar_bytes(items).unwrap();
    let mut out = vec![];
    // The issue's: content/u0 -> .. (the package), content.tar's u0/e1 -> .. (above it), then
    // files under e1/, repeated: each level one directory higher.
    for depth in 1..=3 {
        let mut p = packer();
        den_lpk::pack::link_chain(&mut p, depth, "escaped", b"pwned").unwrap();
        out.push(("the issue's chain", p, "under the symlink `content/u0`"));
    }
    // content.tar first: its u0/ is a directory, then the package makes content/u0 a link.
    let mut p = packer();
    p.file("content.tar", tar(&[Item::Symlink("u0/e1".into(), "..".into())]));
    p.item(Item::Symlink("content/u0".into(), "..".into())).item(file("e1/escaped"));
    out.push(("content first", p, "appears twice"));
    // A package link through a content.tar link.
    let mut p = packer();
    p.file("content.tar", tar(&[Item::Symlink("s".into(), "..".into())]));
    p.item(Item::Symlink("x".into(), "content/s/..".into())).item(file("x/escaped"));
    out.push(("through content's link", p, "symlink"));
    // A content.tar hard link to a package file above content/.
    let mut p = packer();
    p.file("content.tar", tar(&[Item::Hardlink("h".into(), "../manifest.yml".into())]));
    out.push(("hard link out of content", p, "hard link"));
    out
}

#[test]
fn link_chains_across_the_package_and_content_tar_are_refused() {
    for (what, p, says) in chains() {
        let s = Scene::new();
        p.write_tar(&s.package()).unwrap();
        let e = inspect(&s.package(), &Options::default()).unwrap_err().to_string();
        assert!(e.contains(says), "{what}: {e}");
        assert!(extract(&s.package(), &Options::default(), &s.dest()).is_err(), "{what}");
        s.nothing_outside();
    }
}

#[test]
fn the_sink_alone_refuses_the_chain_whatever_the_rules_say() {
    // The same entries straight into the sink, with no rule in front of it.
    let s = Scene::new();
    std::fs::create_dir(s.dest()).unwrap();
    let mut sink = DirSink::new(&s.dest()).unwrap();
    sink.symlink(Area::Package, "content/u0", "..").unwrap();
    let e = sink.symlink(Area::Content, "u0/e1", "..").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    for (area, name) in [
        (Area::Content, "u0/e1/escaped"),
        (Area::Content, "u0/x"),
        (Area::Package, "content/u0/y"),
        (Area::Package, "../z"),
        (Area::Package, "/etc/den-escape"),
    ] {
        assert!(sink.file(area, name, 0o644).is_err(), "{name}");
        assert!(sink.dir(area, &format!("{name}/d")).is_err(), "{name}");
        assert!(sink.hardlink(area, name, "manifest.yml").is_err(), "{name}");
    }
    s.nothing_outside();
}

#[test]
fn a_signed_package_cannot_gain_a_link_or_a_mode() {
    let secret = [3u8; 32];
    let mut keys = den_lpk::Keyring::default();
    keys.add("k", &den_lpk::pack::public_key_hex(&secret)).unwrap();
    let opts = Options { keyring: keys, ..Options::default() };
    let mut signed = packer();
    signed.item(Item::Dir("content".into()));
    signed.item(Item::File { name: "content/run.sh".into(), data: b"#!/bin/sh\n".to_vec(), mode: 0o644 });
    signed.item(Item::Symlink("content/home".into(), "run.sh".into()));
    signed.sign("k", &secret);
    let s = Scene::new();
    signed.write_tar(&s.package()).unwrap();
    assert!(matches!(inspect(&s.package(), &opts).unwrap().signed, den_lpk::Signed::Verified(_)));
    type Change = Box<dyn Fn(&mut Vec<Item>)>;
    let tamper: [(&str, Change); 3] = [
        ("added after signing", Box::new(|i: &mut Vec<Item>| i.push(Item::Symlink("content/x".into(), "home".into())))),
        (
            "mode 0755",
            Box::new(|i: &mut Vec<Item>| {
                if let Item::File { mode, .. } = &mut i[3] {
                    *mode = 0o755
                }
            }),
        ),
        (
            "links to",
            Box::new(|i: &mut Vec<Item>| i[4] = Item::Symlink("content/home".into(), "../manifest.yml".into())),
        ),
    ];
    for (says, change) in tamper {
        let mut p = signed.clone();
        change(&mut p.items);
        p.write_tar(&s.package()).unwrap();
        let e = inspect(&s.package(), &opts).unwrap_err().to_string();
        assert!(e.contains(says), "{says}: {e}");
    }
}

/// Names a package author would try: climbing, absolute, the tree's own top folders.
fn name() -> impl Strategy<Value = String> {
    let good = prop::sample::select(vec!["a", "b", "u0", "e1", "content", "images"]);
    let bad = prop::sample::select(vec!["..", ".", ""]);
    // Mostly names that pass, so that most packages get far into unpacking.
    let part = prop_oneof![20 => good, 1 => bad];
    let lead = prop_oneof![20 => Just(""), 1 => Just("/"), 1 => Just("./")];
    (prop::collection::vec(part, 1..4), lead).prop_map(|(parts, lead)| format!("{lead}{}", parts.join("/")))
}

fn target() -> impl Strategy<Value = String> {
    let climb = prop::sample::select(vec!["..", "../..", "../a", "../../content", "/", "/etc"]);
    prop_oneof![3 => name(), 1 => climb.prop_map(String::from)]
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        name().prop_map(|n| file(&n)),
        name().prop_map(Item::Dir),
        (name(), target()).prop_map(|(n, t)| Item::Symlink(n, t)),
        (name(), name()).prop_map(|(n, t)| Item::Hardlink(n, t)),
        name().prop_map(|n| file(&n)),
        name().prop_map(|n| file(&n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the archive, extraction writes only beneath its destination.
    #[test]
    fn any_package_unpacks_only_beneath_its_destination(
        outer in prop::collection::vec(item(), 0..10),
        inner in prop::collection::vec(item(), 0..10),
    ) {
        let s = Scene::new();
        let mut p = packer();
        for i in outer { p.item(i); }
        if !inner.is_empty() {
            p.file("content.tar", tar_bytes(&inner).unwrap());
        }
        p.write_tar(&s.package()).unwrap();
        let unpacked = extract(&s.package(), &Options::default(), &s.dest());
        s.nothing_outside();
        if std::env::var_os("DEN_PROPTEST_STATS").is_some() {
            eprintln!("{}", unpacked.map(|_| "unpacked".to_string()).unwrap_or_else(|e| e.to_string()));
        }
        if s.dest().exists() {
            inside_links_only(&s.dest());
        }
    }

    /// The sink on its own, fed any entries in any order with no rule in front of it, writes
    /// only beneath its root.
    #[test]
    fn the_sink_alone_writes_only_beneath_its_root(
        ops in prop::collection::vec((any::<bool>(), item()), 0..24),
    ) {
        let s = Scene::new();
        std::fs::create_dir(s.dest()).unwrap();
        let mut sink = DirSink::new(&s.dest()).unwrap();
        for (content, op) in ops {
            let area = if content { Area::Content } else { Area::Package };
            let _ = match &op {
                Item::File { name, .. } => sink.file(area, name, 0o644).and_then(|f| {
                    use std::io::Write;
                    f.map_or(Ok(()), |mut f| f.write_all(b"pwned"))
                }),
                Item::Dir(n) => sink.dir(area, n),
                Item::Symlink(n, t) => sink.symlink(area, n, t),
                Item::Hardlink(n, t) => sink.hardlink(area, n, t),
                Item::Fifo(_) => Ok(()),
            };
        }
        s.nothing_outside();
    }
}

/// Files unpacked are regular files with one link each or hard links among themselves: none
/// is a hard link to something outside (its link count would say so).
fn inside_links_only(dest: &Path) {
    let mut inodes = std::collections::HashMap::new();
    let mut stack = vec![dest.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                *inodes.entry(m.ino()).or_insert(0u64) += 1;
                assert!(m.nlink() >= 1);
            }
        }
    }
    for e in walk_files(dest) {
        let m = std::fs::symlink_metadata(&e).unwrap();
        assert_eq!(m.nlink(), inodes[&m.ino()], "{} is linked from outside the package", e.display());
    }
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            out.extend(walk_files(&p));
        } else if m.is_file() {
            out.push(p);
        }
    }
    out
}
