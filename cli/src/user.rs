//! `den user ...` and `den token ...`: accounts through dend's API.

use crate::client::{request, typed};
use crate::vm::enc;
use anyhow::Context;
use clap::Subcommand;
use den_api_types::{AddedKey, KeyRecord, NewToken, Role, TokenRecord, UserRecord};
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

/// User commands.
#[derive(Subcommand)]
pub(crate) enum UserCmd {
    /// List users with their role and per-VM grants.
    Ls,
    /// Add a user (asks for a password on a terminal; --password-stdin reads one line).
    Add {
        /// User name (a-z, 0-9, -).
        name: String,
        /// Global role: admin, operator or viewer (none: only VMs they own or are granted).
        #[arg(long)]
        role: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// No password (the user logs in with tokens or SSH keys only).
        #[arg(long, conflicts_with = "password_stdin")]
        no_password: bool,
    },
    /// Remove a user with their grants and tokens.
    Rm {
        /// User name.
        name: String,
    },
    /// Set a user's password.
    Passwd {
        /// User name.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's global role (admin, operator, viewer or none).
    Role {
        /// User name.
        name: String,
        /// The role.
        role: String,
    },
    /// SSH public keys of a user (for the SSH gateway): add, ls, rm.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Give a user a role on one VM (none revokes it).
    Grant {
        /// User name.
        name: String,
        /// VM name.
        vm: String,
        /// viewer, operator, admin or none.
        role: String,
    },
}

/// SSH key commands.
#[derive(Subcommand)]
pub(crate) enum KeyCmd {
    /// Add a public key: the `.pub` line itself, or @FILE (every key line in it).
    Add {
        /// User name.
        name: String,
        /// The key, or @FILE.
        key: String,
    },
    /// List a user's keys with their fingerprints.
    Ls {
        /// User name.
        name: String,
    },
    /// Remove a key by fingerprint (`SHA256:...`).
    Rm {
        /// User name.
        name: String,
        /// Fingerprint.
        fingerprint: String,
    },
}

fn key(cmd: KeyCmd, socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCmd::Add { name, key } => {
            let lines: Vec<String> = match key.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .with_context(|| format!("reading {file}"))?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from)
                    .collect(),
                None => vec![key],
            };
            for l in lines {
                let path = format!("/api/v1/users/{}/keys", enc(&name));
                let r = request(socket, "POST", &path, Some(&json!({"key": l})))?.ok()?;
                let added = typed::<AddedKey>(&r, "the added key")?;
                println!("{}", if json { r.to_string() } else { format!("added {} to {name}", added.fingerprint) });
            }
            Ok(ExitCode::SUCCESS)
        }
        KeyCmd::Ls { name } => {
            let keys = request(socket, "GET", &format!("/api/v1/users/{}/keys", enc(&name)), None)?.ok()?;
            if json {
                println!("{keys}");
                return Ok(ExitCode::SUCCESS);
            }
            for k in typed::<Vec<KeyRecord>>(&keys, "the key list")? {
                let comment = k.line.splitn(3, ' ').nth(2).unwrap_or("");
                let kind = k.line.split(' ').next().unwrap_or("?");
                println!("{} {kind} {comment}", k.fingerprint);
            }
            Ok(ExitCode::SUCCESS)
        }
        KeyCmd::Rm { name, fingerprint } => {
            let path = format!("/api/v1/users/{}/keys/{}", enc(&name), enc(&fingerprint));
            let r = request(socket, "DELETE", &path, None)?.ok()?;
            println!("{}", if json { r.to_string() } else { format!("removed {fingerprint} from {name}") });
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Token commands.
#[derive(Subcommand)]
pub(crate) enum TokenCmd {
    /// Make an API token; it is printed once, keep it.
    Create {
        /// What it is for.
        #[arg(long)]
        name: String,
        /// Whose token (admins only; default: your own).
        #[arg(long)]
        user: Option<String>,
        /// Highest role it carries (default: its user's).
        #[arg(long)]
        role: Option<String>,
        /// Limit it to these VMs (repeatable).
        #[arg(long = "vm")]
        vms: Vec<String>,
        /// Lifetime in seconds (default: until revoked).
        #[arg(long)]
        expires_in: Option<u64>,
    },
    /// List tokens (yours; --all: everyone's, for admins).
    Ls {
        /// Everyone's.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a token by id.
    Rm {
        /// Token id.
        id: String,
    },
}

fn role_value(role: &str) -> anyhow::Result<Value> {
    match role {
        "none" => Ok(Value::Null),
        "admin" | "operator" | "viewer" => Ok(json!(role)),
        _ => anyhow::bail!("`{role}` is not a role: use admin, operator, viewer or none"),
    }
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let ask = |prompt: &str| -> anyhow::Result<String> {
        eprint!("{prompt}");
        std::io::stderr().flush()?;
        let stdin = std::io::stdin();
        let old = nix::sys::termios::tcgetattr(&stdin).context("terminal settings")?;
        let mut quiet = old.clone();
        quiet.local_flags.remove(nix::sys::termios::LocalFlags::ECHO);
        nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &quiet)?;
        let mut line = String::new();
        let res = stdin.lock().read_line(&mut line);
        nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &old)?;
        eprintln!();
        res?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    };
    let a = ask("password: ")?;
    if a != ask("again: ")? {
        anyhow::bail!("the passwords differ; nothing changed");
    }
    Ok(a)
}

fn done(json: bool, reply: &Value, msg: String) -> anyhow::Result<ExitCode> {
    println!("{}", if json { reply.to_string() } else { msg });
    Ok(ExitCode::SUCCESS)
}

/// Runs a `den user` command.
pub(crate) fn run(cmd: UserCmd, socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        UserCmd::Ls => {
            let users = request(socket, "GET", "/api/v1/users", None)?.ok()?;
            if json {
                println!("{users}");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<20} {:<9} {:<8} GRANTS", "NAME", "ROLE", "PASSWORD");
            for u in typed::<Vec<UserRecord>>(&users, "the user list")? {
                let mut grants: Vec<String> = u.grants.iter().map(|(vm, r)| format!("{vm}={}", r.as_str())).collect();
                grants.sort();
                println!(
                    "{:<20} {:<9} {:<8} {}",
                    u.name,
                    u.role.map(Role::as_str).unwrap_or("-"),
                    if u.has_password { "yes" } else { "no" },
                    if grants.is_empty() { "-".into() } else { grants.join(" ") }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        UserCmd::Add { name, role, password_stdin, no_password } => {
            let role = role.as_deref().map(role_value).transpose()?.unwrap_or(Value::Null);
            let password = if no_password { Value::Null } else { json!(read_password(password_stdin)?) };
            let body = json!({"name": name, "role": role, "password": password});
            let r = request(socket, "POST", "/api/v1/users", Some(&body))?.ok()?;
            done(json, &r, format!("added user {name}"))
        }
        UserCmd::Rm { name } => {
            let r = request(socket, "DELETE", &format!("/api/v1/users/{}", enc(&name)), None)?.ok()?;
            done(json, &r, format!("removed user {name}"))
        }
        UserCmd::Passwd { name, password_stdin } => {
            let body = json!({"password": read_password(password_stdin)?});
            let r = request(socket, "PUT", &format!("/api/v1/users/{}/password", enc(&name)), Some(&body))?.ok()?;
            done(json, &r, format!("password of {name} set"))
        }
        UserCmd::Role { name, role } => {
            let body = json!({"role": role_value(&role)?});
            let r = request(socket, "PUT", &format!("/api/v1/users/{}/role", enc(&name)), Some(&body))?.ok()?;
            done(json, &r, format!("{name} is now {role}"))
        }
        UserCmd::Key(c) => key(c, socket, json),
        UserCmd::Grant { name, vm, role } => {
            let body = json!({"role": role_value(&role)?});
            let path = format!("/api/v1/users/{}/grants/{}", enc(&name), enc(&vm));
            let r = request(socket, "PUT", &path, Some(&body))?.ok()?;
            done(json, &r, format!("{name} has {role} on VM {vm}"))
        }
    }
}

/// Runs a `den token` command.
pub(crate) fn run_token(cmd: TokenCmd, socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCmd::Create { name, user, role, vms, expires_in } => {
            let role = role.as_deref().map(role_value).transpose()?.unwrap_or(Value::Null);
            let vms = if vms.is_empty() { Value::Null } else { json!(vms) };
            let body = json!({"name": name, "user": user, "role": role, "vms": vms, "expires_in": expires_in});
            let t = request(socket, "POST", "/api/v1/tokens", Some(&body))?.ok()?;
            if json {
                println!("{t}");
            } else {
                let t = typed::<NewToken>(&t, "the new token")?;
                println!("{}", t.token);
                let (id, user) = (&t.record.id, &t.record.user);
                eprintln!("token {id} for {user}: shown once, keep it (revoke with `den token rm {id}`)");
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCmd::Ls { all } => {
            let ts = request(socket, "GET", &format!("/api/v1/tokens?all={all}"), None)?.ok()?;
            if json {
                println!("{ts}");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<17} {:<16} {:<20} {:<9} {:<12} VMS", "ID", "USER", "NAME", "ROLE", "EXPIRES");
            for t in typed::<Vec<TokenRecord>>(&ts, "the token list")? {
                let vms = t.scope.vms.as_ref().filter(|v| !v.is_empty()).map(|v| v.join(","));
                println!(
                    "{:<17} {:<16} {:<20} {:<9} {:<12} {}",
                    t.id,
                    t.user,
                    t.name,
                    t.scope.role.map(Role::as_str).unwrap_or("(user's)"),
                    t.expires.map(|e| e.to_string()).unwrap_or_else(|| "never".into()),
                    vms.unwrap_or_else(|| "all".to_string())
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCmd::Rm { id } => {
            let r = request(socket, "DELETE", &format!("/api/v1/tokens/{}", enc(&id)), None)?.ok()?;
            done(json, &r, format!("revoked token {id}"))
        }
    }
}
