//! `den app ...`: LPK apps through dend's API.

use crate::client::{request, typed, upload, wait_task};
use crate::vm::enc;
use anyhow::Context;
use clap::Subcommand;
use den_api_types::apps::{AppInstalled, AppSummary, PackageCheck, Signed, TrafficRecord};
use den_api_types::Accepted;
use std::collections::BTreeMap;
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

fn signer(signed: &Signed) -> String {
    match signed {
        Signed::Verified(keys) => format!("signed by {}", keys.join(", ")),
        Signed::UnknownSigner(keys) => {
            format!("signed by {} (a key Den does not trust: not verified)", keys.join(", "))
        }
        Signed::Unsigned => "unsigned".into(),
    }
}

fn print_check(c: &PackageCheck) {
    println!("{} {} (LPK v{}), {}", c.package, c.version, c.format, signer(&c.signed));
    println!("  subdomain: {}", c.subdomain);
    println!("  services:  {}", c.services.join(" "));
    let perms = &c.permissions;
    println!("  permissions: required [{}], optional [{}]", perms.required.join(", "), perms.optional.join(", "));
    println!("  {} files, {} MiB unpacked", c.files, c.unpacked_bytes >> 20);
    for w in &c.warnings {
        println!("  note: {w}");
    }
}

/// An install's or upgrade's answer: its task, the app and the check. The task id is read first,
/// so that when the rest does not fit, the error still says which task dend started.
fn installed(r: &serde_json::Value, what: &str) -> anyhow::Result<(String, String, PackageCheck)> {
    let task = typed::<Accepted>(r, &format!("a started {what}"))?.task;
    let AppInstalled { app, check, .. } = typed::<AppInstalled>(r, &format!("an {what}"))
        .with_context(|| format!("dend started the {what} as task {task} (`den task log {task}` follows it)"))?;
    Ok((task, app, check))
}

/// `POST /api/v1/apps/<app>/<verb>` and waits for its task.
fn lifecycle(socket: &Path, app: &str, verb: &str) -> anyhow::Result<()> {
    let r = request(socket, "POST", &format!("/api/v1/apps/{}/{verb}", enc(app)), None)?.ok()?;
    wait_task(socket, &typed::<Accepted>(&r, "a started task")?.task)?;
    Ok(())
}

/// Runs a `den app` command.
pub(crate) fn run(cmd: AppCmd, socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        AppCmd::Install { file, detach, no_start } => {
            let r = upload(socket, "/api/v1/apps", &file)?
                .ok()
                .with_context(|| format!("{} was not installed", file.display()))?;
            let (task, app, check) = installed(&r, "install")?;
            if !json {
                print_check(&check);
            }
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
            let (task, app, check) = installed(&r, "upgrade")?;
            if !json {
                print_check(&check);
            }
            wait_task(socket, &task)?;
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
                print_check(&typed(&r, "a package check")?);
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
            for a in typed::<Vec<AppSummary>>(&apps, "the app list")? {
                println!(
                    "{:<36} {:<10} {:<16} {:<12} {}",
                    a.package,
                    a.version,
                    a.subdomain,
                    a.state.as_str(),
                    signer(&a.signed),
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
            let task = typed::<Accepted>(&r, "a started task")?.task;
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
            for (svc, text) in typed::<BTreeMap<String, String>>(&logs, "the app's logs")? {
                if service.is_none() {
                    println!("==> {svc} <==");
                }
                print!("{text}");
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
            for r in typed::<Vec<TrafficRecord>>(&t, "the app's traffic")? {
                let dest = format!("{}:{}", r.dest, r.port);
                println!("{:>11} {:<5} {:<16} {:<22} {}", r.time, r.proto, r.source, dest, r.verdict);
            }
            let app = request(socket, "GET", &format!("/api/v1/apps/{}", enc(&app)), None)?.ok()?;
            let unlogged = typed::<AppSummary>(&app, "an app")?.traffic_unlogged;
            if unlogged > 0 {
                println!(
                    "{unlogged} more packets were not logged: the app sent more than the audit logs (50 a second)"
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
