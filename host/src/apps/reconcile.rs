//! What a `dend` that died mid-install or mid-uninstall left behind, undone or finished at start.

use super::layout::remove_tree;
use super::AppState;
use crate::vms::Den;
use std::sync::Arc;

impl Den {
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
        for app in self.store.apps()? {
            match app.state {
                AppState::Installing => {
                    tracing::warn!(app = %app.package, "rolling back an install the previous dend did not finish");
                    self.forget_failed_install(&app).await;
                    self.event("dend", "app.install_rolled_back", &app.package, &app.version);
                }
                AppState::Uninstalling => {
                    tracing::warn!(app = %app.package, "finishing an uninstall the previous dend did not finish");
                    let den = self.clone();
                    let keep = app.keep_data;
                    let target = app.package.clone();
                    self.spawn_task("app.uninstall", &target, "dend", move |task| async move {
                        den.finish_uninstall(&app, keep, &task).await
                    })?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}
