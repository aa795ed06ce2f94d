//! Where the reader puts what it admits: nowhere (inspection) or a directory (extraction).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Which tree an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// The package's own files.
    Package,
    /// The files of `content.tar`.
    Content,
}

/// Receives admitted entries in order; names are clean and already checked.
pub trait Sink {
    /// A directory.
    fn dir(&mut self, area: Area, name: &str) -> io::Result<()>;
    /// A file to write; `None` skips its bytes.
    fn file(&mut self, area: Area, name: &str, mode: u32) -> io::Result<Option<File>>;
    /// A symlink.
    fn symlink(&mut self, area: Area, name: &str, target: &str) -> io::Result<()>;
    /// A hard link to an earlier file of the same area.
    fn hardlink(&mut self, area: Area, name: &str, target: &str) -> io::Result<()>;
}

/// Unpacks into a fresh directory: package files under `pkg/`, `content.tar` under
/// `pkg/content/`, `images/` under `images/`. Files are created read-only, never through links.
pub struct DirSink {
    root: PathBuf,
}

impl DirSink {
    /// A sink writing under `root` (which must be empty or not exist).
    pub fn new(root: &Path) -> DirSink {
        DirSink { root: root.to_path_buf() }
    }

    /// Where an entry goes.
    pub fn place(&self, area: Area, name: &str) -> PathBuf {
        match area {
            Area::Content => self.root.join("pkg/content").join(name),
            Area::Package => match name.strip_prefix("images/") {
                Some(rest) => self.root.join("images").join(rest),
                None if name == "images" => self.root.join("images"),
                None => self.root.join("pkg").join(name),
            },
        }
    }

    fn parent(&self, p: &Path) -> io::Result<()> {
        match p.parent() {
            Some(d) => fs::create_dir_all(d),
            None => Ok(()),
        }
    }
}

impl Sink for DirSink {
    fn dir(&mut self, area: Area, name: &str) -> io::Result<()> {
        fs::create_dir_all(self.place(area, name))
    }

    fn file(&mut self, area: Area, name: &str, mode: u32) -> io::Result<Option<File>> {
        let p = self.place(area, name);
        self.parent(&p)?;
        let ro = if mode & 0o111 != 0 { 0o555 } else { 0o444 };
        let f = OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).mode(0o600).open(&p)?;
        f.set_permissions(fs::Permissions::from_mode(ro))?;
        Ok(Some(f))
    }

    fn symlink(&mut self, area: Area, name: &str, target: &str) -> io::Result<()> {
        let p = self.place(area, name);
        self.parent(&p)?;
        std::os::unix::fs::symlink(target, p)
    }

    fn hardlink(&mut self, area: Area, name: &str, target: &str) -> io::Result<()> {
        let p = self.place(area, name);
        self.parent(&p)?;
        fs::hard_link(self.place(area, target), p)
    }
}

/// Writes into an optional file.
pub fn write_opt(f: &mut Option<File>, buf: &[u8]) -> io::Result<()> {
    match f {
        Some(f) => f.write_all(buf),
        None => Ok(()),
    }
}
