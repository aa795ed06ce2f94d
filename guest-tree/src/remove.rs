//! Listing and removing whole trees by descriptor: no path is resolved twice, no link is
//! followed, and a tree as deep or as wide as a guest cares to make is removed with a bounded
//! number of open descriptors and bounded memory.

use crate::tree::{shown, Links};
use crate::{GuestTree, RelPath, TreeError};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::UnlinkatFlags;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Directories held open at once while removing; deeper ones are moved up to the top.
const MAX_DEPTH: usize = 32;
/// Names read from a directory per round.
const BATCH: usize = 4096;
/// Rounds of removal before giving up on a directory that keeps being refilled (a guest writing
/// into it while it is removed), and rounds in a row without progress in a tree.
const MAX_ROUNDS: usize = 1 << 12;

/// Up to `max` names in the directory `fd` (without `.` and `..`), read from its start.
pub(crate) fn names(tree: &GuestTree, rel: &RelPath, fd: &OwnedFd, max: usize) -> Result<Vec<CString>, TreeError> {
    let fail = |e: Errno| tree.io(rel.as_str(), e.into());
    let dup = fd.try_clone().map_err(|e| tree.io(rel.as_str(), e))?;
    // A duplicate shares the read position: start from the top every time.
    nix::unistd::lseek(dup.as_raw_fd(), 0, nix::unistd::Whence::SeekSet).map_err(fail)?;
    let mut dir = nix::dir::Dir::from(dup).map_err(fail)?;
    let mut out = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(|e| tree.io(rel.as_str(), e.into()))?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        out.push(name.to_owned());
        if out.len() >= max {
            break;
        }
    }
    Ok(out)
}

/// A directory being emptied: its descriptor, and its name in the directory above.
struct Level {
    fd: OwnedFd,
    name: CString,
}

impl GuestTree {
    /// Removes `rel` and, if it is a directory, everything beneath it. A missing entry is
    /// fine. The root (`""`) is emptied and kept. Links are removed, never followed.
    pub fn remove_all(&self, rel: &str) -> Result<(), TreeError> {
        let path = RelPath::new(rel)?;
        if path.is_root() {
            let root = self.resolve_at(self.as_fd(), ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0, Links::Never);
            return self.empty(rel, root.map_err(|e| self.refused(rel, e))?);
        }
        let (parent, last) = match self.parent(&path) {
            Ok(p) => p,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        match nix::unistd::unlinkat(Some(parent.as_raw_fd()), last, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EISDIR) => {}
            Err(e) => return Err(self.io(rel, e.into())),
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
        match self.resolve_at(parent.as_fd(), last, flags, 0, Links::Never) {
            Ok(fd) => self.empty(rel, fd)?,
            // Swapped for something else meanwhile: remove that instead.
            Err(Errno::ELOOP | Errno::ENOTDIR) => {}
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(self.refused(rel, e)),
        }
        for _ in 0..MAX_ROUNDS {
            let removed =
                nix::unistd::unlinkat(Some(parent.as_raw_fd()), last, UnlinkatFlags::RemoveDir).or_else(|e| match e {
                    Errno::ENOTDIR => nix::unistd::unlinkat(Some(parent.as_raw_fd()), last, UnlinkatFlags::NoRemoveDir),
                    e => Err(e),
                });
            match removed {
                Ok(()) | Err(Errno::ENOENT) => return Ok(()),
                // Refilled meanwhile (a guest writing into it): empty it again.
                Err(Errno::ENOTEMPTY | Errno::EEXIST) => {
                    match self.resolve_at(parent.as_fd(), last, flags, 0, Links::Never) {
                        Ok(fd) => self.empty(rel, fd)?,
                        Err(Errno::ELOOP | Errno::ENOTDIR | Errno::ENOENT) => {}
                        Err(e) => return Err(self.refused(rel, e)),
                    }
                }
                Err(e) => return Err(self.io(rel, e.into())),
            }
        }
        Err(self.limit(rel, "keeps being refilled while it is removed"))
    }

    fn limit(&self, rel: &str, reason: &str) -> TreeError {
        TreeError::Limit { tree: self.label().to_string(), path: shown(rel), reason: reason.to_string() }
    }

    /// Empties the directory `top` (named `rel` in messages), depth first, holding at most
    /// [`MAX_DEPTH`] descriptors: a directory found deeper is renamed into `top` and emptied
    /// from there.
    fn empty(&self, rel: &str, top: OwnedFd) -> Result<(), TreeError> {
        let top_raw = top.as_raw_fd();
        let mut stack: Vec<Level> = vec![Level { fd: top, name: CString::default() }];
        let mut moved = 0u64;
        // Rounds in a row that removed nothing (a tree that is refilled as fast as it is
        // emptied); any progress starts the count again, so size alone never stops removal.
        let mut stalled = 0usize;
        let here = RelPath::new(rel)?;
        while let Some(level) = stack.last() {
            let batch = names(self, &here, &level.fd, BATCH)?;
            let cur = level.fd.as_raw_fd();
            let mut descend = None;
            let mut removed = false;
            for name in &batch {
                match nix::unistd::unlinkat(Some(cur), name.as_c_str(), UnlinkatFlags::NoRemoveDir) {
                    Ok(()) => {
                        removed = true;
                        continue;
                    }
                    Err(Errno::ENOENT) => continue,
                    Err(Errno::EISDIR) => {}
                    Err(e) => return Err(self.io(rel, e.into())),
                }
                match nix::unistd::unlinkat(Some(cur), name.as_c_str(), UnlinkatFlags::RemoveDir) {
                    Ok(()) => {
                        removed = true;
                        continue;
                    }
                    Err(Errno::ENOENT) => continue,
                    Err(Errno::ENOTEMPTY | Errno::EEXIST) => {}
                    Err(Errno::ENOTDIR) => continue,
                    Err(e) => return Err(self.io(rel, e.into())),
                }
                if stack.len() >= MAX_DEPTH {
                    moved += 1;
                    let new = CString::new(format!(".den-rm-{}-{moved}", std::process::id()))
                        .map_err(|e| self.io(rel, std::io::Error::other(e)))?;
                    match nix::fcntl::renameat(Some(cur), name.as_c_str(), Some(top_raw), new.as_c_str()) {
                        Ok(()) | Err(Errno::ENOENT) => continue,
                        Err(e) => return Err(self.io(rel, e.into())),
                    }
                }
                // One component straight from the directory (no `/`, never `.` or `..`), opened
                // with O_NOFOLLOW: nothing to resolve, so nothing to escape through.
                match open_raw(cur, name) {
                    Ok(fd) => {
                        descend = Some(Level { fd, name: name.clone() });
                        break;
                    }
                    Err(Errno::ELOOP | Errno::ENOTDIR | Errno::ENOENT) => continue,
                    Err(e) => return Err(self.io(rel, e.into())),
                }
            }
            if removed || descend.is_some() || batch.is_empty() {
                stalled = 0;
            } else {
                stalled += 1;
                if stalled > MAX_ROUNDS {
                    return Err(self.limit(rel, "keeps being refilled while it is removed"));
                }
            }
            match descend {
                Some(next) => stack.push(next),
                None if batch.is_empty() => {
                    let done = stack.pop().ok_or_else(|| self.limit(rel, "lost its place"))?;
                    if let Some(parent) = stack.last() {
                        match nix::unistd::unlinkat(
                            Some(parent.fd.as_raw_fd()),
                            done.name.as_c_str(),
                            UnlinkatFlags::RemoveDir,
                        ) {
                            Ok(()) | Err(Errno::ENOENT) => {}
                            // Refilled or swapped: the parent's next round deals with it.
                            Err(Errno::ENOTEMPTY | Errno::EEXIST | Errno::ENOTDIR) => {}
                            Err(e) => return Err(self.io(rel, e.into())),
                        }
                    }
                }
                None => {}
            }
        }
        Ok(())
    }
}

/// Opens the directory `name` (one component, as raw bytes) in `dir`, never through a link.
fn open_raw(dir: std::os::fd::RawFd, name: &CString) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(Some(dir), name.as_c_str(), flags, nix::sys::stat::Mode::empty())?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}
