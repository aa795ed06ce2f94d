//! Where an app's files live, all under `<data>/apps/`:
//!
//! ```text
//! <package>/lzcapp/                 shared into every service VM as /lzcapp (one virtio-fs share)
//! <package>/lzcapp/pkg/             the current release's package files (/lzcapp/pkg, mounted read-only)
//! <package>/lzcapp/var/             persistent data (/lzcapp/var), kept by upgrades
//! <package>/lzcapp/cache/           clearable (/lzcapp/cache)
//! <package>/lzcapp/run/             runtime (/lzcapp/run): manifest.yml, den/<service>/*.toml
//! <package>/releases/<id>/images/   a release's embedded OCI layout
//! <package>/releases/<id>/pkg/      an earlier release's package files, kept for a rollback
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

    /// The app's `/lzcapp` (shared into its VMs).
    pub fn lzcapp(&self, package: &str) -> PathBuf {
        self.app(package).join("lzcapp")
    }

    /// `/lzcapp/pkg` of an app.
    pub fn pkg(&self, package: &str) -> PathBuf {
        self.lzcapp(package).join("pkg")
    }

    /// `/lzcapp/var` of an app.
    pub fn var(&self, package: &str) -> PathBuf {
        self.lzcapp(package).join("var")
    }

    /// `/lzcapp/cache` of an app.
    pub fn cache(&self, package: &str) -> PathBuf {
        self.lzcapp(package).join("cache")
    }

    /// `/lzcapp/run` of an app.
    pub fn run(&self, package: &str) -> PathBuf {
        self.lzcapp(package).join("run")
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
