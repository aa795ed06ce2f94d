//! Network helpers shared by dend and den-vmm: [`MacAddr`], [`fnv1a`], [`tap`], [`unix`] and [`url`].

pub mod tap;
pub mod unix;
pub mod url;

use std::fmt;
use std::str::FromStr;

/// FNV-1a, 64 bits: a stable hash for names and addresses that must not change between releases
/// (unlike std's `DefaultHasher`).
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// A unicast Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr([u8; 6]);

/// Why a text is not a MAC address Den accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    /// Not six two-digit hex pairs separated by `:`.
    #[error("MAC `{0}`: expected six two-digit hex bytes like 52:54:00:12:34:56")]
    Syntax(String),
    /// The group bit is set: a multicast or broadcast address cannot be a NIC's own.
    #[error("MAC `{0}` is a multicast address (the first byte is odd); a NIC needs a unicast one")]
    Multicast(String),
}

impl MacAddr {
    /// Parses `52:54:00:12:34:56` (either case): exactly six pairs of hex digits, unicast.
    pub fn parse(text: &str) -> Result<MacAddr, MacError> {
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for b in bytes.iter_mut() {
            let part = parts.next().ok_or_else(|| MacError::Syntax(text.into()))?;
            if part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(MacError::Syntax(text.into()));
            }
            *b = u8::from_str_radix(part, 16).map_err(|_| MacError::Syntax(text.into()))?;
        }
        if parts.next().is_some() {
            return Err(MacError::Syntax(text.into()));
        }
        MacAddr::unicast(bytes).ok_or_else(|| MacError::Multicast(text.into()))
    }

    /// The address with these bytes, when it is unicast.
    pub fn unicast(bytes: [u8; 6]) -> Option<MacAddr> {
        (bytes[0] & 1 == 0).then_some(MacAddr(bytes))
    }

    /// A stable, locally administered address `prefix:h0:h1:..` from the FNV-1a hash of `seed`:
    /// the hash's big-endian bytes fill what the prefix leaves. The prefix's first byte must be
    /// unicast (even); `None` otherwise or when it is longer than 5 bytes.
    pub fn derived(prefix: &[u8], seed: impl IntoIterator<Item = u8>) -> Option<MacAddr> {
        if prefix.is_empty() || prefix.len() > 5 {
            return None;
        }
        let hash = fnv1a(seed).to_be_bytes();
        let mut bytes = [0u8; 6];
        bytes[..prefix.len()].copy_from_slice(prefix);
        bytes[prefix.len()..].copy_from_slice(&hash[..6 - prefix.len()]);
        MacAddr::unicast(bytes)
    }

    /// The six bytes.
    pub fn bytes(self) -> [u8; 6] {
        self.0
    }
}

impl FromStr for MacAddr {
    type Err = MacError;

    fn from_str(text: &str) -> Result<MacAddr, MacError> {
        MacAddr::parse(text)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_one_strict_way() {
        let m = MacAddr::parse("52:54:00:0A:0b:ff").unwrap();
        assert_eq!(m.bytes(), [0x52, 0x54, 0, 10, 11, 255]);
        assert_eq!(m.to_string(), "52:54:00:0a:0b:ff");
        assert_eq!("02:de:00:00:00:01".parse::<MacAddr>().unwrap().bytes()[1], 0xde);
        for bad in [
            "52:54:00:0a:0b",
            "52:54:00:0a:0b:zz",
            "52:54:00:0a:0b:ff:00",
            "2:54:00:0a:0b:ff",
            "+2:54:00:0a:0b:ff",
            "",
            "52-54-00-0a-0b-ff",
        ] {
            assert!(matches!(MacAddr::parse(bad), Err(MacError::Syntax(_))), "{bad}");
        }
        assert!(matches!(MacAddr::parse("01:00:5e:00:00:01"), Err(MacError::Multicast(_))));
        assert!(MacAddr::parse("ff:ff:ff:ff:ff:ff").unwrap_err().to_string().contains("unicast"));
    }

    #[test]
    fn derived_macs_are_stable_and_keep_their_prefix() {
        let a = MacAddr::derived(&[0x02, 0xde], "vm1".bytes()).unwrap();
        assert_eq!(a, MacAddr::derived(&[0x02, 0xde], "vm1".bytes()).unwrap());
        assert_ne!(a, MacAddr::derived(&[0x02, 0xde], "vm2".bytes()).unwrap());
        assert_eq!(&a.bytes()[..2], &[0x02, 0xde]);
        let h = fnv1a("vm1".bytes()).to_be_bytes();
        assert_eq!(&a.bytes()[2..], &h[..4]);
        assert!(MacAddr::derived(&[0x01], "x".bytes()).is_none(), "multicast prefix");
        assert!(MacAddr::derived(&[], "x".bytes()).is_none());
    }

    #[test]
    fn fnv1a_is_the_published_function() {
        // Test vectors of FNV-1a 64 (Fowler, Noll, Vo).
        assert_eq!(fnv1a(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(*b"foobar"), 0x8594_4171_f739_67e8);
    }
}
