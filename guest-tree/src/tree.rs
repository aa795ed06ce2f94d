//! [`GuestTree`]: a directory handle and the operations on paths beneath it.

use crate::{RelPath, TreeError};
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

/// How a tree treats symbolic links when it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// No link is ever followed: a link anywhere on a path refuses it. For every tree a guest
    /// can write (shared folders), and while a package is unpacked.
    Never,
    /// Links are followed when they resolve inside the tree (the kernel refuses any that climb
    /// out or are absolute), for reads and for the parents of what is written. Only for trees
    /// that nobody else changes while dend works in them: an unpacked package's files (served
    /// by the ingress), an image root dend is building from layers. The last component of a
    /// write is still never followed: a link there is replaced or refused, not written through.
    Inside,
    /// Links are followed as if the tree were `/`: absolute links and `..` stay in it (the
    /// kernel's `RESOLVE_IN_ROOT`), as a container sees its image. For an image root dend
    /// builds from layers; writes as in [`Links::Inside`].
    InRoot,
}

/// What an entry is, read without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A FIFO, socket or device node.
    Other(&'static str),
}

impl Kind {
    fn of(st: &FileStat) -> Kind {
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFREG => Kind::File,
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFLNK => Kind::Symlink,
            SFlag::S_IFIFO => Kind::Other("a FIFO"),
            SFlag::S_IFSOCK => Kind::Other("a socket"),
            SFlag::S_IFCHR => Kind::Other("a character device"),
            SFlag::S_IFBLK => Kind::Other("a block device"),
            _ => Kind::Other("of an unknown type"),
        }
    }

    /// In words, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::File => "a file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symbolic link",
            Kind::Other(what) => what,
        }
    }
}

/// An entry's metadata, as `lstat` gives it (links are not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Its type.
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Number of hard links.
    pub nlink: u64,
}

impl Meta {
    fn of(st: &FileStat) -> Meta {
        Meta {
            kind: Kind::of(st),
            size: st.st_size.max(0) as u64,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime: st.st_mtime,
            nlink: st.st_nlink,
        }
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name (lossy UTF-8 for display; names that are not UTF-8 are listed but cannot be
    /// opened by name).
    pub name: String,
    /// Its type, without following it.
    pub kind: Kind,
}

/// What [`GuestTree::open_entry`] found.
#[derive(Debug)]
pub enum Opened {
    /// A regular file, open for reading.
    File(File),
    /// A directory, as a tree of its own (with the same link rule).
    Dir(GuestTree),
}

/// A directory that someone other than `dend` controls (a guest through a shared folder, a
/// package author through an unpacked package), held open by a descriptor. Every path is
/// resolved beneath that descriptor by the kernel (`openat2` with `RESOLVE_BENEATH`,
/// `RESOLVE_NO_MAGICLINKS` and, unless the tree is [`Links::Inside`], `RESOLVE_NO_SYMLINKS`), so
/// no path can leave it, whatever the tree's owner does to it meanwhile. Only regular files are
/// opened (never FIFOs or device nodes), and no write, create or remove ever follows a link.
#[derive(Debug)]
pub struct GuestTree {
    dir: OwnedFd,
    label: Arc<str>,
    links: Links,
}

/// How many times a resolution is tried again when the kernel answers `EAGAIN` (a rename
/// raced it).
const RETRIES: usize = 64;

fn errno_io(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

impl GuestTree {
    /// Opens the directory at `root` as a tree. `root` itself is a host path that only `dend`
    /// controls (every component of it); its last component must not be a link.
    pub fn open(root: &Path, links: Links) -> Result<GuestTree, TreeError> {
        let label: Arc<str> = Arc::from(root.display().to_string());
        let fd = nix::fcntl::open(
            root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::ELOOP | Errno::ENOTDIR => TreeError::Kind {
                tree: label.to_string(),
                path: ".".into(),
                found: "not a directory (or a link)",
                wanted: "a directory",
            },
            e => TreeError::Io { tree: label.to_string(), path: ".".into(), source: errno_io(e) },
        })?;
        // SAFETY: open returned a new descriptor that nothing else owns.
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(GuestTree { dir, label, links })
    }

    /// The tree's host path, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The link rule.
    pub fn links(&self) -> Links {
        self.links
    }

    /// A descriptor of the tree's root (an `O_PATH` one).
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// The directory `dir`, found at `rel` in this tree, as a tree of its own with the same
    /// link rule.
    fn child(&self, rel: &RelPath, dir: OwnedFd) -> GuestTree {
        let label = if rel.is_root() { self.label.clone() } else { Arc::from(format!("{}/{}", self.label, rel)) };
        GuestTree { dir, label, links: self.links }
    }

    pub(crate) fn io(&self, path: &str, source: std::io::Error) -> TreeError {
        TreeError::Io { tree: self.label.to_string(), path: shown(path), source }
    }

    /// Turns the errno of a resolution into an error that says what was refused.
    pub(crate) fn refused(&self, path: &str, e: Errno) -> TreeError {
        let (tree, path) = (self.label.to_string(), shown(path));
        match e {
            Errno::ELOOP => TreeError::Link { tree, path },
            Errno::EXDEV => TreeError::Outside { tree, path },
            Errno::ENOSYS => TreeError::Io {
                tree,
                path,
                source: std::io::Error::other("this kernel has no openat2 (Linux 5.6 or newer is needed)"),
            },
            e => TreeError::Io { tree, path, source: errno_io(e) },
        }
    }

    fn kind_err(&self, path: &str, found: Kind, wanted: &'static str) -> TreeError {
        TreeError::Kind { tree: self.label.to_string(), path: shown(path), found: found.describe(), wanted }
    }

    fn rel(text: &str) -> Result<RelPath, TreeError> {
        RelPath::new(text)
    }

    /// Resolves `rel` beneath `at` with `flags`; `links` says whether links may be followed.
    pub(crate) fn resolve_at(
        &self,
        at: BorrowedFd<'_>,
        rel: &str,
        flags: OFlag,
        mode: u32,
        links: Links,
    ) -> Result<OwnedFd, Errno> {
        let resolve = ResolveFlag::RESOLVE_NO_MAGICLINKS
            | match links {
                Links::Never => ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS,
                Links::Inside => ResolveFlag::RESOLVE_BENEATH,
                Links::InRoot => ResolveFlag::RESOLVE_IN_ROOT,
            };
        // openat2 refuses O_PATH with any flag but O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC.
        let extra = if flags.contains(OFlag::O_PATH) { OFlag::O_CLOEXEC } else { OFlag::O_CLOEXEC | OFlag::O_NOCTTY };
        let mut how = OpenHow::new().flags(flags | extra).resolve(resolve);
        if flags.contains(OFlag::O_CREAT) {
            how = how.mode(Mode::from_bits_truncate(mode));
        }
        let path = if rel.is_empty() { "." } else { rel };
        for _ in 0..RETRIES {
            match nix::fcntl::openat2(at.as_raw_fd(), path, how) {
                // SAFETY: openat2 returned a new descriptor that nothing else owns.
                Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Errno::EAGAIN)
    }

    fn resolve(&self, rel: &RelPath, flags: OFlag, links: Links) -> Result<OwnedFd, TreeError> {
        self.resolve_at(self.dir.as_fd(), rel.syscall(), flags, 0, links).map_err(|e| self.refused(rel.as_str(), e))
    }

    /// The parent directory of `rel` (an `O_PATH` descriptor, reached by the tree's link rule)
    /// and its last component. The root has no parent.
    pub(crate) fn parent<'a>(&self, rel: &'a RelPath) -> Result<(OwnedFd, &'a str), TreeError> {
        let Some((parent, last)) = rel.split_last() else {
            return Err(TreeError::BadPath { path: ".".into(), reason: "names the tree's root itself".into() });
        };
        let fd = self.resolve(&parent, OFlag::O_PATH | OFlag::O_DIRECTORY, self.links)?;
        Ok((fd, last))
    }

    /// A directory beneath this tree, as a tree of its own with the same link rule.
    pub fn subtree(&self, rel: &str) -> Result<GuestTree, TreeError> {
        let rel = Self::rel(rel)?;
        let dir = self.resolve(&rel, OFlag::O_PATH | OFlag::O_DIRECTORY, self.links).map_err(|e| match e {
            TreeError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOTDIR) => {
                self.kind_err(rel.as_str(), Kind::Other("not a directory"), "a directory")
            }
            e => e,
        })?;
        Ok(self.child(&rel, dir))
    }

    /// Opens `rel` as a path descriptor and reads its metadata (following links only as the
    /// tree's rule allows).
    fn open_path(&self, rel: &RelPath) -> Result<(OwnedFd, FileStat), TreeError> {
        let last = if self.links == Links::Never { OFlag::O_NOFOLLOW } else { OFlag::empty() };
        let fd = self.resolve(rel, OFlag::O_PATH | last, self.links)?;
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| self.io(rel.as_str(), errno_io(e)))?;
        Ok((fd, st))
    }

    fn reopen(&self, rel: &RelPath, fd: &OwnedFd) -> Result<File, TreeError> {
        reopen(fd).map_err(|e| self.io(rel.as_str(), e))
    }

    /// Opens the regular file `rel` for reading. FIFOs, sockets and device nodes are refused
    /// without being opened.
    pub fn open_file(&self, rel: &str) -> Result<File, TreeError> {
        let rel = Self::rel(rel)?;
        let (fd, st) = self.open_path(&rel)?;
        match Kind::of(&st) {
            Kind::File => self.reopen(&rel, &fd),
            other => Err(self.kind_err(rel.as_str(), other, "a file")),
        }
    }

    /// Opens `rel`, a regular file (for reading) or a directory (as a tree).
    pub fn open_entry(&self, rel: &str) -> Result<Opened, TreeError> {
        let rel = Self::rel(rel)?;
        let (fd, st) = self.open_path(&rel)?;
        match Kind::of(&st) {
            Kind::File => Ok(Opened::File(self.reopen(&rel, &fd)?)),
            Kind::Dir => Ok(Opened::Dir(self.child(&rel, fd))),
            other => Err(self.kind_err(rel.as_str(), other, "a file or directory")),
        }
    }

    /// Reads the regular file `rel`, refusing one larger than `max` bytes.
    pub fn read(&self, rel: &str, max: u64) -> Result<Vec<u8>, TreeError> {
        let f = self.open_file(rel)?;
        let mut out = Vec::new();
        f.take(max.saturating_add(1)).read_to_end(&mut out).map_err(|e| self.io(rel, e))?;
        if out.len() as u64 > max {
            return Err(TreeError::Limit {
                tree: self.label.to_string(),
                path: shown(rel),
                reason: format!("is larger than {max} bytes"),
            });
        }
        Ok(out)
    }

    /// Creates the new file `rel` (it must not exist; never through a link) with `mode`, open
    /// for writing.
    pub fn create_file(&self, rel: &str, mode: u32) -> Result<File, TreeError> {
        let rel = Self::rel(rel)?;
        let (parent, last) = self.parent(&rel)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
        let fd = self
            .resolve_at(parent.as_fd(), last, flags, mode, Links::Never)
            .map_err(|e| self.refused(rel.as_str(), e))?;
        Ok(File::from(fd))
    }

    /// Creates the new file `rel` holding `data`, flushed to disk.
    pub fn write_new(&self, rel: &str, data: &[u8], mode: u32) -> Result<(), TreeError> {
        let mut f = self.create_file(rel, mode)?;
        f.write_all(data).and_then(|()| f.sync_data()).map_err(|e| self.io(rel, e))
    }

    /// Makes `rel` hold `data`, whether or not it exists: a new file is written beside it and
    /// renamed over it, so whatever was there (a link included) is replaced, never written
    /// through.
    pub fn replace(&self, rel: &str, data: &[u8], mode: u32) -> Result<(), TreeError> {
        let path = Self::rel(rel)?;
        let (parent, last) = path.split_last().ok_or_else(|| self.kind_err(rel, Kind::Dir, "a file"))?;
        let mut cut = last.len().min(200);
        while !last.is_char_boundary(cut) {
            cut -= 1;
        }
        let tmp = parent.join(&format!(".{}.den-new-{}", &last[..cut], std::process::id()))?;
        let _ = self.remove_file(tmp.as_str());
        self.write_new(tmp.as_str(), data, mode)?;
        self.rename(tmp.as_str(), rel).inspect_err(|_| {
            let _ = self.remove_file(tmp.as_str());
        })
    }

    /// Makes the directory `rel` (its parent must exist).
    pub fn mkdir(&self, rel: &str, mode: u32) -> Result<(), TreeError> {
        let rel = Self::rel(rel)?;
        let (parent, last) = self.parent(&rel)?;
        nix::sys::stat::mkdirat(Some(parent.as_raw_fd()), last, Mode::from_bits_truncate(mode))
            .map_err(|e| self.io(rel.as_str(), errno_io(e)))
    }

    /// Makes the directory `rel` and any missing parents (each with `mode`), and opens it as a
    /// tree. Existing directories are fine; a link or a file on the way is refused.
    pub fn mkdir_all(&self, rel: &str, mode: u32) -> Result<GuestTree, TreeError> {
        let path = Self::rel(rel)?;
        let mut cur = self.dir.try_clone().map_err(|e| self.io(".", e))?;
        let mut done = String::new();
        for part in path.components() {
            if !done.is_empty() {
                done.push('/');
            }
            done.push_str(part);
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
            // Each prefix from the root: a link inside the tree may climb to any part of it.
            let next = match self.resolve_at(self.dir.as_fd(), &done, flags, 0, self.links) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    match nix::sys::stat::mkdirat(Some(cur.as_raw_fd()), part, Mode::from_bits_truncate(mode)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(self.io(&done, errno_io(e))),
                    }
                    self.resolve_at(self.dir.as_fd(), &done, flags, 0, self.links)
                        .map_err(|e| self.refused(&done, e))?
                }
                Err(Errno::ENOTDIR) => return Err(self.kind_err(&done, Kind::Other("not a directory"), "a directory")),
                Err(e) => return Err(self.refused(&done, e)),
            };
            cur = next;
        }
        Ok(self.child(&path, cur))
    }

    /// Makes the symbolic link `rel` pointing to `target`. The target is stored as written and
    /// never followed by this module in a [`Links::Never`] tree.
    pub fn symlink(&self, rel: &str, target: &str) -> Result<(), TreeError> {
        let rel = Self::rel(rel)?;
        let (parent, last) = self.parent(&rel)?;
        nix::unistd::symlinkat(target, Some(parent.as_raw_fd()), last).map_err(|e| self.io(rel.as_str(), errno_io(e)))
    }

    /// Makes `new` a hard link to the existing entry `existing` (the link itself if it is one).
    pub fn hard_link(&self, existing: &str, new: &str) -> Result<(), TreeError> {
        let (from, to) = (Self::rel(existing)?, Self::rel(new)?);
        let (from_dir, from_last) = self.parent(&from)?;
        let (to_dir, to_last) = self.parent(&to)?;
        nix::unistd::linkat(
            Some(from_dir.as_raw_fd()),
            from_last,
            Some(to_dir.as_raw_fd()),
            to_last,
            nix::fcntl::AtFlags::empty(),
        )
        .map_err(|e| self.io(to.as_str(), errno_io(e)))
    }

    /// The metadata of `rel`, without following it if it is a link.
    pub fn metadata(&self, rel: &str) -> Result<Meta, TreeError> {
        let path = Self::rel(rel)?;
        let st = match path.split_last() {
            None => nix::sys::stat::fstat(self.dir.as_raw_fd()),
            Some(_) => {
                let (parent, last) = self.parent(&path)?;
                nix::sys::stat::fstatat(Some(parent.as_raw_fd()), last, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            }
        }
        .map_err(|e| self.io(rel, errno_io(e)))?;
        Ok(Meta::of(&st))
    }

    /// Whether `rel` exists (as anything, a link included). Refusals (a link on the way) are
    /// errors, not `false`.
    pub fn exists(&self, rel: &str) -> Result<bool, TreeError> {
        match self.metadata(rel) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Opens the directory `rel` for listing (a real descriptor, not a path one).
    pub(crate) fn open_listing(&self, rel: &RelPath) -> Result<OwnedFd, TreeError> {
        self.resolve(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY, self.links)
    }

    /// Up to `max` entries of the directory `rel` (without `.` and `..`), in the order the file
    /// system gives them; more than `max` is an error, so that a guest cannot make a listing
    /// grow without bound.
    pub fn entries(&self, rel: &str, max: usize) -> Result<Vec<Entry>, TreeError> {
        let path = Self::rel(rel)?;
        let fd = self.open_listing(&path)?;
        let mut out = Vec::new();
        for name in crate::remove::names(self, &path, &fd, max.saturating_add(1))? {
            let st = nix::sys::stat::fstatat(
                Some(fd.as_raw_fd()),
                name.as_c_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            );
            let kind = match st {
                Ok(st) => Kind::of(&st),
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(self.io(rel, errno_io(e))),
            };
            out.push(Entry { name: String::from_utf8_lossy(name.as_bytes()).into_owned(), kind });
        }
        if out.len() > max {
            return Err(TreeError::Limit {
                tree: self.label.to_string(),
                path: shown(rel),
                reason: format!("holds more than {max} entries"),
            });
        }
        Ok(out)
    }

    /// Whether the directory `rel` is empty.
    pub fn is_empty_dir(&self, rel: &str) -> Result<bool, TreeError> {
        let path = Self::rel(rel)?;
        let fd = self.open_listing(&path)?;
        Ok(crate::remove::names(self, &path, &fd, 1)?.is_empty())
    }

    /// Removes the entry `rel` if it is not a directory (a link is removed, not followed).
    pub fn remove_file(&self, rel: &str) -> Result<(), TreeError> {
        let path = Self::rel(rel)?;
        let (parent, last) = self.parent(&path)?;
        nix::unistd::unlinkat(Some(parent.as_raw_fd()), last, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| self.io(rel, errno_io(e)))
    }

    /// Renames `from` to `to`, both beneath this tree (replacing `to` if it is a file, a link
    /// or an empty directory).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), TreeError> {
        self.rename_to(from, self, to)
    }

    /// Opens the file or directory `rel` itself (its last component never followed; other
    /// types refused without being opened), for changing its metadata.
    fn open_file_or_dir(&self, rel: &str) -> Result<File, TreeError> {
        let path = Self::rel(rel)?;
        let (parent, last) = self.parent(&path)?;
        let fd = self
            .resolve_at(parent.as_fd(), last, OFlag::O_PATH | OFlag::O_NOFOLLOW, 0, Links::Never)
            .map_err(|e| self.refused(rel, e))?;
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| self.io(rel, errno_io(e)))?;
        match Kind::of(&st) {
            Kind::File => self.reopen(&path, &fd),
            Kind::Dir => Ok(File::from(
                self.resolve_at(fd.as_fd(), ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0, Links::Never)
                    .map_err(|e| self.refused(rel, e))?,
            )),
            other => Err(self.kind_err(rel, other, "a file or directory")),
        }
    }

    /// Renames `from` in this tree to `to` in `other` (both on one file system), never
    /// following a link on either side; the entry moved is whatever `from` is, a link included.
    pub fn rename_to(&self, from: &str, other: &GuestTree, to: &str) -> Result<(), TreeError> {
        let (a, b) = (Self::rel(from)?, Self::rel(to)?);
        let (a_dir, a_last) = self.parent(&a)?;
        let (b_dir, b_last) = other.parent(&b)?;
        nix::fcntl::renameat(Some(a_dir.as_raw_fd()), a_last, Some(b_dir.as_raw_fd()), b_last)
            .map_err(|e| other.io(to, errno_io(e)))
    }

    /// Sets the permission bits of the file or directory `rel` (never through a link; other
    /// types are refused).
    pub fn set_mode(&self, rel: &str, mode: u32) -> Result<(), TreeError> {
        let file = self.open_file_or_dir(rel)?;
        nix::sys::stat::fchmod(file.as_raw_fd(), Mode::from_bits_truncate(mode)).map_err(|e| self.io(rel, errno_io(e)))
    }
}

/// What [`GuestTree::mknod`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// A FIFO.
    Fifo,
    /// A character device (major, minor).
    Char(u64, u64),
    /// A block device (major, minor).
    Block(u64, u64),
}

impl GuestTree {
    /// Makes a FIFO or device node at `rel` (it must not exist). This module never opens one.
    pub fn mknod(&self, rel: &str, node: Node, mode: u32) -> Result<(), TreeError> {
        let path = Self::rel(rel)?;
        let (parent, last) = self.parent(&path)?;
        let (kind, dev) = match node {
            Node::Fifo => (SFlag::S_IFIFO, 0),
            Node::Char(ma, mi) => (SFlag::S_IFCHR, nix::sys::stat::makedev(ma, mi)),
            Node::Block(ma, mi) => (SFlag::S_IFBLK, nix::sys::stat::makedev(ma, mi)),
        };
        nix::sys::stat::mknodat(Some(parent.as_raw_fd()), last, kind, Mode::from_bits_truncate(mode), dev)
            .map_err(|e| self.io(rel, errno_io(e)))
    }

    /// Sets the owner of `rel` itself (a link's own owner, not its target's).
    pub fn set_owner(&self, rel: &str, uid: u32, gid: u32) -> Result<(), TreeError> {
        let path = Self::rel(rel)?;
        let (parent, last) = self.parent(&path)?;
        nix::unistd::fchownat(
            Some(parent.as_raw_fd()),
            last,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.io(rel, errno_io(e)))
    }

    /// Sets the modification (and access) time of `rel` itself, in seconds since the epoch.
    pub fn set_mtime(&self, rel: &str, secs: i64) -> Result<(), TreeError> {
        let path = Self::rel(rel)?;
        let (parent, last) = self.parent(&path)?;
        let t = nix::sys::time::TimeSpec::new(secs, 0);
        nix::sys::stat::utimensat(
            Some(parent.as_raw_fd()),
            last,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| self.io(rel, errno_io(e)))
    }

    /// Sets the extended attribute `name` of the file or directory `rel` (never through a
    /// link; other types are refused).
    pub fn set_xattr(&self, rel: &str, name: &str, value: &[u8]) -> Result<(), TreeError> {
        let file = self.open_file_or_dir(rel)?;
        let cname = std::ffi::CString::new(name)
            .map_err(|_| TreeError::BadPath { path: name.into(), reason: "holds a NUL byte".into() })?;
        // SAFETY: the descriptor is open, the name NUL-terminated, the value a valid slice.
        let r = unsafe { libc::fsetxattr(file.as_raw_fd(), cname.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        if r == -1 {
            return Err(self.io(rel, std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// Opens the regular file at the host path `path` for reading (links on the way followed: the
/// path is the caller's), without ever opening anything else: the entry is looked at through
/// an `O_PATH` descriptor first, so a FIFO or device node swapped in for it (by whoever can
/// write its folder) is refused, not opened. The file read is the one checked.
pub fn open_regular(path: &Path) -> Result<File, TreeError> {
    let label = path.display().to_string();
    let io = |e: std::io::Error| TreeError::Io { tree: label.clone(), path: ".".into(), source: e };
    let fd = nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| io(errno_io(e)))?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| io(errno_io(e)))?;
    match Kind::of(&st) {
        Kind::File => reopen(&fd).map_err(io),
        other => Err(TreeError::Kind { tree: label, path: ".".into(), found: other.describe(), wanted: "a file" }),
    }
}

/// Opens a path descriptor for reading without resolving anything again: the descriptor
/// already names the checked inode.
fn reopen(fd: &OwnedFd) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Removes the host path `path` and, if it is a directory, everything beneath it, however deep
/// and without following any link in it (its parent folder is the caller's); missing is fine.
/// For trees whose contents someone else made (an image root, an app's data).
pub fn remove_tree(path: &Path) -> Result<(), TreeError> {
    let label = path.display().to_string();
    let bad = |reason: &str| TreeError::BadPath { path: label.clone(), reason: reason.into() };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| bad("has no UTF-8 last component"))?;
    match GuestTree::open(parent, Links::Never) {
        Ok(tree) => tree.remove_all(name),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// A path as shown in messages (`.` for the root).
pub(crate) fn shown(path: &str) -> String {
    if path.is_empty() {
        ".".into()
    } else {
        path.to_string()
    }
}
