//! Who may do what. Users have a global role (or none), per-VM grants, and API tokens that can
//! be narrower than their user; a VM's owner operates it. [`Caller`] is the identity of one
//! request with everything needed to answer "may they?" without further lookups.

pub mod accounts;
pub mod conn_limit;
pub mod limiter;
pub mod password;
pub mod policy;
pub mod sshkey;
pub mod ticket;
pub mod token;
pub mod transport;

pub use accounts::{Accounts, AuthError};
pub use den_core::users::NewToken;
pub use transport::Transport;

pub use den_core::users::{Role, TokenScope};
use std::collections::HashMap;
use std::sync::Arc;

/// The identity behind one request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Den user name.
    pub user: String,
    /// Role on everything (already capped by the token, if any).
    pub global: Option<Role>,
    /// Roles on single VMs, by VM id (grants), before the token cap.
    pub grants: Arc<HashMap<String, Role>>,
    /// The token's cap and VM list, when the request came with a token.
    pub token: Option<TokenScope>,
}

impl Caller {
    /// The local administrator (root on the Unix socket).
    pub fn local_admin(user: &str) -> Caller {
        Caller { user: user.into(), global: Some(Role::Admin), grants: Arc::default(), token: None }
    }

    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.has(Role::Admin)
    }

    /// Whether the caller's global role is at least `need`. A token limited to VMs keeps its
    /// user's role on those VMs only ([`Caller::role_on`]): on the whole box it can at most look.
    pub fn has(&self, need: Role) -> bool {
        let limited = self.token.as_ref().is_some_and(|t| t.vms.is_some());
        self.global.is_some_and(|r| r >= need) && (!limited || need <= Role::Viewer)
    }

    /// The caller's role on one VM: the highest of the global role, a grant, and operator for
    /// its owner; then capped by the token. Callers decide with [`policy::authorize`], which
    /// also knows Den's own VMs.
    pub fn role_on(&self, vm_id: &str, vm_name: &str, owner: &str) -> Option<Role> {
        let owned = (owner == self.user).then_some(Role::Operator);
        let mut best = [self.global, self.grants.get(vm_id).copied(), owned].into_iter().flatten().max()?;
        if let Some(t) = &self.token {
            if t.vms.as_ref().is_some_and(|vms| !vms.iter().any(|v| v == vm_name)) {
                return None;
            }
            if let Some(cap) = t.role {
                best = best.min(cap);
            }
        }
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(global: Option<Role>, grants: &[(&str, Role)], token: Option<TokenScope>) -> Caller {
        Caller {
            user: "alice".into(),
            global,
            grants: Arc::new(grants.iter().map(|(v, r)| (v.to_string(), *r)).collect()),
            token,
        }
    }

    #[test]
    fn roles_grants_owners_and_tokens() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
        let v = caller(Some(Role::Viewer), &[("id1", Role::Operator)], None);
        assert_eq!(v.role_on("id1", "web1", "root"), Some(Role::Operator), "grant raises");
        assert_eq!(v.role_on("id2", "web2", "root"), Some(Role::Viewer));
        assert_eq!(v.role_on("id3", "mine", "alice"), Some(Role::Operator), "owner operates");
        let none = caller(None, &[], None);
        assert_eq!(none.role_on("id2", "web2", "root"), None);
        assert!(!none.has(Role::Viewer));
        let scoped = TokenScope {
            id: "t".into(),
            role: Some(Role::Viewer),
            vms: Some(vec!["web1".into()]),
            expires: None,
            session: false,
        };
        let t = caller(Some(Role::Admin), &[], Some(scoped));
        assert_eq!(t.role_on("id1", "web1", "root"), Some(Role::Viewer), "token caps");
        assert_eq!(t.role_on("id2", "web2", "root"), None, "token limits VMs");
        assert_eq!(Role::parse("operator"), Some(Role::Operator));
        assert_eq!(Role::parse("root"), None);
    }
}
