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
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some(i) = rest.find('/') {
            let (ver, tail) = rest.split_at(i);
            if !ver.is_empty() && ver.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return tail;
            }
        }
    }
    path
}

/// The operation `method path` is.
pub fn classify(method: &str, path: &str) -> Endpoint {
    let segs: Vec<&str> = unversioned(path).split('/').filter(|s| !s.is_empty()).collect();
    let post = method.eq_ignore_ascii_case("POST");
    match (post, segs.as_slice()) {
        (true, ["containers", "create"]) => Endpoint::ContainerCreate,
        (true, ["containers", _, "update"]) => Endpoint::ContainerUpdate,
        (true, ["containers", _, "exec"]) => Endpoint::ExecCreate,
        (true, ["volumes", "create"]) => Endpoint::VolumeCreate,
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
        assert_eq!(classify("HEAD", "/_ping"), Endpoint::Ping);
        assert_eq!(classify("GET", "/v1.47/containers/json?all=1"), Endpoint::ContainerList);
        assert_eq!(classify("GET", "/v1.47/containers/create"), Endpoint::Other, "only POST creates");
        assert_eq!(classify("POST", "/v1.47/containers/abc/start"), Endpoint::Other);
    }
}
