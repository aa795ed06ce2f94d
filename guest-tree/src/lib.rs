//! Directory trees that someone other than `dend` controls, and the only way Den's host code
//! reaches into them.
//!
//! `dend` runs as root. A guest's root user can change any folder shared into it (`/lzcapp/var`,
//! Docker shares) at any moment, and a package author chooses every name and link of an
//! unpacked package. A host path into such a tree is therefore a bug: any of its components
//! may be swapped for a link between a check and a use. This crate holds such a tree as a
//! directory descriptor ([`GuestTree`]) and resolves every path beneath it with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, plus `RESOLVE_NO_SYMLINKS` unless the tree is
//! [`Links::Inside`]). What that gives, by construction:
//!
//! - nothing outside the tree is ever opened, created, listed or removed;
//! - no write, create or remove follows a link (links are made and removed as links);
//! - only regular files and directories are opened: FIFOs, sockets and device nodes are
//!   refused before they are opened;
//! - reads and listings are bounded by the caller ([`GuestTree::read`],
//!   [`GuestTree::entries`]); removing a tree holds a bounded number of descriptors however
//!   deep the guest made it.
//!
//! Paths are given as text and checked as [`RelPath`]s: relative, no `.`/`..`, no NUL.
//!
//! [`tar_headers`] guards the tar streams the same parties send (packages, image layers).

mod error;
mod rel;
mod remove;
pub mod tar_headers;
mod tree;

pub use error::TreeError;
pub use rel::{RelPath, MAX_NAME, MAX_PATH};
pub use tree::{open_regular, remove_tree, Entry, GuestTree, Kind, Links, Meta, Node, Opened};

#[cfg(test)]
mod tests;
