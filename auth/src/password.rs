//! Passwords: argon2id (the `argon2` crate's defaults, OWASP's minimum: 19 MiB, 2 passes) in the
//! PHC string format, so parameters can be raised later without breaking stored hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Shortest password accepted.
pub const MIN_LEN: usize = 8;
/// Longest password accepted (argon2 takes any length; this bounds the work per request).
pub const MAX_LEN: usize = 1024;

/// Hashes `password` with a fresh salt.
pub fn hash(password: &str) -> Result<String, String> {
    let mut bytes = [0u8; 16];
    super::token::getrandom(&mut bytes)?;
    let salt = SaltString::encode_b64(&bytes).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Whether `password` matches `stored` (a PHC string); false for unreadable hashes.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Checks a new password's length.
pub fn acceptable(password: &str) -> Result<(), String> {
    match password.chars().count() {
        n if n < MIN_LEN => Err(format!("a password needs at least {MIN_LEN} characters")),
        _ if password.len() > MAX_LEN => Err(format!("a password may have at most {MAX_LEN} bytes")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert!(verify("correct horse", &a));
        assert!(!verify("wrong horse", &a));
        assert_ne!(a, hash("correct horse").unwrap(), "salted");
        assert!(!verify("x", "not a hash"));
        assert!(acceptable("short").is_err() && acceptable("long enough").is_ok());
    }
}
