//! Running host tools (apt, dpkg-deb, mmdebstrap, mkfs.ext4, qemu-img) with clear errors.

use crate::ImageError;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The Debian package that provides a tool we run.
pub fn package_of(tool: &str) -> &'static str {
    match tool {
        "apt-get" | "apt-cache" => "apt",
        "dpkg-deb" => "dpkg",
        "mmdebstrap" => "mmdebstrap",
        "mkfs.ext4" => "e2fsprogs",
        "qemu-img" => "qemu-utils",
        "tar" => "tar",
        _ => "the package that provides it",
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn spawn_error(cmd: &Command, e: std::io::Error) -> ImageError {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    if e.kind() == std::io::ErrorKind::NotFound {
        ImageError::ToolMissing { package: package_of(&tool).into(), tool }
    } else {
        ImageError::Tool { command: describe(cmd), status: "could not start".into(), output: e.to_string() }
    }
}

/// Keeps the last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs a command to completion and returns its stdout; a failure carries the output's tail.
pub fn run(cmd: &mut Command) -> Result<String, ImageError> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| spawn_error(cmd, e))?;
    if !out.status.success() {
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        return Err(ImageError::Tool {
            command: describe(cmd),
            status: out.status.to_string(),
            output: tail(&text, 20),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command, handing each line it prints (stdout and stderr) to `line` as it comes.
/// Returns the collected output; a failure carries its tail.
pub fn run_streaming(cmd: &mut Command, line: &dyn Fn(&str)) -> Result<String, ImageError> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error(cmd, e))?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let mut readers = vec![];
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            BufReader::new(out).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l)))
        }));
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            BufReader::new(err).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l)))
        }));
    }
    drop(tx);
    let mut all = String::new();
    for l in rx {
        line(&l);
        all.push_str(&l);
        all.push('\n');
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait().map_err(|e| spawn_error(cmd, e))?;
    if !status.success() {
        return Err(ImageError::Tool { command: describe(cmd), status: status.to_string(), output: tail(&all, 20) });
    }
    Ok(all)
}
