//! Where a request came from and the cookies it carries: read the same way by the API and the
//! app ingress, which share a port.

use crate::Caller;
use http::{header, HeaderMap};
use std::net::SocketAddr;

/// How a request arrived (set by the server for each connection).
#[derive(Debug, Clone)]
pub enum Transport {
    /// The local Unix socket, with the identity its peer credentials give.
    Local(Caller),
    /// A network connection from this address.
    Remote(SocketAddr),
}

/// The console's session cookie. `__Host-`: browsers accept it only from the console's own host
/// (secure, no `Domain`, path `/`), so an app on a subdomain cannot plant or shadow it.
pub const SESSION_COOKIE: &str = "__Host-den_session";

/// The cookies of a request's `Cookie` headers as (name, value, the pair as sent), in order.
pub fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (name.trim(), value.trim(), pair)
        })
}

/// The value of the first cookie named `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    cookies(headers).find(|(n, _, _)| *n == name).map(|(_, v, _)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_split_once() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; __Host-den_session=tok ;b".parse().unwrap());
        h.append(header::COOKIE, "c=x=y".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "c"), Some("x=y"));
        assert_eq!(cookie(&h, "b"), Some(""));
        assert_eq!(cookie(&h, "d"), None);
        let raw: Vec<_> = cookies(&h).map(|(_, _, raw)| raw).collect();
        assert_eq!(raw, ["a=1", "__Host-den_session=tok", "b", "c=x=y"]);
    }
}
