//! Upgrades: a newer package of an installed app replaces it while `/lzcapp/var` stays. The new
//! release is unpacked and its images made while the old version still runs; then the old
//! services stop, the new ones are made and started, and the app must answer. If anything fails
//! (or dend dies on the way), the old release, its VMs and its state come back by themselves.

use super::layout::remove_tree;
use super::Apps;
use super::{AppError, AppRecord, AppState};
use crate::AppTable;
use den_core::new_id;
use den_lpk::{Package, Version};
use den_store::now;
use den_vms::TaskHandle;
use std::path::PathBuf;
use std::sync::Arc;

impl Apps {
    /// Checks that `pkg` can replace app `name` and starts the upgrade task. `upload` is
    /// consumed.
    pub fn app_upgrade(
        self: &Arc<Self>,
        name: &str,
        upload: PathBuf,
        pkg: Package,
        opts: den_lpk::Options,
        user: &str,
    ) -> Result<(String, AppRecord), AppError> {
        let refuse = |msg: String| {
            let _ = std::fs::remove_file(&upload);
            Err(AppError::Conflict(msg))
        };
        let old = self.den.store.app(name)?;
        if pkg.meta.package != old.package {
            return refuse(format!("the package is {}, not {}; install it instead", pkg.meta.package, old.package));
        }
        let installed = Version::parse(&old.version).unwrap_or(Version(0, 0, 0));
        if pkg.version <= installed {
            return refuse(format!("version {} is not newer than the installed {}", pkg.version, old.version));
        }
        if !matches!(old.state, AppState::Running | AppState::Stopped | AppState::Failed) {
            return refuse(format!("app {} is {}; wait for its task to end", old.package, old.state.as_str()));
        }
        let mut new = old.clone();
        new.before_upgrade = Some(Box::new(old.clone()));
        new.version = pkg.version.to_string();
        new.meta = pkg.meta.clone();
        new.subdomain = pkg.plan.subdomain.clone();
        new.format = pkg.format;
        new.signed = pkg.signed.clone();
        new.plan = pkg.plan.clone();
        new.warnings = pkg.plan.warnings.clone();
        new.release = new_id();
        new.state = AppState::Upgrading;
        new.error = None;
        new.updated = now();
        let clash = super::ingress::route::host_clash(&self.den.store.apps()?, &new);
        if let Some(why) = clash {
            let _ = std::fs::remove_file(&upload);
            return Err(AppError::Conflict(why));
        }
        if let Err(e) = self.den.store.put_app(&new) {
            let _ = std::fs::remove_file(&upload);
            return Err(e.into());
        }
        let apps = self.clone();
        let user = user.to_string();
        let rec = new.clone();
        let task = self.den.spawn_task("app.upgrade", &rec.package.clone(), &user.clone(), move |task| async move {
            let from = old.version.clone();
            task.log(format!("upgrading {} from {from} to {}", new.package, new.version));
            let res = apps.upgrade_steps(&mut new, &old, &upload, &opts, &pkg, &task).await;
            let _ = std::fs::remove_file(&upload);
            match res {
                Ok(()) => {
                    let _ = remove_tree(&apps.app_dirs().release(&new.package, &old.release));
                    new.before_upgrade = None;
                    new.state = AppState::Running;
                    apps.den.store.put_app(&new).map_err(|e| e.to_string())?;
                    apps.forget_unused_service_images();
                    apps.den.event(&user, "app.upgraded", &new.package, &format!("{from} -> {}", new.version));
                    task.log("upgraded");
                    Ok(())
                }
                Err(e) => {
                    task.log(format!("the upgrade failed: {e}; going back to {from}"));
                    let back = apps.rollback_upgrade(&new, &task).await;
                    let why = format!("upgrade to {} failed: {e}", new.version);
                    apps.den.event(&user, "app.upgrade_failed", &new.package, &why);
                    match back {
                        Ok(()) => Err(format!("{why}; rolled back to {from}")),
                        Err(b) => Err(format!("{why}; going back to {from} failed too: {b}")),
                    }
                }
            }
        })?;
        Ok((task, rec))
    }

    async fn upgrade_steps(
        self: &Arc<Self>,
        new: &mut AppRecord,
        old: &AppRecord,
        upload: &std::path::Path,
        opts: &den_lpk::Options,
        pkg: &Package,
        task: &TaskHandle,
    ) -> Result<(), String> {
        // The old manifest goes with its release, for a rollback (never read from a guest).
        self.release_manifest(&old.package, &old.release)?;
        self.unpack_release(upload, opts, &new.package, &new.release, pkg).await?;
        self.make_images(new, pkg, task).await?;
        task.log(format!("stopping {} {}", old.package, old.version));
        self.unprovision_app(old, task).await?;
        new.vms.clear();
        new.network.clear();
        self.activate(&new.package, &new.release, &pkg.rendered, Some(&old.release)).await?;
        self.provision_app(new, task).await?;
        new.state = AppState::Starting;
        self.den.store.put_app(new).map_err(|e| e.to_string())?;
        self.run_app(new, task).await
    }

    /// Puts back the app as it was before the upgrade recorded in `failed`: its VMs and
    /// network, its release as `/lzcapp/pkg`, its record, and its running state.
    pub(super) async fn rollback_upgrade(
        self: &Arc<Self>,
        failed: &AppRecord,
        task: &TaskHandle,
    ) -> Result<(), String> {
        let Some(old) = failed.before_upgrade.as_deref().cloned() else {
            return Err("the record has no earlier version to go back to".into());
        };
        let dirs = self.app_dirs();
        self.unprovision_app(failed, task).await?;
        let manifest = self.release_manifest(&old.package, &old.release).unwrap_or_default();
        let (back_dirs, package, release) = (dirs.clone(), old.package.clone(), old.release.clone());
        super::blocking(move || {
            let dirs = back_dirs;
            dirs.prepare(&package)?;
            let old_pkg = dirs.release(&package, &release).join("pkg");
            if old_pkg.exists() {
                remove_tree(&dirs.pkg(&package)).map_err(|e| e.to_string())?;
                std::fs::rename(&old_pkg, dirs.pkg(&package)).map_err(|e| e.to_string())?;
            }
            super::install::write_manifest(&dirs, &package, &release, &manifest).map_err(|e| e.to_string())
        })
        .await?;
        if failed.release != old.release {
            let _ = remove_tree(&dirs.release(&old.package, &failed.release));
        }
        let mut back = old.clone();
        back.vms.clear();
        back.network.clear();
        back.state = AppState::Stopped;
        self.den.store.put_app(&back).map_err(|e| e.to_string())?;
        self.provision_app(&mut back, task).await?;
        self.forget_unused_service_images();
        if old.state == AppState::Running {
            back.state = AppState::Starting;
            self.den.store.put_app(&back).map_err(|e| e.to_string())?;
            if let Err(e) = self.run_app(&back, task).await {
                self.den
                    .store
                    .set_app_state(&back.package, AppState::Failed, Some(e.clone()))
                    .map_err(|e| e.to_string())?;
                return Err(format!("the old version did not start again: {e}"));
            }
        }
        let state = if old.state == AppState::Running { AppState::Running } else { AppState::Stopped };
        let why = format!("the upgrade to {} failed and was rolled back", failed.version);
        self.den.store.set_app_state(&back.package, state, Some(why)).map_err(|e| e.to_string())?;
        task.log(format!("back at {} {}", old.package, old.version));
        Ok(())
    }
}
