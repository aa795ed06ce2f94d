//! The rules every archive entry must pass, for the package and for each archive inside it:
//! clean names, no duplicates, only files, directories and links, and links that stay inside.

use crate::archive::{lossy, RawEntry, RawKind};
use crate::paths;
use crate::LpkError;
use std::collections::HashMap;

/// An admitted entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symlink with its target as written (already checked to stay inside).
    Symlink(String),
    /// A hard link to an earlier file entry (clean name).
    Hardlink(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    File,
    Dir,
    Link(String),
}

/// The rule state of one archive.
pub struct Rules {
    label: String,
    seen: HashMap<String, Seen>,
}

impl Rules {
    /// Rules for an archive whose entries are named `<label><name>` in messages.
    pub fn new(label: &str) -> Rules {
        Rules { label: label.to_string(), seen: HashMap::new() }
    }

    fn refuse(&self, name: &str, rule: impl Into<String>) -> LpkError {
        LpkError::entry(format!("{}{name}", self.label), rule)
    }

    /// Checks an entry; `None` for entries that carry nothing (tar global headers).
    pub fn admit(&mut self, raw: &RawEntry) -> Result<Option<(String, Admitted)>, LpkError> {
        if raw.kind == RawKind::Skip {
            return Ok(None);
        }
        let name = paths::clean(&raw.name).map_err(|r| self.refuse(&lossy(&raw.name), r))?;
        let kind = match &raw.kind {
            RawKind::Other(what) => {
                return Err(self.refuse(&name, format!("is a {what}; packages hold only files, directories and links")))
            }
            RawKind::Skip => return Ok(None),
            RawKind::File => Admitted::File,
            RawKind::Dir => Admitted::Dir,
            RawKind::Symlink(t) => {
                paths::link_target(&name, t).map_err(|r| self.refuse(&name, format!("is a symlink that {r}")))?;
                Admitted::Symlink(lossy(t))
            }
            RawKind::Hardlink(t) => {
                let target =
                    paths::clean(t).map_err(|r| self.refuse(&name, format!("is a hard link whose target {r}")))?;
                if self.seen.get(&target) != Some(&Seen::File) {
                    return Err(self.refuse(
                        &name,
                        format!("is a hard link to `{target}`, which is not an earlier file of the package"),
                    ));
                }
                Admitted::Hardlink(target)
            }
        };
        let mut parent = name.as_str();
        while let Some(i) = parent.rfind('/') {
            parent = &name[..i];
            match self.seen.get(parent) {
                Some(Seen::Link(_)) => return Err(self.refuse(&name, format!("lies under the symlink `{parent}`"))),
                Some(Seen::File) => return Err(self.refuse(&name, format!("lies under the file `{parent}`"))),
                Some(Seen::Dir) => break,
                None => {
                    self.seen.insert(parent.to_string(), Seen::Dir);
                }
            }
        }
        let seen = match &kind {
            Admitted::Dir => Seen::Dir,
            Admitted::File | Admitted::Hardlink(_) => Seen::File,
            Admitted::Symlink(t) => Seen::Link(t.clone()),
        };
        match self.seen.get(&name) {
            Some(Seen::Dir) if seen == Seen::Dir => {}
            Some(_) => return Err(self.refuse(&name, "appears twice in the package")),
            None => {
                self.seen.insert(name.clone(), seen);
            }
        }
        Ok(Some((name, kind)))
    }

    /// After the last entry: no symlink may resolve through another symlink (whose own target
    /// could make `..` land outside).
    pub fn finish(&self) -> Result<(), LpkError> {
        for (name, seen) in &self.seen {
            let Seen::Link(target) = seen else { continue };
            let resolved = paths::link_target(name, target.as_bytes()).unwrap_or_default();
            let mut prefix = String::new();
            for part in resolved.split('/') {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                if prefix != resolved && matches!(self.seen.get(&prefix), Some(Seen::Link(_))) {
                    return Err(self.refuse(name, format!("is a symlink through the symlink `{prefix}`")));
                }
            }
            let mut dir: Vec<&str> = name.split('/').collect();
            dir.pop();
            for part in target.split('/') {
                if part == ".." {
                    let here = dir.join("/");
                    if matches!(self.seen.get(&here), Some(Seen::Link(_))) {
                        return Err(self.refuse(name, format!("is a symlink through the symlink `{here}`")));
                    }
                    dir.pop();
                } else if !part.is_empty() && part != "." {
                    dir.push(part);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, kind: RawKind) -> RawEntry {
        RawEntry { name: name.as_bytes().to_vec(), kind, size: 0, packed: None, mode: 0o644 }
    }

    #[test]
    fn each_rule() {
        let mut r = Rules::new("");
        assert!(r.admit(&e("a/b", RawKind::File)).unwrap().is_some());
        assert!(r.admit(&e("a", RawKind::Dir)).unwrap().is_some(), "a directory may follow its files");
        assert!(r.admit(&e("a/b", RawKind::File)).unwrap_err().to_string().contains("twice"));
        assert!(r.admit(&e("./a/b", RawKind::Dir)).unwrap_err().to_string().contains("twice"));
        assert!(r.admit(&e("a/b/c", RawKind::File)).unwrap_err().to_string().contains("under the file"));
        assert!(r.admit(&e("dev", RawKind::Other("device file"))).unwrap_err().to_string().contains("device"));
        assert!(r.admit(&e("l", RawKind::Symlink(b"../x".to_vec()))).unwrap_err().to_string().contains("outside"));
        assert!(r.admit(&e("l", RawKind::Symlink(b"/etc/passwd".to_vec()))).is_err());
        assert!(r.admit(&e("ok", RawKind::Symlink(b"a/b".to_vec()))).is_ok());
        assert!(r.admit(&e("ok/x", RawKind::File)).unwrap_err().to_string().contains("under the symlink"));
        assert!(r.admit(&e("h", RawKind::Hardlink(b"a/b".to_vec()))).is_ok());
        assert!(r.admit(&e("h2", RawKind::Hardlink(b"/etc/shadow".to_vec()))).is_err());
        assert!(r
            .admit(&e("h3", RawKind::Hardlink(b"later".to_vec())))
            .unwrap_err()
            .to_string()
            .contains("earlier file"));
        assert!(r.finish().is_ok());
    }

    #[test]
    fn links_through_links_are_refused() {
        // d/s -> .. is the root; d/a -> s/.. would then be the root's parent.
        let mut r = Rules::new("content.tar!/");
        r.admit(&e("d/s", RawKind::Symlink(b"..".to_vec()))).unwrap();
        r.admit(&e("d/a", RawKind::Symlink(b"s/..".to_vec()))).unwrap();
        let err = r.finish().unwrap_err().to_string();
        assert!(err.contains("content.tar!/d/a") && err.contains("through the symlink"), "{err}");
    }
}
