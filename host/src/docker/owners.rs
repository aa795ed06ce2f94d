//! Who owns what in the sandbox. Every container, volume, network and built or committed image
//! made through the bridge carries the label [`OWNER_LABEL`] with its Den user, set here (a
//! client's own value under any spelling is replaced, never trusted). A request that reaches an
//! existing object ([`access`]) is decided on that object's owner and, for containers, on
//! whether it binds a shared host folder ([`Owned`], looked up from dockerd before the request
//! is forwarded), by [`crate::auth::policy::authorize`].

use super::endpoint::unversioned;
use super::policy::go_key_matches;
use crate::urlcode::{percent_decode, percent_encode};
use serde_json::{Map, Value};

/// The label that names an object's Den owner.
pub const OWNER_LABEL: &str = "den.owner";

/// An existing object a request reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A container, by id or name.
    Container(String),
    /// An exec instance (it belongs to its container).
    Exec(String),
    /// A volume.
    Volume(String),
    /// A network.
    Network(String),
    /// An image, by name or id.
    Image(String),
}

impl Object {
    /// How a person would name it.
    pub fn describe(&self) -> String {
        match self {
            Object::Container(id) => format!("container `{id}`"),
            Object::Exec(id) => format!("exec `{id}`"),
            Object::Volume(n) => format!("volume `{n}`"),
            Object::Network(n) => format!("network `{n}`"),
            Object::Image(n) => format!("image `{n}`"),
        }
    }
}

/// What a request does, as far as owners go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Lists, inspects, logs, events, pings: anyone who may use Docker.
    Look,
    /// Makes a new object, labelled with its owner (containers, volumes, networks, builds,
    /// commits of `container`), or pulls and loads images (shared by everyone).
    Make(Option<Object>),
    /// Reads an object's files (`docker cp` out, `export`, `save`): an operator who owns it.
    ReadFiles(Vec<Object>),
    /// Changes, starts, stops, enters or deletes an existing object: its owner or an admin.
    Change(Vec<Object>),
    /// Reaches everyone's objects at once (prune) or anything not told apart: admins only.
    Everyone(&'static str),
}

/// The role a request needs before its objects are looked at: looking (a plain read) a
/// viewer, what reaches everyone's objects an admin, everything else an operator.
pub fn role_for(access: &Access, plain_read: bool) -> crate::auth::Role {
    use crate::auth::Role;
    match access {
        Access::Look if plain_read => Role::Viewer,
        Access::Everyone(_) => Role::Admin,
        _ => Role::Operator,
    }
}

/// Splits `rest` (the segments after `containers`) into the container id and the action: ids
/// may span segments (link aliases), the action is the last segment (`attach/ws`: two).
fn container_and_action<'a>(rest: &'a [&'a str]) -> (String, &'a str) {
    match rest {
        [id @ .., "attach", "ws"] if !id.is_empty() => (id.join("/"), "attach/ws"),
        [id @ .., action] if !id.is_empty() => (id.join("/"), action),
        [id] => (id.to_string(), ""),
        _ => (String::new(), ""),
    }
}

/// The values of `key` in a query string.
fn query_values(query: &str, key: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| percent_decode(k, true) == key)
        .map(|(_, v)| percent_decode(v, true))
        .collect()
}

/// What `method path?query` does.
pub fn access(method: &str, path: &str, query: &str) -> Access {
    let segs: Vec<&str> = unversioned(path).split('/').filter(|s| !s.is_empty()).collect();
    let m = method.to_ascii_uppercase();
    let read = m == "GET" || m == "HEAD";
    let container = |id: String| Object::Container(id);
    match (m.as_str(), segs.as_slice()) {
        ("GET" | "HEAD", ["containers", rest @ ..]) if rest.len() >= 2 => match container_and_action(rest) {
            (id, "archive" | "export") => Access::ReadFiles(vec![container(id)]),
            (id, "attach/ws") => Access::Change(vec![container(id)]),
            _ => Access::Look,
        },
        ("GET", ["images", "get"]) => {
            Access::ReadFiles(query_values(query, "names").into_iter().map(Object::Image).collect())
        }
        ("GET", ["images", name @ .., "get"]) if !name.is_empty() => {
            Access::ReadFiles(vec![Object::Image(name.join("/"))])
        }
        _ if read => Access::Look,
        ("POST", ["containers", "create"]) => Access::Make(None),
        ("POST", [kind, "prune"]) if ["containers", "volumes", "images", "networks", "build"].contains(kind) => {
            Access::Everyone("pruning removes everyone's objects")
        }
        ("POST", ["containers", rest @ ..]) | ("PUT", ["containers", rest @ ..]) if rest.len() >= 2 => {
            Access::Change(vec![container(container_and_action(rest).0)])
        }
        ("DELETE", ["containers", rest @ ..]) if !rest.is_empty() => Access::Change(vec![container(rest.join("/"))]),
        ("POST", ["exec", id, "start" | "resize"]) => Access::Change(vec![Object::Exec(id.to_string())]),
        ("POST", ["volumes", "create"]) | ("POST", ["networks", "create"]) | ("POST", ["build"]) => Access::Make(None),
        ("POST", ["session"]) => Access::Make(None),
        ("POST", ["images", "create" | "load"]) => Access::Make(None),
        ("POST", ["commit"]) => Access::Make(query_values(query, "container").into_iter().next().map(container)),
        ("POST", ["images", name @ .., "tag" | "push"]) if !name.is_empty() => {
            Access::Change(vec![Object::Image(name.join("/"))])
        }
        ("DELETE", ["images", name @ ..]) if !name.is_empty() => Access::Change(vec![Object::Image(name.join("/"))]),
        ("DELETE", ["volumes", name]) => Access::Change(vec![Object::Volume(name.to_string())]),
        ("DELETE", ["networks", id]) => Access::Change(vec![Object::Network(id.to_string())]),
        ("POST", ["networks", id, "connect" | "disconnect"]) => Access::Change(vec![Object::Network(id.to_string())]),
        ("POST", ["auth"]) => Access::Look,
        _ => Access::Everyone("Den does not tell this request apart"),
    }
}

/// What dockerd says about an existing object, for deciding on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owned {
    /// The owner label's value.
    pub owner: Option<String>,
    /// Host paths the container binds (for the shared-folder rule).
    pub binds: Vec<String>,
    /// An image with no owner: pulled or loaded, shared by everyone.
    pub shared_image: bool,
}

/// The owner label of an inspect answer's `Labels` (at `Config.Labels` for containers and
/// images).
fn owner_in(labels: Option<&Value>) -> Option<String> {
    labels?.get(OWNER_LABEL)?.as_str().map(str::to_string)
}

/// Reads an inspect answer (`GET /containers/{id}/json`, `/volumes/{n}`, `/networks/{id}`,
/// `/images/{n}/json`).
pub fn owned_from(object: &Object, inspect: &Value) -> Owned {
    match object {
        Object::Container(_) | Object::Exec(_) => Owned {
            owner: owner_in(inspect.pointer("/Config/Labels")),
            binds: inspect
                .get("Mounts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|m| m.get("Type").and_then(Value::as_str) == Some("bind"))
                .filter_map(|m| m.get("Source").and_then(Value::as_str).map(str::to_string))
                .collect(),
            shared_image: false,
        },
        Object::Image(_) => {
            let owner = owner_in(inspect.pointer("/Config/Labels"));
            Owned { shared_image: owner.is_none(), owner, binds: vec![] }
        }
        Object::Volume(_) | Object::Network(_) => {
            Owned { owner: owner_in(inspect.get("Labels")), binds: vec![], shared_image: false }
        }
    }
}

/// The inspect path of an object (an exec is inspected first for its container).
pub fn inspect_path(object: &Object) -> String {
    let id = |s: &str| percent_encode(s).replace('/', "%2F");
    match object {
        Object::Container(c) => format!("/containers/{}/json", id(c)),
        Object::Exec(e) => format!("/exec/{}/json", id(e)),
        Object::Volume(v) => format!("/volumes/{}", id(v)),
        Object::Network(n) => format!("/networks/{}", id(n)),
        Object::Image(i) => format!("/images/{}/json", percent_encode(i)),
    }
}

/// `obj` with every spelling of `Labels` merged into one `Labels` map that names `user` as
/// the owner (Go's decoder would take the last spelling; a client's own owner label is
/// dropped).
fn with_owner(mut obj: Map<String, Value>, user: &str) -> Map<String, Value> {
    let mut labels = Map::new();
    let keys: Vec<String> = obj.keys().filter(|k| go_key_matches(k, "Labels")).cloned().collect();
    for k in keys {
        if let Some(Value::Object(m)) = obj.remove(&k) {
            labels.extend(m);
        }
    }
    labels.retain(|k, _| !k.eq_ignore_ascii_case(OWNER_LABEL));
    labels.insert(OWNER_LABEL.into(), Value::String(user.into()));
    obj.insert("Labels".into(), Value::Object(labels));
    obj
}

/// Whether `endpoint`'s body makes an object and gets the owner label ([`label_body`]).
pub fn labels_body(endpoint: &super::endpoint::Endpoint) -> bool {
    use super::endpoint::Endpoint;
    matches!(endpoint, Endpoint::ContainerCreate | Endpoint::VolumeCreate | Endpoint::NetworkCreate | Endpoint::Commit)
}

/// A create body (container, volume, network, commit) labelled with its owner. An empty body
/// (a commit may have none) becomes just the label.
pub fn label_body(body: &[u8], user: &str) -> Result<Vec<u8>, String> {
    let obj = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => o,
            Ok(Value::Null) => Map::new(),
            Ok(_) => return Err("the body is not a JSON object".into()),
            Err(e) => return Err(format!("the body is not JSON: {e}")),
        }
    };
    serde_json::to_vec(&Value::Object(with_owner(obj, user))).map_err(|e| e.to_string())
}

/// A build's query string with the owner label added to its `labels` (a JSON object).
pub fn label_build_query(query: &str, user: &str) -> Result<String, String> {
    let mut labels = Map::new();
    let mut out: Vec<String> = Vec::new();
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if percent_decode(k, true) == "labels" {
            match serde_json::from_str::<Value>(&percent_decode(v, true)) {
                Ok(Value::Object(m)) => labels.extend(m),
                Ok(Value::Null) => {}
                _ => return Err("the build's `labels` is not a JSON object".into()),
            }
        } else {
            out.push(kv.to_string());
        }
    }
    labels.retain(|k, _| !k.eq_ignore_ascii_case(OWNER_LABEL));
    labels.insert(OWNER_LABEL.into(), Value::String(user.into()));
    out.push(format!("labels={}", percent_encode(&Value::Object(labels).to_string())));
    Ok(out.join("&"))
}

/// The existing objects a container create body reaches: named volumes it mounts, the network
/// it joins, and a container whose namespaces it shares (`container:<id>` modes) or whose
/// volumes it takes (`VolumesFrom`).
pub fn reached_by_create(body: &[u8]) -> Vec<Object> {
    let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(body) else { return vec![] };
    let fields = |o: &Map<String, Value>, name: &str| -> Vec<Value> {
        o.iter().filter(|(k, _)| go_key_matches(k, name)).map(|(_, v)| v.clone()).collect()
    };
    let mut out = Vec::new();
    let mut configs = vec![top.clone()];
    for hc in fields(&top, "HostConfig") {
        if let Value::Object(hc) = hc {
            configs.push(hc);
        }
    }
    for hc in &configs {
        for binds in fields(hc, "Binds") {
            for b in binds.as_array().into_iter().flatten().filter_map(Value::as_str) {
                let src = b.split(':').next().unwrap_or("");
                if !src.is_empty() && !src.starts_with('/') {
                    out.push(Object::Volume(src.to_string()));
                }
            }
        }
        for mounts in fields(hc, "Mounts") {
            for m in mounts.as_array().into_iter().flatten().filter_map(Value::as_object) {
                let is_volume =
                    fields(m, "Type").iter().any(|t| t.as_str().is_some_and(|t| t.eq_ignore_ascii_case("volume")));
                for src in fields(m, "Source").iter().filter_map(Value::as_str).filter(|s| !s.is_empty()) {
                    if is_volume {
                        out.push(Object::Volume(src.to_string()));
                    }
                }
            }
        }
        for from in fields(hc, "VolumesFrom") {
            for v in from.as_array().into_iter().flatten().filter_map(Value::as_str) {
                out.push(Object::Container(v.split(':').next().unwrap_or(v).to_string()));
            }
        }
        for mode in ["NetworkMode", "PidMode", "IpcMode"] {
            for v in fields(hc, mode).iter().filter_map(Value::as_str) {
                if let Some(c) = v.strip_prefix("container:") {
                    out.push(Object::Container(c.to_string()));
                } else if mode == "NetworkMode" && !["", "bridge", "host", "none", "default"].contains(&v) {
                    out.push(Object::Network(v.to_string()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_told_apart() {
        let c = |id: &str| Object::Container(id.into());
        assert_eq!(access("GET", "/v1.47/containers/json", "all=1"), Access::Look);
        assert_eq!(access("GET", "/v1.47/containers/abc/json", ""), Access::Look);
        assert_eq!(access("GET", "/v1.47/containers/abc/logs", ""), Access::Look);
        assert_eq!(access("GET", "/v1.47/containers/abc/archive", "path=/"), Access::ReadFiles(vec![c("abc")]));
        assert_eq!(access("HEAD", "/containers/abc/archive", "path=/"), Access::ReadFiles(vec![c("abc")]));
        assert_eq!(access("GET", "/containers/abc/export", ""), Access::ReadFiles(vec![c("abc")]));
        assert_eq!(access("GET", "/containers/abc/attach/ws", ""), Access::Change(vec![c("abc")]));
        assert_eq!(
            access("GET", "/images/get", "names=busybox&names=mine%3A1"),
            Access::ReadFiles(vec![Object::Image("busybox".into()), Object::Image("mine:1".into())])
        );
        assert_eq!(
            access("GET", "/images/library/busybox/get", ""),
            Access::ReadFiles(vec![Object::Image("library/busybox".into())])
        );
        assert_eq!(access("POST", "/containers/create", "name=x"), Access::Make(None));
        for action in ["start", "stop", "restart", "kill", "exec", "update", "attach", "wait", "rename", "pause"] {
            assert_eq!(
                access("POST", &format!("/v1.41/containers/abc/{action}"), ""),
                Access::Change(vec![c("abc")]),
                "{action}"
            );
        }
        assert_eq!(access("POST", "/containers/web/db/exec", ""), Access::Change(vec![c("web/db")]), "link aliases");
        assert_eq!(access("PUT", "/containers/abc/archive", "path=/"), Access::Change(vec![c("abc")]));
        assert_eq!(access("DELETE", "/containers/abc", "force=1"), Access::Change(vec![c("abc")]));
        assert_eq!(access("POST", "/exec/e1/start", ""), Access::Change(vec![Object::Exec("e1".into())]));
        assert_eq!(access("POST", "/commit", "container=abc&repo=x"), Access::Make(Some(c("abc"))));
        assert_eq!(access("DELETE", "/volumes/v1", ""), Access::Change(vec![Object::Volume("v1".into())]));
        assert_eq!(access("POST", "/networks/n1/connect", ""), Access::Change(vec![Object::Network("n1".into())]));
        assert!(matches!(access("POST", "/containers/prune", ""), Access::Everyone(_)));
        assert!(matches!(access("POST", "/volumes/prune", ""), Access::Everyone(_)));
        assert!(matches!(access("POST", "/something/new", ""), Access::Everyone(_)), "unknown changes: admins");
        assert_eq!(access("POST", "/images/create", "fromImage=x"), Access::Make(None));
    }

    #[test]
    fn owner_labels_cannot_be_forged() {
        let body =
            br#"{"Image":"busybox","labels":{"den.owner":"root","a":"1"},"LABELS":{"DEN.OWNER":"root","b":"2"}}"#;
        let out: Value = serde_json::from_slice(&label_body(body, "alice").unwrap()).unwrap();
        assert_eq!(out["Labels"], json!({"a": "1", "b": "2", "den.owner": "alice"}));
        assert!(out.get("labels").is_none() && out.get("LABELS").is_none(), "one spelling left: {out}");
        let out: Value = serde_json::from_slice(&label_body(b"", "bob").unwrap()).unwrap();
        assert_eq!(out, json!({"Labels": {"den.owner": "bob"}}));
        assert!(label_body(b"[1]", "bob").is_err());
        let q =
            label_build_query("t=x&labels=%7B%22den.owner%22%3A%22root%22%2C%22k%22%3A%22v%22%7D", "alice").unwrap();
        assert!(q.starts_with("t=x&labels="), "{q}");
        let labels: Value = serde_json::from_str(&percent_decode(q.split("labels=").nth(1).unwrap(), true)).unwrap();
        assert_eq!(labels, json!({"k": "v", "den.owner": "alice"}));
    }

    #[test]
    fn what_a_create_reaches() {
        let body = br#"{"Image":"busybox","HostConfig":{"Binds":["theirs:/data","/srv/x:/x"],
            "Mounts":[{"Type":"volume","Source":"other"},{"Type":"bind","Source":"/y"}],
            "NetworkMode":"container:abc","VolumesFrom":["def:ro"]},
            "hostconfig":{"networkmode":"their-net","pidmode":"container:ghi"}}"#;
        let got = reached_by_create(body);
        for want in [
            Object::Volume("theirs".into()),
            Object::Volume("other".into()),
            Object::Container("abc".into()),
            Object::Container("def".into()),
            Object::Network("their-net".into()),
            Object::Container("ghi".into()),
        ] {
            assert!(got.contains(&want), "{want:?} in {got:?}");
        }
        assert!(
            !got.iter().any(|o| matches!(o, Object::Volume(v) if v.starts_with('/'))),
            "host paths are the policy's"
        );
        assert!(reached_by_create(br#"{"HostConfig":{"NetworkMode":"bridge"}}"#).is_empty());
    }

    #[test]
    fn inspect_answers_name_owners_and_binds() {
        let inspect = json!({"Config": {"Labels": {"den.owner": "alice"}},
                             "Mounts": [{"Type": "bind", "Source": "/srv/share"}, {"Type": "volume", "Source": "/var/lib/docker/volumes/x"}]});
        let o = owned_from(&Object::Container("c".into()), &inspect);
        assert_eq!((o.owner.as_deref(), o.binds.as_slice()), (Some("alice"), &["/srv/share".to_string()][..]));
        let img = owned_from(&Object::Image("busybox".into()), &json!({"Config": {"Labels": null}}));
        assert!(img.shared_image && img.owner.is_none());
        let vol = owned_from(&Object::Volume("v".into()), &json!({"Labels": {"den.owner": "bob"}}));
        assert_eq!(vol.owner.as_deref(), Some("bob"));
        assert_eq!(inspect_path(&Object::Container("a/b".into())), "/containers/a%2Fb/json");
    }
}
