//! `den system ...`: the business OS through dend's API: status, update, rollback.

use crate::client::{request, wait_task};
use crate::paths::{self, Paths};
use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::{json, Value};
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
                print_status(&s);
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
            let update = r["update"].as_u64().unwrap_or(0);
            if !json {
                println!("update {update}: writing image {name} into the inactive slot");
            }
            wait_task(socket, &crate::client::typed::<den_api_types::Accepted>(&r, "a started task")?.task)?;
            finish(socket, update, detach, json)
        }
        SystemCmd::Rollback { detach } => {
            let r = request(socket, "POST", "/api/v1/system/rollback", None)?.ok()?;
            let update = r["update"].as_u64().unwrap_or(0);
            if !json {
                println!("update {update}: rolling back");
            }
            finish(socket, update, detach, json)
        }
    }
}

/// Follows update `id` until it ends (unless `detach`), printing its steps.
fn finish(socket: &Path, id: u64, detach: bool, json: bool) -> anyhow::Result<ExitCode> {
    let mut shown = 0;
    loop {
        let s = request(socket, "GET", "/api/v1/system?health=0", None)?.ok()?;
        let u = s["updates"].as_array().into_iter().flatten().find(|u| u["id"].as_u64() == Some(id)).cloned();
        let Some(u) = u else { bail!("update {id} is no longer recorded") };
        let steps = u["steps"].as_array().cloned().unwrap_or_default();
        if !json {
            for st in steps.iter().skip(shown) {
                println!("  {}  {}", clock(st["time"].as_u64().unwrap_or(0)), st["what"].as_str().unwrap_or(""));
            }
        }
        shown = steps.len();
        let outcome = u["outcome"].as_str().unwrap_or("?");
        if detach || outcome != "in_progress" {
            if json {
                println!("{u}");
            }
            return match outcome {
                "committed" | "in_progress" => Ok(ExitCode::SUCCESS),
                "rolled_back" => bail!("update {id} was rolled back: {}", u["why"].as_str().unwrap_or("")),
                _ => bail!("update {id} failed: {}", u["why"].as_str().unwrap_or("")),
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

fn slot_line(s: &Value, slot: &str) -> String {
    let info = &s[slot];
    let active = s["active"].as_str() == Some(slot);
    let mark = if active { "*" } else { " " };
    if info.is_null() {
        return format!("{:<4} {mark}  (empty)", slot.to_uppercase());
    }
    let version = info["version"].as_str().filter(|v| !v.is_empty()).unwrap_or("-");
    format!(
        "{:<4} {mark}  {:<14} {:<10} {:<22} {}",
        slot.to_uppercase(),
        info["image"].as_str().unwrap_or("?"),
        version,
        info["kernel_release"].as_str().unwrap_or(""),
        info["spec_digest"].as_str().unwrap_or("").get(..12).unwrap_or("")
    )
}

fn phase_line(s: &Value) -> String {
    let p = &s["phase"];
    let slot = p["slot"].as_str().unwrap_or("?").to_uppercase();
    match p["phase"].as_str() {
        Some("steady") => "steady".into(),
        Some("writing") => format!("update {} is writing slot {slot}", p["update"]),
        Some("trial") => format!(
            "update {} on trial in slot {slot} ({} failed boot(s); {})",
            p["update"],
            p["failed_boots"],
            if p["healthy_since"].is_null() { "not healthy yet" } else { "healthy, in its window" }
        ),
        Some("rolling_back") => format!("update {} rolling back: {}", p["update"], p["why"].as_str().unwrap_or("")),
        _ => p.to_string(),
    }
}

fn print_status(s: &Value) {
    println!("business OS: VM {} ({})", s["vm"].as_str().unwrap_or("?"), s["state"].as_str().unwrap_or("?"));
    if let Some(p) = s["problem"].as_str() {
        println!("  problem: {p}");
    }
    println!("phase: {}", phase_line(s));
    println!("\n{:<4} {:<2} {:<14} {:<10} {:<22} SPEC", "SLOT", "", "IMAGE", "VERSION", "KERNEL");
    println!("{}\n{}", slot_line(s, "a"), slot_line(s, "b"));
    let health = s["health"].as_array().cloned().unwrap_or_default();
    if !health.is_empty() {
        println!("\nHEALTH (newest last)");
        for h in &health {
            let ok = if h["ok"].as_bool() == Some(true) { "ok  " } else { "FAIL" };
            let slot = h["slot"].as_str().unwrap_or("?").to_uppercase();
            println!(
                "  {}  {ok} slot {slot}  {}",
                clock(h["time"].as_u64().unwrap_or(0)),
                h["detail"].as_str().unwrap_or("")
            );
        }
    }
    let updates = s["updates"].as_array().cloned().unwrap_or_default();
    if !updates.is_empty() {
        println!("\n{:<4} {:<9} {:<18} {:<18} {:<9} {:<12} WHY", "ID", "KIND", "FROM", "TO", "TOOK", "OUTCOME");
        for u in updates.iter().rev().take(20) {
            let took = match (u["started"].as_u64(), u["ended"].as_u64()) {
                (Some(a), Some(b)) => format!("{:.1} s", b.saturating_sub(a) as f64 / 1000.0),
                _ => "-".into(),
            };
            println!(
                "{:<4} {:<9} {:<18} {:<18} {:<9} {:<12} {}",
                u["id"].as_u64().unwrap_or(0),
                u["kind"].as_str().unwrap_or(""),
                u["from_label"].as_str().unwrap_or(""),
                u["to_label"].as_str().unwrap_or(""),
                took,
                u["outcome"].as_str().unwrap_or(""),
                u["why"].as_str().unwrap_or("")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_and_slots_read_plainly() {
        let s = json!({"active": "b", "a": {"image": "system", "version": "1", "kernel_release": "6.1",
            "spec_digest": "0123456789abcdef"}, "b": null,
            "phase": {"phase": "trial", "update": 3, "slot": "a", "failed_boots": 1, "healthy_since": null}});
        assert_eq!(phase_line(&s), "update 3 on trial in slot A (1 failed boot(s); not healthy yet)");
        assert!(slot_line(&s, "a").contains("system         1"));
        assert!(slot_line(&s, "b").contains("*  (empty)"));
        assert_eq!(clock(3_723_000), "01:02:03");
    }
}
