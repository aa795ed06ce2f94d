//! Writing packages: v1 ZIP or v2 tar from a list of entries, optionally signed, with helpers
//! for `content.tar` and an embedded OCI image. Used by `den app pack` and by the tests, which
//! also need to write hostile entries (odd names, links out, FIFOs) byte for byte.

use crate::signature::LockEntry;
use base64::Engine;
use flate2::{write::GzEncoder, Compression};
use sha2::{Digest, Sha256};
use std::io::{self, Write};
use std::path::Path;

/// One entry to write; names are written exactly as given.
#[derive(Debug, Clone)]
pub enum Item {
    /// A file.
    File {
        /// Name.
        name: String,
        /// Bytes.
        data: Vec<u8>,
        /// Mode.
        mode: u32,
    },
    /// A directory.
    Dir(String),
    /// A symlink (name, target).
    Symlink(String, String),
    /// A hard link (name, target).
    Hardlink(String, String),
    /// A FIFO (only to test that packages with one are refused).
    Fifo(String),
}

/// Builds a package.
#[derive(Debug, Clone, Default)]
pub struct Packer {
    /// Entries in order.
    pub items: Vec<Item>,
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

impl Packer {
    /// An empty package.
    pub fn new() -> Packer {
        Packer::default()
    }

    /// Adds a file with mode 0644.
    pub fn file(&mut self, name: &str, data: impl Into<Vec<u8>>) -> &mut Packer {
        self.items.push(Item::File { name: name.into(), data: data.into(), mode: 0o644 });
        self
    }

    /// Adds any entry.
    pub fn item(&mut self, item: Item) -> &mut Packer {
        self.items.push(item);
        self
    }

    /// Adds `content.tar` holding `items`.
    pub fn content(&mut self, items: &[Item]) -> io::Result<&mut Packer> {
        let tar = tar_bytes(items)?;
        Ok(self.file("content.tar", tar))
    }

    /// Embeds an image made of one layer (`rootfs`, a tar) and an image `config`, under `alias`:
    /// writes `images/` (an OCI layout) and `images.lock`.
    pub fn image(&mut self, alias: &str, rootfs: &[u8], config: &serde_json::Value) -> io::Result<&mut Packer> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(rootfs)?;
        let layer = gz.finish()?;
        let diff_id = digest(rootfs);
        let cfg = serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        });
        let cfg = serde_json::to_vec(&cfg).map_err(io::Error::other)?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&cfg), "size": cfg.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(&layer), "size": layer.len()}],
        });
        let manifest = serde_json::to_vec(&manifest).map_err(io::Error::other)?;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest(&manifest), "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": alias},
                "platform": {"architecture": "amd64", "os": "linux"},
            }],
        });
        self.file("images/oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#);
        self.file("images/index.json", serde_json::to_vec(&index).map_err(io::Error::other)?);
        for blob in [&layer, &cfg, &manifest] {
            let name = format!("images/blobs/sha256/{}", &digest(blob)[7..]);
            self.file(&name, blob.clone());
        }
        let lock = format!("{alias}:\n  image_id: {}\n  upstream: den/{alias}\n", digest(&manifest));
        Ok(self.file("images.lock", lock))
    }

    /// Signs: adds `META/release.lock` over every entry outside the lock and the signatures
    /// (files with digest, size and mode; directories; links with their targets) and
    /// `META/signatures/<key>.sig` made with the ed25519 `secret`.
    pub fn sign(&mut self, key: &str, secret: &[u8; 32]) -> &mut Packer {
        use crate::signature::{unsigned_entry, EntryDigest, FileDigest};
        use ed25519_dalek::Signer;
        let clean = |name: &str| crate::paths::clean(name.as_bytes()).unwrap_or_else(|_| name.to_string());
        let lock: Vec<LockEntry> = self
            .items
            .iter()
            .filter_map(|i| {
                let (name, entry) = match i {
                    Item::File { name, data, mode } => {
                        let content = FileDigest { digest: digest(data), size: data.len() as u64 };
                        (name, EntryDigest::File { content, mode: *mode })
                    }
                    Item::Dir(name) => (name, EntryDigest::Dir),
                    Item::Symlink(name, target) => (name, EntryDigest::Symlink { target: target.clone() }),
                    Item::Hardlink(name, target) => (name, EntryDigest::Hardlink { target: clean(target) }),
                    Item::Fifo(_) => return None,
                };
                let name = clean(name);
                (!unsigned_entry(&name)).then(|| LockEntry::of(&name, &entry))
            })
            .collect();
        let lock = serde_json::to_vec_pretty(&lock).unwrap_or_default();
        let sig = ed25519_dalek::SigningKey::from_bytes(secret).sign(&lock);
        self.file("META/release.lock", lock);
        self.file(
            &format!("META/signatures/{key}.sig"),
            base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()),
        )
    }

    /// Writes a v2 tar package.
    pub fn write_tar(&self, out: &Path) -> io::Result<()> {
        std::fs::write(out, tar_bytes(&self.items)?)
    }

    /// Writes a ZIP package (v1, or v2 if it holds `package.yml`).
    pub fn write_zip(&self, out: &Path) -> io::Result<()> {
        let f = std::fs::File::create(out)?;
        let mut z = zip::ZipWriter::new(f);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for i in &self.items {
            match i {
                Item::File { name, data, mode } => {
                    z.start_file(name.as_str(), opts.unix_permissions(*mode)).map_err(io::Error::other)?;
                    z.write_all(data)?;
                }
                Item::Dir(name) => z.add_directory(name.as_str(), opts).map_err(io::Error::other)?,
                Item::Symlink(name, target) => {
                    z.add_symlink(name.as_str(), target.as_str(), opts).map_err(io::Error::other)?
                }
                Item::Hardlink(..) | Item::Fifo(_) => {
                    return Err(io::Error::other("ZIP packages cannot hold hard links or FIFOs"))
                }
            }
        }
        z.finish().map_err(io::Error::other)?;
        Ok(())
    }
}

/// Adds the link chain a package author would use to write outside the package if the package
/// and its `content.tar` were checked apart: `content/u0 -> ..` in the package, `u0/e1 -> ..` in
/// `content.tar`, then `depth - 1` more `..` links under `e1/`, and `file` (its name is the
/// path below the chain) at the end, each level one directory higher. Den must refuse it.
pub fn link_chain(p: &mut Packer, depth: usize, file: &str, data: &[u8]) -> io::Result<()> {
    p.item(Item::Symlink("content/u0".into(), "..".into()));
    p.file("content.tar", tar_bytes(&[Item::Symlink("u0/e1".into(), "..".into())])?);
    let mut path = String::from("e1/");
    for d in 1..depth {
        p.item(Item::Symlink(format!("{path}u{d}"), "..".into()));
        path.push_str(&format!("u{d}/"));
    }
    p.item(Item::File { name: format!("{path}{file}"), data: data.to_vec(), mode: 0o644 });
    Ok(())
}

/// A tar of `items` (ustar headers, uid/gid 0, names written raw).
pub fn tar_bytes(items: &[Item]) -> io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for i in items {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let (name, data): (&str, &[u8]) = match i {
            Item::File { name, data, mode } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                (name, data)
            }
            Item::Dir(name) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (name, &[])
            }
            Item::Symlink(name, target) | Item::Hardlink(name, target) => {
                let link = matches!(i, Item::Hardlink(..));
                h.set_entry_type(if link { tar::EntryType::Link } else { tar::EntryType::Symlink });
                h.set_mode(0o777);
                raw_field(&mut h.as_old_mut().linkname, target)?;
                (name, &[])
            }
            Item::Fifo(name) => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_mode(0o644);
                (name, &[])
            }
        };
        raw_field(&mut h.as_old_mut().name, name)?;
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data)?;
    }
    b.into_inner()
}

fn raw_field(field: &mut [u8], value: &str) -> io::Result<()> {
    if value.len() > field.len() {
        return Err(io::Error::other(format!("`{value}` is longer than a tar header field")));
    }
    field.fill(0);
    field[..value.len()].copy_from_slice(value.as_bytes());
    Ok(())
}

/// The hex public key of an ed25519 secret (for writing a trusted key next to a signed package).
pub fn public_key_hex(secret: &[u8; 32]) -> String {
    hex::encode(ed25519_dalek::SigningKey::from_bytes(secret).verifying_key().as_bytes())
}
