//! `den docker ...`: the Docker bridge: its status, and a `docker` CLI context named `den` so
//! the plain `docker` command uses it.

use crate::client::{request, typed};
use anyhow::Context;
use clap::Subcommand;
use den_api_types::DockerStatus;
use std::path::Path;
use std::process::{Command, ExitCode};

/// Docker bridge commands.
#[derive(Subcommand)]
pub(crate) enum DockerCmd {
    /// Where the Docker socket is, the sandbox VM's state, and the policy's settings.
    Status,
    /// Create (or update) the `docker` CLI context `den` for this socket and make it the current
    /// one, so `docker ps` needs no flags.
    Context {
        /// Only create or update it; do not switch to it.
        #[arg(long)]
        no_use: bool,
    },
}

fn docker(args: &[&str]) -> anyhow::Result<std::process::Output> {
    Command::new("docker")
        .args(args)
        .output()
        .context("running the `docker` CLI (install the docker.io or docker-cli package)")
}

/// Runs a `den docker` command.
pub(crate) fn run(cmd: DockerCmd, socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let raw = request(socket, "GET", "/api/v1/docker", None)?.ok()?;
    let status = typed::<DockerStatus>(&raw, "the Docker bridge's status")?;
    if !status.enabled {
        anyhow::bail!("the Docker bridge is off in dend's configuration ([docker] enabled = false)");
    }
    // A bridge that is on but not described did not fit the type (read as absent under flatten).
    let Some(bridge) = status.bridge else {
        anyhow::bail!("dend's answer for the Docker bridge's status is not what this den understands; are den and dend the same version?");
    };
    let sock = bridge.socket.display().to_string();
    match cmd {
        DockerCmd::Status => {
            if json {
                println!("{raw}");
            } else {
                let list = |items: Vec<String>| if items.is_empty() { "none".to_string() } else { items.join(", ") };
                println!("socket:      {sock}");
                println!("sandbox VM:  {} ({})", bridge.vm, bridge.state);
                println!("shared:      {}", list(bridge.share.iter().map(|p| p.display().to_string()).collect()));
                println!("relaxed:     {}", list(bridge.allow.clone()));
                println!("idle stop:   {} s", bridge.idle_stop_secs);
            }
        }
        DockerCmd::Context { no_use } => {
            let host = format!("host=unix://{sock}");
            let exists = docker(&["context", "inspect", "den"])?.status.success();
            let verb = if exists { "update" } else { "create" };
            let out = docker(&["context", verb, "den", "--description", "Den's sandboxed dockerd", "--docker", &host])?;
            if !out.status.success() {
                anyhow::bail!("docker context {verb} den: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            if !no_use {
                let out = docker(&["context", "use", "den"])?;
                if !out.status.success() {
                    anyhow::bail!("docker context use den: {}", String::from_utf8_lossy(&out.stderr).trim());
                }
            }
            println!("docker context `den` -> unix://{sock}{}", if no_use { "" } else { " (now the current one)" });
        }
    }
    Ok(ExitCode::SUCCESS)
}
