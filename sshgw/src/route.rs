//! Where a connection goes: the SSH user name names the VM (`web1`), optionally the Den user
//! (`alice+web1`) and the account in the guest (`web1:dev`); and whether the Den user may go
//! there (operator on the VM, VM running).

use den_auth::policy::{self, Action, VmAction};
use den_auth::Accounts;
use den_core::vm::{VmRecord, VmState};
use den_vms::Den;

/// A parsed SSH user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The Den user it names, if any (else the key's or password's owner).
    pub den_user: Option<String>,
    /// The VM (empty: none named, the menu).
    pub vm: String,
    /// The guest account, if named.
    pub guest_user: Option<String>,
}

impl Target {
    /// Parses `[user+]vm[:guest-user]`.
    pub fn parse(ssh_user: &str) -> Target {
        let (den_user, rest) = match ssh_user.split_once('+') {
            Some((u, rest)) => (Some(u.to_string()), rest),
            None => (None, ssh_user),
        };
        let (vm, guest_user) = match rest.split_once(':') {
            Some((vm, g)) if !g.is_empty() => (vm, Some(g.to_string())),
            Some((vm, _)) => (vm, None),
            None => (rest, None),
        };
        Target { den_user, vm: vm.to_string(), guest_user }
    }
}

/// Why a session cannot go to a VM: one line for the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such VM.
    NotFound(String),
    /// The user lacks the operator role on it.
    Forbidden(String),
    /// The VM is not running; `may_start` when the user could start it.
    NotRunning {
        /// The line.
        line: String,
        /// Whether the user may start it.
        may_start: bool,
    },
}

impl Refusal {
    /// The line to show.
    pub fn line(&self) -> &str {
        match self {
            Refusal::NotFound(l) | Refusal::Forbidden(l) | Refusal::NotRunning { line: l, .. } => l,
        }
    }
}

/// Checks that `user` may enter `vm` now; returns its record.
pub fn check(den: &Den, accounts: &Accounts, user: &str, vm: &str) -> Result<VmRecord, Refusal> {
    let rec =
        den.store.vm(vm).map_err(|_| Refusal::NotFound(format!("den: VM `{vm}` not found (`den vm ls` lists VMs)")))?;
    let caller = accounts.caller(&den.store, user).map_err(|e| Refusal::Forbidden(format!("den: {e}")))?;
    if let Err(e) = policy::authorize(&caller, &Action::Vm(&rec, VmAction::Enter)) {
        return Err(Refusal::Forbidden(format!("den: {e}")));
    }
    if rec.state != VmState::Running {
        return Err(Refusal::NotRunning {
            line: format!("den: VM `{vm}` is {}; start it with `den vm start {vm}`", rec.state.as_str()),
            may_start: rec.state == VmState::Stopped,
        });
    }
    Ok(rec)
}

/// The VMs `user` may enter (operator or more), by name, with their state.
pub fn enterable(den: &Den, accounts: &Accounts, user: &str) -> Vec<(String, VmState)> {
    let Ok(caller) = accounts.caller(&den.store, user) else { return Vec::new() };
    let mut vms: Vec<(String, VmState)> = den
        .store
        .vms()
        .unwrap_or_default()
        .into_iter()
        .filter(|v| policy::authorize(&caller, &Action::Vm(v, VmAction::Enter)).is_ok())
        .map(|v| (v.spec.name, v.state))
        .collect();
    vms.sort_by(|a, b| a.0.cmp(&b.0));
    vms
}

/// The guest account a session logs in as: the one named, else the VM's first first-boot
/// user, else root.
pub fn guest_user(target: &Target, vm: &VmRecord) -> String {
    target.guest_user.clone().or_else(|| vm.spec.first_boot.users.first().cloned()).unwrap_or_else(|| "root".into())
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn parses_user_names() {
        let t = |d: Option<&str>, vm: &str, g: Option<&str>| Target {
            den_user: d.map(Into::into),
            vm: vm.into(),
            guest_user: g.map(Into::into),
        };
        assert_eq!(Target::parse("web1"), t(None, "web1", None));
        assert_eq!(Target::parse("alice+web1"), t(Some("alice"), "web1", None));
        assert_eq!(Target::parse("alice+web1:dev"), t(Some("alice"), "web1", Some("dev")));
        assert_eq!(Target::parse("web1:"), t(None, "web1", None));
        assert_eq!(Target::parse(""), t(None, "", None));
    }
}
