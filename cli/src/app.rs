//! `den app ...`: LPK apps through dend's API.

use crate::client::{request, upload, wait_task};
use crate::vm::enc;
use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// App commands.
#[derive(Subcommand)]
pub(crate) enum AppCmd {
    /// Install an .lpk package (v1 ZIP or v2 tar): checked completely, unpacked, each service
    /// given its microVM, then started.
    Install {
        /// The package file.
        file: PathBuf,
        /// Return once the install task has started.
        #[arg(long)]
        detach: bool,
        /// Leave the app stopped.
        #[arg(long)]
        no_start: bool,
    },
    /// Upgrade an installed app to a newer package of it: /lzcapp/var stays; if the new version
    /// does not come up, the old one is put back.
    Upgrade {
        /// The newer package file.
        file: PathBuf,
    },
    /// Start an app's services (in dependency order); ends when the app answers.
    Start {
        /// Package id or subdomain.
        app: String,
    },
    /// Stop an app's services.
    Stop {
        /// Package id or subdomain.
        app: String,
    },
    /// Stop, then start an app.
    Restart {
        /// Package id or subdomain.
        app: String,
    },
    /// Check a package without installing it: what it is, who signed it, what it would run.
    Check {
        /// The package file.
        file: PathBuf,
    },
    /// List installed apps.
    Ls,
    /// Show one app (by package id or subdomain).
    Show {
        /// Package id or subdomain.
        app: String,
    },
    /// Uninstall an app: its VMs, network, rules and files; its data too unless --keep-data.
    Uninstall {
        /// Package id or subdomain.
        app: String,
        /// Keep /lzcapp/var for a later install of the same package.
        #[arg(long)]
        keep_data: bool,
        /// Return once the task has started.
        #[arg(long)]
        detach: bool,
    },
    /// The output of the app's services (their consoles).
    Logs {
        /// Package id or subdomain.
        app: String,
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// The last this many bytes of each service.
        #[arg(long, default_value_t = 65536)]
        bytes: usize,
    },
    /// The app's outbound connection attempts, allowed and denied.
    Traffic {
        /// Package id or subdomain.
        app: String,
        /// At most this many (the newest).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

fn signer(v: &Value) -> String {
    match v["state"].as_str() {
        Some("verified") => format!("signed by {}", join(&v["signers"])),
        Some("unknown_signer") => format!("signed by {} (a key Den does not trust: not verified)", join(&v["signers"])),
        _ => "unsigned".into(),
    }
}

fn join(v: &Value) -> String {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")
}

fn print_check(c: &Value) {
    println!(
        "{} {} (LPK v{}), {}",
        c["package"].as_str().unwrap_or("?"),
        c["version"].as_str().unwrap_or("?"),
        c["format"],
        signer(&c["signed"])
    );
    println!("  subdomain: {}", c["subdomain"].as_str().unwrap_or("?"));
    println!("  services:  {}", join(&c["services"]).replace(", ", " "));
    let perms = &c["permissions"];
    println!("  permissions: required [{}], optional [{}]", join(&perms["required"]), join(&perms["optional"]));
    println!("  {} files, {} MiB unpacked", c["files"], c["unpacked_bytes"].as_u64().unwrap_or(0) >> 20);
    for w in c["warnings"].as_array().into_iter().flatten() {
        println!("  note: {}", w.as_str().unwrap_or(""));
    }
}

/// `POST /api/v1/apps/<app>/<verb>` and waits for its task.
fn lifecycle(socket: &Path, app: &str, verb: &str) -> anyhow::Result<()> {
    let r = request(socket, "POST", &format!("/api/v1/apps/{}/{verb}", enc(app)), None)?.ok()?;
    wait_task(socket, &crate::client::typed::<den_api_types::Accepted>(&r, "a started task")?.task)?;
    Ok(())
}

/// Runs a `den app` command.
pub(crate) fn run(cmd: AppCmd, socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        AppCmd::Install { file, detach, no_start } => {
            let r = upload(socket, "/api/v1/apps", &file)?
                .ok()
                .with_context(|| format!("{} was not installed", file.display()))?;
            let task = crate::client::typed::<den_api_types::Accepted>(&r, "a started task")?.task;
            if !json {
                print_check(&r["check"]);
            }
            let app = r["app"].as_str().unwrap_or_default().to_string();
            if !detach {
                wait_task(socket, &task)?;
                if !json {
                    println!("installed {app}");
                }
                if !no_start {
                    lifecycle(socket, &app, "start")?;
                    if !json {
                        println!("started {app}");
                    }
                }
            }
            match (json, detach) {
                (true, _) => println!("{r}"),
                (false, true) => println!("installing {app}: task {task} (`den task log {task}`)"),
                (false, false) => {}
            }
        }
        AppCmd::Upgrade { file } => {
            let r = upload(socket, "/api/v1/apps?upgrade=true", &file)?
                .ok()
                .with_context(|| format!("{} was not installed", file.display()))?;
            if !json {
                print_check(&r["check"]);
            }
            wait_task(socket, &crate::client::typed::<den_api_types::Accepted>(&r, "a started task")?.task)?;
            let app = r["app"].as_str().unwrap_or_default();
            println!("{}", if json { r.to_string() } else { format!("upgraded {app}") });
        }
        AppCmd::Start { app } => {
            lifecycle(socket, &app, "start")?;
            println!("started {app}");
        }
        AppCmd::Stop { app } => {
            lifecycle(socket, &app, "stop")?;
            println!("stopped {app}");
        }
        AppCmd::Restart { app } => {
            lifecycle(socket, &app, "stop")?;
            lifecycle(socket, &app, "start")?;
            println!("restarted {app}");
        }
        AppCmd::Check { file } => {
            let r = upload(socket, "/api/v1/apps?dry_run=true", &file)?
                .ok()
                .with_context(|| format!("{} was refused", file.display()))?;
            if json {
                println!("{r}");
            } else {
                print_check(&r);
                println!("the package passed every check");
            }
        }
        AppCmd::Ls => {
            let apps = request(socket, "GET", "/api/v1/apps", None)?.ok()?;
            if json {
                println!("{apps}");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<36} {:<10} {:<16} {:<12} SIGNATURE", "PACKAGE", "VERSION", "SUBDOMAIN", "STATE");
            for a in apps.as_array().into_iter().flatten() {
                println!(
                    "{:<36} {:<10} {:<16} {:<12} {}",
                    a["package"].as_str().unwrap_or("?"),
                    a["version"].as_str().unwrap_or("?"),
                    a["subdomain"].as_str().unwrap_or("?"),
                    a["state"].as_str().unwrap_or("?"),
                    signer(&a["signed"]),
                );
            }
        }
        AppCmd::Show { app } => {
            let a = request(socket, "GET", &format!("/api/v1/apps/{}", enc(&app)), None)?.ok()?;
            if json {
                println!("{a}");
            } else {
                println!("{}", serde_json::to_string_pretty(&a)?);
            }
        }
        AppCmd::Uninstall { app, keep_data, detach } => {
            let path = format!("/api/v1/apps/{}?keep_data={keep_data}", enc(&app));
            let r = request(socket, "DELETE", &path, None)?.ok()?;
            let task = crate::client::typed::<den_api_types::Accepted>(&r, "a started task")?.task;
            if !detach {
                wait_task(socket, &task)?;
            }
            match (json, detach) {
                (true, _) => println!("{r}"),
                (false, true) => println!("uninstalling {app}: task {task}"),
                (false, false) => println!("uninstalled {app}{}", if keep_data { " (its data is kept)" } else { "" }),
            }
        }
        AppCmd::Logs { app, service, bytes } => {
            let mut path = format!("/api/v1/apps/{}/logs?bytes={bytes}", enc(&app));
            if let Some(s) = &service {
                path.push_str(&format!("&service={}", enc(s)));
            }
            let logs = request(socket, "GET", &path, None)?.ok()?;
            if json {
                println!("{logs}");
                return Ok(ExitCode::SUCCESS);
            }
            for (svc, text) in logs.as_object().into_iter().flatten() {
                if service.is_none() {
                    println!("==> {svc} <==");
                }
                print!("{}", text.as_str().unwrap_or_default());
            }
        }
        AppCmd::Traffic { app, limit } => {
            let path = format!("/api/v1/apps/{}/traffic?limit={limit}", enc(&app));
            let t = request(socket, "GET", &path, None)?.ok()?;
            if json {
                println!("{t}");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:>11} {:<5} {:<16} {:<22} VERDICT", "TIME", "PROTO", "SOURCE", "DESTINATION");
            for r in t.as_array().into_iter().flatten() {
                println!(
                    "{:>11} {:<5} {:<16} {:<22} {}",
                    r["time"].as_i64().unwrap_or(0),
                    r["proto"].as_str().unwrap_or("?"),
                    r["source"].as_str().unwrap_or("?"),
                    format!("{}:{}", r["dest"].as_str().unwrap_or("?"), r["port"]),
                    r["verdict"].as_str().unwrap_or("?"),
                );
            }
            let app = request(socket, "GET", &format!("/api/v1/apps/{}", enc(&app)), None)?.ok()?;
            let unlogged = app["traffic_unlogged"].as_u64().unwrap_or(0);
            if unlogged > 0 {
                println!(
                    "{unlogged} more packets were not logged: the app sent more than the audit logs (50 a second)"
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
