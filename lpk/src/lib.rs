//! The LPK app package format, as Den reads it.
//!
//! [`inspect`] reads a package once, streaming, and checks everything before anything is
//! written: entry names and types, links, duplicates, size and compression limits, the nested
//! `content.tar`, the embedded OCI image layout and its digests, `package.yml` / `manifest.yml`
//! (rendered with `${VAR}` interpolation and turned into an [`plan::AppPlan`]), and the signature.
//! [`extract`] makes the same pass again and writes the admitted files into a fresh directory.
//!
//! Modules: [`archive`] (ZIP and tar entries), [`rules`] and [`paths`] (what an entry may be),
//! [`limits`] (bombs), [`reader`] (the pass), [`sink`] (where entries go), [`meta`],
//! [`manifest`], [`interp`], [`route`], [`plan`] (the app), [`images`], [`signature`].

pub mod archive;
pub mod error;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
pub mod images;
pub mod interp;
pub mod limits;
pub mod manifest;
pub mod meta;
pub mod pack;
pub mod paths;
pub mod plan;
pub mod reader;
pub mod route;
pub mod rules;
pub mod signature;
pub mod sink;

pub use error::LpkError;
pub use limits::Limits;
pub use meta::{PackageMeta, Version};
pub use plan::AppPlan;
pub use signature::{Keyring, Signed};

use manifest::Manifest;
use serde::Serialize;
use serde_yaml_ng::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The LPK host version Den implements, compared with `min_os_version`.
pub const HOST_VERSION: Version = Version(1, 3, 0);

/// How to read packages.
#[derive(Debug, Clone)]
pub struct Options {
    /// Size and count limits.
    pub limits: Limits,
    /// Trusted signing keys.
    pub keyring: Keyring,
    /// Host version for `min_os_version`.
    pub host: Version,
    /// `LAZYCAT_BOX_DOMAIN`, `LAZYCAT_BOX_NAME`, `LAZYCAT_APP_DEPLOY_UID`, ...; the package's
    /// `LAZYCAT_APP_ID` and `LAZYCAT_APP_DOMAIN` are added.
    pub vars: BTreeMap<String, String>,
}

impl Default for Options {
    fn default() -> Options {
        Options { limits: Limits::default(), keyring: Keyring::default(), host: HOST_VERSION, vars: BTreeMap::new() }
    }
}

/// A package that passed every check.
#[derive(Debug, Clone, Serialize)]
pub struct Package {
    /// 1 (ZIP with the metadata in `manifest.yml`) or 2 (`package.yml`).
    pub format: u8,
    /// ZIP or tar.
    pub container: archive::Container,
    /// Metadata.
    pub meta: PackageMeta,
    /// Parsed version.
    #[serde(serialize_with = "as_display")]
    pub version: Version,
    /// The manifest after interpolation.
    pub manifest: Manifest,
    /// Its YAML, for `/lzcapp/run/manifest.yml`.
    pub rendered: String,
    /// What to run.
    pub plan: AppPlan,
    /// Signature state.
    pub signed: Signed,
    /// Embedded images.
    pub embedded: Option<images::Embedded>,
    /// Every file outside `META/`, hashed.
    pub files: BTreeMap<String, signature::FileDigest>,
    /// Every entry of the package, as the signature covers it (type, link target, mode).
    #[serde(skip)]
    pub entries: BTreeMap<String, signature::EntryDigest>,
    /// Files and bytes of `content.tar`.
    pub content: Option<(u64, u64)>,
    /// Bytes once unpacked.
    pub unpacked: u64,
}

fn as_display<S: serde::Serializer>(v: &Version, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Reads and checks a package without writing anything.
pub fn inspect(path: &Path, opts: &Options) -> Result<Package, LpkError> {
    let got = reader::read(path, &opts.limits, None)?;
    finish(got, opts)
}

/// Reads and checks a package held in memory (the fuzz target's way in).
pub fn inspect_bytes(data: &[u8], opts: &Options) -> Result<Package, LpkError> {
    let got = reader::read_from(std::io::Cursor::new(data), &opts.limits, None)?;
    finish(got, opts)
}

/// Reads, checks and unpacks a package into `dest` (created; must not exist). On error `dest`
/// may hold part of the package: the caller removes it.
pub fn extract(path: &Path, opts: &Options, dest: &Path) -> Result<Package, LpkError> {
    std::fs::create_dir(dest).map_err(|e| LpkError::io(dest, e))?;
    let mut sink = sink::DirSink::new(dest).map_err(|e| LpkError::io(dest, e))?;
    let got = reader::read(path, &opts.limits, Some(&mut sink))?;
    finish(got, opts)
}

fn text<'a>(got: &'a reader::Collected, name: &str) -> Result<Option<&'a str>, LpkError> {
    got.kept
        .get(name)
        .map(|b| std::str::from_utf8(b).map_err(|_| LpkError::entry(name, "is not UTF-8 text")))
        .transpose()
}

fn yaml(file: &'static str, text: &str) -> Result<Value, LpkError> {
    let v: Value =
        serde_yaml_ng::from_str(text).map_err(|e| LpkError::entry(file, format!("is not valid YAML: {e}")))?;
    if !v.is_mapping() {
        return Err(LpkError::entry(file, "must be a YAML mapping"));
    }
    Ok(v)
}

fn typed<T: serde::de::DeserializeOwned>(file: &'static str, v: Value) -> Result<T, LpkError> {
    serde_yaml_ng::from_value(v).map_err(|e| LpkError::entry(file, format!("has a field of the wrong type: {e}")))
}

fn finish(got: reader::Collected, opts: &Options) -> Result<Package, LpkError> {
    let container = got.container.unwrap_or(archive::Container::Tar);
    let v2 = container == archive::Container::Tar || got.kept.contains_key("package.yml") || got.has_images;
    let manifest_text = text(&got, "manifest.yml")?
        .ok_or_else(|| LpkError::entry("manifest.yml", "is missing; every package needs one"))?;
    let raw_manifest = yaml("manifest.yml", manifest_text)?;
    let (meta_file, meta_value) = if v2 {
        let t = text(&got, "package.yml")?.ok_or_else(|| {
            LpkError::entry("package.yml", "is missing; a v2 package (tar, or ZIP with images/) needs one")
        })?;
        ("package.yml", yaml("package.yml", t)?)
    } else {
        ("manifest.yml", raw_manifest.clone())
    };
    let meta: PackageMeta = typed(meta_file, meta_value)?;
    let version = meta.check(meta_file, opts.host)?;

    let mut vars = opts.vars.clone();
    vars.insert("LAZYCAT_APP_ID".into(), meta.package.clone());
    let sub = raw_manifest.get("application").and_then(|a| a.get("subdomain")).and_then(Value::as_str).unwrap_or("");
    let sub = interp::interpolate(sub, &vars).unwrap_or_default();
    let domain = match vars.get("LAZYCAT_BOX_DOMAIN") {
        Some(b) if !b.is_empty() => format!("{sub}.{b}"),
        _ => sub,
    };
    vars.insert("LAZYCAT_APP_DOMAIN".into(), domain);
    let mut rendered_value = raw_manifest;
    interp::interpolate_tree(&mut rendered_value, &vars, "")
        .map_err(|(at, e)| LpkError::field("manifest.yml", at, e))?;
    let manifest: Manifest = typed("manifest.yml", rendered_value)?;
    let rendered = serde_yaml_ng::to_string(&manifest).map_err(|e| LpkError::entry("manifest.yml", e.to_string()))?;

    let lock = text(&got, "images.lock")?.map(images::parse_lock).transpose()?.unwrap_or_default();
    let embedded = if got.has_images {
        let imgs = images::check_layout(
            got.kept.get("images/index.json").map(Vec::as_slice),
            got.kept.contains_key("images/oci-layout"),
            &got.blobs,
            &got.small_blobs,
        )?;
        Some(images::Embedded { images: imgs, lock: lock.clone() })
    } else if !lock.is_empty() {
        return Err(LpkError::entry("images.lock", "lists images, but the package has no images/ layout"));
    } else {
        None
    };
    let aliases: BTreeSet<String> = lock.keys().cloned().collect();
    let plan = AppPlan::from_manifest(&manifest, &aliases)?;
    if let Some(emb) = &embedded {
        for s in &plan.services {
            if let plan::ImageRef::Embed(alias) = &s.image {
                if emb.resolve(alias).is_none() {
                    return Err(LpkError::entry(
                        "images.lock",
                        format!("alias `{alias}` (service {}) matches no image in images/index.json", s.name),
                    ));
                }
            }
        }
    }
    let signed =
        signature::check(got.kept.get("META/release.lock").map(Vec::as_slice), &got.sigs, &got.entries, &opts.keyring)?;
    Ok(Package {
        format: if v2 { 2 } else { 1 },
        container,
        meta,
        version,
        manifest,
        rendered,
        plan,
        signed,
        embedded,
        files: got.files,
        entries: got.entries,
        content: got.content,
        unpacked: got.unpacked,
    })
}

#[cfg(test)]
mod tests;
