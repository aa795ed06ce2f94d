//! Turns an [`ImageSpec`] into artifacts in the [`Store`], stage by stage. Each stage is keyed by
//! the hash of everything it is made from; a stage whose key is recorded and whose outputs verify
//! is a cache hit. A corrupt or missing output is reported and the stage is rebuilt.
//!
//! Stages: `kernel` (package -> bzImage, modules archive, vmlinux), `busybox`, `initramfs`,
//! `rootfs` (mmdebstrap -> tar) and `disk` (tar + agent + files -> ext4, qcow2).

use crate::spec::{ImageSpec, RootfsSpec};
use crate::store::{hash_bytes, hash_file, now, Digest256, ImageRecord, StageRecord, Store};
use crate::{deb, initramfs, kernel, rootfs, ImageError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Version of the build recipes; bump it when a stage's output would change for the same inputs.
pub const RECIPE: &str = "den-images/1";

/// Receives progress of a build (the CLI draws it; tests stay silent).
pub trait Progress: Send + Sync {
    /// A stage starts real work.
    fn begin(&self, stage: &str, what: &str);
    /// A line of tool output within a stage.
    fn line(&self, stage: &str, line: &str);
    /// A stage ended, from cache or after `secs` of work.
    fn end(&self, stage: &str, cached: bool, secs: f64);
    /// Something worth telling the user (a corrupt object being rebuilt, ...).
    fn warn(&self, msg: &str);
}

/// Progress that reports nothing.
pub struct SilentProgress;

impl Progress for SilentProgress {
    fn begin(&self, _: &str, _: &str) {}
    fn line(&self, _: &str, _: &str) {}
    fn end(&self, _: &str, _: bool, _: f64) {}
    fn warn(&self, _: &str) {}
}

/// Builds images into a store.
pub struct Builder<'a> {
    store: Store,
    cache: PathBuf,
    agent: PathBuf,
    progress: &'a dyn Progress,
}

fn key(parts: &[&str]) -> Digest256 {
    let mut all = String::from(RECIPE);
    for p in parts {
        all.push('\0');
        all.push_str(p);
    }
    hash_bytes(all.as_bytes())
}

fn one(rec: &StageRecord, role: &str) -> Result<Digest256, ImageError> {
    rec.outputs.get(role).cloned().ok_or_else(|| ImageError::BadRecord {
        path: PathBuf::from(role),
        reason: format!("build record lacks its `{role}` output"),
    })
}

impl<'a> Builder<'a> {
    /// A builder over `store`, with downloads cached under `cache` and the static agent at `agent`.
    pub fn new(store: Store, cache: &Path, agent: &Path, progress: &'a dyn Progress) -> Builder<'a> {
        Builder { store, cache: cache.to_path_buf(), agent: agent.to_path_buf(), progress }
    }

    /// A Debian package at its candidate version (remembered while apt's lists are unchanged).
    fn package(&self, name: &str, context: &str) -> Result<deb::Package, ImageError> {
        deb::resolve_cached(name, context, &self.cache.join("apt-resolved.json"))
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A verified cache hit for `key`, or `None` (after dropping a record whose outputs are bad).
    fn cached(&self, stage: &str, key: &Digest256) -> Result<Option<StageRecord>, ImageError> {
        let Some(rec) = self.store.stage(key)? else { return Ok(None) };
        for d in rec.outputs.values() {
            match self.store.get(d, false) {
                Ok(_) => {}
                Err(e @ (ImageError::Corrupt { .. } | ImageError::MissingObject { .. })) => {
                    self.progress.warn(&format!("{e}; rebuilding stage `{stage}`"));
                    self.store.remove_object(d)?;
                    self.store.drop_stage(key);
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Some(rec))
    }

    fn ensure(
        &self,
        stage: &str,
        what: &str,
        key: &Digest256,
        make: impl FnOnce(&Path) -> Result<StageRecord, ImageError>,
    ) -> Result<StageRecord, ImageError> {
        if let Some(rec) = self.cached(stage, key)? {
            self.progress.end(stage, true, 0.0);
            return Ok(rec);
        }
        self.progress.begin(stage, what);
        let t = Instant::now();
        let tmp = self.store.temp_dir(stage)?;
        let rec = make(tmp.path())?;
        self.store.put_stage(key, &rec)?;
        self.progress.end(stage, false, t.elapsed().as_secs_f64());
        Ok(rec)
    }

    fn put(&self, path: &Path, kind: &str, inputs: &BTreeMap<String, String>) -> Result<Digest256, ImageError> {
        self.store.insert_file(path, kind, &format!("{RECIPE} {kind}"), inputs.clone())
    }

    fn put_bytes(&self, b: &[u8], kind: &str, inputs: &BTreeMap<String, String>) -> Result<Digest256, ImageError> {
        self.store.insert_bytes(b, kind, &format!("{RECIPE} {kind}"), inputs.clone())
    }

    /// Builds (or finds in the cache) every artifact of `spec`, and names the result.
    pub fn build(&self, spec: &ImageSpec, spec_text: &str) -> Result<ImageRecord, ImageError> {
        let agent_digest = hash_file(&self.agent)?;
        let mut artifacts = BTreeMap::new();

        let kpkg = kernel::resolve(&spec.kernel.package, &|n, ctx| self.package(n, ctx))?;
        let mut modules = spec.kernel.modules.clone();
        modules.sort();
        let kkey = key(&["kernel", &kpkg.name, &kpkg.version, &modules.join(","), &spec.kernel.vmlinux.to_string()]);
        let debs = self.cache.join("debs");
        let krec = self.ensure("kernel", &format!("{} {}", kpkg.name, kpkg.version), &kkey, |work| {
            let parts = kernel::build(&kpkg, &debs, work, &spec.kernel.modules, spec.kernel.vmlinux)?;
            let inputs: BTreeMap<String, String> =
                [("package".to_string(), format!("{}={}", kpkg.name, kpkg.version))].into();
            let mut outputs = BTreeMap::new();
            outputs.insert("kernel".into(), self.put(&parts.vmlinuz, "kernel", &inputs)?);
            outputs.insert("modules".into(), self.put_bytes(&parts.modules_cpio, "modules-cpio", &inputs)?);
            if let Some(v) = &parts.vmlinux {
                outputs.insert("vmlinux".into(), self.put_bytes(v, "vmlinux", &inputs)?);
            }
            let facts =
                [("release".to_string(), parts.release), ("modules".to_string(), parts.load_order.join(","))].into();
            Ok(StageRecord { outputs, facts })
        })?;
        artifacts.insert("kernel".to_string(), one(&krec, "kernel")?);
        if let Some(v) = krec.outputs.get("vmlinux") {
            artifacts.insert("vmlinux".to_string(), v.clone());
        }

        let busybox = if spec.init.busybox { Some(self.busybox()?) } else { None };
        let files_json = serde_json::to_string(&spec.files).unwrap_or_default();
        let modules_digest = one(&krec, "modules")?;
        let bb_ids = busybox.as_ref().map(|b| format!("{}+{}", b.0, b.1)).unwrap_or_default();
        let ikey = key(&["initramfs", &agent_digest.0, &bb_ids, &modules_digest.0, &files_json]);
        let irec = self.ensure("initramfs", "busybox, den-agent and modules", &ikey, |_| {
            let agent = std::fs::read(&self.agent).map_err(|e| ImageError::io(&self.agent, e))?;
            let bb = match &busybox {
                Some((bin, applets)) => {
                    let bin = std::fs::read(self.store.get(bin, false)?).map_err(|e| ImageError::io("busybox", e))?;
                    let list = std::fs::read_to_string(self.store.get(applets, false)?)
                        .map_err(|e| ImageError::io("applets", e))?;
                    Some((bin, list.lines().map(str::to_string).collect::<Vec<String>>()))
                }
                None => None,
            };
            let mods =
                std::fs::read(self.store.get(&modules_digest, false)?).map_err(|e| ImageError::io("modules", e))?;
            let img = initramfs::build(&initramfs::Parts {
                agent: &agent,
                busybox: bb.as_ref().map(|(b, l)| (b.as_slice(), l.clone())),
                files: &spec.files,
                modules_cpio: &mods,
            })?;
            let inputs =
                [("agent".to_string(), agent_digest.0.clone()), ("modules".to_string(), modules_digest.0.clone())]
                    .into();
            Ok(StageRecord {
                outputs: [("initramfs".into(), self.put_bytes(&img, "initramfs", &inputs)?)].into(),
                facts: BTreeMap::new(),
            })
        })?;
        artifacts.insert("initramfs".to_string(), one(&irec, "initramfs")?);

        if let Some(r) = &spec.rootfs {
            let disk = self.disk(r, &agent_digest)?;
            for (role, d) in disk.outputs {
                artifacts.insert(role, d);
            }
        }

        let rec = ImageRecord {
            name: spec.name.clone(),
            spec_digest: hash_bytes(spec_text.as_bytes()),
            artifacts,
            cmdline: spec.cmdline.clone(),
            kernel_release: krec.facts.get("release").cloned().unwrap_or_default(),
            built: now(),
            version: spec.version.clone(),
        };
        // Re-pointing a name at identical artifacts is not a change; keep the first build time.
        match self.store.image(&spec.name)? {
            Some(old) if old.artifacts == rec.artifacts && old.cmdline == rec.cmdline && old.version == rec.version => {
                Ok(old)
            }
            _ => {
                self.store.put_image(&rec)?;
                Ok(rec)
            }
        }
    }

    /// busybox-static: (binary, applet list).
    fn busybox(&self) -> Result<(Digest256, Digest256), ImageError> {
        let pkg = self.package("busybox-static", "init.busybox")?;
        let bkey = key(&["busybox", &pkg.name, &pkg.version]);
        let debs = self.cache.join("debs");
        let rec = self.ensure("busybox", &format!("busybox-static {}", pkg.version), &bkey, |work| {
            let deb_file = deb::download(&pkg, &debs)?;
            let root = work.join("bb");
            deb::extract(&deb_file, &root)?;
            let bin = root.join("bin/busybox");
            let applets = initramfs::busybox_applets(&bin)?;
            let inputs = [("package".to_string(), format!("{}={}", pkg.name, pkg.version))].into();
            let outputs = [
                ("busybox".to_string(), self.put(&bin, "busybox", &inputs)?),
                ("applets".to_string(), self.put_bytes(applets.join("\n").as_bytes(), "busybox-applets", &inputs)?),
            ]
            .into();
            Ok(StageRecord { outputs, facts: BTreeMap::new() })
        })?;
        Ok((one(&rec, "busybox")?, one(&rec, "applets")?))
    }

    /// The root disk: the cached mmdebstrap tree, then the ext4 (and qcow2) made from it.
    fn disk(&self, r: &RootfsSpec, agent: &Digest256) -> Result<StageRecord, ImageError> {
        let tkey = key(&[
            "rootfs",
            &r.suite,
            &r.variant,
            &r.packages.join(","),
            &r.run.join("\n"),
            &rootfs::sources(&r.suite).join("\n"),
        ]);
        let disk_key = |tar: &Digest256| {
            let files = serde_json::to_string(&r.files).unwrap_or_default();
            key(&["disk", &tar.0, &agent.0, &files, &r.size, &r.systemd_agent.to_string(), &r.qcow2.to_string()])
        };
        // A disk already made from the recorded tree needs neither the tree nor its verification.
        if let Some(trec) = self.store.stage(&tkey)? {
            if let Some(tar) = trec.outputs.get("rootfs-tar") {
                if let Some(rec) = self.cached("disk", &disk_key(tar))? {
                    self.progress.end("rootfs", true, 0.0);
                    self.progress.end("disk", true, 0.0);
                    return Ok(rec);
                }
            }
        }
        let apt_cache = self.cache.join("apt-archives");
        let what = format!("Debian {} ({}) with {} packages", r.suite, r.variant, r.packages.len());
        let trec = self.ensure("rootfs", &what, &tkey, |work| {
            rootfs::check_packages(r)?;
            let tar = work.join("rootfs.tar");
            rootfs::bootstrap(r, &tar, &apt_cache, &|l| self.progress.line("rootfs", l))?;
            let inputs =
                [("suite".to_string(), r.suite.clone()), ("packages".to_string(), r.packages.join(","))].into();
            Ok(StageRecord {
                outputs: [("rootfs-tar".into(), self.put(&tar, "rootfs-tar", &inputs)?)].into(),
                facts: BTreeMap::new(),
            })
        })?;
        let tar = one(&trec, "rootfs-tar")?;
        self.ensure("disk", "ext4 root disk", &disk_key(&tar), |work| {
            let agent_bytes = std::fs::read(&self.agent).map_err(|e| ImageError::io(&self.agent, e))?;
            let img = work.join("root.ext4");
            let tar_path = self.store.get(&tar, false)?;
            let size = rootfs::make_disk(&tar_path, work, r, &agent_bytes, &img)?;
            let inputs: BTreeMap<String, String> = [
                ("rootfs-tar".to_string(), tar.0.clone()),
                ("agent".to_string(), agent.0.clone()),
                ("size".to_string(), size.to_string()),
            ]
            .into();
            let mut outputs = BTreeMap::new();
            if r.qcow2 {
                let q = work.join("root.qcow2");
                rootfs::to_qcow2(&img, &q)?;
                outputs.insert("qcow2".to_string(), self.put(&q, "disk-qcow2", &inputs)?);
            }
            outputs.insert("rootfs".to_string(), self.put(&img, "disk-ext4", &inputs)?);
            Ok(StageRecord { outputs, facts: BTreeMap::new() })
        })
    }
}
