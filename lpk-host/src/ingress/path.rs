//! The one spelling of a request path: what the public/private decision, the route choice and
//! the app all see. A client may write a path many ways (`/pub/../admin`, `/pub/%2e%2e/admin`,
//! `/pub//x`, `/%70ub`); an app server behind the ingress may normalise it after Den decided,
//! so Den decides on the normal form and forwards exactly that.

/// Why a path is refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A segment decodes to a `/`, a `\` or a control character.
    #[error("the path has an encoded `/`, `\\` or control character in `{0}`")]
    HiddenSeparator(String),
    /// A segment is not UTF-8 once decoded.
    #[error("the path is not UTF-8 once decoded")]
    NotUtf8,
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is.
fn decode(seg: &str) -> Vec<u8> {
    let b = seg.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Whether `b` may stand for itself in a path segment (RFC 3986 `pchar` without `%`).
fn plain_in_segment(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b)
}

fn encode(seg: &str, out: &mut String) {
    for b in seg.bytes() {
        if plain_in_segment(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// `normal` with every segment's `;` parameters dropped (`/admin;jsessionid=1` is `/admin` to a
/// servlet container): the public/private decision holds for both spellings.
pub fn without_params(normal: &str) -> String {
    normal.split('/').map(|seg| seg.split(';').next().unwrap_or("")).collect::<Vec<_>>().join("/")
}

/// The normal form of `raw` (a request's path, without its query): every segment
/// percent-decoded once, empty and `.` segments dropped, `..` taking back the one before (never
/// above `/`), then each segment encoded again the one way. A trailing `/` (or a trailing `.`
/// or `..` segment) is kept as a trailing `/`.
pub fn normalize(raw: &str) -> Result<String, PathError> {
    let mut segs: Vec<String> = Vec::new();
    let mut trailing = false;
    for seg in raw.split('/') {
        let bytes = decode(seg);
        let text = String::from_utf8(bytes).map_err(|_| PathError::NotUtf8)?;
        if text.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
            return Err(PathError::HiddenSeparator(seg.to_string()));
        }
        // `..;x` is `..` to servlet containers (Tomcat, Jetty), which drop a segment's `;`
        // parameters before they resolve dot segments.
        let bare = text.split(';').next().unwrap_or("");
        trailing = matches!(bare, "" | "." | "..");
        match bare {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            _ => segs.push(text),
        }
    }
    let mut out = String::with_capacity(raw.len() + 1);
    for s in &segs {
        out.push('/');
        encode(s, &mut out);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_has_one_normal_form() {
        for (raw, want) in [
            ("/", "/"),
            ("", "/"),
            ("/pub/x", "/pub/x"),
            ("/pub/../admin", "/admin"),
            ("/pub/%2e%2e/admin", "/admin"),
            ("/pub/%2E%2E/admin", "/admin"),
            ("/pub/.%2e/admin", "/admin"),
            ("/pub//x", "/pub/x"),
            ("//admin", "/admin"),
            ("/pub/./x", "/pub/x"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/%70ub/x", "/pub/x"),
            ("/a/b/", "/a/b/"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a%20b", "/a%20b"),
            ("/a b", "/a%20b"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/%25", "/%25"),
            ("/100%", "/100%25"),
            ("/a;b=c@d:e", "/a;b=c@d:e"),
            ("/pub/..;/admin", "/admin"),
            ("/pub/..;x=1/admin", "/admin"),
            ("/pub/.;x/admin", "/pub/admin"),
            ("/pub/%2e%2e%3b/admin", "/admin"),
            ("/q%3Fx", "/q%3Fx"),
        ] {
            assert_eq!(normalize(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn hidden_separators_are_refused() {
        for raw in ["/pub%2f..%2fadmin", "/pub%2F../admin", "/a%5c..%5cb", "/a%00b", "/a%09b", "/a%0d%0ab"] {
            assert!(matches!(normalize(raw), Err(PathError::HiddenSeparator(_))), "{raw}");
        }
        assert_eq!(normalize("/%ff"), Err(PathError::NotUtf8));
    }

    #[test]
    fn parameters_are_dropped_for_the_decision() {
        assert_eq!(without_params("/admin;jsessionid=1/x;y"), "/admin/x");
        assert_eq!(without_params("/pub;x"), "/pub");
        assert_eq!(without_params("/"), "/");
    }

    #[test]
    fn normal_forms_are_fixed_points() {
        for raw in ["/pub/%2e%2e/admin", "/a b/c%2520", "/x/./y//z/", "/%C3%A9/../%41"] {
            let once = normalize(raw).unwrap();
            assert_eq!(normalize(&once).unwrap(), once, "{raw}");
        }
    }
}
