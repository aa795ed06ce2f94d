//! `den system ...`: the business OS through dend's API: status, update, rollback.

use crate::client::{request, typed, wait_task};
use crate::paths::{self, Paths};
use anyhow::{bail, Context};
use clap::Subcommand;
use den_api_types::system::{Outcome, Phase, Slot, SystemState, SystemStatus, UpdateAccepted};
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Business OS commands.
#[derive(Subcommand)]
pub(crate) enum SystemCmd {
    /// Both slots, the phase, health checks and every update with its outcome.
    Status {
        /// How many health checks to show.
        #[arg(long, default_value_t = 10)]
        health: u32,
    },
    /// Install a new OS: an image name (`den image ls`) or a spec file (`*.yml`, built first).
    /// It goes into the inactive slot, boots, and commits after a window of passing health
    /// checks; otherwise the previous OS comes back by itself.
    Update {
        /// Image name, or a spec file path.
        image: String,
        /// Return once the slot is written and the trial has begun.
        #[arg(long)]
        detach: bool,
        /// Statically linked den-agent for a spec build (default: found next to `den`).
        #[arg(long)]
        agent: Option<std::path::PathBuf>,
    },
    /// Go back: ends a trial, or puts the other slot's OS on trial again.
    Rollback {
        /// Return at once.
        #[arg(long)]
        detach: bool,
    },
}

/// Runs a `den system` command.
pub(crate) fn run(cmd: SystemCmd, socket: &Path, paths: &Paths, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        SystemCmd::Status { health } => {
            let s = request(socket, "GET", &format!("/api/v1/system?health={health}"), None)?.ok()?;
            if json {
                println!("{s}");
            } else {
                print_status(&typed::<SystemStatus>(&s, "the business OS's status")?);
            }
            Ok(ExitCode::SUCCESS)
        }
        SystemCmd::Update { image, detach, agent } => {
            let name = if image.contains('/') || image.ends_with(".yml") || image.ends_with(".yaml") {
                let store = den_images::store::Store::open(&paths.store())
                    .with_context(|| format!("cannot open the image store at {}", paths.store().display()))?;
                let agent = paths::agent_binary(agent.as_deref())?;
                crate::image::build_one(&store, paths, &agent, &image, json)?.name
            } else {
                image
            };
            let r = request(socket, "POST", "/api/v1/system/update", Some(&json!({ "image": name })))?.ok()?;
            let started = typed::<UpdateAccepted>(&r, "a started update")?;
            if !json {
                println!("update {}: writing image {name} into the inactive slot", started.update);
            }
            if let Some(accepted) = &started.task {
                wait_task(socket, &accepted.task)?;
            }
            finish(socket, started.update, detach, json)
        }
        SystemCmd::Rollback { detach } => {
            let r = request(socket, "POST", "/api/v1/system/rollback", None)?.ok()?;
            let started = typed::<UpdateAccepted>(&r, "a started rollback")?;
            if !json {
                println!("update {}: rolling back", started.update);
            }
            finish(socket, started.update, detach, json)
        }
    }
}

/// Follows update `id` until it ends (unless `detach`), printing its steps.
fn finish(socket: &Path, id: u64, detach: bool, json: bool) -> anyhow::Result<ExitCode> {
    let mut shown = 0;
    loop {
        let s = request(socket, "GET", "/api/v1/system?health=0", None)?.ok()?;
        let s = typed::<SystemStatus>(&s, "the business OS's status")?;
        let Some(u) = s.update(id) else { bail!("update {id} is no longer recorded") };
        if !json {
            for st in u.steps.iter().skip(shown) {
                println!("  {}  {}", clock(st.time), st.what);
            }
        }
        shown = u.steps.len();
        if detach || u.outcome != Outcome::InProgress {
            if json {
                println!("{}", serde_json::to_string(u)?);
            }
            return match u.outcome {
                Outcome::Committed | Outcome::InProgress => Ok(ExitCode::SUCCESS),
                Outcome::RolledBack => bail!("update {id} was rolled back: {}", u.why),
                Outcome::Failed => bail!("update {id} failed: {}", u.why),
            };
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `HH:MM:SS` (UTC) of a time in ms since the Unix epoch.
fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

fn slot_line(st: &SystemState, slot: Slot) -> String {
    let mark = if st.active == slot { "*" } else { " " };
    let name = slot.as_str().to_uppercase();
    let Some(info) = st.slot(slot) else { return format!("{name:<4} {mark}  (empty)") };
    let version = if info.version.is_empty() { "-" } else { &info.version };
    format!(
        "{name:<4} {mark}  {:<14} {:<10} {:<22} {}",
        info.image,
        version,
        info.kernel_release,
        info.spec_digest.get(..12).unwrap_or(&info.spec_digest)
    )
}

fn phase_line(p: &Phase) -> String {
    match p {
        Phase::Steady => "steady".into(),
        Phase::Writing { update, slot } => format!("update {update} is writing slot {}", slot.as_str().to_uppercase()),
        Phase::Trial { update, slot, failed_boots, healthy_since, .. } => format!(
            "update {update} on trial in slot {} ({failed_boots} failed boot(s); {})",
            slot.as_str().to_uppercase(),
            if healthy_since.is_none() { "not healthy yet" } else { "healthy, in its window" }
        ),
        Phase::RollingBack { update, why, .. } => format!("update {update} rolling back: {why}"),
    }
}

fn print_status(s: &SystemStatus) {
    println!("business OS: VM {} ({})", s.vm, s.state);
    if let Some(p) = &s.problem {
        println!("  problem: {p}");
    }
    println!("phase: {}", phase_line(&s.record.phase));
    println!("\n{:<4} {:<2} {:<14} {:<10} {:<22} SPEC", "SLOT", "", "IMAGE", "VERSION", "KERNEL");
    println!("{}\n{}", slot_line(&s.record, Slot::A), slot_line(&s.record, Slot::B));
    if !s.health.is_empty() {
        println!("\nHEALTH (newest last)");
        for h in &s.health {
            let ok = if h.ok { "ok  " } else { "FAIL" };
            println!("  {}  {ok} slot {}  {}", clock(h.time), h.slot.to_uppercase(), h.detail);
        }
    }
    if !s.record.updates.is_empty() {
        println!("\n{:<4} {:<9} {:<18} {:<18} {:<9} {:<12} WHY", "ID", "KIND", "FROM", "TO", "TOOK", "OUTCOME");
        for u in s.record.updates.iter().rev().take(20) {
            let took = match u.ended {
                Some(end) => format!("{:.1} s", end.saturating_sub(u.started) as f64 / 1000.0),
                None => "-".into(),
            };
            println!(
                "{:<4} {:<9} {:<18} {:<18} {:<9} {:<12} {}",
                u.id,
                u.kind,
                u.from_label,
                u.to_label,
                took,
                u.outcome.as_str(),
                u.why
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_and_slots_read_plainly() {
        let st: SystemState = serde_json::from_value(json!({"active": "b",
            "a": {"image": "system", "version": "1", "kernel_release": "6.1", "spec_digest": "0123456789abcdef",
                  "cmdline": "", "artifacts": {}, "written": 0},
            "b": null, "booted": null, "updates": [],
            "phase": {"phase": "trial", "update": 3, "slot": "a", "since": null, "failed_boots": 1, "healthy_since": null}}))
        .unwrap();
        assert_eq!(phase_line(&st.phase), "update 3 on trial in slot A (1 failed boot(s); not healthy yet)");
        assert!(slot_line(&st, Slot::A).contains("system         1"));
        assert!(slot_line(&st, Slot::B).contains("*  (empty)"));
        assert_eq!(clock(3_723_000), "01:02:03");
    }
}
