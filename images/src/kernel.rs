//! The guest kernel from a Debian `linux-image-*` package: the bzImage, the modules a virtio
//! guest needs (with their dependencies, in load order), and optionally an ELF vmlinux.

use crate::cpio::CpioWriter;
use crate::deb::{self, Package};
use crate::ImageError;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Where the module list is written in the initramfs (read by den-agent's init).
pub const MODULE_LIST: &str = "/etc/den/modules.list";

/// What the kernel stage produces.
pub struct KernelParts {
    /// Kernel release, e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
    /// Path of the bzImage in the work directory.
    pub vmlinuz: PathBuf,
    /// A cpio archive with the modules and [`MODULE_LIST`].
    pub modules_cpio: Vec<u8>,
    /// Module names in load order.
    pub load_order: Vec<String>,
    /// The uncompressed kernel, when asked for.
    pub vmlinux: Option<Vec<u8>>,
}

/// Follows a metapackage (`linux-image-cloud-amd64`) to the real kernel package, looking
/// packages up with `lookup` (e.g. [`deb::resolve_cached`]).
pub fn resolve(name: &str, lookup: &dyn Fn(&str, &str) -> Result<Package, ImageError>) -> Result<Package, ImageError> {
    let mut pkg = lookup(name, "kernel.package")?;
    for _ in 0..4 {
        let real = pkg.name.strip_prefix("linux-image-").is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
        if real {
            return Ok(pkg);
        }
        let next = pkg
            .depends
            .split([',', '|'])
            .map(|d| d.split_whitespace().next().unwrap_or(""))
            .find(|d| d.starts_with("linux-image-"))
            .map(str::to_string);
        match next {
            Some(n) => pkg = lookup(&n, "kernel.package dependency")?,
            None => break,
        }
    }
    Err(ImageError::Kernel(format!("package `{name}` does not lead to a linux-image-<version> package")))
}

/// Module name as the kernel spells it (`virtio-blk.ko` -> `virtio_blk`).
fn module_name(file: &Path) -> Option<String> {
    let n = file.file_name()?.to_str()?.strip_suffix(".ko")?;
    Some(n.replace('-', "_"))
}

fn index_modules(dir: &Path, out: &mut HashMap<String, PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            index_modules(&p, out);
        } else if let Some(n) = module_name(&p) {
            out.insert(n, p);
        }
    }
}

fn depends_of(path: &Path) -> Result<Vec<String>, ImageError> {
    let bytes = std::fs::read(path).map_err(|e| ImageError::io(path, e))?;
    let info = crate::elf::section(&bytes, ".modinfo")
        .ok_or_else(|| ImageError::Kernel(format!("{} has no .modinfo section", path.display())))?;
    Ok(crate::elf::modinfo(info, "depends")
        .iter()
        .flat_map(|d| d.split(','))
        .filter(|d| !d.is_empty())
        .map(|d| d.replace('-', "_"))
        .collect())
}

/// Orders `wanted` and everything they depend on so that dependencies load first.
/// Modules built into the kernel (`modules.builtin`) are skipped.
pub fn load_order(
    wanted: &[String],
    available: &HashMap<String, PathBuf>,
    builtin: &HashSet<String>,
    deps: &dyn Fn(&Path) -> Result<Vec<String>, ImageError>,
    release: &str,
) -> Result<Vec<String>, ImageError> {
    fn visit(
        name: &str,
        available: &HashMap<String, PathBuf>,
        builtin: &HashSet<String>,
        deps: &dyn Fn(&Path) -> Result<Vec<String>, ImageError>,
        release: &str,
        seen: &mut HashSet<String>,
        out: &mut Vec<String>,
    ) -> Result<(), ImageError> {
        let name = name.replace('-', "_");
        if builtin.contains(&name) || !seen.insert(name.clone()) {
            return Ok(());
        }
        let path = available.get(&name).ok_or_else(|| {
            ImageError::Kernel(format!("module `{name}` is neither built into nor shipped with kernel {release}"))
        })?;
        for d in deps(path)? {
            visit(&d, available, builtin, deps, release, seen, out)?;
        }
        out.push(name);
        Ok(())
    }
    let mut seen = HashSet::new();
    let mut out = vec![];
    for w in wanted {
        visit(w, available, builtin, deps, release, &mut seen, &mut out)?;
    }
    Ok(out)
}

/// Unpacks the kernel package into `work` and collects its parts.
pub fn build(
    pkg: &Package,
    debs: &Path,
    work: &Path,
    modules: &[String],
    want_vmlinux: bool,
) -> Result<KernelParts, ImageError> {
    let deb_file = deb::download(pkg, debs)?;
    let root = work.join("kernel-deb");
    deb::extract(&deb_file, &root)?;
    let boot = root.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .map_err(|e| ImageError::io(&boot, e))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")))
        .ok_or_else(|| ImageError::Kernel(format!("package {} has no /boot/vmlinuz-*", pkg.name)))?;
    let release = vmlinuz.file_name().and_then(|n| n.to_str()).unwrap_or("").trim_start_matches("vmlinuz-").to_string();
    let moddir = root.join("lib/modules").join(&release);
    let mut available = HashMap::new();
    index_modules(&moddir.join("kernel"), &mut available);
    let builtin: HashSet<String> = std::fs::read_to_string(moddir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| module_name(Path::new(l)))
        .collect();
    let order = load_order(modules, &available, &builtin, &depends_of, &release)?;

    let mut cpio = CpioWriter::new(Vec::new());
    let io = |e: std::io::Error| ImageError::io(work, e);
    let mut dirs = BTreeMap::new();
    let mut list = String::new();
    for name in &order {
        let src = &available[name];
        let rel = src
            .strip_prefix(&root)
            .map_err(|_| ImageError::Kernel(format!("module path {} escapes", src.display())))?;
        let dest = format!("/{}", rel.display());
        let mut d = Path::new(&dest).parent();
        while let Some(p) = d {
            if p != Path::new("/") {
                dirs.insert(p.display().to_string(), ());
            }
            d = p.parent();
        }
        list.push_str(&dest);
        list.push('\n');
    }
    for d in dirs.keys() {
        cpio.dir(d, 0o755).map_err(io)?;
    }
    for name in &order {
        let src = &available[name];
        let rel = src.strip_prefix(&root).unwrap_or(src);
        let data = std::fs::read(src).map_err(|e| ImageError::io(src, e))?;
        cpio.file(&format!("/{}", rel.display()), 0o644, &data).map_err(io)?;
    }
    cpio.dir("/etc", 0o755).map_err(io)?;
    cpio.dir("/etc/den", 0o755).map_err(io)?;
    cpio.file(MODULE_LIST, 0o644, list.as_bytes()).map_err(io)?;
    let modules_cpio = cpio.finish().map_err(io)?;

    let vmlinux = if want_vmlinux {
        let bz = std::fs::read(&vmlinuz).map_err(|e| ImageError::io(&vmlinuz, e))?;
        Some(crate::vmlinux::extract(&bz)?)
    } else {
        None
    };
    Ok(KernelParts { release, vmlinuz, modules_cpio, load_order: order, vmlinux })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_load_first_and_builtins_are_skipped() {
        let avail: HashMap<String, PathBuf> = ["virtio_blk", "virtio", "virtio_ring", "virtio_mmio"]
            .iter()
            .map(|n| (n.to_string(), PathBuf::from(*n)))
            .collect();
        let deps = |p: &Path| -> Result<Vec<String>, ImageError> {
            Ok(match p.to_str().unwrap() {
                "virtio_blk" => vec!["virtio".into(), "virtio_ring".into()],
                "virtio_mmio" => vec!["virtio".into(), "virtio-ring".into()],
                "virtio_ring" => vec!["virtio".into()],
                _ => vec![],
            })
        };
        let builtin = HashSet::new();
        let order = load_order(&["virtio_mmio".into(), "virtio_blk".into()], &avail, &builtin, &deps, "r").unwrap();
        assert_eq!(order, ["virtio", "virtio_ring", "virtio_mmio", "virtio_blk"]);
        let builtin: HashSet<String> = ["virtio".to_string()].into();
        let order = load_order(&["virtio_ring".into()], &avail, &builtin, &deps, "r").unwrap();
        assert_eq!(order, ["virtio_ring"]);
        let err = load_order(&["nope".into()], &avail, &builtin, &deps, "r").unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }
}
