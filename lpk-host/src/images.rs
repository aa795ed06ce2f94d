//! Each service's root disk source, made at install: an image in Den's image store whose kernel
//! and initramfs are the `app` runtime's and whose root disk is the service's image: an
//! embedded OCI image (turned into ext4 once per manifest digest, shared by every app that embeds
//! it), an image Den already has, or Den's `base` for services that name none.

use super::AppError;
use super::Apps;
use crate::AppTable;
use den_images::oci::RunConfig;
use den_images::{ImageRecord, Store};
use den_lpk::plan::ImageRef;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The image that provides LPK services' kernel and init.
pub const RUNTIME: &str = "app";
/// What services without an image run on.
pub const BASE: &str = "base";
/// How long a newly made service image is kept even when no app records it yet.
pub const FRESH: std::time::Duration = std::time::Duration::from_secs(600);

/// A service's image in the store, and how the image says to run it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceImage {
    /// Image name in Den's image store (`lpk-<digest>` for embedded ones).
    pub image: String,
    /// Entrypoint, command, environment, working directory and user from the image.
    pub config: RunConfig,
}

fn failed(e: impl std::fmt::Display) -> AppError {
    AppError::Failed(e.to_string())
}

fn need(store: &Store, name: &str, why: &str) -> Result<ImageRecord, AppError> {
    store.image(name).map_err(failed)?.ok_or_else(|| {
        AppError::Failed(format!("LPK apps need Den's `{name}` image ({why}); build it with `den image build {name}`"))
    })
}

/// Reads `/etc/den/oci-config.json` from an ext4 root disk (images imported with
/// `den image import-oci` keep their configuration there); none if it has none.
fn config_in_disk(disk: &Path) -> RunConfig {
    let out = std::process::Command::new("debugfs").arg("-R").arg("cat /etc/den/oci-config.json").arg(disk).output();
    out.ok().and_then(|o| serde_json::from_slice(&o.stdout).ok()).unwrap_or_default()
}

impl Apps {
    /// The store image a service runs, made (or refreshed: the runtime's kernel and init may have
    /// been rebuilt since) from `image`; `layout` is the release's unpacked `images/`.
    pub(super) fn service_image(
        &self,
        image: &ImageRef,
        embedded: Option<&den_lpk::images::Embedded>,
        layout: &Path,
        log: &dyn Fn(String),
    ) -> Result<ServiceImage, AppError> {
        let store = self.den.images().map_err(failed)?;
        let runtime = need(&store, RUNTIME, "the kernel and init of app services")?;
        let (name, rootfs, config) = match image {
            ImageRef::Base => {
                let base = need(&store, BASE, "services that name no image run on it")?;
                let rootfs =
                    base.artifacts.get("rootfs").cloned().ok_or_else(|| failed("image `base` has no root disk"))?;
                ("lpk-base".to_string(), rootfs, RunConfig::default())
            }
            ImageRef::Named(reference) => {
                let (name, rec) = self.named_image(&store, reference)?;
                let rootfs = rec.artifacts.get("rootfs").cloned().ok_or_else(|| {
                    AppError::Failed(format!("image `{name}` has no root disk, so it cannot run a service"))
                })?;
                let config = config_in_disk(&store.get(&rootfs, false).map_err(failed)?);
                (format!("lpk-{name}"), rootfs, config)
            }
            ImageRef::Embed(alias) => {
                let oci = embedded
                    .and_then(|e| e.resolve(alias))
                    .ok_or_else(|| AppError::Failed(format!("embedded image `{alias}` is not in the package")))?;
                let hex = oci.digest.trim_start_matches("sha256:");
                let name = format!("lpk-{}", &hex[..hex.len().min(16)]);
                let config = den_images::oci::run_config(layout, Some(&oci.digest)).map_err(failed)?;
                let existing = store.image(&name).map_err(failed)?.and_then(|r| r.artifacts.get("rootfs").cloned());
                let rootfs = match existing.filter(|d| store.get(d, false).is_ok()) {
                    Some(d) => d,
                    None => {
                        log(format!("making a root disk from embedded image `{alias}` ({})", oci.digest));
                        let work = store.temp_dir("lpk").map_err(failed)?;
                        let out = work.path().join("root.ext4");
                        den_images::oci::to_ext4(layout, Some(&oci.digest), work.path(), None, &out).map_err(failed)?;
                        let inputs = [("oci".to_string(), oci.digest.clone())].into();
                        store.insert_file(&out, "disk-ext4", "dend (LPK embedded image)", inputs).map_err(failed)?
                    }
                };
                (name, rootfs, config)
            }
        };
        let mut artifacts = runtime.artifacts.clone();
        artifacts.insert("rootfs".into(), rootfs.clone());
        let rec = ImageRecord {
            name: name.clone(),
            spec_digest: den_images::store::hash_bytes(format!("{}+{}", runtime.spec_digest.0, rootfs.0).as_bytes()),
            artifacts,
            cmdline: runtime.cmdline.clone(),
            kernel_release: runtime.kernel_release.clone(),
            built: den_images::store::now(),
            version: String::new(),
        };
        store.put_image(&rec).map_err(failed)?;
        Ok(ServiceImage { image: name, config })
    }

    /// An image Den has for a manifest's `image: <reference>`: by its name in the store, or by
    /// the reference's last path component without tag (`registry/x/postgres:16` -> `postgres`).
    fn named_image(&self, store: &Store, reference: &str) -> Result<(String, ImageRecord), AppError> {
        let last = reference.rsplit('/').next().unwrap_or(reference);
        let bare = last.split(['@', ':']).next().unwrap_or(last);
        for cand in [reference, last, bare] {
            if den_images::spec::check_name(cand).is_ok() {
                if let Some(rec) = store.image(cand).map_err(failed)? {
                    return Ok((cand.to_string(), rec));
                }
            }
        }
        Err(AppError::Failed(format!(
            "the package runs image `{reference}`, which Den does not have (Den cannot pull from registries); \
             import it with `den image import-oci <layout> {bare}`, or embed it in the package"
        )))
    }

    /// Removes the store images of apps (`lpk-*`) that no app uses any more: neither an
    /// installed version nor one an upgrade under way may go back to. Images made in the last
    /// [`FRESH`] are kept: an install may be about to record them.
    pub(super) fn forget_unused_service_images(&self) {
        let Ok(store) = self.den.images() else { return };
        let mut used = std::collections::HashSet::new();
        for a in self.den.store.apps().unwrap_or_default() {
            used.extend(a.images.values().map(|i| i.image.clone()));
            if let Some(b) = &a.before_upgrade {
                used.extend(b.images.values().map(|i| i.image.clone()));
            }
        }
        let fresh = den_images::store::now().saturating_sub(FRESH.as_secs());
        for rec in store.images().unwrap_or_default() {
            if rec.name.starts_with("lpk-") && !used.contains(&rec.name) && rec.built < fresh {
                let _ = store.remove_image(&rec.name);
            }
        }
    }
}
