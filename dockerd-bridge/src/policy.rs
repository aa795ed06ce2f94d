//! The Docker policy: what a request may not ask of the sandbox, decided by reading its body.
//! Path filters do not stop `"Privileged": true`, so the bodies of container create and update,
//! exec create and volume create are parsed, and build queries read. Bodies that are missing,
//! not JSON, or not an object are refused, never forwarded (CVE-2024-41110 was an authorization
//! bypass through an empty body). Keys are matched the way dockerd's Go decoder matches them:
//! case-insensitively with Unicode simple folding (`ſ` is `s`, the Kelvin sign is `k`), and a
//! dangerous value under any spelling is refused. An admin can relax single rules by name.

use super::endpoint::Endpoint;
use den_net_util::url::pairs;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// Why a request was refused: the rule (its name in the config) and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule's name (`privileged`, `host-binds`, ...; `body` for malformed bodies).
    pub rule: &'static str,
    /// What was refused and why, and how to allow it.
    pub message: String,
}

/// Every rule an admin can relax (`[docker] allow = [...]`).
pub const RULES: [&str; 15] = [
    "privileged",
    "host-namespaces",
    "capabilities",
    "devices",
    "security-opt",
    "sysctls",
    "cgroup-parent",
    "runtime",
    "privileged-exec",
    "bind-volumes",
    "host-binds",
    "volumes-from",
    "plugins",
    "swarm",
    "buildkit-api",
];

/// Capabilities a container may add: Docker's defaults and a few that reach nothing outside it.
const CAPS_ALLOWED: [&str; 17] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
    "NET_BROADCAST",
    "LEASE",
    "SYS_NICE",
];

/// The namespace modes that, set to `host`, share the sandbox's namespace.
const NAMESPACE_MODES: [&str; 6] = ["PidMode", "NetworkMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode"];

/// The policy: rules relaxed by the admin and the host folders shared into the sandbox.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Rule names that are not enforced.
    pub relaxed: BTreeSet<String>,
    /// Host folders shared into the sandbox (at the same path), which binds may use.
    pub shared: Vec<PathBuf>,
    /// Shared folders exist but this caller may not bind them (only admins may: the sandbox
    /// writes there as root).
    pub shares_need_admin: bool,
}

/// Whether `endpoint`'s request body must be read and checked before forwarding.
pub fn inspects_body(endpoint: &Endpoint) -> bool {
    matches!(
        endpoint,
        Endpoint::ContainerCreate
            | Endpoint::ContainerUpdate
            | Endpoint::ExecCreate
            | Endpoint::VolumeCreate
            | Endpoint::NetworkConnect
    )
}

/// Whether `key` is `name` for Go's JSON decoder (case-insensitive, with simple folding).
pub fn go_key_matches(key: &str, name: &str) -> bool {
    key.chars().map(go_fold).eq(name.chars().map(|c| c.to_ascii_lowercase()))
}

/// The ASCII letter a character folds to for Go's decoder, when one does: Go folds the long s
/// and the Kelvin sign to `s` and `k`, and since Go 1.21 the dotless and dotted i to `i`.
fn go_fold(c: char) -> char {
    match c {
        '\u{17F}' => 's',
        '\u{212A}' => 'k',
        '\u{131}' | '\u{130}' => 'i',
        c => c.to_ascii_lowercase(),
    }
}

/// Every value stored under a spelling of `name` in `obj`.
fn fields<'a>(obj: &'a Map<String, Value>, name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    obj.iter().filter(move |(k, _)| go_key_matches(k, name)).map(|(_, v)| v)
}

fn refuse(rule: &'static str, what: impl std::fmt::Display) -> Refusal {
    let how = if rule == "body" || rule == "host-binds" {
        String::new()
    } else {
        format!("; an admin can allow it with `allow = [\"{rule}\"]` under `[docker]` in /etc/den/den.toml")
    };
    Refusal { rule, message: format!("refused by Den's Docker policy: {what}{how}") }
}

fn malformed(what: impl std::fmt::Display) -> Refusal {
    refuse("body", format!("{what}; the request was not forwarded"))
}

/// A JSON value that must be a bool (or null): true, false, or a refusal when it is neither.
fn flag(v: &Value, field: &str) -> Result<bool, Refusal> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        _ => Err(malformed(format!("`{field}` is not true or false"))),
    }
}

/// Whether a list-like field is non-empty (arrays, objects, non-empty strings).
fn non_empty(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap_or("\u{0}not a string")).collect(),
        Value::String(s) => vec![s.as_str()],
        _ => vec![],
    }
}

/// `path` with `.` and `..` resolved without touching the file system (`..` above `/` stays at `/`).
fn lexical(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

impl Policy {
    fn on(&self, rule: &str) -> bool {
        !self.relaxed.contains(rule)
    }

    /// Checks one request: the operation, its query string and (for [`inspects_body`]
    /// operations) its whole body.
    pub fn check(&self, endpoint: &Endpoint, query: &str, body: Option<&[u8]>) -> Result<(), Refusal> {
        match endpoint {
            Endpoint::Plugin if self.on("plugins") => {
                Err(refuse("plugins", "installing or changing plugins runs their code with the sandbox's rights"))
            }
            Endpoint::Swarm if self.on("swarm") => Err(refuse("swarm", "swarm mode is not offered in Den's sandbox")),
            Endpoint::Grpc if self.on("buildkit-api") => Err(refuse(
                "buildkit-api",
                "BuildKit's own API (`/grpc`) takes build options Den cannot check; `docker build` works",
            )),
            Endpoint::Build => self.check_build(query),
            e if inspects_body(e) => {
                let obj = object(body)?;
                match e {
                    Endpoint::ContainerCreate => self.check_create(&obj),
                    Endpoint::ContainerUpdate => self.check_resources(&obj),
                    Endpoint::ExecCreate => self.check_exec(&obj),
                    Endpoint::VolumeCreate => self.check_volume(&obj),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    fn check_build(&self, query: &str) -> Result<(), Refusal> {
        for den_net_util::url::Pair { key: k, value: v, .. } in pairs(query) {
            if k.eq_ignore_ascii_case("networkmode")
                && v.trim().eq_ignore_ascii_case("host")
                && self.on("host-namespaces")
            {
                return Err(refuse("host-namespaces", "a build with the sandbox's network (`--network host`)"));
            }
            if k.eq_ignore_ascii_case("cgroupparent") && !v.is_empty() && self.on("cgroup-parent") {
                return Err(refuse("cgroup-parent", "a build with `--cgroup-parent`"));
            }
        }
        Ok(())
    }

    fn check_create(&self, obj: &Map<String, Value>) -> Result<(), Refusal> {
        // dockerd still reads a deprecated host configuration from the top level of the body.
        self.check_host_config(obj)?;
        for hc in fields(obj, "HostConfig") {
            match hc {
                Value::Null => {}
                Value::Object(hc) => self.check_host_config(hc)?,
                _ => return Err(malformed("`HostConfig` is not an object")),
            }
        }
        Ok(())
    }

    fn check_host_config(&self, hc: &Map<String, Value>) -> Result<(), Refusal> {
        for v in fields(hc, "Privileged") {
            if flag(v, "Privileged")? && self.on("privileged") {
                return Err(refuse("privileged", "`--privileged` gives the container the whole sandbox VM"));
            }
        }
        for mode in NAMESPACE_MODES {
            for v in fields(hc, mode) {
                let host = v.as_str().is_some_and(|s| s.trim().eq_ignore_ascii_case("host"));
                if host && self.on("host-namespaces") {
                    return Err(refuse("host-namespaces", format!("`{mode}: host` shares the sandbox's namespace")));
                }
            }
        }
        for v in fields(hc, "CapAdd") {
            for cap in strings(v) {
                let name = cap.trim().to_ascii_uppercase();
                let name = name.strip_prefix("CAP_").unwrap_or(&name);
                if !CAPS_ALLOWED.contains(&name) && self.on("capabilities") {
                    return Err(refuse("capabilities", format!("`--cap-add {cap}` reaches beyond the container")));
                }
            }
        }
        self.check_resources(hc)?;
        for v in fields(hc, "SecurityOpt") {
            for opt in strings(v) {
                let o = opt.to_ascii_lowercase().replace(':', "=");
                let safe = o.starts_with("no-new-privileges")
                    || o == "apparmor=docker-default"
                    || o.starts_with("label=user")
                    || o.starts_with("label=role")
                    || o.starts_with("label=type")
                    || o.starts_with("label=level");
                if !safe && self.on("security-opt") {
                    return Err(refuse(
                        "security-opt",
                        format!("`--security-opt {opt}` weakens the container's confinement"),
                    ));
                }
            }
        }
        for field in ["MaskedPaths", "ReadonlyPaths"] {
            if fields(hc, field).any(|v| !v.is_null()) && self.on("security-opt") {
                return Err(refuse("security-opt", format!("`{field}` unmasks parts of /proc and /sys")));
            }
        }
        if fields(hc, "Sysctls").any(non_empty) && self.on("sysctls") {
            return Err(refuse("sysctls", "`--sysctl` changes kernel settings"));
        }
        if fields(hc, "CgroupParent").any(non_empty) && self.on("cgroup-parent") {
            return Err(refuse("cgroup-parent", "`--cgroup-parent` places the container outside Docker's cgroups"));
        }
        for v in fields(hc, "Runtime") {
            let r = v.as_str().unwrap_or("\u{0}");
            if !(r.is_empty() || r == "runc") && self.on("runtime") {
                return Err(refuse("runtime", format!("the runtime `{r}` (only runc is offered)")));
            }
        }
        if fields(hc, "VolumesFrom").any(non_empty) && self.on("volumes-from") {
            return Err(refuse(
                "volumes-from",
                "`--volumes-from` copies another container's mounts, host binds included; name the volumes instead",
            ));
        }
        for v in fields(hc, "Binds") {
            for bind in strings(v) {
                let src = bind.split(':').next().unwrap_or("");
                if src.starts_with('/') {
                    self.check_host_path(src)?;
                }
            }
        }
        for v in fields(hc, "Mounts") {
            let Value::Array(mounts) = v else {
                if v.is_null() {
                    continue;
                }
                return Err(malformed("`Mounts` is not a list"));
            };
            for m in mounts {
                let Value::Object(m) = m else { return Err(malformed("a mount is not an object")) };
                self.check_mount(m)?;
            }
        }
        Ok(())
    }

    /// Devices in a create's `HostConfig` or an update's resources.
    fn check_resources(&self, obj: &Map<String, Value>) -> Result<(), Refusal> {
        for field in ["Devices", "DeviceRequests", "DeviceCgroupRules"] {
            if fields(obj, field).any(non_empty) && self.on("devices") {
                return Err(refuse("devices", format!("`{field}` gives the container the sandbox's devices")));
            }
        }
        Ok(())
    }

    fn check_mount(&self, m: &Map<String, Value>) -> Result<(), Refusal> {
        let kind: Vec<String> = fields(m, "Type").map(|t| t.as_str().unwrap_or("?").to_ascii_lowercase()).collect();
        for k in &kind {
            match k.as_str() {
                "bind" => {
                    for s in fields(m, "Source") {
                        self.check_host_path(s.as_str().unwrap_or(""))?;
                    }
                }
                "volume" | "tmpfs" | "" => {}
                other => {
                    if self.on("host-binds") {
                        return Err(refuse("host-binds", format!("mounts of type `{other}`")));
                    }
                }
            }
        }
        for vo in fields(m, "VolumeOptions").filter_map(Value::as_object) {
            for dc in fields(vo, "DriverConfig").filter_map(Value::as_object) {
                for opts in fields(dc, "Options").filter_map(Value::as_object) {
                    self.check_volume_options(opts)?;
                }
            }
        }
        Ok(())
    }

    fn check_volume(&self, obj: &Map<String, Value>) -> Result<(), Refusal> {
        for opts in fields(obj, "DriverOpts") {
            match opts {
                Value::Null => {}
                Value::Object(o) => self.check_volume_options(o)?,
                _ => return Err(malformed("`DriverOpts` is not an object")),
            }
        }
        Ok(())
    }

    /// `local` volume options: only tmpfs volumes may have them; any other mount type (`bind`,
    /// a device, `proc`, `cgroup`, `overlay`, ...) reaches the sandbox itself.
    fn check_volume_options(&self, opts: &Map<String, Value>) -> Result<(), Refusal> {
        if opts.is_empty() || !self.on("bind-volumes") {
            return Ok(());
        }
        let tmpfs = fields(opts, "type").all(|t| t.as_str() == Some("tmpfs"))
            && fields(opts, "type").count() == 1
            && fields(opts, "device").all(|d| d.as_str().is_some_and(|d| !d.starts_with('/')))
            && fields(opts, "o").all(|o| o.as_str().is_some_and(|o| !o.split(',').any(|x| x.trim().ends_with("bind"))));
        if tmpfs {
            return Ok(());
        }
        Err(refuse("bind-volumes", "a `local` volume with mount options other than a tmpfs (`o=bind`, a device, proc, ...) mounts a sandbox path"))
    }

    fn check_exec(&self, obj: &Map<String, Value>) -> Result<(), Refusal> {
        for v in fields(obj, "Privileged") {
            if flag(v, "Privileged")? && self.on("privileged-exec") {
                return Err(refuse(
                    "privileged-exec",
                    "`docker exec --privileged` gives the process the whole sandbox",
                ));
            }
        }
        Ok(())
    }

    /// A bind of host path `src`: allowed only inside a shared folder.
    fn check_host_path(&self, src: &str) -> Result<(), Refusal> {
        let p = lexical(src);
        if self.shared.iter().any(|s| p.starts_with(s)) || !self.on("host-binds") {
            return Ok(());
        }
        if self.shares_need_admin {
            return Err(refuse(
                "host-binds",
                format!(
                    "binding the host path `{src}` needs a Den admin: the sandbox writes to shared folders as root \
                     (files it makes would belong to root on the host)"
                ),
            ));
        }
        let shared: Vec<String> = self.shared.iter().map(|s| s.display().to_string()).collect();
        let shared = if shared.is_empty() { "none".to_string() } else { shared.join(", ") };
        Err(refuse(
            "host-binds",
            format!(
                "the host path `{src}` is not shared with the Docker sandbox (shared: {shared}); \
                 an admin shares a folder with `share = [\"/path\"]` under `[docker]` in /etc/den/den.toml"
            ),
        ))
    }
}

/// The body as a JSON object, or the refusal for a missing, empty, non-JSON or non-object body.
fn object(body: Option<&[u8]>) -> Result<Map<String, Value>, Refusal> {
    let body = body.unwrap_or_default();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(malformed("this request needs a JSON body and it was empty"));
    }
    if let Err(e) = serde_json::from_slice::<NoTwins>(body) {
        return Err(malformed(format!("the body is not valid JSON or names a key twice ({e})")));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(malformed("the body is not a JSON object")),
        Err(e) => Err(malformed(format!("the body is not valid JSON ({e})"))),
    }
}

/// Any JSON in which no object names a key twice, counting spellings Go's decoder folds
/// together: dockerd merges such twins, while a parser that keeps one would see less.
struct NoTwins;

impl<'de> serde::Deserialize<'de> for NoTwins {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoTwinsVisitor)
    }
}

struct NoTwinsVisitor;

impl<'de> serde::de::Visitor<'de> for NoTwinsVisitor {
    type Value = NoTwins;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<NoTwins, E> {
        Ok(NoTwins)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoTwins, E> {
        Ok(NoTwins)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoTwins, E> {
        Ok(NoTwins)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoTwins, E> {
        Ok(NoTwins)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoTwins, E> {
        Ok(NoTwins)
    }
    fn visit_unit<E>(self) -> Result<NoTwins, E> {
        Ok(NoTwins)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<NoTwins, A::Error> {
        while seq.next_element::<NoTwins>()?.is_some() {}
        Ok(NoTwins)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<NoTwins, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.chars().map(go_fold).collect::<String>()) {
                return Err(serde::de::Error::custom(format!("the key `{key}` appears twice")));
            }
            map.next_value::<NoTwins>()?;
        }
        Ok(NoTwins)
    }
}

#[cfg(test)]
mod tests;
