//! The web console's files, built from `web/` by `build.rs` and embedded in `dend`: served on
//! the HTTPS port next to the API, gzip-compressed when the browser accepts it, hashed assets
//! cached for a year, `index.html` never cached, and every page sent with a strict Content
//! Security Policy (scripts and connections only from Den itself).

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One embedded file.
pub struct Asset {
    /// URL path (`/index.html`, `/assets/index-<hash>.js`).
    pub path: &'static str,
    /// Content type.
    pub mime: &'static str,
    /// The bytes.
    pub body: &'static [u8],
    /// A gzip copy, for text.
    pub gzip: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
                   form-action 'self'";

/// The asset a path names: files by their path, anything else that is not a file (a deep link)
/// gets `index.html`, whose script routes by the URL's hash.
pub fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/" { "/index.html" } else { path };
    if let Some(a) = ASSETS.iter().find(|a| a.path == path) {
        return Some(a);
    }
    let last = path.rsplit('/').next().unwrap_or("");
    if last.contains('.') || path.starts_with("/assets/") {
        return None;
    }
    ASSETS.iter().find(|a| a.path == "/index.html")
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| e.split(';').next().is_some_and(|n| n.trim() == "gzip"))
}

/// Serves a GET for a path outside `/api/`.
pub async fn serve(uri: Uri, headers: HeaderMap) -> Response {
    let Some(asset) = find(uri.path()) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let cache = if asset.path.starts_with("/assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    let mut resp = match asset.gzip.filter(|_| accepts_gzip(&headers)) {
        Some(gz) => {
            let mut r = gz.into_response();
            r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        None => asset.body.into_response(),
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_console_is_embedded_and_routed() {
        let index = find("/").expect("index.html is embedded");
        assert!(std::str::from_utf8(index.body).unwrap().contains("<div id=\"app\">"));
        assert!(index.gzip.is_some());
        assert_eq!(find("/vms/web1").map(|a| a.path), Some("/index.html"), "deep links get the page");
        assert!(find("/assets/nope.js").is_none() && find("/favicon.ico").is_none());
        let js = ASSETS.iter().find(|a| a.path.ends_with(".js")).expect("a script");
        assert_eq!(find(js.path).map(|a| a.mime), Some("text/javascript; charset=utf-8"));
    }

    #[tokio::test]
    async fn gzip_and_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, "br, gzip;q=0.8".parse().unwrap());
        let r = serve("/".parse().unwrap(), h).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert!(r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("script-src 'self'"));
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        let r = serve("/".parse().unwrap(), HeaderMap::new()).await;
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(serve("/x.png".parse().unwrap(), HeaderMap::new()).await.status(), StatusCode::NOT_FOUND);
    }
}
