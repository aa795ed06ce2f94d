//! The module attacked as a guest would: links everywhere, a way out, special files, deep and
//! racing trees. Every test keeps a marker outside the tree and checks it is untouched.

use super::*;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A temp dir with `outside/marker` and an empty `tree/`.
struct Scene {
    _dir: tempfile::TempDir,
    outside: PathBuf,
    root: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("marker"), "host secret").unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir(&root).unwrap();
        Scene { _dir: dir, outside, root }
    }

    fn tree(&self) -> GuestTree {
        GuestTree::open(&self.root, Links::Never).unwrap()
    }

    /// The marker is still there, unchanged, and nothing new appeared beside it.
    fn intact(&self) {
        assert_eq!(std::fs::read_to_string(self.outside.join("marker")).unwrap(), "host secret");
        let names: Vec<_> = std::fs::read_dir(&self.outside).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["marker"], "something was written outside the tree");
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

#[test]
fn links_on_the_way_are_refused_for_every_operation() {
    let s = Scene::new();
    symlink(&s.outside, s.p("out")).unwrap();
    symlink("../outside", s.p("rel_out")).unwrap();
    symlink("/proc/self/root", s.p("magic")).unwrap();
    std::fs::create_dir(s.p("d")).unwrap();
    std::fs::write(s.p("d/f"), "in").unwrap();
    symlink("d", s.p("inside")).unwrap();
    let t = s.tree();
    for via in ["out", "rel_out", "magic", "inside"] {
        let file = format!("{via}/marker");
        let e = t.open_file(&file).unwrap_err();
        assert!(e.is_refusal(), "{via}: {e}");
        assert!(t.create_file(&format!("{via}/new"), 0o644).unwrap_err().is_refusal());
        assert!(t.mkdir(&format!("{via}/new"), 0o755).unwrap_err().is_refusal());
        assert!(t.mkdir_all(&format!("{via}/a/b"), 0o755).unwrap_err().is_refusal());
        assert!(t.symlink(&format!("{via}/l"), "x").unwrap_err().is_refusal());
        assert!(t.hard_link("d/f", &format!("{via}/h")).unwrap_err().is_refusal());
        assert!(t.hard_link(&file, "h").unwrap_err().is_refusal());
        assert!(t.remove_file(&file).unwrap_err().is_refusal());
        assert!(t.rename("d/f", &format!("{via}/moved")).unwrap_err().is_refusal());
        assert!(t.metadata(&file).unwrap_err().is_refusal());
        assert!(t.entries(via, 10).unwrap_err().is_refusal());
        assert!(t.subtree(via).unwrap_err().is_refusal());
        assert!(t.set_mode(&file, 0o777).unwrap_err().is_refusal());
        assert!(t.replace(&format!("{via}/marker"), b"x", 0o644).unwrap_err().is_refusal());
        // The link itself is an entry like any other: it can be examined and removed.
        assert_eq!(t.metadata(via).unwrap().kind, Kind::Symlink);
        assert!(t.open_file(via).unwrap_err().is_refusal(), "the last component is not followed either");
    }
    t.remove_all("out").unwrap();
    assert!(!s.p("out").exists() && s.outside.join("marker").exists());
    s.intact();
    assert_eq!(std::fs::read_to_string(s.p("d/f")).unwrap(), "in");
}

#[test]
fn inside_trees_follow_links_that_stay_inside_only() {
    let s = Scene::new();
    std::fs::create_dir(s.p("d")).unwrap();
    std::fs::write(s.p("d/f"), "in").unwrap();
    symlink("d/f", s.p("good")).unwrap();
    symlink("../outside/marker", s.p("bad")).unwrap();
    symlink("/etc/passwd", s.p("abs")).unwrap();
    let t = GuestTree::open(&s.root, Links::Inside).unwrap();
    let mut text = String::new();
    t.open_file("good").unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(text, "in");
    assert!(matches!(t.open_file("bad").unwrap_err(), TreeError::Outside { .. }));
    assert!(t.open_file("abs").unwrap_err().is_refusal());
    // Writes go through links that stay inside, never through one that leaves, and never
    // through a link in the last place.
    symlink("d", s.p("dl")).unwrap();
    t.create_file("dl/new", 0o644).unwrap();
    assert!(s.p("d/new").is_file());
    symlink("../outside", s.p("ol")).unwrap();
    assert!(t.create_file("ol/new", 0o644).unwrap_err().is_refusal());
    assert!(t.mkdir_all("ol/x/y", 0o755).unwrap_err().is_refusal());
    t.mkdir_all("dl/x/y", 0o755).unwrap();
    assert!(s.p("d/x/y").is_dir());
    assert!(t.create_file("good", 0o644).unwrap_err().is_exists(), "a link in the last place is not written through");
    t.replace("bad", b"replaced", 0o644).unwrap();
    assert!(s.p("bad").is_file(), "replace puts a file where the link was");
    t.set_owner("abs", 0, 0).unwrap();
    t.set_mtime("abs", 1000).unwrap();
    assert!(t.set_xattr("abs", "user.x", b"1").unwrap_err().is_refusal());
    s.intact();
}

#[test]
fn a_host_path_opens_only_as_a_regular_file() {
    let s = Scene::new();
    nix::unistd::mkfifo(&s.p("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    symlink(s.p("fifo"), s.p("to_fifo")).unwrap();
    symlink(s.outside.join("marker"), s.p("to_marker")).unwrap();
    assert!(matches!(open_regular(&s.p("to_fifo")).unwrap_err(), TreeError::Kind { found: "a FIFO", .. }));
    assert!(open_regular(Path::new("/dev/null")).unwrap_err().is_refusal());
    let mut text = String::new();
    open_regular(&s.p("to_marker")).unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(text, "host secret", "the caller's own links are followed");
}

#[test]
fn special_files_are_refused_without_being_opened() {
    let s = Scene::new();
    nix::unistd::mkfifo(&s.p("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let t = s.tree();
    // Opening a FIFO for reading would block until a writer came: the test would hang.
    let e = t.open_file("fifo").unwrap_err();
    assert!(matches!(e, TreeError::Kind { found: "a FIFO", .. }), "{e}");
    assert!(matches!(t.open_entry("fifo").unwrap_err(), TreeError::Kind { .. }));
    assert!(t.set_mode("fifo", 0o666).is_err());
    assert_eq!(t.metadata("fifo").unwrap().kind, Kind::Other("a FIFO"));
}

#[test]
fn writes_and_reads_beneath_work() {
    let s = Scene::new();
    let t = s.tree();
    let sub = t.mkdir_all("a/b/c", 0o755).unwrap();
    sub.write_new("f", b"hello", 0o640).unwrap();
    assert!(sub.write_new("f", b"again", 0o640).unwrap_err().is_exists());
    assert_eq!(t.read("a/b/c/f", 5).unwrap(), b"hello");
    assert!(matches!(t.read("a/b/c/f", 4).unwrap_err(), TreeError::Limit { .. }));
    assert_eq!(t.metadata("a/b/c/f").unwrap().mode, 0o640);
    t.set_mode("a/b/c/f", 0o444).unwrap();
    assert_eq!(t.metadata("a/b/c/f").unwrap().mode, 0o444);
    t.replace("a/b/c/f", b"new", 0o644).unwrap();
    assert_eq!(std::fs::read_to_string(s.p("a/b/c/f")).unwrap(), "new");
    t.symlink("a/l", "b/c/f").unwrap();
    assert_eq!(std::fs::read_link(s.p("a/l")).unwrap(), Path::new("b/c/f"));
    t.hard_link("a/b/c/f", "a/h").unwrap();
    assert_eq!(t.metadata("a/h").unwrap().nlink, 2);
    t.rename("a/h", "a/h2").unwrap();
    let mut names: Vec<_> = t.entries("a", 10).unwrap().into_iter().map(|e| (e.name, e.kind)).collect();
    names.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(names, [("b".into(), Kind::Dir), ("h2".into(), Kind::File), ("l".into(), Kind::Symlink)]);
    assert!(matches!(t.entries("a", 2).unwrap_err(), TreeError::Limit { .. }));
    assert!(!t.is_empty_dir("a").unwrap());
    match t.open_entry("a/b").unwrap() {
        Opened::Dir(d) => assert!(d.exists("c/f").unwrap()),
        Opened::File(_) => panic!("a/b is a directory"),
    }
    assert!(!t.exists("nope").unwrap());
    assert!(t.open_file("nope/x").unwrap_err().is_not_found());
    t.remove_all("a").unwrap();
    assert!(t.is_empty_dir("").unwrap());
    t.remove_all("a").unwrap();
    for bad in ["../x", "/../x", "a/../../x", "a\0"] {
        assert!(matches!(t.open_file(bad).unwrap_err(), TreeError::BadPath { .. }), "{bad:?}");
    }
}

#[test]
fn the_root_itself_must_not_be_a_link() {
    let s = Scene::new();
    let link = s.root.parent().unwrap().join("link");
    symlink(&s.outside, &link).unwrap();
    assert!(GuestTree::open(&link, Links::Never).is_err());
}

#[test]
fn removal_never_follows_links_and_handles_any_depth() {
    let s = Scene::new();
    let t = s.tree();
    // Deeper than the descriptor budget, with links to the outside at every level.
    let mut rel = String::from("deep");
    for i in 0..100 {
        t.mkdir_all(&rel, 0o755).unwrap();
        t.symlink(&format!("{rel}/out{i}"), s.outside.to_str().unwrap()).unwrap();
        t.write_new(&format!("{rel}/f"), b"x", 0o444).unwrap();
        t.mkdir(&format!("{rel}/ro"), 0o500).unwrap();
        rel.push_str("/d");
    }
    t.remove_all("deep").unwrap();
    assert!(!s.p("deep").exists());
    s.intact();
    // Emptying the root keeps the root.
    t.mkdir_all("x/y", 0o755).unwrap();
    t.remove_all("").unwrap();
    assert!(s.root.is_dir() && t.is_empty_dir("").unwrap());
}

/// A guest swapping a directory for a link to the outside, as fast as it can, while the host
/// writes, reads and removes in it: whatever interleaving happens, nothing outside is touched.
#[test]
fn a_racing_guest_never_gets_the_host_outside() {
    let s = Scene::new();
    let stop = Arc::new(AtomicBool::new(false));
    let root = s.root.clone();
    std::fs::create_dir(s.p("run")).unwrap();
    symlink(&s.outside, s.p("run.link")).unwrap();
    let racer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (dir, link, tmp) = (root.join("run"), root.join("run.link"), root.join("run.tmp"));
            while !stop.load(Ordering::Relaxed) {
                // `run` is a directory, then a link to the outside, then the directory again.
                std::fs::rename(&dir, &tmp).unwrap();
                std::fs::rename(&link, &dir).unwrap();
                std::fs::rename(&dir, &link).unwrap();
                std::fs::rename(&tmp, &dir).unwrap();
            }
        })
    };
    let t = s.tree();
    let (mut ok, mut refused) = (0, 0);
    // Enough rounds to see both sides of the race, and a few hundred more of each.
    let mut i = 0;
    while (ok < 200 || refused < 200) && i < 100_000 {
        i += 1;
        let name = format!("run/f{i}");
        match t.write_new(&name, b"x", 0o644) {
            Ok(()) => ok += 1,
            Err(e) if e.is_refusal() => refused += 1,
            Err(_) => {}
        }
        let _ = t.read("run/marker", 100);
        // Nothing here makes `run` itself: the racer owns it.
        let _ = t.mkdir("run/a", 0o755).and_then(|()| t.mkdir("run/a/b", 0o755));
        let _ = t.remove_all("run/a");
        let _ = t.remove_file("run/marker");
        let _ = t.replace("run/marker", b"overwritten", 0o644);
    }
    stop.store(true, Ordering::Relaxed);
    racer.join().unwrap();
    assert!(ok > 0 && refused > 0, "the race never showed both sides ({ok} writes, {refused} refusals in {i} rounds)");
    eprintln!("{ok} writes, {refused} refusals in {i} rounds");
    s.intact();
    t.remove_all("").unwrap();
    s.intact();
}
