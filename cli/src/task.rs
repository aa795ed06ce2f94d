//! `den task ...`: dend's tasks (long operations with a log and a final status).

use crate::client::{request, typed};
use clap::Subcommand;
use den_api_types::Task;
use std::path::Path;
use std::process::ExitCode;

/// Task commands.
#[derive(Subcommand)]
pub(crate) enum TaskCmd {
    /// List recent tasks, newest first.
    Ls {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show a task's log and outcome.
    Log {
        /// Task id.
        id: String,
    },
    /// Cancel a running create, clone or snapshot task (what it did is undone).
    Cancel {
        /// Task id.
        id: String,
    },
}

/// Runs a `den task` command.
pub(crate) fn run(cmd: TaskCmd, socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        TaskCmd::Cancel { id } => {
            let r = request(socket, "POST", &format!("/api/v1/tasks/{id}/cancel"), None)?.ok()?;
            println!("{}", if json { r.to_string() } else { format!("cancelling task {id}") });
            Ok(ExitCode::SUCCESS)
        }
        TaskCmd::Ls { limit } => {
            let tasks = request(socket, "GET", &format!("/api/v1/tasks?limit={limit}"), None)?.ok()?;
            if json {
                println!("{tasks}");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<32} {:<10} {:<20} {:<8} ERROR", "ID", "KIND", "TARGET", "STATUS");
            for t in typed::<Vec<Task>>(&tasks, "the task list")? {
                let error = t.error.as_deref().unwrap_or("");
                println!("{:<32} {:<10} {:<20} {:<8} {error}", t.id, t.kind, t.target, t.status.as_str());
            }
            Ok(ExitCode::SUCCESS)
        }
        TaskCmd::Log { id } => {
            let t = request(socket, "GET", &format!("/api/v1/tasks/{id}"), None)?.ok()?;
            if json {
                println!("{t}");
            } else {
                let t: Task = typed(&t, &format!("task {id}"))?;
                print!("{}", t.log);
                println!("status: {}", t.status.as_str());
                if let Some(e) = t.error {
                    println!("error: {e}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
