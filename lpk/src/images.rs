//! The embedded images: `images/` (an OCI image layout) and `images.lock` (alias -> image).
//! Checked from what the package reader kept: which blobs exist (each already verified against
//! its digest) and the small JSON blobs (indexes, manifests, configs).

use crate::LpkError;
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One image of the layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OciImage {
    /// Manifest digest.
    pub digest: String,
    /// `org.opencontainers.image.ref.name`, if any.
    pub ref_name: Option<String>,
    /// Config blob digest.
    pub config: String,
    /// Layer digests.
    pub layers: Vec<String>,
}

/// An `images.lock` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedImage {
    /// Image id (manifest or config digest).
    #[serde(default, alias = "image_id", alias = "id")]
    pub image: Option<String>,
    /// Where it came from.
    #[serde(default)]
    pub upstream: Option<String>,
}

/// What the package embeds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Embedded {
    /// Images of the layout.
    pub images: Vec<OciImage>,
    /// `images.lock`, by alias.
    pub lock: BTreeMap<String, LockedImage>,
}

#[derive(Deserialize)]
struct Desc {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct IndexJson {
    #[serde(default)]
    manifests: Vec<Desc>,
}

#[derive(Deserialize)]
struct ManifestJson {
    config: Desc,
    #[serde(default)]
    layers: Vec<Desc>,
}

fn bad(r: impl Into<String>) -> LpkError {
    LpkError::entry("images", r)
}

/// Parses `images.lock` (YAML or JSON; a map of alias -> entry, optionally under `images:`).
pub fn parse_lock(text: &str) -> Result<BTreeMap<String, LockedImage>, LpkError> {
    let err = |r: String| LpkError::entry("images.lock", r);
    let mut v: Value = serde_yaml_ng::from_str(text).map_err(|e| err(format!("is not YAML or JSON: {e}")))?;
    if let Some(inner) = v.get("images").filter(|i| i.is_mapping()) {
        v = inner.clone();
    }
    let map = match v {
        Value::Mapping(m) => m,
        Value::Null => return Ok(BTreeMap::new()),
        _ => return Err(err("must map image aliases to images".into())),
    };
    let mut out = BTreeMap::new();
    for (k, val) in map {
        let alias = k.as_str().ok_or_else(|| err("has an alias that is not a string".into()))?.to_string();
        if !crate::plan::is_label(&alias) && !alias.split(['.', '/']).all(crate::plan::is_label) {
            return Err(err(format!("has the alias `{alias}`, which is not a name")));
        }
        let entry = match val {
            Value::String(s) => LockedImage { image: Some(s), upstream: None },
            other => serde_yaml_ng::from_value(other).map_err(|e| err(format!("entry `{alias}`: {e}")))?,
        };
        out.insert(alias, entry);
    }
    Ok(out)
}

/// Checks the layout: `oci-layout`, `index.json`, and every manifest, config and layer blob it
/// reaches is in the package. `json` holds the small blobs by digest.
pub fn check_layout(
    index: Option<&[u8]>,
    has_layout_file: bool,
    blobs: &BTreeSet<String>,
    json: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<OciImage>, LpkError> {
    let index = index.ok_or_else(|| bad("has no index.json; an embedded image layout needs one"))?;
    if !has_layout_file {
        return Err(bad("has no oci-layout file"));
    }
    let idx: IndexJson =
        serde_json::from_slice(index).map_err(|e| bad(format!("index.json is not an OCI index: {e}")))?;
    let mut out = Vec::new();
    let mut queue: Vec<(Desc, u32)> = idx.manifests.into_iter().map(|d| (d, 0)).collect();
    while let Some((d, depth)) = queue.pop() {
        let body = json
            .get(&d.digest)
            .ok_or_else(|| bad(format!("index.json names {}, which is not a blob of the package", d.digest)))?;
        if d.media_type.contains("index") || d.media_type.contains("manifest.list") {
            if depth > 3 {
                return Err(bad("has indexes nested too deeply"));
            }
            let nested: IndexJson = serde_json::from_slice(body).map_err(|e| bad(format!("{}: {e}", d.digest)))?;
            queue.extend(nested.manifests.into_iter().map(|n| (n, depth + 1)));
            continue;
        }
        let m: ManifestJson = serde_json::from_slice(body).map_err(|e| bad(format!("manifest {}: {e}", d.digest)))?;
        for b in std::iter::once(&m.config).chain(&m.layers) {
            if !blobs.contains(&b.digest) {
                return Err(bad(format!(
                    "manifest {} needs blob {}, which the package does not have",
                    d.digest, b.digest
                )));
            }
            if b.media_type.ends_with("zstd") {
                return Err(bad(format!("layer {} is zstd-compressed; Den reads gzip or plain layers", b.digest)));
            }
        }
        out.push(OciImage {
            digest: d.digest,
            ref_name: d.annotations.get("org.opencontainers.image.ref.name").cloned(),
            config: m.config.digest,
            layers: m.layers.into_iter().map(|l| l.digest).collect(),
        });
    }
    Ok(out)
}

impl Embedded {
    /// The manifest digest an alias runs: by `images.lock` id (manifest or config digest, or a
    /// prefix of one), else by the layout's ref name, else the only image.
    pub fn resolve(&self, alias: &str) -> Option<&OciImage> {
        let id = self.lock.get(alias).and_then(|l| l.image.as_deref());
        let norm = |s: &str| s.trim_start_matches("sha256:").to_string();
        if let Some(id) = id.map(norm).filter(|i| !i.is_empty()) {
            if let Some(i) =
                self.images.iter().find(|i| norm(&i.digest).starts_with(&id) || norm(&i.config).starts_with(&id))
            {
                return Some(i);
            }
        }
        self.images
            .iter()
            .find(|i| i.ref_name.as_deref() == Some(alias))
            .or_else(|| (self.images.len() == 1).then(|| &self.images[0]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_forms() {
        let l = parse_lock("web: {image_id: 'sha256:ab', upstream: 'busybox:1'}\ndb: sha256:cd\n").unwrap();
        assert_eq!(l["web"].image.as_deref(), Some("sha256:ab"));
        assert_eq!(l["db"].image.as_deref(), Some("sha256:cd"));
        let l = parse_lock(r#"{"images": {"web": {"id": "x"}}}"#).unwrap();
        assert!(l.contains_key("web"));
        assert!(parse_lock("[1, 2]").is_err());
        assert!(parse_lock("'bad alias!': x").is_err());
    }

    #[test]
    fn layouts_must_be_complete() {
        let m = br#"{"config": {"digest": "sha256:c"}, "layers": [{"digest": "sha256:l"}]}"#.to_vec();
        let json: BTreeMap<_, _> = [("sha256:m".to_string(), m)].into();
        let idx =
            br#"{"manifests": [{"digest": "sha256:m", "annotations": {"org.opencontainers.image.ref.name": "web"}}]}"#;
        let mut blobs: BTreeSet<String> = ["sha256:m", "sha256:c"].iter().map(|s| s.to_string()).collect();
        let e = check_layout(Some(idx), true, &blobs, &json).unwrap_err().to_string();
        assert!(e.contains("sha256:l"), "{e}");
        blobs.insert("sha256:l".into());
        let images = check_layout(Some(idx), true, &blobs, &json).unwrap();
        let emb = Embedded { images, lock: BTreeMap::new() };
        assert_eq!(emb.resolve("web").unwrap().layers, ["sha256:l"]);
        assert!(check_layout(Some(idx), false, &blobs, &json).unwrap_err().to_string().contains("oci-layout"));
        assert!(check_layout(None, true, &blobs, &json).is_err());
    }
}
