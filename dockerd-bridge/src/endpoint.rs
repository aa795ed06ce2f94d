//! Which Docker API operation a request is, from its method and path (with or without the
//! `/v1.NN` version prefix). Only the operations whose bodies or queries the policy reads are
//! told apart; everything else is [`Endpoint::Other`].

/// A Docker API operation the policy cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /containers/create`.
    ContainerCreate,
    /// `POST /containers/{id}/update` (resources, devices among them).
    ContainerUpdate,
    /// `POST /containers/{id}/exec`.
    ExecCreate,
    /// `POST /volumes/create`.
    VolumeCreate,
    /// `POST /networks/create`.
    NetworkCreate,
    /// `POST /commit` (an image from a container).
    Commit,
    /// `POST /networks/{id}/connect` (the body names a container).
    NetworkConnect,
    /// `POST /images/load` (the body is an image archive that names tags).
    ImageLoad,
    /// `/grpc`: BuildKit's own control API, past every build option the policy reads.
    Grpc,
    /// `POST /build` (the body is the build context; the query holds the options).
    Build,
    /// Installing, configuring or enabling a plugin.
    Plugin,
    /// Swarm and services (not offered in the sandbox).
    Swarm,
    /// `GET /_ping`, `HEAD /_ping`.
    Ping,
    /// `GET /version`.
    Version,
    /// `GET /containers/json`.
    ContainerList,
    /// Anything else.
    Other,
}

/// The path without its `/v1.NN` prefix (and without the query).
pub fn unversioned(path: &str) -> &str {
    let path = path.split('?').next().unwrap_or("");
    match version_of(path) {
        Some((_, rest)) => rest,
        None => path,
    }
}

/// The `NN` of a `/v1.NN/...` prefix, and the rest of the path.
fn version_of(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let i = rest.find('/')?;
    let (ver, tail) = rest.split_at(i);
    (!ver.is_empty() && ver.bytes().all(|b| b.is_ascii_digit() || b == b'.')).then_some((ver, tail))
}

/// Why a request path is not served at all: encoded or unclean paths (dockerd's router decodes
/// and cleans them, so they could name another operation than the one classified here), and API
/// versions before 1.24 (whose container start applies a host configuration from its body).
pub fn unacceptable(path: &str) -> Option<String> {
    let p = path.split('?').next().unwrap_or("");
    if p.contains('%') || p.contains("//") || p.split('/').skip(1).any(|s| s == "." || s == "..") {
        return Some(format!("the path `{p}` is encoded or not clean; Den forwards only plain paths"));
    }
    if let Some((ver, _)) = version_of(p) {
        let mut it = ver.split('.');
        let (major, minor) =
            (it.next().and_then(|x| x.parse::<u32>().ok()), it.next().and_then(|x| x.parse::<u32>().ok()));
        if major == Some(1) && minor.is_some_and(|m| m < 24) {
            return Some(format!("Docker API version {ver} is older than Den serves (1.24 and later)"));
        }
    }
    None
}

/// Why a request's body type is not served at all: dockerd reads a form body
/// (`application/x-www-form-urlencoded`, `multipart/*`) as query values, ahead of the query
/// string Den decides on.
pub fn unacceptable_body_type(headers: &hyper::HeaderMap) -> Option<String> {
    headers.get_all(hyper::header::CONTENT_TYPE).iter().find_map(|v| {
        let text = String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase();
        let media = text.split(';').next().unwrap_or("").trim().to_string();
        (media == "application/x-www-form-urlencoded" || media.starts_with("multipart/")).then(|| {
            format!("a `{media}` body, which dockerd would read as options Den does not see; send JSON or a tar")
        })
    })
}

/// The operation `method path` is. Container routes are told apart by their last segment,
/// since dockerd lets a container name span segments (link aliases).
pub fn classify(method: &str, path: &str) -> Endpoint {
    let segs: Vec<&str> = unversioned(path).split('/').filter(|s| !s.is_empty()).collect();
    let post = method.eq_ignore_ascii_case("POST");
    match (post, segs.as_slice()) {
        (true, ["containers", "create"]) => Endpoint::ContainerCreate,
        (true, ["containers", _, .., "update"]) => Endpoint::ContainerUpdate,
        (true, ["containers", _, .., "exec"]) => Endpoint::ExecCreate,
        (true, ["volumes", "create"]) => Endpoint::VolumeCreate,
        (true, ["networks", "create"]) => Endpoint::NetworkCreate,
        (true, ["commit"]) => Endpoint::Commit,
        (true, ["networks", _, "connect"]) => Endpoint::NetworkConnect,
        (true, ["images", "load"]) => Endpoint::ImageLoad,
        (_, ["grpc", ..]) => Endpoint::Grpc,
        (true, ["build"]) => Endpoint::Build,
        (true, ["plugins", ..]) => Endpoint::Plugin,
        (true, ["swarm", ..] | ["services", ..] | ["secrets", "create"] | ["configs", "create"]) => Endpoint::Swarm,
        (false, ["_ping"]) => Endpoint::Ping,
        (false, ["version"]) => Endpoint::Version,
        (false, ["containers", "json"]) => Endpoint::ContainerList,
        _ => Endpoint::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_and_without_versions() {
        assert_eq!(unversioned("/v1.47/containers/create?name=x"), "/containers/create");
        assert_eq!(unversioned("/containers/create"), "/containers/create");
        assert_eq!(unversioned("/volumes/x"), "/volumes/x", "not a version prefix");
        assert_eq!(classify("POST", "/v1.47/containers/create?name=a"), Endpoint::ContainerCreate);
        assert_eq!(classify("POST", "/v1.41/containers/abc/exec"), Endpoint::ExecCreate);
        assert_eq!(classify("POST", "/containers/abc/update"), Endpoint::ContainerUpdate);
        assert_eq!(classify("POST", "/v1.47/volumes/create"), Endpoint::VolumeCreate);
        assert_eq!(classify("POST", "/v1.47/build?t=x"), Endpoint::Build);
        assert_eq!(classify("POST", "/v1.47/plugins/pull?remote=x"), Endpoint::Plugin);
        assert_eq!(classify("POST", "/v1.47/swarm/init"), Endpoint::Swarm);
        assert_eq!(classify("POST", "/grpc"), Endpoint::Grpc);
        assert_eq!(classify("POST", "/v1.47/networks/create"), Endpoint::NetworkCreate);
        assert_eq!(classify("POST", "/v1.47/networks/n1/connect"), Endpoint::NetworkConnect);
        assert_eq!(classify("POST", "/images/load"), Endpoint::ImageLoad);
        let mut h = hyper::HeaderMap::new();
        h.append(hyper::header::CONTENT_TYPE, "application/x-tar".parse().unwrap());
        assert_eq!(unacceptable_body_type(&h), None);
        h.append(hyper::header::CONTENT_TYPE, "Application/X-WWW-Form-Urlencoded; charset=x".parse().unwrap());
        assert!(unacceptable_body_type(&h).is_some(), "every Content-Type header, any case");
        let mut h = hyper::HeaderMap::new();
        h.insert(hyper::header::CONTENT_TYPE, "multipart/form-data; boundary=x".parse().unwrap());
        assert!(unacceptable_body_type(&h).is_some());
        assert_eq!(classify("HEAD", "/_ping"), Endpoint::Ping);
        assert_eq!(classify("GET", "/v1.47/containers/json?all=1"), Endpoint::ContainerList);
        assert_eq!(classify("GET", "/v1.47/containers/create"), Endpoint::Other, "only POST creates");
        assert_eq!(classify("POST", "/v1.47/containers/abc/start"), Endpoint::Other);
        assert_eq!(classify("POST", "/containers/web/db/exec"), Endpoint::ExecCreate, "a link alias spans segments");
        assert!(unacceptable("/v1.41/containers/%63reate").is_some());
        assert!(unacceptable("/v1.41/containers%2Fcreate").is_some());
        assert!(unacceptable("/v1.41/containers/../containers/create").is_some());
        assert!(unacceptable("/v1.41//containers/create").is_some());
        assert!(unacceptable("/v1.23/containers/x/start").is_some(), "old API versions");
        assert!(unacceptable("/v1.41/containers/create?name=a%20b").is_none(), "queries may be encoded");
        assert!(unacceptable("/v1.24/containers/x/start").is_none() && unacceptable("/_ping").is_none());
    }
}
