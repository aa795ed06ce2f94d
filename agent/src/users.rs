//! User lookup from `/etc/passwd` and `/etc/group` (no NSS inside minimal guests).

use std::path::Path;

/// A resolved account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Account {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub groups: Vec<u32>,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// Like [`lookup`], for `user[:group]` (Docker's form): the group, a gid or a name in
/// `/etc/group`, replaces the primary group.
pub(crate) fn lookup_with_group(root: &Path, who: &str) -> Option<Account> {
    let Some((user, group)) = who.split_once(':') else { return lookup(root, who) };
    let mut acct = lookup(root, user)?;
    acct.gid = match group.parse() {
        Ok(gid) => gid,
        Err(_) => {
            let groups = std::fs::read_to_string(root.join("etc/group")).unwrap_or_default();
            groups.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 3 && f[0] == group).then(|| f[2].parse().ok()).flatten()
            })?
        }
    };
    Some(acct)
}

/// Finds `who` (a name or a numeric uid) under `root` (normally `/`).
pub(crate) fn lookup(root: &Path, who: &str) -> Option<Account> {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    let by_uid = who.parse::<u32>().ok();
    let mut acct = passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        let uid = f[2].parse().ok()?;
        let gid = f[3].parse().ok()?;
        let hit = f[0] == who || by_uid == Some(uid);
        hit.then(|| Account { name: f[0].into(), uid, gid, groups: vec![], home: f[5].into(), shell: f[6].into() })
    });
    if acct.is_none() && who == "root" {
        acct = Some(Account {
            name: "root".into(),
            uid: 0,
            gid: 0,
            groups: vec![],
            home: "/root".into(),
            shell: "/bin/sh".into(),
        });
    }
    if acct.is_none() {
        let uid = by_uid?;
        acct = Some(Account {
            name: who.into(),
            uid,
            gid: uid,
            groups: vec![],
            home: "/".into(),
            shell: "/bin/sh".into(),
        });
    }
    let mut acct = acct?;
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap_or_default();
    for line in group.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[3].split(',').any(|m| m == acct.name) {
            if let Ok(g) = f[2].parse() {
                acct.groups.push(g);
            }
        }
    }
    Some(acct)
}

/// What a child process switches to before exec, computed before the fork.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

impl Account {
    /// The credentials to become this account.
    pub(crate) fn credentials(&self) -> Credentials {
        Credentials { uid: self.uid, gid: self.gid, groups: self.groups.iter().copied().chain([self.gid]).collect() }
    }
}

impl Credentials {
    /// Switches the calling process (supplementary groups, gid, then uid). Meant for
    /// `pre_exec`, between fork and exec: it only makes system calls, it does not allocate.
    pub(crate) fn apply(&self) -> std::io::Result<()> {
        // SAFETY: plain system calls with valid pointers and lengths.
        unsafe {
            if libc::setgroups(self.groups.len(), self.groups.as_ptr()) != 0
                || libc::setgid(self.gid) != 0
                || libc::setuid(self.uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_users_by_name_and_uid_with_groups() {
        let d = std::env::temp_dir().join(format!("den-users-{}", std::process::id()));
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::write(d.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\ndev:x:1000:1000::/home/dev:/bin/bash\n")
            .unwrap();
        std::fs::write(d.join("etc/group"), "sudo:x:27:dev\ndev:x:1000:\n").unwrap();
        let a = lookup(&d, "dev").unwrap();
        assert_eq!((a.uid, a.gid, a.home.as_str()), (1000, 1000, "/home/dev"));
        assert_eq!(a.groups, vec![27]);
        assert_eq!(lookup(&d, "1000").unwrap().name, "dev");
        assert_eq!(lookup(&d, "4242").unwrap().uid, 4242);
        assert!(lookup(&d, "nobody-here").is_none());
        assert_eq!(lookup_with_group(&d, "dev:27").unwrap().gid, 27);
        assert_eq!(lookup_with_group(&d, "1000:sudo").unwrap().gid, 27);
        assert_eq!(lookup_with_group(&d, "33:33").unwrap().uid, 33);
        assert!(lookup_with_group(&d, "dev:nogroup").is_none());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
