//! Which app and route a request is for. An app answers on its own origin,
//! `<subdomain>.<box domain>` (and `<domain_prefix>-<subdomain>.<box domain>` for routes that
//! set one), never on the console's: the old path prefix `/apps/<subdomain>/` only redirects
//! there ([`prefix_redirect`]). Among the app's routes the longest matching prefix wins; the
//! prefix is stripped unless the route keeps it. Paths arrive normalised ([`super::path`]).

use super::super::AppRecord;
use den_lpk::route::{Route, Upstream};

/// The path prefix apps were once served under on the console's host; now it redirects.
pub const PATH_PREFIX: &str = "/apps/";

/// A request matched to an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The app's package id.
    pub package: String,
    /// Index of the route in the app's plan.
    pub route: usize,
    /// The path as the app sees it (before the route's prefix is stripped): what
    /// `public_path` is checked against.
    pub app_path: String,
    /// The path (and query) to send upstream.
    pub upstream_path: String,
}

/// The host without its port, lowercased.
pub fn bare_host(host: &str) -> String {
    let h = if host.starts_with('[') {
        host.split(']').next().map(|h| format!("{h}]")).unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or("").to_string()
    };
    h.to_ascii_lowercase()
}

/// Whether `path` starts with `prefix` at a segment boundary (`/api` matches `/api/x`, not `/apix`).
fn has_prefix(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.starts_with(prefix) && (prefix.ends_with('/') || path.as_bytes().get(prefix.len()) == Some(&b'/')))
}

/// The route of `app` for `path` (longest prefix; `domain` restricts to routes for a domain prefix).
fn pick(app: &AppRecord, path: &str, domain: Option<&str>) -> Option<usize> {
    app.plan
        .routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.domain_prefix.as_deref() == domain || (domain.is_none() && r.domain_prefix.is_none()))
        .filter(|(_, r)| has_prefix(path, r.prefix.trim_end_matches('/')) || has_prefix(path, &r.prefix))
        .max_by_key(|(_, r)| r.prefix.len())
        .map(|(i, _)| i)
}

/// The upstream path for `path` (with `query`) on `route`.
pub fn upstream_path(route: &Route, path: &str, query: Option<&str>) -> String {
    let rest = if route.trim {
        let p = route.prefix.trim_end_matches('/');
        path.strip_prefix(p).unwrap_or(path)
    } else {
        path
    };
    let base = match &route.upstream {
        Upstream::Http { path, .. } => path.as_str(),
        _ => "/",
    };
    let mut out = format!("{}/{}", base.trim_end_matches('/'), rest.trim_start_matches('/'));
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The app a host name is for, and the domain prefix the name carries (if any).
///
/// Only names an app answers on count ([`host_labels`]): one DNS label of `a-z`, `0-9` and `-`
/// that is the app's subdomain or `<domain_prefix>-<subdomain>` for one of its routes. Anything
/// else (another prefix, a `/`, `;` or `#` smuggled into the host) is no app's.
pub fn locate<'a>(apps: &'a [AppRecord], box_domain: &str, host: &str) -> Option<(&'a AppRecord, Option<String>)> {
    let host = bare_host(host);
    let label = host.strip_suffix(&format!(".{}", box_domain.to_ascii_lowercase()))?;
    if label.is_empty() || !label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return None;
    }
    if let Some(app) = apps.iter().find(|a| a.subdomain == label) {
        return Some((app, None));
    }
    let (domain, sub) = label.rsplit_once('-')?;
    let app = apps.iter().find(|a| a.subdomain == sub)?;
    app.plan.routes.iter().any(|r| r.domain_prefix.as_deref() == Some(domain)).then(|| (app, Some(domain.to_string())))
}

/// The host labels (before `.<box domain>`) `app` answers on: its subdomain, and
/// `<domain_prefix>-<subdomain>` for each route that sets a domain prefix.
pub fn host_labels(app: &AppRecord) -> Vec<String> {
    let mut out = vec![app.subdomain.clone()];
    for prefix in app.plan.routes.iter().filter_map(|r| r.domain_prefix.as_deref()) {
        let label = format!("{prefix}-{}", app.subdomain);
        if !out.contains(&label) {
            out.push(label);
        }
    }
    out
}

/// A host label `app` would share with another installed app (another package): then the two
/// would read each other's cookies and requests. The sentence says which, for the installer.
pub fn host_clash(apps: &[AppRecord], app: &AppRecord) -> Option<String> {
    let mine = host_labels(app);
    // The same subdomain is the store's to refuse, with its own words.
    let mut others = apps.iter().filter(|o| o.package != app.package && o.subdomain != app.subdomain);
    others.find_map(|other| {
        let label = host_labels(other).into_iter().find(|l| mine.contains(l))?;
        Some(format!(
            "the host name `{label}` is app {}'s already; an app's subdomain and its routes' \
             `<domain_prefix>-<subdomain>` names must be its own (change `subdomain` in the package)",
            other.package
        ))
    })
}

/// For a path under the old prefix, `/apps/<subdomain>/rest`: the subdomain and `/rest`.
pub fn prefix_redirect(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix(PATH_PREFIX)?;
    Some(match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    })
}

/// Matches a request (`host`, normalised `path`, `query`) against the installed apps and
/// their routes.
pub fn matches(apps: &[AppRecord], box_domain: &str, host: &str, path: &str, query: Option<&str>) -> Option<Target> {
    let (app, domain) = locate(apps, box_domain, host)?;
    let route = pick(app, path, domain.as_deref())?;
    let upstream_path = upstream_path(&app.plan.routes[route], path, query);
    Some(Target { package: app.package.clone(), route, app_path: path.to_string(), upstream_path })
}

/// Whether `path` is public for `app`: it lies under a `public_path` entry and under no `!`
/// exclusion (exclusions win). Entries match whole path segments: `/pub` opens `/pub` and
/// `/pub/x`, not `/pubx`.
///
/// A servlet container reads `/pub;x` as `/pub` and some servers ignore case, so a path is
/// public only when it is so with and without its `;` parameters, and exclusions match in any
/// ASCII case (`/API/private` stays private).
pub fn is_public(app: &AppRecord, path: &str) -> bool {
    let public = |path: &str| {
        let lower = path.to_ascii_lowercase();
        let under = |p: &str, path: &str| has_prefix(path, p.trim_end_matches('/')) || has_prefix(path, p);
        let list = &app.plan.public_path;
        let excluded = list.iter().filter_map(|p| p.strip_prefix('!')).any(|p| under(&p.to_ascii_lowercase(), &lower));
        let included = list.iter().filter(|p| !p.starts_with('!')).any(|p| under(p, path));
        included && !excluded
    };
    public(path) && public(&super::path::without_params(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppRecord {
        AppRecord::fixture(
            "cloud.den.demo",
            "application:
  subdomain: demo
  routes:
    - /=http://web:8080/
    - /api/=http://backend:9000/v1
    - /static=file:///lzcapp/pkg/content/www
  upstreams:
    - {location: /raw/, backend: 'http://backend:9000/', disable_trim_location: true}
    - {location: /, backend: 'http://admin:81/', domain_prefix: admin}
  public_path: [/, '!/api/private']
services:
  web: {image: x}
  backend: {image: x}
  admin: {image: x}
",
        )
    }

    #[test]
    fn hosts_paths_and_prefixes() {
        let apps = [app()];
        let m = |host: &str, path: &str| matches(&apps, "box.test", host, path, Some("q=1"));
        let t = m("demo.box.test:8006", "/api/users").unwrap();
        assert_eq!((t.route, t.upstream_path.as_str()), (1, "/v1/users?q=1"));
        assert_eq!(m("demo.box.test", "/index.html").unwrap().route, 0);
        assert_eq!(m("demo.box.test", "/apix").unwrap().route, 0, "prefixes match whole segments");
        let t = m("demo.box.test", "/raw/x").unwrap();
        assert_eq!(t.upstream_path, "/raw/x?q=1", "disable_trim_location keeps the prefix");
        assert_eq!(m("admin-demo.box.test", "/").unwrap().route, 4);
        assert!(m("127.0.0.1:8006", "/apps/demo/api/x").is_none(), "never on the console's origin");
        assert_eq!(prefix_redirect("/apps/demo/api/x"), Some(("demo", "/api/x")));
        assert_eq!(prefix_redirect("/apps/demo"), Some(("demo", "/")));
        assert!(m("other.box.test", "/").is_none());
        assert!(m("127.0.0.1", "/api/v1/vms").is_none());
        assert!(m("demo.box.test.evil", "/").is_none());
        for not_an_app in
            ["x-demo.box.test", "evil.example/x-demo.box.test", "a;frame-ancestors-demo.box.test", "-demo.box.test"]
        {
            assert!(locate(&apps, "box.test", not_an_app).is_none(), "{not_an_app}");
        }
        assert_eq!(locate(&apps, "box.test", "ADMIN-demo.box.test").map(|(_, d)| d), Some(Some("admin".into())));
    }

    #[test]
    fn apps_do_not_share_host_names() {
        let a = app();
        assert_eq!(host_labels(&a), ["demo", "admin-demo"]);
        let b = AppRecord::fixture("cloud.den.other", "application: {subdomain: admin-demo}");
        assert!(host_clash(std::slice::from_ref(&a), &b).is_some_and(|m| m.contains("cloud.den.demo")));
        assert!(host_clash(std::slice::from_ref(&b), &a).is_some(), "either way round");
        let c = AppRecord::fixture("cloud.den.c", "application: {subdomain: c}");
        assert_eq!(host_clash(&[a.clone(), b], &c), None);
        assert_eq!(host_clash(std::slice::from_ref(&a), &a), None, "an upgrade of the same app");
    }

    #[test]
    fn public_paths_with_exclusions() {
        let a = app();
        assert!(is_public(&a, "/"));
        assert!(is_public(&a, "/api/users"));
        assert!(!is_public(&a, "/api/private"));
        assert!(!is_public(&a, "/api/private/x"));
        let mut b = app();
        b.plan.public_path = vec!["/pub".into()];
        assert!(is_public(&b, "/pub/a") && !is_public(&b, "/private") && !is_public(&b, "/pubx"));
        for private in ["/api;x/private", "/api/private;jsessionid=1", "/API/private", "/api/Private/x"] {
            assert!(!is_public(&a, private), "{private}");
        }
        assert!(!is_public(&b, "/pub;x") && !is_public(&b, "/PUB/a"), "inclusions match exactly");
    }
}
