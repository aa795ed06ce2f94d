//! Where dend keeps things. One `--data-dir` moves all of them, so tests run side by side.

use std::path::{Path, PathBuf};

/// dend's directories and files.
#[derive(Debug, Clone)]
pub struct Paths {
    /// State: the database and VM disks (`/var/lib/den`).
    pub data: PathBuf,
    /// Runtime: sockets, per-VM process directories (`/run/den`).
    pub run: PathBuf,
    /// The image store VMs are created from.
    pub images: PathBuf,
}

impl Paths {
    /// Paths under `data` and `run`, with images from `images`.
    pub fn new(data: &Path, run: &Path, images: &Path) -> Paths {
        Paths { data: data.into(), run: run.into(), images: images.into() }
    }

    /// The state database.
    pub fn db(&self) -> PathBuf {
        self.data.join("state.db")
    }

    /// The API's Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.run.join("dend.sock")
    }

    /// A VM's disks.
    pub fn vm_data(&self, id: &str) -> PathBuf {
        self.data.join("vms").join(id)
    }

    /// A VM's runtime directory (engine sockets, pid, logs).
    pub fn vm_run(&self, id: &str) -> PathBuf {
        self.run.join("vms").join(id)
    }

    /// Creates the directories (private to root).
    pub fn create(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        for d in [&self.data, &self.run, &self.data.join("vms"), &self.run.join("vms")] {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(d)?;
        }
        Ok(())
    }
}

/// Default image store: the one `den image build` fills (`$DEN_CACHE_DIR/store`, else
/// `~/.cache/den/store`).
pub fn default_image_store() -> PathBuf {
    std::env::var_os("DEN_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/den"))
        .join("store")
}
