//! What a `dend` that died mid-install or mid-uninstall left behind, undone or finished at start.

use super::layout::remove_tree;
use super::AppState;
use super::Apps;
use crate::AppTable;
use std::sync::Arc;

impl Apps {
    /// Rolls back interrupted installs, finishes interrupted uninstalls, and clears partial
    /// uploads and unpacked packages.
    pub async fn reconcile_apps(self: &Arc<Self>) -> Result<(), super::AppError> {
        let dirs = self.app_dirs();
        for d in [dirs.staging(), dirs.uploads()] {
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    tracing::info!(path = %e.path().display(), "removing a partial package left by the previous dend");
                    let _ = remove_tree(&e.path()).or_else(|_| std::fs::remove_file(e.path()));
                }
            }
        }
        dirs.create().map_err(|e| super::AppError::Failed(format!("{}: {e}", dirs.staging().display())))?;
        for app in self.den.store.apps()? {
            match app.state {
                AppState::Installing => {
                    tracing::warn!(app = %app.package, "rolling back an install the previous dend did not finish");
                    let apps = self.clone();
                    let target = app.package.clone();
                    // Its record goes at once: nothing may start or find a half-installed app.
                    self.forget_failed_install(&app).await;
                    self.den.spawn_task("app.install_rollback", &target, "dend", move |task| async move {
                        apps.unprovision_app(&app, &task).await?;
                        apps.forget_unused_service_images();
                        apps.den.event("dend", "app.install_rolled_back", &app.package, &app.version);
                        Ok(())
                    })?;
                }
                AppState::Uninstalling => {
                    tracing::warn!(app = %app.package, "finishing an uninstall the previous dend did not finish");
                    let apps = self.clone();
                    let keep = app.keep_data;
                    let target = app.package.clone();
                    self.den.spawn_task("app.uninstall", &target, "dend", move |task| async move {
                        apps.finish_uninstall(&app, keep, &task).await
                    })?;
                }
                AppState::Upgrading if app.before_upgrade.is_some() => {
                    tracing::warn!(app = %app.package, "rolling back an upgrade the previous dend did not finish");
                    let apps = self.clone();
                    let target = app.package.clone();
                    self.den.spawn_task("app.upgrade_rollback", &target, "dend", move |task| async move {
                        apps.rollback_upgrade(&app, &task).await
                    })?;
                }
                // A dend that died while an app started or stopped: its VMs were adopted by the
                // VM reconcile; the app says what they can be relied on for.
                AppState::Starting | AppState::Stopping => {
                    let state = if app
                        .vms
                        .values()
                        .all(|v| self.den.store.vm(v).is_ok_and(|r| r.state == den_core::vm::VmState::Running))
                    {
                        AppState::Running
                    } else {
                        AppState::Failed
                    };
                    let why = (state == AppState::Failed)
                        .then(|| "dend restarted while the app was changing state; start it again".to_string());
                    self.den.store.set_app_state(&app.package, state, why)?;
                }
                _ => {}
            }
        }
        self.remove_orphan_app_networks();
        Ok(())
    }

    /// Removes app networks that no app claims and no VM is on: made by a dend that died
    /// before it recorded them with their app (nobody else may remove them).
    fn remove_orphan_app_networks(&self) {
        let (Ok(apps), Ok(nets), Ok(vms)) = (self.den.store.apps(), self.den.store.networks(), self.den.store.vms())
        else {
            return;
        };
        for net in nets.iter().filter(|n| den_core::net::is_app_network(&n.name)) {
            let claimed = apps.iter().any(|a| a.network == net.name);
            let used = vms.iter().flat_map(|v| &v.nics).any(|n| n.network == net.name);
            if !claimed && !used {
                tracing::info!(network = %net.name, "removing an app network no app has");
                if let Err(e) = self.den.net.delete_network(&self.den.store, &net.name, den_net::By::Den) {
                    tracing::warn!(network = %net.name, %e, "cannot remove an app network no app has");
                }
            }
        }
    }
}
