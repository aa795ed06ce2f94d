//! Session recordings in asciicast v2 (the format asciinema plays): a JSON header line, then
//! one `[seconds, "o"|"r", "data"]` line per output or resize. Input is not recorded: it holds
//! what people type at password prompts, and the terminal's output already shows the commands
//! as typed. Bytes are written as UTF-8 text; a character split across two reads is joined
//! before it is written.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

/// An open recording; writes are serialized and flushed per event, so a recording can be read
/// while its session runs.
pub(crate) struct Recorder {
    inner: Mutex<Inner>,
}

struct Inner {
    file: std::io::BufWriter<std::fs::File>,
    started: Instant,
    /// Incomplete UTF-8 at the end of the last output chunk.
    carry: Vec<u8>,
    /// Bytes written so far.
    written: u64,
}

/// Largest recording: a guest chooses how much it prints, so past this the recording ends with
/// a note (the session goes on).
pub(crate) const MAX_RECORDING: u64 = 64 << 20;

/// What a recording starts with.
pub(crate) struct Header<'a> {
    /// Terminal columns.
    pub cols: u32,
    /// Terminal rows.
    pub rows: u32,
    /// `TERM`.
    pub term: &'a str,
    /// Title, e.g. `alice@web1`.
    pub title: &'a str,
    /// The command, empty for a shell.
    pub command: &'a str,
}

impl Recorder {
    /// Creates `path` (mode 0600) and writes the header.
    pub(crate) fn create(path: &Path, h: &Header) -> std::io::Result<Recorder> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        let mut file = std::io::BufWriter::new(file);
        let mut header = serde_json::json!({
            "version": 2,
            "width": h.cols,
            "height": h.rows,
            "timestamp": den_store::now(),
            "title": h.title,
            "env": {"TERM": h.term},
        });
        if !h.command.is_empty() {
            header["command"] = h.command.into();
        }
        writeln!(file, "{header}")?;
        file.flush()?;
        Ok(Recorder { inner: Mutex::new(Inner { file, started: Instant::now(), carry: Vec::new(), written: 0 }) })
    }

    /// Output the client saw.
    pub(crate) fn output(&self, bytes: &[u8]) {
        let Ok(mut inner) = self.inner.lock() else { return };
        inner.carry.extend_from_slice(bytes);
        let (text, rest) = split_utf8(&inner.carry);
        let rest = rest.to_vec();
        inner.carry = rest;
        if !text.is_empty() {
            write_event(&mut inner, "o", &text);
        }
    }

    /// A terminal resize.
    pub(crate) fn resize(&self, cols: u32, rows: u32) {
        self.event("r", &format!("{cols}x{rows}"));
    }

    fn event(&self, code: &str, data: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            write_event(&mut inner, code, data);
        }
    }
}

fn write_event(inner: &mut Inner, code: &str, data: &str) {
    if inner.written >= MAX_RECORDING {
        return;
    }
    let t = inner.started.elapsed().as_secs_f64();
    let mut line = serde_json::json!([(t * 1e6).round() / 1e6, code, data]).to_string();
    if inner.written + line.len() as u64 >= MAX_RECORDING {
        let note = format!("\r\n[den: the recording stops here: it reached {} MiB]\r\n", MAX_RECORDING >> 20);
        line = serde_json::json!([(t * 1e6).round() / 1e6, "o", note]).to_string();
        inner.written = MAX_RECORDING;
    } else {
        inner.written += line.len() as u64 + 1;
    }
    if let Err(e) = writeln!(inner.file, "{line}").and_then(|_| inner.file.flush()) {
        tracing::warn!(%e, "writing a session recording");
    }
}

/// Splits bytes into text (invalid sequences replaced) and an incomplete UTF-8 tail to keep.
fn split_utf8(bytes: &[u8]) -> (String, &[u8]) {
    let mut out = String::new();
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return (out, &[]);
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                match e.error_len() {
                    None => return (out, bad),
                    Some(n) => {
                        out.push('\u{FFFD}');
                        rest = &bad[n..];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_asciicast_v2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.cast");
        let h = Header { cols: 80, rows: 24, term: "xterm", title: "alice@web1", command: "" };
        let r = Recorder::create(&path, &h).unwrap();
        r.output("caf\u{e9}".as_bytes().split_at(4).0);
        r.output("caf\u{e9}".as_bytes().split_at(4).1);
        r.output(b"\xff!");
        r.resize(100, 30);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["version"], 2);
        assert_eq!((lines[0]["width"].as_u64(), lines[0]["height"].as_u64()), (Some(80), Some(24)));
        assert_eq!((lines[1][1].as_str(), lines[1][2].as_str()), (Some("o"), Some("caf")));
        assert_eq!(lines[2][2], "\u{e9}", "a split character is joined");
        assert_eq!(lines[3][2], "\u{FFFD}!");
        assert_eq!((lines[4][1].as_str(), lines[4][2].as_str()), (Some("r"), Some("100x30")));
        assert!(Recorder::create(&path, &h).is_err(), "never overwrites");
    }
}
