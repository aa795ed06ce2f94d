//! `den docker ...`: the Docker bridge: its status, and a `docker` CLI context named `den` so
//! the plain `docker` command uses it.

use crate::client::request;
use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;
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
    let status = request(socket, "GET", "/api/v1/docker", None)?.ok()?;
    if status["enabled"] != true {
        anyhow::bail!("the Docker bridge is off in dend's configuration ([docker] enabled = false)");
    }
    let sock = status["socket"].as_str().unwrap_or_default().to_string();
    match cmd {
        DockerCmd::Status => {
            if json {
                println!("{status}");
            } else {
                let list = |v: &Value| {
                    let items: Vec<String> =
                        v.as_array().into_iter().flatten().filter_map(Value::as_str).map(String::from).collect();
                    if items.is_empty() {
                        "none".to_string()
                    } else {
                        items.join(", ")
                    }
                };
                println!("socket:      {sock}");
                println!(
                    "sandbox VM:  {} ({})",
                    status["vm"].as_str().unwrap_or("?"),
                    status["state"].as_str().unwrap_or("?")
                );
                println!("shared:      {}", list(&status["share"]));
                println!("relaxed:     {}", list(&status["allow"]));
                println!("idle stop:   {} s", status["idle_stop_secs"]);
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
