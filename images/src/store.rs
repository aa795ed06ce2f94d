//! The content-addressed store: every artifact is a read-only file named by its sha256, with a
//! metadata record saying what built it from which inputs.
//!
//! ```text
//! <root>/objects/sha256/<hex>        the bytes (mode 0444)
//! <root>/objects/sha256/<hex>.json   ObjectMeta
//! <root>/builds/<key>.json           build cache: stage key -> outputs
//! <root>/images/<name>.json          the image a name points at (ImageRecord)
//! <root>/tmp/                        work in progress; emptied when the store opens
//! ```
//! Writes go to `tmp/`, are fsynced, then renamed into place, so a crash never leaves a
//! half-written object under its final name.

use crate::ImageError;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Objects at most this large are re-hashed on every read; larger ones when their recorded
/// size, inode or mtime changed, or when a full verification is asked for.
pub const ALWAYS_VERIFY_BELOW: u64 = 64 * 1024 * 1024;

/// A sha256 digest in hex.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Digest256(pub String);

impl std::fmt::Display for Digest256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

impl Digest256 {
    /// The first 12 hex digits, for tables.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }

    fn valid(&self) -> bool {
        self.0.len() == 64 && self.0.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    }
}

/// What the store records about an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Size in bytes.
    pub size: u64,
    /// Kind of artifact (`kernel`, `initramfs`, `rootfs-tar`, `disk-ext4`, ...).
    pub kind: String,
    /// What built it (stage and Den version).
    pub built_by: String,
    /// The inputs it was built from (package versions, spec digests, ...).
    pub inputs: BTreeMap<String, String>,
    /// Seconds since the Unix epoch when it was stored.
    pub created: u64,
    /// Inode and mtime (ns) when last verified, to skip re-hashing large unchanged objects.
    pub verified_stat: (u64, i64),
}

/// A named image: the artifacts a spec produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Image name (from the spec).
    pub name: String,
    /// Digest of the spec text it was built from.
    pub spec_digest: Digest256,
    /// Artifact role (`kernel`, `initramfs`, `rootfs`, `vmlinux`, `qcow2`) to object.
    pub artifacts: BTreeMap<String, Digest256>,
    /// Kernel command line the image boots with.
    pub cmdline: String,
    /// Kernel release.
    pub kernel_release: String,
    /// Seconds since the Unix epoch when it was built.
    pub built: u64,
    /// The spec's `version` label (empty when it has none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

/// A cached build stage: its key and what it produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Outputs by role.
    pub outputs: BTreeMap<String, Digest256>,
    /// Extra facts the stage found (e.g. the kernel release).
    pub facts: BTreeMap<String, String>,
}

/// The store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io { path: path.to_path_buf(), source }
}

/// Hashes a whole file.
pub fn hash_file(path: &Path) -> Result<Digest256, ImageError> {
    let mut f = File::open(path).map_err(io_at(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_at(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Digest256(hex::encode(h.finalize())))
}

/// Hashes bytes.
pub fn hash_bytes(b: &[u8]) -> Digest256 {
    Digest256(hex::encode(Sha256::digest(b)))
}

fn fsync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync of the directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_at(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_at(dir))?;
    tmp.write_all(bytes).map_err(io_at(path))?;
    tmp.as_file().sync_all().map_err(io_at(path))?;
    tmp.persist(path).map_err(|e| ImageError::Io { path: path.to_path_buf(), source: e.error })?;
    fsync_dir(dir);
    Ok(())
}

impl Store {
    /// Opens (creating) a store and clears what a crashed build left in `tmp/`.
    pub fn open(root: &Path) -> Result<Store, ImageError> {
        for d in ["objects/sha256", "builds", "images"] {
            fs::create_dir_all(root.join(d)).map_err(io_at(root))?;
        }
        let tmp = root.join("tmp");
        if let Ok(rd) = fs::read_dir(&tmp) {
            // Work directories are named `<what>-<pid>-...`: remove those whose builder is gone.
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid = name.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
                let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
                if !alive {
                    let _ = remove_any(&e.path());
                }
            }
        }
        fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
        Ok(Store { root: root.to_path_buf() })
    }

    /// Store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh temporary directory inside the store (same file system, so renames are atomic).
    pub fn temp_dir(&self, what: &str) -> Result<WorkDir, ImageError> {
        let tmp = self.root.join("tmp");
        let prefix = format!("{what}-{}-", std::process::id());
        let dir = tempfile::Builder::new().prefix(&prefix).tempdir_in(&tmp).map_err(io_at(&tmp))?;
        Ok(WorkDir { path: dir.keep() })
    }

    /// Path of an object (whether or not it exists).
    pub fn object_path(&self, d: &Digest256) -> PathBuf {
        self.root.join("objects/sha256").join(&d.0)
    }

    fn meta_path(&self, d: &Digest256) -> PathBuf {
        self.root.join("objects/sha256").join(format!("{}.json", d.0))
    }

    /// Moves a finished file into the store under its digest, with metadata.
    pub fn insert_file(
        &self,
        file: &Path,
        kind: &str,
        built_by: &str,
        inputs: BTreeMap<String, String>,
    ) -> Result<Digest256, ImageError> {
        File::open(file).and_then(|f| f.sync_all()).map_err(io_at(file))?;
        let digest = hash_file(file)?;
        let dest = self.object_path(&digest);
        if !dest.exists() {
            fs::set_permissions(file, fs::Permissions::from_mode(0o444)).map_err(io_at(file))?;
            fs::rename(file, &dest).map_err(io_at(&dest))?;
            fsync_dir(dest.parent().unwrap_or(&self.root));
        }
        let st = fs::metadata(&dest).map_err(io_at(&dest))?;
        let meta = ObjectMeta {
            size: st.len(),
            kind: kind.into(),
            built_by: built_by.into(),
            inputs,
            created: now(),
            verified_stat: (st.ino(), st.mtime_nsec() + st.mtime() * 1_000_000_000),
        };
        self.write_json(&self.meta_path(&digest), &meta)?;
        Ok(digest)
    }

    /// Stores bytes.
    pub fn insert_bytes(
        &self,
        bytes: &[u8],
        kind: &str,
        built_by: &str,
        inputs: BTreeMap<String, String>,
    ) -> Result<Digest256, ImageError> {
        let dir = self.temp_dir("obj")?;
        let p = dir.path().join("data");
        fs::write(&p, bytes).map_err(io_at(&p))?;
        self.insert_file(&p, kind, built_by, inputs)
    }

    /// Metadata of an object.
    pub fn meta(&self, d: &Digest256) -> Result<ObjectMeta, ImageError> {
        self.read_json(&self.meta_path(d))?.ok_or_else(|| ImageError::MissingObject { digest: d.clone() })
    }

    /// Returns the path of a verified object: the digest is re-computed (see
    /// [`ALWAYS_VERIFY_BELOW`]); a mismatch is reported as [`ImageError::Corrupt`].
    pub fn get(&self, d: &Digest256, full: bool) -> Result<PathBuf, ImageError> {
        if !d.valid() {
            return Err(ImageError::MissingObject { digest: d.clone() });
        }
        let path = self.object_path(d);
        let st = fs::metadata(&path).map_err(|_| ImageError::MissingObject { digest: d.clone() })?;
        let mut meta = self.meta(d)?;
        let stat = (st.ino(), st.mtime_nsec() + st.mtime() * 1_000_000_000);
        let must_hash = full || st.len() < ALWAYS_VERIFY_BELOW || st.len() != meta.size || stat != meta.verified_stat;
        if must_hash {
            let actual = hash_file(&path)?;
            if &actual != d {
                return Err(ImageError::Corrupt { digest: d.clone(), actual, path });
            }
            if stat != meta.verified_stat {
                meta.verified_stat = stat;
                self.write_json(&self.meta_path(d), &meta)?;
            }
        }
        Ok(path)
    }

    /// Removes an object (used when it is found corrupt, and by gc).
    pub fn remove_object(&self, d: &Digest256) -> Result<(), ImageError> {
        for p in [self.object_path(d), self.meta_path(d)] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(&p)(e)),
            }
        }
        Ok(())
    }

    /// Looks up a cached build stage.
    pub fn stage(&self, key: &Digest256) -> Result<Option<StageRecord>, ImageError> {
        self.read_json(&self.root.join("builds").join(format!("{}.json", key.0)))
    }

    /// Records a build stage.
    pub fn put_stage(&self, key: &Digest256, rec: &StageRecord) -> Result<(), ImageError> {
        self.write_json(&self.root.join("builds").join(format!("{}.json", key.0)), rec)
    }

    /// Forgets a build stage (its outputs were found missing or corrupt).
    pub fn drop_stage(&self, key: &Digest256) {
        let _ = fs::remove_file(self.root.join("builds").join(format!("{}.json", key.0)));
    }

    /// The image a name points at.
    pub fn image(&self, name: &str) -> Result<Option<ImageRecord>, ImageError> {
        self.read_json(&self.image_path(name)?)
    }

    /// Points a name at an image.
    pub fn put_image(&self, rec: &ImageRecord) -> Result<(), ImageError> {
        self.write_json(&self.image_path(&rec.name)?, rec)
    }

    /// Removes a name; returns whether it existed. Objects stay until [`Store::gc`].
    pub fn remove_image(&self, name: &str) -> Result<bool, ImageError> {
        let p = self.image_path(name)?;
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_at(&p)(e)),
        }
    }

    fn image_path(&self, name: &str) -> Result<PathBuf, ImageError> {
        crate::spec::check_name(name)?;
        Ok(self.root.join("images").join(format!("{name}.json")))
    }

    /// All named images, sorted by name.
    pub fn images(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let dir = self.root.join("images");
        let mut out = vec![];
        for e in fs::read_dir(&dir).map_err(io_at(&dir))?.flatten() {
            if e.path().extension().is_some_and(|x| x == "json") {
                if let Some(r) = self.read_json::<ImageRecord>(&e.path())? {
                    out.push(r);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes objects no image refers to, and the stage records that point at them.
    /// Returns the number of objects and bytes freed.
    pub fn gc(&self) -> Result<(usize, u64), ImageError> {
        let live: BTreeSet<Digest256> = self.images()?.into_iter().flat_map(|i| i.artifacts.into_values()).collect();
        // Stage records whose outputs are all live are kept, so that a rebuild stays a cache hit.
        let builds = self.root.join("builds");
        let mut keep = live.clone();
        for e in fs::read_dir(&builds).map_err(io_at(&builds))?.flatten() {
            let rec: Option<StageRecord> = self.read_json(&e.path())?;
            let Some(rec) = rec else { continue };
            if rec.outputs.values().all(|d| live.contains(d)) {
                keep.extend(rec.outputs.into_values());
            } else {
                let _ = fs::remove_file(e.path());
            }
        }
        let objects = self.root.join("objects/sha256");
        let (mut n, mut bytes) = (0, 0);
        for e in fs::read_dir(&objects).map_err(io_at(&objects))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") {
                continue;
            }
            let d = Digest256(name);
            if !keep.contains(&d) {
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                self.remove_object(&d)?;
                n += 1;
            }
        }
        Ok((n, bytes))
    }

    fn read_json<T: DeserializeOwned>(&self, path: &Path) -> Result<Option<T>, ImageError> {
        match fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| ImageError::BadRecord { path: path.to_path_buf(), reason: e.to_string() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(path)(e)),
        }
    }

    fn write_json<T: Serialize>(&self, path: &Path, v: &T) -> Result<(), ImageError> {
        let body = serde_json::to_vec_pretty(v)
            .map_err(|e| ImageError::BadRecord { path: path.to_path_buf(), reason: e.to_string() })?;
        write_atomic(path, &body)
    }
}

/// Removes a file or a directory tree, however deep, never following a link in it (work
/// trees hold what an image's layers made).
pub fn remove_any(p: &Path) -> io::Result<()> {
    Ok(den_guest_tree::remove_tree(p)?)
}

/// A temporary work directory in the store, removed (like [`remove_any`]) when dropped.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = remove_any(&self.path) {
            tracing::warn!(dir = %self.path.display(), %e, "cannot remove a work directory");
        }
    }
}

/// Parses `sha256:<hex>` or `<hex>`.
pub fn parse_digest(s: &str) -> Option<Digest256> {
    let d = Digest256(s.strip_prefix("sha256:").unwrap_or(s).to_string());
    d.valid().then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_detects_corruption_and_gc_frees() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = store.insert_bytes(b"kernel bytes", "kernel", "test", BTreeMap::new()).unwrap();
        assert_eq!(d, hash_bytes(b"kernel bytes"));
        let p = store.get(&d, false).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"kernel bytes");
        assert_eq!(store.meta(&d).unwrap().kind, "kernel");

        // Flip the content behind the store's back.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&p, b"kernel bytez").unwrap();
        match store.get(&d, false) {
            Err(ImageError::Corrupt { digest, .. }) => assert_eq!(digest, d),
            other => panic!("expected corruption, got {other:?}"),
        }

        let keep = store.insert_bytes(b"initramfs", "initramfs", "test", BTreeMap::new()).unwrap();
        let rec = ImageRecord {
            name: "base".into(),
            spec_digest: hash_bytes(b"spec"),
            artifacts: [("initramfs".to_string(), keep.clone())].into(),
            cmdline: String::new(),
            kernel_release: String::new(),
            built: now(),
            version: String::new(),
        };
        store.put_image(&rec).unwrap();
        assert_eq!(store.images().unwrap(), vec![rec]);
        let (n, _) = store.gc().unwrap();
        assert_eq!(n, 1);
        assert!(store.get(&keep, true).is_ok());
        assert!(matches!(store.get(&d, false), Err(ImageError::MissingObject { .. })));
        assert!(store.remove_image("base").unwrap());
        assert_eq!(store.gc().unwrap().0, 1);
    }

    #[test]
    fn open_clears_work_of_dead_builders_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let live = store.temp_dir("rootfs").unwrap();
        let dead = dir.path().join("tmp/disk-4294967295-abc");
        fs::create_dir_all(&dead).unwrap();
        Store::open(dir.path()).unwrap();
        assert!(live.path().exists(), "a running build keeps its work directory");
        assert!(!dead.exists(), "a crashed build's leftovers are removed");
    }

    #[test]
    fn digests_parse_strictly() {
        let h = hash_bytes(b"x");
        assert_eq!(parse_digest(&format!("sha256:{}", h.0)), Some(h.clone()));
        assert_eq!(parse_digest(&h.0), Some(h));
        assert_eq!(parse_digest("sha256:xyz"), None);
        assert_eq!(parse_digest("../../etc/passwd"), None);
    }
}
