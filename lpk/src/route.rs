//! Route upstreams: `PATH=UPSTREAM` strings and long-form `upstreams`, parsed into one shape.

use serde::Serialize;

/// Where a route sends requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Upstream {
    /// A reverse proxy to a service of the app.
    Http {
        /// `http` or `https`.
        scheme: String,
        /// Service name (or `app`).
        host: String,
        /// Port.
        port: u16,
        /// Path prefix on the upstream (`/` if none).
        path: String,
    },
    /// Static files from a directory under `/lzcapp`.
    File {
        /// Absolute, clean directory path inside the app.
        dir: String,
    },
    /// A program started in the app's entry service, proxied at `127.0.0.1:port`.
    Exec {
        /// Port it listens on.
        port: u16,
        /// Program and arguments.
        argv: Vec<String>,
    },
}

/// One HTTP route of the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Route {
    /// Path prefix, starting with `/`.
    pub prefix: String,
    /// Target.
    pub upstream: Upstream,
    /// Strip the prefix before proxying (default).
    pub trim: bool,
    /// Also served on `<domain_prefix>-<subdomain>`.
    pub domain_prefix: Option<String>,
    /// Send the upstream's host as `Host`.
    pub use_backend_host: bool,
}

/// Parses `PATH=UPSTREAM`.
pub fn parse_short(s: &str) -> Result<Route, String> {
    let (prefix, up) = s.split_once('=').ok_or("is not of the form PATH=UPSTREAM")?;
    route(prefix, up, true, None, false)
}

/// Builds a route, checking prefix and upstream.
pub fn route(
    prefix: &str,
    up: &str,
    trim: bool,
    domain_prefix: Option<&str>,
    backend_host: bool,
) -> Result<Route, String> {
    let prefix = prefix.trim();
    if !prefix.starts_with('/') || prefix.contains(['?', '#', ' ']) || prefix.split('/').any(|c| c == "..") {
        return Err(format!("has the path `{prefix}`, which must start with `/` and have no `..`, `?` or `#`"));
    }
    if let Some(d) = domain_prefix {
        if !crate::plan::is_label(d) {
            return Err(format!("has the domain prefix `{d}`, which is not a DNS label"));
        }
    }
    Ok(Route {
        prefix: prefix.to_string(),
        upstream: parse_upstream(up.trim())?,
        trim,
        domain_prefix: domain_prefix.map(str::to_string),
        use_backend_host: backend_host,
    })
}

/// Parses an upstream URL.
pub fn parse_upstream(up: &str) -> Result<Upstream, String> {
    if let Some(rest) = up.strip_prefix("file://") {
        let dir = crate::paths::clean_abs(rest)
            .filter(|d| d.starts_with("/lzcapp/"))
            .ok_or_else(|| format!("serves `{rest}`; file:// routes must name a clean directory under /lzcapp"))?;
        return Ok(Upstream::File { dir });
    }
    if let Some(rest) = up.strip_prefix("exec://") {
        let (port, cmd) = rest.split_once(',').ok_or("has an exec:// upstream without `PORT,COMMAND`")?;
        let port = parse_port(port)?;
        let argv = crate::manifest::split_words(cmd)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| format!("has the exec:// command `{cmd}`, which is empty or has unclosed quotes"))?;
        return Ok(Upstream::Exec { port, argv });
    }
    let (scheme, rest) = up
        .split_once("://")
        .filter(|(s, _)| *s == "http" || *s == "https")
        .ok_or_else(|| format!("has the upstream `{up}`; use http://, https://, file:// or exec://"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, parse_port(p)?),
        None => (hostport, if scheme == "https" { 443 } else { 80 }),
    };
    if host.is_empty() || !host.split('.').all(crate::plan::is_label) {
        return Err(format!("has the upstream host `{host}`, which is not a service name"));
    }
    Ok(Upstream::Http { scheme: scheme.into(), host: host.into(), port, path: path.into() })
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.trim().parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("has the port `{p}`, not 1-65535"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_kinds() {
        let r = parse_short("/api/=http://backend:8080/v1").unwrap();
        assert_eq!(r.prefix, "/api/");
        assert_eq!(
            r.upstream,
            Upstream::Http { scheme: "http".into(), host: "backend".into(), port: 8080, path: "/v1".into() }
        );
        assert_eq!(
            parse_short("/=file:///lzcapp/pkg/content/web/").unwrap().upstream,
            Upstream::File { dir: "/lzcapp/pkg/content/web".into() }
        );
        assert_eq!(
            parse_short("/x=exec://3000,/lzcapp/pkg/content/srv --port 3000").unwrap().upstream,
            Upstream::Exec { port: 3000, argv: vec!["/lzcapp/pkg/content/srv".into(), "--port".into(), "3000".into()] }
        );
        assert_eq!(
            parse_upstream("http://web").unwrap(),
            Upstream::Http { scheme: "http".into(), host: "web".into(), port: 80, path: "/".into() }
        );
        assert_eq!(
            parse_upstream("http://backend:9000/health").unwrap(),
            Upstream::Http { scheme: "http".into(), host: "backend".into(), port: 9000, path: "/health".into() }
        );
        assert!(parse_short("/=file:///etc").unwrap_err().contains("under /lzcapp"));
        assert!(parse_short("/=file:///lzcapp/../etc").is_err());
        assert!(parse_short("/=ftp://x").unwrap_err().contains("http://"));
        assert!(parse_short("/=http://a:0/").is_err());
        assert!(parse_short("x=http://a/").unwrap_err().contains("start with"));
        assert!(parse_short("/=exec://80").is_err());
        assert!(parse_short("/=http://we b/").is_err());
    }
}
