//! Percent-decoding of URL paths and query components, as the router's extractors and dockerd
//! decode them, so that checks look at what handlers will see.

/// `s` with `%XX` decoded (and `+` as a space when `plus_is_space`, for query components);
/// bytes that are not UTF-8 are replaced.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hex = |c: u8| (c as char).to_digit(16);
    while i < b.len() {
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `s` with every byte but unreserved ones (`A-Z a-z 0-9 - . _ ~`) and `/` as `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The values of `key` in a query string or form body, in order and decoded, read as Go's
/// `url.ParseQuery` reads them (a key without `=` has the empty value).
pub fn query_values(query: &str, key: &str) -> Vec<String> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .filter(|(k, _)| percent_decode(k, true) == key)
        .map(|(_, v)| percent_decode(v, true))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_what_decoding_undoes() {
        let s = "/apps/x/a b?c=d&e";
        assert_eq!(percent_encode(s), "/apps/x/a%20b%3Fc%3Dd%26e");
        assert_eq!(percent_decode(&percent_encode(s), false), s);
    }

    #[test]
    fn decodes_like_extractors() {
        assert_eq!(percent_decode("a%2Fb%zz%4", false), "a/b%zz%4");
        assert_eq!(percent_decode("%77eb1", false), "web1");
        assert_eq!(percent_decode("a+b%2B", true), "a b+");
        assert_eq!(percent_decode("a+b", false), "a+b");
    }
}
