//! The fuzz target's body (`lpk/fuzz`, run by `scripts/fuzz.sh` in `make test`): any bytes as a
//! package. Reading must refuse or accept without panicking, within small limits; a package
//! that is accepted is unpacked, and nothing may appear outside the destination.

use crate::pack::{tar_bytes, Item, Packer};
use crate::{extract, inspect_bytes, Limits, Options};
use std::path::Path;

fn options() -> Options {
    let limits = Limits { max_entries: 2_000, max_unpacked: 64 << 20, ratio_floor: 1 << 20, ..Limits::default() };
    Options { limits, ..Options::default() }
}

/// Reads `data` as a package; unpacks it if it passes, and checks that only the destination
/// was written. Panics (a fuzz finding) if anything lands outside it.
pub fn run_one(data: &[u8]) {
    if inspect_bytes(data, &options()).is_err() {
        return;
    }
    let scratch = std::env::temp_dir().join(format!("den-lpk-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    if std::fs::create_dir_all(&scratch).is_err() {
        return;
    }
    let package = scratch.join("p.lpk");
    if std::fs::write(&package, data).is_err() {
        return;
    }
    let dest = scratch.join("dest");
    let _ = extract(&package, &options(), &dest);
    let mut names: Vec<_> =
        std::fs::read_dir(&scratch).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    names.sort();
    let allowed: [&std::ffi::OsStr; 2] = ["dest".as_ref(), "p.lpk".as_ref()];
    assert!(names.iter().all(|n| allowed.contains(&n.as_os_str())), "unpacking wrote outside: {names:?}");
    let _ = std::fs::remove_dir_all(&scratch);
}

/// Packages that start the fuzzer off with the format's structure: v1 ZIP, v2 tar, a
/// `content.tar` with links, an embedded image, a signed package.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = vec![];
    let manifest = "application:\n  subdomain: seed\n  routes: [/=file:///lzcapp/pkg/content/www/]\n";
    let content = [
        Item::Dir("www".into()),
        Item::File { name: "www/index.html".into(), data: b"<h1>hi</h1>".to_vec(), mode: 0o644 },
        Item::Symlink("www/home.html".into(), "index.html".into()),
        Item::Hardlink("www/copy.html".into(), "www/index.html".into()),
    ];
    let mut v2 = Packer::new();
    v2.file("package.yml", "package: cloud.den.seed\nversion: 1.0.0\n").file("manifest.yml", manifest);
    if let Ok(tar) = tar_bytes(&content) {
        v2.file("content.tar", tar);
    }
    v2.item(Item::Symlink("icon.png".into(), "content.tar".into()));
    let mut v1 = Packer::new();
    v1.file("manifest.yml", format!("package: cloud.den.seed\nversion: 1.0.0\n{manifest}"));
    v1.item(Item::Dir("content".into())).file("content/www/index.html", "hi");
    let mut image = v2.clone();
    let rootfs = tar_bytes(&[Item::File { name: "bin/sh".into(), data: b"x".to_vec(), mode: 0o755 }]);
    if let Ok(rootfs) = rootfs {
        let _ = image.image("box", &rootfs, &serde_json::json!({"Cmd": ["/bin/sh"]}));
    }
    let mut signed = v2.clone();
    signed.sign("seed", &[9u8; 32]);
    for (name, p, zip) in
        [("v2.tar", v2, false), ("v1.zip", v1, true), ("image.tar", image, false), ("signed.tar", signed, false)]
    {
        let file = std::env::temp_dir().join(format!("den-lpk-seed-{}-{name}", std::process::id()));
        let written = if zip { p.write_zip(&file) } else { p.write_tar(&file) };
        if let (Ok(()), Ok(bytes)) = (written, std::fs::read(&file)) {
            out.push((name.to_string(), bytes));
        }
        let _ = std::fs::remove_file(&file);
    }
    out
}

/// Writes [`seeds`] into `dir` (the fuzzer's corpus) if it has none yet.
pub fn write_seeds(dir: &Path) -> std::io::Result<()> {
    if std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false) {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in seeds() {
        std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
    }
    Ok(())
}

/// Seeds the corpus folder named on the fuzzer's command line (its first argument that is not
/// a `-flag`), if that folder is empty.
pub fn seed_corpus_from_args() {
    let Some(dir) = std::env::args_os().skip(1).find(|a| !a.to_string_lossy().starts_with('-')) else { return };
    if let Err(e) = write_seeds(Path::new(&dir)) {
        eprintln!("den-lpk fuzz: cannot seed {}: {e}", Path::new(&dir).display());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_seeds_are_accepted_and_unpack_inside() {
        let seeds = super::seeds();
        assert_eq!(seeds.len(), 4);
        for (name, bytes) in &seeds {
            assert!(crate::inspect_bytes(bytes, &super::options()).is_ok(), "{name}");
            assert!(bytes.len() < 65536, "{name} is longer than the fuzzer's -max_len");
            super::run_one(bytes);
        }
    }
}
