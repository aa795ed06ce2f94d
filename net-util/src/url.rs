//! URL paths and query strings read as the router's extractors and dockerd read them (so checks
//! look at what handlers will see), written with `percent-encoding` and `form_urlencoded`.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What [`encode`] leaves alone: unreserved characters (`A-Z a-z 0-9 - . _ ~`) and `/`.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// `s` with every byte but unreserved ones and `/` as `%XX`.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, KEEP).to_string()
}

/// A path (or path segment) with `%XX` decoded; `+` stays; bytes that are not UTF-8 are replaced.
pub fn decode_path(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// One `key=value` pair of a query string or form body: as sent, and decoded (`+` is a space;
/// a key without `=` has the empty value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair<'a> {
    /// The pair as sent.
    pub raw: &'a str,
    /// The key as sent.
    pub raw_key: &'a str,
    /// The key, decoded.
    pub key: String,
    /// The value, decoded.
    pub value: String,
}

/// The pairs of `query` in order, empty ones skipped, as Go's `url.ParseQuery` splits them.
pub fn pairs(query: &str) -> impl Iterator<Item = Pair<'_>> {
    query.split('&').filter(|kv| !kv.is_empty()).map(|raw| {
        let raw_key = raw.split_once('=').map_or(raw, |(k, _)| k);
        // One pair (no `&` in it): its key and value, `+` as a space and `%XX` decoded.
        let (key, value) = form_urlencoded::parse(raw.as_bytes())
            .next()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .unwrap_or_default();
        Pair { raw, raw_key, key, value }
    })
}

/// The values of `key` in `query`, in order and decoded.
pub fn query_values(query: &str, key: &str) -> Vec<String> {
    pairs(query).filter(|p| p.key == key).map(|p| p.value).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_what_decoding_undoes() {
        let s = "/apps/x/a b?c=d&e";
        assert_eq!(encode(s), "/apps/x/a%20b%3Fc%3Dd%26e");
        assert_eq!(decode_path(&encode(s)), s);
        assert_eq!(encode("é~"), "%C3%A9~");
    }

    #[test]
    fn decodes_like_extractors() {
        assert_eq!(decode_path("a%2Fb%zz%4"), "a/b%zz%4");
        assert_eq!(decode_path("%77eb1"), "web1");
        assert_eq!(decode_path("a+b"), "a+b");
        assert_eq!(query_values("k=a+b%2B", "k"), ["a b+"]);
        assert_eq!(query_values("k=%zz%4", "k"), ["%zz%4"]);
        assert_eq!(query_values("k=a=b", "k"), ["a=b"]);
    }

    #[test]
    fn queries_split_as_go_splits_them() {
        assert_eq!(query_values("tag&tag=b&x=1&&%74ag=c+d", "tag"), ["", "b", "c d"]);
        let p: Vec<_> = pairs("a=1&b").collect();
        assert_eq!((p[0].raw, p[0].raw_key, p[0].value.as_str()), ("a=1", "a", "1"));
        assert_eq!((p[1].raw, p[1].key.as_str(), p[1].value.as_str()), ("b", "b", ""));
        assert!(query_values("k=%", "k") == ["%"]);
    }
}
