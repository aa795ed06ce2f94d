//! Builds the web console (`../web`, TypeScript with Vite) and embeds it in `dend`, so running Den
//! needs no Node.js: only building it does. `DEN_WEB_DIST=<dir>` embeds an already built console
//! instead. The generated `web_assets.rs` lists every file with its MIME type, its bytes and,
//! for text, a gzip copy.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=DEN_WEB_DIST");
    let out = PathBuf::from(
        std::env::var("OUT_DIR").unwrap_or_else(|e| panic!("OUT_DIR: {e} (cargo sets it for build scripts)")),
    );
    // A console built elsewhere is watched file by file; one built here is watched through its
    // sources (its output files are newer than this script's start, so watching them would
    // make every build run it again, and recompile dend).
    let (dist, watch_dist) = match std::env::var_os("DEN_WEB_DIST") {
        Some(d) => (PathBuf::from(d), true),
        None => (build_web(&out), false),
    };
    if let Err(e) = embed(&dist, &out, watch_dist) {
        panic!("embedding the web console from {}: {e}", dist.display());
    }
}

/// Installs the locked packages when `package-lock.json` is newer than what is installed, then
/// type-checks and bundles.
fn build_web(out: &Path) -> PathBuf {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    for f in ["src", "index.html", "package.json", "package-lock.json", "vite.config.ts", "tsconfig.json"] {
        println!("cargo:rerun-if-changed={}", web.join(f).display());
    }
    let lock = web.join("package-lock.json");
    let installed = web.join("node_modules/.package-lock.json");
    let _guard = FileLock::take(&web.join(".build-lock"));
    if modified(&installed) < modified(&lock) {
        // The versions pinned by the lock file, like `npm ci`, but tolerant of optional
        // platform packages (rollup's, for other systems) that a registry mirror may not carry
        // and that the lock file therefore does not list: `npm ci` refuses such a lock file.
        let args = ["install", "--no-save", "--no-audit", "--no-fund", "--loglevel=error"];
        run(Command::new("npm").args(args).current_dir(&web));
    }
    let dist = out.join("web-dist");
    run(Command::new(web.join("node_modules/.bin/tsc")).args(["--noEmit", "-p", "."]).current_dir(&web));
    run(Command::new(web.join("node_modules/.bin/vite"))
        .args(["build", "--logLevel", "warn", "--emptyOutDir", "--outDir"])
        .arg(&dist)
        .current_dir(&web));
    dist
}

fn modified(p: &Path) -> Option<std::time::SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn run(cmd: &mut Command) {
    let what = format!("{cmd:?}");
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("building the web console: {what} failed ({s})"),
        Err(e) => panic!(
            "building the web console: cannot run {what}: {e}. It needs Node.js 20 and npm \
             (`make deps` installs them), or set DEN_WEB_DIST to an already built console"
        ),
    }
}

/// An exclusive lock on a file, so that two builds never install packages in one folder at once.
struct FileLock {
    _file: fs::File,
}

impl FileLock {
    fn take(path: &Path) -> Option<FileLock> {
        let f = fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).ok()?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own; it is released when the file is closed.
        (unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0).then_some(FileLock { _file: f })
    }
}

fn mime(path: &str) -> (&'static str, bool) {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => ("text/html; charset=utf-8", true),
        "js" | "mjs" => ("text/javascript; charset=utf-8", true),
        "css" => ("text/css; charset=utf-8", true),
        "json" | "map" => ("application/json", true),
        "svg" => ("image/svg+xml", true),
        "txt" => ("text/plain; charset=utf-8", true),
        "png" => ("image/png", false),
        "ico" => ("image/x-icon", false),
        "woff2" => ("font/woff2", false),
        _ => ("application/octet-stream", false),
    }
}

fn files(dir: &Path, base: &Path, acc: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            files(&p, base, acc)?;
        } else {
            let rel = p.strip_prefix(base).map_err(std::io::Error::other)?.to_string_lossy().to_string();
            acc.push((format!("/{rel}"), p));
        }
    }
    Ok(())
}

fn embed(dist: &Path, out: &Path, watch: bool) -> std::io::Result<()> {
    let mut all = vec![];
    files(dist, dist, &mut all)?;
    all.sort();
    if !all.iter().any(|(p, _)| p == "/index.html") {
        return Err(std::io::Error::other("no index.html: is this a built web console?"));
    }
    let gz_dir = out.join("web-gz");
    fs::create_dir_all(&gz_dir)?;
    let mut code = String::from("/// Every file of the built web console.\npub static ASSETS: &[Asset] = &[\n");
    for (i, (path, file)) in all.iter().enumerate() {
        if watch {
            println!("cargo:rerun-if-changed={}", file.display());
        }
        let (mime, text) = mime(path);
        let raw = fs::read(file)?;
        let gzip = if text {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            enc.write_all(&raw)?;
            let gz = enc.finish()?;
            let gz_file = gz_dir.join(format!("{i}.gz"));
            fs::write(&gz_file, gz)?;
            format!("Some(include_bytes!({:?}))", gz_file.display().to_string())
        } else {
            "None".into()
        };
        code.push_str(&format!(
            "    Asset {{ path: {path:?}, mime: {mime:?}, body: include_bytes!({:?}), gzip: {gzip} }},\n",
            file.display().to_string()
        ));
    }
    code.push_str("];\n");
    fs::write(out.join("web_assets.rs"), code)
}
