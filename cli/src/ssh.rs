//! `den ssh ...`: the SSH gateway's sessions and their recordings.

use crate::client::{request, request_raw, Reply};
use clap::Subcommand;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// SSH gateway commands.
#[derive(Subcommand)]
pub(crate) enum SshCmd {
    /// List sessions through the gateway, newest first (yours; admins see everyone's).
    Ls {
        /// Only this user's (admins).
        #[arg(long)]
        user: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Print an interactive session's recording (asciicast v2: `asciinema play FILE`).
    Recording {
        /// Session id (from `den ssh ls`).
        id: String,
    },
}

/// Runs a `den ssh` command.
pub(crate) fn run(cmd: SshCmd, socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        SshCmd::Ls { user, limit } => {
            let q = user.map(|u| format!("&user={u}")).unwrap_or_default();
            let list = request(socket, "GET", &format!("/api/v1/ssh/sessions?limit={limit}{q}"), None)?.ok()?;
            if json {
                println!("{list}");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<32} {:<10} {:<12} {:<9} {:>6} {:>5} {:<3} COMMAND",
                "ID", "USER", "VM", "KIND", "SECS", "EXIT", "REC"
            );
            for s in list.as_array().into_iter().flatten() {
                let secs = match (s["started"].as_i64(), s["ended"].as_i64()) {
                    (Some(a), Some(b)) => (b - a).to_string(),
                    _ => "-".into(),
                };
                println!(
                    "{:<32} {:<10} {:<12} {:<9} {:>6} {:>5} {:<3} {}",
                    s["id"].as_str().unwrap_or("?"),
                    s["user"].as_str().unwrap_or("?"),
                    s["vm"].as_str().unwrap_or("?"),
                    s["kind"].as_str().unwrap_or("?"),
                    secs,
                    s["exit"].as_i64().map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
                    if s["recorded"] == Value::Bool(true) { "yes" } else { "no" },
                    s["command"].as_str().unwrap_or(""),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SshCmd::Recording { id } => {
            let (status, raw) = request_raw(socket, "GET", &format!("/api/v1/ssh/sessions/{id}/recording"), None)?;
            if !(200..300).contains(&status) {
                let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
                Reply { status, body }.ok()?;
            }
            std::io::stdout().write_all(&raw)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
