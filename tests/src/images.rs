//! Finding the static agent and building the default images for tests.

use den_images::{Builder, ImageRecord, ImageSpec, Progress, SilentProgress, Store};
use std::path::PathBuf;

/// The workspace's `target/` directory.
pub fn target_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// The statically linked agent built by `make agent` (or `$DEN_AGENT_BIN`).
pub fn agent_binary() -> PathBuf {
    static_binary("den-agent", "DEN_AGENT_BIN")
}

/// The statically linked den-vmm built by `make agent` (or `$DEN_VMM_STATIC_BIN`), for the KVM lab.
pub fn vmm_static_binary() -> PathBuf {
    static_binary("den-vmm", "DEN_VMM_STATIC_BIN")
}

/// The statically linked den-jailer built by `make agent` (or `$DEN_JAILER_STATIC_BIN`): dend
/// in the KVM lab starts den-vmm through it.
pub fn jailer_static_binary() -> PathBuf {
    static_binary("den-jailer", "DEN_JAILER_STATIC_BIN")
}

/// The statically linked dend that `make agent` builds (it runs inside the KVM lab's guest).
pub fn dend_static_binary() -> PathBuf {
    static_binary("dend", "DEN_DEND_STATIC_BIN")
}

/// The statically linked `den` CLI that `make agent` builds (for the KVM lab's guest).
pub fn den_cli_static_binary() -> PathBuf {
    static_binary("den", "DEN_CLI_STATIC_BIN")
}

fn static_binary(name: &str, env: &str) -> PathBuf {
    let p = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("x86_64-unknown-linux-gnu/release").join(name));
    assert!(
        p.is_file(),
        "static {name} not found at {}: run `make agent` (or `make test`, which builds it)",
        p.display()
    );
    p
}

/// Download caches shared by all test stores (Debian packages), so a cold store build is
/// measured without re-downloading.
pub fn download_cache() -> PathBuf {
    std::env::var_os("DEN_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/den"))
}

/// The store the tests share across runs (content-addressed, so it is safe to reuse).
pub fn shared_store() -> Store {
    let root = download_cache().join("test-store");
    Store::open(&root).unwrap_or_else(|e| panic!("cannot open test store {}: {e}", root.display()))
}

/// Builds a built-in image into `store` and returns its record and the store.
pub fn build_builtin(store: &Store, name: &str) -> ImageRecord {
    build_with(store, name, &SilentProgress).unwrap_or_else(|e| panic!("building {name}: {e}"))
}

/// The `den` CLI binary built by `cargo build --workspace`.
pub fn den_cli() -> PathBuf {
    let p = target_dir().join("debug/den");
    assert!(p.is_file(), "den CLI not found at {}: run `cargo build --workspace` (or `make test`)", p.display());
    p
}

/// Records which stages were cache hits, and warnings.
#[derive(Default)]
pub struct Recorder {
    /// (stage, cached, seconds) per finished stage.
    pub ends: std::sync::Mutex<Vec<(String, bool, f64)>>,
    /// Warnings.
    pub warnings: std::sync::Mutex<Vec<String>>,
}

impl Progress for Recorder {
    fn begin(&self, _: &str, _: &str) {}
    fn line(&self, _: &str, _: &str) {}
    fn end(&self, stage: &str, cached: bool, secs: f64) {
        self.ends.lock().unwrap_or_else(|p| p.into_inner()).push((stage.into(), cached, secs));
    }
    fn warn(&self, msg: &str) {
        self.warnings.lock().unwrap_or_else(|p| p.into_inner()).push(msg.into());
    }
}

/// Builds the built-in image `name` into `store`, reporting to `rec`.
pub fn build_recorded(store: &Store, name: &str, rec: &Recorder) -> Result<ImageRecord, den_images::ImageError> {
    build_with(store, name, rec)
}

fn build_with(store: &Store, name: &str, progress: &dyn Progress) -> Result<ImageRecord, den_images::ImageError> {
    let text = den_images::spec::BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).expect("built-in spec");
    build_spec_text(store, text, name, progress)
}

/// Builds an image from spec text (`origin` names it in errors).
pub fn build_spec_text(
    store: &Store,
    text: &str,
    origin: &str,
    progress: &dyn Progress,
) -> Result<ImageRecord, den_images::ImageError> {
    let spec = ImageSpec::parse(text, origin)?;
    Builder::new(store.clone(), &download_cache(), &agent_binary(), progress).build(&spec, text)
}
