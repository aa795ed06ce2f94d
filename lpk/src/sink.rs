//! Where the reader puts what it admits: nowhere (inspection) or a directory (extraction).

use den_guest_tree::{GuestTree, Links};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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
/// `pkg/content/`, `images/` under `images/`. Every entry is made through a [`GuestTree`] of
/// the destination: no link the package made is ever followed (a path through one is refused,
/// whatever the rules let through), and files are created new and read-only.
pub struct DirSink {
    tree: GuestTree,
}

impl DirSink {
    /// A sink writing under `root`, an empty directory only `dend` can reach.
    pub fn new(root: &Path) -> io::Result<DirSink> {
        Ok(DirSink { tree: GuestTree::open(root, Links::Never)? })
    }

    /// Where an entry goes, relative to the root.
    pub fn place(area: Area, name: &str) -> String {
        match area {
            Area::Content => format!("pkg/content/{name}"),
            Area::Package => match name.strip_prefix("images/") {
                Some(rest) => format!("images/{rest}"),
                None if name == "images" => "images".into(),
                None => format!("pkg/{name}"),
            },
        }
    }

    /// Makes the parent directories of `place`.
    fn parent(&self, place: &str) -> io::Result<()> {
        if let Some((dir, _)) = place.rsplit_once('/') {
            self.tree.mkdir_all(dir, 0o755)?;
        }
        Ok(())
    }
}

impl Sink for DirSink {
    fn dir(&mut self, area: Area, name: &str) -> io::Result<()> {
        self.tree.mkdir_all(&Self::place(area, name), 0o755)?;
        Ok(())
    }

    fn file(&mut self, area: Area, name: &str, mode: u32) -> io::Result<Option<File>> {
        let p = Self::place(area, name);
        self.parent(&p)?;
        let ro = if mode & 0o111 != 0 { 0o555 } else { 0o444 };
        let f = self.tree.create_file(&p, 0o600)?;
        f.set_permissions(fs::Permissions::from_mode(ro))?;
        Ok(Some(f))
    }

    fn symlink(&mut self, area: Area, name: &str, target: &str) -> io::Result<()> {
        let p = Self::place(area, name);
        self.parent(&p)?;
        Ok(self.tree.symlink(&p, target)?)
    }

    fn hardlink(&mut self, area: Area, name: &str, target: &str) -> io::Result<()> {
        let p = Self::place(area, name);
        self.parent(&p)?;
        Ok(self.tree.hard_link(&Self::place(area, target), &p)?)
    }
}

/// Writes into an optional file.
pub fn write_opt(f: &mut Option<File>, buf: &[u8]) -> io::Result<()> {
    match f {
        Some(f) => f.write_all(buf),
        None => Ok(()),
    }
}
