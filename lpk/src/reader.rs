//! One streaming pass over a package: every entry is checked as it goes by, hashed, and handed
//! to the sink; nested `content.tar(.gz)` is walked inside the same pass, and image blobs are
//! checked against their digests. Memory stays flat in the package size: only metadata files
//! and small JSON blobs are kept.

use crate::archive::{self, Container, RawEntry};
use crate::limits::{exceeded, Budget, Counted, Limits, Meter};
use crate::rules::{Admitted, Rules, Scope};
use crate::signature::{EntryDigest, FileDigest};
use crate::sink::{write_opt, Area, Sink};
use crate::LpkError;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read};

/// Small JSON blobs (OCI indexes, manifests, configs) are kept up to this size.
const SMALL_BLOB: u64 = 256 << 10;

/// What one pass collected.
#[derive(Default)]
pub struct Collected {
    /// Archive format.
    pub container: Option<Container>,
    /// Every regular file outside `META/`, hashed.
    pub files: BTreeMap<String, FileDigest>,
    /// Every entry of the package (not of `content.tar`), as the signature covers it.
    pub entries: BTreeMap<String, EntryDigest>,
    /// Metadata files kept in memory, by entry name.
    pub kept: BTreeMap<String, Vec<u8>>,
    /// `META/signatures/<key>.sig`, by key name.
    pub sigs: BTreeMap<String, Vec<u8>>,
    /// Digests (`sha256:<hex>`) of the blobs under `images/blobs/sha256/`.
    pub blobs: BTreeSet<String>,
    /// Small blobs, by digest.
    pub small_blobs: BTreeMap<String, Vec<u8>>,
    /// Whether anything lies under `images/`.
    pub has_images: bool,
    /// Files and bytes in `content.tar`.
    pub content: Option<(u64, u64)>,
    /// Bytes unpacked in all.
    pub unpacked: u64,
}

fn is_kept(name: &str) -> bool {
    matches!(
        name,
        "manifest.yml"
            | "package.yml"
            | "images.lock"
            | "images/index.json"
            | "images/oci-layout"
            | "META/release.lock"
            | "deploy_params.yml"
    ) || (name.starts_with("META/signatures/") && name.ends_with(".sig"))
}

/// Whether `name` is the package's `content.tar(.gz)`, unpacked under `content/` and not kept.
fn is_content(name: &str) -> bool {
    name == "content.tar" || name == "content.tar.gz"
}

/// Reads `from` through a hasher into the sink's file, keeping up to `keep` bytes.
struct Tee<'a> {
    from: &'a mut dyn Read,
    hash: Sha256,
    out: Option<File>,
    keep: Option<(Vec<u8>, u64)>,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.from.read(buf)?;
        self.hash.update(&buf[..n]);
        write_opt(&mut self.out, &buf[..n])?;
        if let Some((kept, cap)) = &mut self.keep {
            if (kept.len() + n) as u64 > *cap {
                self.keep = None;
            } else {
                kept.extend_from_slice(&buf[..n]);
            }
        }
        Ok(n)
    }
}

struct Pass<'s> {
    limits: Limits,
    budget: Budget,
    entries: u64,
    rules: Rules,
    sink: Option<&'s mut dyn Sink>,
    got: Collected,
}

/// Reads the package at `path`, checking every entry and handing it to `sink`.
pub fn read(path: &std::path::Path, limits: &Limits, sink: Option<&mut dyn Sink>) -> Result<Collected, LpkError> {
    let file = File::open(path).map_err(|e| LpkError::io(path, e))?;
    read_from(file, limits, sink)
}

/// Reads a package from `file`, as [`read`] does.
pub fn read_from<R: Read + io::Seek>(
    mut file: R,
    limits: &Limits,
    sink: Option<&mut dyn Sink>,
) -> Result<Collected, LpkError> {
    let container = archive::detect(&mut file)?;
    let mut pass = Pass {
        limits: limits.clone(),
        budget: Budget::new(limits.max_unpacked),
        entries: 0,
        rules: Rules::new(),
        sink,
        got: Collected { container: Some(container), ..Collected::default() },
    };
    let mut visit = |raw: RawEntry, r: &mut dyn Read| pass.entry(raw, r);
    match container {
        Container::Zip => archive::walk_zip(file, &mut visit)?,
        Container::Tar => archive::walk_tar(io::BufReader::with_capacity(1 << 16, file), &mut visit)?,
    }
    pass.rules.finish()?;
    pass.got.unpacked = pass.budget.used();
    Ok(pass.got)
}

/// Turns a metered read failure into a refusal of `entry`.
fn io_refusal(entry: &str, e: io::Error) -> LpkError {
    match exceeded(&e) {
        Some(limit) => LpkError::entry(entry, limit),
        None => LpkError::entry(entry, format!("cannot be read: {e}")),
    }
}

impl Pass<'_> {
    fn count(&mut self, name: &str) -> Result<(), LpkError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(LpkError::entry(name, format!("is past the limit of {} entries", self.limits.max_entries)));
        }
        Ok(())
    }

    fn sink_err(name: &str, e: io::Error) -> LpkError {
        LpkError::entry(name, format!("cannot be unpacked: {e}"))
    }

    fn entry(&mut self, raw: RawEntry, r: &mut dyn Read) -> Result<(), LpkError> {
        let Some((name, kind)) = self.rules.admit(&raw, &Scope::PACKAGE)? else { return Ok(()) };
        self.count(&name)?;
        let signed = match &kind {
            Admitted::File => None,
            Admitted::Dir => Some(EntryDigest::Dir),
            Admitted::Symlink(t) => Some(EntryDigest::Symlink { target: t.clone() }),
            Admitted::Hardlink(t) => Some(EntryDigest::Hardlink { target: t.clone() }),
        };
        if let Some(e) = signed {
            self.got.entries.insert(name.clone(), e);
        }
        if name == "images" || name.starts_with("images/") {
            self.got.has_images = true;
        }
        if let Some(packed) = raw.packed {
            if raw.size > self.limits.ratio_floor && raw.size / packed.max(1) > self.limits.max_ratio {
                return Err(LpkError::entry(
                    &name,
                    format!(
                        "declares {}:1 compression (an archive bomb); the limit is {}:1",
                        raw.size / packed.max(1),
                        self.limits.max_ratio
                    ),
                ));
            }
        }
        match kind {
            Admitted::Dir => {
                if let Some(s) = self.sink.as_deref_mut() {
                    s.dir(Area::Package, &name).map_err(|e| Self::sink_err(&name, e))?;
                }
                Ok(())
            }
            Admitted::Symlink(t) => {
                if let Some(s) = self.sink.as_deref_mut() {
                    s.symlink(Area::Package, &name, &t).map_err(|e| Self::sink_err(&name, e))?;
                }
                Ok(())
            }
            Admitted::Hardlink(t) => {
                if is_content(&t) {
                    return Err(LpkError::entry(
                        &name,
                        format!("is a hard link to `{t}`, which Den unpacks instead of keeping"),
                    ));
                }
                if let Some(d) = self.got.files.get(&t).cloned() {
                    self.got.files.insert(name.clone(), d);
                }
                if let Some(s) = self.sink.as_deref_mut() {
                    s.hardlink(Area::Package, &name, &t).map_err(|e| Self::sink_err(&name, e))?;
                }
                Ok(())
            }
            Admitted::File => self.file(&name, &raw, r),
        }
    }

    fn file(&mut self, name: &str, raw: &RawEntry, r: &mut dyn Read) -> Result<(), LpkError> {
        let content = is_content(name);
        let free = Budget::new(u64::MAX);
        let budget = if content { &free } else { &self.budget };
        let mut meter = Meter::new(r, None, Some(raw.size), budget, &self.limits);
        let out = match (&mut self.sink, content) {
            (Some(s), false) => s.file(Area::Package, name, raw.mode).map_err(|e| Self::sink_err(name, e))?,
            _ => None,
        };
        let blob = name.strip_prefix("images/blobs/sha256/");
        let keep = if is_kept(name) {
            if raw.size > self.limits.max_meta {
                return Err(LpkError::entry(
                    name,
                    format!("is larger than {} KiB, the limit for metadata", self.limits.max_meta >> 10),
                ));
            }
            Some((Vec::new(), self.limits.max_meta))
        } else if blob.is_some() && raw.size <= SMALL_BLOB {
            Some((Vec::new(), SMALL_BLOB))
        } else {
            None
        };
        let mut tee = Tee { from: &mut meter, hash: Sha256::new(), out, keep };
        let res = if content {
            self.content(name, &mut tee)
        } else if blob.is_some() {
            self.blob(name, &mut tee)
        } else {
            io::copy(&mut tee, &mut io::sink()).map(drop).map_err(|e| io_refusal(name, e))
        };
        res?;
        if let Some(f) = tee.out.take() {
            f.sync_data().map_err(|e| Self::sink_err(name, e))?;
        }
        let digest = format!("sha256:{}", hex::encode(tee.hash.finalize_reset()));
        let kept = tee.keep.take().map(|(k, _)| k);
        let size = meter.out();
        if let Some(hex) = blob {
            if digest != format!("sha256:{hex}") {
                return Err(LpkError::entry(name, format!("does not match its name: its bytes hash to {digest}")));
            }
            self.got.blobs.insert(digest.clone());
            if let Some(k) = &kept {
                self.got.small_blobs.insert(digest.clone(), k.clone());
            }
        } else if let Some(k) = kept.filter(|_| is_kept(name)) {
            match name.strip_prefix("META/signatures/").and_then(|n| n.strip_suffix(".sig")) {
                Some(key) => drop(self.got.sigs.insert(key.to_string(), k)),
                None => drop(self.got.kept.insert(name.to_string(), k)),
            }
        }
        let content = FileDigest { size, digest };
        self.got.entries.insert(name.to_string(), EntryDigest::File { content: content.clone(), mode: raw.mode });
        if !name.starts_with("META/") {
            self.got.files.insert(name.to_string(), content);
        }
        Ok(())
    }

    /// An image blob: gzip layers are decompressed (to nowhere) to enforce the ratio and budget.
    fn blob(&mut self, name: &str, tee: &mut Tee) -> Result<(), LpkError> {
        let mut head = [0u8; 2];
        let mut got = 0;
        while got < 2 {
            match tee.read(&mut head[got..]).map_err(|e| io_refusal(name, e))? {
                0 => break,
                n => got += n,
            }
        }
        if got == 2 && head == [0x1f, 0x8b] {
            let (counted, input) = Counted::new(io::Cursor::new(head).chain(&mut *tee));
            let gz = flate2::read::MultiGzDecoder::new(counted);
            let mut m = Meter::new(gz, Some(input), None, &self.budget, &self.limits);
            io::copy(&mut m, &mut io::sink()).map_err(|e| io_refusal(name, e))?;
        }
        io::copy(tee, &mut io::sink()).map_err(|e| io_refusal(name, e))?;
        Ok(())
    }

    /// `content.tar(.gz)`: walked entry by entry under the same rules as the package (its
    /// entries are `content/<name>` in the one tree), unpacked to `content/`.
    fn content(&mut self, name: &str, tee: &mut Tee) -> Result<(), LpkError> {
        let label = format!("{name}!/");
        let scope = Scope { prefix: "content/", label: &label };
        let (mut files, mut bytes) = (0u64, 0u64);
        {
            let (counted, input) = Counted::new(&mut *tee);
            let stream: Box<dyn Read> = if name.ends_with(".gz") {
                let free = Budget::new(u64::MAX);
                Box::new(Meter::new(flate2::read::GzDecoder::new(counted), Some(input), None, &free, &self.limits))
            } else {
                Box::new(counted)
            };
            let mut visit = |raw: RawEntry, r: &mut dyn Read| -> Result<(), LpkError> {
                let Some((inner, kind)) = self.rules.admit(&raw, &scope)? else { return Ok(()) };
                let shown = format!("{label}{inner}");
                self.count(&shown)?;
                let sink = self.sink.as_deref_mut();
                let res = match (kind, sink) {
                    (Admitted::File, sink) => {
                        let out = match sink {
                            Some(s) => {
                                s.file(Area::Content, &inner, raw.mode).map_err(|e| Self::sink_err(&shown, e))?
                            }
                            None => None,
                        };
                        let mut m = Meter::new(r, None, Some(raw.size), &self.budget, &self.limits);
                        let mut t = Tee { from: &mut m, hash: Sha256::new(), out, keep: None };
                        io::copy(&mut t, &mut io::sink()).map_err(|e| io_refusal(&shown, e))?;
                        files += 1;
                        bytes += m.out();
                        Ok(())
                    }
                    (_, None) => Ok(()),
                    (Admitted::Dir, Some(s)) => s.dir(Area::Content, &inner),
                    (Admitted::Symlink(t), Some(s)) => s.symlink(Area::Content, &inner, &t),
                    (Admitted::Hardlink(t), Some(s)) => s.hardlink(Area::Content, &inner, &t),
                };
                res.map_err(|e| Self::sink_err(&shown, e))
            };
            archive::walk_tar(stream, &mut visit).map_err(|e| match e {
                LpkError::Archive(m) => LpkError::entry(name, m),
                LpkError::Io { source, .. } => io_refusal(name, source),
                other => other,
            })?;
        }
        io::copy(tee, &mut io::sink()).map_err(|e| io_refusal(name, e))?;
        self.got.content = Some((files, bytes));
        Ok(())
    }
}
