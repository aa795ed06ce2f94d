//! Where an app's files live, all under `<data>/apps/` (root's, mode 0700):
//!
//! ```text
//! <package>/lzcapp/                 dend's: shared READ-ONLY into every service VM as /lzcapp
//! <package>/lzcapp/pkg/             the current release's package files (/lzcapp/pkg)
//! <package>/lzcapp/run/             manifest.yml and den/<service>/*.toml (/lzcapp/run)
//! <package>/lzcapp/var, cache/      empty: where the two shares below are mounted
//! <package>/var/                    the app's data: shared read-write as /lzcapp/var, kept by upgrades
//! <package>/cache/                  clearable: shared read-write as /lzcapp/cache
//! <package>/releases/<id>/images/   a release's embedded OCI layout
//! <package>/releases/<id>/pkg/      an earlier release's package files, kept for a rollback
//! <package>/releases/<id>/manifest.yml  a release's rendered manifest, kept for a rollback
//! .staging/<id>/                    a package being unpacked (removed at start)
//! .uploads/<id>.lpk                 a package being received (removed at start)
//! ```
//!
//! Guests write only `var/` and `cache/`. dend reaches into them only through a
//! [`GuestTree`] ([`AppDirs::guest`]), never by path: a guest's root can swap anything in them
//! for a link at any moment. Everything else is written by dend alone, and what a guest needs
//! of it is shared read-only (the kernel refuses the guest's writes, see
//! `engine::virtiofs`). Apps installed before this layout had one read-write `/lzcapp`;
//! [`AppDirs::prepare`] moves their data out of it the next time the app is stopped.

use den_core::vm::Share;
use den_guest_tree::{GuestTree, Links, TreeError};
use std::path::{Path, PathBuf};

/// A folder of an app that its guests write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestDir {
    /// `/lzcapp/var`: the app's data.
    Var,
    /// `/lzcapp/cache`: clearable.
    Cache,
}

impl GuestDir {
    fn name(self) -> &'static str {
        match self {
            GuestDir::Var => "var",
            GuestDir::Cache => "cache",
        }
    }
}

/// The apps directory tree.
#[derive(Debug, Clone)]
pub struct AppDirs {
    root: PathBuf,
}

impl AppDirs {
    /// The tree under `<data>/apps`.
    pub fn new(data: &Path) -> AppDirs {
        AppDirs { root: data.join("apps") }
    }

    /// An app's directory (package ids are `[a-z0-9.-]`, checked at install).
    pub fn app(&self, package: &str) -> PathBuf {
        self.root.join(package)
    }

    /// A release of an app.
    pub fn release(&self, package: &str, release: &str) -> PathBuf {
        self.app(package).join("releases").join(release)
    }

    /// The app's `/lzcapp`: dend's, shared read-only.
    pub fn lzcapp(&self, package: &str) -> PathBuf {
        self.app(package).join("lzcapp")
    }

    /// `/lzcapp/pkg` of an app.
    pub fn pkg(&self, package: &str) -> PathBuf {
        self.lzcapp(package).join("pkg")
    }

    /// The root of a folder the app's guests write. Only for sharing it and for opening it as
    /// a [`GuestTree`]: nothing beneath it may be reached by path.
    fn guest_root(&self, package: &str, dir: GuestDir) -> PathBuf {
        self.app(package).join(dir.name())
    }

    /// A folder the app's guests write, as a tree that never follows their links.
    pub fn guest(&self, package: &str, dir: GuestDir) -> Result<GuestTree, TreeError> {
        GuestTree::open(&self.guest_root(package, dir), Links::Never)
    }

    /// The app's `/lzcapp`, as a tree: dend's own, but written without following links all the
    /// same (an app installed before this layout may have left some there).
    pub fn lzcapp_tree(&self, package: &str) -> Result<GuestTree, TreeError> {
        GuestTree::open(&self.lzcapp(package), Links::Never)
    }

    /// The shared folders of every service VM of the app: `/lzcapp` read-only, then its `var`
    /// and `cache` read-write, mounted in that order.
    pub fn shares(&self, package: &str) -> Vec<Share> {
        let lzcapp = super::services::LZCAPP;
        let mut out = vec![Share { host: self.lzcapp(package), guest: Some(lzcapp.into()), readonly: true }];
        for dir in [GuestDir::Var, GuestDir::Cache] {
            out.push(Share {
                host: self.guest_root(package, dir),
                guest: Some(format!("{lzcapp}/{}", dir.name()).into()),
                readonly: false,
            });
        }
        out
    }

    /// The tree a `file://` route serves, `dir` being the route's clean absolute guest path
    /// under `/lzcapp`: the guest folders never follow a link; the package's files follow
    /// those that stay inside the route's folder (they were checked at install and guests
    /// cannot change them).
    pub fn route_tree(&self, package: &str, dir: &str) -> Result<GuestTree, TreeError> {
        let rel = dir.strip_prefix(super::services::LZCAPP).unwrap_or(dir).trim_start_matches('/');
        let (top, rest) = rel.split_once('/').unwrap_or((rel, ""));
        match top {
            "var" => self.guest(package, GuestDir::Var)?.subtree(rest),
            "cache" => self.guest(package, GuestDir::Cache)?.subtree(rest),
            "pkg" => GuestTree::open(&self.pkg(package), Links::Inside)?.subtree(rest),
            _ => self.lzcapp_tree(package)?.subtree(rel),
        }
    }

    /// Makes the app's folders (`lzcapp/` with its mount points, `var/`, `cache/`), first
    /// moving the data of an app installed with a read-write `/lzcapp` out of it. Only while
    /// none of the app's services runs.
    pub fn prepare(&self, package: &str) -> Result<(), String> {
        let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
        let lzcapp = self.lzcapp(package);
        std::fs::create_dir_all(&lzcapp).map_err(|e| io(&lzcapp, e))?;
        let lz = self.lzcapp_tree(package).map_err(|e| e.to_string())?;
        let app = GuestTree::open(&self.app(package), Links::Never).map_err(|e| e.to_string())?;
        for dir in [GuestDir::Var, GuestDir::Cache] {
            let name = dir.name();
            match is_dir(&app, name) {
                Ok(true) => {}
                Ok(false) => {
                    let root = self.guest_root(package, dir);
                    return Err(format!("{} is not a directory; remove it and start the app again", root.display()));
                }
                Err(e) if e.is_not_found() => {
                    // The old layout kept it inside /lzcapp, where a guest could have made it a
                    // link: it is moved by descriptor, and kept only if what arrived is a real
                    // directory.
                    match lz.rename_to(name, &app, name) {
                        Ok(()) => tracing::info!(app = package, dir = name, "moved the app's data out of /lzcapp"),
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e.to_string()),
                    }
                    real_dir(&app, name)?;
                }
                Err(e) => return Err(e.to_string()),
            }
            // The mount point inside /lzcapp.
            real_dir(&lz, name)?;
        }
        Ok(())
    }

    /// Removes a folder the app's guests wrote (missing: fine), never following its links.
    pub fn remove_guest(&self, package: &str, dir: GuestDir) -> Result<(), String> {
        den_guest_tree::remove_tree(&self.guest_root(package, dir)).map_err(|e| e.to_string())
    }

    /// Where an uninstalled app's data was kept, for messages.
    pub fn kept_data(&self, package: &str) -> PathBuf {
        self.guest_root(package, GuestDir::Var)
    }

    /// Packages being unpacked.
    pub fn staging(&self) -> PathBuf {
        self.root.join(".staging")
    }

    /// Packages being received.
    pub fn uploads(&self) -> PathBuf {
        self.root.join(".uploads")
    }

    /// Creates the top directories (private to root).
    pub fn create(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        for d in [&self.root, &self.staging(), &self.uploads()] {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(d)?;
        }
        Ok(())
    }
}

/// Whether `name` in `tree` is a directory (never following a link).
fn is_dir(tree: &GuestTree, name: &str) -> Result<bool, TreeError> {
    tree.metadata(name).map(|m| m.kind == den_guest_tree::Kind::Dir)
}

/// Makes `name` in `tree` a real directory: whatever else is there (a link, a file) is removed,
/// not followed; a missing one is made.
fn real_dir(tree: &GuestTree, name: &str) -> Result<(), String> {
    match is_dir(tree, name) {
        Ok(true) => return Ok(()),
        Ok(false) => tree.remove_all(name).map_err(|e| e.to_string())?,
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.to_string()),
    }
    tree.mkdir(name, 0o755).map_err(|e| e.to_string())
}

/// Removes a directory tree of an app (its files may be read-only, it may be as deep as a guest
/// of an earlier Den made it); a missing one is fine. No link in it is followed.
pub fn remove_tree(p: &Path) -> std::io::Result<()> {
    Ok(den_guest_tree::remove_tree(p)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_layout_is_moved_out_of_lzcapp_and_links_are_dropped() {
        let d = tempfile::tempdir().unwrap();
        let dirs = AppDirs::new(d.path());
        let lz = dirs.lzcapp("a.b");
        std::fs::create_dir_all(lz.join("var/db")).unwrap();
        std::fs::write(lz.join("var/db/data"), "kept").unwrap();
        std::os::unix::fs::symlink("/etc", lz.join("cache")).unwrap();
        dirs.prepare("a.b").unwrap();
        assert_eq!(std::fs::read_to_string(dirs.app("a.b").join("var/db/data")).unwrap(), "kept");
        assert!(dirs.app("a.b").join("cache").is_dir());
        for mount_point in ["var", "cache"] {
            let m = std::fs::symlink_metadata(lz.join(mount_point)).unwrap();
            assert!(m.is_dir() && std::fs::read_dir(lz.join(mount_point)).unwrap().next().is_none());
        }
        assert!(std::path::Path::new("/etc/passwd").exists(), "the link was removed, not followed");
        // An old layout whose var a guest made a link: the link is not what becomes the data.
        let other = AppDirs::new(&d.path().join("other"));
        std::fs::create_dir_all(other.lzcapp("c.d")).unwrap();
        std::os::unix::fs::symlink("/", other.lzcapp("c.d").join("var")).unwrap();
        other.prepare("c.d").unwrap();
        let m = std::fs::symlink_metadata(other.app("c.d").join("var")).unwrap();
        assert!(m.is_dir() && std::fs::read_dir(other.app("c.d").join("var")).unwrap().next().is_none());
        dirs.prepare("a.b").unwrap();
        let var = dirs.guest("a.b", GuestDir::Var).unwrap();
        assert_eq!(var.read("db/data", 10).unwrap(), b"kept");
        dirs.remove_guest("a.b", GuestDir::Var).unwrap();
        assert!(!dirs.app("a.b").join("var").exists());
        dirs.remove_guest("a.b", GuestDir::Var).unwrap();
    }

    #[test]
    fn routes_map_to_the_right_tree() {
        let d = tempfile::tempdir().unwrap();
        let dirs = AppDirs::new(d.path());
        dirs.prepare("a.b").unwrap();
        std::fs::create_dir_all(dirs.pkg("a.b").join("content/web")).unwrap();
        std::fs::create_dir_all(dirs.app("a.b").join("var/www")).unwrap();
        std::os::unix::fs::symlink("/", dirs.app("a.b").join("var/root")).unwrap();
        assert!(dirs.route_tree("a.b", "/lzcapp/pkg/content/web").is_ok());
        assert_eq!(dirs.route_tree("a.b", "/lzcapp/var/www").unwrap().links(), Links::Never);
        assert!(dirs.route_tree("a.b", "/lzcapp/var/root").unwrap_err().is_refusal());
        let shares = dirs.shares("a.b");
        assert_eq!(shares.len(), 3);
        assert!(shares[0].readonly && !shares[1].readonly && !shares[2].readonly);
    }
}
