//! Den's guest artifacts, built from Debian packages and addressed by content.
//!
//! - [`spec`]: the declarative image spec (YAML): kernel, init, packages, files;
//! - [`build`]: turns a spec into artifacts, stage by stage, each stage cached by the hash of
//!   its inputs (a second build of the same spec is a cache hit);
//! - [`store`]: the content-addressed store with verification on read;
//! - [`deb`], [`kernel`], [`initramfs`], [`rootfs`], [`oci`]: the builders of each artifact;
//! - [`cpio`], [`elf`], [`vmlinux`]: the formats they write and read.

pub mod build;
pub mod cpio;
pub mod deb;
pub mod elf;
pub mod initramfs;
pub mod kernel;
pub mod oci;
pub mod rootfs;
pub mod spec;
pub mod store;
pub mod tool;
pub mod vmlinux;

pub use build::{Builder, Progress, SilentProgress};
pub use spec::ImageSpec;
pub use store::{Digest256, ImageRecord, Store};

use std::path::PathBuf;

/// Everything that can go wrong while building or reading images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// File system failure at a path.
    #[error("{path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The image spec is invalid.
    #[error("image spec {file}: {reason}")]
    Spec {
        /// Spec file (or built-in name).
        file: String,
        /// What is wrong, naming the key.
        reason: String,
    },
    /// A Debian package named by the spec does not exist.
    #[error("Debian package `{name}` not found ({context}); check the name with `apt-cache search {name}`, or run `apt-get update`")]
    MissingPackage {
        /// Package name.
        name: String,
        /// Which step looked for it.
        context: String,
    },
    /// A host tool is not installed.
    #[error("`{tool}` is not installed; install it with `apt-get install {package}`")]
    ToolMissing {
        /// Program name.
        tool: String,
        /// Debian package that provides it.
        package: String,
    },
    /// A host tool failed.
    #[error("`{command}` failed ({status}):\n{output}")]
    Tool {
        /// The command line.
        command: String,
        /// Exit status.
        status: String,
        /// The end of its output.
        output: String,
    },
    /// A stored object does not match its digest.
    #[error("store object {digest} is corrupt (content hashes to {actual}) at {}; `den image build` rebuilds it, `den image gc` removes it", path.display())]
    Corrupt {
        /// Expected digest.
        digest: Digest256,
        /// Actual digest.
        actual: Digest256,
        /// File.
        path: PathBuf,
    },
    /// A referenced object is not in the store.
    #[error("store object {digest} is missing; rebuild the image with `den image build`")]
    MissingObject {
        /// The digest.
        digest: Digest256,
    },
    /// A metadata record could not be read.
    #[error("store record {}: {reason}", path.display())]
    BadRecord {
        /// File.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No image of that name.
    #[error("image `{0}` not found; `den image ls` lists images, `den image build {0}` builds a built-in one")]
    UnknownImage(String),
    /// The kernel package or a module is unusable.
    #[error("kernel: {0}")]
    Kernel(String),
    /// An OCI layout is invalid.
    #[error("OCI layout {path}: {reason}")]
    Oci {
        /// Layout directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl ImageError {
    /// An I/O error at a path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ImageError {
        ImageError::Io { path: path.into(), source }
    }
}
