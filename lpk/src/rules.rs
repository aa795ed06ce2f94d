//! The rules every archive entry must pass: clean names, no duplicates, only files,
//! directories and links, and links that stay inside. One rule state covers the whole unpacked
//! tree: the package's own entries and those of `content.tar`, which land under `content/`, are
//! checked against each other, so that a link made by one cannot carry entries of the other
//! out of the package.

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
    /// A symlink: its target, and its name as messages show it.
    Link(String, String),
}

/// Where an archive's entries land in the unpacked tree, and how messages name them.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Prefix of the entries in the tree (`""` for the package, `content/` for `content.tar`).
    pub prefix: &'a str,
    /// Prefix of the entries in messages (`""`, or `content.tar!/`).
    pub label: &'a str,
}

impl Scope<'static> {
    /// The package's own entries.
    pub const PACKAGE: Scope<'static> = Scope { prefix: "", label: "" };
}

/// The rule state of the whole unpacked tree.
#[derive(Default)]
pub struct Rules {
    seen: HashMap<String, Seen>,
}

fn refuse(scope: &Scope, name: &str, rule: impl Into<String>) -> LpkError {
    LpkError::entry(format!("{}{name}", scope.label), rule)
}

impl Rules {
    /// Rules for a new package.
    pub fn new() -> Rules {
        Rules::default()
    }

    /// Checks an entry of the archive `scope`; returns its clean name within that archive, or
    /// `None` for entries that carry nothing (tar global headers).
    pub fn admit(&mut self, raw: &RawEntry, scope: &Scope) -> Result<Option<(String, Admitted)>, LpkError> {
        if raw.kind == RawKind::Skip {
            return Ok(None);
        }
        let inner = paths::clean(&raw.name).map_err(|r| refuse(scope, &lossy(&raw.name), r))?;
        let name = format!("{}{inner}", scope.prefix);
        let shown = format!("{}{inner}", scope.label);
        let refuse = |rule: String| LpkError::entry(shown.clone(), rule);
        let kind = match &raw.kind {
            RawKind::Other(what) => {
                return Err(refuse(format!("is a {what}; packages hold only files, directories and links")))
            }
            RawKind::Skip => return Ok(None),
            RawKind::File => Admitted::File,
            RawKind::Dir => Admitted::Dir,
            RawKind::Symlink(t) => {
                paths::link_target(&name, t).map_err(|r| refuse(format!("is a symlink that {r}")))?;
                Admitted::Symlink(lossy(t))
            }
            RawKind::Hardlink(t) => {
                let target = paths::clean(t).map_err(|r| refuse(format!("is a hard link whose target {r}")))?;
                if self.seen.get(&format!("{}{target}", scope.prefix)) != Some(&Seen::File) {
                    return Err(refuse(format!(
                        "is a hard link to `{}{target}`, which is not an earlier file of the package",
                        scope.label
                    )));
                }
                Admitted::Hardlink(target)
            }
        };
        let mut parent = name.as_str();
        while let Some(i) = parent.rfind('/') {
            parent = &name[..i];
            match self.seen.get(parent) {
                Some(Seen::Link(_, by)) => return Err(refuse(format!("lies under the symlink `{by}`"))),
                Some(Seen::File) => return Err(refuse(format!("lies under the file `{parent}`"))),
                Some(Seen::Dir) => break,
                None => {
                    self.seen.insert(parent.to_string(), Seen::Dir);
                }
            }
        }
        let seen = match &kind {
            Admitted::Dir => Seen::Dir,
            Admitted::File | Admitted::Hardlink(_) => Seen::File,
            Admitted::Symlink(t) => Seen::Link(t.clone(), shown.clone()),
        };
        match self.seen.get(&name) {
            Some(Seen::Dir) if seen == Seen::Dir => {}
            Some(_) => {
                return Err(refuse("appears twice in the package (or in the package and its content.tar)".into()))
            }
            None => {
                self.seen.insert(name.clone(), seen);
            }
        }
        Ok(Some((inner, kind)))
    }

    /// After the last entry: no symlink may resolve through another symlink (whose own target
    /// could make `..` land outside).
    pub fn finish(&self) -> Result<(), LpkError> {
        for (name, seen) in &self.seen {
            let Seen::Link(target, shown) = seen else { continue };
            let refuse = |by: &str| {
                let by = match self.seen.get(by) {
                    Some(Seen::Link(_, s)) => s.as_str(),
                    _ => by,
                };
                LpkError::entry(shown.clone(), format!("is a symlink through the symlink `{by}`"))
            };
            let resolved = paths::link_target(name, target.as_bytes()).unwrap_or_default();
            let mut prefix = String::new();
            for part in resolved.split('/') {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                if prefix != resolved && matches!(self.seen.get(&prefix), Some(Seen::Link(..))) {
                    return Err(refuse(&prefix));
                }
            }
            let mut dir: Vec<&str> = name.split('/').collect();
            dir.pop();
            for part in target.split('/') {
                if part == ".." {
                    let here = dir.join("/");
                    if matches!(self.seen.get(&here), Some(Seen::Link(..))) {
                        return Err(refuse(&here));
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
        let mut r = Rules::new();
        let p = &Scope::PACKAGE;
        assert!(r.admit(&e("a/b", RawKind::File), p).unwrap().is_some());
        assert!(r.admit(&e("a", RawKind::Dir), p).unwrap().is_some(), "a directory may follow its files");
        assert!(r.admit(&e("a/b", RawKind::File), p).unwrap_err().to_string().contains("twice"));
        assert!(r.admit(&e("./a/b", RawKind::Dir), p).unwrap_err().to_string().contains("twice"));
        assert!(r.admit(&e("a/b/c", RawKind::File), p).unwrap_err().to_string().contains("under the file"));
        assert!(r.admit(&e("dev", RawKind::Other("device file")), p).unwrap_err().to_string().contains("device"));
        assert!(r.admit(&e("l", RawKind::Symlink(b"../x".to_vec())), p).unwrap_err().to_string().contains("outside"));
        assert!(r.admit(&e("l", RawKind::Symlink(b"/etc/passwd".to_vec())), p).is_err());
        assert!(r.admit(&e("ok", RawKind::Symlink(b"a/b".to_vec())), p).is_ok());
        assert!(r.admit(&e("ok/x", RawKind::File), p).unwrap_err().to_string().contains("under the symlink"));
        assert!(r.admit(&e("h", RawKind::Hardlink(b"a/b".to_vec())), p).is_ok());
        assert!(r.admit(&e("h2", RawKind::Hardlink(b"/etc/shadow".to_vec())), p).is_err());
        assert!(r
            .admit(&e("h3", RawKind::Hardlink(b"later".to_vec())), p)
            .unwrap_err()
            .to_string()
            .contains("earlier file"));
        assert!(r.finish().is_ok());
    }

    #[test]
    fn links_through_links_are_refused() {
        // d/s -> .. is the root; d/a -> s/.. would then be the root's parent.
        let mut r = Rules::new();
        let c = &Scope { prefix: "content/", label: "content.tar!/" };
        r.admit(&e("d/s", RawKind::Symlink(b"..".to_vec())), c).unwrap();
        r.admit(&e("d/a", RawKind::Symlink(b"s/..".to_vec())), c).unwrap();
        let err = r.finish().unwrap_err().to_string();
        assert!(err.contains("content.tar!/d/a") && err.contains("through the symlink"), "{err}");
    }

    #[test]
    fn the_package_and_its_content_tar_are_one_tree() {
        // content/u0 -> .. (the package), then content.tar's u0/e1: under the package's link.
        let mut r = Rules::new();
        let c = &Scope { prefix: "content/", label: "content.tar!/" };
        r.admit(&e("content/u0", RawKind::Symlink(b"..".to_vec())), &Scope::PACKAGE).unwrap();
        let err = r.admit(&e("u0/e1", RawKind::Symlink(b"..".to_vec())), c).unwrap_err().to_string();
        assert!(err.contains("content.tar!/u0/e1") && err.contains("under the symlink `content/u0`"), "{err}");
        // The same name from both is a duplicate.
        r.admit(&e("content/a", RawKind::File), &Scope::PACKAGE).unwrap();
        assert!(r.admit(&e("a", RawKind::File), c).unwrap_err().to_string().contains("twice"));
        // Hard links in content.tar name content.tar's files only.
        let err = r.admit(&e("h", RawKind::Hardlink(b"../manifest.yml".to_vec())), c).unwrap_err().to_string();
        assert!(err.contains("hard link"), "{err}");
        r.admit(&e("b", RawKind::File), c).unwrap();
        assert_eq!(
            r.admit(&e("h", RawKind::Hardlink(b"b".to_vec())), c).unwrap().unwrap().1,
            Admitted::Hardlink("b".into())
        );
        // A content.tar link climbing out of content/ but not out of the package is inside.
        r.admit(&e("up", RawKind::Symlink(b"../manifest.yml".to_vec())), c).unwrap();
        assert!(r.admit(&e("out", RawKind::Symlink(b"../../x".to_vec())), c).is_err());
        // A link made by content.tar, used by a package link: through a link.
        let mut r = Rules::new();
        r.admit(&e("s", RawKind::Symlink(b"..".to_vec())), c).unwrap();
        r.admit(&e("x", RawKind::Symlink(b"content/s/..".to_vec())), &Scope::PACKAGE).unwrap();
        let err = r.finish().unwrap_err().to_string();
        assert!(err.contains("`x`") && err.contains("through the symlink `content.tar!/s`"), "{err}");
    }
}
