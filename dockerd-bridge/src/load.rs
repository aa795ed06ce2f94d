//! The tags a `docker load` archive points at images, read as the archive streams through to
//! dockerd: `manifest.json` (Docker's format, `RepoTags`), `repositories` (the old format) and
//! `index.json` (OCI, image-name annotations). A tag decides who owns what people run, so an
//! operator may not move one that names someone else's image (see [`super::owners`]); the
//! bridge checks each tag as soon as the file naming it has passed, before the rest of the
//! archive (and its end, after which dockerd reads those files) is forwarded.
//!
//! The archive is read as dockerd reads it (Go's `archive/tar`, then a clean path beneath the
//! load's folder): ustar prefixes, GNU long names, PAX `path` and `size` records, checksums.
//! What could make the two readings differ is refused ([`LoadError`]): compressed archives
//! (`docker save` writes plain tar), GNU sparse entries, PAX global or sparse records, a link
//! or directory under one of the watched names, and an entry beneath an earlier symbolic link.

use serde_json::Value;
use std::collections::HashSet;

/// Largest watched file read (a manifest of many images is a few KiB).
const MAX_WATCHED: usize = 1 << 20;
/// Largest PAX or GNU long-name record read.
const MAX_RECORD: usize = 64 << 10;
/// The files that name tags, at the archive's top.
const WATCHED: [&str; 3] = ["manifest.json", "repositories", "index.json"];

/// Why an archive is not loaded for a non-admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// Not a plain tar.
    #[error("the archive is compressed ({0}); only an admin may load one: decompress it first (`docker save` writes plain tar)")]
    Compressed(&'static str),
    /// Something Den does not read as dockerd would.
    #[error("the archive has {0}, which Den cannot check; only an admin may load it")]
    Unchecked(String),
    /// A watched file that is not valid.
    #[error("the archive's `{0}` is not valid: {1}")]
    BadFile(String, String),
}

/// Where the reader is in the archive.
enum State {
    /// Reading a 512-byte header.
    Header,
    /// Inside an entry's data: bytes left (with padding), and what to do with them.
    Data { left: u64, size: u64, keep: Keep },
    /// After the end-of-archive blocks: the rest is ignored (as dockerd does).
    End,
}

/// What an entry's data is for.
#[derive(Clone, PartialEq, Eq)]
enum Keep {
    /// Skipped.
    Nothing,
    /// A PAX extended header for the next entry.
    Pax,
    /// A GNU long name for the next entry.
    LongName,
    /// A watched file.
    Watched(String),
}

/// A streaming reader of a tar archive that reports the tags it names.
pub struct TarWatch {
    block: Vec<u8>,
    data: Vec<u8>,
    state: State,
    zero_blocks: u8,
    /// The pending PAX record set (`path`, `size`) and GNU long name for the next entry.
    pax: Option<(Option<String>, Option<u64>)>,
    long_name: Option<String>,
    /// Entries that are not folders (files, links): nothing may come beneath them (a link,
    /// or a hard link to one, would lead elsewhere).
    not_folders: HashSet<String>,
    tags: Vec<String>,
    /// Every tag seen so far (checked again at the archive's end).
    seen: Vec<String>,
    headers: u64,
}

impl Default for TarWatch {
    fn default() -> Self {
        TarWatch {
            block: Vec::with_capacity(512),
            data: Vec::new(),
            state: State::Header,
            zero_blocks: 0,
            pax: None,
            long_name: None,
            not_folders: HashSet::new(),
            tags: Vec::new(),
            seen: Vec::new(),
            headers: 0,
        }
    }
}

/// A tar number field: octal text, or base-256 when the top bit is set, read as Go reads it.
/// (`den_guest_tree`'s tar guard has its own reader, which follows the `tar` crate: the two
/// readers dend guards against differ, so each guard mirrors its own.)
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let text: String = field.iter().map(|b| *b as char).collect();
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// A NUL-terminated string field.
fn text(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// The path dockerd writes an entry to, beneath the load's folder (Go's `filepath.Clean`).
fn clean(name: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in name.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

/// Reads PAX records (`<len> <key>=<value>\n`).
fn pax_records(data: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(sp) = rest.iter().position(|b| *b == b' ') else { break };
        let Some(len) = std::str::from_utf8(&rest[..sp]).ok().and_then(|s| s.parse::<usize>().ok()) else { break };
        if len <= sp + 1 || len > rest.len() {
            break;
        }
        let record = &rest[sp + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|b| *b == b'=') {
            out.push((
                String::from_utf8_lossy(&record[..eq]).into_owned(),
                String::from_utf8_lossy(&record[eq + 1..]).into_owned(),
            ));
        }
        rest = &rest[len..];
    }
    out
}

/// The tags a watched file names.
fn tags_in(name: &str, data: &[u8]) -> Result<Vec<String>, LoadError> {
    let bad = |e: String| LoadError::BadFile(name.to_string(), e);
    let v: Value = serde_json::from_slice(data).map_err(|e| bad(e.to_string()))?;
    // Go's decoder matches struct fields in any case: every spelling counts.
    let field = |v: &Value, key: &str| -> Vec<Value> {
        v.as_object().map(|o| super::owners::fields(o, key)).unwrap_or_default()
    };
    let strings = |vs: Vec<Value>| -> Vec<String> {
        vs.iter().filter_map(Value::as_array).flatten().filter_map(Value::as_str).map(str::to_string).collect()
    };
    Ok(match name {
        "manifest.json" => v.as_array().into_iter().flatten().flat_map(|m| strings(field(m, "RepoTags"))).collect(),
        "repositories" => v
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(repo, tags)| {
                tags.as_object().into_iter().flatten().map(move |(tag, _)| format!("{repo}:{tag}"))
            })
            .collect(),
        _ => field(&v, "manifests")
            .iter()
            .filter_map(Value::as_array)
            .flatten()
            .flat_map(|m| field(m, "annotations"))
            .flat_map(|a| {
                ["io.containerd.image.name", "org.opencontainers.image.ref.name"]
                    .into_iter()
                    .filter_map(|k| a.get(k).and_then(Value::as_str).map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .collect(),
    })
}

impl TarWatch {
    /// Reads the next bytes of the archive.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), LoadError> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::End => return Ok(()),
                State::Header => {
                    let take = (512 - self.block.len()).min(bytes.len());
                    self.block.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.block.len() == 512 {
                        let block = std::mem::take(&mut self.block);
                        self.header(&block)?;
                    }
                }
                State::Data { left, size, keep } => {
                    let take = (*left).min(bytes.len() as u64) as usize;
                    let (chunk, rest) = bytes.split_at(take);
                    bytes = rest;
                    *left -= take as u64;
                    if *keep != Keep::Nothing {
                        let wanted = (*size as usize).saturating_sub(self.data.len()).min(chunk.len());
                        self.data.extend_from_slice(&chunk[..wanted]);
                    }
                    if *left == 0 {
                        let keep = keep.clone();
                        self.state = State::Header;
                        self.entry_done(keep)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The tags named since the last call.
    pub fn take_tags(&mut self) -> Vec<String> {
        std::mem::take(&mut self.tags)
    }

    /// Every tag named so far (dockerd reads the tags once the whole body is in: they are all
    /// checked once more then, against what exists by that time).
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// The body has ended: an archive that never had a whole header is refused (dockerd would
    /// read what could not be checked: a short compressed stream, say).
    pub fn finish(&self) -> Result<(), LoadError> {
        if self.headers == 0 && !self.block.is_empty() {
            return Err(LoadError::Unchecked("less than one tar header".into()));
        }
        Ok(())
    }

    fn header(&mut self, block: &[u8]) -> Result<(), LoadError> {
        self.headers += 1;
        if self.headers == 1 {
            let magic: [(&[u8], &'static str); 4] = [
                (&[0x1f, 0x8b], "gzip"),
                (b"BZh", "bzip2"),
                (&[0xfd, b'7', b'z', b'X', b'Z'], "xz"),
                (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
            ];
            if let Some((_, kind)) = magic.iter().find(|(m, _)| block.starts_with(m)) {
                return Err(LoadError::Compressed(kind));
            }
        }
        if block.iter().all(|b| *b == 0) {
            self.zero_blocks += 1;
            if self.zero_blocks == 2 {
                self.state = State::End;
            }
            return Ok(());
        }
        self.zero_blocks = 0;
        let sum: u64 =
            block.iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { u64::from(*b) }).sum();
        if number(&block[148..156]) != Some(sum) {
            return Err(LoadError::Unchecked("a header with a wrong checksum".into()));
        }
        let kind = block[156];
        let raw_name = text(&block[0..100]);
        let mut name = raw_name.clone();
        if &block[257..263] == b"ustar\0" {
            // STAR archives keep times after a 131-byte prefix (Go reads them so).
            let end = if &block[508..512] == b"tar\0" { 476 } else { 500 };
            let prefix = text(&block[345..end]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        } else if &block[257..265] == b"ustar  \0" && block[345..500].iter().any(|b| *b != 0) {
            // Go may read a GNU header's time fields as a prefix when they do not parse.
            return Err(LoadError::Unchecked("a GNU header with times or sparse data".into()));
        }
        let mut size =
            number(&block[124..136]).ok_or_else(|| LoadError::Unchecked("a header with a bad size".into()))?;
        // PAX records and long names apply to the next entry that is not one of them; an empty
        // value is ignored, and a long name wins over a PAX path (as Go reads them).
        if !matches!(kind, b'x' | b'g' | b'L' | b'K') {
            if let Some((path, pax_size)) = self.pax.take() {
                name = path.filter(|p| !p.is_empty()).unwrap_or(name);
                size = pax_size.unwrap_or(size);
            }
            name = self.long_name.take().filter(|n| !n.is_empty()).unwrap_or(name);
        } else if (kind == b'x' && self.pax.is_some()) || (kind == b'L' && self.long_name.is_some()) {
            return Err(LoadError::Unchecked("two PAX or long-name headers for one entry".into()));
        }
        // Go reads an old-style file (`\0`) whose name ends in `/` as a directory, with no data.
        if kind == b'\0' && (raw_name.ends_with('/') || name.ends_with('/')) && size > 0 {
            return Err(LoadError::Unchecked(format!("an old-style entry `{name}` that is both a folder and a file")));
        }
        let path = clean(&name);
        let meta = matches!(kind, b'x' | b'g' | b'L' | b'K');
        if !meta && path.match_indices('/').any(|(i, _)| self.not_folders.contains(&path[..i])) {
            return Err(LoadError::Unchecked(format!("`{path}` beneath a link or file")));
        }
        let keep = match kind {
            b'x' => Keep::Pax,
            b'L' => Keep::LongName,
            b'g' => return Err(LoadError::Unchecked("a PAX global header".into())),
            b'S' => return Err(LoadError::Unchecked("a GNU sparse file".into())),
            b'0' | b'\0' | b'7' if WATCHED.contains(&path.as_str()) => Keep::Watched(path.clone()),
            _ if WATCHED.contains(&path.as_str()) => {
                return Err(LoadError::Unchecked(format!("`{path}` that is not a plain file")));
            }
            _ => Keep::Nothing,
        };
        if !meta && kind != b'5' {
            self.not_folders.insert(path);
        }
        let limit = match &keep {
            Keep::Pax | Keep::LongName => MAX_RECORD,
            Keep::Watched(_) => MAX_WATCHED,
            Keep::Nothing => usize::MAX,
        };
        if size > limit as u64 {
            return Err(LoadError::Unchecked(format!(
                "an entry `{name}` of {size} bytes where at most {limit} are read"
            )));
        }
        // Links and directories carry no data, whatever their size field says (as Go reads them).
        let size = if matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5' | b'6') { 0 } else { size };
        let left = size.div_ceil(512) * 512;
        self.data.clear();
        if left == 0 {
            self.entry_done(keep)
        } else {
            self.state = State::Data { left, size, keep };
            Ok(())
        }
    }

    fn entry_done(&mut self, keep: Keep) -> Result<(), LoadError> {
        let data = std::mem::take(&mut self.data);
        match keep {
            Keep::Nothing => {}
            Keep::LongName => self.long_name = Some(text(&data)),
            Keep::Pax => {
                // The last record of a key wins, and an empty value then counts as none (Go).
                let records: std::collections::HashMap<String, String> = pax_records(&data).into_iter().collect();
                if records.keys().any(|k| k.starts_with("GNU.sparse")) {
                    return Err(LoadError::Unchecked("a PAX sparse file".into()));
                }
                let value = |k: &str| records.get(k).filter(|v| !v.is_empty()).cloned();
                let size = match value("size") {
                    Some(v) => {
                        Some(v.parse().map_err(|_| LoadError::Unchecked("a PAX size that is no number".into()))?)
                    }
                    None => None,
                };
                self.pax = Some((value("path"), size));
            }
            Keep::Watched(name) => {
                let tags = tags_in(&name, &data)?;
                self.seen.extend(tags.iter().cloned());
                self.tags.extend(tags);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn tags_of(bytes: &[u8], chunk: usize) -> Result<Vec<String>, LoadError> {
        let mut w = TarWatch::default();
        let mut out = vec![];
        for c in bytes.chunks(chunk) {
            w.feed(c)?;
            out.extend(w.take_tags());
        }
        w.finish()?;
        Ok(out)
    }

    /// One entry written by hand: a header of `kind` (ustar when `ustar`) and its data.
    fn raw(name: &str, kind: u8, data: &[u8], edit: impl Fn(&mut [u8; 512])) -> Vec<u8> {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        edit(&mut h);
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let mut out = h.to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn pax(key: &str, value: &str) -> Vec<u8> {
        let rest = format!(" {key}={value}\n");
        let mut len = rest.len() + 1;
        while rest.len() + len.to_string().len() != len {
            len = rest.len() + len.to_string().len();
        }
        format!("{len}{rest}").into_bytes()
    }

    #[test]
    fn every_way_go_names_an_entry_is_followed() {
        let manifest: &[u8] = br#"[{"repotags":["alice/app:1"]}]"#;
        let end = [0u8; 1024];
        let join = |parts: &[Vec<u8>]| -> Vec<u8> { parts.concat().into_iter().chain(end).collect() };
        let none = |_: &mut [u8; 512]| {};
        // Field names in any case; an empty long name is ignored; a long name beats a PAX path.
        assert_eq!(tags_of(&join(&[raw("manifest.json", b'0', manifest, none)]), 512).unwrap(), ["alice/app:1"]);
        let a = join(&[raw("L", b'L', b"\0", none), raw("manifest.json", b'0', manifest, none)]);
        assert_eq!(tags_of(&a, 100).unwrap(), ["alice/app:1"]);
        let a = join(&[
            raw("L", b'L', b"manifest.json\0", none),
            raw("p", b'x', &pax("path", "innocent"), none),
            raw("innocent", b'0', manifest, none),
        ]);
        assert_eq!(tags_of(&a, 700).unwrap(), ["alice/app:1"]);
        // A STAR header's prefix is 131 bytes: what follows is its times.
        let star = |h: &mut [u8; 512]| {
            h[476] = b'1';
            h[508..512].copy_from_slice(b"tar\0");
        };
        assert_eq!(tags_of(&join(&[raw("manifest.json", b'0', manifest, star)]), 512).unwrap(), ["alice/app:1"]);
        // Refused: two PAX headers for one entry, an old-style folder with data, a GNU header
        // with times, compression however the first bytes arrive.
        let a = join(&[
            raw("p", b'x', &pax("path", "innocent"), none),
            raw("q", b'x', &pax("comment", "1"), none),
            raw("manifest.json", b'0', manifest, none),
        ]);
        assert!(matches!(tags_of(&a, 512), Err(LoadError::Unchecked(_))));
        let inner = raw("manifest.json", b'0', manifest, none);
        assert!(matches!(tags_of(&join(&[raw("x/", b'\0', &inner, none)]), 512), Err(LoadError::Unchecked(_))));
        let gnu = |h: &mut [u8; 512]| {
            h[257..265].copy_from_slice(b"ustar  \0");
            h[345] = b'1';
        };
        assert!(matches!(
            tags_of(&join(&[raw("manifest.json", b'0', manifest, gnu)]), 512),
            Err(LoadError::Unchecked(_))
        ));
        let mut gz = vec![0x1f, 0x8b, 8, 4];
        gz.resize(2048, b'0');
        assert_eq!(tags_of(&gz, 1), Err(LoadError::Compressed("gzip")));
        assert!(matches!(tags_of(&[0x1f], 1), Err(LoadError::Unchecked(_))), "too short to be checked");
        // The last PAX `size` wins, even empty; nothing beneath a hard link (to a link).
        let a = join(&[
            raw("p", b'x', &[pax("size", "1024"), pax("size", "")].concat(), none),
            raw("a", b'0', b"", none),
            raw("manifest.json", b'0', manifest, none),
        ]);
        assert_eq!(tags_of(&a, 512).unwrap(), ["alice/app:1"]);
        let link = |target: &'static str| {
            move |h: &mut [u8; 512]| h[157..157 + target.len()].copy_from_slice(target.as_bytes())
        };
        let a = join(&[
            raw("d", b'2', b"", link(".")),
            raw("e", b'1', b"", link("d")),
            raw("e/manifest.json", b'0', manifest, none),
        ]);
        assert!(matches!(tags_of(&a, 512), Err(LoadError::Unchecked(_))));
        // Every tag stays known for the check at the end.
        let mut w = TarWatch::default();
        w.feed(&join(&[raw("manifest.json", b'0', manifest, none)])).unwrap();
        assert_eq!(w.take_tags(), ["alice/app:1"]);
        assert!(w.take_tags().is_empty());
        assert_eq!(w.seen(), ["alice/app:1"]);
    }

    #[test]
    fn tags_are_found_however_the_archive_arrives() {
        let manifest = br#"[{"Config":"c.json","RepoTags":["alice/app:1","busybox"],"Layers":["l/layer.tar"]}]"#;
        let repos = br#"{"alice/app":{"2":"abc"}}"#;
        let long = format!("{}/layer.tar", "d".repeat(150));
        let a = archive(&[
            ("l/layer.tar", b"x"),
            (&long, b"y"),
            ("./manifest.json", manifest),
            ("repositories", repos),
            ("index.json", br#"{"manifests":[{"annotations":{"io.containerd.image.name":"docker.io/alice/app:3"}}]}"#),
        ]);
        let want = ["alice/app:1", "busybox", "alice/app:2", "docker.io/alice/app:3"];
        for chunk in [1, 511, 512, 4096, a.len()] {
            assert_eq!(tags_of(&a, chunk).unwrap(), want, "chunks of {chunk}");
        }
        assert!(tags_of(&archive(&[("a/manifest.json", manifest)]), 512).unwrap().is_empty(), "not at the top");
    }

    #[test]
    fn what_dockerd_would_read_otherwise_is_refused() {
        let manifest: &[u8] = br#"[{"RepoTags":["alice/app:1"]}]"#;
        // A PAX path names the manifest under another ustar name.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(manifest.len() as u64);
        h.set_mode(0o644);
        b.append_pax_extensions([("path", b"manifest.json".as_slice())]).unwrap();
        b.append_data(&mut h, "innocent", manifest).unwrap();
        assert_eq!(tags_of(&b.into_inner().unwrap(), 100).unwrap(), ["alice/app:1"]);
        // A symbolic link under a watched name, and an entry beneath a link.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "manifest.json", "x.json").unwrap();
        assert!(matches!(tags_of(&b.into_inner().unwrap(), 512), Err(LoadError::Unchecked(_))));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "d", ".").unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(manifest.len() as u64);
        b.append_data(&mut h, "d/manifest.json", manifest).unwrap();
        assert!(matches!(tags_of(&b.into_inner().unwrap(), 512), Err(LoadError::Unchecked(_))));
        // Compressed, corrupt, not JSON.
        assert_eq!(
            tags_of(&[[0x1f, 0x8b, 8, 0].as_slice(), &[0; 600]].concat(), 4),
            Err(LoadError::Compressed("gzip"))
        );
        let mut a = archive(&[("manifest.json", manifest)]);
        a[0] ^= 1;
        assert!(matches!(tags_of(&a, 512), Err(LoadError::Unchecked(_))), "checksum");
        assert!(matches!(tags_of(&archive(&[("manifest.json", b"{")]), 512), Err(LoadError::BadFile(..))));
        // Whatever follows the end of the archive is not read (nor by dockerd).
        let mut a = archive(&[("x", b"1")]);
        a.extend(archive(&[("manifest.json", manifest)]));
        assert!(tags_of(&a, 512).unwrap().is_empty());
    }
}
