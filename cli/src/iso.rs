//! `den iso ...`: installation ISOs for VMs that boot through firmware.

use crate::client::{request, typed, wait_task};
use crate::vm::enc;
use clap::Subcommand;
use den_api_types::Iso;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

/// ISO commands.
#[derive(Subcommand)]
pub(crate) enum IsoCmd {
    /// List ISOs.
    Ls,
    /// Copy a file on this host into Den's ISO store (admins).
    Import {
        /// Name to use (`den vm create --iso NAME`).
        name: String,
        /// The .iso file.
        path: std::path::PathBuf,
    },
    /// Remove an ISO no VM uses.
    Rm {
        /// ISO name.
        name: String,
    },
}

/// Runs a `den iso` command.
pub(crate) fn run(cmd: IsoCmd, socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        IsoCmd::Ls => {
            let list = request(socket, "GET", "/api/v1/isos", None)?.ok()?;
            if json {
                println!("{list}");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<32} {:>10}", "NAME", "MiB");
            for i in typed::<Vec<Iso>>(&list, "the ISO list")? {
                println!("{:<32} {:>10}", i.name, i.size >> 20);
            }
            Ok(ExitCode::SUCCESS)
        }
        IsoCmd::Import { name, path } => {
            let abs = std::fs::canonicalize(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let body = json!({"name": name, "path": abs});
            let reply = request(socket, "POST", "/api/v1/isos", Some(&body))?.ok()?;
            let task = crate::client::typed::<den_api_types::Accepted>(&reply, "a started task")?.task;
            let t = wait_task(socket, &task)?;
            println!("{}", if json { serde_json::to_value(&t)?.to_string() } else { format!("imported ISO {name}") });
            Ok(ExitCode::SUCCESS)
        }
        IsoCmd::Rm { name } => {
            let r = request(socket, "DELETE", &format!("/api/v1/isos/{}", enc(&name)), None)?.ok()?;
            println!("{}", if json { r.to_string() } else { format!("removed ISO {name}") });
            Ok(ExitCode::SUCCESS)
        }
    }
}
