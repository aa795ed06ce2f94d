//! API tokens: `den_<id>_<secret>` with a 16-hex-digit id (to find the record) and 256 random
//! bits of secret, of which only the SHA-256 is stored. Shown once, at creation.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A new token: (id, the whole token string, the hash to store).
pub fn generate() -> Result<(String, String, String), String> {
    let mut b = [0u8; 40];
    getrandom(&mut b)?;
    let id = hex::encode(&b[..8]);
    let secret = hex::encode(&b[8..]);
    let hash = digest(&secret);
    Ok((id.clone(), format!("den_{id}_{secret}"), hash))
}

/// Splits a token string into (id, secret).
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("den_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && secret.len() == 64 && (id.bytes().chain(secret.bytes())).all(|c| c.is_ascii_hexdigit()))
        .then_some((id, secret))
}

/// The stored form of a secret.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two secrets (digests, CSRF values) in time that does not depend on where they
/// differ.
pub fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Fills `buf` from the kernel's random source.
pub fn getrandom(buf: &mut [u8]) -> Result<(), String> {
    getrandom::getrandom(buf).map_err(|e| format!("the kernel's random source: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_parse_verify() {
        let (id, tok, hash) = generate().unwrap();
        let (pid, secret) = parse(&tok).unwrap();
        assert_eq!(pid, id);
        assert!(same(&digest(secret), &hash));
        assert!(!same(&digest("nope"), &hash));
        assert_ne!(generate().unwrap().1, tok);
        for bad in ["", "den_", "den_xyz_abc", &tok[..tok.len() - 1], &tok.replace("den_", "pve_")] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
