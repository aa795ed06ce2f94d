//! Running an app: its own network (isolated, egress as its permissions say, audited), one VM
//! per service made at install, and start / stop tasks that follow `depends_on` with health
//! gating and end when the app answers (`health_check.test_url` 200, every route upstream
//! accepting connections).

use super::services::{definitions, guest_dir};
use super::Apps;
use super::{AppError, AppRecord, AppState};
use crate::AppTable;
use den_core::vm::VmState;
use den_lpk::plan::{Probe, ServicePlan};
use den_lpk::route::Upstream;
use den_net::{AllocError, NetError, NetworkSpec};
use den_store::StoreError;
use den_vms::TaskHandle;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Subnets of app networks: a /24 each out of this /16.
const APP_SUBNETS: [u8; 2] = [10, 90];
/// How long a VM task (create, start, stop, delete) may take.
const VM_TASK: Duration = Duration::from_secs(600);
/// How long a service's agent may take to answer after its VM started.
const AGENT_WAIT: Duration = Duration::from_secs(240);
/// Most output of a health check Den reads.
const PROBE_OUTPUT: usize = 64 << 10;
/// Default memory of a service VM, MiB.
const SERVICE_MEMORY_MIB: u64 = 256;

/// The app's network name (see [`den_core::net::app_network_name`]).
pub(crate) use den_core::net::app_network_name as network_name;

/// The VM of `service`: `<subdomain>-<service>`, in VM-name characters.
pub(crate) fn vm_name(subdomain: &str, service: &str) -> String {
    let raw = format!("{subdomain}-{service}").replace('_', "-");
    raw.chars().take(63).collect::<String>().trim_end_matches('-').to_string()
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Apps {
    /// A free /24 for a new app network.
    fn free_app_subnet(&self) -> Result<String, String> {
        let nets = self.den.net.networks(&self.den.store).map_err(err)?;
        let subs: Vec<_> = nets.iter().filter_map(|n| n.subnet().ok()).collect();
        for third in 0..=255u8 {
            let cand = format!("{}.{}.{third}.0/24", APP_SUBNETS[0], APP_SUBNETS[1]);
            let Ok(s) = den_core::net::ipam::Subnet::parse(&cand) else { continue };
            if !subs.iter().any(|o| o.overlaps(s)) {
                return Ok(cand);
            }
        }
        Err("no free /24 left in 10.90.0.0/16 for another app network".into())
    }

    /// The network the app has, unless another app has it too (it is then given a new one).
    fn own_network(&self, app: &AppRecord) -> Result<Option<String>, String> {
        if app.network.is_empty() {
            return Ok(None);
        }
        let shared =
            self.den.store.apps().map_err(err)?.iter().any(|a| a.package != app.package && a.network == app.network);
        let exists = self.den.net.networks(&self.den.store).map_err(err)?.iter().any(|n| n.name == app.network);
        Ok((exists && !shared).then(|| app.network.clone()))
    }

    /// Makes a new network for the app, named by the first attempt for its package id that is
    /// neither another app's network nor any network already there (package authors choose
    /// package ids, and two ids may give one name: an app never joins another app's network,
    /// also when two installs race, as the create itself refuses a name that exists).
    fn new_app_network(&self, app: &AppRecord, task: &TaskHandle) -> Result<String, String> {
        let others: HashSet<String> = self
            .den
            .store
            .apps()
            .map_err(err)?
            .into_iter()
            .filter(|a| a.package != app.package)
            .map(|a| a.network)
            .collect();
        for attempt in 0..=u8::MAX {
            let name = network_name(&app.package, attempt);
            if others.contains(&name) {
                continue;
            }
            let spec = NetworkSpec {
                name: name.clone(),
                subnet: self.free_app_subnet()?,
                isolated: true,
                internet: app.meta.wants("net.internet"),
                audit: true,
                host_ports: vec![],
            };
            match self.den.net.create_network(&self.den.store, &spec, den_net::By::Den) {
                Ok(()) => {
                    task.log(format!(
                        "network {name} ({}): isolated, {}, audited",
                        spec.subnet,
                        if spec.internet { "internet allowed (net.internet)" } else { "no internet" }
                    ));
                    return Ok(name);
                }
                Err(AllocError::Net(NetError::Store(StoreError::Exists { .. }))) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(format!("no free network name for {}", app.package))
    }

    /// Makes the app's network and a stopped VM per service (each from its image, with
    /// `/lzcapp` shared and its service definitions' directory on the command line).
    pub(super) async fn provision_app(self: &Arc<Self>, app: &mut AppRecord, task: &TaskHandle) -> Result<(), String> {
        let name = match self.own_network(app)? {
            Some(name) => name,
            None => self.new_app_network(app, task)?,
        };
        app.network = name.clone();
        let shares = self.app_dirs().shares(&app.package);
        for svc in &app.plan.services {
            let vm = vm_name(&app.subdomain, &svc.name);
            let image = app.images.get(&svc.name).ok_or_else(|| format!("service {} has no image", svc.name))?;
            let memory = svc.mem_bytes.map(|b| (b >> 20).max(128)).unwrap_or(SERVICE_MEMORY_MIB);
            let ports: Vec<serde_json::Value> = app
                .plan
                .ingress
                .iter()
                .filter(|g| g.service == svc.name)
                .map(|g| serde_json::json!({"host_port": g.publish_port, "guest_port": g.port, "proto": g.protocol}))
                .collect();
            let spec = serde_json::json!({
                "name": vm, "image": image.image, "kind": "app",
                "cpus": svc.vcpus.unwrap_or(1).min(self.den.limits.max_cpus),
                "memory_mib": memory,
                "restart": "on-failure",
                "cmdline_extra": format!("den.services={}", guest_dir(&svc.name)),
                "nics": [{"network": name, "alias": svc.name.replace('_', "-")}],
                "ports": ports,
                "shares": shares,
            });
            let spec = serde_json::from_value(spec).map_err(err)?;
            task.log(format!("VM {vm} for service {} ({memory} MiB, image {})", svc.name, image.image));
            let (t, _) = self.den.create(spec, "dend").map_err(err)?;
            app.vms.insert(svc.name.clone(), vm.clone());
            self.den.store.put_app(app).map_err(err)?;
            self.den.wait_task(&t, VM_TASK).await?;
        }
        Ok(())
    }

    /// Writes every service's definitions into `/lzcapp/run/den/` (remade from scratch; the
    /// folder is shared read-only and written without following links).
    fn write_definitions(&self, app: &AppRecord) -> Result<(), String> {
        let vars = self.lpk_options(None).map_err(err)?.vars;
        let lz = self.app_dirs().lzcapp_tree(&app.package).map_err(err)?;
        lz.remove_all("run/den").map_err(err)?;
        lz.mkdir("run/den", 0o755).map_err(err)?;
        for svc in &app.plan.services {
            let image = app.images.get(&svc.name).cloned().unwrap_or_default();
            let dir = format!("run/den/{}", svc.name);
            lz.mkdir(&dir, 0o755).map_err(err)?;
            for (file, text) in definitions(app, svc, &image, &vars)? {
                lz.write_new(&format!("{dir}/{file}"), text.as_bytes(), 0o644).map_err(err)?;
            }
        }
        Ok(())
    }

    /// Makes the app's folders and moves an app from before the read-only `/lzcapp` to the
    /// current layout: its data out of `/lzcapp`, and its VMs to the current shares. Only
    /// while no service has a process (`run_app` checks).
    fn prepare_files(&self, app: &AppRecord) -> Result<(), String> {
        let dirs = self.app_dirs();
        dirs.prepare(&app.package)?;
        let shares = dirs.shares(&app.package);
        for vm in app.vms.values() {
            let mut rec = self.den.store.vm(vm).map_err(err)?;
            if rec.spec.shares != shares {
                tracing::info!(app = %app.package, vm, "sharing /lzcapp read-only, and var and cache read-write");
                rec.spec.shares = shares.clone();
                self.den.store.set_vm_spec(&rec).map_err(err)?;
            }
        }
        Ok(())
    }

    /// Starts the app's start task.
    pub fn app_start(self: &Arc<Self>, name: &str, user: &str) -> Result<String, AppError> {
        let app = self.den.store.app(name)?;
        if !matches!(app.state, AppState::Stopped | AppState::Failed) {
            return Err(AppError::Conflict(format!(
                "app `{}` is {}; only a stopped app can be started",
                app.package,
                app.state.as_str()
            )));
        }
        let app = self.den.store.set_app_state(&app.package, AppState::Starting, None)?;
        let apps = self.clone();
        let user = user.to_string();
        Ok(self.den.spawn_task("app.start", &app.package.clone(), &user.clone(), move |task| async move {
            let t = Instant::now();
            match apps.run_app(&app, &task).await {
                Ok(()) => {
                    apps.den.store.set_app_state(&app.package, AppState::Running, None).map_err(err)?;
                    task.log(format!("running ({:.1} s)", t.elapsed().as_secs_f64()));
                    apps.den.event(&user, "app.started", &app.package, "");
                    Ok(())
                }
                Err(e) => {
                    task.log("stopping the services that started");
                    apps.stop_services(&app, &task).await;
                    let _ = apps.den.store.set_app_state(&app.package, AppState::Failed, Some(e.clone()));
                    apps.den.event(&user, "app.start_failed", &app.package, &e);
                    Err(e)
                }
            }
        })?)
    }

    /// Starts each service in order, waiting for its dependencies, then for the app to answer.
    pub(super) async fn run_app(self: &Arc<Self>, app: &AppRecord, task: &TaskHandle) -> Result<(), String> {
        // Only when no service has a process: a guest of an earlier Den could still write /lzcapp.
        let stopped = app.vms.values().all(|v| {
            self.den
                .store
                .vm(v)
                .is_ok_and(|r| matches!(r.state, VmState::Stopped | VmState::Crashed) && r.running.is_none())
        });
        let shares = self.app_dirs().shares(&app.package);
        if !stopped && app.vms.values().any(|v| self.den.store.vm(v).is_ok_and(|r| r.spec.shares != shares)) {
            return Err(format!(
                "app `{}` still runs with the writable /lzcapp of an earlier Den; stop it (`den app stop {}`) and \
                 start it again to move it to the read-only /lzcapp",
                app.package, app.package
            ));
        }
        let (apps, rec) = (self.clone(), app.clone());
        super::blocking(move || {
            if stopped {
                apps.prepare_files(&rec)?;
            }
            apps.write_definitions(&rec)
        })
        .await?;
        for svc in &app.plan.services {
            let vm = app.vms.get(&svc.name).ok_or_else(|| format!("service {} has no VM", svc.name))?;
            let rec = self.den.store.vm(vm).map_err(err)?;
            if !matches!(rec.state, VmState::Running) {
                task.log(format!("starting {} (VM {vm})", svc.name));
                let t = self.den.start(vm, "dend").map_err(err)?;
                self.den.wait_task(&t, VM_TASK).await?;
            }
            self.wait_agent(vm).await?;
            if let Some(h) = &svc.health {
                task.log(format!("waiting for {} to be healthy", svc.name));
                self.wait_healthy(vm, svc, h).await?;
            }
        }
        self.wait_answering(app, task).await
    }

    async fn wait_agent(&self, vm: &str) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let rec = self.den.store.vm(vm).map_err(err)?;
            match self.den.agent(&rec).await {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() > AGENT_WAIT => return Err(format!("VM {vm}'s agent did not answer: {e}")),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Runs a service's health check until it passes, or fails `retries` times in a row after
    /// its start period.
    async fn wait_healthy(&self, vm: &str, svc: &ServicePlan, h: &den_lpk::plan::Health) -> Result<(), String> {
        let argv: Vec<String> = match &h.probe {
            Probe::Exec(a) => a.clone(),
            Probe::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            Probe::Http(u) => vec!["wget".into(), "-q".into(), "-O".into(), "/dev/null".into(), u.clone()],
        };
        let start = Instant::now();
        let mut fails = 0;
        loop {
            let bounds = den_agent_proto::Bounds::new(PROBE_OUTPUT, h.timeout);
            let out = tokio::time::timeout(h.timeout, self.den.exec(vm, &argv, bounds)).await;
            let why = match out {
                Ok(Ok(o)) if o.code == Some(0) => return Ok(()),
                Ok(Ok(o)) => format!("exit {:?}: {}", o.code, String::from_utf8_lossy(&o.stderr).trim()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {} s", h.timeout.as_secs()),
            };
            if start.elapsed() >= h.start_period {
                fails += 1;
                if fails >= h.retries.max(1) {
                    return Err(format!("service {} is unhealthy after {fails} checks: {why}", svc.name));
                }
            }
            tokio::time::sleep(h.interval).await;
        }
    }

    /// Waits until `health_check.test_url` answers 200 and every route upstream accepts a
    /// connection, within the health check's start period (at least 3 minutes under TCG).
    async fn wait_answering(&self, app: &AppRecord, task: &TaskHandle) -> Result<(), String> {
        let limit = app.plan.start_period.max(Duration::from_secs(180));
        let start = Instant::now();
        let mut targets: Vec<(String, u16)> = vec![];
        for r in &app.plan.routes {
            match &r.upstream {
                Upstream::Http { host, port, .. } => targets.push((super::reach::service_of(host), *port)),
                Upstream::Exec { port, .. } => targets.push((den_lpk::plan::ENTRY.into(), *port)),
                Upstream::File { .. } => {}
            }
        }
        targets.sort();
        targets.dedup();
        task.log(format!("waiting for the app to answer ({} upstream(s))", targets.len()));
        let mut last = String::new();
        while start.elapsed() < limit {
            let mut ok = true;
            for (svc, port) in &targets {
                if let Err(e) = self.app_connect(app, svc, *port).await {
                    last = format!("{svc}:{port}: {e}");
                    ok = false;
                    break;
                }
            }
            if ok {
                match &app.plan.test_url {
                    None => return Ok(()),
                    Some(url) => match super::reach::get_status(self, app, url).await {
                        Ok(200) => return Ok(()),
                        Ok(s) => last = format!("{url} answered {s}"),
                        Err(e) => last = format!("{url}: {e}"),
                    },
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(format!("the app did not answer within {} s: {last}", limit.as_secs()))
    }

    /// Stops the app's running service VMs, dependents first.
    pub(super) async fn stop_services(self: &Arc<Self>, app: &AppRecord, task: &TaskHandle) {
        for svc in app.plan.services.iter().rev() {
            let Some(vm) = app.vms.get(&svc.name) else { continue };
            let running = self.den.store.vm(vm).is_ok_and(|v| matches!(v.state, VmState::Running | VmState::Paused));
            if running {
                task.log(format!("stopping {} (VM {vm})", svc.name));
                match self.den.stop(vm, "dend") {
                    Ok(t) => {
                        if let Err(e) = self.den.wait_task(&t, VM_TASK).await {
                            task.log(format!("stopping {vm}: {e}"));
                        }
                    }
                    Err(e) => task.log(format!("stopping {vm}: {e}")),
                }
            }
        }
    }

    /// Starts the app's stop task.
    pub fn app_stop(self: &Arc<Self>, name: &str, user: &str) -> Result<String, AppError> {
        let app = self.den.store.app(name)?;
        if !matches!(app.state, AppState::Running | AppState::Failed) {
            return Err(AppError::Conflict(format!(
                "app `{}` is {}; only a running app can be stopped",
                app.package,
                app.state.as_str()
            )));
        }
        let app = self.den.store.set_app_state(&app.package, AppState::Stopping, None)?;
        let apps = self.clone();
        let user = user.to_string();
        Ok(self.den.spawn_task("app.stop", &app.package.clone(), &user.clone(), move |task| async move {
            apps.stop_services(&app, &task).await;
            apps.den.store.set_app_state(&app.package, AppState::Stopped, None).map_err(err)?;
            apps.den.event(&user, "app.stopped", &app.package, "");
            Ok(())
        })?)
    }

    /// Deletes the app's VMs and network.
    pub(super) async fn unprovision_app(self: &Arc<Self>, app: &AppRecord, task: &TaskHandle) -> Result<(), String> {
        self.stop_services(app, task).await;
        for vm in app.vms.values() {
            if self.den.store.vm(vm).is_err() {
                continue;
            }
            task.log(format!("deleting VM {vm}"));
            let t = self.den.delete(vm, "dend").map_err(err)?;
            self.den.wait_task(&t, VM_TASK).await?;
        }
        if !app.network.is_empty()
            && self.den.net.networks(&self.den.store).map_err(err)?.iter().any(|n| n.name == app.network)
        {
            task.log(format!("deleting network {}", app.network));
            self.den.net.delete_network(&self.den.store, &app.network, den_net::By::Den).map_err(err)?;
            self.den.net.sync(&self.den.store).await.map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(vm_name("two", "my_db"), "two-my-db");
        assert_eq!(vm_name(&"x".repeat(70), "web").len(), 63);
        let n = network_name("cloud.den.test.two", 0);
        assert_eq!(n.len(), 11);
        assert!(den_core::valid_name(&n) && n.starts_with('a'));
        assert_ne!(n, network_name("cloud.den.test.hello", 0));
        assert_ne!(n, network_name("cloud.den.test.two", 1), "another attempt, another name");
        assert!(den_core::net::is_app_network(&n));
    }
}
