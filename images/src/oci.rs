//! OCI image layout (LPK `images/`, `docker save` output) to a root tree and an ext4 disk:
//! layers applied in order, with whiteouts (`.wh.<name>`) and opaque directories
//! (`.wh..wh..opq`). Image bytes are hostile, and so is the layout itself (a package author's,
//! or whoever made the folder `den image import-oci` reads): both are reached only through
//! [`GuestTree`]s. The layout's blobs are read beneath it (links that stay inside it followed,
//! sizes bounded, digests checked); the root is built beneath its descriptor, where a layer's
//! links are followed only while they stay inside the root and an entry's own name is never
//! written through, so no layer can put or remove anything outside the root.

use crate::ImageError;
use den_guest_tree::{GuestTree, Links, Node, TreeError};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::Read;
use std::path::{Component, Path};

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
/// Largest JSON file of a layout read into memory (index, manifest, image config).
const MAX_JSON: u64 = 4 << 20;
/// Most bytes all layers of one image may unpack to.
pub const MAX_UNPACKED: u64 = 64 << 30;
/// Most entries a directory may hold for an opaque whiteout to be applied.
const MAX_DIR_ENTRIES: usize = 1 << 20;
/// Most entries all layers of one image may hold together (each is an inode on the host while
/// the image is made).
pub const MAX_ENTRIES: u64 = 1 << 21;
/// Extended attributes a layer may set: file capabilities and the user namespace. Others
/// (`trusted.*`, `security.selinux`, ...) would mean something to the host.
fn xattr_allowed(name: &str) -> bool {
    name == "security.capability" || name.starts_with("user.")
}

fn bad(layout: &Path, reason: impl Into<String>) -> ImageError {
    ImageError::Oci { path: layout.to_path_buf(), reason: reason.into() }
}

/// A layout's folder, read beneath its descriptor.
fn open_layout(layout: &Path) -> Result<GuestTree, ImageError> {
    GuestTree::open(layout, Links::Inside).map_err(|e| bad(layout, e.to_string()))
}

/// Where a blob is in the layout, refusing digests that are not `sha256:<64 hex>`.
fn blob_name(layout: &Path, digest: &str) -> Result<String, ImageError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| bad(layout, format!("unsupported or malformed digest `{digest}`")))?;
    Ok(format!("blobs/sha256/{hex}"))
}

/// Reads a small (JSON) blob and checks its digest.
fn read_blob(layout: &Path, digest: &str) -> Result<Vec<u8>, ImageError> {
    let data =
        open_layout(layout)?.read(&blob_name(layout, digest)?, MAX_JSON).map_err(|e| bad(layout, e.to_string()))?;
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
    if actual != digest {
        return Err(bad(layout, format!("blob {digest} is corrupt (hashes to {actual})")));
    }
    Ok(data)
}

/// Hashes what is read through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Refuses to read past a budget shared by all layers.
struct Budget<'a, R> {
    inner: R,
    left: &'a mut u64,
}

impl<R: Read> Read for Budget<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        *self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            std::io::Error::other(format!("the image unpacks to more than {} GiB", MAX_UNPACKED >> 30))
        })?;
        Ok(n)
    }
}

fn json<T: serde::de::DeserializeOwned>(layout: &Path, what: &str, b: &[u8]) -> Result<T, ImageError> {
    serde_json::from_slice(b).map_err(|e| bad(layout, format!("{what}: {e}")))
}

/// Picks the linux/amd64 manifest (following nested indexes), or the only one.
fn manifest(layout: &Path, reference: Option<&str>) -> Result<Manifest, ImageError> {
    let idx_bytes = open_layout(layout)?.read("index.json", MAX_JSON).map_err(|e| bad(layout, e.to_string()))?;
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
fn clean(path: &Path) -> Option<String> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_str()?.to_string()),
            Component::CurDir | Component::RootDir => {}
            _ => return None,
        }
    }
    Some(out.join("/"))
}

/// `dir/name`, or `name` at the top.
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Removes `rel` if it is there. A path through a link that leaves the root names nothing in
/// it: there is nothing to remove.
fn remove_if_there(tree: &GuestTree, rel: &str) -> Result<(), TreeError> {
    match tree.remove_all(rel) {
        Err(e) if e.is_not_found() || e.is_refusal() => Ok(()),
        other => other,
    }
}

/// Applies one layer (a tar stream) onto `root`, an image root that only this process writes.
pub fn apply_layer<R: Read>(root: &Path, layer: R) -> Result<(), ImageError> {
    let tree = GuestTree::open(root, Links::InRoot).map_err(|e| ImageError::io(root, e.into()))?;
    apply_layer_in(&tree, layer, MAX_ENTRIES)
}

/// Applies one layer of at most `max_entries` entries.
fn apply_layer_in<R: Read>(tree: &GuestTree, layer: R, max_entries: u64) -> Result<(), ImageError> {
    let root = Path::new(tree.label());
    let mut ar = tar::Archive::new(den_guest_tree::tar_headers::HeaderGuard::new(layer, max_entries));
    let mut created: HashSet<String> = HashSet::new();
    let err = |e: std::io::Error| ImageError::io(root, e);
    let refused =
        |what: &str, e: TreeError| ImageError::io(root, std::io::Error::other(format!("layer entry `{what}`: {e}")));
    for entry in ar.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        let raw = entry.path().map_err(err)?.into_owned();
        let Some(rel) = clean(&raw).filter(|r| !r.is_empty()) else {
            return Err(ImageError::io(
                root,
                std::io::Error::other(format!("layer entry `{}` escapes the root or is not UTF-8", raw.display())),
            ));
        };
        let shown = rel.clone();
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
        if name == OPAQUE {
            let children = match tree.entries(dir, MAX_DIR_ENTRIES) {
                Ok(c) => c,
                Err(e) if e.is_not_found() || e.is_refusal() => continue,
                Err(e) => return Err(refused(&shown, e)),
            };
            for c in children {
                let child = join(dir, &c.name);
                if !created.contains(&child) {
                    remove_if_there(tree, &child).map_err(|e| refused(&shown, e))?;
                }
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(refused(
                    &shown,
                    TreeError::BadPath { path: shown.clone(), reason: "whites out nothing".into() },
                ));
            }
            remove_if_there(tree, &join(dir, hidden)).map_err(|e| refused(&shown, e))?;
            continue;
        }
        write_entry(tree, &mut entry, dir, &rel).map_err(|e| refused(&shown, e))?;
        created.insert(rel);
    }
    Ok(())
}

/// Makes one layer entry at `rel` (in `dir`), replacing what was there.
fn write_entry<R: Read>(tree: &GuestTree, entry: &mut tar::Entry<R>, dir: &str, rel: &str) -> Result<(), TreeError> {
    use tar::EntryType as T;
    let io = |e: std::io::Error| TreeError::Io { tree: tree.label().to_string(), path: rel.to_string(), source: e };
    if !dir.is_empty() {
        tree.mkdir_all(dir, 0o755)?;
    }
    let h = entry.header().clone();
    let kind = h.entry_type();
    let mode = h.mode().unwrap_or(0o644) & 0o7777;
    let (uid, gid) = (h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32);
    let link =
        || {
            entry.link_name().ok().flatten().map(|l| l.to_string_lossy().into_owned()).ok_or_else(|| {
                TreeError::BadPath { path: rel.to_string(), reason: "is a link without a target".into() }
            })
        };
    if kind == T::Directory {
        match tree.metadata(rel) {
            Ok(m) if m.kind == den_guest_tree::Kind::Dir => {}
            Ok(_) => {
                tree.remove_all(rel)?;
                tree.mkdir(rel, 0o755)?;
            }
            Err(e) if e.is_not_found() => tree.mkdir(rel, 0o755)?,
            Err(e) => return Err(e),
        }
    } else {
        remove_if_there(tree, rel)?;
        match kind {
            T::Regular | T::Continuous => {
                let mut f = tree.create_file(rel, 0o600)?;
                std::io::copy(entry, &mut f).map_err(io)?;
            }
            T::Symlink => tree.symlink(rel, &link()?)?,
            T::Link => {
                let target = clean(Path::new(&link()?)).filter(|t| !t.is_empty()).ok_or_else(|| {
                    TreeError::BadPath { path: rel.to_string(), reason: "is a hard link out of the root".into() }
                })?;
                tree.hard_link(&target, rel)?;
                return Ok(());
            }
            T::Fifo => tree.mknod(rel, Node::Fifo, mode)?,
            T::Char | T::Block => {
                let (ma, mi) =
                    (h.device_major().ok().flatten().unwrap_or(0), h.device_minor().ok().flatten().unwrap_or(0));
                let node =
                    if kind == T::Char { Node::Char(ma.into(), mi.into()) } else { Node::Block(ma.into(), mi.into()) };
                tree.mknod(rel, node, mode)?;
            }
            // Pax and GNU extension headers are read by the tar crate itself; nothing else is a file.
            _ => return Ok(()),
        }
    }
    tree.set_owner(rel, uid, gid)?;
    if kind != T::Symlink {
        if matches!(kind, T::Regular | T::Continuous | T::Directory) {
            // After the owner: chown clears setuid bits.
            tree.set_mode(rel, mode)?;
            for (name, value) in xattrs(entry) {
                tree.set_xattr(rel, &name, &value)?;
            }
        }
        if let Ok(mtime) = h.mtime() {
            tree.set_mtime(rel, mtime as i64)?;
        }
    }
    Ok(())
}

/// The extended attributes a pax header carries (`SCHILY.xattr.<name>`).
fn xattrs<R: Read>(entry: &mut tar::Entry<R>) -> Vec<(String, Vec<u8>)> {
    let Ok(Some(exts)) = entry.pax_extensions() else { return vec![] };
    exts.flatten()
        .filter_map(|e| Some((e.key().ok()?.strip_prefix("SCHILY.xattr.")?.to_string(), e.value_bytes().to_vec())))
        .filter(|(name, _)| xattr_allowed(name))
        .collect()
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
    let tree = GuestTree::open(root, Links::InRoot).map_err(|e| ImageError::io(root, e.into()))?;
    let blobs = open_layout(layout)?;
    let mut left = MAX_UNPACKED;
    // Each layer gets an equal share of the image's entry budget.
    let entries = MAX_ENTRIES / (m.layers.len().max(1) as u64);
    for l in &m.layers {
        if l.media_type.ends_with("zstd") {
            return Err(bad(
                layout,
                format!("layer {} is zstd-compressed, which Den does not read yet; re-export with gzip", l.digest),
            ));
        }
        // Streamed: hashed as it is applied, and the whole root is thrown away if the digest
        // does not match at the end. A layer that fails to apply is checked against its digest
        // first, so that a corrupt blob is named as such.
        let name = blob_name(layout, &l.digest)?;
        let applied = apply_blob(&blobs, &name, l, &tree, &mut left, entries);
        let actual = match &applied {
            Ok(actual) => actual.clone(),
            Err(_) => blob_digest(&blobs, &name).map_err(|e| bad(layout, format!("layer {}: {e}", l.digest)))?,
        };
        if actual != l.digest {
            return Err(bad(layout, format!("blob {} is corrupt (hashes to {actual})", l.digest)));
        }
        applied?;
    }
    Ok(cfg.config.unwrap_or_default())
}

/// Applies the layer blob `name` onto `tree`; returns the blob's digest.
fn apply_blob(
    blobs: &GuestTree,
    name: &str,
    l: &Descriptor,
    tree: &GuestTree,
    left: &mut u64,
    entries: u64,
) -> Result<String, ImageError> {
    let layout = Path::new(blobs.label());
    let fail = |e: std::io::Error| bad(layout, format!("layer {}: {e}", l.digest));
    let file = blobs.open_file(name).map_err(|e| bad(layout, e.to_string()))?;
    let mut hashed = Hashing { inner: std::io::BufReader::new(file), hash: Sha256::new() };
    let mut head = [0u8; 2];
    let got = hashed.read(&mut head).map_err(fail)?;
    let chained = std::io::Cursor::new(head[..got].to_vec()).chain(&mut hashed);
    let gz = l.media_type.ends_with("gzip") || head[..got] == [0x1f, 0x8b];
    let body: Box<dyn Read + '_> = if gz { Box::new(flate2::read::GzDecoder::new(chained)) } else { Box::new(chained) };
    let mut budget = Budget { inner: body, left };
    apply_layer_in(tree, &mut budget, entries)?;
    std::io::copy(&mut budget, &mut std::io::sink()).map_err(fail)?;
    drop(budget);
    std::io::copy(&mut hashed, &mut std::io::sink()).map_err(fail)?;
    Ok(format!("sha256:{}", hex::encode(hashed.hash.finalize_reset())))
}

/// The digest of the blob `name`, streamed.
fn blob_digest(blobs: &GuestTree, name: &str) -> std::io::Result<String> {
    let mut hashed = Hashing { inner: blobs.open_file(name)?, hash: Sha256::new() };
    std::io::copy(&mut hashed, &mut std::io::sink())?;
    Ok(format!("sha256:{}", hex::encode(hashed.hash.finalize_reset())))
}

/// OCI layout to an ext4 disk at `out` (size `auto` or explicit); the run configuration is kept
/// in the disk at `/etc/den/oci-config.json` (written beneath the root: a layer's link there,
/// or on `etc` or `etc/den` out of the root, is never written through).
pub fn to_ext4(
    layout: &Path,
    reference: Option<&str>,
    work: &Path,
    size: Option<u64>,
    out: &Path,
) -> Result<RunConfig, ImageError> {
    let root = work.join("oci-root");
    let cfg = unpack(layout, reference, &root)?;
    let tree = GuestTree::open(&root, Links::InRoot).map_err(|e| ImageError::io(&root, e.into()))?;
    let body = serde_json::to_vec_pretty(&cfg).unwrap_or_default();
    tree.mkdir_all("etc/den", 0o755)
        .and_then(|_| tree.replace("etc/den/oci-config.json", &body, 0o644))
        .map_err(|e| ImageError::io(&root, e.into()))?;
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
        assert!(apply_layer(dir.path(), &layer(&[(".wh...", Some(b""))])[..]).is_err(), "`..` whited out");
        assert!(dir.path().exists());
    }

    #[test]
    fn the_run_config_is_never_written_through_a_layer_link() {
        // A layer makes /etc/den/oci-config.json a link to a host file: the config replaces the
        // link inside the image, and the host file is untouched.
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let root = dir.path().join("oci-root");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir_all(root.join("etc/den")).unwrap();
        std::os::unix::fs::symlink(&victim, root.join("etc/den/oci-config.json")).unwrap();
        let tree = GuestTree::open(&root, Links::InRoot).unwrap();
        tree.replace("etc/den/oci-config.json", b"{}", 0o644).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        // And a layer whose etc/ is an absolute link cannot take the config out of the root:
        // the link means the same place inside the image, as in a container (where it leads
        // nowhere, the image is refused).
        std::fs::remove_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("etc")).unwrap();
        assert!(tree.mkdir_all("etc/den", 0o755).is_err());
        std::fs::create_dir_all(root.join(dir.path().strip_prefix("/").unwrap())).unwrap();
        tree.mkdir_all("etc/den", 0o755).unwrap();
        assert!(!dir.path().join("den").exists());
        assert!(root.join(dir.path().strip_prefix("/").unwrap()).join("den").is_dir());
    }

    #[test]
    fn links_owners_modes_and_devices_are_kept_inside() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, kind: tar::EntryType, mode: u32, link: Option<&str>, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(1000);
            h.set_gid(1000);
            h.set_mtime(1_000_000);
            h.set_size(data.len() as u64);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            h.set_path(path).unwrap();
            h.set_cksum();
            b.append(&h, data).unwrap();
        };
        add("usr/lib/", tar::EntryType::Directory, 0o755, None, b"");
        add("lib", tar::EntryType::Symlink, 0o777, Some("usr/lib"), b"");
        add("run/", tar::EntryType::Directory, 0o755, None, b"");
        add("var/run", tar::EntryType::Symlink, 0o777, Some("/run"), b"");
        add("var/run/x", tar::EntryType::Regular, 0o644, None, b"in the image's /run");
        add("lib/libx.so", tar::EntryType::Regular, 0o4755, None, b"elf");
        add("lib/hard", tar::EntryType::Link, 0o644, Some("usr/lib/libx.so"), b"");
        add("dev/fifo", tar::EntryType::Fifo, 0o600, None, b"");
        apply_layer(dir.path(), &b.into_inner().unwrap()[..]).unwrap();
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let m = std::fs::metadata(dir.path().join("usr/lib/libx.so")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.nlink(), m.mtime()), (0o4755, 1000, 2, 1_000_000));
        assert!(std::fs::symlink_metadata(dir.path().join("lib")).unwrap().file_type().is_symlink());
        assert!(std::fs::symlink_metadata(dir.path().join("dev/fifo")).unwrap().file_type().is_fifo());
        assert_eq!(
            std::fs::read(dir.path().join("run/x")).unwrap(),
            b"in the image's /run",
            "absolute links stay in the image"
        );
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
