//! The one authorization function: [`authorize`] answers whether a [`Caller`] may do an
//! [`Action`], for every transport (the API and the web console, the SSH gateway, the app
//! ingress, the Docker socket). The rules live here and nowhere else:
//!
//! - a user's role on a VM is the highest of their global role, a grant on it, and operator
//!   for its owner; a token caps it (its role) and limits it (its VM list);
//! - Den's own VMs (the Docker sandbox, app VMs, the business OS) and VMs with shared host
//!   folders take an admin for everything but seeing that they exist: their consoles, files,
//!   disks and clones reach past every other policy;
//! - a task is cancelled by the one who started it (with operator rights on its VM) or an admin;
//!   dend's own tasks only by an admin;
//! - tokens only narrow ([`narrow`]).

use super::{Caller, Role};
use den_core::task::Task;
use den_core::vm::VmRecord;

/// What is done to one VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmAction {
    /// See it in lists, its record and metrics.
    See,
    /// Read what it printed (console log), its snapshots and tasks.
    Watch,
    /// Start, stop, reboot, pause, resume, resize, snapshot, roll back, delete.
    Operate,
    /// Run commands, copy files, type into its console, SSH in.
    Enter,
    /// Copy its disks into a new VM the caller owns.
    Clone,
}

impl VmAction {
    /// The role this takes on an ordinary VM.
    pub fn role(self) -> Role {
        match self {
            VmAction::See | VmAction::Watch => Role::Viewer,
            VmAction::Operate | VmAction::Enter | VmAction::Clone => Role::Operator,
        }
    }

    /// What it is called in a refusal.
    fn verb(self) -> &'static str {
        match self {
            VmAction::See => "see",
            VmAction::Watch => "read the output of",
            VmAction::Operate => "operate",
            VmAction::Enter => "enter",
            VmAction::Clone => "clone",
        }
    }
}

/// Something a caller asks to do.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Something on the whole box needing at least this role (create a VM: operator; networks,
    /// users, the business OS: admin).
    Global(Role),
    /// Something done to one VM.
    Vm(&'a VmRecord, VmAction),
    /// Something done to a VM that does not exist: allowed to those who could do it to any VM
    /// (they then learn it does not exist).
    MissingVm(VmAction),
    /// Cancelling a task; with the VM it works on, when that still exists.
    CancelTask(&'a Task, Option<&'a VmRecord>),
    /// Using an app through the ingress (`admin_only` apps are for admins).
    UseApp {
        /// Whether the app is for admins only.
        admin_only: bool,
    },
    /// Changing a user's own password or keys.
    OwnAccount(&'a str),
    /// Changing, entering or reading the files of an existing Docker object.
    DockerObject {
        /// How a person names it (`container \`web\``).
        what: &'a str,
        /// Its Den owner, from its label (`None`: none recorded).
        owner: Option<&'a str>,
        /// A pulled or loaded image: shared by everyone.
        shared: bool,
        /// A container that binds a host folder shared into the sandbox.
        binds_shares: bool,
    },
}

/// Why not: a sentence for the person asking.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// Whether `vm` is Den's own or hands its root the host's files: then every action but
/// [`VmAction::See`] takes an admin.
pub fn needs_admin(vm: &VmRecord) -> bool {
    vm.owner == "dend" || !vm.spec.shares.is_empty()
}

/// The caller's role on `vm` for `action`: [`Caller::role_on`], then capped at none for
/// everything but seeing a VM that [`needs_admin`], unless the caller is an admin on it.
pub fn role_for(caller: &Caller, vm: &VmRecord, action: VmAction) -> Option<Role> {
    let role = caller.role_on(&vm.id, &vm.spec.name, &vm.owner)?;
    if needs_admin(vm) && action != VmAction::See && role < Role::Admin {
        return None;
    }
    Some(role)
}

/// Decides whether `caller` may do `action`.
pub fn authorize(caller: &Caller, action: &Action<'_>) -> Result<(), Denied> {
    let who = &caller.user;
    match *action {
        Action::Global(need) => {
            if caller.has(need) {
                return Ok(());
            }
            Err(Denied(format!(
                "user `{who}` may not do this: it needs the {} role; an admin can grant it",
                need.as_str()
            )))
        }
        Action::Vm(vm, act) => {
            let name = &vm.spec.name;
            if act == VmAction::Clone && !caller.has(Role::Operator) {
                return Err(Denied(format!(
                    "user `{who}` may not clone `{name}`: a clone is a new VM, which needs the operator role"
                )));
            }
            if role_for(caller, vm, act).is_some_and(|r| r >= act.role()) {
                return Ok(());
            }
            if needs_admin(vm) && act != VmAction::See {
                let why = if vm.owner == "dend" { "it is one of Den's own VMs" } else { "it shares host folders" };
                return Err(Denied(format!(
                    "user `{who}` may not {} VM `{name}`: {why}, so only an admin may",
                    act.verb()
                )));
            }
            Err(Denied(format!(
                "user `{who}` may not {} VM `{name}`: this needs the {} role on it; an admin can grant it",
                act.verb(),
                act.role().as_str()
            )))
        }
        Action::MissingVm(act) => {
            if caller.has(act.role()) {
                return Ok(());
            }
            Err(Denied(format!("user `{who}` may not do this: it needs the {} role", act.role().as_str())))
        }
        Action::CancelTask(task, vm) => {
            let own = task.owner == *who
                && caller.has(Role::Operator)
                && vm.is_none_or(|vm| role_for(caller, vm, VmAction::Operate).is_some_and(|r| r >= Role::Operator));
            if caller.is_admin() || own {
                return Ok(());
            }
            Err(Denied(format!(
                "user `{who}` may not cancel task {}: it was started by `{}`; only they (as an operator) or an admin may",
                task.id, task.owner
            )))
        }
        Action::UseApp { admin_only } => {
            if let Some(vms) = caller.token.as_ref().and_then(|t| t.vms.as_ref()) {
                return Err(Denied(format!(
                    "this token is limited to the VMs {}; apps need a token without a VM list",
                    vms.join(", ")
                )));
            }
            if admin_only && !caller.is_admin() {
                return Err(Denied("this app is for Den admins only".into()));
            }
            Ok(())
        }
        Action::DockerObject { what, owner, shared, binds_shares } => {
            if caller.is_admin() {
                return Ok(());
            }
            if !caller.has(Role::Operator) {
                return Err(Denied(format!(
                    "user `{who}` may not change {what} or read its files: that needs the operator role"
                )));
            }
            if binds_shares {
                return Err(Denied(format!(
                    "{what} binds a host folder shared into the sandbox; only an admin may act on it"
                )));
            }
            match owner {
                Some(o) if o == who => Ok(()),
                None if shared => Ok(()),
                Some(o) => Err(Denied(format!("{what} belongs to `{o}`; only they or an admin may change it or read its files"))),
                None => Err(Denied(format!(
                    "{what} has no Den owner (it is shared: pulled, loaded, or made before Den recorded owners); only an admin may change it"
                ))),
            }
        }
        Action::OwnAccount(user) => {
            // A token narrowed to a role or to VMs may not change its user's password or keys.
            let narrowed = caller.token.as_ref().is_some_and(|t| t.role.is_some() || t.vms.is_some());
            if (user == who && !narrowed) || caller.is_admin() {
                return Ok(());
            }
            Err(Denied(format!("user `{who}` may not change `{user}`'s password or keys")))
        }
    }
}

/// The scope of a token `parent` makes, asking for `role`, `vms` and `expires` (Unix seconds):
/// never more than the parent carries. Roles take the lower, VM lists the intersection, expiry
/// the earlier. A login session stands for its user and passes nothing on.
pub fn narrow(
    parent: &Caller,
    role: Option<Role>,
    vms: Option<Vec<String>>,
    expires: Option<i64>,
) -> (Option<Role>, Option<Vec<String>>, Option<i64>) {
    let Some(p) = parent.token.as_ref().filter(|t| !t.session) else { return (role, vms, expires) };
    let role = match (role, p.role) {
        (Some(r), Some(cap)) => Some(r.min(cap)),
        (r, cap) => r.or(cap),
    };
    let vms = match (vms, &p.vms) {
        (Some(mine), Some(theirs)) => Some(mine.into_iter().filter(|v| theirs.contains(v)).collect()),
        (mine, theirs) => mine.or_else(|| theirs.clone()),
    };
    let expires = match (expires, p.expires) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    (role, vms, expires)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TokenScope;
    use den_core::task::TaskStatus;
    use std::sync::Arc;

    /// Whether a token scope is within `parent`'s.
    fn within(child: &TokenScope, parent: &TokenScope) -> bool {
        let role_ok = match (child.role, parent.role) {
            (_, None) => true,
            (Some(c), Some(p)) => c <= p,
            (None, Some(_)) => false,
        };
        let vms_ok = match (&child.vms, &parent.vms) {
            (_, None) => true,
            (Some(c), Some(p)) => c.iter().all(|v| p.contains(v)),
            (None, Some(_)) => false,
        };
        let exp_ok = match (child.expires, parent.expires) {
            (_, None) => true,
            (Some(c), Some(p)) => c <= p,
            (None, Some(_)) => false,
        };
        role_ok && vms_ok && exp_ok
    }

    fn vm(name: &str, owner: &str) -> VmRecord {
        let mut v = den_core::testkit::vm_record(name);
        v.owner = owner.into();
        v
    }

    fn caller(user: &str, global: Option<Role>, token: Option<TokenScope>) -> Caller {
        Caller { user: user.into(), global, grants: Arc::default(), token }
    }

    fn scope(role: Option<Role>, vms: Option<&[&str]>, expires: Option<i64>, session: bool) -> TokenScope {
        TokenScope {
            id: "t".into(),
            role,
            vms: vms.map(|v| v.iter().map(|s| s.to_string()).collect()),
            expires,
            session,
        }
    }

    fn task(owner: &str) -> Task {
        Task {
            id: "t1".into(),
            kind: "vm.create".into(),
            target: "web1".into(),
            owner: owner.into(),
            status: TaskStatus::Running,
            progress: 0,
            log: String::new(),
            error: None,
            created: 0,
            finished: None,
        }
    }

    #[test]
    fn dens_own_vms_take_an_admin_for_everything_but_being_seen() {
        let op = caller("alice", Some(Role::Operator), None);
        let admin = caller("root", Some(Role::Admin), None);
        let sandbox = vm("docker-sandbox", "dend");
        for act in [VmAction::Watch, VmAction::Operate, VmAction::Enter, VmAction::Clone] {
            let e = authorize(&op, &Action::Vm(&sandbox, act)).unwrap_err();
            assert!(e.0.contains("Den's own"), "{act:?}: {e}");
            assert!(authorize(&admin, &Action::Vm(&sandbox, act)).is_ok());
        }
        assert!(authorize(&op, &Action::Vm(&sandbox, VmAction::See)).is_ok());
        let mine = vm("web1", "alice");
        for act in [VmAction::See, VmAction::Watch, VmAction::Operate, VmAction::Enter, VmAction::Clone] {
            assert!(authorize(&op, &Action::Vm(&mine, act)).is_ok(), "{act:?}");
        }
        let viewer = caller("vic", Some(Role::Viewer), None);
        assert!(authorize(&viewer, &Action::Vm(&mine, VmAction::Watch)).is_ok());
        assert!(authorize(&viewer, &Action::Vm(&mine, VmAction::Clone)).is_err());
        // A grant of operator on a VM does not make a clone (a new VM) without the global role.
        let mut granted = caller("gus", Some(Role::Viewer), None);
        granted.grants = Arc::new([(mine.id.clone(), Role::Operator)].into_iter().collect());
        assert!(authorize(&granted, &Action::Vm(&mine, VmAction::Operate)).is_ok());
        assert!(authorize(&granted, &Action::Vm(&mine, VmAction::Clone)).is_err());
    }

    #[test]
    fn tasks_are_cancelled_by_their_owner_or_an_admin() {
        let alice = caller("alice", Some(Role::Operator), None);
        let bob = caller("bob", Some(Role::Operator), None);
        let admin = caller("root", Some(Role::Admin), None);
        let web1 = vm("web1", "alice");
        let t = task("alice");
        assert!(authorize(&alice, &Action::CancelTask(&t, Some(&web1))).is_ok());
        assert!(authorize(&bob, &Action::CancelTask(&t, Some(&web1))).is_err());
        assert!(authorize(&admin, &Action::CancelTask(&t, Some(&web1))).is_ok());
        let dends = task("dend");
        assert!(authorize(&alice, &Action::CancelTask(&dends, None)).is_err());
        assert!(authorize(&admin, &Action::CancelTask(&dends, None)).is_ok());
    }

    #[test]
    fn tokens_only_narrow() {
        let parent =
            caller("alice", Some(Role::Admin), Some(scope(Some(Role::Operator), Some(&["a", "b"]), Some(100), false)));
        let (r, v, e) = narrow(&parent, Some(Role::Admin), Some(vec!["b".into(), "c".into()]), Some(1000));
        assert_eq!((r, v, e), (Some(Role::Operator), Some(vec!["b".to_string()]), Some(100)));
        let (r, v, e) = narrow(&parent, None, None, None);
        assert_eq!(
            (r, v.as_deref(), e),
            (Some(Role::Operator), Some(&["a".to_string(), "b".to_string()][..]), Some(100))
        );
        let child =
            scope(r, v.as_deref().map(|v| v.iter().map(String::as_str).collect::<Vec<_>>()).as_deref(), e, false);
        assert!(within(&child, parent.token.as_ref().unwrap()));
        // A login session is the user: what it makes is not tied to the session.
        let session = caller("alice", Some(Role::Admin), Some(scope(None, None, Some(100), true)));
        assert_eq!(narrow(&session, None, None, None), (None, None, None));
        assert!(!within(&scope(None, None, None, false), &scope(None, Some(&["a"]), None, false)));
    }

    #[test]
    fn a_token_limited_to_vms_is_no_admin_of_the_box() {
        let t = caller("ada", Some(Role::Admin), Some(scope(None, Some(&["web1"]), None, false)));
        assert!(authorize(&t, &Action::Global(Role::Admin)).is_err(), "users, networks, system");
        assert!(authorize(&t, &Action::Global(Role::Operator)).is_err(), "new VMs");
        assert!(authorize(&t, &Action::Global(Role::Viewer)).is_ok());
        assert!(
            authorize(&t, &Action::OwnAccount("bob")).is_err() && authorize(&t, &Action::OwnAccount("ada")).is_err()
        );
        let web1 = vm("web1", "root");
        assert!(authorize(&t, &Action::Vm(&web1, VmAction::Enter)).is_ok(), "its own VMs as before");
        assert!(authorize(&t, &Action::Vm(&vm("web2", "root"), VmAction::See)).is_err());
        let obj =
            Action::DockerObject { what: "container `c`", owner: Some("ada"), shared: false, binds_shares: false };
        assert!(authorize(&t, &obj).is_err());
    }

    #[test]
    fn docker_objects_belong_to_their_owner() {
        let op = caller("alice", Some(Role::Operator), None);
        let viewer = caller("vic", Some(Role::Viewer), None);
        let admin = caller("root", Some(Role::Admin), None);
        let obj =
            |owner, shared, binds_shares| Action::DockerObject { what: "container `c`", owner, shared, binds_shares };
        assert!(authorize(&op, &obj(Some("alice"), false, false)).is_ok());
        let e = authorize(&op, &obj(Some("root"), false, false)).unwrap_err();
        assert!(e.0.contains("belongs to `root`"), "{e}");
        assert!(authorize(&op, &obj(None, false, false)).is_err(), "no owner: admins only");
        assert!(authorize(&op, &obj(None, true, false)).is_ok(), "shared images");
        assert!(authorize(&op, &obj(Some("alice"), false, true)).unwrap_err().0.contains("shared into the sandbox"));
        assert!(authorize(&viewer, &obj(Some("vic"), false, false)).is_err(), "viewers read no files");
        assert!(authorize(&admin, &obj(Some("alice"), false, true)).is_ok());
    }

    #[test]
    fn apps_refuse_tokens_limited_to_vms() {
        let t = caller("alice", Some(Role::Admin), Some(scope(None, Some(&["web1"]), None, false)));
        assert!(authorize(&t, &Action::UseApp { admin_only: false }).is_err());
        let u = caller("alice", Some(Role::Operator), None);
        assert!(authorize(&u, &Action::UseApp { admin_only: false }).is_ok());
        assert!(authorize(&u, &Action::UseApp { admin_only: true }).is_err());
    }
}
