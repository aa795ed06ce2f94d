//! First-boot settings: user accounts (with passwordless sudo) and SSH public keys a VM gets on
//! its first start, checked here and rendered into one shell script by one function
//! ([`FirstBoot::script`]); dend's VM service delivers it through the guest agent.

use crate::FieldError;
use serde::{Deserialize, Serialize};

/// What a VM gets on its first boot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirstBoot {
    /// Accounts to create (home directory, bash, passwordless sudo).
    #[serde(default)]
    pub users: Vec<String>,
    /// SSH public keys for root and for every user above.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
}

impl FirstBoot {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.ssh_keys.is_empty()
    }

    /// Checks user names and keys.
    pub fn validate(&self) -> Result<(), FieldError> {
        let err = |message: String| Err(FieldError { field: "first_boot", message });
        for u in &self.users {
            let ok = !u.is_empty()
                && u.len() <= 32
                && u.bytes().next().is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
                && u.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_');
            if !ok || u == "root" {
                return err(format!("`{u}` is not a user name for a guest (a-z, 0-9, - and _, not root)"));
            }
        }
        for k in &self.ssh_keys {
            let kind = k.split_whitespace().next().unwrap_or("");
            let known = kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-");
            if !known || k.split_whitespace().count() < 2 || k.len() > 8192 || k.contains(['\'', '\n', '\r', '\0']) {
                return err(format!(
                    "`{}` is not an SSH public key line (like `ssh-ed25519 AAAA... me@laptop`)",
                    k.chars().take(40).collect::<String>()
                ));
            }
        }
        Ok(())
    }

    /// The shell script that applies the settings (values are validated: no quoting issues).
    pub fn script(&self, hostname: &str) -> String {
        let mut s = String::from("set -e\n");
        s.push_str(&format!("echo '{hostname}' > /etc/hostname\n"));
        let keys: String = self.ssh_keys.iter().map(|k| format!("{k}\n")).collect();
        let install = |home: &str, owner: &str| {
            format!(
                "mkdir -p {home}/.ssh && printf '%s' '{keys}' >> {home}/.ssh/authorized_keys && chmod 700 {home}/.ssh && chmod 600 {home}/.ssh/authorized_keys && chown -R {owner}: {home}/.ssh\n"
            )
        };
        if !self.ssh_keys.is_empty() {
            s.push_str(&install("/root", "root"));
        }
        for u in &self.users {
            s.push_str(&format!("id -u {u} >/dev/null 2>&1 || useradd -m -s /bin/bash {u}\n"));
            s.push_str(&format!(
                "mkdir -p /etc/sudoers.d && echo '{u} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/den-{u} && chmod 0440 /etc/sudoers.d/den-{u}\n"
            ));
            if !self.ssh_keys.is_empty() {
                s.push_str(&install(&format!("/home/{u}"), u));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_and_scripts() {
        let fb = FirstBoot { users: vec!["alice".into()], ssh_keys: vec!["ssh-ed25519 AAAAC3Nza me@laptop".into()] };
        assert!(fb.validate().is_ok());
        let s = fb.script("web1");
        assert!(s.contains("useradd -m -s /bin/bash alice") && s.contains("/home/alice/.ssh/authorized_keys"));
        assert!(s.contains("/root/.ssh/authorized_keys") && s.contains("echo 'web1' > /etc/hostname"));
        for bad in ["root", "Alice", "a b", "x;rm"] {
            assert!(FirstBoot { users: vec![bad.into()], ..Default::default() }.validate().is_err(), "{bad}");
        }
        for bad in ["AAAA", "ssh-rsa", "ssh-rsa AAA' ; rm -rf /", "ssh-rsa AAA\nx"] {
            assert!(FirstBoot { ssh_keys: vec![bad.into()], ..Default::default() }.validate().is_err(), "{bad}");
        }
        assert!(FirstBoot::default().is_empty());
    }
}
