//! `manifest.yml`: the app's entry service (`application`) and its Compose-like `services`.
//! Fields take the forms real manifests use (maps or lists, strings or lists); unknown fields are
//! kept, so a rendered manifest loses nothing.

use serde::{Deserialize, Deserializer, Serialize};
use serde_yaml_ng::Value;
use std::collections::BTreeMap;

/// The whole manifest.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Manifest {
    /// The app's own entry service.
    #[serde(default)]
    pub application: Option<Application>,
    /// The other services, by name.
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    /// Everything else (v1 metadata, `lzc-sdk-version`, fields Den does not use).
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// The `application` entry service.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Application {
    /// `<subdomain>.<box domain>` serves the app.
    #[serde(default)]
    pub subdomain: Option<String>,
    /// Image of the entry service (default: Den's small base).
    #[serde(default)]
    pub image: Option<String>,
    /// `PATH=UPSTREAM` routes.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Long-form routes.
    #[serde(default)]
    pub upstreams: Vec<UpstreamSpec>,
    /// Paths reachable without login (`!/path` excludes).
    #[serde(default)]
    pub public_path: Vec<String>,
    /// Services that must be healthy first.
    #[serde(default)]
    pub depends_on: DependsOn,
    /// Readiness check.
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// Environment.
    #[serde(default)]
    pub environment: Environment,
    /// Working directory.
    #[serde(default)]
    pub workdir: Option<String>,
    /// User to run as.
    #[serde(default)]
    pub user: Option<String>,
    /// Older spelling of `user`.
    #[serde(default)]
    pub run_as: Option<String>,
    /// One instance per user (Den runs one shared instance and says so).
    #[serde(default)]
    pub multi_instance: bool,
    /// Raw TCP/UDP forwards.
    #[serde(default)]
    pub ingress: Vec<Ingress>,
    /// Everything else (`file_handler`, `entries`, `user_app`, `background_task`, ...).
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// A long-form route.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct UpstreamSpec {
    /// Path prefix.
    #[serde(default)]
    pub location: String,
    /// Upstream URL (`http://`, `file://`, `exec://`).
    #[serde(default)]
    pub backend: String,
    /// Serve on `<domain_prefix>-<subdomain>` too.
    #[serde(default)]
    pub domain_prefix: Option<String>,
    /// Keep the prefix when proxying.
    #[serde(default)]
    pub disable_trim_location: bool,
    /// Send the backend's host as `Host`.
    #[serde(default)]
    pub use_backend_host: bool,
    /// Fields Den does not use.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `application.health_check`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct HealthCheck {
    /// URL that must answer 200.
    #[serde(default)]
    pub test_url: Option<String>,
    /// No readiness check.
    #[serde(default)]
    pub disable: bool,
    /// Grace period.
    #[serde(default, deserialize_with = "opt_scalar_string")]
    pub start_period: Option<String>,
    /// Per-try timeout.
    #[serde(default, deserialize_with = "opt_scalar_string")]
    pub timeout: Option<String>,
}

/// A raw TCP/UDP forward.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Ingress {
    /// `tcp` or `udp`.
    #[serde(default)]
    pub protocol: String,
    /// Port in the service.
    #[serde(default)]
    pub port: u32,
    /// Service (default: the entry service).
    #[serde(default)]
    pub service: Option<String>,
    /// Host port (default: `port`).
    #[serde(default, deserialize_with = "opt_scalar_string")]
    pub publish_port: Option<String>,
    /// Fields Den does not use.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// A Compose-like service.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Service {
    /// Image reference or `embed:<alias>`.
    #[serde(default)]
    pub image: Option<String>,
    /// Environment.
    #[serde(default)]
    pub environment: Environment,
    /// Entrypoint override.
    #[serde(default)]
    pub entrypoint: Option<Command>,
    /// Command override.
    #[serde(default)]
    pub command: Option<Command>,
    /// `SOURCE:TARGET[:ro]`, SOURCE under `/lzcapp`.
    #[serde(default)]
    pub binds: Vec<String>,
    /// Services that must be healthy first.
    #[serde(default)]
    pub depends_on: DependsOn,
    /// Compose healthcheck.
    #[serde(default)]
    pub healthcheck: Option<ComposeHealth>,
    /// CPUs (may be fractional).
    #[serde(default, deserialize_with = "opt_scalar_string")]
    pub cpus: Option<String>,
    /// Memory limit (`512m`, `1g`, bytes).
    #[serde(default, deserialize_with = "opt_scalar_string")]
    pub mem_limit: Option<String>,
    /// Size of `/dev/shm`.
    #[serde(default, deserialize_with = "opt_scalar_string")]
    pub shm_size: Option<String>,
    /// User to run as.
    #[serde(default, deserialize_with = "opt_scalar_string")]
    pub user: Option<String>,
    /// Script run as root before the image's entrypoint.
    #[serde(default)]
    pub setup_script: Option<String>,
    /// `host` or empty.
    #[serde(default)]
    pub network_mode: Option<String>,
    /// tmpfs mounts.
    #[serde(default)]
    pub tmpfs: StringOrList,
    /// Working directory.
    #[serde(default)]
    pub workdir: Option<String>,
    /// Fields Den does not use.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// Compose `healthcheck`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct ComposeHealth {
    /// `["CMD", ...]`, `["CMD-SHELL", "..."]`, `["NONE"]` or a shell string.
    #[serde(default)]
    pub test: Option<Command>,
    /// Between checks.
    #[serde(default, deserialize_with = "opt_scalar_string")]
    pub interval: Option<String>,
    /// Per check.
    #[serde(default, deserialize_with = "opt_scalar_string")]
    pub timeout: Option<String>,
    /// Failures before unhealthy.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Grace period.
    #[serde(default, deserialize_with = "opt_scalar_string")]
    pub start_period: Option<String>,
    /// Off.
    #[serde(default)]
    pub disable: bool,
}

/// A command as a string (split like a shell would) or a list.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Command {
    /// `"nginx -g 'daemon off;'"`.
    Line(String),
    /// `["nginx", "-g", "daemon off;"]`.
    Argv(Vec<String>),
}

/// A string or a list of strings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum StringOrList {
    /// Nothing.
    #[default]
    None,
    /// One.
    One(String),
    /// Many.
    Many(Vec<String>),
}

impl StringOrList {
    /// As a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            StringOrList::None => vec![],
            StringOrList::One(s) => vec![s.clone()],
            StringOrList::Many(v) => v.clone(),
        }
    }
}

/// `depends_on` as a list or as Compose's long map form.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum DependsOn {
    /// None.
    #[default]
    None,
    /// `[db, cache]`.
    List(Vec<String>),
    /// `{db: {condition: service_healthy}}`.
    Map(BTreeMap<String, Value>),
}

impl DependsOn {
    /// The service names.
    pub fn names(&self) -> Vec<String> {
        match self {
            DependsOn::None => vec![],
            DependsOn::List(v) => v.clone(),
            DependsOn::Map(m) => m.keys().cloned().collect(),
        }
    }
}

/// `environment` as a map or a `KEY=value` list.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Environment {
    /// None.
    #[default]
    None,
    /// `["A=1", "B"]`.
    List(Vec<String>),
    /// `{A: 1, B: null}`.
    Map(BTreeMap<String, Option<Value>>),
}

impl Environment {
    /// `(name, value)` pairs in order; a bare `B` or `B: null` has an empty value.
    pub fn pairs(&self) -> Vec<(String, String)> {
        match self {
            Environment::None => vec![],
            Environment::List(v) => v
                .iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv.clone(), String::new()),
                })
                .collect(),
            Environment::Map(m) => {
                m.iter().map(|(k, v)| (k.clone(), v.as_ref().map(scalar_text).unwrap_or_default())).collect()
            }
        }
    }
}

/// A YAML scalar as text (numbers and booleans as written).
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => serde_yaml_ng::to_string(other).unwrap_or_default().trim_end().to_string(),
    }
}

/// Deserialises a scalar (string, number, bool) as a string.
pub fn scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(opt_scalar_string(d)?.unwrap_or_default())
}

/// Deserialises an optional scalar as a string.
pub fn opt_scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => Ok(Some(scalar_text(&v))),
        Some(_) => Err(serde::de::Error::custom("expected a string or a number")),
    }
}

impl Command {
    /// The argument vector; a string is split the way a POSIX shell splits words (quotes and
    /// backslashes, no expansion). `None` if the quotes do not close.
    pub fn argv(&self) -> Option<Vec<String>> {
        match self {
            Command::Argv(v) => Some(v.clone()),
            Command::Line(s) => split_words(s),
        }
    }
}

/// Splits a command line into words like `sh` would, without expansions.
pub fn split_words(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                have = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => cur.push(c),
                    }
                }
            }
            '"' => {
                have = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => cur.push(c),
                            c => {
                                cur.push('\\');
                                cur.push(c);
                            }
                        },
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                have = true;
                cur.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if have {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            c => {
                have = true;
                cur.push(c);
            }
        }
    }
    if have {
        out.push(cur);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_manifest_forms_parse() {
        let m: Manifest = serde_yaml_ng::from_str(
            r#"
lzc-sdk-version: 0.1
package: cloud.lazycat.app.demo
version: 1.0.0
application:
  subdomain: demo
  routes: [/=http://web:80/]
  user_app: true
  environment: [A=1, B]
  depends_on: [web]
services:
  web:
    image: embed:web
    environment: {PORT: 80, DEBUG: true, EMPTY: null}
    command: nginx -g 'daemon off;'
    depends_on: {db: {condition: service_healthy}}
    healthcheck: {test: [CMD-SHELL, "wget -q -O- localhost"], interval: 5s, retries: 3}
    mem_limit: 512m
    cpus: 0.5
    tmpfs: /run
  db:
    image: postgres:16
"#,
        )
        .unwrap();
        let app = m.application.as_ref().unwrap();
        assert_eq!(app.environment.pairs(), vec![("A".into(), "1".into()), ("B".into(), String::new())]);
        assert!(app.other.contains_key("user_app"));
        let web = &m.services["web"];
        assert_eq!(web.environment.pairs()[1], ("EMPTY".into(), String::new()));
        assert_eq!(web.environment.pairs()[2], ("PORT".into(), "80".into()));
        assert_eq!(web.command.as_ref().unwrap().argv().unwrap(), ["nginx", "-g", "daemon off;"]);
        assert_eq!(web.depends_on.names(), ["db"]);
        assert_eq!(web.cpus.as_deref(), Some("0.5"));
        assert_eq!(web.tmpfs.to_vec(), ["/run"]);
        assert!(m.other.contains_key("lzc-sdk-version"));
    }

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(split_words(r#"a "b c" 'd e' f\ g "h\"i""#).unwrap(), ["a", "b c", "d e", "f g", "h\"i"]);
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_words("''").unwrap(), [""]);
        assert!(split_words("'open").is_none());
    }
}
