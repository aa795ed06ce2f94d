//! Installing and removing packages. The package is checked in full first (nothing is written
//! if it is refused); the install task then unpacks it into `.staging/`, renames it into place,
//! and only then marks the app installed. Uninstall removes the app's files and record.

use super::layout::{remove_tree, AppDirs, GuestDir};
use super::Apps;
use super::AppsConfig;
use super::{AppError, AppRecord, AppState};
use crate::AppTable;
use den_core::new_id;
use den_lpk::Package;
use den_store::now;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn io(what: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", what.display())
}

/// Largest rendered manifest read back from an app's `/lzcapp/run` (apps installed before
/// releases kept their own copy).
const MAX_MANIFEST: u64 = 1 << 20;

/// Writes the rendered manifest of `release` into `/lzcapp/run` (remade from scratch) and
/// beside the release.
pub(super) fn write_manifest(dirs: &AppDirs, package: &str, release: &str, text: &[u8]) -> std::io::Result<()> {
    let lz = dirs.lzcapp_tree(package)?;
    lz.remove_all("run")?;
    lz.mkdir("run", 0o755)?;
    lz.write_new("run/manifest.yml", text, 0o644)?;
    let kept = dirs.release(package, release);
    std::fs::create_dir_all(&kept)?;
    let tmp = kept.join(".manifest.yml.new");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, kept.join("manifest.yml"))
}

impl Apps {
    /// The apps directory tree.
    pub fn app_dirs(&self) -> AppDirs {
        AppDirs::new(&self.den.paths.data)
    }

    /// `[apps]` of den.toml.
    pub fn apps_cfg(&self) -> AppsConfig {
        self.config.clone()
    }

    /// How packages are read here: trusted keys and the box's variables.
    pub fn lpk_options(&self, user_uid: Option<u32>) -> Result<den_lpk::Options, AppError> {
        let cfg = self.apps_cfg();
        let keyring = den_lpk::Keyring::load_dir(&cfg.keys_dir)?;
        let box_name = cfg.box_name.clone().unwrap_or_else(|| {
            nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "den".into())
        });
        let mut opts = den_lpk::Options { keyring, ..den_lpk::Options::default() };
        opts.vars.insert("LAZYCAT_BOX_DOMAIN".into(), cfg.box_domain.clone());
        opts.vars.insert("LAZYCAT_BOX_NAME".into(), box_name);
        opts.vars.insert("LAZYCAT_APP_DEPLOY_UID".into(), user_uid.unwrap_or(0).to_string());
        Ok(opts)
    }

    /// Reads and checks a received package (in a blocking thread: it hashes every byte).
    pub async fn app_check(&self, file: &Path, opts: den_lpk::Options) -> Result<Package, AppError> {
        let file = file.to_path_buf();
        tokio::task::spawn_blocking(move || den_lpk::inspect(&file, &opts))
            .await
            .map_err(|e| AppError::Failed(format!("the package check stopped: {e}")))?
            .map_err(AppError::from)
    }

    /// Claims the app's id and subdomain and starts the install task for a checked package.
    /// `upload` is consumed (removed when the task ends).
    pub fn app_install(
        self: &Arc<Self>,
        upload: PathBuf,
        pkg: Package,
        opts: den_lpk::Options,
        user: &str,
    ) -> Result<(String, AppRecord), AppError> {
        let t = now();
        let rec = AppRecord {
            package: pkg.meta.package.clone(),
            version: pkg.version.to_string(),
            meta: pkg.meta.clone(),
            subdomain: pkg.plan.subdomain.clone(),
            state: AppState::Installing,
            format: pkg.format,
            signed: pkg.signed.clone(),
            plan: pkg.plan.clone(),
            release: new_id(),
            previous: None,
            vms: Default::default(),
            images: Default::default(),
            network: String::new(),
            owner: user.to_string(),
            warnings: pkg.plan.warnings.clone(),
            before_upgrade: None,
            keep_data: false,
            error: None,
            installed: t,
            updated: t,
        };
        let clash = super::ingress::route::host_clash(&self.den.store.apps()?, &rec);
        if let Some(why) = clash {
            let _ = std::fs::remove_file(&upload);
            return Err(AppError::Conflict(why));
        }
        if let Err(e) = self.den.store.insert_app(&rec) {
            let _ = std::fs::remove_file(&upload);
            return Err(e.into());
        }
        let apps = self.clone();
        let mut app = rec.clone();
        let task = self.den.spawn_task("app.install", &rec.package, user, move |task| async move {
            task.log(format!(
                "installing {} {} ({} files, {} MiB unpacked)",
                app.package,
                app.version,
                pkg.files.len(),
                pkg.unpacked >> 20
            ));
            let mut res = apps.unpack(&upload, &opts, &app, &pkg).await;
            let _ = std::fs::remove_file(&upload);
            if res.is_ok() {
                res = apps.prepare_app(&mut app, &pkg, &task).await;
            }
            match res {
                Ok(()) => {
                    apps.den.store.set_app_state(&app.package, AppState::Stopped, None).map_err(|e| e.to_string())?;
                    task.log("installed");
                    apps.den.event(&app.owner, "app.installed", &app.package, &app.version);
                    Ok(())
                }
                Err(e) => {
                    if let Err(u) = apps.unprovision_app(&app, &task).await {
                        task.log(format!("removing its VMs and network: {u}"));
                    }
                    apps.forget_failed_install(&app).await;
                    apps.forget_unused_service_images();
                    Err(e)
                }
            }
        });
        match task {
            Ok(id) => Ok((id, rec)),
            Err(e) => {
                let _ = self.den.store.delete_app(&rec.package);
                Err(e.into())
            }
        }
    }

    /// Unpacks into `.staging/`, then moves the release into place and writes `/lzcapp/run`.
    async fn unpack(
        &self,
        upload: &Path,
        opts: &den_lpk::Options,
        app: &AppRecord,
        pkg: &Package,
    ) -> Result<(), String> {
        self.unpack_release(upload, opts, &app.package, &app.release, pkg).await?;
        self.activate(&app.package, &app.release, &pkg.rendered, None).await
    }

    /// Unpacks a checked package into `.staging/`, then renames it to the app's
    /// `releases/<release>/`.
    pub(super) async fn unpack_release(
        &self,
        upload: &Path,
        opts: &den_lpk::Options,
        package: &str,
        release: &str,
        pkg: &Package,
    ) -> Result<(), String> {
        let dirs = self.app_dirs();
        dirs.create().map_err(|e| io(&dirs.staging(), e))?;
        let staging = dirs.staging().join(release);
        let (file, o, dest) = (upload.to_path_buf(), opts.clone(), staging.clone());
        let unpacked = tokio::task::spawn_blocking(move || den_lpk::extract(&file, &o, &dest))
            .await
            .map_err(|e| format!("unpacking stopped: {e}"))?;
        let unpacked = match unpacked {
            Ok(p) => p,
            Err(e) => {
                let _ = remove_tree(&staging);
                return Err(e.to_string());
            }
        };
        if unpacked.files != pkg.files {
            let _ = remove_tree(&staging);
            return Err("the package changed between its check and unpacking; send it again".into());
        }
        let target = dirs.release(package, release);
        let place = || -> std::io::Result<()> {
            std::fs::create_dir_all(target.parent().unwrap_or(&target))?;
            std::fs::rename(&staging, &target)
        };
        place().map_err(|e| {
            let _ = remove_tree(&staging);
            io(&target, e)
        })
    }

    /// Makes `release` the app's `/lzcapp/pkg` (the current one goes back to its release
    /// directory `keep` when given, else away), remakes `/lzcapp/run` and writes the rendered
    /// manifest there and beside the release (for a rollback). Only while no service of the
    /// app runs.
    pub(super) async fn activate(
        &self,
        package: &str,
        release: &str,
        rendered: &str,
        keep: Option<&str>,
    ) -> Result<(), String> {
        let dirs = self.app_dirs();
        let (package, release, rendered, keep) =
            (package.to_string(), release.to_string(), rendered.to_string(), keep.map(str::to_string));
        super::blocking(move || {
            dirs.prepare(&package)?;
            let from = dirs.release(&package, &release).join("pkg");
            let step = || -> std::io::Result<()> {
                let lz = dirs.lzcapp_tree(&package)?;
                match &keep {
                    Some(old) if lz.exists("pkg")? => {
                        std::fs::rename(dirs.pkg(&package), dirs.release(&package, old).join("pkg"))?
                    }
                    _ => lz.remove_all("pkg")?,
                }
                std::fs::rename(&from, dirs.pkg(&package))?;
                write_manifest(&dirs, &package, &release, rendered.as_bytes())
            };
            step().map_err(|e| io(&dirs.lzcapp(&package), e))
        })
        .await
    }

    /// The rendered manifest of the app's current `release`: the release's copy, or for apps
    /// installed before releases kept one, `/lzcapp/run/manifest.yml` (read without following
    /// links, at most 1 MiB), which is then kept with the release.
    pub(super) fn release_manifest(&self, package: &str, release: &str) -> Result<Vec<u8>, String> {
        let dirs = self.app_dirs();
        let kept = dirs.release(package, release).join("manifest.yml");
        match std::fs::read(&kept) {
            Ok(m) => return Ok(m),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&kept, e)),
            Err(_) => {}
        }
        let lz = dirs.lzcapp_tree(package).map_err(|e| e.to_string())?;
        let text = lz.read("run/manifest.yml", MAX_MANIFEST).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(dirs.release(package, release)).map_err(|e| io(&kept, e))?;
        std::fs::write(&kept, &text).map_err(|e| io(&kept, e))?;
        Ok(text)
    }

    /// Makes each service's image, then the app's network and VMs.
    async fn prepare_app(
        self: &Arc<Self>,
        app: &mut AppRecord,
        pkg: &Package,
        task: &den_vms::TaskHandle,
    ) -> Result<(), String> {
        self.make_images(app, pkg, task).await?;
        self.provision_app(app, task).await
    }

    /// Makes the store image of each of the app's services (from the release's `images/`).
    pub(super) async fn make_images(
        self: &Arc<Self>,
        app: &mut AppRecord,
        pkg: &Package,
        task: &den_vms::TaskHandle,
    ) -> Result<(), String> {
        let layout = self.app_dirs().release(&app.package, &app.release).join("images");
        app.images.clear();
        for svc in &app.plan.services {
            let (apps, image, emb, layout, t) =
                (self.clone(), svc.image.clone(), pkg.embedded.clone(), layout.clone(), task.clone());
            let made =
                tokio::task::spawn_blocking(move || apps.service_image(&image, emb.as_ref(), &layout, &|l| t.log(l)))
                    .await
                    .map_err(|e| format!("making the image of {}: {e}", svc.name))?
                    .map_err(|e| e.to_string())?;
            task.log(format!("service {}: image {}", svc.name, made.image));
            app.images.insert(svc.name.clone(), made);
        }
        self.den.store.put_app(app).map_err(|e| e.to_string())
    }

    /// Removes what a failed or interrupted install made: its release, its staging directory,
    /// and the app's directory and record unless data from an earlier install is kept there.
    pub(super) async fn forget_failed_install(&self, app: &AppRecord) {
        let dirs = self.app_dirs();
        let _ = remove_tree(&dirs.staging().join(&app.release));
        let _ = remove_tree(&dirs.release(&app.package, &app.release));
        let var_kept =
            dirs.guest(&app.package, GuestDir::Var).and_then(|v| v.is_empty_dir("")).is_ok_and(|empty| !empty);
        if !var_kept {
            let _ = remove_tree(&dirs.app(&app.package));
        }
        if let Err(e) = self.den.store.delete_app(&app.package) {
            tracing::error!(app = %app.package, %e, "cannot remove the record of a failed install");
        }
    }

    /// Starts the uninstall task: the app's files go (its data too unless `keep_data`), then its record.
    pub fn app_uninstall(self: &Arc<Self>, name: &str, keep_data: bool, user: &str) -> Result<String, AppError> {
        let app = self.den.store.app(name)?;
        if matches!(app.state, AppState::Installing | AppState::Upgrading | AppState::Uninstalling) {
            return Err(AppError::Conflict(format!(
                "app `{}` is {}; wait for its task to end (`den task ls`)",
                app.package,
                app.state.as_str()
            )));
        }
        let mut rec = app.clone();
        rec.state = AppState::Uninstalling;
        rec.keep_data = keep_data;
        self.den.store.put_app(&rec)?;
        let apps = self.clone();
        let user2 = user.to_string();
        let task = self.den.spawn_task("app.uninstall", &app.package, user, move |task| async move {
            apps.finish_uninstall(&rec, keep_data, &task).await?;
            apps.den.event(
                &user2,
                "app.uninstalled",
                &rec.package,
                if keep_data { "data kept" } else { "data removed" },
            );
            Ok(())
        })?;
        Ok(task)
    }

    /// The uninstall steps; also used to finish one a crash interrupted.
    pub(super) async fn finish_uninstall(
        self: &Arc<Self>,
        app: &AppRecord,
        keep_data: bool,
        task: &den_vms::TaskHandle,
    ) -> Result<(), String> {
        self.unprovision_app(app, task).await?;
        let dirs = self.app_dirs();
        task.log("removing the app's files");
        if keep_data {
            task.log(format!("keeping its data in {}", dirs.kept_data(&app.package).display()));
        }
        let package = app.package.clone();
        super::blocking(move || {
            if dirs.app(&package).exists() {
                // An app from before the current layout has its data inside /lzcapp: move it out.
                dirs.prepare(&package)?;
            }
            remove_tree(&dirs.app(&package).join("releases")).map_err(|e| io(&dirs.app(&package), e))?;
            remove_tree(&dirs.lzcapp(&package)).map_err(|e| io(&dirs.lzcapp(&package), e))?;
            dirs.remove_guest(&package, GuestDir::Cache)?;
            if !keep_data {
                dirs.remove_guest(&package, GuestDir::Var)?;
                remove_tree(&dirs.app(&package)).map_err(|e| io(&dirs.app(&package), e))?;
            }
            Ok(())
        })
        .await?;
        self.den.store.delete_app(&app.package).map_err(|e| e.to_string())?;
        self.forget_unused_service_images();
        task.log("uninstalled");
        Ok(())
    }
}
