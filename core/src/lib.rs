//! Den's record types and their validation, shared by every part of dend (and its clients):
//! what a VM is ([`vm`]), its first-boot settings ([`firstboot`]), networks and NICs ([`net`]),
//! users' roles and token scopes ([`users`]), and the business OS's recorded state ([`system`]).
//! Pure data and pure functions: no I/O, no async, nothing of dend's services, so each layer
//! above can depend on it.

pub mod firstboot;
pub mod net;
pub mod system;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod users;
pub mod vm;

/// A field-level validation failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field (`name`, `cpus`, ...).
    pub field: &'static str,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// Whether `name` is a valid VM name.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !name.ends_with('-')
}

/// Whether `name` is an image name: 1 to 63 of a-z, 0-9 and -, starting with a letter.
pub fn valid_image_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}
