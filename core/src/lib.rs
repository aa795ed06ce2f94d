//! Den's record types and their validation, shared by every part of dend (and its clients):
//! what a VM is ([`vm`]), its first-boot settings ([`firstboot`]), networks and NICs ([`net`]),
//! users' roles and token scopes ([`users`]), the business OS's recorded state ([`system`]), tasks
//! ([`task`]) and events ([`event`]).
//! Pure data and pure functions (and [`new_id`]): no I/O, no async, nothing of dend's services, so
//! each layer above can depend on it.

pub mod app;
pub mod event;
pub mod firstboot;
pub mod metrics;
pub mod net;
pub mod ssh;
pub mod system;
pub mod task;
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

/// A new random id (128 bits, hex) for a record (VM, task, app service).
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::getrandom(&mut b).is_err() {
        // Fall back to time and pid: ids need uniqueness, not secrecy.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        b = (t ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
