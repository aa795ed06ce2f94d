//! Business OS images for tests and benchmarks: the shipped `system` spec, and variants of it
//! that are good (another version), whose kernel panics after every boot, or whose init never
//! starts the agent. They share the shipped spec's root file system (cached), so each costs
//! only a new ext4 disk.

use crate::dend::Dend;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The shipped spec with another `name` and `version`, then `edit`ed.
pub fn variant(name: &str, version: &str, edit: impl Fn(String) -> String) -> String {
    let (_, base) = den_images::spec::BUILTIN.iter().find(|(n, _)| *n == "system").expect("the system spec");
    let text = base
        .replace("name: system\n", &format!("name: {name}\n"))
        .replace("version: \"1.0\"", &format!("version: \"{version}\""))
        .replace("DEN_OS_VERSION=1.0", &format!("DEN_OS_VERSION={version}"));
    edit(text)
}

/// An OS that panics its kernel three seconds after its services start, every boot.
pub fn panicking(text: String) -> String {
    text.replace(
        "  files:\n",
        "  files:\n    - path: /etc/den/services/panic.toml\n      contents: |\n        exec = [\"/bin/sh\", \"-c\", \"sleep 3; echo c > /proc/sysrq-trigger\"]\n",
    )
}

/// An OS whose init never starts the agent.
pub fn mute(text: String) -> String {
    text.replace("den.console=shell", "den.console=shell den.init=/sbin/os-init").replace(
        "  files:\n",
        "  files:\n    - path: /sbin/os-init\n      mode: \"0755\"\n      contents: |\n        #!/bin/sh\n        exec /bin/busybox sleep 100000\n",
    )
}

/// Builds `system` and the variants `system-v2` (2.0), `system-panic` and `system-mute` into
/// the shared test store.
pub fn build_images() {
    let store = crate::images::shared_store();
    crate::images::build_builtin(&store, "system");
    for (name, text) in [
        ("system-v2", variant("system-v2", "2.0", |t| t)),
        ("system-panic", variant("system-panic", "3.0-panics", panicking)),
        ("system-mute", variant("system-mute", "3.0-mute", mute)),
    ] {
        crate::images::build_spec_text(&store, &text, name, &den_images::SilentProgress)
            .unwrap_or_else(|e| panic!("building {name}: {e}"));
    }
}

/// `den system status` as JSON, with the newest `health` checks.
pub fn status(d: &Dend) -> Value {
    let (code, out, err) = d.den(&["--json", "system", "status", "--health", "5"]);
    assert_eq!(code, 0, "{err}\n{}", d.log());
    serde_json::from_str(&out).expect("status JSON")
}

/// Waits until `cond` holds for the status, for up to `limit`.
pub fn wait_status(d: &Dend, limit: Duration, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let t = Instant::now();
    loop {
        let s = status(d);
        if cond(&s) {
            return s;
        }
        assert!(t.elapsed() < limit, "never {what}:\n{s:#}\n--- dend log:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Running, and its newest check passed.
pub fn healthy(s: &Value) -> bool {
    s["state"] == "running" && s["health"].as_array().and_then(|h| h.last()).is_some_and(|h| h["ok"] == true)
}

/// The newest update's record.
pub fn last_update(s: &Value) -> Value {
    s["updates"].as_array().and_then(|u| u.last()).cloned().unwrap_or_default()
}

/// The time (ms) of an update's first step whose text starts with `prefix`.
pub fn step_time(update: &Value, prefix: &str) -> Option<u64> {
    update["steps"].as_array()?.iter().find(|s| s["what"].as_str().is_some_and(|w| w.starts_with(prefix)))?["time"]
        .as_u64()
}
