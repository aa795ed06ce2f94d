//! The checked, normalised form of a manifest that the host runs: services in start order,
//! routes, binds, health checks and limits, each field validated with its path named.

use crate::manifest::{Command, ComposeHealth, Manifest, Service};
use crate::paths::clean_abs;
use crate::route::{self, Route, Upstream};
use crate::LpkError;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const FILE: &str = "manifest.yml";

/// The name of the entry service.
pub const ENTRY: &str = "app";

/// Where a service's image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum ImageRef {
    /// Embedded in the package under this `images.lock` alias.
    Embed(String),
    /// An image Den already has, by name or reference.
    Named(String),
    /// Den's small base image.
    Base,
}

/// A bind of an app path into a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Bind {
    /// Source under `/lzcapp`.
    pub source: String,
    /// Target in the service.
    pub target: String,
    /// Mounted read-only.
    pub readonly: bool,
}

/// How a service's health is tested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "arg", rename_all = "lowercase")]
pub enum Probe {
    /// Run a program; healthy when it exits 0.
    Exec(Vec<String>),
    /// Run `sh -c`; healthy when it exits 0.
    Shell(String),
    /// GET a URL; healthy on 200.
    Http(String),
}

/// A health check with its timing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Health {
    /// The test.
    pub probe: Probe,
    /// Between tries.
    pub interval: Duration,
    /// Per try.
    pub timeout: Duration,
    /// Failures in a row before unhealthy.
    pub retries: u32,
    /// Failures in this window after start do not count.
    pub start_period: Duration,
}

/// One service, ready to run.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ServicePlan {
    /// Service name (`app` for the entry service).
    pub name: String,
    /// Image.
    pub image: ImageRef,
    /// Manifest environment, in order (the host adds `LAZYCAT_*`).
    pub env: Vec<(String, String)>,
    /// Entrypoint override.
    pub entrypoint: Option<Vec<String>>,
    /// Command override.
    pub command: Option<Vec<String>>,
    /// Binds.
    pub binds: Vec<Bind>,
    /// Services that must be healthy first.
    pub depends_on: Vec<String>,
    /// Health check.
    pub health: Option<Health>,
    /// vCPUs (rounded up from `cpus`).
    pub vcpus: Option<u32>,
    /// Memory limit in bytes.
    pub mem_bytes: Option<u64>,
    /// User.
    pub user: Option<String>,
    /// Setup script, run as root first.
    pub setup_script: Option<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// tmpfs mount points.
    pub tmpfs: Vec<String>,
}

/// A raw TCP/UDP forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct IngressPlan {
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Port in the service.
    pub port: u16,
    /// Service.
    pub service: String,
    /// Host port.
    pub publish_port: u16,
}

/// The app, checked.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AppPlan {
    /// Subdomain.
    pub subdomain: String,
    /// Services in start order (dependencies first).
    pub services: Vec<ServicePlan>,
    /// HTTP routes, in manifest order.
    pub routes: Vec<Route>,
    /// Public paths (`!` exclusions kept).
    pub public_path: Vec<String>,
    /// Readiness URL of the app.
    pub test_url: Option<String>,
    /// Grace period of the readiness check.
    pub start_period: Duration,
    /// TCP/UDP forwards.
    pub ingress: Vec<IngressPlan>,
    /// Things Den accepts but runs differently, for the install report.
    pub warnings: Vec<String>,
}

/// Whether `s` is a DNS-style name: `[a-z0-9]`, inner `-` or `_`, at most 63 bytes.
pub fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
}

/// Parses `30s`, `1m30s`, `500ms`, `2h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(Duration::from_secs(n));
    }
    let (mut total, mut num, mut rest) = (Duration::ZERO, String::new(), s);
    if rest.is_empty() {
        return None;
    }
    while let Some(c) = rest.chars().next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            rest = &rest[1..];
            continue;
        }
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let n: f64 = num.parse().ok()?;
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += Duration::try_from_secs_f64(n * unit).ok()?;
        num.clear();
        rest = &rest[unit_len..];
    }
    num.is_empty().then_some(total)
}

/// Parses `512m`, `1g`, `1.5GiB`, `100000` (bytes).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: f64 = n.parse().ok()?;
    let mult = match unit.trim() {
        "" | "b" => 1u64,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    let v = n * mult as f64;
    (v.is_finite() && (0.0..1e18).contains(&v)).then_some(v as u64)
}

fn err(field: impl Into<String>, rule: impl Into<String>) -> LpkError {
    LpkError::field(FILE, field, rule)
}

fn dur(v: &Option<String>, field: String, default: Duration) -> Result<Duration, LpkError> {
    match v {
        None => Ok(default),
        Some(s) => parse_duration(s).ok_or_else(|| err(field, format!("`{s}` is not a duration like 30s or 1m30s"))),
    }
}

fn bind(s: &str, field: String) -> Result<Bind, LpkError> {
    let mut parts = s.split(':');
    let (src, dst, mode) = (parts.next().unwrap_or(""), parts.next(), parts.next());
    if parts.next().is_some() {
        return Err(err(field, format!("`{s}` is not SOURCE:TARGET[:ro]")));
    }
    let source = clean_abs(src)
        .filter(|p| p.starts_with("/lzcapp/") || p == "/lzcapp")
        .ok_or_else(|| err(&field, format!("binds `{src}`; a bind source must be a clean path under /lzcapp")))?;
    let target = dst
        .and_then(clean_abs)
        .filter(|t| t != "/")
        .ok_or_else(|| err(&field, format!("`{s}` needs a clean absolute TARGET other than /")))?;
    let readonly = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(m) => return Err(err(field, format!("has the mode `{m}`; use ro or rw"))),
    };
    Ok(Bind { readonly: readonly || source.starts_with("/lzcapp/pkg"), source, target })
}

fn argv(c: &Option<Command>, field: String) -> Result<Option<Vec<String>>, LpkError> {
    c.as_ref().map(|c| c.argv().ok_or_else(|| err(field, "has unclosed quotes"))).transpose()
}

fn compose_health(h: &ComposeHealth, field: &str) -> Result<Option<Health>, LpkError> {
    let test = match &h.test {
        _ if h.disable => return Ok(None),
        None => return Ok(None),
        Some(Command::Line(s)) => Probe::Shell(s.clone()),
        Some(Command::Argv(v)) => match v.split_first() {
            Some((k, _)) if k == "NONE" => return Ok(None),
            Some((k, rest)) if k == "CMD" && !rest.is_empty() => Probe::Exec(rest.to_vec()),
            Some((k, rest)) if k == "CMD-SHELL" && rest.len() == 1 => Probe::Shell(rest[0].clone()),
            _ => {
                return Err(err(
                    format!("{field}.test"),
                    "must be [CMD, ...], [CMD-SHELL, \"...\"], [NONE] or a string",
                ))
            }
        },
    };
    Ok(Some(Health {
        probe: test,
        interval: dur(&h.interval, format!("{field}.interval"), Duration::from_secs(30))?,
        timeout: dur(&h.timeout, format!("{field}.timeout"), Duration::from_secs(30))?,
        retries: h.retries.unwrap_or(3),
        start_period: dur(&h.start_period, format!("{field}.start_period"), Duration::ZERO)?,
    }))
}

fn image(s: Option<&str>, field: String, aliases: &BTreeSet<String>) -> Result<ImageRef, LpkError> {
    match s.map(str::trim) {
        None | Some("") => Ok(ImageRef::Base),
        Some(s) => match s.strip_prefix("embed:") {
            Some(alias) if aliases.contains(alias) => Ok(ImageRef::Embed(alias.to_string())),
            Some(alias) => Err(err(field, format!("embeds `{alias}`, which images.lock does not list"))),
            None if s.chars().any(char::is_whitespace) => Err(err(field, format!("`{s}` is not an image reference"))),
            None => Ok(ImageRef::Named(s.to_string())),
        },
    }
}

fn service(
    name: &str,
    s: &Service,
    aliases: &BTreeSet<String>,
    warn: &mut Vec<String>,
) -> Result<ServicePlan, LpkError> {
    let f = |k: &str| format!("services.{name}.{k}");
    if s.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
        return Err(err(f("image"), "is missing; every service needs an image"));
    }
    if s.setup_script.is_some() && (s.entrypoint.is_some() || s.command.is_some()) {
        return Err(err(f("setup_script"), "cannot be combined with entrypoint or command"));
    }
    let binds =
        s.binds.iter().enumerate().map(|(i, b)| bind(b, format!("{}[{i}]", f("binds")))).collect::<Result<_, _>>()?;
    let vcpus = match &s.cpus {
        None => None,
        Some(c) => {
            let v: f64 = c
                .parse()
                .ok()
                .filter(|v: &f64| *v > 0.0 && *v <= 256.0)
                .ok_or_else(|| err(f("cpus"), format!("`{c}` is not a CPU count between 0 and 256")))?;
            Some(v.ceil() as u32)
        }
    };
    let mem_bytes = match &s.mem_limit {
        None => None,
        Some(m) => Some(parse_size(m).filter(|b| *b >= 16 << 20).ok_or_else(|| {
            err(f("mem_limit"), format!("`{m}` is not a memory size of at least 16m (like 512m or 1g)"))
        })?),
    };
    if s.network_mode.as_deref().is_some_and(|m| m == "host") {
        warn.push(format!(
            "services.{name}.network_mode: host is run on the app's own network (each service is a microVM)"
        ));
    }
    let tmpfs = s.tmpfs.to_vec();
    for (i, t) in tmpfs.iter().enumerate() {
        let path = t.split(':').next().unwrap_or("");
        clean_abs(path).ok_or_else(|| err(format!("{}[{i}]", f("tmpfs")), format!("`{t}` is not an absolute path")))?;
    }
    Ok(ServicePlan {
        name: name.to_string(),
        image: image(s.image.as_deref(), f("image"), aliases)?,
        env: env_pairs(s.environment.pairs(), &f("environment"))?,
        entrypoint: argv(&s.entrypoint, f("entrypoint"))?,
        command: argv(&s.command, f("command"))?,
        binds,
        depends_on: s.depends_on.names(),
        health: s.healthcheck.as_ref().map(|h| compose_health(h, &f("healthcheck"))).transpose()?.flatten(),
        vcpus,
        mem_bytes,
        user: s.user.clone(),
        setup_script: s.setup_script.clone(),
        workdir: workdir(s.workdir.as_deref(), f("workdir"))?,
        tmpfs,
    })
}

fn workdir(w: Option<&str>, field: String) -> Result<Option<String>, LpkError> {
    w.map(|w| clean_abs(w).ok_or_else(|| err(field, format!("`{w}` is not a clean absolute path")))).transpose()
}

fn env_pairs(pairs: Vec<(String, String)>, field: &str) -> Result<Vec<(String, String)>, LpkError> {
    for (k, _) in &pairs {
        let ok = !k.is_empty() && !k.contains(['=', '\0']) && !k.starts_with(|c: char| c.is_ascii_digit());
        if !ok {
            return Err(err(field, format!("has the invalid variable name `{k}`")));
        }
    }
    Ok(pairs)
}

/// Start order: dependencies first; refuses unknown names and cycles.
fn order(services: &BTreeMap<String, ServicePlan>) -> Result<Vec<String>, LpkError> {
    fn visit(
        n: &str,
        s: &BTreeMap<String, ServicePlan>,
        state: &mut BTreeMap<String, bool>,
        out: &mut Vec<String>,
    ) -> Result<(), LpkError> {
        match state.get(n) {
            Some(true) => return Ok(()),
            Some(false) => return Err(err(format!("services.{n}.depends_on"), "forms a dependency cycle")),
            None => {}
        }
        state.insert(n.to_string(), false);
        for d in &s[n].depends_on {
            if !s.contains_key(d) {
                let field =
                    if n == ENTRY { "application.depends_on".to_string() } else { format!("services.{n}.depends_on") };
                return Err(err(field, format!("names `{d}`, which is not a service of this app")));
            }
            visit(d, s, state, out)?;
        }
        state.insert(n.to_string(), true);
        out.push(n.to_string());
        Ok(())
    }
    let (mut state, mut out) = (BTreeMap::new(), Vec::new());
    for n in services.keys() {
        visit(n, services, &mut state, &mut out)?;
    }
    Ok(out)
}

impl AppPlan {
    /// Checks a (rendered) manifest; `aliases` are the image aliases of `images.lock`.
    pub fn from_manifest(m: &Manifest, aliases: &BTreeSet<String>) -> Result<AppPlan, LpkError> {
        let app = m.application.as_ref().ok_or_else(|| err("application", "is missing"))?;
        let subdomain = app.subdomain.clone().unwrap_or_default();
        if !is_label(&subdomain) || subdomain.contains('_') {
            return Err(err(
                "application.subdomain",
                format!("`{subdomain}` is missing or not a DNS label (a-z, 0-9, -)"),
            ));
        }
        let mut warnings = Vec::new();
        let mut plans = BTreeMap::new();
        for (name, s) in &m.services {
            if name == ENTRY {
                return Err(err(format!("services.{name}"), "uses the reserved name `app`"));
            }
            if !is_label(name) {
                return Err(err(format!("services.{name}"), "is not a valid service name (a-z, 0-9, - and _)"));
            }
            plans.insert(name.clone(), service(name, s, aliases, &mut warnings)?);
        }
        let mut routes = Vec::new();
        for (i, r) in app.routes.iter().enumerate() {
            routes.push(route::parse_short(r).map_err(|e| err(format!("application.routes[{i}]"), e))?);
        }
        for (i, u) in app.upstreams.iter().enumerate() {
            let r = route::route(
                &u.location,
                &u.backend,
                !u.disable_trim_location,
                u.domain_prefix.as_deref(),
                u.use_backend_host,
            )
            .map_err(|e| err(format!("application.upstreams[{i}]"), e))?;
            routes.push(r);
        }
        let mut needs_entry = app.image.is_some();
        for (i, r) in routes.iter().enumerate() {
            match &r.upstream {
                Upstream::Exec { .. } => needs_entry = true,
                Upstream::Http { host, .. } => {
                    let first = host.split('.').next().unwrap_or("");
                    if first == ENTRY || host == "127.0.0.1" || host == "localhost" {
                        needs_entry = true;
                    } else if !plans.contains_key(first) {
                        return Err(err(
                            format!("application.routes[{i}]"),
                            format!("proxies to `{host}`, which is not a service of this app"),
                        ));
                    }
                }
                Upstream::File { .. } => {}
            }
        }
        for (i, p) in app.public_path.iter().enumerate() {
            if !(p.starts_with('/') || p.starts_with("!/")) {
                return Err(err(format!("application.public_path[{i}]"), format!("`{p}` must start with / or !/")));
            }
        }
        let hc = app.health_check.clone().unwrap_or_default();
        let test_url = if hc.disable { None } else { hc.test_url.clone() };
        if let Some(u) = &test_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(err("application.health_check.test_url", format!("`{u}` is not an http(s) URL")));
            }
        }
        let start_period =
            dur(&hc.start_period, "application.health_check.start_period".into(), Duration::from_secs(60))?;
        if app.multi_instance {
            warnings.push("application.multi_instance: Den runs one instance shared by all users".into());
        }
        if needs_entry {
            let user = app.user.clone().or(app.run_as.clone());
            plans.insert(
                ENTRY.to_string(),
                ServicePlan {
                    name: ENTRY.to_string(),
                    image: image(app.image.as_deref(), "application.image".into(), &BTreeSet::new())?,
                    env: env_pairs(app.environment.pairs(), "application.environment")?,
                    entrypoint: None,
                    command: None,
                    binds: vec![],
                    depends_on: app.depends_on.names(),
                    health: None,
                    vcpus: None,
                    mem_bytes: None,
                    user,
                    setup_script: None,
                    workdir: workdir(app.workdir.as_deref(), "application.workdir".into())?,
                    tmpfs: vec![],
                },
            );
        } else {
            for d in app.depends_on.names() {
                if !plans.contains_key(&d) {
                    return Err(err(
                        "application.depends_on",
                        format!("names `{d}`, which is not a service of this app"),
                    ));
                }
            }
        }
        let mut ingress = Vec::new();
        for (i, g) in app.ingress.iter().enumerate() {
            let field = format!("application.ingress[{i}]");
            if g.protocol != "tcp" && g.protocol != "udp" {
                return Err(err(field, format!("has the protocol `{}`; use tcp or udp", g.protocol)));
            }
            let port =
                u16::try_from(g.port).ok().filter(|p| *p > 0).ok_or_else(|| err(&field, "needs a port 1-65535"))?;
            let service = g.service.clone().unwrap_or_else(|| ENTRY.to_string());
            if !plans.contains_key(&service) {
                return Err(err(field, format!("forwards to `{service}`, which is not a service of this app")));
            }
            let publish_port = match &g.publish_port {
                None => port,
                Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    err(&field, format!("has the publish_port `{p}`; Den publishes one port 1-65535 per entry"))
                })?,
            };
            ingress.push(IngressPlan { protocol: g.protocol.clone(), port, service, publish_port });
        }
        let names = order(&plans)?;
        let services = names.into_iter().filter_map(|n| plans.remove(&n)).collect();
        Ok(AppPlan {
            subdomain,
            services,
            routes,
            public_path: app.public_path.clone(),
            test_url,
            start_period,
            ingress,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests;
