//! What each service VM runs: den-agent service files written to the app's
//! `/lzcapp/run/den/<service>/` (the VM's kernel command line says `den.services=` that
//! directory). The command follows Compose: the manifest's `entrypoint` replaces the image's
//! (and drops the image's command), `command` replaces the image's command. The environment is
//! the image's, then the injected `LAZYCAT_*`, then the manifest's.

use super::images::ServiceImage;
use super::AppRecord;
use den_lpk::plan::{ServicePlan, ENTRY};
use den_lpk::route::Upstream;
use serde::Serialize;
use std::collections::BTreeMap;

/// Where `/lzcapp` is in every service VM.
pub const LZCAPP: &str = "/lzcapp";

#[derive(Serialize)]
struct Bind<'a> {
    source: &'a str,
    target: &'a str,
    readonly: bool,
}

/// One den-agent service file (`agent/src/services.rs` reads it).
#[derive(Serialize)]
struct AgentService<'a> {
    exec: Vec<String>,
    restart: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    env: BTreeMap<String, String>,
    before: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workdir: Option<String>,
    binds: Vec<Bind<'a>>,
    tmpfs: Vec<String>,
}

/// The service definitions' directory of `service`, inside the guest.
pub fn guest_dir(service: &str) -> String {
    format!("{LZCAPP}/run/den/{service}")
}

/// The injected variables of `service`.
pub fn lazycat_env(app: &AppRecord, service: &str, box_vars: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let domain = match box_vars.get("LAZYCAT_BOX_DOMAIN") {
        Some(b) if !b.is_empty() => format!("{}.{b}", app.subdomain),
        _ => app.subdomain.clone(),
    };
    env.insert("LAZYCAT_APP_ID".into(), app.package.clone());
    env.insert("LAZYCAT_APP_DOMAIN".into(), domain);
    env.insert("LAZYCAT_APP_SERVICE_NAME".into(), service.to_string());
    for k in ["LAZYCAT_APP_DEPLOY_UID", "LAZYCAT_BOX_DOMAIN", "LAZYCAT_BOX_NAME"] {
        env.insert(k.into(), box_vars.get(k).cloned().unwrap_or_default());
    }
    env
}

/// The files (name, TOML) that run `svc` in its VM.
pub fn definitions(
    app: &AppRecord,
    svc: &ServicePlan,
    image: &ServiceImage,
    box_vars: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let cfg = &image.config;
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    for kv in cfg.env.iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            env.insert(k.into(), v.into());
        }
    }
    env.extend(lazycat_env(app, &svc.name, box_vars));
    env.extend(svc.env.iter().cloned());
    let entry = svc.entrypoint.clone().or_else(|| cfg.entrypoint.clone()).unwrap_or_default();
    let cmd = match (&svc.command, &svc.entrypoint) {
        (Some(c), _) => c.clone(),
        (None, Some(_)) => vec![],
        (None, None) => cfg.cmd.clone().unwrap_or_default(),
    };
    let argv: Vec<String> = entry.into_iter().chain(cmd).collect();
    let user = svc.user.clone().or_else(|| cfg.user.clone()).filter(|u| !u.is_empty());
    let workdir = svc.workdir.clone().or_else(|| cfg.working_dir.clone()).filter(|w| !w.is_empty());
    let pkg = format!("{LZCAPP}/pkg");
    let mut binds = vec![Bind { source: &pkg, target: &pkg, readonly: true }];
    binds.extend(svc.binds.iter().map(|b| Bind { source: &b.source, target: &b.target, readonly: b.readonly }));
    let before: Vec<String> = svc.setup_script.iter().cloned().collect();
    let mut files = vec![];
    let render = |s: &AgentService| toml::to_string(s).map_err(|e| format!("service {}: {e}", svc.name));
    if !argv.is_empty() {
        let main = AgentService {
            exec: argv,
            restart: "on-failure",
            user: user.clone(),
            env: env.clone(),
            before,
            workdir: workdir.clone(),
            binds,
            tmpfs: svc.tmpfs.clone(),
        };
        files.push(("0-main.toml".to_string(), render(&main)?));
    } else if svc.name != ENTRY {
        return Err(format!(
            "service `{}` has nothing to run: neither the manifest nor its image gives an entrypoint or command",
            svc.name
        ));
    } else {
        // The entry service may run only exec:// programs; /lzcapp/pkg is still made read-only.
        let mounts = AgentService {
            exec: vec!["/bin/sh".into(), "-c".into(), "exec sleep 2147483647".into()],
            restart: "always",
            user: None,
            env: env.clone(),
            before,
            workdir: None,
            binds,
            tmpfs: svc.tmpfs.clone(),
        };
        files.push(("0-mounts.toml".to_string(), render(&mounts)?));
    }
    if svc.name == ENTRY {
        for r in &app.plan.routes {
            if let Upstream::Exec { port, argv } = &r.upstream {
                let s = AgentService {
                    exec: argv.clone(),
                    restart: "always",
                    user: user.clone(),
                    env: env.clone(),
                    before: vec![],
                    workdir: workdir.clone(),
                    binds: vec![],
                    tmpfs: vec![],
                };
                files.push((format!("exec-{port}.toml"), render(&s)?));
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests;
