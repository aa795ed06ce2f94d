//! OCI image layout (LPK `images/`, `docker save` output) to a root tree and an ext4 disk:
//! layers applied in order, with whiteouts (`.wh.<name>`) and opaque directories
//! (`.wh..wh..opq`). Every path is checked to stay inside the tree: image bytes are hostile.

use crate::ImageError;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// What the image says about how to run it (the `config` of the image config blob).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct RunConfig {
    /// Environment, `KEY=value`.
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    /// Entrypoint.
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    /// Command.
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    /// Working directory.
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    /// User.
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

#[derive(Deserialize)]
struct ImageConfig {
    #[serde(default)]
    config: Option<RunConfig>,
}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

fn bad(layout: &Path, reason: impl Into<String>) -> ImageError {
    ImageError::Oci { path: layout.to_path_buf(), reason: reason.into() }
}

/// Path of a blob, refusing digests that are not `sha256:<64 hex>`.
fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf, ImageError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| bad(layout, format!("unsupported or malformed digest `{digest}`")))?;
    Ok(layout.join("blobs/sha256").join(hex))
}

/// Reads a blob and checks its digest.
fn read_blob(layout: &Path, digest: &str) -> Result<Vec<u8>, ImageError> {
    let p = blob_path(layout, digest)?;
    let data = std::fs::read(&p).map_err(|e| bad(layout, format!("blob {digest}: {e}")))?;
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
    if actual != digest {
        return Err(bad(layout, format!("blob {digest} is corrupt (hashes to {actual})")));
    }
    Ok(data)
}

fn json<T: serde::de::DeserializeOwned>(layout: &Path, what: &str, b: &[u8]) -> Result<T, ImageError> {
    serde_json::from_slice(b).map_err(|e| bad(layout, format!("{what}: {e}")))
}

/// Picks the linux/amd64 manifest (following nested indexes), or the only one.
fn manifest(layout: &Path, reference: Option<&str>) -> Result<Manifest, ImageError> {
    let idx_bytes = std::fs::read(layout.join("index.json")).map_err(|e| bad(layout, format!("index.json: {e}")))?;
    let mut index: Index = json(layout, "index.json", &idx_bytes)?;
    for _ in 0..4 {
        let pick = match reference {
            Some(r) => index
                .manifests
                .iter()
                .position(|m| m.digest == r || m.digest.trim_start_matches("sha256:").starts_with(r)),
            None => None,
        }
        .or_else(|| {
            index
                .manifests
                .iter()
                .position(|m| m.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == "amd64"))
        })
        .or_else(|| (index.manifests.len() == 1).then_some(0))
        .or_else(|| (!index.manifests.is_empty()).then_some(0))
        .ok_or_else(|| bad(layout, "index.json lists no manifests"))?;
        let d = &index.manifests[pick];
        let body = read_blob(layout, &d.digest)?;
        if d.media_type.contains("index") || d.media_type.contains("manifest.list") {
            index = json(layout, "nested index", &body)?;
            continue;
        }
        return json(layout, "manifest", &body);
    }
    Err(bad(layout, "indexes nested too deeply"))
}

/// Normalises an entry path to relative components, refusing `..` and other escapes.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// `root.join(rel)` only if no existing component of the parent is a symlink that leaves `root`.
fn inside(root: &Path, rel: &Path) -> Option<PathBuf> {
    let target = root.join(rel);
    let parent = target.parent()?;
    let real_root = root.canonicalize().ok()?;
    let mut probe = parent.to_path_buf();
    while !probe.exists() {
        probe = probe.parent()?.to_path_buf();
    }
    probe.canonicalize().ok()?.starts_with(&real_root).then_some(target)
}

fn remove_path(p: &Path) {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => drop(std::fs::remove_dir_all(p)),
        Ok(_) => drop(std::fs::remove_file(p)),
        Err(_) => {}
    }
}

/// Applies one layer (a tar stream) onto `root`.
pub fn apply_layer<R: Read>(root: &Path, layer: R) -> Result<(), ImageError> {
    let mut ar = tar::Archive::new(layer);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_unpack_xattrs(true);
    ar.set_overwrite(true);
    let mut created: HashSet<PathBuf> = HashSet::new();
    let err = |e: std::io::Error| ImageError::io(root, e);
    for entry in ar.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        let raw = entry.path().map_err(err)?.into_owned();
        let Some(rel) = clean(&raw) else {
            return Err(ImageError::io(
                root,
                std::io::Error::other(format!("layer entry `{}` escapes the root", raw.display())),
            ));
        };
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        let dir = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        if name == OPAQUE {
            let Some(d) = inside(root, &dir.join("x")).and_then(|p| p.parent().map(Path::to_path_buf)) else {
                continue;
            };
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    let child = dir.join(e.file_name());
                    if !created.contains(&child) {
                        remove_path(&e.path());
                    }
                }
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            if let Some(p) = inside(root, &dir.join(hidden)) {
                remove_path(&p);
            }
            continue;
        }
        let Some(dest) = inside(root, &rel) else {
            return Err(ImageError::io(
                root,
                std::io::Error::other(format!(
                    "layer entry `{}` goes through a symlink out of the root",
                    raw.display()
                )),
            ));
        };
        // A directory replaces a non-directory and the other way round.
        if let Ok(m) = std::fs::symlink_metadata(&dest) {
            if m.is_dir() != entry.header().entry_type().is_dir() {
                remove_path(&dest);
            }
        }
        entry.unpack_in(root).map_err(err)?;
        created.insert(rel);
    }
    Ok(())
}

/// The run configuration of an image in an OCI layout, without unpacking it.
pub fn run_config(layout: &Path, reference: Option<&str>) -> Result<RunConfig, ImageError> {
    let m = manifest(layout, reference)?;
    let cfg: ImageConfig = json(layout, "image config", &read_blob(layout, &m.config.digest)?)?;
    Ok(cfg.config.unwrap_or_default())
}

/// Unpacks the image in an OCI layout into `root`; returns its run configuration.
pub fn unpack(layout: &Path, reference: Option<&str>, root: &Path) -> Result<RunConfig, ImageError> {
    let m = manifest(layout, reference)?;
    let cfg: ImageConfig = json(layout, "image config", &read_blob(layout, &m.config.digest)?)?;
    std::fs::create_dir_all(root).map_err(|e| ImageError::io(root, e))?;
    for l in &m.layers {
        let data = read_blob(layout, &l.digest)?;
        let gz = l.media_type.ends_with("gzip") || data.starts_with(&[0x1f, 0x8b]);
        if l.media_type.ends_with("zstd") {
            return Err(bad(
                layout,
                format!("layer {} is zstd-compressed, which Den does not read yet; re-export with gzip", l.digest),
            ));
        }
        if gz {
            apply_layer(root, flate2::read::GzDecoder::new(&data[..]))?;
        } else {
            apply_layer(root, &data[..])?;
        }
    }
    Ok(cfg.config.unwrap_or_default())
}

/// OCI layout to an ext4 disk at `out` (size `auto` or explicit); the run configuration is kept
/// in the disk at `/etc/den/oci-config.json`.
pub fn to_ext4(
    layout: &Path,
    reference: Option<&str>,
    work: &Path,
    size: Option<u64>,
    out: &Path,
) -> Result<RunConfig, ImageError> {
    let root = work.join("oci-root");
    let cfg = unpack(layout, reference, &root)?;
    let meta = root.join("etc/den");
    std::fs::create_dir_all(&meta).map_err(|e| ImageError::io(&meta, e))?;
    let body = serde_json::to_vec_pretty(&cfg).unwrap_or_default();
    std::fs::write(meta.join("oci-config.json"), body).map_err(|e| ImageError::io(&meta, e))?;
    let used = crate::rootfs::tree_size(&root);
    let size = size.unwrap_or(((used + used / 4 + (64 << 20)).div_ceil(1 << 20)) << 20);
    crate::rootfs::ext4_from_dir(&root, out, size, "den-oci")?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match data {
                Some(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, path, *d).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_and_opaque_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        apply_layer(
            root,
            &layer(&[
                ("etc/", None),
                ("etc/a", Some(b"1")),
                ("etc/b", Some(b"2")),
                ("opt/", None),
                ("opt/old", Some(b"x")),
            ])[..],
        )
        .unwrap();
        apply_layer(
            root,
            &layer(&[
                ("etc/.wh.a", Some(b"")),
                ("opt/", None),
                ("opt/new", Some(b"y")),
                ("opt/.wh..wh..opq", Some(b"")),
            ])[..],
        )
        .unwrap();
        assert!(!root.join("etc/a").exists());
        assert_eq!(std::fs::read(root.join("etc/b")).unwrap(), b"2");
        assert!(!root.join("opt/old").exists(), "opaque dir hides lower layers");
        assert_eq!(std::fs::read(root.join("opt/new")).unwrap(), b"y", "but keeps its own layer's files");
    }

    #[test]
    fn escapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("victim"), b"keep").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        // A whiteout through a symlink must not delete outside the root.
        apply_layer(dir.path(), &layer(&[("link/.wh.victim", Some(b""))])[..]).unwrap();
        assert!(outside.path().join("victim").exists());
        assert!(apply_layer(dir.path(), &layer(&[("link/evil", Some(b"x"))])[..]).is_err());
        assert!(!outside.path().join("evil").exists());
    }

    #[test]
    fn malformed_layouts_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let e = unpack(dir.path(), None, &dir.path().join("r")).unwrap_err().to_string();
        assert!(e.contains("index.json"), "{e}");
        std::fs::write(dir.path().join("index.json"), r#"{"manifests":[{"digest":"sha256:../../x"}]}"#).unwrap();
        let e = unpack(dir.path(), None, &dir.path().join("r")).unwrap_err().to_string();
        assert!(e.contains("malformed digest"), "{e}");
    }
}
