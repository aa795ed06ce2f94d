//! `den ssh ...`: the SSH gateway's sessions and their recordings.

use crate::client::{request, request_raw, typed, Reply};
use clap::Subcommand;
use den_api_types::SshSession;
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
            for s in typed::<Vec<SshSession>>(&list, "the SSH session list")? {
                let secs = s.ended.map(|end| (end - s.started).to_string()).unwrap_or_else(|| "-".into());
                println!(
                    "{:<32} {:<10} {:<12} {:<9} {:>6} {:>5} {:<3} {}",
                    s.id,
                    s.user,
                    s.vm,
                    s.kind,
                    secs,
                    s.exit.map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
                    if s.recorded { "yes" } else { "no" },
                    s.command,
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
