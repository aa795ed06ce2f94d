//! Boot to agent for the `dev` image through dend (see `den_tests::lab_dev`), on den-vmm and on
//! QEMU (`-M microvm -accel kvm`, dend's QEMU engine) in the same lab: each engine's VM is created
//! once (a copy of the root disk), then each round starts it, times `den vm start` to the agent's
//! first answer (systemd, then den-agent as a service), and stops it again.

use den_tests::lab::Lab;
use den_tests::lab_dev::boot_script;
use std::time::Duration;

/// The engines, in the table's order, as `den vm create --engine` names them.
pub(crate) const ENGINES: [&str; 2] = ["vmm", "qemu"];

/// The longest one round may take (the first also creates the VM) before the lab counts as wedged.
const ROUND_LIMIT: Duration = Duration::from_secs(400);

/// One boot of `engine`'s VM: ms from `den vm start` to the agent; `Err` when the lab wedged or
/// the boot failed.
pub(crate) async fn run(lab: &Lab, engine: &str) -> Result<f64, String> {
    let vm = format!("dev-{engine}");
    // QEMU must run with KVM here, as den-vmm does, or the row compares nothing.
    // (Each process's arguments one per line: the line after an exact `-accel`.)
    let accel = "for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/cmdline 2>/dev/null | grep -x -A1 -- -accel; done \
                 | tail -1 | sed 's/^/LAB-ACCEL=/'";
    let script = format!("{}\n{accel}\nden vm stop {vm} >/dev/null || exit 5\n", boot_script(&vm, engine));
    let out = lab.try_sh(&script, ROUND_LIMIT).await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    match text.lines().find_map(|l| l.strip_prefix("LAB-AGENT-MS=")?.trim().parse().ok()) {
        Some(ms) if out.code == Some(0) && (engine == "vmm" || text.contains("LAB-ACCEL=kvm\n")) => Ok(ms),
        _ => Err(format!("dev on {engine} failed: {}", lab.describe(&out))),
    }
}
