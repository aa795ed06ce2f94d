//! The `den.*` settings the host passes on the kernel command line.

use std::collections::BTreeMap;

/// Settings read from `/proc/cmdline`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Cmdline {
    /// `den.root=/dev/vda`: root disk to mount and switch to.
    pub root: Option<String>,
    /// `den.rootfstype=ext4` (default ext4).
    pub rootfstype: String,
    /// `den.ro`: mount the root disk read-only.
    pub read_only: bool,
    /// `den.init=/lib/systemd/systemd`: hand PID 1 to this program after switching root.
    pub init: Option<String>,
    /// `den.hostname=name`.
    pub hostname: Option<String>,
    /// `den.ip=10.0.0.2/24`: address of the first Ethernet interface.
    pub ip: Option<String>,
    /// `den.gw=10.0.0.1`: default gateway.
    pub gateway: Option<String>,
    /// `den.console=shell`: a root shell on the serial console.
    pub console: Option<String>,
    /// `den.dns=10.0.0.1`: name server written to `/etc/resolv.conf`.
    pub dns: Option<String>,
    /// `den.vsock_port=1024`: vsock port the agent listens on.
    pub vsock_port: u32,
    /// `den.share=<tag>:<path>` and `den.share_ro=<tag>:<path>` (repeated): virtio-fs file
    /// systems to mount at `path` (with `%XX` escapes for bytes a command line cannot hold),
    /// read-write or read-only, in the order given, once the root is in place.
    pub shares: Vec<Share>,
    /// `den.services=<dir>`: another directory of service files, read once the shares are
    /// mounted (an LPK service's definition lives in its app's `/lzcapp/run`).
    pub services: Option<String>,
    /// Every `key=value` seen, for diagnostics.
    pub all: BTreeMap<String, String>,
}

/// A virtio-fs share to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Share {
    /// The virtio-fs tag.
    pub tag: String,
    /// Where to mount it.
    pub path: String,
    /// Mounted read-only (the host serves it read-only too).
    pub read_only: bool,
}

/// Default vsock port of the agent.
pub(crate) const DEFAULT_VSOCK_PORT: u32 = 1024;

impl Cmdline {
    /// Parses a kernel command line; unknown words are kept in `all` only.
    pub(crate) fn parse(line: &str) -> Cmdline {
        let mut c = Cmdline { rootfstype: "ext4".into(), vsock_port: DEFAULT_VSOCK_PORT, ..Default::default() };
        for word in line.split_whitespace() {
            let (k, v) = word.split_once('=').unwrap_or((word, ""));
            let v = v.to_string();
            match k {
                "den.root" if !v.is_empty() => c.root = Some(v.clone()),
                "den.rootfstype" if !v.is_empty() => c.rootfstype = v.clone(),
                "den.ro" => c.read_only = true,
                "den.init" if !v.is_empty() => c.init = Some(v.clone()),
                "den.hostname" if !v.is_empty() => c.hostname = Some(v.clone()),
                "den.ip" if !v.is_empty() => c.ip = Some(v.clone()),
                "den.gw" if !v.is_empty() => c.gateway = Some(v.clone()),
                "den.dns" if !v.is_empty() => c.dns = Some(v.clone()),
                "den.console" if !v.is_empty() => c.console = Some(v.clone()),
                "den.services" if v.starts_with('/') => c.services = Some(v.clone()),
                "den.vsock_port" => c.vsock_port = v.parse().unwrap_or(DEFAULT_VSOCK_PORT),
                "den.share" | "den.share_ro" => {
                    match v.split_once(':').and_then(|(tag, p)| Some((tag, unescape(p)?))) {
                        Some((tag, path)) if !tag.is_empty() && path.starts_with('/') => {
                            c.shares.push(Share { tag: tag.to_string(), path, read_only: k == "den.share_ro" })
                        }
                        _ => eprintln!("den-agent: ignoring `{k}={v}`: expected <tag>:<absolute path>"),
                    }
                }
                _ => {}
            }
            c.all.insert(k.to_string(), v);
        }
        c
    }

    /// Reads `/proc/cmdline` (empty settings when it cannot be read).
    pub(crate) fn from_proc() -> Cmdline {
        Cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default())
    }
}

/// Undoes the `%XX` escapes of a command-line word; `None` for a broken escape or non-UTF-8.
fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_den_keys_and_ignores_others() {
        let c = Cmdline::parse("console=ttyS0 den.root=/dev/vda den.ro den.hostname=web1 den.vsock_port=x quiet");
        assert_eq!(c.root.as_deref(), Some("/dev/vda"));
        assert!(c.read_only);
        assert_eq!(c.hostname.as_deref(), Some("web1"));
        assert_eq!(c.rootfstype, "ext4");
        assert_eq!(c.vsock_port, DEFAULT_VSOCK_PORT);
        assert_eq!(c.init, None);
        assert_eq!(
            Cmdline::parse("den.services=/lzcapp/run/den/web den.x").services.as_deref(),
            Some("/lzcapp/run/den/web")
        );
        assert_eq!(Cmdline::parse("den.services=relative").services, None);
        assert_eq!(c.all.get("console").map(String::as_str), Some("ttyS0"));
    }

    #[test]
    fn shares_are_tag_and_unescaped_path() {
        let c = Cmdline::parse(
            "den.share=den0:/home/ann/my%20proj den.share=den1:/srv den.share=x den.share=y:rel den.share=z:/a%2 den.share=w:/a%+5",
        );
        let got: Vec<_> = c.shares.iter().map(|s| (s.tag.as_str(), s.path.as_str(), s.read_only)).collect();
        assert_eq!(got, [("den0", "/home/ann/my proj", false), ("den1", "/srv", false)]);
        let c = Cmdline::parse("den.share_ro=a:/lzcapp den.share=b:/lzcapp/var");
        let got: Vec<_> = c.shares.iter().map(|s| (s.tag.as_str(), s.path.as_str(), s.read_only)).collect();
        assert_eq!(got, [("a", "/lzcapp", true), ("b", "/lzcapp/var", false)], "in order, read-only kept");
    }
}
