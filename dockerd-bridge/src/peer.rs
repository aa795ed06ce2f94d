//! Who is on the other end of the Docker socket: the Unix user from the connection's peer
//! credentials, mapped to the Den user `[docker] users` names for its uid, else to the Den user
//! of the same name. Root (and dend's own user) is the local admin.

use den_auth::Caller;
use den_vms::Den;
use std::collections::BTreeMap;
use tokio::net::UnixStream;

/// The Den identity of the socket's peer, or why it has none (shown to the `docker` CLI).
pub fn identify(
    den: &Den,
    accounts: &den_auth::Accounts,
    users: &BTreeMap<String, String>,
    stream: &UnixStream,
) -> Result<Caller, String> {
    let cred = stream.peer_cred().map_err(|e| format!("cannot read the caller's credentials: {e}"))?;
    let uid = cred.uid();
    if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
        return Ok(Caller::local_admin("root"));
    }
    if let Some(name) = users.get(&uid.to_string()) {
        return accounts.caller(&den.store, name).map_err(|_| {
            format!("uid {uid} maps to the Den user `{name}` ([docker] users), who does not exist; `den user ls` lists users")
        });
    }
    let name = nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .ok_or_else(|| format!("uid {uid} has no user name on this host, so it maps to no Den user"))?;
    accounts.caller(&den.store, &name).map_err(|_| {
        format!("the Unix user `{name}` (uid {uid}) is not a Den user; an admin adds one with `den user add {name} --role operator`")
    })
}
