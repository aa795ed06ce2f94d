//! `den event ls [--follow]`: the lifecycle and audit log (who did what, when).

use crate::client::{request, typed, websocket};
use clap::Subcommand;
use den_api_types::Event;
use serde_json::Value;
use std::path::Path;
use std::process::ExitCode;

/// Event commands.
#[derive(Subcommand)]
pub(crate) enum EventCmd {
    /// List events (oldest first); --follow keeps printing new ones as they happen.
    Ls {
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Keep going: print events live.
        #[arg(long, short)]
        follow: bool,
    },
}

fn print(e: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{e}");
        return Ok(());
    }
    let e: Event = typed(e, "an event")?;
    println!("{:>6} {:>11} {:<12} {:<22} {:<20} {}", e.seq, e.time, e.user, e.kind, e.target, e.detail);
    Ok(())
}

/// Runs a `den event` command.
pub(crate) fn run(cmd: EventCmd, socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let EventCmd::Ls { after, follow } = cmd;
    if !json {
        println!("{:>6} {:>11} {:<12} {:<22} {:<20} DETAIL", "SEQ", "TIME", "USER", "KIND", "TARGET");
    }
    if !follow {
        let list = request(socket, "GET", &format!("/api/v1/events?after={after}&limit=5000"), None)?.ok()?;
        for e in list.as_array().into_iter().flatten() {
            print(e, json)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut ws = websocket(socket, &format!("/api/v1/events/ws?after={after}"))?;
    loop {
        match ws.read()? {
            tungstenite::Message::Text(t) => print(&serde_json::from_str(&t).unwrap_or(Value::Null), json)?,
            tungstenite::Message::Close(_) => return Ok(ExitCode::SUCCESS),
            _ => {}
        }
    }
}
