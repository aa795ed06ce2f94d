//! Where an app's files live, all under `<data>/apps/`:
//!
//! ```text
//! <package>/releases/<id>/pkg/      the unpacked package, read-only (/lzcapp/pkg)
//! <package>/releases/<id>/images/   its embedded OCI layout, until made into root disks
//! <package>/var/                    persistent data (/lzcapp/var), kept by upgrades
//! <package>/cache/                  clearable (/lzcapp/cache)
//! <package>/run/                    runtime (/lzcapp/run), manifest.yml rendered at install
//! .staging/<id>/                    a package being unpacked (removed at start)
//! .uploads/<id>.lpk                 a package being received (removed at start)
//! ```

use std::path::{Path, PathBuf};

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

    /// `/lzcapp/var` of an app.
    pub fn var(&self, package: &str) -> PathBuf {
        self.app(package).join("var")
    }

    /// `/lzcapp/cache` of an app.
    pub fn cache(&self, package: &str) -> PathBuf {
        self.app(package).join("cache")
    }

    /// `/lzcapp/run` of an app.
    pub fn run(&self, package: &str) -> PathBuf {
        self.app(package).join("run")
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

/// Removes a directory tree whose files may be read-only; a missing one is fine.
pub fn remove_tree(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
