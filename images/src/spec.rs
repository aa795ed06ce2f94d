//! The declarative image spec (YAML), modelled on LinuxKit: a kernel, an init, packages and files.
//!
//! ```yaml
//! name: dev
//! description: Developer VM
//! version: "2026.11.1"                     # a label shown where the image is used (optional)
//! kernel:
//!   package: linux-image-cloud-amd64      # a Debian package (default shown)
//!   modules: [virtio_blk, virtio_console]  # loaded at boot, dependencies added
//!   vmlinux: false                         # also produce an uncompressed ELF vmlinux
//! init:
//!   busybox: true                          # busybox-static in the initramfs
//! cmdline: console=ttyS0 den.root=/dev/vda
//! files:                                   # into the initramfs
//!   - { path: /etc/motd, contents: "hi\n", mode: "0644" }
//! rootfs:                                  # a root disk (optional)
//!   suite: bookworm
//!   variant: minbase
//!   packages: [openssh-server]
//!   run: ["useradd -m dev"]                # shell commands in the new root
//!   files: []
//!   size: 2G                               # or auto
//!   systemd_agent: true                    # install the den-agent systemd unit
//!   qcow2: false
//! ```
//! Unknown keys are errors that name the key.

use crate::ImageError;
use serde::{Deserialize, Serialize};

/// A whole image spec.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Image name: lowercase letters, digits and dashes.
    pub name: String,
    /// One line for `den image ls`.
    #[serde(default)]
    pub description: String,
    /// A version label (`2026.11.1`), shown where the image is used (the business OS's slots).
    #[serde(default)]
    pub version: String,
    /// The kernel.
    #[serde(default)]
    pub kernel: KernelSpec,
    /// The initramfs init.
    #[serde(default)]
    pub init: InitSpec,
    /// Kernel command line.
    #[serde(default)]
    pub cmdline: String,
    /// Extra files in the initramfs.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// The root disk, if the image has one.
    #[serde(default)]
    pub rootfs: Option<RootfsSpec>,
}

/// Kernel selection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KernelSpec {
    /// Debian package (a metapackage is followed to the real kernel).
    #[serde(default = "default_kernel")]
    pub package: String,
    /// Modules to load at boot (their dependencies are added).
    #[serde(default)]
    pub modules: Vec<String>,
    /// Also extract an uncompressed ELF vmlinux.
    #[serde(default)]
    pub vmlinux: bool,
}

fn default_kernel() -> String {
    "linux-image-cloud-amd64".into()
}

impl Default for KernelSpec {
    fn default() -> Self {
        KernelSpec { package: default_kernel(), modules: vec![], vmlinux: false }
    }
}

/// What goes into the initramfs besides the modules.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InitSpec {
    /// Include busybox-static and its applet links.
    #[serde(default = "yes")]
    pub busybox: bool,
}

fn yes() -> bool {
    true
}

impl Default for InitSpec {
    fn default() -> Self {
        InitSpec { busybox: true }
    }
}

/// A file to place in an image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Absolute path inside the image.
    pub path: String,
    /// Text contents.
    pub contents: String,
    /// Octal permission bits, e.g. `"0755"` (default `"0644"`).
    #[serde(default)]
    pub mode: Option<String>,
}

impl FileSpec {
    /// Permission bits.
    pub fn perm(&self) -> Result<u32, String> {
        match &self.mode {
            None => Ok(0o644),
            Some(m) => {
                u32::from_str_radix(m.trim_start_matches("0o"), 8).ok().filter(|v| *v <= 0o7777).ok_or_else(|| {
                    format!("files: mode `{m}` of {} is not octal permission bits like \"0644\"", self.path)
                })
            }
        }
    }
}

/// A Debian root disk made with mmdebstrap.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RootfsSpec {
    /// Debian suite.
    #[serde(default = "default_suite")]
    pub suite: String,
    /// mmdebstrap variant.
    #[serde(default = "default_variant")]
    pub variant: String,
    /// Packages to install.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Shell commands run inside the new root after the packages.
    #[serde(default)]
    pub run: Vec<String>,
    /// Files to add.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// Disk size (`512M`, `2G`) or `auto` (contents plus headroom).
    #[serde(default = "default_size")]
    pub size: String,
    /// Install den-agent with a systemd unit (full VMs booting systemd).
    #[serde(default)]
    pub systemd_agent: bool,
    /// Also produce a qcow2 copy.
    #[serde(default)]
    pub qcow2: bool,
}

fn default_suite() -> String {
    "bookworm".into()
}
fn default_variant() -> String {
    "minbase".into()
}
fn default_size() -> String {
    "auto".into()
}

/// Checks an image name.
pub fn check_name(name: &str) -> Result<(), ImageError> {
    if den_core::valid_image_name(name) {
        Ok(())
    } else {
        Err(ImageError::Spec {
            file: name.into(),
            reason: format!("name `{name}` must be 1-63 lowercase letters, digits or dashes, starting with a letter"),
        })
    }
}

/// Parses a size like `512M`, `2G`, `1048576`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn check_files(files: &[FileSpec], key: &str) -> Result<(), String> {
    for f in files {
        if !f.path.starts_with('/') || f.path.split('/').any(|c| c == "..") {
            return Err(format!("{key}: path `{}` must be absolute and must not contain `..`", f.path));
        }
        f.perm().map_err(|e| format!("{key}: {e}"))?;
    }
    Ok(())
}

impl ImageSpec {
    /// Parses and validates a spec; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<ImageSpec, ImageError> {
        let spec: ImageSpec =
            serde_yaml_ng::from_str(text).map_err(|e| ImageError::Spec { file: file.into(), reason: e.to_string() })?;
        spec.validate().map_err(|reason| ImageError::Spec { file: file.into(), reason })?;
        Ok(spec)
    }

    fn validate(&self) -> Result<(), String> {
        check_name(&self.name).map_err(|e| e.to_string())?;
        check_files(&self.files, "files")?;
        let label = |c: char| c.is_ascii_alphanumeric() || "+-._~".contains(c);
        if self.version.len() > 64 || !self.version.chars().all(label) {
            return Err(format!(
                "version: `{}` is not a version label (letters, digits, + - . _ ~; at most 64)",
                self.version
            ));
        }
        let word = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "+-._:=".contains(c));
        for m in &self.kernel.modules {
            if !word(m) {
                return Err(format!("kernel.modules: `{m}` is not a module name"));
            }
        }
        if !word(&self.kernel.package) {
            return Err(format!("kernel.package: `{}` is not a package name", self.kernel.package));
        }
        if let Some(r) = &self.rootfs {
            check_files(&r.files, "rootfs.files")?;
            for p in &r.packages {
                if !word(p) {
                    return Err(format!("rootfs.packages: `{p}` is not a package name"));
                }
            }
            if !word(&r.suite) || !word(&r.variant) {
                return Err("rootfs.suite and rootfs.variant must be plain words".into());
            }
            if r.size != "auto" && parse_size(&r.size).is_none() {
                return Err(format!("rootfs.size: `{}` is not a size like 512M or 2G, or auto", r.size));
            }
        }
        Ok(())
    }
}

/// The images Den ships: name and spec text.
pub const BUILTIN: &[(&str, &str)] = &[
    ("base", include_str!("../specs/base.yml")),
    ("dev", include_str!("../specs/dev.yml")),
    ("docker", include_str!("../specs/docker.yml")),
    ("app", include_str!("../specs/app.yml")),
    ("system", include_str!("../specs/system.yml")),
];

/// A built-in spec by name.
pub fn builtin(name: &str) -> Option<ImageSpec> {
    BUILTIN.iter().find(|(n, _)| *n == name).and_then(|(n, t)| ImageSpec::parse(t, &format!("built-in {n}")).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_specs_parse() {
        for (name, text) in BUILTIN {
            let s = ImageSpec::parse(text, name).unwrap();
            assert_eq!(&s.name, name);
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let err = ImageSpec::parse("name: x\nkernel:\n  pakage: foo\n", "x.yml").unwrap_err().to_string();
        assert!(err.contains("pakage"), "{err}");
        let err = ImageSpec::parse("name: x\nflavour: 1\n", "x.yml").unwrap_err().to_string();
        assert!(err.contains("flavour"), "{err}");
    }

    #[test]
    fn bad_values_are_explained() {
        let e = ImageSpec::parse("name: Bad_Name\n", "x").unwrap_err().to_string();
        assert!(e.contains("Bad_Name"), "{e}");
        let e = ImageSpec::parse("name: x\nfiles: [{path: etc/x, contents: a}]\n", "x").unwrap_err().to_string();
        assert!(e.contains("etc/x"), "{e}");
        let e =
            ImageSpec::parse("name: x\nfiles: [{path: /x, contents: a, mode: '999'}]\n", "x").unwrap_err().to_string();
        assert!(e.contains("999"), "{e}");
        let e = ImageSpec::parse("name: x\nrootfs: {size: lots}\n", "x").unwrap_err().to_string();
        assert!(e.contains("lots"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("10"), Some(10));
        assert_eq!(parse_size("x"), None);
    }
}
