//! Where the CLI keeps things, and where it finds the static guest agent.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// The CLI's directories.
pub(crate) struct Paths {
    /// Cache root (`~/.cache/den`).
    pub cache: PathBuf,
    /// Downloaded Debian packages (`$DEN_DOWNLOAD_DIR`, default: the cache root).
    pub downloads: PathBuf,
}

impl Paths {
    /// Resolves the cache directory from the flag, `$DEN_CACHE_DIR` or `$HOME/.cache/den`.
    pub(crate) fn new(cache: Option<PathBuf>) -> Paths {
        let cache = cache.unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
            home.join(".cache/den")
        });
        let downloads = std::env::var_os("DEN_DOWNLOAD_DIR").map(PathBuf::from).unwrap_or_else(|| cache.clone());
        Paths { cache, downloads }
    }

    /// The image store.
    pub(crate) fn store(&self) -> PathBuf {
        self.cache.join("store")
    }
}

fn usable_agent(p: &Path) -> bool {
    std::fs::read(p).map(|b| den_images::elf::is_static(&b)).unwrap_or(false)
}

/// Finds a statically linked den-agent: `--agent`, `$DEN_AGENT_BIN`, next to `den`, the cargo
/// static target directory, or `/usr/lib/den/den-agent`.
pub(crate) fn agent_binary(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag.map(Path::to_path_buf).or_else(|| std::env::var_os("DEN_AGENT_BIN").map(PathBuf::from)) {
        if !usable_agent(&p) {
            bail!("{} is not a statically linked den-agent; build one with `make agent`", p.display());
        }
        return Ok(p);
    }
    let exe = std::env::current_exe().context("cannot locate the den binary")?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let mut candidates = vec![dir.join("den-agent")];
    if let (Some(profile), Some(target)) = (dir.file_name(), dir.parent()) {
        candidates.push(target.join("x86_64-unknown-linux-gnu").join(profile).join("den-agent"));
        candidates.push(target.join("x86_64-unknown-linux-gnu/release/den-agent"));
    }
    candidates.push(PathBuf::from("/usr/lib/den/den-agent"));
    candidates.into_iter().find(|p| usable_agent(p)).with_context(|| {
        "no statically linked den-agent found next to `den`, in target/x86_64-unknown-linux-gnu/ or /usr/lib/den; \
         build it with `make agent` or pass --agent"
            .to_string()
    })
}
