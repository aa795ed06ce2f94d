//! Relative paths inside a tree: checked once, so that every operation of the tree takes a name
//! that cannot be absolute, climb with `..` or carry a NUL.

use crate::TreeError;
use std::fmt;

/// Longest relative path accepted, in bytes (Linux's `PATH_MAX` less the terminating NUL).
pub const MAX_PATH: usize = 4095;
/// Longest path component, in bytes.
pub const MAX_NAME: usize = 255;

/// A clean relative path: `a/b/c`, or empty for the tree's root. No component is empty, `.` or
/// `..`, and none holds a NUL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

impl RelPath {
    /// The tree's root itself.
    pub fn root() -> RelPath {
        RelPath(String::new())
    }

    /// Checks `text`; one leading and any trailing `/` are accepted and dropped (`/a/b/` is
    /// `a/b`), so that a request path or a guest path can be given as written.
    pub fn new(text: &str) -> Result<RelPath, TreeError> {
        let bad = |reason: &str| TreeError::BadPath { path: text.to_string(), reason: reason.to_string() };
        let trimmed = text.strip_prefix('/').unwrap_or(text).trim_end_matches('/');
        if trimmed.len() > MAX_PATH {
            return Err(bad("is longer than 4095 bytes"));
        }
        if trimmed.is_empty() {
            return Ok(RelPath::root());
        }
        for part in trimmed.split('/') {
            match part {
                "" => return Err(bad("has an empty component (`//`)")),
                "." | ".." => return Err(bad("has a `.` or `..` component")),
                p if p.contains('\0') => return Err(bad("holds a NUL byte")),
                p if p.len() > MAX_NAME => return Err(bad("has a component longer than 255 bytes")),
                _ => {}
            }
        }
        Ok(RelPath(trimmed.to_string()))
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path as text (`""` for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path for a system call: `.` for the root.
    pub(crate) fn syscall(&self) -> &str {
        if self.0.is_empty() {
            "."
        } else {
            &self.0
        }
    }

    /// The parent and the last component; `None` for the root.
    pub fn split_last(&self) -> Option<(RelPath, &str)> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(i) => (RelPath(self.0[..i].to_string()), &self.0[i + 1..]),
            None => (RelPath::root(), self.0.as_str()),
        })
    }

    /// This path with `name` (one or more clean components) appended.
    pub fn join(&self, name: &str) -> Result<RelPath, TreeError> {
        let tail = RelPath::new(name)?;
        Ok(match (self.is_root(), tail.is_root()) {
            (true, _) => tail,
            (false, true) => self.clone(),
            (false, false) => RelPath(format!("{}/{}", self.0, tail.0)),
        })
    }

    /// The components, root first.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str(".")
        } else {
            f.write_str(&self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths_pass_and_others_are_refused() {
        assert_eq!(RelPath::new("/a/b/").unwrap().as_str(), "a/b");
        assert_eq!(RelPath::new("a").unwrap().as_str(), "a");
        assert!(RelPath::new("").unwrap().is_root());
        assert!(RelPath::new("/").unwrap().is_root());
        for bad in ["a//b", "../x", "a/..", "./a", "a/./b", "a\0b", "//a"] {
            assert!(RelPath::new(bad).is_err(), "{bad:?}");
        }
        assert!(RelPath::new(&"x".repeat(256)).is_err());
        assert!(RelPath::new(&"x/".repeat(2100)).is_err());
    }

    #[test]
    fn split_and_join() {
        let p = RelPath::new("a/b/c").unwrap();
        let (parent, last) = p.split_last().unwrap();
        assert_eq!((parent.as_str(), last), ("a/b", "c"));
        assert_eq!(RelPath::new("a").unwrap().split_last().unwrap().0, RelPath::root());
        assert!(RelPath::root().split_last().is_none());
        assert_eq!(RelPath::root().join("x/y").unwrap().as_str(), "x/y");
        assert_eq!(p.join("d").unwrap().as_str(), "a/b/c/d");
        assert!(p.join("..").is_err());
        assert_eq!(p.components().collect::<Vec<_>>(), ["a", "b", "c"]);
    }
}
