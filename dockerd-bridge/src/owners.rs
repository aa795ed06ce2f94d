//! Who owns what in the sandbox. Every container, volume, network and built or committed image
//! made through the bridge carries the label [`OWNER_LABEL`] with its Den user, set here (a
//! client's own value under any spelling is replaced, never trusted). A request that reaches an
//! existing object ([`access`]) is decided on that object's owner and, for containers, on
//! whether it binds a shared host folder ([`Owned`], looked up from dockerd before the request
//! is forwarded), by [`den_auth::policy::authorize`].

use super::endpoint::unversioned;
use super::policy::go_key_matches;
use den_net_util::url::{encode as percent_encode, pairs, query_values};
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
    /// A tag (`repo[:tag]`) a request points at another image or removes: moving it changes
    /// what everyone who runs that name gets, so it is decided on the image it names now.
    Tag(String),
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
            Object::Tag(t) => format!("the tag `{t}`"),
        }
    }
}

/// What a request does, as far as owners go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Lists, inspects, logs, events, pings: anyone who may use Docker.
    Look,
    /// Makes a new object, labelled with its owner (containers, volumes, networks, builds,
    /// commits), or pulls and loads images (shared by everyone); with the existing objects it
    /// reaches (a commit's container, the tags it sets).
    Make(Vec<Object>),
    /// Reads an object's files (`docker cp` out, `export`, `save`): an operator who owns it.
    ReadFiles(Vec<Object>),
    /// Changes, starts, stops, enters or deletes an existing object: its owner or an admin.
    Change(Vec<Object>),
    /// Reaches everyone's objects at once (prune) or anything not told apart: admins only.
    Everyone(&'static str),
}

/// The role a request needs before its objects are looked at: looking (a plain read) a
/// viewer, what reaches everyone's objects an admin, everything else an operator.
pub fn role_for(access: &Access, plain_read: bool) -> den_auth::Role {
    use den_auth::Role;
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

/// The reference a query's first `repo` and `tag` name (dockerd's `r.Form.Get`): `repo:tag`,
/// `repo@digest`, or `repo` (its `latest`).
fn reference(query: &str, repo_key: &str) -> Option<String> {
    let repo = query_values(query, repo_key).into_iter().next().filter(|r| !r.is_empty())?;
    Some(match query_values(query, "tag").into_iter().next().filter(|t| !t.is_empty()) {
        Some(digest) if digest.contains(':') => format!("{repo}@{digest}"),
        Some(tag) => format!("{repo}:{tag}"),
        None => repo,
    })
}

/// The tag a query's `repo` and `tag` name (tag, commit, import), if any.
fn tag_of(query: &str) -> Option<Object> {
    reference(query, "repo").map(Object::Tag)
}

/// The tags a build sets: every `t`, and the `name`s of its BuildKit `outputs` (a JSON list of
/// `{Type, Attrs}`; the image exporter tags `Attrs.name`, a comma-separated list, when no `t`
/// is given).
fn build_tags(query: &str) -> Vec<String> {
    let mut tags = query_values(query, "t");
    for outputs in query_values(query, "outputs") {
        let Ok(Value::Array(list)) = serde_json::from_str::<Value>(&outputs) else { continue };
        for attrs in list.iter().filter_map(Value::as_object).flat_map(|o| fields(o, "Attrs")) {
            let names = attrs.get("name").and_then(Value::as_str).unwrap_or_default();
            tags.extend(names.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_string));
        }
    }
    tags
}

/// The reference a pull (`POST /images/create?fromImage=`) points at what a registry serves.
pub fn pulled(method: &str, path: &str, query: &str) -> Option<String> {
    let segs: Vec<&str> = unversioned(path).split('/').filter(|s| !s.is_empty()).collect();
    let pull = method.eq_ignore_ascii_case("POST") && segs == ["images", "create"];
    if pull && query_values(query, "fromSrc").is_empty() {
        reference(query, "fromImage")
    } else {
        None
    }
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
        ("POST", ["containers", "create"]) => Access::Make(vec![]),
        ("POST", [kind, "prune"]) if ["containers", "volumes", "images", "networks", "build"].contains(kind) => {
            Access::Everyone("pruning removes everyone's objects")
        }
        ("POST", ["containers", rest @ ..]) | ("PUT", ["containers", rest @ ..]) if rest.len() >= 2 => {
            Access::Change(vec![container(container_and_action(rest).0)])
        }
        ("DELETE", ["containers", rest @ ..]) if !rest.is_empty() => Access::Change(vec![container(rest.join("/"))]),
        ("POST", ["exec", id, "start" | "resize"]) => Access::Change(vec![Object::Exec(id.to_string())]),
        ("POST", ["volumes", "create"]) | ("POST", ["networks", "create"]) | ("POST", ["session"]) => {
            Access::Make(vec![])
        }
        ("POST", ["build"]) => Access::Make(build_tags(query).into_iter().map(Object::Tag).collect()),
        // A pull points its tag at what the registry serves (decided as a use of the image the
        // tag names now: a shared one is everyone's to pull again, someone's own is theirs); an
        // import (`fromSrc`) at the body, as a tag.
        ("POST", ["images", "create"]) if query_values(query, "fromSrc").is_empty() => {
            Access::Make(reference(query, "fromImage").map(Object::Image).into_iter().collect())
        }
        ("POST", ["images", "create"]) => Access::Make(tag_of(query).into_iter().collect()),
        ("POST", ["images", "load"]) => Access::Make(vec![]),
        ("POST", ["commit"]) => {
            let from = query_values(query, "container").into_iter().next().map(container);
            Access::Make(from.into_iter().chain(tag_of(query)).collect())
        }
        ("POST", ["images", name @ .., "push"]) if !name.is_empty() => {
            Access::Change(vec![Object::Image(name.join("/"))])
        }
        ("POST", ["images", name @ .., "tag"]) if !name.is_empty() => {
            Access::Change(std::iter::once(Object::Image(name.join("/"))).chain(tag_of(query)).collect())
        }
        ("DELETE", ["images", name @ ..]) if !name.is_empty() => Access::Change(vec![Object::Tag(name.join("/"))]),
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
        // A shared image's tag is everyone's: only an admin moves it.
        Object::Tag(_) => Owned { owner: owner_in(inspect.pointer("/Config/Labels")), ..Owned::default() },
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
        Object::Image(i) | Object::Tag(i) => format!("/images/{}/json", percent_encode(i)),
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
    for pair in pairs(query) {
        if pair.key == "labels" {
            match serde_json::from_str::<Value>(&pair.value) {
                Ok(Value::Object(m)) => labels.extend(m),
                Ok(Value::Null) => {}
                _ => return Err("the build's `labels` is not a JSON object".into()),
            }
        } else {
            out.push(pair.raw.to_string());
        }
    }
    labels.retain(|k, _| !k.eq_ignore_ascii_case(OWNER_LABEL));
    labels.insert(OWNER_LABEL.into(), Value::String(user.into()));
    out.push(format!("labels={}", percent_encode(&Value::Object(labels).to_string())));
    Ok(out.join("&"))
}

/// Every value of the field `name` in `o`, under any spelling Go's decoder accepts.
pub fn fields(o: &Map<String, Value>, name: &str) -> Vec<Value> {
    o.iter().filter(|(k, _)| go_key_matches(k, name)).map(|(_, v)| v.clone()).collect()
}

/// Network names every container may use (dockerd's own; empty: none given).
const DEFAULT_NETWORKS: [&str; 5] = ["", "bridge", "host", "none", "default"];

/// The networks an endpoint configuration names by `NetworkID` (dockerd prefers it to the
/// name it is filed under).
fn endpoint_networks(ep: &Value) -> Vec<Object> {
    let Some(ep) = ep.as_object() else { return vec![] };
    fields(ep, "NetworkID")
        .iter()
        .filter_map(Value::as_str)
        .filter(|n| !DEFAULT_NETWORKS.contains(n))
        .map(|n| Object::Network(n.to_string()))
        .collect()
}

/// What a network connect body names: its `Container`, and a network by `NetworkID`.
pub fn reached_by_connect(body: &[u8]) -> Vec<Object> {
    let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(body) else { return vec![] };
    let mut out: Vec<Object> =
        fields(&top, "Container").iter().filter_map(Value::as_str).map(|c| Object::Container(c.to_string())).collect();
    out.extend(fields(&top, "EndpointConfig").iter().flat_map(endpoint_networks));
    out
}

/// A commit's query with one more `changes`, last (so it wins over any other), that sets the
/// owner label to `user`.
pub fn label_commit_query(query: &str, user: &str) -> String {
    let change = format!("changes={}", percent_encode(&format!("LABEL \"{OWNER_LABEL}\"=\"{user}\"")));
    if query.is_empty() {
        change
    } else {
        format!("{query}&{change}")
    }
}

/// Whether a request removes a link (`DELETE /containers/<parent>/<alias>?link=1`): its path
/// names the link, not a container, and stays as it is.
pub fn removes_link(method: &str, query: &str) -> bool {
    method.eq_ignore_ascii_case("DELETE")
        && query_values(query, "link")
            .first()
            .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True" | "TRUE" | "t" | "T"))
}

/// Whether an image reference could also be an id prefix (lowercase hex, shorter than an id):
/// dockerd looks it up as a name first and as an id prefix when no name matches.
pub fn could_be_id_prefix(reference: &str) -> bool {
    (1..64).contains(&reference.len()) && reference.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether a commit's `changes` (Dockerfile instructions dockerd applies over the body's
/// configuration, after Den's label) mention the owner label: such a commit could name anyone
/// as its image's owner.
pub fn changes_name_owner(query: &str) -> bool {
    query_values(query, "changes").iter().any(|c| c.to_ascii_lowercase().contains(OWNER_LABEL))
}

/// The existing objects a container create body reaches: the image it runs, named volumes it
/// mounts, the networks it joins (`NetworkMode`, `NetworkingConfig.EndpointsConfig`), and a
/// container whose namespaces it shares (`container:<id>` modes) or whose volumes it takes
/// (`VolumesFrom`).
pub fn reached_by_create(body: &[u8]) -> Vec<Object> {
    let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(body) else { return vec![] };
    let mut out: Vec<Object> =
        fields(&top, "Image").iter().filter_map(Value::as_str).map(|i| Object::Image(i.to_string())).collect();
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
        for field in ["VolumesFrom", "Links"] {
            for from in fields(hc, field) {
                for v in from.as_array().into_iter().flatten().filter_map(Value::as_str) {
                    out.push(Object::Container(v.split(':').next().unwrap_or(v).to_string()));
                }
            }
        }
        for nc in fields(hc, "NetworkingConfig") {
            for eps in nc.as_object().map(|o| fields(o, "EndpointsConfig")).unwrap_or_default() {
                for (name, ep) in eps.as_object().into_iter().flatten() {
                    if !DEFAULT_NETWORKS.contains(&name.as_str()) {
                        out.push(Object::Network(name.clone()));
                    }
                    out.extend(endpoint_networks(ep));
                }
            }
        }
        for mode in ["NetworkMode", "PidMode", "IpcMode"] {
            for v in fields(hc, mode).iter().filter_map(Value::as_str) {
                if let Some(c) = v.strip_prefix("container:") {
                    out.push(Object::Container(c.to_string()));
                } else if mode == "NetworkMode" && !DEFAULT_NETWORKS.contains(&v) {
                    out.push(Object::Network(v.to_string()));
                }
            }
        }
    }
    out
}

/// The objects that are forwarded by their full id once decided on ([`pin_path`],
/// [`pin_query`], [`pin_body`]): containers and networks are also found by name and id prefix,
/// and a name can change hands between the owner lookup and the request (a rename, or a name
/// that was another object's id prefix being removed).
pub fn pinned(object: &Object) -> bool {
    matches!(object, Object::Container(_) | Object::Network(_))
}

/// `path` with the objects of `pins` (object, full id) that it names replaced by their ids.
pub fn pin_path(path: &str, pins: &[(Object, String)]) -> String {
    let mut out = path.to_string();
    for (object, id) in pins {
        let (kind, name) = match object {
            Object::Container(n) => ("containers", n),
            Object::Network(n) => ("networks", n),
            _ => continue,
        };
        let at = format!("/{kind}/{name}");
        if let Some(i) = out.find(&at) {
            let end = i + at.len();
            if matches!(out.as_bytes().get(end), None | Some(b'/')) {
                out.replace_range(i..end, &format!("/{kind}/{id}"));
            }
        }
    }
    out
}

/// A commit's query with its `container` pinned to the id.
pub fn pin_query(query: &str, pins: &[(Object, String)]) -> String {
    pairs(query)
        .map(|pair| {
            match pins.iter().find(|(o, _)| pair.key == "container" && *o == Object::Container(pair.value.clone())) {
                Some((_, id)) => format!("{}={id}", pair.raw_key),
                None => pair.raw.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A create or network connect body with the containers it names pinned to their ids
/// (`VolumesFrom`, `container:` modes, `Container`); `None` when nothing changed.
pub fn pin_body(body: &[u8], pins: &[(Object, String)]) -> Option<Vec<u8>> {
    let Ok(Value::Object(mut top)) = serde_json::from_slice::<Value>(body) else { return None };
    let mut pinner = Pinner { pins, changed: false };
    pinner.config(&mut top);
    for (k, v) in top.iter_mut() {
        match v {
            Value::Object(hc) if go_key_matches(k, "HostConfig") => pinner.config(hc),
            Value::Object(nc) if go_key_matches(k, "NetworkingConfig") => {
                for (k, eps) in nc.iter_mut() {
                    if let (true, Value::Object(eps)) = (go_key_matches(k, "EndpointsConfig"), eps) {
                        pinner.endpoints(eps);
                    }
                }
            }
            Value::Object(ep) if go_key_matches(k, "EndpointConfig") => pinner.endpoint(ep),
            _ => {}
        }
    }
    if !pinner.changed {
        return None;
    }
    serde_json::to_vec(&Value::Object(top)).ok()
}

/// Rewrites the names in a body to the ids they were decided on.
struct Pinner<'a> {
    pins: &'a [(Object, String)],
    changed: bool,
}

impl Pinner<'_> {
    fn id(&self, object: Object) -> Option<String> {
        self.pins.iter().find(|(o, _)| *o == object).map(|(_, id)| id.clone())
    }

    fn set(&mut self, v: &mut Value, new: Option<String>) {
        if let Some(new) = new {
            *v = Value::String(new);
            self.changed = true;
        }
    }

    /// `VolumesFrom`, `Links`, the modes and a connect's `Container` in a (host) configuration.
    fn config(&mut self, o: &mut Map<String, Value>) {
        let container = |p: &Self, name: &str| p.id(Object::Container(name.to_string()));
        for (k, v) in o.iter_mut() {
            let fields = ["VolumesFrom", "Links", "NetworkMode", "PidMode", "IpcMode", "Container"];
            let Some(field) = fields.into_iter().find(|f| go_key_matches(k, f)) else { continue };
            let items: Vec<&mut Value> = match v {
                Value::Array(items) => items.iter_mut().collect(),
                v => vec![v],
            };
            for item in items {
                let Some(text) = item.as_str().map(str::to_string) else { continue };
                let new = match field {
                    "VolumesFrom" | "Links" => {
                        let (name, rest) = text.split_once(':').map_or((text.as_str(), None), |(n, r)| (n, Some(r)));
                        container(self, name).map(|id| rest.map_or(id.clone(), |r| format!("{id}:{r}")))
                    }
                    "Container" => container(self, &text),
                    "NetworkMode" if !text.starts_with("container:") => self.id(Object::Network(text.clone())),
                    _ => text
                        .strip_prefix("container:")
                        .and_then(|c| container(self, c))
                        .map(|id| format!("container:{id}")),
                };
                self.set(item, new);
            }
        }
    }

    /// `NetworkingConfig.EndpointsConfig`: its keys (networks) and each entry's `NetworkID`.
    fn endpoints(&mut self, eps: &mut Map<String, Value>) {
        let renamed: Vec<(String, String)> =
            eps.keys().filter_map(|k| self.id(Object::Network(k.clone())).map(|id| (k.clone(), id))).collect();
        for (old, id) in renamed {
            if let Some(v) = eps.remove(&old) {
                eps.insert(id, v);
                self.changed = true;
            }
        }
        for ep in eps.values_mut() {
            if let Value::Object(ep) = ep {
                self.endpoint(ep);
            }
        }
    }

    /// An endpoint's `NetworkID` (dockerd prefers it to the network's name).
    fn endpoint(&mut self, ep: &mut Map<String, Value>) {
        for (k, v) in ep.iter_mut() {
            if go_key_matches(k, "NetworkID") {
                let new = v.as_str().and_then(|n| self.id(Object::Network(n.to_string())));
                self.set(v, new);
            }
        }
    }
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
        assert_eq!(access("POST", "/containers/create", "name=x"), Access::Make(vec![]));
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
        let tag = |t: &str| Object::Tag(t.into());
        assert_eq!(access("POST", "/commit", "container=abc&repo=x"), Access::Make(vec![c("abc"), tag("x")]));
        assert_eq!(access("POST", "/commit", "container=abc&repo=x&tag=2"), Access::Make(vec![c("abc"), tag("x:2")]));
        assert_eq!(access("POST", "/build", "t=a%3A1&t=b"), Access::Make(vec![tag("a:1"), tag("b")]));
        let outputs = percent_encode(r#"[{"type":"moby","attrs":{"name":"busybox:latest, x:1"}}]"#);
        assert_eq!(
            access("POST", "/build", &format!("version=2&outputs={outputs}")),
            Access::Make(vec![tag("busybox:latest"), tag("x:1")]),
            "BuildKit's outputs name tags too"
        );
        assert_eq!(
            access("POST", "/images/mine/tag", "repo=busybox&tag=latest"),
            Access::Change(vec![Object::Image("mine".into()), tag("busybox:latest")])
        );
        assert_eq!(access("DELETE", "/images/busybox", ""), Access::Change(vec![tag("busybox")]));
        assert_eq!(access("POST", "/images/create", "fromSrc=-&repo=a&tag=1"), Access::Make(vec![tag("a:1")]));
        assert_eq!(
            access("POST", "/images/create", "fromImage=a&tag=1"),
            Access::Make(vec![Object::Image("a:1".into())]),
            "a pull"
        );
        assert_eq!(
            access("POST", "/images/mine/tag", "repo=busybox&tag&tag=zz"),
            Access::Change(vec![Object::Image("mine".into()), tag("busybox")]),
            "a bare `tag` is the empty value dockerd reads first"
        );
        assert_eq!(access("DELETE", "/volumes/v1", ""), Access::Change(vec![Object::Volume("v1".into())]));
        assert_eq!(access("POST", "/networks/n1/connect", ""), Access::Change(vec![Object::Network("n1".into())]));
        assert!(matches!(access("POST", "/containers/prune", ""), Access::Everyone(_)));
        assert!(matches!(access("POST", "/volumes/prune", ""), Access::Everyone(_)));
        assert!(matches!(access("POST", "/something/new", ""), Access::Everyone(_)), "unknown changes: admins");
        assert_eq!(access("POST", "/images/create", "fromImage=x"), Access::Make(vec![Object::Image("x".into())]));
        assert_eq!(pulled("POST", "/v1.41/images/create", "fromImage=x&tag=2").as_deref(), Some("x:2"));
        assert_eq!(pulled("POST", "/images/create", "fromSrc=-&repo=x"), None, "an import");
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
        assert!(changes_name_owner("container=x&changes=LABEL%20%22DEN.OWNER%22%3Droot"));
        assert!(!changes_name_owner("container=x&changes=ENV%20A%3D1"));
        let q = label_commit_query("container=x&changes=ENV%20A%3D1", "alice");
        assert_eq!(query_values(&q, "changes").last().map(String::as_str), Some("LABEL \"den.owner\"=\"alice\""));
        assert!(
            removes_link("DELETE", "link=1") && !removes_link("DELETE", "force=1") && !removes_link("POST", "link=1")
        );
        assert!(
            could_be_id_prefix("deadbeef") && !could_be_id_prefix("busybox") && !could_be_id_prefix(&"a".repeat(64))
        );
        let q =
            label_build_query("t=x&labels=%7B%22den.owner%22%3A%22root%22%2C%22k%22%3A%22v%22%7D", "alice").unwrap();
        assert!(q.starts_with("t=x&labels="), "{q}");
        let labels: Value = serde_json::from_str(query_values(&q, "labels").last().unwrap()).unwrap();
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
    fn decided_objects_are_forwarded_by_id() {
        let pins = vec![
            (Object::Container("web".into()), "f00d".to_string()),
            (Object::Container("db".into()), "beef".to_string()),
            (Object::Network("net".into()), "cafe".to_string()),
        ];
        assert_eq!(pin_path("/v1.41/containers/web/exec", &pins), "/v1.41/containers/f00d/exec");
        assert_eq!(pin_path("/containers/web", &pins), "/containers/f00d");
        assert_eq!(pin_path("/containers/webx/start", &pins), "/containers/webx/start", "whole names only");
        assert_eq!(pin_path("/networks/net/connect", &pins), "/networks/cafe/connect");
        assert_eq!(pin_query("container=web&repo=x", &pins), "container=f00d&repo=x");
        let body = br#"{"Image":"i","HostConfig":{"VolumesFrom":["db:ro","other"],"NetworkMode":"container:web"},
            "hostconfig":{"pidmode":"container:db"}}"#;
        let out: Value = serde_json::from_slice(&pin_body(body, &pins).unwrap()).unwrap();
        assert_eq!(out["HostConfig"]["VolumesFrom"], json!(["beef:ro", "other"]));
        assert_eq!(out["HostConfig"]["NetworkMode"], "container:f00d");
        assert_eq!(out["hostconfig"]["pidmode"], "container:beef");
        let out: Value = serde_json::from_slice(&pin_body(br#"{"container":"web"}"#, &pins).unwrap()).unwrap();
        assert_eq!(out["container"], "f00d");
        assert_eq!(pin_body(br#"{"Image":"web"}"#, &pins), None, "nothing to pin");
        assert_eq!(reached_by_connect(br#"{"Container":"web"}"#), [Object::Container("web".into())]);
        let connect = br#"{"Container":"web","EndpointConfig":{"networkid":"net"}}"#;
        assert_eq!(reached_by_connect(connect), [Object::Container("web".into()), Object::Network("net".into())]);
        let out: Value = serde_json::from_slice(&pin_body(connect, &pins).unwrap()).unwrap();
        assert_eq!(
            (out["Container"].as_str(), out["EndpointConfig"]["networkid"].as_str()),
            (Some("f00d"), Some("cafe"))
        );
        let create = br#"{"Image":"i","HostConfig":{"NetworkMode":"net","Links":["db:alias"]},
            "NetworkingConfig":{"EndpointsConfig":{"net":{"NetworkID":"net"}}}}"#;
        let out: Value = serde_json::from_slice(&pin_body(create, &pins).unwrap()).unwrap();
        assert_eq!(out["HostConfig"]["NetworkMode"], "cafe", "networks by id too");
        assert_eq!(out["HostConfig"]["Links"], json!(["beef:alias"]));
        assert_eq!(out["NetworkingConfig"]["EndpointsConfig"], json!({"cafe": {"NetworkID": "cafe"}}));
        let create = br#"{"Image":"theirs","NetworkingConfig":{"EndpointsConfig":{"their-net":{},"bridge":{}}}}"#;
        assert_eq!(reached_by_create(create), [Object::Image("theirs".into()), Object::Network("their-net".into())]);
        let create = br#"{"Image":"i","NetworkingConfig":{"EndpointsConfig":{"mine":{"NetworkID":"theirs"}}},
            "HostConfig":{"Links":["victim:db"]}}"#;
        let got = reached_by_create(create);
        for want in [Object::Network("theirs".into()), Object::Container("victim".into())] {
            assert!(got.contains(&want), "{want:?} in {got:?}");
        }
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
