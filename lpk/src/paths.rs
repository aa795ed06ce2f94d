//! Entry names: cleaning them and keeping them, and the links they make, inside the package.

/// Longest entry name accepted, in bytes.
pub const MAX_NAME: usize = 1024;

/// Cleans an archive entry name into `a/b/c` form: a leading `./` and a trailing `/` are dropped;
/// absolute names, `..`, empty components, NUL and non-UTF-8 names are refused.
pub fn clean(raw: &[u8]) -> Result<String, String> {
    let s = std::str::from_utf8(raw).map_err(|_| "the name is not UTF-8".to_string())?;
    if s.len() > MAX_NAME {
        return Err(format!("the name is longer than {MAX_NAME} bytes"));
    }
    if s.contains('\0') {
        return Err("the name contains a NUL byte".into());
    }
    if s.starts_with('/') || s.starts_with('\\') {
        return Err("absolute paths are not allowed in a package".into());
    }
    if s.contains('\\') {
        return Err("backslashes are not allowed in entry names".into());
    }
    let mut parts = Vec::new();
    for (i, c) in s.trim_end_matches('/').split('/').enumerate() {
        match c {
            "." if i == 0 => {}
            ".." => return Err("the path leaves the package (`..`)".into()),
            "" | "." => return Err("the name has an empty or `.` component".into()),
            c if c.len() > 255 => return Err("a path component is longer than 255 bytes".into()),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err("the name is empty".into());
    }
    Ok(parts.join("/"))
}

/// Where a symlink at `entry` pointing to `target` lands, relative to the package root;
/// refused if absolute or if it leaves the package.
pub fn link_target(entry: &str, target: &[u8]) -> Result<String, String> {
    let t = std::str::from_utf8(target).map_err(|_| "has a target that is not UTF-8".to_string())?;
    if t.starts_with('/') {
        return Err(format!("points to the absolute path `{t}`, outside the package"));
    }
    let mut parts: Vec<&str> = entry.split('/').collect();
    parts.pop();
    for c in t.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("points to `{t}`, outside the package"));
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// Whether `name` is `dir` itself or lies below it.
pub fn under(name: &str, dir: &str) -> bool {
    name == dir || (name.starts_with(dir) && name.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// A path inside the guest (`binds`, `file://`, `workdir`): absolute, no `..`, no empty parts.
pub fn clean_abs(p: &str) -> Option<String> {
    let rest = p.strip_prefix('/')?;
    if rest.is_empty() {
        return Some("/".into());
    }
    let mut out = String::new();
    for c in rest.trim_end_matches('/').split('/') {
        if c.is_empty() || c == "." || c == ".." || c.contains('\0') {
            return None;
        }
        out.push('/');
        out.push_str(c);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_or_refused() {
        assert_eq!(clean(b"./manifest.yml").unwrap(), "manifest.yml");
        assert_eq!(clean(b"images/blobs/").unwrap(), "images/blobs");
        assert!(clean(b"/etc/passwd").unwrap_err().contains("absolute"));
        assert!(clean(b"a/../../x").unwrap_err().contains(".."));
        assert!(clean(b"a//b").is_err());
        assert!(clean(b"./").is_err());
        assert!(clean(b"a\\b").is_err());
        assert!(clean(&[0xff, 0x41]).is_err());
    }

    #[test]
    fn links_stay_inside() {
        assert_eq!(link_target("a/b/l", b"../c").unwrap(), "a/c");
        assert_eq!(link_target("l", b"./x/y").unwrap(), "x/y");
        assert!(link_target("a/l", b"../../x").is_err());
        assert!(link_target("l", b"/etc").is_err());
        assert!(under("images/blobs/x", "images"));
        assert!(!under("imagesx", "images"));
        assert_eq!(clean_abs("/lzcapp/var/").as_deref(), Some("/lzcapp/var"));
        assert_eq!(clean_abs("/lzcapp/../etc"), None);
        assert_eq!(clean_abs("lzcapp"), None);
    }
}
