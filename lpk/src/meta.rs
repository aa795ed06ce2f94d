//! Package metadata: `package.yml` in v2, the manifest's top level in v1. Ids, versions and
//! permissions are checked here.

use crate::LpkError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every permission id an LPK may ask for.
pub const PERMISSIONS: &[&str] = &[
    "net.internet",
    "net.lan",
    "net.host",
    "net.admin",
    "document.read",
    "document.write",
    "document.private",
    "media.read",
    "media.write",
    "device.kvm",
    "device.usb",
    "device.dri.render",
    "fuse.mount",
    "user.notify",
];

/// Permissions a package asks for.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Permissions {
    /// Needed to install.
    #[serde(default)]
    pub required: Vec<String>,
    /// Granted if the admin agrees.
    #[serde(default)]
    pub optional: Vec<String>,
}

/// A locale's name and description.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Locale {
    /// Localised name.
    #[serde(default)]
    pub name: Option<String>,
    /// Localised description.
    #[serde(default)]
    pub description: Option<String>,
}

/// What a package says about itself.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct PackageMeta {
    /// The package id, e.g. `cloud.lazycat.app.hello`.
    #[serde(default)]
    pub package: String,
    /// `X.Y.Z`.
    #[serde(default, deserialize_with = "crate::manifest::scalar_string")]
    pub version: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// One-line description.
    #[serde(default)]
    pub description: Option<String>,
    /// Author.
    #[serde(default)]
    pub author: Option<String>,
    /// License.
    #[serde(default)]
    pub license: Option<String>,
    /// Home page.
    #[serde(default)]
    pub homepage: Option<String>,
    /// Oldest host version the package runs on.
    #[serde(default, deserialize_with = "crate::manifest::opt_scalar_string")]
    pub min_os_version: Option<String>,
    /// Only admins may install and open it.
    #[serde(default)]
    pub admin_only: bool,
    /// Not shown in the launcher.
    #[serde(default)]
    pub hidden_from_launcher: bool,
    /// Platforms it does not run on.
    #[serde(default)]
    pub unsupported_platforms: Vec<String>,
    /// Localised names, by BCP-47 tag.
    #[serde(default)]
    pub locales: BTreeMap<String, Locale>,
    /// Permissions.
    #[serde(default)]
    pub permissions: Permissions,
}

/// A parsed `X.Y.Z` version (a `-pre` or `+build` suffix is kept for display, ignored in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u64, pub u64, pub u64);

impl Version {
    /// Parses `X.Y.Z`, optionally with a leading `v` and a `-pre` / `+build` suffix.
    pub fn parse(s: &str) -> Option<Version> {
        let core = s.strip_prefix('v').unwrap_or(s);
        let core = core.split(['-', '+']).next()?;
        let mut it = core.split('.');
        let mut num = || -> Option<u64> {
            let p = it.next()?;
            (!p.is_empty() && p.len() <= 18 && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse().ok())?
        };
        let v = Version(num()?, num()?, num()?);
        it.next().is_none().then_some(v)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Checks a package id: lowercase dotted labels, each `[a-z][a-z0-9]*(-[a-z0-9]+)*`.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("is missing".into());
    }
    if id.len() > 128 {
        return Err("is longer than 128 characters".into());
    }
    for label in id.split('.') {
        let ok = label.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && !label.ends_with('-')
            && !label.contains("--")
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(format!(
                "has the invalid label `{label}` in `{id}`: each dot-separated label starts with a-z \
                 and has only a-z, 0-9 and single inner dashes"
            ));
        }
    }
    Ok(())
}

impl PackageMeta {
    /// Checks every field; `file` names the file for messages.
    pub fn check(&self, file: &'static str, host: Version) -> Result<Version, LpkError> {
        check_id(&self.package).map_err(|r| LpkError::field(file, "package", r))?;
        let version = Version::parse(&self.version).ok_or_else(|| {
            LpkError::field(file, "version", format!("`{}` is not a version of the form X.Y.Z", self.version))
        })?;
        if let Some(min) = &self.min_os_version {
            let need = Version::parse(min).ok_or_else(|| {
                LpkError::field(file, "min_os_version", format!("`{min}` is not a version of the form X.Y.Z"))
            })?;
            if need > host {
                return Err(LpkError::TooNew { needed: min.clone(), have: host.to_string() });
            }
        }
        let perms = &self.permissions;
        for (list, ids) in [("required", &perms.required), ("optional", &perms.optional)] {
            let mut seen = std::collections::HashSet::new();
            for (i, p) in ids.iter().enumerate() {
                let field = format!("permissions.{list}[{i}]");
                if !PERMISSIONS.contains(&p.as_str()) {
                    return Err(LpkError::field(
                        file,
                        field,
                        format!("`{p}` is not a known permission (known: {})", PERMISSIONS.join(", ")),
                    ));
                }
                if !seen.insert(p) {
                    return Err(LpkError::field(file, field, format!("lists `{p}` twice")));
                }
            }
        }
        if let Some(p) = perms.required.iter().find(|p| perms.optional.contains(p)) {
            return Err(LpkError::field(file, "permissions", format!("`{p}` is both required and optional")));
        }
        for tag in self.locales.keys() {
            let ok = !tag.is_empty()
                && tag.len() <= 35
                && tag
                    .split('-')
                    .all(|s| !s.is_empty() && s.len() <= 8 && s.bytes().all(|b| b.is_ascii_alphanumeric()));
            if !ok {
                return Err(LpkError::field(file, format!("locales.{tag}"), "is not a BCP-47 language tag"));
            }
        }
        Ok(version)
    }

    /// Whether the package asks for `perm`, required or optional.
    pub fn wants(&self, perm: &str) -> bool {
        self.permissions.required.iter().chain(&self.permissions.optional).any(|p| p == perm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_versions() {
        assert!(check_id("cloud.lazycat.app.hello-world2").is_ok());
        for bad in ["", "Cloud.app", "a..b", "a.-b", "a.b-", "a.b--c", "a.1b", "a_b"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
        assert_eq!(Version::parse("1.2.3"), Some(Version(1, 2, 3)));
        assert_eq!(Version::parse("v0.10.0-rc1"), Some(Version(0, 10, 0)));
        for bad in ["1.2", "1.2.3.4", "a.b.c", "1..3", ""] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
        assert!(Version(1, 10, 0) > Version(1, 9, 9));
    }

    fn meta(y: &str) -> PackageMeta {
        serde_yaml_ng::from_str(y).unwrap()
    }

    #[test]
    fn permissions_are_checked() {
        let host = Version(1, 3, 0);
        let ok = meta("package: a.b\nversion: 1.0.0\npermissions: {required: [net.internet], optional: [media.read]}");
        assert_eq!(ok.check("package.yml", host).unwrap(), Version(1, 0, 0));
        let e = meta("package: a.b\nversion: 1.0.0\npermissions: {required: [net.everything]}")
            .check("package.yml", host)
            .unwrap_err()
            .to_string();
        assert!(e.contains("permissions.required[0]") && e.contains("not a known permission"), "{e}");
        let e = meta("package: a.b\nversion: 1.0.0\npermissions: {required: [net.lan], optional: [net.lan]}")
            .check("package.yml", host)
            .unwrap_err()
            .to_string();
        assert!(e.contains("both required and optional"), "{e}");
        let e = meta("package: a.b\nversion: 1.0.0\nmin_os_version: 9.0.0").check("package.yml", host).unwrap_err();
        assert!(matches!(e, LpkError::TooNew { .. }), "{e}");
        let e = meta("package: a.b\nversion: 1.0").check("package.yml", host).unwrap_err().to_string();
        assert!(e.contains("`version`"), "{e}");
    }
}
