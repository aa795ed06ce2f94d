//! Debian packages: resolve a name to an exact version with `apt-cache`, download it with
//! `apt-get download` into a cache, unpack it with `dpkg-deb`.

use crate::tool;
use crate::ImageError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A package at an exact version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Package {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Depends line (raw).
    pub depends: String,
}

/// Parses the first stanza of `apt-cache show` output.
pub fn parse_show(text: &str) -> Option<Package> {
    let field = |k: &str| {
        text.lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(':').map(|v| v.trim().to_string()))
    };
    Some(Package { name: field("Package")?, version: field("Version")?, depends: field("Depends").unwrap_or_default() })
}

/// Looks up the candidate version of `name`.
pub fn resolve(name: &str, context: &str) -> Result<Package, ImageError> {
    let out = tool::run(Command::new("apt-cache").args(["show", "--no-all-versions", name]));
    let missing = || ImageError::MissingPackage { name: name.into(), context: context.into() };
    match out {
        Ok(text) => parse_show(&text).ok_or_else(missing),
        Err(ImageError::Tool { output, .. })
            if output.contains("No packages found") || output.contains("Unable to locate") =>
        {
            Err(missing())
        }
        Err(e) => Err(e),
    }
}

/// A fingerprint of the host's apt state (package lists, preferences): `apt-cache`'s answers can
/// only change when it does.
pub fn apt_state() -> String {
    let mut parts = vec![];
    for dir in ["/var/lib/apt/lists", "/etc/apt/preferences.d", "/etc/apt/sources.list.d"] {
        let mut entries: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                let t = m.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
                Some(format!("{}:{}:{t}", e.file_name().to_string_lossy(), m.len()))
            })
            .collect();
        entries.sort();
        parts.push(entries.join(","));
    }
    crate::store::hash_bytes(parts.join("|").as_bytes()).0
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Memo {
    state: String,
    packages: std::collections::BTreeMap<String, Package>,
}

/// [`resolve`], remembered in `memo` (a JSON file) for as long as [`apt_state`] is unchanged:
/// each `apt-cache` call costs about half a second, which a warm build cannot afford.
pub fn resolve_cached(name: &str, context: &str, memo: &Path) -> Result<Package, ImageError> {
    let state = apt_state();
    let mut m: Memo = std::fs::read(memo).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    if m.state == state {
        if let Some(p) = m.packages.get(name) {
            return Ok(p.clone());
        }
    } else {
        m = Memo { state, packages: Default::default() };
    }
    let pkg = resolve(name, context)?;
    m.packages.insert(name.to_string(), pkg.clone());
    if let Ok(body) = serde_json::to_vec_pretty(&m) {
        // Only a cache: failing to write it costs time, not correctness.
        let _ = crate::store::write_atomic(memo, &body);
    }
    Ok(pkg)
}

/// Downloads `pkg` into `cache` unless it is already there; returns the `.deb` path.
pub fn download(pkg: &Package, cache: &Path) -> Result<PathBuf, ImageError> {
    std::fs::create_dir_all(cache).map_err(|e| ImageError::io(cache, e))?;
    // apt-get names files `<name>_<version>_<arch>.deb` with the epoch colon escaped as `%3a`.
    let version = pkg.version.replace(':', "%3a");
    let file = cache.join(format!("{}_{}_amd64.deb", pkg.name, version));
    let all = cache.join(format!("{}_{}_all.deb", pkg.name, version));
    for f in [&file, &all] {
        if f.exists() {
            return Ok(f.clone());
        }
    }
    tool::run(
        Command::new("apt-get")
            .current_dir(cache)
            .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
            .arg(format!("{}={}", pkg.name, pkg.version)),
    )?;
    [file, all].into_iter().find(|f| f.exists()).ok_or_else(|| ImageError::MissingPackage {
        name: pkg.name.clone(),
        context: format!("apt-get download of version {} left no .deb in {}", pkg.version, cache.display()),
    })
}

/// Unpacks a `.deb`'s files into `dest`.
pub fn extract(deb: &Path, dest: &Path) -> Result<(), ImageError> {
    tool::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dest)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apt_cache_show() {
        let t = "Package: linux-image-cloud-amd64\nSource: linux-signed-amd64\nVersion: 6.1.192-2\nDepends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)\n\nPackage: other\n";
        let p = parse_show(t).unwrap();
        assert_eq!(p.name, "linux-image-cloud-amd64");
        assert_eq!(p.version, "6.1.192-2");
        assert!(p.depends.starts_with("linux-image-6.1.0-56"));
        assert!(parse_show("Garbage: x\n").is_none());
    }
}
