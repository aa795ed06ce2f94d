//! Why a package was refused, naming the entry or field and the rule it broke.

use std::path::PathBuf;

/// Everything that makes Den refuse a package, or fail to read or unpack one.
#[derive(Debug, thiserror::Error)]
pub enum LpkError {
    /// An archive entry breaks a rule (path, type, size, duplicate, ...).
    #[error("package entry `{entry}`: {rule}")]
    Entry {
        /// The entry's path as written in the archive (nested entries as `content.tar!/path`).
        entry: String,
        /// The rule it breaks, in words.
        rule: String,
    },
    /// The archive as a whole is malformed or too big.
    #[error("package: {0}")]
    Archive(String),
    /// A field of `manifest.yml` or `package.yml` is missing or invalid.
    #[error("{file}: `{field}` {rule}")]
    Field {
        /// `manifest.yml` or `package.yml`.
        file: &'static str,
        /// Dotted path of the field, e.g. `services.db.binds[0]`.
        field: String,
        /// What is wrong with it.
        rule: String,
    },
    /// The signature or release lock does not match the package.
    #[error("signature: {0}")]
    Signature(String),
    /// The package needs a newer host.
    #[error("the package needs LPK host version {needed} or newer; Den provides {have}")]
    TooNew {
        /// `min_os_version` of the package.
        needed: String,
        /// What Den implements.
        have: String,
    },
    /// Reading the package or writing the unpacked files failed.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

impl LpkError {
    /// Shorthand for [`LpkError::Entry`].
    pub fn entry(entry: impl Into<String>, rule: impl Into<String>) -> LpkError {
        LpkError::Entry { entry: entry.into(), rule: rule.into() }
    }

    /// Shorthand for [`LpkError::Field`].
    pub fn field(file: &'static str, field: impl Into<String>, rule: impl Into<String>) -> LpkError {
        LpkError::Field { file, field: field.into(), rule: rule.into() }
    }

    /// Shorthand for [`LpkError::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> LpkError {
        LpkError::Io { path: path.into(), source }
    }

    /// A stable machine-readable code for API replies.
    pub fn code(&self) -> &'static str {
        match self {
            LpkError::Entry { .. } => "lpk_entry",
            LpkError::Archive(_) => "lpk_archive",
            LpkError::Field { .. } => "lpk_field",
            LpkError::Signature(_) => "lpk_signature",
            LpkError::TooNew { .. } => "lpk_too_new",
            LpkError::Io { .. } => "lpk_io",
        }
    }
}
