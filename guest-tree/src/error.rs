//! Why an operation on a guest tree was refused or failed, naming the tree and the path.

use std::io;

/// Everything a [`crate::GuestTree`] operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The path given is not a clean relative path.
    #[error("`{path}` is not a clean relative path: it {reason}")]
    BadPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A component of the path is a symbolic link (or a magic link), which Den never follows in
    /// a tree that someone else controls.
    #[error(
        "`{path}` in {tree} is a symbolic link or lies under one; Den does not follow links in a folder \
         that a guest or a package controls"
    )]
    Link {
        /// The tree, as a host path.
        tree: String,
        /// The path inside it.
        path: String,
    },
    /// The path would resolve outside the tree (a link that climbs out, or an absolute one).
    #[error("`{path}` in {tree} leads outside it")]
    Outside {
        /// The tree, as a host path.
        tree: String,
        /// The path inside it.
        path: String,
    },
    /// The entry is of another type than the operation needs (a FIFO where a file was wanted).
    #[error("`{path}` in {tree} is {found}, not {wanted}")]
    Kind {
        /// The tree, as a host path.
        tree: String,
        /// The path inside it.
        path: String,
        /// What it is.
        found: &'static str,
        /// What the operation needs.
        wanted: &'static str,
    },
    /// A directory tree is deeper or wider than Den will walk.
    #[error("`{path}` in {tree}: {reason}")]
    Limit {
        /// The tree, as a host path.
        tree: String,
        /// The path inside it.
        path: String,
        /// Which limit.
        reason: String,
    },
    /// The system call failed (missing entry, no space, permissions, ...).
    #[error("`{path}` in {tree}: {source}")]
    Io {
        /// The tree, as a host path.
        tree: String,
        /// The path inside it.
        path: String,
        /// The cause.
        source: io::Error,
    },
}

impl TreeError {
    /// Whether the entry (or one of its parents) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, TreeError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// Whether the entry already exists.
    pub fn is_exists(&self) -> bool {
        matches!(self, TreeError::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists)
    }

    /// Whether the path was refused for safety: a link, a way out, or the wrong type.
    pub fn is_refusal(&self) -> bool {
        matches!(self, TreeError::Link { .. } | TreeError::Outside { .. } | TreeError::Kind { .. })
    }
}

impl From<TreeError> for io::Error {
    fn from(e: TreeError) -> io::Error {
        let kind = match &e {
            TreeError::Io { source, .. } => source.kind(),
            TreeError::BadPath { .. } => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::PermissionDenied,
        };
        io::Error::new(kind, e)
    }
}
